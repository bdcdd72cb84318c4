//! The storage traits: [`DocStore`] keeps what was indexed (documents with their content hash
//! and chunks), [`VectorIndex`] keeps chunk vectors and finds the nearest ones. In-memory
//! implementations for tests; [`MemIndex`] is also the exact (brute-force) reference search.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::RagResult;
use crate::chunk::Chunk;
use crate::meta::Filter;

/// What the store remembers about one indexed document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDoc {
    pub path: String,
    /// SHA-256 of the text that was chunked.
    pub hash: String,
    /// The embedder that made its vectors (`None`: keyword-only, no vectors).
    pub model: Option<String>,
    /// The vector index that holds them.
    pub vectors: Option<String>,
    pub chunks: usize,
}

/// Documents and their chunks, as indexed.
#[async_trait]
pub trait DocStore: Send + Sync {
    async fn docs(&self) -> RagResult<Vec<StoredDoc>>;
    /// Every chunk, in document and chunk order.
    async fn chunks(&self) -> RagResult<Vec<Chunk>>;
    /// Replaces a document's record and chunks.
    async fn put(&self, doc: StoredDoc, chunks: &[Chunk]) -> RagResult<()>;
    async fn remove(&self, path: &str) -> RagResult<()>;
}

/// A chunk with its vector; the chunk's fields are the payload a citation needs.
#[derive(Debug, Clone)]
pub struct VectorItem {
    pub chunk: Chunk,
    pub vector: Vec<f32>,
}

/// Nearest-neighbour search over chunk vectors (cosine similarity).
#[async_trait]
pub trait VectorIndex: Send + Sync {
    /// Names the index and where it is, e.g. `surrealdb-hnsw` or `qdrant:http://...#docs`.
    fn name(&self) -> String;
    async fn upsert(&self, items: &[VectorItem]) -> RagResult<()>;
    async fn remove_doc(&self, doc: &str) -> RagResult<()>;
    /// The `k` chunks nearest to `vector` that pass `filter`: (chunk id, cosine similarity),
    /// most similar first.
    async fn search(
        &self,
        vector: &[f32],
        k: usize,
        filter: &Filter,
    ) -> RagResult<Vec<(String, f32)>>;
}

/// An in-memory [`DocStore`].
#[derive(Debug, Default)]
pub struct MemStore {
    docs: Mutex<BTreeMap<String, (StoredDoc, Vec<Chunk>)>>,
}

#[async_trait]
impl DocStore for MemStore {
    async fn docs(&self) -> RagResult<Vec<StoredDoc>> {
        let docs = self.docs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(docs.values().map(|(d, _)| d.clone()).collect())
    }

    async fn chunks(&self) -> RagResult<Vec<Chunk>> {
        let docs = self.docs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(docs.values().flat_map(|(_, c)| c.iter().cloned()).collect())
    }

    async fn put(&self, doc: StoredDoc, chunks: &[Chunk]) -> RagResult<()> {
        let mut docs = self.docs.lock().unwrap_or_else(PoisonError::into_inner);
        docs.insert(doc.path.clone(), (doc, chunks.to_vec()));
        Ok(())
    }

    async fn remove(&self, path: &str) -> RagResult<()> {
        let mut docs = self.docs.lock().unwrap_or_else(PoisonError::into_inner);
        docs.remove(path);
        Ok(())
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// An in-memory [`VectorIndex`] that compares the query with every vector: exact search.
#[derive(Debug, Default)]
pub struct MemIndex {
    items: Mutex<BTreeMap<String, VectorItem>>,
}

impl MemIndex {
    pub fn len(&self) -> usize {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl VectorIndex for MemIndex {
    fn name(&self) -> String {
        "memory-exact".into()
    }

    async fn upsert(&self, items: &[VectorItem]) -> RagResult<()> {
        let mut map = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        for item in items {
            map.insert(item.chunk.id.clone(), item.clone());
        }
        Ok(())
    }

    async fn remove_doc(&self, doc: &str) -> RagResult<()> {
        let mut map = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, item| item.chunk.doc != doc);
        Ok(())
    }

    async fn search(
        &self,
        vector: &[f32],
        k: usize,
        filter: &Filter,
    ) -> RagResult<Vec<(String, f32)>> {
        let map = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let mut scored: Vec<(String, f32)> = map
            .values()
            .filter(|item| filter.matches(&item.chunk))
            .map(|item| (item.chunk.id.clone(), cosine(vector, &item.vector)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        Ok(scored)
    }
}
