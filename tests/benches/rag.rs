//! Docs retrieval benchmark, in one run on one machine: ingest throughput (chunk, embed and
//! store the shipped corpus, in chunks/s), hybrid query latency p50/p95 with the model warm
//! (embedding the query, BM25, HNSW search in SurrealDB, fusion), and the HNSW index's
//! recall@10 against exact brute-force search over the same vectors.
//!
//! `cargo bench -p tests --bench rag` measures the whole corpus and fails if p95 is 50 ms or
//! more or HNSW recall@10 is under 0.98; `--smoke` (CI, debug build) runs a small part of it
//! and does not enforce. Needs the model (`scripts/fetch-models`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rag::embed::{Embedder, FastEmbedder, ModelFiles};
use rag::hybrid::{Filter, Retriever, SearchOptions, Tuning};
use rag::store::{DocStore, MemIndex, MemStore, VectorIndex};
use rag::surreal::{Location, SurrealRag};
use rag::{ChunkOptions, RagResult};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PROVISIONING_PATHS_MODELS_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("provisioning/models")
}

/// Remembers every vector it made, so the exact index gets the very vectors the HNSW index
/// got, without embedding twice.
struct Caching {
    inner: Arc<FastEmbedder>,
    seen: Mutex<HashMap<String, Vec<f32>>>,
}

impl Embedder for Caching {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn embed(&self, texts: &[&str]) -> RagResult<Vec<Vec<f32>>> {
        let mut seen = self.seen.lock().unwrap();
        let missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !seen.contains_key(*t))
            .collect();
        if !missing.is_empty() {
            for (t, v) in missing.iter().zip(self.inner.embed(&missing)?) {
                seen.insert((*t).to_string(), v);
            }
        }
        Ok(texts.iter().map(|t| seen[*t].clone()).collect())
    }
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let files = ModelFiles::in_dir(
        &models_dir(),
        std::env::var_os("ORT_DYLIB_PATH").map(Into::into),
    );
    let model = match FastEmbedder::load(&files, 2) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("rag bench needs the embedding model: {e}");
            std::process::exit(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut docs = rag::corpus::shipped();
        if smoke {
            docs.truncate(12);
        }
        let caching = Arc::new(Caching {
            inner: model.clone(),
            seen: Mutex::new(HashMap::new()),
        });
        let embedder: Arc<dyn Embedder> = caching.clone();

        // Ingest: chunk, embed, store vectors under HNSW (in-memory SurrealDB engine).
        let db = Arc::new(SurrealRag::open(Location::Memory, rag::embed::MODEL_DIM).await.unwrap());
        let t0 = Instant::now();
        let report = rag::sync(&docs, db.as_ref(), Some(db.as_ref()), Some(embedder.clone()), ChunkOptions::default())
            .await
            .unwrap();
        let ingest = t0.elapsed();
        let chunks_per_s = report.embedded as f64 / ingest.as_secs_f64();

        // The same vectors in an exact index.
        let exact = Arc::new(MemIndex::default());
        rag::sync(&docs, &MemStore::default(), Some(exact.as_ref()), Some(embedder.clone()), ChunkOptions::default())
            .await
            .unwrap();
        let vectors = caching.seen.lock().unwrap().len();

        // Queries: the labelled questions, else a line from every chunk.
        let chunks = db.chunks().await.unwrap();
        let mut queries: Vec<String> = rag::eval::shipped_questions()
            .unwrap()
            .into_iter()
            .map(|q| q.question)
            .collect();
        if queries.is_empty() {
            queries = chunks
                .iter()
                .filter_map(|c| c.text.lines().find(|l| l.len() > 20).map(str::to_string))
                .collect();
        }
        queries.truncate(if smoke { 20 } else { 300 });

        // HNSW recall@10 against exact search, same query vectors.
        let qrefs: Vec<&str> = queries.iter().map(String::as_str).collect();
        let qvecs = model.embed(&qrefs).unwrap();
        let mut recall = 0.0;
        for v in &qvecs {
            let want: BTreeSet<String> = exact.search(v, 10, &Filter::default()).await.unwrap().into_iter().map(|x| x.0).collect();
            let got: BTreeSet<String> = db.search(v, 10, &Filter::default()).await.unwrap().into_iter().map(|x| x.0).collect();
            recall += want.intersection(&got).count() as f64 / want.len().max(1) as f64;
        }
        let recall = recall / qvecs.len().max(1) as f64;

        // Hybrid query latency with the model warm.
        let index: Arc<dyn VectorIndex> = db.clone();
        let model_dyn: Arc<dyn Embedder> = model.clone();
        let retriever = Retriever::new(chunks.clone(), Some(model_dyn), Some(index), Tuning::default(), None);
        let options = SearchOptions::default();
        for q in queries.iter().take(5) {
            retriever.search(q, &options).await.unwrap();
        }
        let mut times = Vec::new();
        let rounds = if smoke { 1 } else { 2 };
        for _ in 0..rounds {
            for q in &queries {
                let t = Instant::now();
                let r = retriever.search(q, &options).await.unwrap();
                times.push(t.elapsed());
                assert!(r.notices.is_empty());
            }
        }
        times.sort();
        let (p50, p95) = (percentile(&times, 0.5), percentile(&times, 0.95));
        // Share of the query embedding in a query.
        let mut embed_times = Vec::new();
        for q in queries.iter().take(50) {
            let t = Instant::now();
            model.embed(&[q.as_str()]).unwrap();
            embed_times.push(t.elapsed());
        }
        embed_times.sort();
        let embed_p50 = percentile(&embed_times, 0.5);

        println!(
            "rag bench ({}): {} documents, {} chunks, {} vectors, {} queries",
            if smoke { "smoke" } else { "full" },
            docs.len(),
            chunks.len(),
            vectors,
            queries.len()
        );
        println!(
            "  ingest: {} chunks embedded and stored in {:.2} s = {:.0} chunks/s",
            report.embedded,
            ingest.as_secs_f64(),
            chunks_per_s
        );
        println!(
            "  hybrid query latency: p50 {:.2} ms, p95 {:.2} ms (target p95 < 50 ms); query embedding p50 {:.2} ms = {:.0}% of the p50 query",
            p50.as_secs_f64() * 1e3,
            p95.as_secs_f64() * 1e3,
            embed_p50.as_secs_f64() * 1e3,
            100.0 * embed_p50.as_secs_f64() / p50.as_secs_f64().max(1e-9)
        );
        println!("  HNSW recall@10 vs exact search on the same vectors: {recall:.4} (target >= 0.98)");
        if smoke {
            println!("  (smoke mode, debug build, part of the corpus: targets not enforced)");
            return;
        }
        let mut failed = false;
        if p95 >= Duration::from_millis(50) {
            eprintln!("p95 {p95:?} misses the 50 ms target");
            failed = true;
        }
        if recall < 0.98 {
            eprintln!("HNSW recall@10 {recall:.4} misses the 0.98 target");
            failed = true;
        }
        if failed {
            std::process::exit(1);
        }
    });
}
