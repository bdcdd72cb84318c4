//! One error for every use case. Its [`ErrorKind`] is what each edge converts once: an HTTP
//! status and problem title (REST), a tool error (MCP), an exit code (CLI). The message is for
//! the person or model that made the request: what went wrong and what to do next.
//! [`ErrorKind::Internal`] messages carry internals (a store's words); the HTTP edges log them
//! and send a generic text instead.

use engine::exec::ExecError;

/// What kind of failure, for the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (a bad limit, an unknown status, a comment too long).
    BadInput,
    /// No plan, workflow or approval request with that id.
    NotFound,
    /// The id exists but the thing cannot happen now: a stale plan, a finished workflow, a
    /// changed workspace, a held lock, a refused approval.
    Conflict,
    /// Policy does not allow it.
    Forbidden,
    /// The server runs `--read-only` and this would change something.
    ReadOnly,
    /// Every evaluation slot is taken: retry shortly.
    Busy,
    /// The store or a component failed; the message has internals.
    Internal,
}

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    /// A short title for the kind, e.g. `stale plan` (REST's problem title).
    title: &'static str,
    message: String,
    /// For [`ErrorKind::NotFound`]: what was not found (`plan`, `workflow`, `approval
    /// request`), so an edge can say where such ids come from.
    subject: Option<&'static str>,
}

impl Error {
    pub fn new(kind: ErrorKind, title: &'static str, message: impl Into<String>) -> Error {
        Error {
            kind,
            title,
            message: message.into(),
            subject: None,
        }
    }

    /// Bad input, with what was wrong and what would be accepted.
    pub fn bad(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadInput, "invalid input", message)
    }

    /// A failure on the far side of a connection (a server that is not there, an answer this
    /// side cannot read); the message says which.
    pub fn remote(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, "internal error", message)
    }

    /// The refusal of a `--read-only` server.
    pub fn read_only() -> Error {
        Error::new(
            ErrorKind::ReadOnly,
            "read-only server",
            "this server runs with --read-only: it validates, plans and reports, and changes nothing",
        )
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn title(&self) -> &'static str {
        self.title
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// What was not found, for a [`ErrorKind::NotFound`] from the engine.
    pub fn subject(&self) -> Option<&'static str> {
        self.subject
    }
}

impl From<ExecError> for Error {
    fn from(e: ExecError) -> Error {
        let (kind, title) = match &e {
            ExecError::PlanNotFound { .. }
            | ExecError::WorkflowNotFound { .. }
            | ExecError::ApprovalNotFound { .. } => (ErrorKind::NotFound, "not found"),
            ExecError::StalePlan { .. } => (ErrorKind::Conflict, "stale plan"),
            ExecError::WorkspaceChanged { .. } => (ErrorKind::Conflict, "workspace changed"),
            ExecError::NotAllowed(_) => (ErrorKind::Forbidden, "not allowed"),
            ExecError::Approval(_) => (ErrorKind::Conflict, "approval refused"),
            ExecError::Finished { .. } => (ErrorKind::Conflict, "workflow finished"),
            ExecError::LockHeld(_) => (ErrorKind::Conflict, "workspace locked"),
            ExecError::NeedsApproval { .. } => (ErrorKind::Forbidden, "needs approval"),
            ExecError::State(_) | ExecError::Remote(_) => (ErrorKind::Internal, "internal error"),
        };
        let subject = match &e {
            ExecError::PlanNotFound { .. } => Some("plan"),
            ExecError::WorkflowNotFound { .. } => Some("workflow"),
            ExecError::ApprovalNotFound { .. } => Some("approval request"),
            _ => None,
        };
        Error {
            subject,
            ..Error::new(kind, title, e.to_string())
        }
    }
}

impl From<engine::state::StateError> for Error {
    fn from(e: engine::state::StateError) -> Error {
        ExecError::from(e).into()
    }
}

impl From<crate::ValidateError> for Error {
    fn from(e: crate::ValidateError) -> Error {
        match e {
            crate::ValidateError::Busy(m) => Error::new(ErrorKind::Busy, "busy, retry", m),
            crate::ValidateError::Rejected(m) => Error::bad(m),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::{Error, ErrorKind};
    use engine::exec::ExecError;

    #[test]
    fn each_engine_refusal_has_the_kind_its_edges_need() {
        let kind = |e: ExecError| Error::from(e).kind();
        assert_eq!(
            kind(ExecError::WorkflowNotFound {
                id: "wf-x".into(),
                known: vec![]
            }),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(ExecError::StalePlan {
                plan: "p".into(),
                workspace: "w".into(),
                planned: 1,
                current: 2
            }),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind(ExecError::NotAllowed("x".into())),
            ErrorKind::Forbidden
        );
        assert_eq!(kind(ExecError::Remote("down".into())), ErrorKind::Internal);
        let e = Error::from(ExecError::Finished {
            id: "wf-1".into(),
            status: "succeeded",
            verb: "cancel",
        });
        assert_eq!(
            (e.kind(), e.title()),
            (ErrorKind::Conflict, "workflow finished")
        );
        assert_eq!(
            e.to_string(),
            "workflow wf-1 is succeeded; there is nothing to cancel"
        );
    }
}
