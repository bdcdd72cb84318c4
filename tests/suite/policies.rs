//! Policy scenarios: one trial per `tests/fixtures/policies/*.json` (principal, roles, action,
//! resource, facts, approvals; the expected decision and deciding policy ids), decided by the
//! real Cedar engine with the default policy set. A coverage trial checks that every default
//! policy decides at least one scenario.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use libtest_mimic::Trial;
use policies::{ApprovalRecord, AuthRequest, PolicyEngine, count_valid};
use serde::Deserialize;
use tests::root;

use crate::check;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    #[allow(dead_code)]
    description: String,
    principal: policies::Principal,
    action: policies::Action,
    resource: policies::Resource,
    facts: policies::Facts,
    #[serde(default)]
    approvals: Option<Vec<ApprovalRecord>>,
    #[serde(default)]
    now: u64,
    expect: Expected,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    decision: String,
    policies: Vec<String>,
}

fn dir() -> PathBuf {
    root().join("tests/fixtures/policies")
}

fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn load(path: &Path) -> Scenario {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn engine() -> &'static PolicyEngine {
    static ENGINE: std::sync::OnceLock<PolicyEngine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| PolicyEngine::defaults().unwrap())
}

fn run_scenario(path: &Path) {
    let s = load(path);
    let mut facts = s.facts.clone();
    if let Some(records) = &s.approvals {
        let hash = s.resource.hash.clone().unwrap_or_default();
        let excluded: Vec<&str> = facts.requester.as_deref().into_iter().collect();
        facts.approvals = count_valid(records, &hash, &excluded, s.now);
    }
    let request = AuthRequest {
        principal: s.principal.clone(),
        action: s.action,
        resource: s.resource.clone(),
        facts,
    };
    let decision = engine().decide(&request).unwrap();
    let mut got = decision.policy_ids();
    got.sort();
    let mut want = s.expect.policies.clone();
    want.sort();
    assert_eq!(
        (decision.kind(), &got),
        (s.expect.decision.as_str(), &want),
        "{}: {decision:?}",
        path.display()
    );
}

pub fn trials() -> Vec<Trial> {
    let files = files();
    let count = files.len();
    let mut trials: Vec<Trial> = files
        .iter()
        .cloned()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            Trial::test(format!("policy::{name}"), move || {
                check(move || run_scenario(&path))
            })
        })
        .collect();
    trials.push(Trial::test("policy::at_least_30", move || {
        if count >= 30 {
            Ok(())
        } else {
            Err(format!("only {count} scenarios").into())
        }
    }));
    trials.push(Trial::test(
        "policy::every_default_policy_decides_a_scenario",
        move || {
            check(move || {
                let decided: BTreeSet<String> =
                    files.iter().flat_map(|p| load(p).expect.policies).collect();
                let missing: Vec<String> = engine()
                    .policies()
                    .into_iter()
                    .map(|p| p.id)
                    .filter(|id| !decided.contains(id))
                    .collect();
                assert!(missing.is_empty(), "no scenario is decided by {missing:?}");
            })
        },
    ));
    trials
}

/// `provisioning policy check` and `policy validate` through the real binary.
pub fn cli_trials() -> Vec<Trial> {
    vec![
        Trial::test("policy::cli_check_prod_apply_stops_at_the_gate", || {
            check(|| {
                let data = tests::scratch("policy-check");
                let data_env = data.display().to_string();
                let env = [("PROVISIONING_PATHS_DATA_DIR", data_env.as_str())];
                let args = [
                    "policy",
                    "check",
                    "examples/prod-k8s-ha-upcloud.ncl",
                    "--json",
                ];
                let out = tests::run_env(
                    &root(),
                    &[&args[..], &["--as", "user:olga:operator"]].concat(),
                    &env,
                );
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(v["decision"]["decision"], "needs_approval", "{v}");
                assert_eq!(
                    v["decision"]["gates"][0]["id"], "prod-apply-needs-approval",
                    "{v}"
                );
                let out = tests::run_env(
                    &root(),
                    &[&args[..], &["--as", "user:vic:viewer"]].concat(),
                    &env,
                );
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(v["decision"]["decision"], "deny", "{v}");
                assert_eq!(v["decision"]["reasons"][0]["id"], "viewer-read-only", "{v}");
                let _ = std::fs::remove_dir_all(&data);
            })
        }),
        Trial::test("policy::cli_validate_names_the_bad_policy_and_file", || {
            check(|| {
                let dir = tests::scratch("policy-bad");
                std::fs::write(
                    dir.join("typo.cedar"),
                    "@id(\"typo\")\n@description(\"misspelt attribute\")\npermit (principal, action, resource) when { resource.enviroment == \"dev\" };\n",
                )
                .unwrap();
                let out =
                    tests::run_env(&root(), &["policy", "validate", dir.to_str().unwrap()], &[]);
                assert_eq!(out.status.code(), Some(1));
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains("`typo`")
                        && err.contains("typo.cedar")
                        && err.contains("enviroment"),
                    "{err}"
                );
                let out = tests::run_env(&root(), &["policy", "validate"], &[]);
                assert!(out.status.success());
                let _ = std::fs::remove_dir_all(&dir);
            })
        }),
    ]
}
