//! Actions on a workflow that exists: cancel, resume, roll back. Each is a policy decision for
//! the caller on the workflow's plan, recorded in the audit log with who asked and what was
//! decided, here, so every entry point (MCP tool, REST route, CLI command) goes through it.

use policies::{Action, PolicyRef};

use super::{Engine, ExecError, RunOutcome};
use crate::authz::{ApprovalFacts, Caller, Decision};
use crate::plan::Plan;
use crate::state::{WorkflowRecord, WorkflowStatus};

/// "policy-id (description); ..." for a refusal.
fn reasons_text(reasons: &[PolicyRef]) -> String {
    reasons
        .iter()
        .map(|r| format!("{} ({})", r.id, r.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a rollback does, as policy facts: the plan reversed. What the plan created or replaced
/// is deleted, what it deleted comes back, and its cost change is undone. Counted from the whole
/// plan, so a rollback of a partly applied workflow is judged as if every step had run (never
/// less than what it really deletes).
pub(super) fn reversed(plan: &Plan) -> Plan {
    let mut view = plan.clone();
    view.summary.delete = plan.summary.create + plan.summary.replace;
    view.summary.create = plan.summary.delete;
    for cost in &mut view.cost {
        std::mem::swap(&mut cost.before, &mut cost.after);
        cost.delta = -cost.delta;
    }
    view
}

impl Engine {
    /// Decides `action` (cancel, resume) on `wf` for `caller` and records the decision. Only
    /// an outright allow lets it happen: these actions do not wait for approvals.
    async fn decide_workflow_action(
        &self,
        wf: &WorkflowRecord,
        plan: &Plan,
        action: Action,
        caller: &Caller,
    ) -> Result<(), ExecError> {
        let facts = ApprovalFacts {
            approvals: 0,
            requester: None,
            requested_by_agent: false,
        };
        let decision = self.authorizer.decide(caller, action, plan, &facts);
        let kind = if decision.is_allow() {
            "decision"
        } else {
            "denial"
        };
        self.audit(
            kind,
            &caller.principal,
            &wf.id,
            serde_json::json!({
                "action": action.as_str(),
                "workflow": wf.id,
                "plan": plan.id,
                "plan_hash": plan.hash,
                "workspace": wf.workspace,
                "channel": caller.channel,
                "roles": caller.roles,
                "decision": decision,
            }),
        )
        .await?;
        match decision {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny { reasons } => Err(ExecError::NotAllowed(format!(
                "policy denies {} {} workflow {}: {}",
                caller.principal,
                verb(action),
                wf.id,
                reasons_text(&reasons)
            ))),
            Decision::NeedsApproval { gates } => Err(ExecError::NotAllowed(format!(
                "{} workflow {} does not wait for approvals, but policy gates it for {}: {}",
                verb(action),
                wf.id,
                caller.principal,
                reasons_text(&gates)
            ))),
        }
    }

    /// Asks a running workflow to stop: no new steps start, running ones finish. Policy
    /// decides whether `caller` may (action `cancel`).
    pub async fn cancel(&self, workflow_id: &str, caller: &Caller) -> Result<(), ExecError> {
        let wf = self.workflow(workflow_id).await?;
        if wf.status.is_final() {
            return Err(ExecError::Finished {
                id: wf.id,
                status: wf.status.as_str(),
                verb: "cancel",
            });
        }
        let plan = self.load_plan(&wf.plan_id).await?;
        self.decide_workflow_action(&wf, &plan, Action::Cancel, caller)
            .await?;
        if let Ok(mut set) = self.cancel.lock() {
            set.insert(workflow_id.to_string());
        }
        self.store.request_cancel(workflow_id).await?;
        Ok(())
    }

    /// Checks that `caller` may resume workflow `workflow_id` (action `resume`) and that nobody
    /// else wrote to its workspace since its last checkpoint; records the decision. Returns the
    /// workflow; [`Engine::resume`] runs it.
    pub async fn authorize_resume(
        &self,
        workflow_id: &str,
        caller: &Caller,
    ) -> Result<WorkflowRecord, ExecError> {
        let wf = self.workflow(workflow_id).await?;
        if wf.status.is_final() {
            return Err(ExecError::Finished {
                id: wf.id,
                status: wf.status.as_str(),
                verb: "resume",
            });
        }
        let plan = self.load_plan(&wf.plan_id).await?;
        self.decide_workflow_action(&wf, &plan, Action::Resume, caller)
            .await?;
        // The version after this workflow's own last write (the plan's version before its first
        // one): anything else means someone else changed the workspace meanwhile.
        let expected = self
            .store
            .workflow_state_version(&wf.id)
            .await?
            .unwrap_or(plan.state_version);
        let current = self.store.state_version(&wf.workspace).await?;
        if current != expected {
            self.audit(
                "denial",
                &caller.principal,
                &wf.id,
                serde_json::json!({
                    "action": "resume",
                    "workflow": wf.id,
                    "workspace": wf.workspace,
                    "reason": "workspace-changed",
                    "expected_version": expected,
                    "current_version": current,
                }),
            )
            .await?;
            return Err(ExecError::WorkspaceChanged {
                workflow: wf.id,
                workspace: wf.workspace,
                expected,
                current,
            });
        }
        Ok(wf)
    }

    /// Continues an interrupted, failed or cancelled workflow for `caller`: decided by policy,
    /// refused when the workspace changed under it (see [`Engine::authorize_resume`]).
    pub async fn resume(
        &self,
        workflow_id: &str,
        caller: &Caller,
    ) -> Result<RunOutcome, ExecError> {
        let wf = self.authorize_resume(workflow_id, caller).await?;
        self.run(&wf.id).await
    }

    /// Undoes what a failed or cancelled workflow did: its succeeded steps are compensated in
    /// reverse dependency order and its failed ones cleaned up, then it ends `rolled_back`.
    ///
    /// A rollback is decided like a change (action `rollback`) on the plan reversed (what the
    /// workflow created is deleted, its cost undone; see [`reversed`]), with the same gates: a
    /// gated rollback makes an approval request bound to the plan hash and the action
    /// `rollback`, and runs once enough people approved it. The automatic rollback of
    /// `on_failure = "rollback"` is part of the apply that was decided and approved, and is not
    /// decided again. Returns the run's outcome; the workflow must not be running.
    pub async fn rollback(
        &self,
        workflow_id: &str,
        caller: &Caller,
    ) -> Result<RunOutcome, ExecError> {
        let _running = self.mark_running(workflow_id);
        let mut wf = self.workflow(workflow_id).await?;
        match wf.status {
            WorkflowStatus::Failed | WorkflowStatus::Cancelled | WorkflowStatus::RollingBack => {}
            WorkflowStatus::Succeeded => {
                return Err(ExecError::NotAllowed(format!(
                    "workflow {} succeeded; to remove what it created, plan a destroy (or apply the previous config) so the change is planned and authorized like any other",
                    wf.id
                )));
            }
            WorkflowStatus::RolledBack => {
                return Err(ExecError::Finished {
                    id: wf.id,
                    status: "rolled_back",
                    verb: "roll back",
                });
            }
            status => {
                return Err(ExecError::NotAllowed(format!(
                    "workflow {} is {}; cancel it first (cancel_workflow), then roll it back",
                    wf.id,
                    status.as_str()
                )));
            }
        }
        let plan = self.load_plan(&wf.plan_id).await?;
        if plan.hash != wf.plan_hash {
            return Err(ExecError::NotAllowed(format!(
                "workflow {} ran plan hash {}, but plan {} now has hash {}; it cannot be rolled back from a different plan",
                wf.id, wf.plan_hash, plan.id, plan.hash
            )));
        }
        let view = reversed(&plan);
        let auth = self
            .authorize_action(&plan, &view, Action::Rollback, caller, true)
            .await?;
        match &auth.decision {
            Decision::Allow { .. } => {}
            Decision::Deny { reasons } => {
                return Err(ExecError::NotAllowed(format!(
                    "policy denies {} rolling back workflow {}: {}",
                    caller.principal,
                    wf.id,
                    reasons_text(reasons)
                )));
            }
            Decision::NeedsApproval { gates } => {
                let Some(request) = auth.request else {
                    return Err(ExecError::NotAllowed(format!(
                        "rolling back workflow {} needs approval ({}), and no request could be made",
                        wf.id,
                        reasons_text(gates)
                    )));
                };
                return Err(ExecError::NeedsApproval {
                    message: format!(
                        "rolling back workflow {} needs {} approval(s) by someone other than {} ({}): request {} is open; an approver approves it in the Control Center or with `provisioning approvals approve {}`, then roll back again",
                        wf.id,
                        request.required,
                        request.requester,
                        reasons_text(gates),
                        request.id,
                        request.id
                    ),
                    request: Box::new(request),
                });
            }
        }
        if let Some(request) = &auth.request
            && auth.approvals > 0
        {
            self.consume_approval(request, &wf.id, caller).await?;
        }
        self.audit(
            "rollback_requested",
            &caller.principal,
            &wf.id,
            serde_json::json!({ "plan": wf.plan_id, "was": wf.status.as_str() }),
        )
        .await?;
        if wf.status != WorkflowStatus::RollingBack {
            wf.status = WorkflowStatus::RollingBack;
            wf.updated_at = self.clock.now_ms();
            self.store.update_workflow(&wf, None).await?;
        }
        self.run(&wf.id).await
    }
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Cancel => "cancelling",
        Action::Resume => "resuming",
        Action::Rollback => "rolling back",
        _ => "acting on",
    }
}
