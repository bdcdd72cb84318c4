//! The scale-out vector index: a Qdrant collection (created on first use, cosine distance),
//! one point per chunk with the citation fields as payload, filters as payload conditions.

use async_trait::async_trait;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, CreateCollectionBuilder, DeletePointsBuilder, Distance, Filter as QFilter,
    PointStruct, QueryPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::meta::Filter;
use crate::store::{VectorIndex, VectorItem};
use crate::{RagError, RagResult};

fn backend(err: impl std::fmt::Display) -> RagError {
    RagError::Backend {
        backend: "qdrant",
        message: err.to_string(),
    }
}

/// Chunk vectors in a Qdrant collection.
pub struct QdrantIndex {
    client: Qdrant,
    url: String,
    collection: String,
    dim: usize,
    ready: OnceCell<()>,
}

impl std::fmt::Debug for QdrantIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantIndex")
            .field("url", &self.url)
            .field("collection", &self.collection)
            .finish()
    }
}

impl QdrantIndex {
    /// A client for the gRPC endpoint `url` (e.g. `http://127.0.0.1:6334`); nothing is sent
    /// until the first call. `api_key` comes from the environment, never from a model.
    pub fn new(
        url: &str,
        collection: &str,
        dim: usize,
        api_key: Option<String>,
    ) -> RagResult<QdrantIndex> {
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(backend)?;
        Ok(QdrantIndex {
            client,
            url: url.to_string(),
            collection: collection.to_string(),
            dim,
            ready: OnceCell::new(),
        })
    }

    /// Creates the collection if it does not exist yet.
    async fn ensure(&self) -> RagResult<()> {
        self.ready
            .get_or_try_init(|| async {
                let exists = self
                    .client
                    .collection_exists(self.collection.as_str())
                    .await
                    .map_err(|e| backend(format!("{} is not reachable: {e}", self.url)))?;
                if !exists {
                    let dim = u64::try_from(self.dim).map_err(backend)?;
                    self.client
                        .create_collection(
                            CreateCollectionBuilder::new(self.collection.as_str())
                                .vectors_config(VectorParamsBuilder::new(dim, Distance::Cosine)),
                        )
                        .await
                        .map_err(backend)?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }
}

/// A stable numeric point id for a chunk id.
pub fn point_id(chunk_id: &str) -> u64 {
    let digest = Sha256::digest(chunk_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// The payload stored with a chunk's vector: what a citation and the filters need.
pub fn payload(item: &VectorItem) -> Value {
    let c = &item.chunk;
    json!({
        "cid": c.id,
        "doc": c.doc,
        "title": c.title,
        "heading_path": c.heading_path(),
        "start_line": c.start_line,
        "end_line": c.end_line,
        "kind": c.kind,
        "provider": c.provider,
        "taskserv": c.taskserv,
        "text": c.text,
    })
}

/// Our filter as Qdrant payload conditions (all must hold); `None` without conditions.
pub fn conditions(filter: &Filter) -> Option<QFilter> {
    let conds: Vec<Condition> = [
        ("provider", &filter.provider),
        ("taskserv", &filter.taskserv),
        ("kind", &filter.kind),
    ]
    .into_iter()
    .filter_map(|(field, value)| value.as_ref().map(|v| Condition::matches(field, v.clone())))
    .collect();
    (!conds.is_empty()).then(|| QFilter::must(conds))
}

#[async_trait]
impl VectorIndex for QdrantIndex {
    fn name(&self) -> String {
        format!("qdrant:{}#{}", self.url, self.collection)
    }

    async fn upsert(&self, items: &[VectorItem]) -> RagResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.ensure().await?;
        let mut points = Vec::with_capacity(items.len());
        for item in items {
            let payload = qdrant_client::Payload::try_from(payload(item)).map_err(backend)?;
            points.push(PointStruct::new(
                point_id(&item.chunk.id),
                item.vector.clone(),
                payload,
            ));
        }
        for batch in points.chunks(256) {
            self.client
                .upsert_points(
                    UpsertPointsBuilder::new(self.collection.as_str(), batch.to_vec()).wait(true),
                )
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn remove_doc(&self, doc: &str) -> RagResult<()> {
        self.ensure().await?;
        self.client
            .delete_points(
                DeletePointsBuilder::new(self.collection.as_str())
                    .points(QFilter::must([Condition::matches("doc", doc.to_string())]))
                    .wait(true),
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn search(
        &self,
        vector: &[f32],
        k: usize,
        filter: &Filter,
    ) -> RagResult<Vec<(String, f32)>> {
        self.ensure().await?;
        let mut request = QueryPointsBuilder::new(self.collection.as_str())
            .query(vector.to_vec())
            .limit(u64::try_from(k).unwrap_or(u64::MAX))
            .with_payload(true);
        if let Some(f) = conditions(filter) {
            request = request.filter(f);
        }
        let response = self.client.query(request).await.map_err(backend)?;
        Ok(response
            .result
            .into_iter()
            .filter_map(|point| {
                let cid = point.payload.get("cid").cloned()?;
                match Value::from(cid) {
                    Value::String(id) => Some((id, point.score)),
                    _ => None,
                }
            })
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::chunk::Chunk;

    fn item() -> VectorItem {
        VectorItem {
            chunk: Chunk {
                id: "providers/hetzner.md#2".into(),
                doc: "providers/hetzner.md".into(),
                title: "Hetzner".into(),
                headings: vec!["Hetzner".into(), "Zones".into()],
                text: "hel1".into(),
                start_line: 10,
                end_line: 14,
                kind: "provider".into(),
                provider: Some("hetzner".into()),
                taskserv: None,
            },
            vector: vec![0.5; 4],
        }
    }

    #[test]
    fn payload_carries_the_citation_and_ids_are_stable() {
        let p = payload(&item());
        assert_eq!(p["doc"], "providers/hetzner.md");
        assert_eq!(p["heading_path"], "Hetzner > Zones");
        assert_eq!(
            (p["start_line"].as_u64(), p["end_line"].as_u64()),
            (Some(10), Some(14))
        );
        assert_eq!(p["provider"], "hetzner");
        assert!(qdrant_client::Payload::try_from(p).is_ok());
        assert_eq!(point_id("a#1"), point_id("a#1"));
        assert_ne!(point_id("a#1"), point_id("a#2"));
    }

    #[test]
    fn filters_become_must_conditions() {
        assert!(conditions(&Filter::default()).is_none());
        let f = conditions(&Filter {
            provider: Some("hetzner".into()),
            kind: Some("provider".into()),
            taskserv: None,
        })
        .unwrap();
        assert_eq!(f.must.len(), 2);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_not_a_panic() {
        // Port 1 on loopback: nothing listens there.
        let index = QdrantIndex::new("http://127.0.0.1:1", "docs", 4, None).unwrap();
        let err = index
            .search(&[0.1, 0.2, 0.3, 0.4], 3, &Filter::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("qdrant"), "{err}");
    }
}
