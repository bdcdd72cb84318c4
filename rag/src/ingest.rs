//! Incremental indexing: documents whose content hash (and chunker settings, model and vector
//! index) match what is stored are left alone; changed and new ones are chunked, embedded and
//! replaced; documents that disappeared are removed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::chunk::{Chunk, ChunkOptions};
use crate::corpus::Doc;
use crate::embed::Embedder;
use crate::store::{DocStore, StoredDoc, VectorIndex, VectorItem};
use crate::{RagError, RagResult};

/// Bump when chunking changes, so stored chunks are rebuilt.
const CHUNKER_VERSION: u32 = 1;

/// What one indexing run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    /// Chunks in the index after the run.
    pub chunks: usize,
    /// Chunks embedded in this run (0 when nothing changed, or without a model).
    pub embedded: usize,
    /// The embedder used, `None` for keyword-only.
    pub model: Option<String>,
    pub vectors: Option<String>,
    pub seconds: f64,
}

fn fingerprint(doc: &Doc, options: ChunkOptions) -> String {
    format!("{}:c{CHUNKER_VERSION}:{}", doc.hash, options.max_chars)
}

/// Brings `store` and `index` in line with `docs`. Without an embedder (no model), documents
/// are indexed for keyword search only, and vectors of unchanged documents are kept for when
/// the model is back.
pub async fn sync(
    docs: &[Doc],
    store: &dyn DocStore,
    index: Option<&dyn VectorIndex>,
    embedder: Option<Arc<dyn Embedder>>,
    options: ChunkOptions,
) -> RagResult<IndexReport> {
    let started = std::time::Instant::now();
    let stored: BTreeMap<String, StoredDoc> = store
        .docs()
        .await?
        .into_iter()
        .map(|d| (d.path.clone(), d))
        .collect();
    let embedder = embedder.filter(|_| index.is_some());
    let model = embedder.as_ref().map(|e| e.id().to_string());
    let vectors = embedder.as_ref().and(index).map(|i| i.name());
    let mut report = IndexReport {
        model: model.clone(),
        vectors: vectors.clone(),
        ..IndexReport::default()
    };

    let mut changed: Vec<(&Doc, String, Vec<Chunk>)> = Vec::new();
    for doc in docs {
        let hash = fingerprint(doc, options);
        match stored.get(&doc.path) {
            Some(old)
                if old.hash == hash
                    && (model.is_none() || (old.model == model && old.vectors == vectors)) =>
            {
                report.unchanged += 1;
                report.chunks += old.chunks;
            }
            old => {
                if old.is_some() {
                    report.updated.push(doc.path.clone());
                } else {
                    report.added.push(doc.path.clone());
                }
                changed.push((doc, hash, doc.chunks(options)));
            }
        }
    }

    // Embed every changed chunk in one go: sorting by length across documents batches well.
    let mut vectors_by_chunk: Vec<Vec<f32>> = Vec::new();
    if let Some(embedder) = &embedder {
        let texts: Vec<String> = changed
            .iter()
            .flat_map(|(_, _, chunks)| chunks.iter().map(Chunk::embed_text))
            .collect();
        if !texts.is_empty() {
            let embedder = Arc::clone(embedder);
            vectors_by_chunk = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                embedder.embed(&refs)
            })
            .await
            .map_err(|e| RagError::Embed(e.to_string()))??;
        }
    }
    let mut next_vector = vectors_by_chunk.into_iter();
    for (doc, hash, chunks) in changed {
        if let Some(index) = index {
            index.remove_doc(&doc.path).await?;
            if embedder.is_some() {
                let items: Vec<VectorItem> = chunks
                    .iter()
                    .zip(next_vector.by_ref())
                    .map(|(chunk, vector)| VectorItem {
                        chunk: chunk.clone(),
                        vector,
                    })
                    .collect();
                report.embedded += items.len();
                index.upsert(&items).await?;
            }
        }
        report.chunks += chunks.len();
        store
            .put(
                StoredDoc {
                    path: doc.path.clone(),
                    hash,
                    model: model.clone(),
                    vectors: vectors.clone(),
                    chunks: chunks.len(),
                },
                &chunks,
            )
            .await?;
    }

    let present: HashSet<&str> = docs.iter().map(|d| d.path.as_str()).collect();
    for path in stored.keys().filter(|p| !present.contains(p.as_str())) {
        if let Some(index) = index {
            index.remove_doc(path).await?;
        }
        store.remove(path).await?;
        report.removed.push(path.clone());
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::embed::HashEmbedder;
    use crate::meta::Filter;
    use crate::store::{MemIndex, MemStore};

    fn docs(redis: &str) -> Vec<Doc> {
        vec![
            Doc::new("taskservs/redis.md", redis),
            Doc::new(
                "providers/hetzner.md",
                "# Hetzner\n\n## Zones\n\nhel1, fsn1, nbg1.\n",
            ),
            Doc::new("guide.md", "# Guide\n\nStart here.\n"),
        ]
    }

    #[tokio::test]
    async fn only_changed_docs_are_re_embedded_and_removed_ones_go() {
        let store = MemStore::default();
        let index = MemIndex::default();
        let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder { dim: 64 });
        let opts = ChunkOptions::default();
        let first = sync(
            &docs("# Redis\n\nIn-memory store.\n"),
            &store,
            Some(&index),
            Some(embedder.clone()),
            opts,
        )
        .await
        .unwrap();
        assert_eq!(first.added.len(), 3);
        assert_eq!(first.embedded, first.chunks);
        let n = index.len();
        assert!(n >= 3);

        let again = sync(
            &docs("# Redis\n\nIn-memory store.\n"),
            &store,
            Some(&index),
            Some(embedder.clone()),
            opts,
        )
        .await
        .unwrap();
        assert_eq!((again.unchanged, again.embedded), (3, 0));
        assert!(again.added.is_empty() && again.updated.is_empty());

        let mut changed = docs("# Redis\n\nIn-memory store with AOF persistence.\n");
        changed.pop();
        let third = sync(&changed, &store, Some(&index), Some(embedder.clone()), opts)
            .await
            .unwrap();
        assert_eq!(third.updated, vec!["taskservs/redis.md"]);
        assert_eq!(third.removed, vec!["guide.md"]);
        assert_eq!(third.embedded, 1);
        assert_eq!(third.unchanged, 1);
        let hits = index
            .search(
                &embedder.embed(&["Start here"]).unwrap()[0],
                10,
                &Filter::default(),
            )
            .await
            .unwrap();
        assert!(hits.iter().all(|(id, _)| !id.starts_with("guide.md")));
        assert_eq!(store.docs().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn keyword_only_runs_keep_vectors_and_a_model_later_embeds() {
        let store = MemStore::default();
        let index = MemIndex::default();
        let opts = ChunkOptions::default();
        let first = sync(&docs("# Redis\n"), &store, Some(&index), None, opts)
            .await
            .unwrap();
        assert_eq!((first.embedded, first.model.clone()), (0, None));
        assert!(index.is_empty());
        let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder { dim: 64 });
        let second = sync(
            &docs("# Redis\n"),
            &store,
            Some(&index),
            Some(embedder),
            opts,
        )
        .await
        .unwrap();
        assert_eq!(second.updated.len(), 3, "docs without vectors get them");
        assert!(second.embedded > 0);
        let third = sync(&docs("# Redis\n"), &store, Some(&index), None, opts)
            .await
            .unwrap();
        assert_eq!(third.unchanged, 3);
        assert_eq!(
            index.len(),
            second.embedded,
            "keyword-only runs keep vectors"
        );
    }
}
