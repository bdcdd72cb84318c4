//! The use cases a command line needs, as one trait: [`App`] answers them from this machine's
//! state; the CLI's HTTP client (`--server`, or the local server's socket) answers the same
//! questions from a running server. A command is written once against `&dyn Operations`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use engine::exec::{DriftReport, RunOutcome};
use engine::plan::Plan;
use engine::state::{Event, EventKind, Resource, WorkflowRecord};

use policies::audit::AuditEntry;
use policies::{ApprovalRequest, ApprovalStatus, Decision};

use crate::{App, ApprovalView, AuditCheck, Caller, Result, Start, WorkflowView};

/// A config the command line validated on its own side (where its imports are read): the typed
/// config, and the exported value a server validates again.
#[derive(Debug, Clone)]
pub struct Checked {
    pub config: engine::Config,
    pub value: serde_json::Value,
}

/// A stored plan with its rendered diff.
#[derive(Debug, Clone)]
pub struct PlanView {
    pub plan: Plan,
    pub rendered: String,
}

/// What policy would decide, now, about applying a stored plan.
#[derive(Debug, Clone)]
pub struct Preflight {
    pub decision: Decision,
    /// The open approval request when the plan is gated (made, or the one already waiting).
    pub request: Option<ApprovalRequest>,
    /// Who asked, as the deciding side knows them.
    pub principal: String,
}

/// Where a workflow's events go while a command waits for its end.
pub type Events = tokio::sync::mpsc::UnboundedSender<Event>;

#[async_trait]
pub trait Operations: Send + Sync {
    /// Now, in milliseconds since the Unix epoch, by the clock the records were written with.
    fn now_ms(&self) -> u64;
    /// Where the answers come from, for people: a server's address, `None` for this machine.
    fn location(&self) -> Option<&str> {
        None
    }
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
    /// Plans a config checked on this side against the recorded state (`destroy`: removing
    /// what its workspace holds); a server validates it again.
    async fn plan(&self, checked: &Checked, destroy: bool) -> Result<PlanView>;
    /// A stored plan.
    async fn stored_plan(&self, id: &str) -> Result<PlanView>;
    /// What policy would decide, now, if `caller` applied plan `id`.
    async fn preflight(&self, caller: &Caller, id: &str) -> Result<Preflight>;
    /// Starts plan `id` as `caller`.
    async fn start(&self, caller: &Caller, id: &str) -> Result<Start>;
    /// Waits for a started workflow's end, sending its events (redacted) as they happen: in
    /// this process the engine runs it here; a server runs it there and this follows it.
    async fn finish(&self, workflow: &str, events: Events) -> Result<RunOutcome>;
    /// Continues workflow `id` (`rollback` false) or rolls it back, as `caller`, to its end,
    /// sending its events as they happen.
    async fn continue_to_end(
        &self,
        caller: &Caller,
        id: &str,
        rollback: bool,
        events: Events,
    ) -> Result<RunOutcome>;
}

impl App {
    /// Forwards this workflow's events (redacted: step errors quote provider text) to `events`
    /// until it finishes or the receiver is gone.
    fn forward(&self, workflow: &str, events: Events) -> tokio::task::JoinHandle<()> {
        let mut live = self.engine.subscribe();
        let redactor = self.engine.redactor.clone();
        let workflow = workflow.to_string();
        tokio::spawn(async move {
            while let Ok(mut event) = live.recv().await {
                if event.workflow != workflow {
                    continue;
                }
                let finished = event.kind == EventKind::WorkflowFinished;
                event.message = redactor.redact(&event.message).into_owned();
                if events.send(event).is_err() || finished {
                    break;
                }
            }
        })
    }

    /// Runs `run` while forwarding the workflow's events; waits for the last one on success.
    async fn with_events(
        &self,
        workflow: &str,
        events: Events,
        run: impl std::future::Future<Output = Result<RunOutcome>>,
    ) -> Result<RunOutcome> {
        let forward = self.forward(workflow, events);
        let outcome = run.await;
        match &outcome {
            Ok(_) => {
                let _ = forward.await;
            }
            Err(_) => forward.abort(),
        }
        outcome
    }
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

    async fn plan(&self, checked: &Checked, destroy: bool) -> Result<PlanView> {
        self.writable()?;
        let plan = self.plan_config(&checked.config, destroy).await?;
        let rendered = plan.render();
        Ok(PlanView { plan, rendered })
    }

    async fn stored_plan(&self, id: &str) -> Result<PlanView> {
        let plan = App::load_plan(self, id).await?;
        let rendered = plan.render();
        Ok(PlanView { plan, rendered })
    }

    async fn preflight(&self, caller: &Caller, id: &str) -> Result<Preflight> {
        let (_, auth) = App::preflight(self, caller, id).await?;
        Ok(Preflight {
            decision: auth.decision,
            request: auth.request,
            principal: caller.principal.clone(),
        })
    }

    async fn start(&self, caller: &Caller, id: &str) -> Result<Start> {
        App::start(self, caller, id).await
    }

    async fn finish(&self, workflow: &str, events: Events) -> Result<RunOutcome> {
        self.with_events(workflow, events, App::run(self, workflow))
            .await
    }

    async fn continue_to_end(
        &self,
        caller: &Caller,
        id: &str,
        rollback: bool,
        events: Events,
    ) -> Result<RunOutcome> {
        // The same use case as the tools' and the REST routes', waited for to its end.
        let run = async {
            match self
                .continue_workflow(caller, id, rollback, std::time::Duration::MAX)
                .await?
            {
                crate::Continued::Finished(outcome) => Ok(outcome),
                crate::Continued::Running { workflow } => Err(crate::Error::remote(format!(
                    "workflow {workflow} stopped being followed before it ended"
                ))),
            }
        };
        self.with_events(id, events, run).await
    }
}
