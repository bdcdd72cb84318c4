//! Why an apply, resume, cancel or rollback did not happen.

use crate::state::{LockHolder, StateError};

/// Why an apply, resume or cancel did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no plan with id `{id}`{}", hint_list("recent plans", known))]
    PlanNotFound { id: String, known: Vec<String> },
    #[error("no workflow with id `{id}`{}", hint_list("recent workflows", known))]
    WorkflowNotFound { id: String, known: Vec<String> },
    #[error(
        "plan {plan} is stale: it was made against state version {planned}, but workspace `{workspace}` is now at version {current}; run `provisioning plan` again and review the new plan"
    )]
    StalePlan {
        plan: String,
        workspace: String,
        planned: u64,
        current: u64,
    },
    #[error(
        "workspace `{}` is locked by {} (lock {}, workflow {}, since {} ms epoch); wait for it to finish, or check it with `provisioning status {}`",
        .0.workspace, .0.owner, .0.id, .0.workflow, .0.acquired_at, .0.workflow
    )]
    LockHeld(LockHolder),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error(
        "workspace `{workspace}` changed since workflow {workflow} last wrote to it (state version {expected} then, {current} now): another apply or a destroy ran meanwhile, so resuming would work from an outdated plan; plan again from the config and apply the new plan"
    )]
    WorkspaceChanged {
        workflow: String,
        workspace: String,
        expected: u64,
        current: u64,
    },
    #[error("{message}")]
    NeedsApproval {
        message: String,
        request: Box<policies::ApprovalRequest>,
    },
    #[error(
        "no approval request with id `{id}`{}",
        hint_list("recent requests", known)
    )]
    ApprovalNotFound { id: String, known: Vec<String> },
    #[error("{0}")]
    Approval(String),
    #[error("workflow {id} is {status}; there is nothing to {verb}")]
    Finished {
        id: String,
        status: &'static str,
        verb: &'static str,
    },
    #[error(transparent)]
    State(#[from] StateError),
    /// A remote server (the CLI's `--server`) could not be reached or answered an error that
    /// has no engine counterpart; the text says which.
    #[error("{0}")]
    Remote(String),
}

fn hint_list(what: &str, items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" ({what}: {})", items.join(", "))
    }
}
