//! What is known about a document and what a search may ask of it: [`DocMeta`] (title, kind,
//! provider, taskserv) and [`Filter`]. A leaf module: the corpus, the chunker, the stores and
//! the retriever all build on it, and it on none of them.

use serde::{Deserialize, Serialize};

/// What filters and citations know about a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocMeta {
    pub title: String,
    /// `provider`, `taskserv`, `cluster`, `schema`, `reference`, `policy`, `runbook`, `guide`, ...
    pub kind: String,
    pub provider: Option<String>,
    pub taskserv: Option<String>,
}

/// Restricts results to chunks of documents about a provider, a taskserv, or of a kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub provider: Option<String>,
    pub taskserv: Option<String>,
    pub kind: Option<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.provider.is_none() && self.taskserv.is_none() && self.kind.is_none()
    }
}
