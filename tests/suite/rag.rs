//! Docs retrieval end to end through the real binary: dense retrieval with the real model
//! (a paraphrase sharing no keyword with its page), keyword-only fallback without the model,
//! bad input, incremental re-indexing, filters, and the quality thresholds on the labelled set.
//!
//! The model comes from `scripts/fetch-models` (run by `scripts/test`); trials that need it
//! fail with that hint when it is missing rather than pass without testing anything.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use libtest_mimic::Trial;
use serde_json::Value;
use tests::root;

use crate::check;

/// Where `scripts/fetch-models` puts the model by default (or the configured folder).
fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PROVISIONING_PATHS_MODELS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("provisioning/models")
}

pub(crate) fn require_model() -> PathBuf {
    let dir = models_dir();
    assert!(
        dir.join("all-minilm-l6-v2-int8/model.onnx").is_file()
            && dir.join("onnxruntime/libonnxruntime.so").exists(),
        "the embedding model is not in {}; run `scripts/fetch-models` (scripts/test does)",
        dir.display()
    );
    dir
}

fn user_docs() -> PathBuf {
    root().join("tests/fixtures/rag/user-docs")
}

/// Runs `provisioning docs ARGS` with its own data dir and the given models dir, from a
/// scratch directory (the shipped docs must not depend on the working directory).
fn docs(data: &Path, models: &Path, user: &Path, args: &[&str]) -> Output {
    let data = data.display().to_string();
    let models = models.display().to_string();
    let user = user.display().to_string();
    let cwd = std::env::temp_dir();
    tests::run_env(
        &cwd,
        &[&["docs"][..], args].concat(),
        &[
            ("PROVISIONING_PATHS_DATA_DIR", data.as_str()),
            ("PROVISIONING_PATHS_MODELS_DIR", models.as_str()),
            ("PROVISIONING_DOCS_USER_DIR", user.as_str()),
            ("PROVISIONING_DOCS_QDRANT_URL", ""),
        ],
    )
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}\nstdout: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

/// A data dir with the shipped and fixture docs indexed with the model, made once per run;
/// trials copy it so each has its own embedded database.
fn indexed() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let models = require_model();
        let data = tests::scratch("rag-shared");
        let out = docs(&data, &models, &user_docs(), &["index", "--json"]);
        let v = json(&out);
        assert!(v["embedded"].as_u64().unwrap() > 0, "{v}");
        data
    })
}

fn copy_of_index(name: &str) -> PathBuf {
    let from = indexed();
    let to = tests::scratch(name);
    tests::copy_tree(from, &to).unwrap();
    to
}

fn hit_docs(v: &Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["doc"].as_str().unwrap().to_string())
        .collect()
}

const PARAPHRASE: &str = "what should we do during a blackout in the server room";

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "rag::paraphrase_without_shared_keywords_is_found_by_dense_retrieval",
            || {
                check(|| {
                    let models = require_model();
                    let data = copy_of_index("rag-paraphrase");
                    let page = std::fs::read_to_string(user_docs().join("outage.md")).unwrap();
                    let page_terms: std::collections::BTreeSet<String> =
                        ::rag::bm25::terms(&page).into_iter().collect();
                    let shared: Vec<String> = ::rag::bm25::terms(PARAPHRASE)
                        .into_iter()
                        .filter(|t| page_terms.contains(t))
                        .collect();
                    assert!(
                        shared.is_empty(),
                        "the query shares {shared:?} with the page"
                    );

                    let keyword = json(&docs(
                        &data,
                        &models,
                        &user_docs(),
                        &[
                            "search", PARAPHRASE, "--json", "--mode", "keyword", "--k", "50",
                        ],
                    ));
                    assert!(!hit_docs(&keyword).contains(&"user/outage.md".to_string()));

                    let v = json(&docs(
                        &data,
                        &models,
                        &user_docs(),
                        &[
                            "search", PARAPHRASE, "--json", "--k", "5", "--mode", "dense",
                        ],
                    ));
                    assert!(v["notices"].as_array().unwrap().is_empty(), "{v}");
                    assert_eq!(v["retrievers"], serde_json::json!(["dense"]));
                    assert_eq!(v["hits"][0]["doc"], "user/outage.md", "{v}");
                    let hit = v["hits"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|h| h["doc"] == "user/outage.md")
                        .unwrap_or_else(|| {
                            panic!("user/outage.md not in the top 5: {:?}", hit_docs(&v))
                        });
                    assert_eq!(hit["retrievers"], serde_json::json!(["dense"]), "{hit}");
                    assert_eq!(hit["heading_path"], "Power failure playbook");
                    assert_eq!(
                        (hit["start_line"].as_u64(), hit["end_line"].as_u64()),
                        (Some(1), Some(4))
                    );
                    let _ = std::fs::remove_dir_all(&data);
                })
            },
        ),
        Trial::test(
            "rag::without_the_model_search_is_keyword_only_with_one_notice",
            || {
                check(|| {
                    let data = tests::scratch("rag-nomodel");
                    let empty = tests::scratch("rag-empty-models");
                    let v = json(&docs(
                        &data,
                        &empty,
                        &user_docs(),
                        &["search", "hetzner zones", "--json"],
                    ));
                    assert_eq!(v["retrievers"], serde_json::json!(["bm25"]));
                    let notices = v["notices"].as_array().unwrap();
                    assert_eq!(notices.len(), 1, "{v}");
                    assert!(notices[0].as_str().unwrap().contains("keyword-only"), "{v}");
                    assert!(!v["hits"].as_array().unwrap().is_empty(), "{v}");
                    // Human output: the notice once, on stderr; results on stdout.
                    let out = docs(
                        &data,
                        &empty,
                        &user_docs(),
                        &["search", "generator electricity"],
                    );
                    assert!(out.status.success());
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    assert_eq!(stderr.matches("keyword-only").count(), 1, "{stderr}");
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    assert!(stdout.contains("user/outage.md:"), "{stdout}");
                    let _ = std::fs::remove_dir_all(&data);
                    let _ = std::fs::remove_dir_all(&empty);
                })
            },
        ),
        Trial::test("rag::bad_input_gets_clear_errors_or_clamps", || {
            check(|| {
                let data = tests::scratch("rag-bad");
                let empty = tests::scratch("rag-bad-models");
                let user = user_docs();
                let err = |args: &[&str], want: &str| {
                    let out = docs(&data, &empty, &user, args);
                    assert_eq!(out.status.code(), Some(2), "{args:?}");
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    assert!(stderr.contains(want), "{args:?}: {stderr}");
                    assert!(stderr.lines().count() <= 3, "{stderr}");
                };
                err(&["search", ""], "the query is empty");
                err(&["search", "   "], "the query is empty");
                let huge = "why ".repeat(25_600);
                err(&["search", &huge], "at most 2048 bytes");
                err(&["search", "redis", "--k", "0"], "`k` must be at least 1");
                err(
                    &["search", "zones", "--provider", "hetzer"],
                    "unknown provider `hetzer`",
                );
                let v = json(&docs(
                    &data,
                    &empty,
                    &user,
                    &["search", "server", "--k", "10000", "--json"],
                ));
                assert_eq!(v["k"], 50);
                assert!(v["hits"].as_array().unwrap().len() <= 50);
                assert!(
                    v["notices"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|n| n.as_str().unwrap().contains("at most 50")),
                    "{v}"
                );
                let _ = std::fs::remove_dir_all(&data);
                let _ = std::fs::remove_dir_all(&empty);
            })
        }),
        Trial::test("rag::incremental_reindex_embeds_only_changed_docs", || {
            check(|| {
                let models = require_model();
                let data = copy_of_index("rag-incremental");
                let user = tests::scratch("rag-incremental-user");
                tests::copy_tree(&user_docs(), &user).unwrap();
                let again = json(&docs(&data, &models, &user, &["index", "--json"]));
                assert_eq!(again["embedded"], 0, "{again}");
                assert!(again["added"].as_array().unwrap().is_empty(), "{again}");
                assert!(again["unchanged"].as_u64().unwrap() >= 3, "{again}");

                std::fs::write(
                    user.join("outage.md"),
                    "# Power failure playbook\n\nStart the generator.\n\n## Afterwards\n\nCheck the batteries.\n\n## Report\n\nWrite it up.\n",
                )
                .unwrap();
                std::fs::remove_file(user.join("team/escalation.md")).unwrap();
                std::fs::write(user.join("new.md"), "# New page\n\nFresh text.\n").unwrap();
                let v = json(&docs(&data, &models, &user, &["index", "--json"]));
                assert_eq!(v["updated"], serde_json::json!(["user/outage.md"]), "{v}");
                assert_eq!(
                    v["removed"],
                    serde_json::json!(["user/team/escalation.md"]),
                    "{v}"
                );
                assert_eq!(v["added"], serde_json::json!(["user/new.md"]), "{v}");
                assert_eq!(
                    v["embedded"], 4,
                    "3 chunks of the changed page and 1 of the new one: {v}"
                );
                assert_eq!(
                    v["unchanged"],
                    again["unchanged"].as_u64().unwrap() - 2,
                    "{v}"
                );
                let found = json(&docs(
                    &data,
                    &models,
                    &user,
                    &[
                        "search",
                        "escalation contacts on-call",
                        "--json",
                        "--k",
                        "50",
                    ],
                ));
                assert!(!hit_docs(&found).contains(&"user/team/escalation.md".to_string()));
                let _ = std::fs::remove_dir_all(&data);
                let _ = std::fs::remove_dir_all(&user);
            })
        }),
        Trial::test("rag::filters_and_citations", || {
            check(|| {
                let models = require_model();
                let data = copy_of_index("rag-filters");
                let v = json(&docs(
                    &data,
                    &models,
                    &user_docs(),
                    &[
                        "search",
                        "who to call when nobody answers",
                        "--kind",
                        "runbook",
                        "--json",
                        "--k",
                        "3",
                    ],
                ));
                for hit in v["hits"].as_array().unwrap() {
                    assert_eq!(hit["kind"], "runbook", "{hit}");
                }
                assert_eq!(v["hits"][0]["doc"], "user/team/escalation.md", "{v}");
                // The cited line range holds the hit's text.
                let hit = &v["hits"][0];
                let page = std::fs::read_to_string(user_docs().join("team/escalation.md")).unwrap();
                let lines: Vec<&str> = page.lines().collect();
                let cited = lines[hit["start_line"].as_u64().unwrap() as usize - 1
                    ..hit["end_line"].as_u64().unwrap() as usize]
                    .join("\n");
                assert!(
                    cited.contains(hit["text"].as_str().unwrap().lines().next().unwrap()),
                    "{cited}"
                );
                let _ = std::fs::remove_dir_all(&data);
            })
        }),
        Trial::test(
            "rag::eval_hybrid_beats_each_retriever_and_reaches_0_85",
            || {
                check(|| {
                    let models = require_model();
                    let questions = ::rag::eval::shipped_questions().unwrap();
                    assert!(
                        questions.len() >= 150,
                        "only {} labelled questions",
                        questions.len()
                    );
                    let data = copy_of_index("rag-eval");
                    let v = json(&docs(&data, &models, &user_docs(), &["eval", "--json"]));
                    let r = |m: &str| {
                        v[m]["recall_at_5"]
                            .as_f64()
                            .unwrap_or_else(|| panic!("{v}"))
                    };
                    let (bm25, dense, hybrid) = (r("bm25"), r("dense"), r("hybrid"));
                    assert!(
                        hybrid >= bm25.max(dense),
                        "hybrid {hybrid} < bm25 {bm25} or dense {dense}"
                    );
                    assert!(hybrid >= 0.85, "hybrid recall@5 {hybrid}");
                    assert!(v["hybrid"]["ndcg_at_10"].as_f64().unwrap() > 0.0);
                    let _ = std::fs::remove_dir_all(&data);
                })
            },
        ),
    ]
}
