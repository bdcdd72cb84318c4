//! The Provisioning engine: Nickel evaluation in a sandbox, structured diagnostics, the typed
//! configuration model, validation, the planner, the durable DAG executor, providers and the
//! SurrealDB state store, secret references and the redactor.

pub mod authz;
mod checks;
mod diagnostic;
mod error;
pub mod exec;
pub mod facts;
mod imports;
mod model;
mod nickel_diag;
pub mod plan;
pub mod provider;
pub mod resource;
pub mod runtime;
pub mod sandbox;
pub mod secrets;
pub mod state;
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
