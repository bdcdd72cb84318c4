//! `provisioning docs index|search|eval`: the composition of docs retrieval (embedded or
//! Qdrant vectors, fastembed or keyword-only) and its output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use rag::embed::MODEL_DIM;
use rag::hybrid::{Tuning, check_query};
use rag::qdrant::QdrantIndex;
use rag::surreal::{Location, SurrealRag};
use rag::{
    ChunkOptions, Embedder, FastEmbedder, Filter, IndexReport, Mode, ModelFiles, RagError,
    Retriever, SearchOptions, SearchResults, VectorIndex, corpus, eval,
};

use super::engine_setup::runtime;
use crate::Settings;
use crate::cli::{DocsArgs, DocsMode, DocsSettings, DocsWhat};

/// The models folder: the setting, else `CACHE_DIR/models`.
pub fn models_dir(settings: &Settings, docs: &DocsSettings) -> PathBuf {
    docs.models_dir
        .clone()
        .unwrap_or_else(|| settings.cache_dir.join("models"))
}

/// An up-to-date index and a retriever over it.
pub struct Docs {
    pub retriever: Retriever,
    pub report: IndexReport,
}

/// Loads the model (or says why not), opens the index, brings it up to date with the shipped
/// and user docs, and builds the retriever.
pub async fn open(settings: &Settings, docs: &DocsSettings) -> anyhow::Result<Docs> {
    let files = ModelFiles::in_dir(
        &models_dir(settings, docs),
        crate::settings::var_os("ORT_DYLIB_PATH").map(Into::into),
    );
    let (embedder, reason): (Option<Arc<dyn Embedder>>, Option<String>) =
        match FastEmbedder::load(&files, docs.embed_threads) {
            Ok(e) => (Some(Arc::new(e)), None),
            Err(e) => (None, Some(e.to_string())),
        };
    let dir = rag::surreal::default_dir(&settings.data_dir);
    let store = match SurrealRag::open(Location::Embedded(dir.clone()), MODEL_DIM).await {
        Ok(s) => Arc::new(s),
        Err(e @ RagError::Busy { .. }) => anyhow::bail!("{e}"),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot open the docs index in {}", dir.display()));
        }
    };
    let index: Arc<dyn VectorIndex> =
        match docs.qdrant_url.as_ref().filter(|u| !u.trim().is_empty()) {
            Some(url) => Arc::new(QdrantIndex::new(
                url,
                &docs.qdrant_collection,
                MODEL_DIM,
                crate::settings::var("PROVISIONING_DOCS_QDRANT_API_KEY"),
            )?),
            None => store.clone(),
        };
    let mut all = corpus::shipped();
    if let Some(user) = &docs.user_docs {
        anyhow::ensure!(
            user.is_dir(),
            "the user docs folder `{}` does not exist (set by --user-docs or PROVISIONING_DOCS_USER_DIR)",
            user.display()
        );
        all.extend(corpus::user(user)?);
    }
    let report = rag::sync(
        &all,
        store.as_ref(),
        Some(index.as_ref()),
        embedder.clone(),
        ChunkOptions::default(),
    )
    .await?;
    let chunks = rag::DocStore::chunks(store.as_ref()).await?;
    anyhow::ensure!(
        docs.rrf_k >= 0.0 && docs.bm25_weight >= 0.0 && docs.dense_weight >= 0.0,
        "--rrf-k, --bm25-weight and --dense-weight must not be negative"
    );
    let tuning = Tuning {
        rrf_k: docs.rrf_k,
        bm25_weight: docs.bm25_weight,
        dense_weight: docs.dense_weight,
        ..Tuning::default()
    };
    let retriever = Retriever::new(chunks, embedder, Some(index), tuning, reason);
    Ok(Docs { retriever, report })
}

/// A keyword-only retriever over the shipped and user docs, chunked in memory: no index, no
/// model, ready in milliseconds. It answers while the index is being built.
pub fn keyword_only(docs: &DocsSettings, reason: &str) -> anyhow::Result<Retriever> {
    let mut all = corpus::shipped();
    if let Some(user) = docs.user_docs.as_ref().filter(|u| u.is_dir()) {
        all.extend(corpus::user(user)?);
    }
    let chunks = all
        .iter()
        .flat_map(|d| d.chunks(ChunkOptions::default()))
        .collect();
    let tuning = Tuning {
        rrf_k: docs.rrf_k,
        bm25_weight: docs.bm25_weight,
        dense_weight: docs.dense_weight,
        ..Tuning::default()
    };
    Ok(Retriever::new(
        chunks,
        None,
        None,
        tuning,
        Some(reason.to_string()),
    ))
}

pub fn run(settings: &Settings, args: &DocsArgs) -> anyhow::Result<ExitCode> {
    // Bad input is answered before anything is loaded.
    if let DocsWhat::Search { query, k, .. } = &args.what {
        check_query(query)?;
        if *k == 0 {
            return Err(RagError::ZeroK { max: rag::MAX_K }.into());
        }
    }
    runtime()?.block_on(async {
        match &args.what {
            DocsWhat::Index { json } => index(settings, &args.settings, *json).await,
            DocsWhat::Search {
                query,
                k,
                provider,
                taskserv,
                kind,
                mode,
                json,
            } => {
                let options = SearchOptions {
                    k: *k,
                    filter: Filter {
                        provider: provider.clone(),
                        taskserv: taskserv.clone(),
                        kind: kind.clone(),
                    },
                    mode: match mode {
                        DocsMode::Hybrid => Mode::Hybrid,
                        DocsMode::Keyword => Mode::Keyword,
                        DocsMode::Dense => Mode::Dense,
                    },
                };
                search(settings, &args.settings, query, &options, *json).await
            }
            DocsWhat::Eval { questions, json } => {
                evaluate(settings, &args.settings, questions.as_ref(), *json).await
            }
        }
    })
}

async fn index(settings: &Settings, docs: &DocsSettings, json: bool) -> anyhow::Result<ExitCode> {
    let opened = open(settings, docs).await?;
    let r = &opened.report;
    if json {
        let mut value = serde_json::to_value(r)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert(
                "notice".into(),
                serde_json::json!(opened.retriever.keyword_only_reason().map(keyword_notice)),
            );
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        if let Some(reason) = opened.retriever.keyword_only_reason() {
            eprintln!("notice: {}", keyword_notice(reason));
        }
        println!(
            "Indexed {} documents ({} chunks) in {:.2} s: {} added, {} updated, {} removed, {} unchanged; {} chunks embedded{}.",
            r.added.len() + r.updated.len() + r.unchanged,
            r.chunks,
            r.seconds,
            r.added.len(),
            r.updated.len(),
            r.removed.len(),
            r.unchanged,
            r.embedded,
            match (&r.model, &r.vectors) {
                (Some(m), Some(v)) => format!(" with {m} into {v}"),
                _ => " (keyword-only: no embedding model)".into(),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn keyword_notice(reason: &str) -> String {
    format!("keyword-only retrieval: dense retrieval is unavailable ({reason})")
}

fn print_results(results: &SearchResults) {
    for notice in &results.notices {
        eprintln!("notice: {notice}");
    }
    if results.hits.is_empty() {
        println!("No matching documents for `{}`.", results.query);
        return;
    }
    for (i, hit) in results.hits.iter().enumerate() {
        let ranks: Vec<String> = [("bm25", hit.bm25), ("dense", hit.dense)]
            .into_iter()
            .filter_map(|(name, r)| r.map(|r| format!("{name} #{}", r.rank)))
            .collect();
        println!(
            "{}. {}:{}-{}  {}  [score {:.4}; {}]",
            i + 1,
            hit.doc,
            hit.start_line,
            hit.end_line,
            hit.heading_path,
            hit.score,
            ranks.join(", ")
        );
        for line in hit.text.lines().filter(|l| !l.trim().is_empty()).take(3) {
            let line: String = line.chars().take(110).collect();
            println!("   {line}");
        }
    }
}

async fn search(
    settings: &Settings,
    docs: &DocsSettings,
    query: &str,
    options: &SearchOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let opened = open(settings, docs).await?;
    let results = service::Docs::ready(opened.retriever)
        .search(query, options)
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print_results(&results);
    }
    Ok(ExitCode::SUCCESS)
}

async fn evaluate(
    settings: &Settings,
    docs: &DocsSettings,
    questions: Option<&PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let set = match questions {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            eval::parse(&text, &path.display().to_string())?
        }
        None => eval::shipped_questions()?,
    };
    anyhow::ensure!(
        !set.is_empty(),
        "no evaluation questions: the shipped set is empty; pass --questions FILE"
    );
    let opened = open(settings, docs).await?;
    let report = eval::evaluate(&opened.retriever, &set).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    for notice in &report.notices {
        eprintln!("notice: {notice}");
    }
    println!(
        "Retrieval quality on {} questions ({} documents, {} chunks), document level:",
        report.questions, report.documents, report.chunks
    );
    let rows: Vec<Vec<String>> = [&report.bm25, &report.dense, &report.hybrid]
        .into_iter()
        .zip(["bm25", "dense", "hybrid"])
        .map(|(score, name)| match score {
            Some(s) => vec![
                name.to_string(),
                format!("{:.3}", s.recall_at_5),
                format!("{:.3}", s.ndcg_at_10),
                format!("{:.3}", s.mrr),
            ],
            None => vec![name.to_string(), "n/a".into(), "n/a".into(), "n/a".into()],
        })
        .collect();
    print!(
        "{}",
        crate::table::render(&["MODE", "RECALL@5", "NDCG@10", "MRR"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}
