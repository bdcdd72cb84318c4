//! Docs retrieval for the tools: the retriever is built once, in the background when the
//! server starts (indexing embeds every chunk the first time, which takes a minute or more on a
//! small machine), and shared by every session. A search that arrives before it is ready is
//! answered at once by a keyword-only retriever over the same documents (built in milliseconds),
//! with a notice saying so, rather than waiting past a client's request timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rag::Retriever;
use tokio::sync::OnceCell;

/// Builds the retriever: opens the index, brings it up to date, loads the model (or not).
pub type DocsInit =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Retriever, String>> + Send>> + Send + Sync>;

/// Builds a keyword-only retriever over the documents, without the index or the model.
pub type KeywordInit = Box<dyn Fn() -> Result<Retriever, String> + Send + Sync>;

/// The docs index of one server.
pub struct Docs {
    cell: OnceCell<Arc<Retriever>>,
    init: DocsInit,
    keyword: Option<KeywordInit>,
    keyword_cell: std::sync::OnceLock<Result<Arc<Retriever>, String>>,
    /// Why the last build failed, for the notice of keyword-only answers.
    failed: std::sync::Mutex<Option<String>>,
}

/// The notice of an answer given while the index is being built.
pub const BUILDING_NOTICE: &str = "the docs index is still being built (the first build embeds every passage, a minute or two); until it is ready, search is keyword-only (BM25)";

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
            keyword: None,
            keyword_cell: std::sync::OnceLock::new(),
            failed: std::sync::Mutex::new(None),
        }
    }

    /// Answers searches keyword-only, at once, while the index is not ready.
    pub fn with_keyword_fallback(mut self, keyword: KeywordInit) -> Docs {
        self.keyword = Some(keyword);
        self
    }

    /// A retriever over a fixed set of chunks (tests, benchmarks).
    pub fn ready(retriever: Retriever) -> Docs {
        Docs {
            cell: OnceCell::new_with(Some(Arc::new(retriever))),
            init: Box::new(|| Box::pin(async { Err("already built".to_string()) })),
            keyword: None,
            keyword_cell: std::sync::OnceLock::new(),
            failed: std::sync::Mutex::new(None),
        }
    }

    /// The retriever, building it on first use. A failed build is retried on the next call.
    pub async fn retriever(&self) -> Result<Arc<Retriever>, String> {
        let built = self
            .cell
            .get_or_try_init(|| async { (self.init)().await.map(Arc::new) })
            .await
            .cloned()
            .map_err(|e| format!("the docs index is unavailable: {e}"));
        if let Err(e) = &built
            && let Ok(mut failed) = self.failed.lock()
        {
            *failed = Some(e.clone());
        }
        built
    }

    /// The retriever to answer with now: the full one when it is ready; while it is not (it is
    /// being built, or its build failed), the keyword-only one with a notice saying why. Without
    /// a keyword fallback this waits for the full one.
    pub async fn now(&self) -> Result<(Arc<Retriever>, Option<String>), String> {
        if let Some(ready) = self.cell.get() {
            return Ok((ready.clone(), None));
        }
        let Some(keyword) = &self.keyword else {
            return self.retriever().await.map(|r| (r, None));
        };
        let fallback = self
            .keyword_cell
            .get_or_init(|| keyword().map(Arc::new))
            .clone()?;
        let failed = self.failed.lock().ok().and_then(|f| f.clone());
        let notice = match failed {
            Some(why) => format!("{why}; search is keyword-only (BM25)"),
            None => BUILDING_NOTICE.to_string(),
        };
        Ok((fallback, Some(notice)))
    }

    /// The docs search every adapter answers with (the `search_docs` tool, `GET
    /// /api/v1/docs/search`, `provisioning docs search`): the query and `k` checked, the
    /// retriever of the moment, and while the full index is being built the keyword-only
    /// notice first.
    pub async fn search(
        &self,
        query: &str,
        options: &rag::SearchOptions,
    ) -> crate::Result<rag::SearchResults> {
        rag::hybrid::check_query(query).map_err(|e| crate::Error::bad(e.to_string()))?;
        if options.k == 0 {
            return Err(crate::Error::bad(
                rag::RagError::ZeroK { max: rag::MAX_K }.to_string(),
            ));
        }
        let (retriever, building) = self
            .now()
            .await
            .map_err(|e| crate::Error::new(crate::ErrorKind::Busy, "docs unavailable", e))?;
        let mut results = retriever
            .search(query, options)
            .await
            .map_err(|e| crate::Error::bad(e.to_string()))?;
        if let Some(notice) = building {
            results.notices.insert(0, notice);
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::{BUILDING_NOTICE, Docs};

    fn keyword_retriever() -> rag::Retriever {
        let docs = [rag::corpus::Doc::new(
            "guides/zones.md",
            "# Zones\n\nHetzner offers hel1 in Helsinki and fsn1 in Falkenstein.\n",
        )];
        let chunks = docs
            .iter()
            .flat_map(|d| d.chunks(rag::ChunkOptions::default()))
            .collect();
        rag::Retriever::new(chunks, None, None, rag::hybrid::Tuning::default(), None)
    }

    #[tokio::test]
    async fn a_search_before_the_index_is_ready_is_answered_keyword_only_at_once() {
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let wait = std::sync::Mutex::new(Some(wait));
        let docs = std::sync::Arc::new(
            Docs::new(Box::new(move || {
                let wait = wait.lock().unwrap().take();
                Box::pin(async move {
                    if let Some(wait) = wait {
                        let _ = wait.await;
                    }
                    Err("the build was stopped".to_string())
                })
            }))
            .with_keyword_fallback(Box::new(|| Ok(keyword_retriever()))),
        );
        // The slow build is under way (as the server starts it in the background).
        let building = {
            let docs = docs.clone();
            tokio::spawn(async move { docs.retriever().await })
        };
        tokio::task::yield_now().await;
        let (retriever, notice) = docs.now().await.unwrap();
        assert_eq!(notice.as_deref(), Some(BUILDING_NOTICE));
        let hits = retriever
            .search("helsinki zone", &rag::SearchOptions::default())
            .await
            .unwrap();
        assert_eq!(hits.hits[0].doc, "guides/zones.md");
        // The build fails: later answers say why, still at once.
        let _ = release.send(());
        assert!(building.await.unwrap().is_err());
        let (_, notice) = docs.now().await.unwrap();
        let notice = notice.unwrap();
        assert!(
            notice.contains("the build was stopped") && notice.contains("keyword-only"),
            "{notice}"
        );
    }

    #[tokio::test]
    async fn a_ready_index_answers_without_a_notice() {
        let docs = Docs::ready(keyword_retriever());
        let (_, notice) = docs.now().await.unwrap();
        assert_eq!(notice, None);
    }
}
