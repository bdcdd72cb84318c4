//! The Provisioning engine: Nickel evaluation in a sandbox, structured diagnostics, the typed
//! configuration model and validation. Planning, execution and state arrive with later issues.

mod checks;
mod diagnostic;
mod error;
mod imports;
mod model;
mod nickel_diag;
pub mod sandbox;
mod suggest;
mod validate;

pub use diagnostic::{Diagnostic, Severity, Span};
pub use error::EngineError;
pub use model::{
    Backoff, Cluster, Config, Environment, OnFailure, RetryPolicy, Server, TaskservRef, Workflow,
    Workspace,
};
pub use sandbox::{Limits, Sandbox};
pub use suggest::did_you_mean;
pub use validate::{Input, Validation, Validator};
