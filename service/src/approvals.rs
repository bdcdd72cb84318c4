//! Approval requests: one with its plan and whether that plan is stale, a page of them by
//! status, and a person's decision on one (policy decides who may; the requester never counts).

use engine::plan::Plan;
use policies::{ApprovalRequest, ApprovalStatus};

use crate::{App, Caller, Error, Result};

/// Longest approval or rejection comment, in bytes.
pub const MAX_COMMENT_BYTES: usize = 4096;

/// A request, where it stands now, its plan (when still stored) and whether the workspace has
/// moved on since the plan was made.
#[derive(Debug, Clone)]
pub struct ApprovalView {
    pub request: ApprovalRequest,
    pub status: ApprovalStatus,
    pub plan: Option<Plan>,
    pub plan_is_stale: bool,
}

impl App {
    pub async fn approval(&self, id: &str) -> Result<ApprovalView> {
        let request = self.engine.approval(id).await?;
        let plan = self.engine.load_plan(&request.plan_id).await.ok();
        let current = self.engine.store.state_version(&request.workspace).await?;
        let plan_is_stale = plan.as_ref().is_some_and(|p| p.state_version != current);
        Ok(ApprovalView {
            status: request.status_at(self.engine.clock.now_ms()),
            request,
            plan,
            plan_is_stale,
        })
    }

    /// Newest first, `limit` at most; only those in `status` (as of now) when given.
    pub async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
        limit: usize,
    ) -> Result<Vec<ApprovalRequest>> {
        let mut requests = self.engine.approvals(status).await?;
        requests.truncate(limit);
        Ok(requests)
    }

    /// Approves (`approve` true) or rejects request `id` as `caller`. A rejection needs a
    /// comment saying why; a comment is at most [`MAX_COMMENT_BYTES`].
    pub async fn decide(
        &self,
        caller: &Caller,
        id: &str,
        approve: bool,
        comment: &str,
    ) -> Result<ApprovalRequest> {
        self.writable()?;
        if comment.len() > MAX_COMMENT_BYTES {
            return Err(Error::bad(format!(
                "`comment` is {} bytes; at most {MAX_COMMENT_BYTES} are accepted",
                comment.len()
            )));
        }
        if !approve && comment.trim().is_empty() {
            return Err(Error::bad(
                "a rejection needs a `comment` telling the requester why",
            ));
        }
        Ok(match approve {
            true => self.engine.approve(id, caller, comment).await?,
            false => self.engine.reject(id, caller, comment).await?,
        })
    }
}
