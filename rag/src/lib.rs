//! Docs retrieval for Provisioning: the shipped docs and schemas (plus a user's own folder) are
//! chunked by heading, embedded with an [`Embedder`], stored in a [`DocStore`] and a
//! [`VectorIndex`], and searched with BM25 and dense retrieval fused by reciprocal rank.
//! Every result carries a citation (doc path, heading path, line range).
//!
//! I/O goes only through the traits handed in (`Embedder`, `DocStore`, `VectorIndex`); the
//! SurrealDB, Qdrant and fastembed implementations live here too, and the binary picks them.

pub mod bm25;
pub mod chunk;
pub mod corpus;
pub mod embed;
pub mod eval;
pub mod hybrid;
pub mod ingest;
pub mod meta;
pub mod qdrant;
pub mod store;
pub mod surreal;

pub use chunk::{Chunk, ChunkOptions};
pub use corpus::{Doc, DocMeta};
pub use embed::{Embedder, FastEmbedder, ModelFiles};
pub use hybrid::{Filter, Hit, Mode, Retriever, SearchOptions, SearchResults};
pub use ingest::{IndexReport, sync};
pub use store::{DocStore, MemIndex, MemStore, StoredDoc, VectorIndex, VectorItem};

/// Largest query accepted, in bytes: longer text is not a question.
pub const MAX_QUERY_BYTES: usize = 2048;
/// Most results one search returns; larger `k` is clamped with a notice.
pub const MAX_K: usize = 50;

/// Errors of the docs retrieval.
#[derive(Debug, thiserror::Error)]
pub enum RagError {
    #[error("the query is empty; expected a question or keywords, e.g. `hetzner zones`")]
    EmptyQuery,
    #[error(
        "the query is {len} bytes; at most {max} bytes are accepted (ask a question, not a document)"
    )]
    QueryTooLong { len: usize, max: usize },
    #[error("`k` must be at least 1 (got 0); at most {max} results are returned")]
    ZeroK { max: usize },
    #[error("unknown {what} `{got}` in the filter; expected one of {expected}")]
    UnknownFilter {
        what: &'static str,
        got: String,
        expected: String,
    },
    #[error("cannot load the embedding model from `{path}`: {message}")]
    Model { path: String, message: String },
    #[error("embedding failed: {0}")]
    Embed(String),
    #[error("the docs index at {location} is busy: another process has it open{holder}")]
    Busy { location: String, holder: String },
    #[error("docs index backend ({backend}): {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
    #[error("the stored docs index is corrupt ({what}): {message}")]
    Corrupt { what: String, message: String },
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    EvalSet {
        path: String,
        line: usize,
        message: String,
    },
}

pub type RagResult<T> = Result<T, RagError>;
