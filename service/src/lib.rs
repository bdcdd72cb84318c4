//! The application layer: every use case of Provisioning once (validate, plan, decide, approve,
//! apply, follow, inspect, search), each authorizing and auditing in one place and returning a
//! view. The MCP tools (`tools`), the REST handlers and the CLI (`server`) are adapters that
//! parse their input, call one function here and format what comes back.
//!
//! [`App`] is the application one server (or one CLI run) holds: the engine, the validator,
//! the docs index, the policy set and the server's own settings (read-only, limits).

mod app;
mod docs;

pub use app::{App, ValidateError};
pub use docs::{BUILDING_NOTICE, Docs, DocsInit, KeywordInit};
pub use engine::authz::Caller;
