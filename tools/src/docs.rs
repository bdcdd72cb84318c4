//! Docs retrieval for the tools: the retriever is built once, in the background when the
//! server starts (indexing embeds every chunk the first time), and shared by every session.
//! A call that arrives before it is ready waits for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rag::Retriever;
use tokio::sync::OnceCell;

/// Builds the retriever: opens the index, brings it up to date, loads the model (or not).
pub type DocsInit =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Retriever, String>> + Send>> + Send + Sync>;

/// The docs index of one server.
pub struct Docs {
    cell: OnceCell<Arc<Retriever>>,
    init: DocsInit,
}

impl std::fmt::Debug for Docs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docs")
            .field("ready", &self.cell.initialized())
            .finish_non_exhaustive()
    }
}

impl Docs {
    pub fn new(init: DocsInit) -> Docs {
        Docs {
            cell: OnceCell::new(),
            init,
        }
    }

    /// A retriever over a fixed set of chunks (tests, benchmarks).
    pub fn ready(retriever: Retriever) -> Docs {
        Docs {
            cell: OnceCell::new_with(Some(Arc::new(retriever))),
            init: Box::new(|| Box::pin(async { Err("already built".to_string()) })),
        }
    }

    /// The retriever, building it on first use. A failed build is retried on the next call.
    pub async fn retriever(&self) -> Result<Arc<Retriever>, String> {
        self.cell
            .get_or_try_init(|| async { (self.init)().await.map(Arc::new) })
            .await
            .cloned()
            .map_err(|e| format!("the docs index is unavailable: {e}"))
    }
}
