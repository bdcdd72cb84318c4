//! Retrieval quality on the labelled question set (`rag/eval/questions.jsonl`, embedded in the
//! binary): recall@5 and nDCG@10 at document level for BM25 alone, dense alone and hybrid.
//! Chunks are deduplicated to documents (first occurrence wins) before scoring.

use std::collections::BTreeSet;

use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};

use crate::hybrid::{Mode, Retriever, SearchOptions};
use crate::{MAX_K, RagError, RagResult};

static EVAL: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/eval");

/// One labelled question.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Question {
    pub id: String,
    pub question: String,
    /// Document paths (relative to `knowledge/docs/`, or `schemas/NAME.ncl`) that answer it.
    pub relevant: Vec<String>,
}

/// The question set shipped in the binary (empty if the file is missing).
pub fn shipped_questions() -> RagResult<Vec<Question>> {
    match EVAL
        .get_file("questions.jsonl")
        .and_then(|f| f.contents_utf8())
    {
        Some(text) => parse(text, "rag/eval/questions.jsonl"),
        None => Ok(Vec::new()),
    }
}

/// Parses JSON lines (blank lines and `//` comments skipped).
pub fn parse(text: &str, path: &str) -> RagResult<Vec<Question>> {
    let mut out: Vec<Question> = Vec::new();
    let mut ids = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let err = |message: String| RagError::EvalSet {
            path: path.to_string(),
            line: i + 1,
            message,
        };
        let q: Question = serde_json::from_str(line).map_err(|e| {
            err(format!(
                "{e}; expected {{\"id\":\"q001\",\"question\":\"...\",\"relevant\":[\"providers/hetzner.md\"]}}"
            ))
        })?;
        if q.relevant.is_empty() {
            return Err(err(format!(
                "question `{}` names no relevant document",
                q.id
            )));
        }
        if !ids.insert(q.id.clone()) {
            return Err(err(format!("duplicate question id `{}`", q.id)));
        }
        out.push(q);
    }
    Ok(out)
}

/// Documents in first-seen order.
pub fn dedupe_docs<'a>(docs: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = BTreeSet::new();
    docs.into_iter().filter(|d| seen.insert(*d)).collect()
}

/// Share of `relevant` among the first `k` of `ranked`.
pub fn recall_at(ranked: &[&str], relevant: &[String], k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    let top: BTreeSet<&str> = ranked.iter().take(k).copied().collect();
    let found = relevant.iter().filter(|r| top.contains(r.as_str())).count();
    found as f64 / relevant.len() as f64
}

/// Normalized discounted cumulative gain at `k` with binary relevance.
pub fn ndcg_at(ranked: &[&str], relevant: &[String], k: usize) -> f64 {
    let rel: BTreeSet<&str> = relevant.iter().map(String::as_str).collect();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, d)| rel.contains(**d))
        .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let ideal: f64 = (0..rel.len().min(k))
        .map(|i| 1.0 / ((i + 2) as f64).log2())
        .sum();
    if ideal == 0.0 { 0.0 } else { dcg / ideal }
}

/// Reciprocal rank of the first relevant document (0 if none in `ranked`).
pub fn reciprocal_rank(ranked: &[&str], relevant: &[String]) -> f64 {
    ranked
        .iter()
        .position(|d| relevant.iter().any(|r| r == d))
        .map_or(0.0, |p| 1.0 / (p + 1) as f64)
}

/// Scores for one retrieval mode.
#[derive(Debug, Clone, Serialize)]
pub struct ModeScore {
    pub mode: Mode,
    pub recall_at_5: f64,
    pub ndcg_at_10: f64,
    pub mrr: f64,
    /// Question ids whose relevant documents are not all in the top 5.
    pub misses: Vec<String>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub questions: usize,
    pub documents: usize,
    pub chunks: usize,
    /// `None` where a mode could not run (dense without a model).
    pub bm25: Option<ModeScore>,
    pub dense: Option<ModeScore>,
    pub hybrid: Option<ModeScore>,
    pub notices: Vec<String>,
}

/// Checks that every relevant path names an indexed document.
pub fn check_labels(questions: &[Question], docs: &BTreeSet<&str>) -> RagResult<()> {
    for q in questions {
        for r in &q.relevant {
            if !docs.contains(r.as_str()) {
                return Err(RagError::EvalSet {
                    path: "questions".into(),
                    line: 0,
                    message: format!(
                        "question `{}` names `{r}`, which is not an indexed document",
                        q.id
                    ),
                });
            }
        }
    }
    Ok(())
}

async fn score(retriever: &Retriever, questions: &[Question], mode: Mode) -> RagResult<ModeScore> {
    let mut recall = 0.0;
    let mut ndcg = 0.0;
    let mut mrr = 0.0;
    let mut misses = Vec::new();
    let options = SearchOptions {
        k: MAX_K,
        mode,
        ..SearchOptions::default()
    };
    for q in questions {
        let results = retriever.search(&q.question, &options).await?;
        let ranked = dedupe_docs(results.hits.iter().map(|h| h.doc.as_str()));
        let r5 = recall_at(&ranked, &q.relevant, 5);
        if r5 < 1.0 {
            misses.push(q.id.clone());
        }
        recall += r5;
        ndcg += ndcg_at(&ranked, &q.relevant, 10);
        mrr += reciprocal_rank(&ranked, &q.relevant);
    }
    let n = questions.len().max(1) as f64;
    Ok(ModeScore {
        mode,
        recall_at_5: recall / n,
        ndcg_at_10: ndcg / n,
        mrr: mrr / n,
        misses,
    })
}

/// Runs the three modes (dense and hybrid only when dense retrieval is available).
pub async fn evaluate(retriever: &Retriever, questions: &[Question]) -> RagResult<EvalReport> {
    let docs: BTreeSet<&str> = retriever.chunks().iter().map(|c| c.doc.as_str()).collect();
    check_labels(questions, &docs)?;
    let mut notices = Vec::new();
    let bm25 = Some(score(retriever, questions, Mode::Keyword).await?);
    let (dense, hybrid) = if retriever.dense() {
        (
            Some(score(retriever, questions, Mode::Dense).await?),
            Some(score(retriever, questions, Mode::Hybrid).await?),
        )
    } else {
        notices.push(format!(
            "dense and hybrid were not evaluated: {}",
            retriever
                .keyword_only_reason()
                .unwrap_or("no embedding model is loaded")
        ));
        (None, None)
    };
    Ok(EvalReport {
        questions: questions.len(),
        documents: docs.len(),
        chunks: retriever.chunks().len(),
        bm25,
        dense,
        hybrid,
        notices,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn rel(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn metrics_on_hand_computed_cases() {
        let ranked = ["a", "b", "c", "d", "e", "f"];
        assert_eq!(recall_at(&ranked, &rel(&["a"]), 5), 1.0);
        assert_eq!(recall_at(&ranked, &rel(&["f"]), 5), 0.0);
        assert_eq!(recall_at(&ranked, &rel(&["a", "f"]), 5), 0.5);
        assert!((ndcg_at(&ranked, &rel(&["a"]), 10) - 1.0).abs() < 1e-12);
        // Relevant at rank 2: 1/log2(3).
        assert!((ndcg_at(&ranked, &rel(&["b"]), 10) - 1.0 / 3f64.log2()).abs() < 1e-12);
        // Two relevant at ranks 1 and 3 over ideal ranks 1 and 2.
        let want = (1.0 + 1.0 / 4f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&ranked, &rel(&["a", "c"]), 10) - want).abs() < 1e-12);
        assert_eq!(reciprocal_rank(&ranked, &rel(&["c"])), 1.0 / 3.0);
        assert_eq!(dedupe_docs(["x", "y", "x", "z", "y"]), vec!["x", "y", "z"]);
    }

    #[test]
    fn parse_rejects_bad_lines_with_their_number() {
        let ok = parse(
            "{\"id\":\"q1\",\"question\":\"q?\",\"relevant\":[\"a.md\"]}\n\n",
            "t",
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
        let err = parse(
            "{\"id\":\"q1\",\"question\":\"q?\",\"relevant\":[\"a.md\"]}\n{\"id\":\"q2\"}\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("t:2:"), "{err}");
        let dup = parse(
            "{\"id\":\"q1\",\"question\":\"a\",\"relevant\":[\"a.md\"]}\n{\"id\":\"q1\",\"question\":\"b\",\"relevant\":[\"a.md\"]}\n",
            "t",
        )
        .unwrap_err();
        assert!(dup.to_string().contains("duplicate"));
    }

    #[test]
    fn shipped_set_parses() {
        // The file may not have landed yet; when it has, it must parse.
        shipped_questions().unwrap();
    }
}
