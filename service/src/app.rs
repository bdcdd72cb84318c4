//! The application: the engine (state, providers, policies), the validator, the docs index and
//! the settings of this server, shared by every adapter and session.

use std::sync::Arc;

use engine::exec::Engine;
use engine::{Input, Validation, Validator};

use crate::{Caller, Docs};

/// Shared by every session and adapter of one server.
pub struct App {
    pub engine: Engine,
    pub validator: Arc<Validator>,
    /// Only read tools are listed and callable.
    pub read_only: bool,
    /// Who calls when the transport says nothing (stdio): the person who started the server,
    /// through the agent.
    pub default_caller: Caller,
    /// Largest config text a tool accepts, in bytes.
    pub max_config_bytes: usize,
    /// The docs index (built in the background when the server starts).
    pub docs: Docs,
    /// The Cedar policy set in force (for listing and simulating), when policies are configured.
    pub authz: Option<Arc<engine::authz::CedarAuthorizer>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("read_only", &self.read_only)
            .field("default_caller", &self.default_caller)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Every secret the server knows, to keep out of what it sends.
    pub fn redactor(&self) -> &engine::secrets::Redactor {
        &self.engine.redactor
    }

    /// Validates config text from outside: no imports, the validator's limits, off the async
    /// threads (evaluation runs in a sandboxed child process).
    pub async fn validate(&self, config: String) -> Result<Validation, ValidateError> {
        if config.len() > self.max_config_bytes {
            return Err(ValidateError::Rejected(format!(
                "config is {} bytes; the largest accepted is {} bytes",
                config.len(),
                self.max_config_bytes
            )));
        }
        if self.validator.is_busy() {
            return Err(ValidateError::Busy(
                engine::EngineError::Busy {
                    running: self.validator.limits().max_concurrent,
                }
                .to_string(),
            ));
        }
        let validator = self.validator.clone();
        tokio::task::spawn_blocking(move || {
            validator
                .validate(&Input {
                    source: &config,
                    name: "<config>",
                    imports_from: None,
                })
                .map_err(|e| match e {
                    engine::EngineError::Busy { .. } => ValidateError::Busy(e.to_string()),
                    e => ValidateError::Rejected(e.to_string()),
                })
        })
        .await
        .map_err(|e| ValidateError::Rejected(format!("validation did not finish: {e}")))?
    }
}

/// Why a config could not be validated at all (its diagnostics are a [`Validation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidateError {
    /// The input itself was refused (too large) or the evaluator could not run.
    Rejected(String),
    /// Every evaluation slot is taken: retry shortly.
    Busy(String),
}

impl std::fmt::Display for ValidateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValidateError::Rejected(m) | ValidateError::Busy(m) => f.write_str(m),
        }
    }
}

impl From<ValidateError> for String {
    fn from(e: ValidateError) -> String {
        e.to_string()
    }
}
