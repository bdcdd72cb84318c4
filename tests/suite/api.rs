//! The REST API end to end: the real binary (`provisioning serve --http`) on loopback with
//! three people's tokens, every route, auth failures (401), Cedar denials (403 with reasons),
//! unknown ids (404), malformed and mis-shaped bodies (400/422), a replayed approval (409), the
//! OpenAPI document, server-sent events, health and metrics (the HTTP edges themselves are in
//! `edges.rs`).

use std::time::Duration;

use libtest_mimic::Trial;
use serde_json::{Value, json};
use sha2::Digest;
use tests::scratch;

use crate::check;

mod remote_cli;
use crate::mcp::{Dir, PROD, Server, dev_config, start_http};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";
const VIC: &str = "vic-token-0123456789";

fn people() -> String {
    let h = |t: &str| format!("{:x}", sha2::Sha256::digest(t.as_bytes()));
    format!(
        "[users.alice]\nroles = [\"operator\"]\ntoken_sha256 = \"{}\"\n\n[users.bob]\nroles = [\"approver\"]\ntoken_sha256 = \"{}\"\n\n[users.vic]\nroles = [\"viewer\"]\ntoken_sha256 = \"{}\"\n",
        h(ALICE),
        h(BOB),
        h(VIC)
    )
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, String, String) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, ctype, resp.text().await.unwrap())
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let (s, _, t) = self
            .send(reqwest::Method::GET, path, Some(token), None)
            .await;
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let (s, _, t) = self
            .send(
                reqwest::Method::POST,
                path,
                Some(token),
                Some(body.to_string()),
            )
            .await;
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    async fn wait_for(&self, workflow: &str, status: &str) -> Value {
        for _ in 0..200 {
            let (_, v) = self
                .get(&format!("/api/v1/workflows/{workflow}"), VIC)
                .await;
            if v["workflow"]["status"] == status {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("workflow {workflow} never reached {status}");
    }
}

fn every_route() {
    let dir = Dir(scratch("api"));
    std::fs::write(dir.0.join("config.toml"), people()).unwrap();
    let (child, url) = start_http(&dir.0);
    let _server = Server(child);
    let base = url.trim_end_matches("/mcp").to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let api = Api {
            base,
            http: reqwest::Client::new(),
        };

        // Auth: no token, a wrong token.
        let (s, ctype, _) = api
            .send(reqwest::Method::GET, "/api/v1/workflows", None, None)
            .await;
        assert_eq!((s, ctype.as_str()), (401, "application/problem+json"));
        let (s, _, _) = api
            .send(
                reqwest::Method::GET,
                "/api/v1/workflows",
                Some("nope"),
                None,
            )
            .await;
        assert_eq!(s, 401);

        // The OpenAPI document lists every route.
        let (s, _, doc) = api
            .send(reqwest::Method::GET, "/api/openapi.json", None, None)
            .await;
        assert_eq!(s, 200);
        let doc: Value = serde_json::from_str(&doc).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        // Any change to a route, a parameter or a schema shows here (INSTA_UPDATE=always to
        // accept one on purpose); the version is left out so a release does not change it.
        let mut surface = doc.clone();
        surface["info"]["version"] = Value::Null;
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_json_snapshot!("rest_openapi", surface);
        });
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        for p in [
            "/api/v1/configs/validate",
            "/api/v1/plans",
            "/api/v1/plans/{id}",
            "/api/v1/plans/{id}/apply",
            "/api/v1/approvals",
            "/api/v1/approvals/{id}",
            "/api/v1/approvals/{id}/approve",
            "/api/v1/approvals/{id}/reject",
            "/api/v1/workflows",
            "/api/v1/workflows/{id}",
            "/api/v1/workflows/{id}/cancel",
            "/api/v1/workflows/{id}/resume",
            "/api/v1/workflows/{id}/rollback",
            "/api/v1/workflows/{id}/events",
            "/api/v1/state",
            "/api/v1/drift",
            "/api/v1/audit",
            "/api/v1/audit/export",
            "/api/v1/audit/verify",
            "/api/v1/docs/search",
            "/api/v1/whoami",
            "/api/v1/policies",
            "/api/v1/policies/validate",
            "/api/v1/policies/simulate",
            "/api/v1/catalog",
        ] {
            assert!(
                paths.iter().any(|k| k.as_str() == p),
                "{p} missing from {paths:?}"
            );
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

        // Configs: malformed JSON 400, wrong shape 422, invalid config 200 with diagnostics.
        let (s, _, body) = api
            .send(
                reqwest::Method::POST,
                "/api/v1/configs/validate",
                Some(ALICE),
                Some("{not json".into()),
            )
            .await;
        assert_eq!(s, 400, "{body}");
        let (s, v) = api
            .post("/api/v1/configs/validate", ALICE, json!({ "cfg": 1 }))
            .await;
        assert_eq!(s, 422, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("cfg"), "{v}");
        let (s, v) = api
            .post(
                "/api/v1/configs/validate",
                ALICE,
                json!({ "config": dev_config(1).replace("sim-1", "sim-9") }),
            )
            .await;
        assert_eq!((s, &v["valid"]), (200, &json!(false)), "{v}");
        assert!(v["diagnostics"].to_string().contains("sim-9"));

        // Plans: create, get, unknown, invalid config.
        let (s, plan) = api
            .post("/api/v1/plans", ALICE, json!({ "config": dev_config(2) }))
            .await;
        assert_eq!(s, 201, "{plan}");
        let plan_id = plan["id"].as_str().unwrap().to_string();
        let (s, got) = api.get(&format!("/api/v1/plans/{plan_id}"), VIC).await;
        assert_eq!(s, 200);
        assert!(got["rendered"].as_str().unwrap().contains("n1"), "{got}");
        let (s, v) = api.get("/api/v1/plans/plan-000000000000", VIC).await;
        assert_eq!(s, 404, "{v}");
        let (s, _) = api
            .post("/api/v1/plans", ALICE, json!({ "config": "{ nope" }))
            .await;
        assert_eq!(s, 422);

        // A viewer may not apply: Cedar's denial with its reason.
        let (s, v) = api
            .post(&format!("/api/v1/plans/{plan_id}/apply"), VIC, json!({}))
            .await;
        assert_eq!(s, 403, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("denied"), "{v}");
        // Alice applies (dev: allowed); it runs in the background.
        let (s, v) = api
            .post(&format!("/api/v1/plans/{plan_id}/apply"), ALICE, json!({}))
            .await;
        assert_eq!(s, 202, "{v}");
        let wf = v["workflow"].as_str().unwrap().to_string();
        let done = api.wait_for(&wf, "succeeded").await;
        assert_eq!(done["steps"].as_array().unwrap().len(), 4);
        let (s, list) = api.get("/api/v1/workflows?limit=5", VIC).await;
        assert_eq!(s, 200);
        assert!(list.to_string().contains(&wf));
        let (s, _) = api.get("/api/v1/workflows?limit=0", VIC).await;
        assert_eq!(s, 422);
        let (s, ctype, body) = api
            .send(reqwest::Method::GET, "/api/v1/workflows?limit=lots", Some(VIC), None)
            .await;
        assert_eq!((s, ctype.as_str()), (422, "application/problem+json"), "{body}");
        assert!(body.contains("limit"), "{body}");
        let (s, _) = api.get("/api/v1/workflows/wf-nope", VIC).await;
        assert_eq!(s, 404);
        let (s, ctype, events) = api
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/workflows/{wf}/events"),
                Some(VIC),
                None,
            )
            .await;
        assert_eq!(s, 200);
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        assert!(
            events.contains("workflow_finished") || events.contains("WorkflowFinished"),
            "{events}"
        );
        // Finished workflows: cancel and resume 409, rollback 403 (plan a destroy instead).
        let (s, v) = api
            .post(&format!("/api/v1/workflows/{wf}/cancel"), ALICE, json!({}))
            .await;
        assert_eq!(s, 409, "{v}");
        let (s, _) = api
            .post(&format!("/api/v1/workflows/{wf}/resume"), ALICE, json!({}))
            .await;
        assert_eq!(s, 409);
        let (s, v) = api
            .post(
                &format!("/api/v1/workflows/{wf}/rollback"),
                ALICE,
                json!({}),
            )
            .await;
        assert_eq!(s, 403, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("destroy"), "{v}");
        let (s, _) = api
            .post("/api/v1/workflows/wf-nope/cancel", ALICE, json!({}))
            .await;
        assert_eq!(s, 404);

        // Prod: the gate, approvals, the requester and a viewer refused, a replay refused.
        let (_, prod) = api
            .post("/api/v1/plans", ALICE, json!({ "config": PROD }))
            .await;
        let prod_id = prod["id"].as_str().unwrap().to_string();
        let (s, gated) = api
            .post(&format!("/api/v1/plans/{prod_id}/apply"), ALICE, json!({}))
            .await;
        assert_eq!(s, 403, "{gated}");
        let request = gated["approval_request"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (s, pending) = api.get("/api/v1/approvals", VIC).await;
        assert_eq!(s, 200);
        assert!(pending.to_string().contains(&request));
        let (s, _) = api.get("/api/v1/approvals?status=bogus", VIC).await;
        assert_eq!(s, 422);
        let (s, one) = api.get(&format!("/api/v1/approvals/{request}"), VIC).await;
        assert_eq!(s, 200);
        assert_eq!(one["request"]["requester"], "alice");
        assert!(one["plan"]["rendered"].is_string());
        let (s, _) = api.get("/api/v1/approvals/apr-nope", VIC).await;
        assert_eq!(s, 404);
        let (s, v) = api
            .post(
                &format!("/api/v1/approvals/{request}/approve"),
                ALICE,
                json!({}),
            )
            .await;
        assert_eq!(s, 403, "the requester: {v}");
        let (s, v) = api
            .post(
                &format!("/api/v1/approvals/{request}/approve"),
                VIC,
                json!({}),
            )
            .await;
        assert_eq!(s, 403, "a viewer: {v}");
        let (s, v) = api
            .post(
                &format!("/api/v1/approvals/{request}/reject"),
                BOB,
                json!({}),
            )
            .await;
        assert_eq!(s, 422, "reject without a comment: {v}");
        let (s, v) = api
            .post(
                &format!("/api/v1/approvals/{request}/approve"),
                BOB,
                json!({ "comment": "ok" }),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = api
            .post(
                &format!("/api/v1/approvals/{request}/approve"),
                BOB,
                json!({ "nope": 1 }),
            )
            .await;
        assert_eq!(s, 422, "{v}");
        let (s, v) = api
            .post(&format!("/api/v1/plans/{prod_id}/apply"), ALICE, json!({}))
            .await;
        assert_eq!(s, 202, "{v}");
        api.wait_for(v["workflow"].as_str().unwrap(), "succeeded")
            .await;
        let (s, v) = api
            .post(
                &format!("/api/v1/approvals/{request}/approve"),
                BOB,
                json!({ "comment": "again" }),
            )
            .await;
        assert_eq!(s, 409, "a replayed approval: {v}");
        assert!(v["detail"].as_str().unwrap().contains("single use"), "{v}");

        // State, drift, audit, docs, catalog.
        let (s, st) = api.get("/api/v1/state?workspace=shop", VIC).await;
        assert_eq!(s, 200);
        assert_eq!(st["shop"].as_array().unwrap().len(), 1, "{st}");
        let (s, d) = api.get("/api/v1/drift?workspace=lab", VIC).await;
        assert_eq!(s, 200, "{d}");
        assert_eq!(d["checked"], 4, "{d}");
        let (s, _) = api.get("/api/v1/drift", VIC).await;
        assert_eq!(s, 422);
        let (s, granted) = api.get("/api/v1/audit?kind=approval_granted", VIC).await;
        assert_eq!(s, 200);
        assert_eq!(granted.as_array().unwrap().len(), 1, "{granted}");
        let (s, _) = api.get("/api/v1/audit?limit=0", VIC).await;
        assert_eq!(s, 422);
        let (s, ctype, lines) = api
            .send(
                reqwest::Method::GET,
                "/api/v1/audit/export",
                Some(VIC),
                None,
            )
            .await;
        assert_eq!((s, ctype.as_str()), (200, "application/x-ndjson"));
        assert!(lines.lines().count() >= 5);
        let (s, verify) = api.get("/api/v1/audit/verify", VIC).await;
        assert_eq!((s, &verify["ok"]), (200, &json!(true)), "{verify}");
        let (s, hits) = api
            .get("/api/v1/docs/search?q=hetzner%20zones&k=3", VIC)
            .await;
        assert_eq!(s, 200, "{hits}");
        assert!(!hits["hits"].as_array().unwrap().is_empty());
        let (s, _) = api.get("/api/v1/docs/search?q=", VIC).await;
        assert_eq!(s, 422);
        let (s, _) = api.get("/api/v1/docs/search?q=redis&k=0", VIC).await;
        assert_eq!(s, 422);
        // Policies: the set in force, validating text, simulating a decision.
        let (s, list) = api.get("/api/v1/policies", VIC).await;
        assert_eq!(s, 200);
        assert!(list.to_string().contains("agents-never-approve"), "{list}");
        let (s, v) = api
            .post("/api/v1/policies/validate", VIC, json!({ "policies": "@id(\"x\")\n@description(\"d\")\nforbid(principal, action, resource) when { context.nope };" }))
            .await;
        assert_eq!((s, &v["valid"]), (200, &json!(false)), "{v}");
        let (s, v) = api
            .post("/api/v1/policies/validate", VIC, json!({ "policies": "@id(\"no-friday\")\n@description(\"d\")\nforbid(principal, action, resource);" }))
            .await;
        assert_eq!((s, &v["valid"]), (200, &json!(true)), "{v}");
        let (s, v) = api
            .post("/api/v1/policies/simulate", VIC, json!({ "plan_id": prod_id, "principal": "user:carol:operator" }))
            .await;
        assert_eq!(s, 200, "{v}");
        assert!(v["decision"].to_string().contains("needs_approval"), "{v}");
        assert_eq!(v["principal"], "user:carol");
        let (s, _) = api
            .post("/api/v1/policies/simulate", VIC, json!({ "plan_id": "plan-000000000000" }))
            .await;
        assert_eq!(s, 404);
        let (s, _) = api
            .post("/api/v1/policies/simulate", VIC, json!({ "plan_id": prod_id, "principal": "nobody" }))
            .await;
        assert_eq!(s, 422);

        let (s, me) = api.get("/api/v1/whoami", BOB).await;
        assert_eq!((s, &me["principal"]), (200, &json!("user:bob")), "{me}");
        assert_eq!(me["roles"], json!(["approver"]));
        let (s, cat) = api.get("/api/v1/catalog", VIC).await;
        assert_eq!(s, 200);
        assert!(cat["providers"]["hetzner"].is_object());

        // Health (no token needed) and metrics (any valid token).
        let (s, _, _) = api.send(reqwest::Method::GET, "/healthz", None, None).await;
        assert_eq!(s, 200);
        let (s, _, _) = api.send(reqwest::Method::GET, "/readyz", None, None).await;
        assert_eq!(s, 200);
        let (s, _, _) = api.send(reqwest::Method::GET, "/metrics", None, None).await;
        assert_eq!(s, 401);
        let (s, _, metrics) = api
            .send(reqwest::Method::GET, "/metrics", Some(VIC), None)
            .await;
        assert_eq!(s, 200);
        assert!(
            metrics.contains("provisioning_workflows_finished_total{outcome=\"succeeded\"} 2"),
            "{metrics}"
        );
        assert!(metrics.contains("provisioning_http_requests_total{class=\"4xx\"}"));
    });
}

/// The Control Center in a real browser (tests/browser/approve.cjs: Debian's chromium through
/// playwright-core, set up by scripts/test): bob approves alice's prod plan on the page, alice
/// applies, the page follows the workflow to `succeeded`; the screenshot is kept in
/// `target/test-artifacts/control-center.png`.
/// Where playwright-core is (scripts/test installs it).
pub(crate) fn node_modules() -> std::path::PathBuf {
    let node_modules = std::env::var_os("PROVISIONING_TEST_NODE_MODULES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/provisioning-node/node_modules")
        });
    assert!(
        node_modules.join("playwright-core").is_dir(),
        "playwright-core is not in {}; run scripts/test (it installs it) or set PROVISIONING_TEST_NODE_MODULES",
        node_modules.display()
    );
    node_modules
}

fn browser_approval() {
    let node_modules = node_modules();
    let dir = Dir(scratch("api-browser"));
    std::fs::write(dir.0.join("config.toml"), people()).unwrap();
    let (child, url) = start_http(&dir.0);
    let _server = Server(child);
    let base = url.trim_end_matches("/mcp").to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (plan, request) = rt.block_on(async {
        let api = Api {
            base: base.clone(),
            http: reqwest::Client::new(),
        };
        let (_, plan) = api
            .post("/api/v1/plans", ALICE, json!({ "config": PROD }))
            .await;
        let plan_id = plan["id"].as_str().unwrap().to_string();
        let (s, gated) = api
            .post(&format!("/api/v1/plans/{plan_id}/apply"), ALICE, json!({}))
            .await;
        assert_eq!(s, 403, "{gated}");
        (
            plan_id,
            gated["approval_request"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    });
    let artifacts = tests::root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("control-center.png");
    let _ = std::fs::remove_file(&shot);
    let out = std::process::Command::new("node")
        .arg(tests::root().join("tests/browser/approve.cjs"))
        .env("NODE_PATH", &node_modules)
        .env("BASE_URL", &base)
        .env("APPROVER_TOKEN", BOB)
        .env("REQUESTER_TOKEN", ALICE)
        .env("REQUEST_ID", &request)
        .env("PLAN_ID", &plan)
        .env("SCREENSHOT", &shot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "browser flow failed ({:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot {}",
        shot.display()
    );
}

/// The OpenAPI document validates (openapi-spec-validator, pip), then schemathesis (pip)
/// generates requests from it, valid and not, for every operation, as an operator with a
/// token: no answer may be a server error (5xx), and every status code must be documented.
fn schemathesis_finds_no_server_error() {
    let st = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default()
        .join(".cache/provisioning-pyenv/bin/st");
    assert!(
        st.exists(),
        "schemathesis is not at {}; run scripts/test (it installs it)",
        st.display()
    );
    let dir = Dir(scratch("api-fuzz"));
    std::fs::write(dir.0.join("config.toml"), people()).unwrap();
    let (child, url) = start_http(&dir.0);
    let _server = Server(child);
    let base = url.trim_end_matches("/mcp").to_string();
    // Something to find: a dev plan and a workflow.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let api = Api {
            base: base.clone(),
            http: reqwest::Client::new(),
        };
        let (_, plan) = api
            .post("/api/v1/plans", ALICE, json!({ "config": dev_config(1) }))
            .await;
        let (s, v) = api
            .post(
                &format!("/api/v1/plans/{}/apply", plan["id"].as_str().unwrap()),
                ALICE,
                json!({}),
            )
            .await;
        assert_eq!(s, 202, "{v}");
        api.wait_for(v["workflow"].as_str().unwrap(), "succeeded")
            .await;
    });
    let doc = dir.0.join("openapi.json");
    let spec = rt.block_on(async {
        reqwest::get(format!("{base}/api/openapi.json"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    std::fs::write(&doc, spec).unwrap();
    let validated = std::process::Command::new(st.with_file_name("openapi-spec-validator"))
        .arg(&doc)
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "the OpenAPI document does not validate: {}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
    let out = std::process::Command::new(&st)
        .args([
            "run",
            &format!("{base}/api/openapi.json"),
            "--checks",
            "not_a_server_error,status_code_conformance",
            "--max-examples",
            "20",
            "--request-timeout",
            "20",
            "--header",
            &format!("Authorization: Bearer {ALICE}"),
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its cache (`.schemathesis/`) goes to the scratch dir, not the checkout.
        .current_dir(&dir.0)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(!text.contains("Server error"), "{text}");
}

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("api::every_route", || check(every_route)),
        Trial::test("api::workflow_actions_are_decisions", || {
            check(workflow_actions_are_decisions)
        }),
        Trial::test("api::browser_approval", || check(browser_approval)),
        Trial::test("api::cli_over_rest", || check(remote_cli::cli_over_rest)),
        Trial::test("api::schemathesis_finds_no_server_error", || {
            check(schemathesis_finds_no_server_error)
        }),
    ]
}

/// Cancel, resume and rollback are policy decisions for the token's person: a viewer gets 403
/// naming the deciding policy, each refusal is in the audit log with the channel used (`rest`);
/// the operator's resume of the same failed workflow is decided and allowed.
fn workflow_actions_are_decisions() {
    let dir = Dir(scratch("api-actions"));
    std::fs::write(dir.0.join("config.toml"), people()).unwrap();
    let (child, base) = tests::serve_http_with(
        &dir.0,
        &[],
        &[("PROVISIONING_SIM_FAIL", "n2")],
        std::process::Stdio::null(),
    )
    .unwrap();
    let _server = Server(child);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let api = Api {
            base,
            http: reqwest::Client::new(),
        };
        let (s, plan) = api
            .post("/api/v1/plans", ALICE, json!({ "config": dev_config(2) }))
            .await;
        assert_eq!(s, 201, "{plan}");
        let plan_id = plan["id"].as_str().unwrap();
        let (s, v) = api
            .post(&format!("/api/v1/plans/{plan_id}/apply"), ALICE, json!({}))
            .await;
        assert!(s == 202 || s == 200, "{s} {v}");
        let wf = v["workflow"].as_str().unwrap().to_string();
        api.wait_for(&wf, "failed").await;

        for verb in ["cancel", "resume", "rollback"] {
            let (s, v) = api
                .post(&format!("/api/v1/workflows/{wf}/{verb}"), VIC, json!({}))
                .await;
            assert_eq!(s, 403, "viewer {verb}: {v}");
            assert!(
                v["detail"].as_str().unwrap().contains("viewer-read-only"),
                "viewer {verb}: {v}"
            );
        }
        let (s, audit) = api.get("/api/v1/audit?kind=denial&limit=100", ALICE).await;
        assert_eq!(s, 200, "{audit}");
        let denials: Vec<(String, String)> = audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["actor"] == "user:vic")
            .map(|e| {
                (
                    e["data"]["action"].as_str().unwrap_or("").to_string(),
                    e["data"]["channel"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        for verb in ["cancel", "resume", "rollback"] {
            assert!(
                denials.contains(&(verb.to_string(), "rest".to_string())),
                "no `{verb}` denial over rest in {denials:?}"
            );
        }

        // The operator may resume it (dev); the decision is recorded before it runs.
        let (s, v) = api
            .post(&format!("/api/v1/workflows/{wf}/resume"), ALICE, json!({}))
            .await;
        assert!(s == 202 || s == 200, "{s} {v}");
        let (_, audit) = api
            .get("/api/v1/audit?kind=decision&limit=100", ALICE)
            .await;
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["actor"] == "user:alice"
                    && e["data"]["action"] == "resume"
                    && e["data"]["channel"] == "rest"),
            "{audit}"
        );
    });
}
