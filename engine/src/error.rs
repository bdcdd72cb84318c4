//! The engine's error type: failures to run validation at all, as opposed to diagnostics about
//! the input.

/// Something went wrong around the input rather than in it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Knowledge(#[from] knowledge::KnowledgeError),
    #[error("cannot start the Nickel sandbox `{program}`: {source}")]
    SandboxSpawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the server is already evaluating {running} configs, its limit; retry in a few seconds"
    )]
    Busy { running: usize },
    #[error("the Nickel sandbox answered with something unreadable: {0}")]
    SandboxProtocol(String),
    #[error("cannot convert the config to {format}: {message}")]
    Export { format: String, message: String },
}
