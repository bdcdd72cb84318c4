//! Approvals: an apply that meets a gate records a request bound to the plan hash; people
//! whom policy allows to `approve` (never the requester) grant or reject it; the next apply of
//! exactly that plan counts the grants, and consumes them. Every step is in the audit log.

use policies::{Action, ApprovalRequest, ApprovalStatus, PolicyRef, Verdict, count_valid};

use super::{Engine, ExecError};
use crate::authz::{ApprovalFacts, Caller, Decision, plan_action};
use crate::plan::Plan;
use crate::runtime::new_id;

/// The outcome of asking whether a plan may run now.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub decision: Decision,
    /// The open request for this plan: just made, or the one already waiting.
    pub request: Option<ApprovalRequest>,
    /// Valid approvals counted for the decision.
    pub approvals: i64,
}

/// Attempts at a compare-and-set update before giving up.
const CAS_ATTEMPTS: usize = 8;

impl Engine {
    /// Decides whether `caller` may run `plan` now, with the approvals granted for exactly its
    /// hash. A gated plan without an open request gets one. The decision is audited.
    pub async fn authorize(
        &self,
        plan: &Plan,
        caller: &Caller,
    ) -> Result<Authorization, ExecError> {
        self.authorize_with(plan, caller, true).await
    }

    /// [`Engine::authorize`] before asking the person to confirm: an `Allow` is not recorded
    /// here, because [`Engine::start`] decides again and records that one.
    pub async fn preflight(
        &self,
        plan: &Plan,
        caller: &Caller,
    ) -> Result<Authorization, ExecError> {
        self.authorize_with(plan, caller, false).await
    }

    async fn authorize_with(
        &self,
        plan: &Plan,
        caller: &Caller,
        record_allow: bool,
    ) -> Result<Authorization, ExecError> {
        // A stale plan can never run: say so before asking anyone for an approval.
        self.ensure_current(plan).await?;
        self.authorize_action(plan, plan, plan_action(plan), caller, record_allow)
            .await
    }

    /// Decides `action` on `plan` for `caller`, with the facts of `facts` (the plan itself, or
    /// for a rollback the plan reversed) and the approvals granted for exactly this plan hash
    /// and this action. A gated action without an open request gets one. The decision is
    /// audited (an `Allow` only when `record_allow`).
    pub(super) async fn authorize_action(
        &self,
        plan: &Plan,
        facts_plan: &Plan,
        action: Action,
        caller: &Caller,
        record_allow: bool,
    ) -> Result<Authorization, ExecError> {
        let now = self.clock.now_ms();
        let requests: Vec<ApprovalRequest> = self
            .store
            .approvals(Some(&plan.hash))
            .await?
            .into_iter()
            .filter(|r| r.action == action && r.plan_hash == plan.hash)
            .collect();
        let person = caller.person().to_string();
        if let Some(rejected) = requests
            .iter()
            .find(|r| r.status == ApprovalStatus::Rejected)
        {
            let decision = Decision::Deny {
                reasons: vec![rejection_reason(rejected)],
            };
            self.audit_decision(plan, action, caller, &decision, Some(rejected), 0)
                .await?;
            return Ok(Authorization {
                decision,
                request: Some(rejected.clone()),
                approvals: 0,
            });
        }
        let open = requests.into_iter().find(|r| r.is_open(now));
        let approvals = open
            .as_ref()
            .map(|r| {
                // The person's own approval of their agent's dev request counts (they gave it
                // out of band); otherwise neither the requester's nor the applier's does.
                let excluded: Vec<&str> = match solo_request(r) {
                    true => Vec::new(),
                    false => vec![&r.requester, &person],
                };
                count_valid(&r.records(), &plan.hash, &excluded, now)
            })
            .unwrap_or(0);
        let facts = ApprovalFacts {
            approvals,
            requester: Some(
                open.as_ref()
                    .map(|r| r.requester.clone())
                    .unwrap_or_else(|| person.clone()),
            ),
            requested_by_agent: open
                .as_ref()
                .map_or(caller.principal.starts_with("agent:"), |r| {
                    r.requested_by.starts_with("agent:")
                }),
        };
        let decision = self.authorizer.decide(caller, action, facts_plan, &facts);
        let request = match (&decision, open) {
            (Decision::NeedsApproval { gates }, None) => {
                let required = self
                    .authorizer
                    .approvals_needed(caller, action, facts_plan)
                    .unwrap_or(1)
                    .max(1);
                let request = ApprovalRequest {
                    id: new_id("apr", self.clock.as_ref(), self.rng.as_ref()),
                    plan_id: plan.id.clone(),
                    plan_hash: plan.hash.clone(),
                    workspace: plan.workspace.clone(),
                    environment: plan.environment.as_str().into(),
                    action,
                    requester: person.clone(),
                    requested_by: caller.principal.clone(),
                    channel: caller.channel.clone(),
                    gates: gates.clone(),
                    required,
                    created_at: now,
                    expires_at: now.saturating_add(self.approval_ttl.as_millis() as u64),
                    status: ApprovalStatus::Pending,
                    approvals: Vec::new(),
                    rejection: None,
                    used_by: None,
                    rev: 0,
                };
                self.store.create_approval(&request).await?;
                self.audit(
                    "approval_requested",
                    &caller.principal,
                    &request.id,
                    serde_json::json!({
                        "plan": plan.id,
                        "plan_hash": plan.hash,
                        "workspace": plan.workspace,
                        "action": action.as_str(),
                        "gates": gates,
                        "required": required,
                        "expires_at": request.expires_at,
                    }),
                )
                .await?;
                Some(request)
            }
            (_, open) => open,
        };
        if record_allow || !decision.is_allow() {
            self.audit_decision(plan, action, caller, &decision, request.as_ref(), approvals)
                .await?;
        }
        Ok(Authorization {
            decision,
            request,
            approvals,
        })
    }

    pub(super) async fn audit_decision(
        &self,
        plan: &Plan,
        action: Action,
        caller: &Caller,
        decision: &Decision,
        request: Option<&ApprovalRequest>,
        approvals: i64,
    ) -> Result<(), ExecError> {
        let kind = match decision {
            Decision::Allow { .. } => "decision",
            Decision::NeedsApproval { .. } => "gated",
            Decision::Deny { .. } => "denial",
        };
        self.audit(
            kind,
            &caller.principal,
            &plan.id,
            serde_json::json!({
                "action": action.as_str(),
                "plan_hash": plan.hash,
                "workspace": plan.workspace,
                "channel": caller.channel,
                "roles": caller.roles,
                "approvals": approvals,
                "approval_request": request.map(|r| r.id.clone()),
                "decision": decision,
            }),
        )
        .await
    }

    /// Marks the request used by `workflow`; fails when someone used or changed it first.
    pub(super) async fn consume_approval(
        &self,
        request: &ApprovalRequest,
        workflow: &str,
        caller: &Caller,
    ) -> Result<(), ExecError> {
        let mut used = request.clone();
        used.status = ApprovalStatus::Used;
        used.used_by = Some(workflow.to_string());
        used.rev = request.rev + 1;
        if !self.store.update_approval(&used, request.rev).await? {
            return Err(ExecError::Approval(format!(
                "approval request {} was used or changed by someone else while this apply started; run the apply again",
                request.id
            )));
        }
        self.audit(
            "approval_used",
            &caller.principal,
            &request.id,
            serde_json::json!({ "workflow": workflow, "plan_hash": request.plan_hash, "approvals": request.approvals.len() }),
        )
        .await
    }

    /// One request, or an error naming the recent ones.
    pub async fn approval(&self, id: &str) -> Result<ApprovalRequest, ExecError> {
        let found = if super::is_id(id) {
            self.store.approval(id).await?
        } else {
            None
        };
        match found {
            Some(request) => Ok(request),
            None => {
                let known = self
                    .store
                    .approvals(None)
                    .await?
                    .into_iter()
                    .take(5)
                    .map(|r| r.id)
                    .collect();
                Err(ExecError::ApprovalNotFound {
                    id: id.to_string(),
                    known,
                })
            }
        }
    }

    /// Requests newest first, only those in `status` (as of now) when given.
    pub async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<ApprovalRequest>, ExecError> {
        let now = self.clock.now_ms();
        Ok(self
            .store
            .approvals(None)
            .await?
            .into_iter()
            .filter(|r| status.is_none_or(|s| r.status_at(now) == s))
            .collect())
    }

    /// Grants an approval. Policy must allow `caller` to approve this plan, and the caller may
    /// not be the requester; a request that is used, rejected or expired takes no more.
    pub async fn approve(
        &self,
        id: &str,
        caller: &Caller,
        comment: &str,
    ) -> Result<ApprovalRequest, ExecError> {
        self.decide_on(id, caller, comment, true).await
    }

    /// Rejects a request; the comment (required) tells the requester why. Final.
    pub async fn reject(
        &self,
        id: &str,
        caller: &Caller,
        comment: &str,
    ) -> Result<ApprovalRequest, ExecError> {
        if comment.trim().is_empty() {
            return Err(ExecError::Approval(
                "a rejection needs a comment telling the requester why (--comment TEXT)".into(),
            ));
        }
        self.decide_on(id, caller, comment, false).await
    }

    async fn decide_on(
        &self,
        id: &str,
        caller: &Caller,
        comment: &str,
        approve: bool,
    ) -> Result<ApprovalRequest, ExecError> {
        let verb = if approve { "approve" } else { "reject" };
        for _ in 0..CAS_ATTEMPTS {
            let request = self.approval(id).await?;
            let now = self.clock.now_ms();
            match request.status_at(now) {
                ApprovalStatus::Used => {
                    return Err(ExecError::Approval(format!(
                        "approval request {id} was already used by workflow {}; approvals are single use, so a new apply asks for a new one",
                        request.used_by.as_deref().unwrap_or("?")
                    )));
                }
                ApprovalStatus::Rejected => {
                    return Err(ExecError::Approval(format!(
                        "approval request {id} was rejected ({}); nobody can {verb} it any more",
                        rejection_reason(&request).description
                    )));
                }
                ApprovalStatus::Expired => {
                    return Err(ExecError::Approval(format!(
                        "approval request {id} expired at {}; applying the plan again makes a new request",
                        crate::runtime::utc(request.expires_at)
                    )));
                }
                ApprovalStatus::Pending | ApprovalStatus::Approved => {}
            }
            let plan = self.load_plan(&request.plan_id).await?;
            if plan.hash != request.plan_hash {
                return Err(ExecError::Approval(format!(
                    "approval request {id} is for plan hash {}, but plan {} has hash {}; an approval binds one exact plan, so this request cannot be {verb}d",
                    request.plan_hash, plan.id, plan.hash
                )));
            }
            // A rollback undoes a workflow that already changed the workspace: its plan is not
            // current by design; the request is bound to the plan hash and the workflow.
            if request.action != Action::Rollback {
                self.ensure_current(&plan).await?;
            }
            let facts = ApprovalFacts {
                approvals: 0,
                requester: Some(request.requester.clone()),
                requested_by_agent: request.requested_by.starts_with("agent:"),
            };
            let decision = self
                .authorizer
                .decide(caller, Action::Approve, &plan, &facts);
            if let Decision::Deny { reasons } | Decision::NeedsApproval { gates: reasons } =
                &decision
            {
                self.audit(
                    "approval_denied",
                    &caller.principal,
                    id,
                    serde_json::json!({ "verdict": verb, "plan_hash": request.plan_hash, "decision": decision }),
                )
                .await?;
                return Err(ExecError::NotAllowed(format!(
                    "{} may not {verb} request {id}: {}",
                    caller.principal,
                    describe(reasons)
                )));
            }
            let person = caller.person().to_string();
            let own_agents_dev_request = solo_request(&request)
                && !caller.principal.starts_with("agent:")
                && caller.channel != "mcp";
            if person == request.requester && !own_agents_dev_request {
                return Err(ExecError::NotAllowed(format!(
                    "{person} made request {id} and cannot {verb} it; another approver must"
                )));
            }
            if approve && request.approvals.iter().any(|v| v.by == person) {
                return Err(ExecError::Approval(format!(
                    "{person} already approved request {id}; it needs {} approval(s) from different people",
                    request.required
                )));
            }
            let verdict = Verdict {
                by: person,
                principal: caller.principal.clone(),
                channel: caller.channel.clone(),
                at: now,
                comment: comment.trim().to_string(),
            };
            let mut next = request.clone();
            next.rev = request.rev + 1;
            if approve {
                next.approvals.push(verdict);
            } else {
                next.status = ApprovalStatus::Rejected;
                next.rejection = Some(verdict);
            }
            if self.store.update_approval(&next, request.rev).await? {
                self.audit(
                    if approve {
                        "approval_granted"
                    } else {
                        "approval_rejected"
                    },
                    &caller.principal,
                    id,
                    serde_json::json!({
                        "plan": request.plan_id,
                        "plan_hash": request.plan_hash,
                        "approvals": next.approvals.len(),
                        "required": next.required,
                        "comment": comment.trim(),
                    }),
                )
                .await?;
                return Ok(next);
            }
        }
        Err(ExecError::Approval(format!(
            "approval request {id} kept changing under this {verb}; try again"
        )))
    }
}

fn describe(refs: &[PolicyRef]) -> String {
    refs.iter()
        .map(|r| format!("{} ({})", r.id, r.description))
        .collect::<Vec<_>>()
        .join("; ")
}

fn rejection_reason(request: &ApprovalRequest) -> PolicyRef {
    let (by, comment) = request
        .rejection
        .as_ref()
        .map(|v| (v.by.as_str(), v.comment.as_str()))
        .unwrap_or(("?", ""));
    PolicyRef {
        id: "approval-rejected".into(),
        description: format!(
            "approval request {} for this exact plan was rejected by {by}: \"{comment}\"; change the config and plan again",
            request.id
        ),
    }
}

/// The message for a gated plan: what to do next.
pub fn gated_message(plan: &Plan, request: &ApprovalRequest) -> String {
    let gates = describe(&request.gates);
    format!(
        "{} of plan {} needs {} approval(s) (gates: {gates}); approval request {} is waiting ({} so far, expires {}). Someone allowed to approve runs `provisioning approvals approve {}`; then apply the same plan again with `provisioning apply --plan {}`",
        plan_action(plan).as_str(),
        plan.id,
        request.required,
        request.id,
        request.approvals.len(),
        crate::runtime::utc(request.expires_at),
        request.id,
        plan.id
    )
}

/// A dev request an agent made for its person: policy lets that person approve it themselves,
/// out of band (not over MCP), so a person alone can use the product without faking another.
fn solo_request(request: &ApprovalRequest) -> bool {
    request.environment == "dev" && request.requested_by.starts_with("agent:")
}
