//! The use cases a command line needs, as one trait: [`App`] answers them from this machine's
//! state; the CLI's HTTP client (`--server`, or the local server's socket) answers the same
//! questions from a running server. A command is written once against `&dyn Operations`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use engine::exec::DriftReport;
use engine::state::{Resource, WorkflowRecord};

use policies::audit::AuditEntry;
use policies::{ApprovalRequest, ApprovalStatus};

use crate::{App, ApprovalView, AuditCheck, Caller, Result, WorkflowView};

#[async_trait]
pub trait Operations: Send + Sync {
    /// Now, in milliseconds since the Unix epoch, by the clock the records were written with.
    fn now_ms(&self) -> u64;
    /// The newest `limit` workflows, newest first.
    async fn workflows(&self, limit: usize) -> Result<Vec<WorkflowRecord>>;
    /// One workflow with its steps and latest events.
    async fn workflow(&self, id: &str) -> Result<WorkflowView>;
    /// Asks a running workflow to stop, as `caller` (a server decides who calls by itself).
    async fn cancel(&self, caller: &Caller, id: &str) -> Result<()>;
    /// Approval requests newest first, only those in `status` when given.
    async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
        limit: usize,
    ) -> Result<Vec<ApprovalRequest>>;
    /// One request with its plan and whether that plan is stale.
    async fn approval(&self, id: &str) -> Result<ApprovalView>;
    /// Every workspace's recorded resources, by workspace.
    async fn state(&self) -> Result<BTreeMap<String, Vec<Resource>>>;
    /// What the providers say now about `workspace`'s recorded resources.
    async fn drift(&self, workspace: &str) -> Result<DriftReport>;
    /// Every audit entry, oldest first.
    async fn audit_all(&self) -> Result<Vec<AuditEntry>>;
    /// The audit chain checked against its recorded head.
    async fn verify_audit(&self) -> Result<AuditCheck>;
    /// Approves (`approve`) or rejects a request as `caller`, with a comment.
    async fn decide(
        &self,
        caller: &Caller,
        id: &str,
        approve: bool,
        comment: &str,
    ) -> Result<ApprovalRequest>;
}

#[async_trait]
impl Operations for App {
    fn now_ms(&self) -> u64 {
        self.engine.clock.now_ms()
    }

    async fn workflows(&self, limit: usize) -> Result<Vec<WorkflowRecord>> {
        App::workflows(self, None, limit).await
    }

    async fn workflow(&self, id: &str) -> Result<WorkflowView> {
        App::workflow(self, id).await
    }

    async fn cancel(&self, caller: &Caller, id: &str) -> Result<()> {
        App::cancel(self, caller, id).await
    }

    async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
        limit: usize,
    ) -> Result<Vec<ApprovalRequest>> {
        App::approvals(self, status, limit).await
    }

    async fn approval(&self, id: &str) -> Result<ApprovalView> {
        App::approval(self, id).await
    }

    async fn state(&self) -> Result<BTreeMap<String, Vec<Resource>>> {
        Ok(App::state(self, None, None).await?.resources)
    }

    async fn drift(&self, workspace: &str) -> Result<DriftReport> {
        App::drift(self, workspace).await
    }

    async fn audit_all(&self) -> Result<Vec<AuditEntry>> {
        App::audit_all(self).await
    }

    async fn verify_audit(&self) -> Result<AuditCheck> {
        App::verify_audit(self).await
    }

    async fn decide(
        &self,
        caller: &Caller,
        id: &str,
        approve: bool,
        comment: &str,
    ) -> Result<ApprovalRequest> {
        App::decide(self, caller, id, approve, comment).await
    }
}
