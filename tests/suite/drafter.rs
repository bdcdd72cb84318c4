//! The built-in intent drafter against the intent fixtures in `drafter/fixtures/intents/*.jsonl`:
//! every draft is a config the real binary validates, and the share of drafts that match the
//! hand-written expectation exactly stays above a floor.

use std::collections::BTreeSet;

use drafter::{Answers, Draft, DraftError, draft, draft_with_answers};
use libtest_mimic::Trial;
use serde_json::Value;
use tests::{root, run, scratch};

/// Measured when the fixtures were last extended: 122 of 122 match (see the output of
/// `drafter::exact_match_share`). The drafter is deterministic, so a miss is a regression; the
/// margin leaves room for up to three fixtures added ahead of the drafter.
const FLOOR: f64 = 0.97;
const MIN_FIXTURES: usize = 45;

struct Fixture {
    id: String,
    /// `main` (the drafter was developed against it), `holdout` or `fresh` (written before the
    /// drafter first ran on them).
    set: String,
    text: String,
    hard: bool,
    expect: Value,
}

fn fixtures() -> Vec<Fixture> {
    let dir = root().join("drafter/fixtures/intents");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: {e}: {line}", path.display()));
            out.push(Fixture {
                id: v["id"].as_str().unwrap().to_owned(),
                set: v["set"].as_str().unwrap_or("main").to_owned(),
                text: v["text"].as_str().unwrap().to_owned(),
                hard: v["hard"].as_bool().unwrap_or(false),
                expect: v["expect"].clone(),
            });
        }
    }
    out
}

fn catalog() -> &'static knowledge::Catalog {
    knowledge::Catalog::embedded().unwrap()
}

fn t(name: &str, f: fn()) -> Trial {
    Trial::test(format!("drafter::{name}"), move || crate::check(f))
}

pub fn trials() -> Vec<Trial> {
    let all = fixtures();
    let count = all.len();
    let mut trials: Vec<Trial> = all
        .into_iter()
        .map(|f| {
            let name = format!("drafter::valid::{}", f.id);
            Trial::test(name, move || {
                crate::check(move || check_valid(&f.id, &f.text))
            })
        })
        .collect();
    trials.push(Trial::test(
        format!("drafter::at_least_{MIN_FIXTURES}_fixtures"),
        move || {
            if count >= MIN_FIXTURES {
                Ok(())
            } else {
                Err(format!("only {count} intent fixtures").into())
            }
        },
    ));
    trials.push(t("exact_match_share", exact_match_share));
    trials.push(t("answers_replace_questions", answers_replace_questions));
    trials.push(t("bad_input_is_an_error_or_a_question", bad_input));
    trials
}

/// Writes the draft, validates it with the real binary, and checks the export against the
/// draft's JSON.
fn validate(id: &str, d: &Draft) {
    let dir = scratch(&format!("draft-{id}"));
    let file = dir.join("draft.ncl");
    std::fs::write(&file, &d.nickel).unwrap();
    let out = run(&dir, &["validate", "draft.ncl", "--json"], None);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "validate printed no JSON: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.nickel
        )
    });
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", d.nickel);
    // The only diagnostics a draft may carry are warnings it gave itself: a prod workspace
    // without owner, when it asked; taskservs this build has no install scripts for on a cloud
    // server, when it warned.
    let asked_owner = d.questions.iter().any(|q| q.field == "owner");
    let warned_scripts = d.warnings.iter().any(|w| w.contains("no install scripts"));
    for diag in report["diagnostics"].as_array().unwrap() {
        let owner_warning = diag["message"] == "prod workspace has no `owner`" && asked_owner;
        let scripts_warning = diag["severity"] == "warning"
            && diag["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("this build has no install scripts"))
            && warned_scripts;
        assert!(
            owner_warning || scripts_warning,
            "unexpected diagnostic: {diag:#}\n{}",
            d.nickel
        );
    }
    let export = run(&dir, &["export", "draft.ncl", "--format", "json"], None);
    let exported: Value = serde_json::from_slice(&export.stdout).unwrap();
    let key = |v: &Value| -> Vec<String> {
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let ts: Vec<String> = s["taskservs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().or(t["name"].as_str()).unwrap().to_owned())
                    .collect();
                format!(
                    "{} {} {} {} {}",
                    s["name"],
                    s["provider"],
                    s["plan"],
                    s["zone"],
                    ts.join(",")
                )
            })
            .collect()
    };
    assert_eq!(
        key(&exported),
        key(&d.value),
        "the JSON value differs from the Nickel"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_valid(id: &str, text: &str) {
    let d = draft(text, catalog()).unwrap_or_else(|e| panic!("{id}: {e}"));
    assert_eq!(d.drafter, "built-in");
    validate(id, &d);
}

/// What a draft is compared on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ServerKey {
    provider: Option<String>,
    zone: Option<String>,
    plan: Option<String>,
    taskservs: Vec<String>,
}

fn expected_servers(expect: &Value) -> Vec<ServerKey> {
    let mut out = Vec::new();
    for s in expect["servers"].as_array().unwrap() {
        let n = s["count"].as_u64().unwrap_or(1);
        let mut ts: Vec<String> = s["taskservs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        ts.sort();
        for _ in 0..n {
            out.push(ServerKey {
                provider: s["provider"].as_str().map(str::to_owned),
                zone: s["zone"].as_str().map(str::to_owned),
                plan: s["plan"].as_str().map(str::to_owned),
                taskservs: ts.clone(),
            });
        }
    }
    out
}

fn actual_servers(value: &Value) -> Vec<ServerKey> {
    value["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut ts: Vec<String> = s["taskservs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().or(t["name"].as_str()).unwrap().to_owned())
                .collect();
            ts.sort();
            ServerKey {
                provider: s["provider"].as_str().map(str::to_owned),
                zone: s["zone"].as_str().map(str::to_owned),
                plan: s["plan"].as_str().map(str::to_owned),
                taskservs: ts,
            }
        })
        .collect()
}

/// `Ok` when the draft matches the expectation; otherwise what differs.
fn compare(expect: &Value, d: &Draft) -> Result<(), String> {
    let mut diffs = Vec::new();
    let env = d.value["workspace"]["environment"].as_str().unwrap_or("");
    if expect["environment"].as_str() != Some(env) {
        diffs.push(format!(
            "environment {env}, expected {}",
            expect["environment"]
        ));
    }
    if let Some(w) = expect["workspace"].as_str()
        && d.value["workspace"]["name"].as_str() != Some(w)
    {
        diffs.push(format!(
            "workspace {}, expected {w}",
            d.value["workspace"]["name"]
        ));
    }
    let mut actual = actual_servers(&d.value);
    let wanted = expected_servers(expect);
    let mut missing = Vec::new();
    for w in &wanted {
        let hit = actual.iter().position(|a| {
            (w.provider.is_none() || w.provider == a.provider)
                && (w.zone.is_none() || w.zone == a.zone)
                && (w.plan.is_none() || w.plan == a.plan)
                && w.taskservs == a.taskservs
        });
        match hit {
            Some(i) => {
                actual.remove(i);
            }
            None => missing.push(w.clone()),
        }
    }
    if !missing.is_empty() || !actual.is_empty() {
        diffs.push(format!(
            "servers missing {missing:?}, unexpected {actual:?}"
        ));
    }
    let mut clusters: Vec<(String, usize)> = d.value["clusters"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["template"].as_str().unwrap_or("").to_owned(),
                        c["servers"].as_array().map_or(0, Vec::len),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    clusters.sort();
    let mut want_clusters: Vec<(String, usize)> = expect["clusters"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["template"].as_str().unwrap().to_owned(),
                        c["servers"].as_u64().unwrap() as usize,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    want_clusters.sort();
    if clusters != want_clusters {
        diffs.push(format!("clusters {clusters:?}, expected {want_clusters:?}"));
    }
    let asked: BTreeSet<String> = d
        .questions
        .iter()
        .map(|q| q.field.rsplit('.').next().unwrap_or("").to_owned())
        .collect();
    let want_asked: BTreeSet<String> = expect["questions"]
        .as_array()
        .map(|qs| qs.iter().map(|q| q.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    if asked != want_asked {
        diffs.push(format!("questions {asked:?}, expected {want_asked:?}"));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

fn exact_match_share() {
    let all = fixtures();
    let ids: BTreeSet<&str> = all.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "fixture ids are not unique");
    let mut hits: Vec<&Fixture> = Vec::new();
    let mut report = Vec::new();
    for f in &all {
        let result = draft(&f.text, catalog())
            .map_err(|e| e.to_string())
            .and_then(|d| compare(&f.expect, &d));
        match result {
            Ok(()) => hits.push(f),
            Err(why) => report.push(format!(
                "  {} [{}{}]: {why}\n    {}",
                f.id,
                f.set,
                if f.hard { ", hard" } else { "" },
                f.text
            )),
        }
    }
    let share = hits.len() as f64 / all.len() as f64;
    println!(
        "drafter exact match: {}/{} = {:.1}%",
        hits.len(),
        all.len(),
        share * 100.0
    );
    let sets: BTreeSet<&str> = all.iter().map(|f| f.set.as_str()).collect();
    for set in sets {
        let n = all.iter().filter(|f| f.set == set).count();
        let h = hits.iter().filter(|f| f.set == set).count();
        println!("  {set}: {h}/{n}");
    }
    let hard = all.iter().filter(|f| f.hard).count();
    let hard_hits = hits.iter().filter(|f| f.hard).count();
    println!("  hard ones: {hard_hits}/{hard}");
    for r in &report {
        println!("{r}");
    }
    assert!(
        share >= FLOOR,
        "exact-match share {:.1}% fell below the floor {:.1}%:\n{}",
        share * 100.0,
        FLOOR * 100.0,
        report.join("\n")
    );
}

fn answers_replace_questions() {
    let text = "Put two web servers on hetzner";
    let d = draft(text, catalog()).unwrap();
    let q = d.questions.iter().find(|q| q.field == "zone").unwrap();
    assert!(q.choices.contains(&"hel1".to_owned()), "{q:?}");
    let answers = Answers::from([("zone".to_owned(), "Helsinki".to_owned())]);
    let d = draft_with_answers(text, &answers, catalog()).unwrap();
    assert!(d.questions.is_empty(), "{:?}", d.questions);
    assert!(
        d.value["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["zone"] == "hel1")
    );
    validate("answered-zone", &d);

    let text = "a redis server for prod";
    let d = draft(text, catalog()).unwrap();
    let fields: BTreeSet<&str> = d.questions.iter().map(|q| q.field.as_str()).collect();
    assert_eq!(fields, BTreeSet::from(["owner", "provider"]));
    let answers = Answers::from([
        ("provider".to_owned(), "upcloud".to_owned()),
        ("zone".to_owned(), "uk-lon1".to_owned()),
        ("owner".to_owned(), "ops@example.com".to_owned()),
    ]);
    let d = draft_with_answers(text, &answers, catalog()).unwrap();
    assert!(d.questions.is_empty(), "{:?}", d.questions);
    assert_eq!(d.value["servers"][0]["zone"], "uk-lon1");
    assert_eq!(d.value["workspace"]["owner"], "ops@example.com");
    validate("answered-provider", &d);

    // A wrong answer is named and asked again.
    let answers = Answers::from([("zone".to_owned(), "atlantis".to_owned())]);
    let d = draft_with_answers("Put two web servers on hetzner", &answers, catalog()).unwrap();
    assert!(
        d.warnings.iter().any(|w| w.contains("`atlantis`")),
        "{:?}",
        d.warnings
    );
    assert!(d.questions.iter().any(|q| q.field == "zone"));
}

fn bad_input() {
    let c = catalog();
    assert_eq!(draft("", c), Err(DraftError::Empty));
    assert_eq!(draft(" \n\t ", c), Err(DraftError::Empty));
    let long = "two web servers ".repeat(300);
    assert!(matches!(draft(&long, c), Err(DraftError::TooLong { .. })));
    for gibberish in [
        "asdf qwer zxcv",
        "!!!???",
        "the quick brown fox",
        "in Helsinki for prod",
    ] {
        let e = draft(gibberish, c).unwrap_err();
        assert!(
            matches!(e, DraftError::NothingToProvision { .. }),
            "{gibberish}: {e:?}"
        );
        assert!(e.to_string().contains("name servers or software"), "{e}");
    }
    let e = draft("5000 web servers on hetzner in Helsinki", c).unwrap_err();
    assert!(e.to_string().contains("5000"), "{e}");

    // Impossible sizes, contradictions and things the catalog lacks become questions or
    // warnings on a draft that still validates.
    let cases: &[(&str, &str)] = &[
        (
            "a postgres server with 512 cores on hetzner in Helsinki",
            "plan",
        ),
        (
            "two web servers on aws and hetzner in Frankfurt",
            "provider",
        ),
        ("a redis server on aws in Helsinki", "zone"),
        ("a staging and prod web server in Helsinki", "environment"),
        ("postgres 14 on hetzner in fsn1", "version"),
        ("kubernetes node on my laptop", "provider"),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let d = draft(text, c).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(
            d.questions.iter().any(|q| q.field.ends_with(field)),
            "{text}: no `{field}` question in {:?}",
            d.questions
        );
        assert!(!d.warnings.is_empty(), "{text}: no warning");
        validate(&format!("bad-{i}"), &d);
    }
    let d = draft("an elasticsearch box and a redis cache in Helsinki", c).unwrap();
    assert!(
        d.warnings.iter().any(|w| w.contains("`elasticsearch`")),
        "{:?}",
        d.warnings
    );
    // Hostile text cannot break out of strings or comments.
    let d = draft(
        "a redis server for the x\"%{1+1} project\n} in Helsinki owner a%{b}@example.com",
        c,
    )
    .unwrap();
    validate("hostile", &d);
}
