//! Config text to a stored plan, what policy would decide about it, and starting it: the
//! outcomes people expect (no changes, started, needs an approval) are values, not errors.

use engine::exec::{ApplyResult, Authorization, ExecError, RunOutcome};
use engine::plan::Plan;
use engine::{Diagnostic, Severity};
use policies::ApprovalRequest;

use crate::{App, Caller, Result};

/// What planning config text came to.
#[derive(Debug)]
pub enum Planned {
    /// The plan, stored (its id is what `apply` takes).
    Plan(Box<Plan>),
    /// The config does not validate; nothing was planned.
    Invalid(Vec<Diagnostic>),
}

/// What starting a plan came to.
#[derive(Debug)]
pub enum Start {
    /// Recorded state already matches the plan.
    NoChanges { plan: String },
    /// Policy allowed it: the workflow is recorded and holds the workspace lock; run it with
    /// [`App::run`].
    Started { workflow: String, steps: usize },
    /// Policy wants a person's approval first: this request (made, or the one already open).
    NeedsApproval {
        message: String,
        request: Box<ApprovalRequest>,
    },
}

impl App {
    /// Validates `config` (Nickel text from outside, through the sandbox) and plans it against
    /// recorded state (`destroy`: removing everything its workspace holds instead).
    pub async fn plan(&self, config: String, destroy: bool) -> Result<Planned> {
        let v = self.validate(config).await?;
        let config = match v.config {
            Some(c) if v.diagnostics.iter().all(|d| d.severity != Severity::Error) => c,
            _ => return Ok(Planned::Invalid(v.diagnostics)),
        };
        Ok(Planned::Plan(Box::new(
            self.plan_config(&config, destroy).await?,
        )))
    }

    /// Plans a validated config against recorded state (`destroy`: removing everything its
    /// workspace holds instead) and stores the plan.
    pub async fn plan_config(&self, config: &engine::Config, destroy: bool) -> Result<Plan> {
        Ok(match destroy {
            true => self.engine.plan_destroy(config).await?,
            false => self.engine.plan(config).await?,
        })
    }

    pub async fn load_plan(&self, id: &str) -> Result<Plan> {
        Ok(self.engine.load_plan(id).await?)
    }

    /// What policy would decide, now, if `caller` applied plan `id`, with the approvals granted
    /// so far; a gated plan gets its approval request (made, or the one already open). Applies
    /// nothing; a decision other than allow is recorded in the audit log.
    pub async fn preflight(&self, caller: &Caller, id: &str) -> Result<(Plan, Authorization)> {
        let plan = self.engine.load_plan(id).await?;
        let auth = self.engine.preflight(&plan, caller).await?;
        Ok((plan, auth))
    }

    /// Starts plan `id` as `caller`: checks it is current, asks policy, takes the workspace lock
    /// and records the workflow. A denial is an error ([`crate::ErrorKind::Forbidden`]) naming
    /// the policies.
    pub async fn start(&self, caller: &Caller, id: &str) -> Result<Start> {
        self.writable()?;
        match self.engine.start(id, caller).await {
            Ok(ApplyResult::NoChanges { plan }) => Ok(Start::NoChanges { plan }),
            Ok(ApplyResult::Ran(started)) => Ok(Start::Started {
                workflow: started.workflow,
                steps: started.not_started,
            }),
            Err(ExecError::NeedsApproval { message, request }) => {
                Ok(Start::NeedsApproval { message, request })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Runs a started (or resumable) workflow to its end.
    pub async fn run(&self, workflow: &str) -> Result<RunOutcome> {
        Ok(self.engine.run(workflow).await?)
    }
}
