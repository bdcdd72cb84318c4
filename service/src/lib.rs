//! The application layer: every use case of Provisioning once (validate, plan, decide, approve,
//! apply, follow, inspect, search), each authorizing and auditing in one place and returning a
//! view. The MCP tools (`tools`), the REST handlers and the CLI (`server`) are adapters that
//! parse their input, call one function here and format what comes back.
//!
//! [`App`] is the application one server (or one CLI run) holds: the engine, the validator,
//! the docs index, the policy set and the server's own settings (read-only, limits). Errors
//! are one [`Error`] with an [`ErrorKind`] each edge converts once.

mod app;
mod approvals;
mod audit;
mod docs;
mod error;
mod operations;
mod plans;
mod policy;
mod state;
mod workflows;

pub use app::{App, ValidateError};

/// The records and values the use cases speak in, for adapters to format: the engine's types,
/// named here so that an adapter depends on this layer alone.
pub mod model {
    pub use engine::authz::{account_name, plan_action};
    pub use engine::did_you_mean;
    pub use engine::exec::{DriftItem, DriftKind, DriftReport, RunOutcome, gated_message};
    pub use engine::plan::Plan;
    pub use engine::runtime::{rfc3339, utc};
    pub use engine::{Config, Diagnostic, Severity};

    /// Now, in milliseconds since the Unix epoch, by the system clock.
    pub fn now_ms() -> u64 {
        engine::runtime::Clock::now_ms(&engine::runtime::SystemClock)
    }
    pub use engine::secrets::{Redactor, SecretRef, SecretSource, Secrets};
    pub use engine::state::{
        ApprovalRequest, Event, EventKind, Resource, StepRecord, StepStatus, WorkflowRecord,
        WorkflowStatus,
    };
    pub use policies::{Decision, PolicyRef};
}
pub use approvals::{ApprovalView, MAX_COMMENT_BYTES};
pub use audit::AuditCheck;
pub use docs::{BUILDING_NOTICE, Docs, DocsInit, KeywordInit};
pub use engine::authz::Caller;
pub use error::{Error, ErrorKind, Result};
pub use operations::{Checked, Events, Operations, PlanView, Preflight};
pub use plans::{Planned, Start};
pub use policy::WouldDecide;
pub use state::StateView;
pub use workflows::{Continued, Following, RECENT_EVENTS, WorkflowLog, WorkflowPage, WorkflowView};
