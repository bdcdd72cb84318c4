//! Approval gates end to end: the real binary, the embedded SurrealDB store, the default Cedar
//! policies, and people told apart the way a team's server tells them apart: each person's CLI
//! talks to one `serve --http` with their own token (`--server`, `PROVISIONING_TOKEN`), and the
//! server's config maps the token's SHA-256 to the person and their roles.

use std::path::{Path, PathBuf};
use std::process::Output;

use libtest_mimic::Trial;
use sha2::Digest;
use tests::{root, run_env, scratch};

use crate::check;

const PEOPLE: [(&str, &str); 4] = [
    ("alice", "operator"),
    ("bob", "approver"),
    ("carol", "approver"),
    ("vic", "viewer"),
];

fn token(user: &str) -> String {
    format!("{user}-token-for-the-approvals-trials")
}

/// The people, each with a token, as a config file's `[users]`.
fn people() -> String {
    PEOPLE
        .iter()
        .map(|(user, role)| {
            format!(
                "[users.{user}]\nroles = [\"{role}\"]\ntoken_sha256 = \"{:x}\"\n\n",
                sha2::Sha256::digest(token(user).as_bytes())
            )
        })
        .collect()
}

struct Env {
    dir: PathBuf,
    data: String,
    config: String,
    /// The team's server, when the config starts one.
    server: Option<(std::process::Child, String)>,
}

impl Env {
    /// A server on a scratch installation with `config`.
    fn new(name: &str, config: &str) -> Env {
        Env::offline(name, config).serve()
    }

    /// Starts the team's server on this installation.
    fn serve(mut self) -> Env {
        self.server = Some(tests::serve_http(&self.dir, &[]).unwrap());
        self
    }

    /// No server: the CLI opens the state itself (as the account running the tests).
    fn offline(name: &str, config: &str) -> Env {
        let dir = scratch(name);
        std::fs::write(dir.join("config.toml"), config).unwrap();
        Env {
            data: dir.join("data").display().to_string(),
            config: dir.join("config.toml").display().to_string(),
            dir,
            server: None,
        }
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// `provisioning ARGS` as `user`: with their token on the server, or offline as whoever runs
    /// the tests (`user` is then only a label).
    fn run(&self, user: &str, args: &[&str]) -> Output {
        let token = token(user);
        let mut env = vec![
            ("PROVISIONING_PATHS_DATA_DIR", self.data.as_str()),
            ("PROVISIONING_CONFIG", self.config.as_str()),
            // Who you are comes from the token (or the kernel), never from these.
            ("USER", "mallory"),
            ("LOGNAME", "mallory"),
        ];
        if let Some((_, url)) = &self.server {
            env.push(("PROVISIONING_SERVER", url.as_str()));
            env.push(("PROVISIONING_TOKEN", token.as_str()));
        }
        run_env(&root(), args, &env)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some((child, _)) = &mut self.server {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

fn shop(zone2: &str) -> String {
    format!(
        r#"{{
  workspace = {{ name = "shop", environment = "prod", owner = "alice" }},
  servers = [
    {{ name = "web-1", provider = "sim", plan = "small", zone = "sim-1", taskservs = ["nginx"] }},
    {{ name = "web-2", provider = "sim", plan = "small", zone = "{zone2}", taskservs = ["nginx"] }},
  ],
}}
"#
    )
}

fn audit_kinds(env: &Env) -> Vec<String> {
    let out = env.run("alice", &["audit", "export"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["kind"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The acceptance flow: a prod apply stops at the gate and records a request; the requester
/// cannot approve it; a second person does; the apply proceeds; the approval cannot be
/// replayed; one changed field makes the next apply stop again.
fn prod_apply_waits_for_a_second_person() {
    let env = Env::new("approvals-prod", &people());
    let config = env.file("shop.ncl", &shop("sim-2"));

    let out = env.run("alice", &["apply", &config, "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let gated = json(&out);
    assert_eq!(gated["result"], "needs_approval", "{gated}");
    let request = gated["request"]["id"].as_str().unwrap().to_string();
    let plan = gated["plan"].as_str().unwrap().to_string();
    assert_eq!(gated["request"]["requester"], "alice");
    assert_eq!(
        gated["request"]["gates"][0]["id"],
        "prod-apply-needs-approval"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("provisioning approvals approve {request}")),
        "tells what to do next: {stderr}"
    );
    // Nothing ran.
    assert_eq!(
        json(&env.run("alice", &["state", "--json"])),
        serde_json::json!([])
    );

    // The request is listed for approvers, with the plan.
    let out = env.run("bob", &["approvals", "--json"]);
    let listed = json(&out);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["status"], "pending");
    let out = env.run("bob", &["approvals", "show", &request]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("prod-apply-needs-approval") && shown.contains("+ server web-2"),
        "{shown}"
    );

    // The requester and a viewer are refused, and nothing is recorded.
    for who in ["alice", "vic"] {
        let out = env.run(who, &["approvals", "approve", &request]);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    }
    let out = env.run("bob", &["approvals", "show", &request, "--json"]);
    assert_eq!(json(&out)["request"]["approvals"], serde_json::json!([]));

    let out = env.run(
        "bob",
        &[
            "approvals",
            "approve",
            &request,
            "--comment",
            "ok for today",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("can now be applied once"));

    let out = env.run("alice", &["apply", "--plan", &plan, "--yes", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["status"], "succeeded", "{}", text(&out));
    assert_eq!(
        json(&env.run("alice", &["state", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Single use: the spent request takes no more approvals.
    let out = env.run("carol", &["approvals", "approve", &request]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("single use"),
        "{}",
        text(&out)
    );

    // One field changed: a new plan hash, so the gate stops it again with a new request.
    let changed = env.file("shop.ncl", &shop("sim-1"));
    let out = env.run("alice", &["apply", &changed, "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let again = json(&out);
    assert_ne!(again["request"]["id"], request.as_str());
    assert_ne!(again["plan"], plan.as_str());

    // Every step is in the audit log, and the chain verifies.
    let kinds = audit_kinds(&env);
    for kind in [
        "approval_requested",
        "gated",
        "approval_denied",
        "approval_granted",
        "approval_used",
        "decision",
        "workflow",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing in {kinds:?}"
        );
    }
    let out = env.run("alice", &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A rejection carries its comment to the requester and closes that exact plan.
fn a_rejected_plan_stays_rejected() {
    let env = Env::new("approvals-reject", &people());
    let config = env.file("shop.ncl", &shop("sim-2"));
    let out = env.run("alice", &["apply", &config, "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let request = json(&out)["request"]["id"].as_str().unwrap().to_string();
    let out = env.run("bob", &["approvals", "reject", &request]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a comment is required: {}",
        text(&out)
    );
    let out = env.run(
        "bob",
        &[
            "approvals",
            "reject",
            &request,
            "--comment",
            "freeze until Monday",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run("alice", &["apply", &config, "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rejected by bob") && err.contains("freeze until Monday"),
        "{err}"
    );
    let out = env.run("bob", &["approvals", "approve", "apr-000000000000"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&request),
        "{}",
        text(&out)
    );
}

/// Budgets and forbidden zones are set per workspace in the config file; a policy directory
/// there extends the defaults.
fn workspace_limits_and_policy_dir_come_from_the_config() {
    let dir_policies = r#"
@id("staging-spend-cap")
@description("Staging applies may not add more than 9.00 a month, approved or not")
forbid (principal, action == Provisioning::Action::"apply", resource)
when { resource.environment == "staging" && context.cost_delta_cents > 900 };
"#;
    let env = Env::offline(
        "approvals-limits",
        &format!(
            "{}\n[workspaces.stage]\nbudget = 4.0\nforbidden_zones = [\"sim-2\"]\n\n[policies]\ndir = \"policies\"\n",
            people()
        ),
    );
    std::fs::create_dir_all(env.dir.join("policies")).unwrap();
    std::fs::write(env.dir.join("policies/extra.cedar"), dir_policies).unwrap();
    let env = env.serve();
    let stage = |zone: &str, n: usize| {
        let servers: Vec<String> = (1..=n)
            .map(|i| {
                format!(r#"{{ name = "s{i}", provider = "sim", plan = "small", zone = "{zone}" }}"#)
            })
            .collect();
        format!(
            "{{ workspace = {{ name = \"stage\", environment = \"staging\" }}, servers = [{}] }}",
            servers.join(", ")
        )
    };
    // Above the 4.00 budget: gated (the cost is read from the plan, not assumed).
    let one = env.file("one.ncl", &stage("sim-1", 1));
    let out = env.run("alice", &["plan", &one, "--json"]);
    let delta = json(&out)["cost"][0]["delta"].as_f64().unwrap();
    assert!(
        delta > 4.0,
        "the test needs a plan above the 4.00 budget, got {delta}"
    );
    let out = env.run("alice", &["apply", &one, "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(
        json(&out)["request"]["gates"][0]["id"],
        "over-budget-needs-approval"
    );

    let forbidden = env.file("forbidden.ncl", &stage("sim-2", 1));
    let out = env.run("alice", &["apply", &forbidden, "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden-zones"),
        "{}",
        text(&out)
    );

    let custom = env.file("custom.ncl", &stage("sim-1", 2));
    let out = env.run("alice", &["apply", &custom, "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("staging-spend-cap"),
        "{}",
        text(&out)
    );

    let out = env.run("alice", &["policy", "list", "--json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("staging-spend-cap"));
}

/// A broken config file or policy directory stops every command with a message naming it.
fn a_bad_config_file_or_policy_dir_is_named() {
    let env = Env::offline(
        "approvals-badconfig",
        "[users.alice]\nroles = \"operator\"\n",
    );
    let out = env.run("alice", &["approvals"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.toml") && err.contains("line 2"),
        "{err}"
    );

    let env = Env::offline(
        "approvals-badpolicy",
        "[policies]\ndir = \"p\"\nmode = \"replace\"\n",
    );
    std::fs::create_dir_all(env.dir.join("p")).unwrap();
    std::fs::write(
        env.dir.join("p/typo.cedar"),
        "@id(\"typo\") @description(\"d\") permit (principal, action, resource) when { resource.enviroment == \"dev\" };",
    )
    .unwrap();
    let config = env.file("shop.ncl", &shop("sim-2"));
    let out = env.run("alice", &["apply", &config, "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`typo`") && err.contains("typo.cedar"),
        "{err}"
    );
    assert!(
        !Path::new(&env.data).join("sim/ledger.jsonl").exists() || {
            std::fs::read_to_string(Path::new(&env.data).join("sim/ledger.jsonl"))
                .unwrap()
                .is_empty()
        }
    );
}

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("approvals::prod_apply_waits_for_a_second_person", || {
            check(prod_apply_waits_for_a_second_person)
        }),
        Trial::test("approvals::a_rejected_plan_stays_rejected", || {
            check(a_rejected_plan_stays_rejected)
        }),
        Trial::test(
            "approvals::workspace_limits_and_policy_dir_come_from_the_config",
            || check(workspace_limits_and_policy_dir_come_from_the_config),
        ),
        Trial::test(
            "approvals::a_bad_config_file_or_policy_dir_is_named",
            || check(a_bad_config_file_or_policy_dir_is_named),
        ),
    ]
}
