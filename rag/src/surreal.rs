//! The embedded default: documents, chunks and vectors in SurrealDB, vectors under an HNSW
//! index (cosine). Kept in its own database folder (`DATA_DIR/rag`) beside the state, so a
//! docs search never waits for an apply that holds the state store.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::{Value, json};
use surrealdb::Surreal;
use surrealdb::engine::any::{self, Any};

use crate::chunk::Chunk;
use crate::meta::Filter;
use crate::store::{DocStore, StoredDoc, VectorIndex, VectorItem};
use crate::{RagError, RagResult};

const NAMESPACE: &str = "provisioning";
const DATABASE: &str = "rag";
/// HNSW build and search parameters.
const HNSW_M: usize = 16;
const HNSW_EFC: usize = 200;
const HNSW_EF: usize = 100;

fn backend(err: impl std::fmt::Display) -> RagError {
    RagError::Backend {
        backend: "surrealdb",
        message: err.to_string(),
    }
}

/// Where the docs index lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An embedded surrealkv database in this folder.
    Embedded(PathBuf),
    /// In memory (tests, benchmarks).
    Memory,
}

/// SurrealDB holding the [`DocStore`] tables and the [`VectorIndex`] table.
#[derive(Debug, Clone)]
pub struct SurrealRag {
    db: Surreal<Any>,
    dim: usize,
    location: Location,
}

impl SurrealRag {
    /// Opens (creating) the database; `dim` is the vector dimension of the HNSW index.
    pub async fn open(location: Location, dim: usize) -> RagResult<SurrealRag> {
        let db = match &location {
            Location::Memory => any::connect("mem://").await.map_err(backend)?,
            Location::Embedded(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| RagError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
                match any::connect(format!("surrealkv://{}", dir.display())).await {
                    Ok(db) => db,
                    Err(err) => {
                        let text = err.to_string();
                        if text.contains("already in use") || text.to_lowercase().contains("lock") {
                            return Err(RagError::Busy {
                                location: format!("surrealkv://{}", dir.display()),
                                holder: String::new(),
                            });
                        }
                        return Err(backend(err));
                    }
                }
            }
        };
        db.use_ns(NAMESPACE)
            .use_db(DATABASE)
            .await
            .map_err(backend)?;
        let rag = SurrealRag { db, dim, location };
        rag.run(
            &format!(
                "DEFINE TABLE IF NOT EXISTS rag_doc SCHEMALESS;
                 DEFINE TABLE IF NOT EXISTS rag_chunk SCHEMALESS;
                 DEFINE TABLE IF NOT EXISTS {vec} SCHEMALESS;
                 DEFINE INDEX IF NOT EXISTS rag_doc_path ON rag_doc FIELDS path UNIQUE;
                 DEFINE INDEX IF NOT EXISTS rag_chunk_doc ON rag_chunk FIELDS doc;
                 DEFINE INDEX IF NOT EXISTS {vec}_doc ON {vec} FIELDS doc;
                 DEFINE INDEX IF NOT EXISTS {vec}_hnsw ON {vec} FIELDS embedding HNSW DIMENSION {dim} DIST COSINE TYPE F32 EFC {HNSW_EFC} M {HNSW_M};",
                vec = rag.vec_table()
            ),
            json!({}),
        )
        .await?;
        Ok(rag)
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// One vector table per dimension, so a model of another size gets its own index.
    fn vec_table(&self) -> String {
        format!("rag_vec_{}", self.dim)
    }

    async fn run(&self, query: &str, vars: Value) -> RagResult<surrealdb::IndexedResults> {
        let mut response = self.db.query(query).bind(vars).await.map_err(backend)?;
        let mut errors: Vec<(usize, String)> = response
            .take_errors()
            .into_iter()
            .map(|(i, e)| (i, e.to_string()))
            .collect();
        errors.sort();
        let cause = errors
            .iter()
            .find(|(_, e)| !e.contains("due to a failed transaction"))
            .or(errors.first());
        match cause {
            None => Ok(response),
            Some((_, e)) => Err(backend(e)),
        }
    }

    async fn values(&self, query: &str, vars: Value) -> RagResult<Vec<Value>> {
        let mut response = self.run(query, vars).await?;
        let values: Vec<Value> = response.take(0).map_err(backend)?;
        Ok(values)
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> RagResult<T> {
    serde_json::from_value(v).map_err(|e| RagError::Corrupt {
        what: what.to_string(),
        message: e.to_string(),
    })
}

#[async_trait]
impl DocStore for SurrealRag {
    async fn docs(&self) -> RagResult<Vec<StoredDoc>> {
        self.values("SELECT VALUE data FROM rag_doc", json!({}))
            .await?
            .into_iter()
            .map(|v| decode("document record", v))
            .collect()
    }

    async fn chunks(&self) -> RagResult<Vec<Chunk>> {
        self.values(
            "SELECT data, doc, ord FROM rag_chunk ORDER BY doc, ord",
            json!({}),
        )
        .await?
        .into_iter()
        .map(|mut v| {
            decode(
                "chunk",
                v.get_mut("data").map(Value::take).unwrap_or_default(),
            )
        })
        .collect()
    }

    async fn put(&self, doc: StoredDoc, chunks: &[Chunk]) -> RagResult<()> {
        let rows: Vec<Value> = chunks
            .iter()
            .enumerate()
            .map(|(ord, c)| json!({ "doc": c.doc, "ord": ord, "data": c }))
            .collect();
        self.run(
            "BEGIN;
             DELETE rag_doc WHERE path = $path;
             DELETE rag_chunk WHERE doc = $path;
             CREATE rag_doc CONTENT { path: $path, data: $doc };
             IF array::len($rows) > 0 { INSERT INTO rag_chunk $rows };
             COMMIT;",
            json!({ "path": doc.path, "doc": doc, "rows": rows }),
        )
        .await
        .map(|_| ())
    }

    async fn remove(&self, path: &str) -> RagResult<()> {
        self.run(
            "BEGIN; DELETE rag_doc WHERE path = $path; DELETE rag_chunk WHERE doc = $path; COMMIT;",
            json!({ "path": path }),
        )
        .await
        .map(|_| ())
    }
}

/// `AND field = $field` for each filter value, with the bindings.
fn filter_clause(filter: &Filter, vars: &mut serde_json::Map<String, Value>) -> String {
    let mut out = String::new();
    for (field, value) in [
        ("provider", &filter.provider),
        ("taskserv", &filter.taskserv),
        ("kind", &filter.kind),
    ] {
        if let Some(v) = value {
            out.push_str(&format!(" AND {field} = $f_{field}"));
            vars.insert(format!("f_{field}"), json!(v));
        }
    }
    out
}

#[async_trait]
impl VectorIndex for SurrealRag {
    fn name(&self) -> String {
        format!("surrealdb-hnsw-{}", self.dim)
    }

    async fn upsert(&self, items: &[VectorItem]) -> RagResult<()> {
        for item in items {
            if item.vector.len() != self.dim {
                return Err(backend(format!(
                    "vector of chunk `{}` has {} dimensions; the index has {}",
                    item.chunk.id,
                    item.vector.len(),
                    self.dim
                )));
            }
        }
        for batch in items.chunks(256) {
            let rows: Vec<Value> = batch
                .iter()
                .map(|i| {
                    json!({
                        "cid": i.chunk.id,
                        "doc": i.chunk.doc,
                        "kind": i.chunk.kind,
                        "provider": i.chunk.provider,
                        "taskserv": i.chunk.taskserv,
                        "embedding": i.vector,
                    })
                })
                .collect();
            let ids: Vec<&str> = batch.iter().map(|i| i.chunk.id.as_str()).collect();
            self.run(
                &format!(
                    "BEGIN; DELETE {vec} WHERE cid IN $ids; INSERT INTO {vec} $rows; COMMIT;",
                    vec = self.vec_table()
                ),
                json!({ "ids": ids, "rows": rows }),
            )
            .await?;
        }
        Ok(())
    }

    async fn remove_doc(&self, doc: &str) -> RagResult<()> {
        self.run(
            &format!("DELETE {} WHERE doc = $doc", self.vec_table()),
            json!({ "doc": doc }),
        )
        .await
        .map(|_| ())
    }

    async fn search(
        &self,
        vector: &[f32],
        k: usize,
        filter: &Filter,
    ) -> RagResult<Vec<(String, f32)>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut vars = serde_json::Map::new();
        vars.insert("v".into(), json!(vector));
        let clause = filter_clause(filter, &mut vars);
        // With a filter the graph search runs wider, so enough neighbours pass it.
        let (k_search, ef) = if filter.is_empty() {
            (k, HNSW_EF.max(k))
        } else {
            ((k * 8).min(2000), (HNSW_EF * 4).max(k * 8))
        };
        let query = format!(
            "SELECT cid, vector::distance::knn() AS dist FROM {vec} WHERE embedding <|{k_search},{ef}|> $v{clause} ORDER BY dist",
            vec = self.vec_table()
        );
        let rows = self.values(&query, Value::Object(vars)).await?;
        let mut out: Vec<(String, f32)> = rows
            .into_iter()
            .filter_map(|row| {
                let id = row.get("cid")?.as_str()?.to_string();
                let dist = row.get("dist")?.as_f64()?;
                Some((id, (1.0 - dist) as f32))
            })
            .collect();
        out.truncate(k);
        Ok(out)
    }
}

/// The default folder of the docs index under a data folder.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("rag")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::chunk::ChunkOptions;
    use crate::corpus::Doc;
    use crate::embed::{Embedder, HashEmbedder};
    use crate::store::MemIndex;
    use std::sync::Arc;

    fn corpus() -> Vec<Doc> {
        vec![
            Doc::new(
                "taskservs/redis.md",
                "# Redis\n\n## Persistence\n\nAOF and RDB snapshots.\n\n## Health\n\nredis-cli ping answers PONG.\n",
            ),
            Doc::new(
                "providers/hetzner.md",
                "# Hetzner\n\n## Zones\n\nhel1 in Helsinki, fsn1 in Falkenstein.\n\n## Plans\n\ncx22 has 2 vCPU.\n",
            ),
            Doc::new(
                "taskservs/nginx.md",
                "# Nginx\n\n## Config\n\nserver blocks and upstreams.\n",
            ),
        ]
    }

    #[tokio::test]
    async fn stores_docs_chunks_and_finds_vectors_like_exact_search() {
        let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder { dim: 32 });
        let db = SurrealRag::open(Location::Memory, 32).await.unwrap();
        let exact = MemIndex::default();
        let opts = ChunkOptions::default();
        let report = crate::ingest::sync(&corpus(), &db, Some(&db), Some(embedder.clone()), opts)
            .await
            .unwrap();
        crate::ingest::sync(
            &corpus(),
            &MemStore::default(),
            Some(&exact),
            Some(embedder.clone()),
            opts,
        )
        .await
        .unwrap();
        assert_eq!(report.chunks, 5);
        let chunks = db.chunks().await.unwrap();
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[0].doc, "providers/hetzner.md");
        assert_eq!(chunks[0].headings, vec!["Hetzner", "Zones"]);
        let q = embedder
            .embed(&["redis persistence snapshots"])
            .unwrap()
            .remove(0);
        let got = db.search(&q, 3, &Filter::default()).await.unwrap();
        let want = exact.search(&q, 3, &Filter::default()).await.unwrap();
        assert_eq!(got[0].0, want[0].0);
        assert!((got[0].1 - want[0].1).abs() < 1e-3, "{got:?} vs {want:?}");
        let only_nginx = Filter {
            taskserv: Some("nginx".into()),
            ..Filter::default()
        };
        let got = db.search(&q, 3, &only_nginx).await.unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].0.starts_with("taskservs/nginx.md#"));
        // Removing a document removes its chunks and vectors.
        let report = crate::ingest::sync(&corpus()[1..], &db, Some(&db), Some(embedder), opts)
            .await
            .unwrap();
        assert_eq!(report.removed, vec!["taskservs/redis.md"]);
        let got = db.search(&q, 10, &Filter::default()).await.unwrap();
        assert!(
            got.iter()
                .all(|(id, _)| !id.starts_with("taskservs/redis.md"))
        );
        assert_eq!(db.docs().await.unwrap().len(), 2);
    }

    use crate::store::MemStore;
}
