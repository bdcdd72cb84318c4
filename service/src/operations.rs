//! The use cases a command line needs, as one trait: [`App`] answers them from this machine's
//! state; the CLI's HTTP client (`--server`, or the local server's socket) answers the same
//! questions from a running server. A command is written once against `&dyn Operations`.

use async_trait::async_trait;
use engine::state::WorkflowRecord;

use crate::{App, Caller, Result, WorkflowView};

#[async_trait]
pub trait Operations: Send + Sync {
    /// Now, in milliseconds since the Unix epoch, by the clock the records were written with.
    fn now_ms(&self) -> u64;
    /// The newest `limit` workflows, newest first.
    async fn workflows(&self, limit: usize) -> Result<Vec<WorkflowRecord>>;
    /// One workflow with its steps and latest events.
    async fn workflow(&self, id: &str) -> Result<WorkflowView>;
    /// Asks a running workflow to stop, as `caller` (a server decides who calls by itself).
    async fn cancel(&self, caller: &Caller, id: &str) -> Result<()>;
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
}
