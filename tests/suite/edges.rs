//! The HTTP edges as an outsider sees them, through real requests to the real binary: a foreign
//! `Origin` gets 403 and an unknown `Host` 421 on every kind of route (MCP, REST, server-sent
//! events, the page, metrics), with or without a valid token; `/metrics` needs a token and its
//! counters move as things happen; requests without a valid token are rate limited per
//! address; oversized and deeply nested bodies are refused with a 4xx and change nothing.

use libtest_mimic::Trial;
use serde_json::{Value, json};
use sha2::Digest;
use tests::scratch;

use crate::check;
use crate::mcp::{Dir, PROD, Server, dev_config};

const ALICE: &str = "alice-edge-token-0123456789";
const BOB: &str = "bob-edge-token-0123456789";

fn config() -> String {
    let h = |t: &str| format!("{:x}", sha2::Sha256::digest(t.as_bytes()));
    format!(
        "[users.alice]\nroles = [\"operator\"]\ntoken_sha256 = \"{}\"\n\n[users.bob]\nroles = [\"approver\"]\ntoken_sha256 = \"{}\"\n",
        h(ALICE),
        h(BOB)
    )
}

/// A server on a scratch dir with alice (operator) and bob (approver); `extra` serve flags.
fn start(name: &str, extra: &[&str]) -> (Dir, Server, String) {
    let dir = Dir(scratch(name));
    std::fs::write(dir.0.join("config.toml"), config()).unwrap();
    let (child, base) = tests::serve_http(&dir.0, extra).unwrap();
    (dir, Server(child), base)
}

struct Http {
    base: String,
    client: reqwest::Client,
}

/// A response's status, `Retry-After`, `Connection` and body.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    connection: Option<String>,
    content_type: String,
    body: String,
}

impl Http {
    fn new(base: &str) -> Http {
        Http {
            base: base.to_string(),
            client: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Answer {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(b);
        }
        let resp = req.send().await.unwrap();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("retry-after");
        let connection = header("connection");
        let content_type = header("content-type").unwrap_or_default();
        let status = resp.status().as_u16();
        // An event stream stays open; its status and headers are enough.
        let body = if content_type.starts_with("text/event-stream") {
            String::new()
        } else {
            resp.text().await.unwrap()
        };
        Answer {
            status,
            retry_after,
            connection,
            content_type,
            body,
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(reqwest::Method::GET, path, token, &[], None)
            .await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let a = self
            .send(
                reqwest::Method::POST,
                path,
                Some(token),
                &[],
                Some(body.to_string()),
            )
            .await;
        (
            a.status,
            serde_json::from_str(&a.body).unwrap_or(Value::String(a.body)),
        )
    }

    /// Waits (up to 2 s) for a sample of `/metrics` to reach `expected`; its last value.
    async fn eventually(&self, sample: &str, expected: u64) -> u64 {
        let mut value = 0;
        for _ in 0..40 {
            value = self.metric(sample).await;
            if value == expected {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        value
    }

    /// One sample of `/metrics` (0 when absent).
    async fn metric(&self, sample: &str) -> u64 {
        let a = self.get("/metrics", Some(ALICE)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body
            .lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn wait_for(&self, workflow: &str, status: &str) {
        for _ in 0..200 {
            let a = self
                .get(&format!("/api/v1/workflows/{workflow}"), Some(ALICE))
                .await;
            let v: Value = serde_json::from_str(&a.body).unwrap_or_default();
            if v["workflow"]["status"] == status {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("workflow {workflow} never reached {status}");
    }
}

const MCP_INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

/// Foreign Origin → 403 and unknown Host → 421 on MCP, REST, SSE, the page and metrics, with
/// and without a valid token; no Origin and the server's own origin are accepted.
fn foreign_origin_and_unknown_host_are_refused_everywhere() {
    let (_dir, _server, base) = start("edges-origin", &["--rate-limit", "1000"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = Http::new(&base);
        // A finished workflow, for its event stream.
        let (s, plan) = http
            .post("/api/v1/plans", ALICE, json!({ "config": dev_config(1) }))
            .await;
        assert_eq!(s, 201, "{plan}");
        let (s, v) = http
            .post(
                &format!("/api/v1/plans/{}/apply", plan["id"].as_str().unwrap()),
                ALICE,
                json!({}),
            )
            .await;
        assert_eq!(s, 202, "{v}");
        let wf = v["workflow"].as_str().unwrap().to_string();
        http.wait_for(&wf, "succeeded").await;

        let events = format!("/api/v1/workflows/{wf}/events");
        let routes: Vec<(reqwest::Method, &str, Option<String>)> = vec![
            (reqwest::Method::POST, "/mcp", Some(MCP_INIT.to_string())),
            (reqwest::Method::GET, "/api/v1/workflows", None),
            (reqwest::Method::GET, &events, None),
            (reqwest::Method::GET, "/", None),
            (reqwest::Method::GET, "/metrics", None),
            (reqwest::Method::GET, "/healthz", None),
            (reqwest::Method::GET, "/api/openapi.json", None),
        ];
        let port = base.rsplit(':').next().unwrap();
        let own_origin = format!("http://localhost:{port}");
        for (method, path, body) in &routes {
            for token in [None, Some(ALICE)] {
                let send = |headers: Vec<(&'static str, String)>| {
                    let http = &http;
                    let method = method.clone();
                    let body = body.clone();
                    async move {
                        let h: Vec<(&str, &str)> =
                            headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        http.send(method, path, token, &h, body).await
                    }
                };
                let who = format!("{method} {path} with token {}", token.is_some());
                for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
                    let a = send(vec![("Origin", origin.to_string())]).await;
                    assert_eq!(a.status, 403, "{who}, Origin {origin}: {}", a.body);
                    assert!(a.body.contains("origin"), "{who}: {}", a.body);
                    let api = path.starts_with("/api/");
                    assert_eq!(
                        a.content_type.starts_with("application/problem+json"),
                        api,
                        "{who}: {}",
                        a.content_type
                    );
                }
                let evil_on_our_port = format!("evil.example:{port}");
                for host in ["evil.example", evil_on_our_port.as_str(), "127.0.0.1:1"] {
                    let a = send(vec![("Host", host.to_string())]).await;
                    assert_eq!(a.status, 421, "{who}, Host {host}: {}", a.body);
                }
                // Neither an Origin (curl, SDKs) nor the server's own origin is refused; the
                // token decides from here on.
                for headers in [vec![], vec![("Origin", own_origin.clone())]] {
                    let a = send(headers).await;
                    let public = matches!(*path, "/" | "/healthz" | "/api/openapi.json");
                    let expected = if token.is_some() || public { 200 } else { 401 };
                    assert_eq!(a.status, expected, "{who}: {}", a.body);
                }
            }
        }
        let refused = http
            .metric("provisioning_http_refused_total{reason=\"origin\"}")
            .await;
        assert_eq!(refused, 7 * 2 * 3, "every foreign origin counted");
        let refused = http
            .metric("provisioning_http_refused_total{reason=\"host\"}")
            .await;
        assert_eq!(refused, 7 * 2 * 3, "every unknown host counted");
    });
}

/// `/metrics` needs a token; its counters move with requests, workflows and approvals.
fn metrics_need_a_token_and_count_as_things_happen() {
    let (_dir, _server, base) = start("edges-metrics", &["--rate-limit", "1000"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = Http::new(&base);
        let a = http.get("/metrics", None).await;
        assert_eq!(a.status, 401, "{}", a.body);
        let a = http.get("/metrics", Some("wrong")).await;
        assert_eq!(a.status, 401, "{}", a.body);
        let a = http.get("/metrics", Some(BOB)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(
            a.content_type.starts_with("text/plain"),
            "{}",
            a.content_type
        );

        let ok = "provisioning_http_requests_total{class=\"2xx\"}";
        let client_errors = "provisioning_http_requests_total{class=\"4xx\"}";
        let unauthorized = "provisioning_http_unauthorized_total";
        let before = (
            http.metric(ok).await,
            http.metric(client_errors).await,
            http.metric(unauthorized).await,
        );
        assert_eq!(http.get("/api/v1/whoami", Some(ALICE)).await.status, 200);
        assert_eq!(http.get("/api/v1/whoami", None).await.status, 401);
        assert_eq!(
            http.get("/api/v1/workflows/wf-nope", Some(ALICE))
                .await
                .status,
            404
        );
        let after = (
            http.metric(ok).await,
            http.metric(client_errors).await,
            http.metric(unauthorized).await,
        );
        // Each `metric` call is a 2xx itself (counted once its answer is out).
        assert_eq!(after.0, before.0 + 1 + 3, "2xx: {before:?} -> {after:?}");
        assert_eq!(after.1, before.1 + 2, "4xx: {before:?} -> {after:?}");
        assert_eq!(after.2, before.2 + 1, "401: {before:?} -> {after:?}");

        // Workflows: started and finished by outcome.
        let started = "provisioning_workflows_started_total{how=\"new\"}";
        let succeeded = "provisioning_workflows_finished_total{outcome=\"succeeded\"}";
        assert_eq!(
            (http.metric(started).await, http.metric(succeeded).await),
            (0, 0)
        );
        for _ in 0..2 {
            let (_, plan) = http
                .post("/api/v1/plans", ALICE, json!({ "config": dev_config(1) }))
                .await;
            let (s, v) = http
                .post(
                    &format!("/api/v1/plans/{}/apply", plan["id"].as_str().unwrap()),
                    ALICE,
                    json!({}),
                )
                .await;
            if s == 202 {
                http.wait_for(v["workflow"].as_str().unwrap(), "succeeded")
                    .await;
            }
        }
        // The second plan had nothing left to change: one workflow.
        assert_eq!(http.eventually(started, 1).await, 1);
        assert_eq!(http.eventually(succeeded, 1).await, 1);

        // Approvals: a decision through REST is counted.
        let granted = "provisioning_approval_decisions_total{decision=\"granted\"}";
        assert_eq!(http.metric(granted).await, 0);
        let request = gated_request(&http).await;
        let (s, v) = http
            .post(
                &format!("/api/v1/approvals/{request}/approve"),
                BOB,
                json!({ "comment": "ok" }),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(http.metric(granted).await, 1);
    });
}

/// Alice's prod plan, gated: the approval request's id.
async fn gated_request(http: &Http) -> String {
    let (_, plan) = http
        .post("/api/v1/plans", ALICE, json!({ "config": PROD }))
        .await;
    let (s, gated) = http
        .post(
            &format!("/api/v1/plans/{}/apply", plan["id"].as_str().unwrap()),
            ALICE,
            json!({}),
        )
        .await;
    assert_eq!(s, 403, "{gated}");
    gated["approval_request"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A burst of requests with a bad or missing token from one address gets 429 with
/// Retry-After; a valid token is still served (its own bucket).
fn requests_without_a_valid_token_are_rate_limited() {
    let (_dir, _server, base) = start("edges-burst", &["--rate-limit", "2"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = Http::new(&base);
        let mut statuses = Vec::new();
        let mut retry_after = None;
        for i in 0..30 {
            let token = if i % 2 == 0 { Some("guess") } else { None };
            let a = http.get("/api/v1/workflows", token).await;
            if a.status == 429 {
                retry_after = a.retry_after.clone();
                assert!(
                    a.body.contains("without a valid bearer token"),
                    "{}",
                    a.body
                );
            }
            statuses.push(a.status);
        }
        let limited = statuses.iter().filter(|s| **s == 429).count();
        assert!(limited >= 20, "{statuses:?}");
        assert!(
            statuses.iter().all(|s| *s == 401 || *s == 429),
            "{statuses:?}"
        );
        let secs: u64 = retry_after.unwrap().parse().unwrap();
        assert!((1..=60).contains(&secs), "{secs}");
        // The MCP endpoint shares the gate.
        let a = http
            .send(
                reqwest::Method::POST,
                "/mcp",
                Some("guess"),
                &[],
                Some(MCP_INIT.into()),
            )
            .await;
        assert_eq!(a.status, 429, "{}", a.body);
        let a = http.get("/api/v1/whoami", Some(ALICE)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(
            http.metric("provisioning_http_rate_limited_total{by=\"address\"}")
                .await as usize,
            limited + 1
        );
    });
}

/// Oversized comments and bodies get 422/413 and change nothing; deeply nested JSON gets a
/// 4xx on REST and on MCP, and the server keeps answering.
fn oversized_and_nested_bodies_are_refused() {
    let (_dir, _server, base) = start("edges-bodies", &["--rate-limit", "1000"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = Http::new(&base);
        let request = gated_request(&http).await;
        let approve = format!("/api/v1/approvals/{request}/approve");
        let reject = format!("/api/v1/approvals/{request}/reject");
        let entries = audit_len(&http).await;

        let long = "x".repeat(4097);
        for path in [&approve, &reject] {
            let (s, v) = http.post(path, BOB, json!({ "comment": long })).await;
            assert_eq!(s, 422, "{path}: {v}");
            let detail = v["detail"].as_str().unwrap();
            assert!(
                detail.contains("`comment`") && detail.contains("4096"),
                "{detail}"
            );
        }
        let huge = "x".repeat(2 * 1024 * 1024);
        let a = http
            .send(
                reqwest::Method::POST,
                &approve,
                Some(BOB),
                &[],
                Some(json!({ "comment": huge }).to_string()),
            )
            .await;
        assert_eq!(a.status, 413, "{}", a.body);
        assert!(a.body.contains("body too large"), "{}", a.body);
        // The rest of the body was never read: the connection cannot be reused, and the client
        // is told so rather than finding out on its next request.
        assert_eq!(a.connection.as_deref(), Some("close"), "{}", a.body);
        let (s, v) = http
            .post(
                "/api/v1/policies/validate",
                BOB,
                json!({ "policies": "x".repeat(300 * 1024) }),
            )
            .await;
        assert_eq!(s, 422, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("256 KiB"), "{v}");
        let (s, v) = http
            .get("/api/v1/approvals?limit=1001", Some(BOB))
            .await
            .status_json();
        assert_eq!(s, 422, "{v}");

        // Deeply nested JSON: serde stops at depth 128; a 4xx, not a crash.
        let deep = format!(
            "{{\"comment\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let a = http
            .send(reqwest::Method::POST, &approve, Some(BOB), &[], Some(deep))
            .await;
        assert!((400..500).contains(&a.status), "{}: {}", a.status, a.body);
        let deep = format!("{}{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
        let a = http
            .send(
                reqwest::Method::POST,
                "/api/v1/configs/validate",
                Some(BOB),
                &[],
                Some(deep),
            )
            .await;
        assert!((400..500).contains(&a.status), "{}: {}", a.status, a.body);
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}1{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let a = http
            .send(reqwest::Method::POST, "/mcp", Some(BOB), &[], Some(deep))
            .await;
        assert!(
            (400..500).contains(&a.status),
            "/mcp: {}: {}",
            a.status,
            a.body
        );

        // Nothing changed: the request is still pending, the audit log as long as before.
        let a = http
            .get(&format!("/api/v1/approvals/{request}"), Some(BOB))
            .await;
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["status"], "pending", "{v}");
        assert_eq!(audit_len(&http).await, entries);
        assert_eq!(
            http.get("/healthz", None).await.status,
            200,
            "still answering"
        );
        let (s, v) = http
            .post(&approve, BOB, json!({ "comment": "x".repeat(4096) }))
            .await;
        assert_eq!(s, 200, "a comment at the limit: {v}");
    });
}

async fn audit_len(http: &Http) -> usize {
    let a = http.get("/api/v1/audit?limit=10000", Some(ALICE)).await;
    serde_json::from_str::<Value>(&a.body)
        .unwrap()
        .as_array()
        .unwrap()
        .len()
}

impl Answer {
    fn status_json(self) -> (u16, Value) {
        (
            self.status,
            serde_json::from_str(&self.body).unwrap_or(Value::String(self.body)),
        )
    }
}

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "edges::foreign_origin_and_unknown_host_are_refused_everywhere",
            || check(foreign_origin_and_unknown_host_are_refused_everywhere),
        ),
        Trial::test(
            "edges::metrics_need_a_token_and_count_as_things_happen",
            || check(metrics_need_a_token_and_count_as_things_happen),
        ),
        Trial::test(
            "edges::requests_without_a_valid_token_are_rate_limited",
            || check(requests_without_a_valid_token_are_rate_limited),
        ),
        Trial::test("edges::oversized_and_nested_bodies_are_refused", || {
            check(oversized_and_nested_bodies_are_refused)
        }),
    ]
}
