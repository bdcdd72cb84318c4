//! Hybrid retrieval: BM25 and dense (vector index) candidate lists fused by reciprocal rank,
//! optional filters, and results with citations, scores and which retrievers found them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bm25::{Bm25, Bm25Params};
use crate::chunk::Chunk;
use crate::embed::Embedder;
use crate::store::VectorIndex;
use crate::{MAX_K, MAX_QUERY_BYTES, RagError, RagResult};

pub use crate::meta::Filter;

/// Which retrievers a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// BM25 and dense, fused (the default).
    Hybrid,
    /// BM25 only.
    Keyword,
    /// Dense only.
    Dense,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hybrid => "hybrid",
            Mode::Keyword => "keyword",
            Mode::Dense => "dense",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub k: usize,
    pub filter: Filter,
    pub mode: Mode,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            k: 5,
            filter: Filter::default(),
            mode: Mode::Hybrid,
        }
    }
}

/// Fusion and retriever settings.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// The `k` of reciprocal rank fusion: a result at rank r adds `weight / (rrf_k + r)`.
    pub rrf_k: f32,
    pub bm25_weight: f32,
    pub dense_weight: f32,
    /// Candidates taken from each retriever before fusion.
    pub candidates: usize,
    pub bm25: Bm25Params,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            rrf_k: 60.0,
            bm25_weight: 1.0,
            dense_weight: 1.0,
            candidates: 50,
            bm25: Bm25Params::default(),
        }
    }
}

/// A chunk's fused score and where each retriever ranked it.
type Fused = (f32, Option<Ranked>, Option<Ranked>);

/// Where a retriever ranked a hit (1-based) and its own score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ranked {
    pub rank: usize,
    pub score: f32,
}

/// One result: the chunk's text and citation, the fused score and each retriever's rank.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub doc: String,
    pub title: String,
    pub heading_path: String,
    pub start_line: usize,
    pub end_line: usize,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taskserv: Option<String>,
    pub score: f32,
    pub bm25: Option<Ranked>,
    pub dense: Option<Ranked>,
    /// `bm25`, `dense`: the retrievers that returned this chunk.
    pub retrievers: Vec<&'static str>,
    pub chunk_id: String,
    pub text: String,
}

impl Hit {
    /// `doc:start-end (heading path)`.
    pub fn citation(&self) -> String {
        format!(
            "{}:{}-{} ({})",
            self.doc, self.start_line, self.end_line, self.heading_path
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    pub query: String,
    /// The mode asked for.
    pub mode: Mode,
    /// The retrievers that actually ran.
    pub retrievers: Vec<&'static str>,
    pub k: usize,
    pub hits: Vec<Hit>,
    /// Things the caller should know: keyword-only fallback, clamped `k`.
    pub notices: Vec<String>,
}

/// Checks a query: not empty, not longer than [`MAX_QUERY_BYTES`]. Returns it trimmed.
pub fn check_query(query: &str) -> RagResult<&str> {
    let q = query.trim();
    if q.is_empty() {
        return Err(RagError::EmptyQuery);
    }
    if q.len() > MAX_QUERY_BYTES {
        return Err(RagError::QueryTooLong {
            len: q.len(),
            max: MAX_QUERY_BYTES,
        });
    }
    Ok(q)
}

/// Searches the indexed chunks.
pub struct Retriever {
    chunks: Vec<Chunk>,
    by_id: HashMap<String, usize>,
    bm25: Bm25,
    embedder: Option<Arc<dyn Embedder>>,
    index: Option<Arc<dyn VectorIndex>>,
    tuning: Tuning,
    keyword_only: Option<String>,
}

impl std::fmt::Debug for Retriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retriever")
            .field("chunks", &self.chunks.len())
            .field("dense", &self.embedder.is_some())
            .finish()
    }
}

impl Retriever {
    /// A retriever over `chunks`. Dense retrieval needs both an embedder and an index;
    /// without them `keyword_only` says why (it becomes the notice of every search).
    pub fn new(
        chunks: Vec<Chunk>,
        embedder: Option<Arc<dyn Embedder>>,
        index: Option<Arc<dyn VectorIndex>>,
        tuning: Tuning,
        keyword_only: Option<String>,
    ) -> Retriever {
        let headings: Vec<String> = chunks.iter().map(Chunk::heading_path).collect();
        let bm25 = Bm25::build(
            headings
                .iter()
                .zip(&chunks)
                .map(|(h, c)| (h.as_str(), c.text.as_str())),
            tuning.bm25,
        );
        let by_id = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        let dense_ready = embedder.is_some() && index.is_some();
        let keyword_only = if dense_ready {
            None
        } else {
            Some(keyword_only.unwrap_or_else(|| "no embedding model is loaded".into()))
        };
        Retriever {
            chunks,
            by_id,
            bm25,
            embedder: embedder.filter(|_| dense_ready),
            index: index.filter(|_| dense_ready),
            tuning,
            keyword_only,
        }
    }

    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// Whether dense retrieval is available.
    pub fn dense(&self) -> bool {
        self.embedder.is_some()
    }

    /// Why search is keyword-only, if it is.
    pub fn keyword_only_reason(&self) -> Option<&str> {
        self.keyword_only.as_deref()
    }

    pub fn tuning(&self) -> Tuning {
        self.tuning
    }

    fn known(&self, f: impl Fn(&Chunk) -> Option<&str>) -> BTreeSet<&str> {
        self.chunks.iter().filter_map(f).collect()
    }

    /// Rejects filter values that no indexed document has.
    pub fn check_filter(&self, filter: &Filter) -> RagResult<()> {
        let check = |what: &'static str, value: &Option<String>, known: BTreeSet<&str>| match value
        {
            Some(v) if !known.contains(v.as_str()) => Err(RagError::UnknownFilter {
                what,
                got: v.clone(),
                expected: known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            _ => Ok(()),
        };
        check(
            "provider",
            &filter.provider,
            self.known(|c| c.provider.as_deref()),
        )?;
        check(
            "taskserv",
            &filter.taskserv,
            self.known(|c| c.taskserv.as_deref()),
        )?;
        check("kind", &filter.kind, self.known(|c| Some(c.kind.as_str())))
    }

    /// The query's vector, or `None` when dense retrieval is unavailable.
    pub async fn embed_query(&self, query: &str) -> RagResult<Option<Vec<f32>>> {
        let Some(embedder) = &self.embedder else {
            return Ok(None);
        };
        let embedder = Arc::clone(embedder);
        let q = query.to_string();
        let mut v = tokio::task::spawn_blocking(move || embedder.embed(&[q.as_str()]))
            .await
            .map_err(|e| RagError::Embed(e.to_string()))??;
        Ok(v.pop())
    }

    /// Searches with BM25 and/or dense retrieval as `options.mode` asks, fusing by reciprocal
    /// rank. `k` above [`MAX_K`] is clamped with a notice; `k = 0`, an empty or an overlong
    /// query and unknown filter values are errors.
    pub async fn search(&self, query: &str, options: &SearchOptions) -> RagResult<SearchResults> {
        let query = check_query(query)?;
        if options.k == 0 {
            return Err(RagError::ZeroK { max: MAX_K });
        }
        self.check_filter(&options.filter)?;
        let mut notices = Vec::new();
        let k = if options.k > MAX_K {
            notices.push(format!(
                "k = {} is more than the {MAX_K} results a search returns; returning at most {MAX_K}",
                options.k
            ));
            MAX_K
        } else {
            options.k
        };
        let candidates = self.tuning.candidates.max(k);
        let want_bm25 = options.mode != Mode::Dense;
        let want_dense = options.mode != Mode::Keyword;

        let bm25: Vec<(usize, f32)> = if want_bm25 {
            self.bm25.search(query, candidates, |i| {
                options.filter.matches(&self.chunks[i])
            })
        } else {
            Vec::new()
        };
        let mut dense: Vec<(usize, f32)> = Vec::new();
        let mut ran: Vec<&'static str> = Vec::new();
        if want_bm25 {
            ran.push("bm25");
        }
        if want_dense {
            match (&self.index, self.keyword_only.as_ref()) {
                (Some(index), None) => {
                    let vector = self.embed_query(query).await?;
                    if let Some(vector) = vector {
                        match index.search(&vector, candidates, &options.filter).await {
                            Ok(found) => {
                                dense = found
                                    .into_iter()
                                    .filter_map(|(id, s)| self.by_id.get(&id).map(|i| (*i, s)))
                                    .collect();
                                ran.push("dense");
                            }
                            Err(e) => notices.push(format!(
                                "dense retrieval failed ({e}); these are keyword-only results"
                            )),
                        }
                    }
                }
                (_, reason) => notices.push(format!(
                    "keyword-only results: dense retrieval is unavailable ({})",
                    reason.map_or("no embedding model is loaded", String::as_str)
                )),
            }
        }

        let hits = self.fuse(&bm25, &dense, k);
        Ok(SearchResults {
            query: query.to_string(),
            mode: options.mode,
            retrievers: ran,
            k,
            hits,
            notices,
        })
    }

    fn fuse(&self, bm25: &[(usize, f32)], dense: &[(usize, f32)], k: usize) -> Vec<Hit> {
        let t = self.tuning;
        let mut fused: HashMap<usize, (f32, Option<Ranked>, Option<Ranked>)> = HashMap::new();
        for (r, (i, s)) in bm25.iter().enumerate() {
            let e = fused.entry(*i).or_default();
            e.0 += t.bm25_weight / (t.rrf_k + r as f32 + 1.0);
            e.1 = Some(Ranked {
                rank: r + 1,
                score: *s,
            });
        }
        for (r, (i, s)) in dense.iter().enumerate() {
            let e = fused.entry(*i).or_default();
            e.0 += t.dense_weight / (t.rrf_k + r as f32 + 1.0);
            e.2 = Some(Ranked {
                rank: r + 1,
                score: *s,
            });
        }
        let mut ranked: Vec<(usize, Fused)> = fused.into_iter().collect();
        ranked.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
            .into_iter()
            .filter_map(|(i, (score, b, d))| {
                let c = self.chunks.get(i)?;
                let mut retrievers = Vec::new();
                if b.is_some() {
                    retrievers.push("bm25");
                }
                if d.is_some() {
                    retrievers.push("dense");
                }
                Some(Hit {
                    doc: c.doc.clone(),
                    title: c.title.clone(),
                    heading_path: c.heading_path(),
                    start_line: c.start_line,
                    end_line: c.end_line,
                    kind: c.kind.clone(),
                    provider: c.provider.clone(),
                    taskserv: c.taskserv.clone(),
                    score,
                    bm25: b,
                    dense: d,
                    retrievers,
                    chunk_id: c.id.clone(),
                    text: c.text.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::chunk::ChunkOptions;
    use crate::corpus::Doc;
    use crate::embed::HashEmbedder;
    use crate::store::{DocStore, MemIndex, MemStore};

    fn chunk(id: &str) -> Chunk {
        Chunk {
            id: id.into(),
            doc: id.split('#').next().unwrap().into(),
            title: "T".into(),
            headings: vec![],
            text: String::new(),
            start_line: 1,
            end_line: 1,
            kind: "guide".into(),
            provider: None,
            taskserv: None,
        }
    }

    #[test]
    fn rrf_prefers_agreement_over_one_first_place() {
        let chunks = vec![chunk("a.md#0"), chunk("b.md#0"), chunk("c.md#0")];
        let r = Retriever::new(chunks, None, None, Tuning::default(), None);
        // a is first for BM25 only; b is second in both lists.
        let hits = r.fuse(&[(0, 9.0), (1, 5.0)], &[(2, 0.9), (1, 0.8)], 3);
        let order: Vec<&str> = hits.iter().map(|h| h.doc.as_str()).collect();
        assert_eq!(order, vec!["b.md", "a.md", "c.md"]);
        assert_eq!(hits[0].retrievers, vec!["bm25", "dense"]);
        assert_eq!(hits[0].bm25.unwrap().rank, 2);
        assert!((hits[0].score - 2.0 / 62.0).abs() < 1e-6);
        assert_eq!(hits[1].retrievers, vec!["bm25"]);
        // Weights shift the balance.
        let dense_heavy = Retriever::new(
            vec![chunk("a.md#0"), chunk("b.md#0"), chunk("c.md#0")],
            None,
            None,
            Tuning {
                dense_weight: 3.0,
                ..Tuning::default()
            },
            None,
        );
        let hits = dense_heavy.fuse(&[(0, 9.0)], &[(2, 0.9)], 2);
        assert_eq!(hits[0].doc, "c.md");
    }

    async fn retriever(with_model: bool) -> Retriever {
        let docs = vec![
            Doc::new(
                "providers/hetzner.md",
                "# Hetzner\n\n## Zones\n\nhel1 Helsinki and fsn1 Falkenstein.\n",
            ),
            Doc::new(
                "taskservs/redis.md",
                "# Redis\n\n## Persistence\n\nAOF and snapshots keep data.\n",
            ),
            Doc::new("guide.md", "# Guide\n\nApprovals and policies.\n"),
        ];
        let store = MemStore::default();
        let index = Arc::new(MemIndex::default());
        let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder { dim: 64 });
        let e = with_model.then(|| embedder.clone());
        crate::ingest::sync(
            &docs,
            &store,
            Some(index.as_ref()),
            e.clone(),
            ChunkOptions::default(),
        )
        .await
        .unwrap();
        let chunks = store.chunks().await.unwrap();
        let index: Arc<dyn VectorIndex> = index;
        Retriever::new(
            chunks,
            e,
            Some(index),
            Tuning::default(),
            (!with_model).then(|| "model files missing".to_string()),
        )
    }

    #[tokio::test]
    async fn search_cites_and_flags_retrievers() {
        let r = retriever(true).await;
        let res = r
            .search("redis snapshots", &SearchOptions::default())
            .await
            .unwrap();
        assert!(res.notices.is_empty(), "{:?}", res.notices);
        let top = &res.hits[0];
        assert_eq!(top.doc, "taskservs/redis.md");
        assert_eq!(top.heading_path, "Redis > Persistence");
        assert_eq!((top.start_line, top.end_line), (3, 5));
        assert_eq!(top.retrievers, vec!["bm25", "dense"]);
        assert_eq!(
            top.citation(),
            "taskservs/redis.md:3-5 (Redis > Persistence)"
        );
        assert_eq!(res.retrievers, vec!["bm25", "dense"]);
        // Filters.
        let f = SearchOptions {
            filter: Filter {
                provider: Some("hetzner".into()),
                ..Filter::default()
            },
            ..SearchOptions::default()
        };
        let res = r.search("redis snapshots zones", &f).await.unwrap();
        assert!(res.hits.iter().all(|h| h.doc == "providers/hetzner.md"));
        assert!(!res.hits.is_empty());
    }

    #[tokio::test]
    async fn bad_input_and_clamps() {
        let r = retriever(true).await;
        let opts = SearchOptions::default();
        assert!(matches!(
            r.search("   ", &opts).await,
            Err(RagError::EmptyQuery)
        ));
        let long = "word ".repeat(20_000);
        assert!(matches!(
            r.search(&long, &opts).await,
            Err(RagError::QueryTooLong { .. })
        ));
        let zero = SearchOptions {
            k: 0,
            ..SearchOptions::default()
        };
        assert!(matches!(
            r.search("redis", &zero).await,
            Err(RagError::ZeroK { .. })
        ));
        let big = SearchOptions {
            k: 10_000,
            ..SearchOptions::default()
        };
        let res = r.search("redis", &big).await.unwrap();
        assert_eq!(res.k, MAX_K);
        assert!(res.notices[0].contains("at most 50"), "{:?}", res.notices);
        let bad = SearchOptions {
            filter: Filter {
                provider: Some("hetzer".into()),
                ..Filter::default()
            },
            ..SearchOptions::default()
        };
        let err = r.search("zones", &bad).await.unwrap_err().to_string();
        assert!(
            err.contains("`hetzer`") && err.contains("`hetzner`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn without_a_model_search_is_keyword_only_and_says_so() {
        let r = retriever(false).await;
        assert!(!r.dense());
        let res = r
            .search("redis snapshots", &SearchOptions::default())
            .await
            .unwrap();
        assert_eq!(res.hits[0].doc, "taskservs/redis.md");
        assert_eq!(res.retrievers, vec!["bm25"]);
        assert!(
            res.notices
                .iter()
                .any(|n| n.contains("keyword-only") && n.contains("model files missing"))
        );
    }
}
