//! Secret references and the redactor, end to end: the real server resolves the OpenAI
//! drafter's key from an age-encrypted file named in its config; the endpoint quotes the key
//! back in its error, and an approver pastes that error into a rejection comment. The canary
//! key appears in no tool result, REST response, server log line or stored audit entry, while
//! `[redacted]` does.

use std::io::Write;
use std::sync::{Arc, Mutex};

use age::secrecy::ExposeSecret;
use libtest_mimic::Trial;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use sha2::Digest;
use tests::scratch;

use crate::check;
use crate::mcp::{Dir, PROD, Server};

const CANARY: &str = "sk-canary-4f1d9b7e2c8a6035";
const ALICE: &str = "alice-secrets-token-0123456789";
const BOB: &str = "bob-secrets-token-0123456789";
const VIC: &str = "vic-secrets-token-0123456789";

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("secrets::a_resolved_canary_never_leaves", || {
            check(a_resolved_canary_never_leaves)
        }),
        Trial::test("secrets::bad_references_stop_with_their_error", || {
            check(bad_references_stop_with_their_error)
        }),
        Trial::test(
            "secrets::the_drafter_has_a_token_budget_and_a_timeout",
            || check(the_drafter_has_a_token_budget_and_a_timeout),
        ),
    ]
}

/// An OpenAI-compatible endpoint that refuses every key and, like a careless provider, quotes
/// the Authorization header it got in its error. Records the headers; returns its base URL.
async fn echoing_endpoint(seen: Arc<Mutex<Vec<String>>>) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                seen.lock().unwrap().push(auth.clone());
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    axum::Json(json!({ "error": {
                        "message": format!("Incorrect API key provided: {auth}"),
                        "type": "invalid_request_error", "param": null, "code": "invalid_api_key"
                    }})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

/// `plain` encrypted to `recipient` (binary age format).
fn encrypt(recipient: &age::x25519::Recipient, plain: &[u8]) -> Vec<u8> {
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let mut w = encryptor.wrap_output(&mut out).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap();
    out
}

fn config(endpoint: &str) -> String {
    let h = |t: &str| format!("{:x}", sha2::Sha256::digest(t.as_bytes()));
    format!(
        r#"[users.alice]
roles = ["operator"]
token_sha256 = "{}"

[users.bob]
roles = ["approver"]
token_sha256 = "{}"

[users.vic]
roles = ["viewer"]
token_sha256 = "{}"

[secrets]
age_identity = "file:age-key.txt"

[drafter.openai]
base_url = "{endpoint}"
model = "echo"
api_key = "age:keys/openai.age"
"#,
        h(ALICE),
        h(BOB),
        h(VIC)
    )
}

fn assert_redacted(what: &str, text: &str) {
    assert!(!text.contains(CANARY), "{what} leaks the canary: {text}");
    assert!(
        text.contains("[redacted]"),
        "{what} shows no `[redacted]`: {text}"
    );
}

async fn rest(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn a_resolved_canary_never_leaves() {
    let dir = Dir(scratch("secrets"));
    let key = age::x25519::Identity::generate();
    std::fs::write(
        dir.0.join("age-key.txt"),
        format!("{}\n", key.to_string().expose_secret()),
    )
    .unwrap();
    std::fs::create_dir_all(dir.0.join("keys")).unwrap();
    std::fs::write(
        dir.0.join("keys/openai.age"),
        encrypt(&key.to_public(), format!("{CANARY}\n").as_bytes()),
    )
    .unwrap();
    let log_path = dir.0.join("server.log");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = rt.block_on(async {
        let endpoint = echoing_endpoint(seen.clone()).await;
        std::fs::write(dir.0.join("config.toml"), config(&endpoint)).unwrap();
        let log = std::fs::File::create(&log_path).unwrap();
        let (child, base) = tests::serve_http_with(
            &dir.0,
            &["--log-format", "json", "--log", "info"],
            &[],
            std::process::Stdio::from(log),
        )
        .unwrap();
        let server = Server(child);
        let mcp = |token: &str| {
            StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"))
                    .auth_header(token.to_string()),
            )
        };

        // A tool result quoting the provider's error, which quotes the key.
        let client = ().serve(mcp(ALICE)).await.unwrap();
        let drafted = client
            .call_tool(
                CallToolRequestParams::new("draft_config").with_arguments(
                    json!({ "intent": "two sim servers with nginx", "drafter": "openai" })
                        .as_object()
                        .cloned()
                        .unwrap(),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            seen.lock().unwrap().first().cloned(),
            Some(format!("Bearer {CANARY}")),
            "the key is resolved from the age file and sent"
        );
        let text = serde_json::to_string(&drafted).unwrap();
        assert!(text.contains("Incorrect API key provided"), "{text}");
        assert_redacted("the draft_config result", &text);

        // REST: a person pastes the provider's error into a rejection comment.
        let http = reqwest::Client::new();
        let api = |path: &str| format!("{base}/api/v1{path}");
        let (s, plan) = rest(
            &http,
            reqwest::Method::POST,
            api("/plans"),
            ALICE,
            Some(json!({ "config": PROD })),
        )
        .await;
        assert_eq!(s, 201, "{plan}");
        let plan: Value = serde_json::from_str(&plan).unwrap();
        let plan_id = plan["id"].as_str().unwrap();
        let (s, gated) = rest(
            &http,
            reqwest::Method::POST,
            api(&format!("/plans/{plan_id}/apply")),
            ALICE,
            Some(json!({})),
        )
        .await;
        assert_eq!(s, 403, "{gated}");
        let gated: Value = serde_json::from_str(&gated).unwrap();
        let request = gated["approval_request"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let comment =
            format!("the drafter endpoint said: Incorrect API key provided: Bearer {CANARY}");
        let (s, rejected) = rest(
            &http,
            reqwest::Method::POST,
            api(&format!("/approvals/{request}/reject")),
            BOB,
            Some(json!({ "comment": comment })),
        )
        .await;
        assert_eq!(s, 200, "{rejected}");
        assert_redacted("the reject response", &rejected);
        let (s, one) = rest(
            &http,
            reqwest::Method::GET,
            api(&format!("/approvals/{request}")),
            VIC,
            None,
        )
        .await;
        assert_eq!(s, 200, "{one}");
        assert_redacted("GET /approvals/{id}", &one);
        let (s, audit) = rest(
            &http,
            reqwest::Method::GET,
            api("/audit?kind=approval_rejected"),
            VIC,
            None,
        )
        .await;
        assert_eq!(s, 200, "{audit}");
        assert_redacted("GET /audit", &audit);

        // The same comment through a tool.
        let got = client
            .call_tool(
                CallToolRequestParams::new("get_approval").with_arguments(
                    json!({ "approval_id": request })
                        .as_object()
                        .cloned()
                        .unwrap(),
                ),
            )
            .await
            .unwrap();
        assert_redacted(
            "the get_approval result",
            &serde_json::to_string(&got).unwrap(),
        );
        client.cancel().await.unwrap();
        server
    });
    drop(server);

    // The server's log names the failure without the key.
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("draft_config: the openai drafter failed"),
        "{log}"
    );
    assert_redacted("the server log", &log);
    // As JSON lines (`--log-format json`): the failure carries the tool call's span, naming the
    // tool, the caller and the HTTP request it came in on.
    let failure: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("drafter failed"))
        })
        .unwrap_or_else(|| panic!("no JSON line for the failure in {log}"));
    let span = failure["spans"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "tool"))
        .unwrap_or_else(|| panic!("no tool span: {failure}"));
    assert_eq!(span["tool"], "draft_config", "{failure}");
    assert!(
        span["caller"]
            .as_str()
            .is_some_and(|c| c.starts_with("user:"))
            && span["request"]
                .as_str()
                .is_some_and(|r| r.starts_with("rq-")),
        "{failure}"
    );

    // The audit entry as stored (read without the server, so no edge redacts it).
    let data = dir.0.join("data");
    let config = dir.0.join("config.toml");
    let out = tests::run_env(
        &dir.0,
        &["audit", "export"],
        &[
            ("PROVISIONING_PATHS_DATA_DIR", data.to_str().unwrap()),
            ("PROVISIONING_CONFIG", config.to_str().unwrap()),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("approval_rejected"), "{stdout}");
    assert_redacted("the stored audit log", &stdout);
}

/// A config file with a malformed reference is refused at startup, naming the setting and
/// what is accepted.
fn bad_references_stop_with_their_error() {
    let dir = Dir(scratch("secrets-bad"));
    let cases = [
        (
            "[drafter.openai]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\napi_key = \"evn:OPENAI_KEY\"\n",
            "drafter.openai.api_key: unknown secret reference scheme `evn:`; expected `env:NAME`, `file:PATH` or `age:PATH`",
        ),
        (
            "[secrets]\nage_identity = \"file:\"\n",
            "secrets.age_identity: secret reference `file:` names no file; expected `file:PATH`",
        ),
        (
            "[state]\npassword = \"env:1PASS\"\n",
            "state.password: secret reference `env:1PASS`: `1PASS` is not an environment variable name",
        ),
    ];
    for (text, expected) in cases {
        let config = dir.0.join("config.toml");
        std::fs::write(&config, text).unwrap();
        let out = tests::run_env(
            &dir.0,
            &["catalog"],
            &[("PROVISIONING_CONFIG", config.to_str().unwrap())],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(expected), "{text}: {stderr}");
    }
}

/// An endpoint that answers the first chat completion at once with a config that does not
/// validate, and every later one only after 5 s. Records request bodies.
async fn slow_after_first(seen: Arc<Mutex<Vec<Value>>>) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(body.0);
                    seen.len()
                };
                if n > 1 {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
                axum::Json(json!({
                    "id": "c", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{ "index": 0, "finish_reason": "stop",
                                  "message": { "role": "assistant", "content": "```nickel\n{ nope\n```" } }]
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

/// `max_tokens` goes with each call, a draft stops when its budget is spent, and a call that
/// takes longer than `timeout_secs` ends the model draft (the built-in draft comes back).
fn the_drafter_has_a_token_budget_and_a_timeout() {
    let dir = Dir(scratch("secrets-budget"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    rt.block_on(async {
        let endpoint = slow_after_first(seen.clone()).await;
        let h = format!("{:x}", sha2::Sha256::digest(ALICE.as_bytes()));
        std::fs::write(
            dir.0.join("config.toml"),
            format!(
                "[users.alice]\nroles = [\"operator\"]\ntoken_sha256 = \"{h}\"\n\n[drafter.openai]\nbase_url = \"{endpoint}\"\nmodel = \"m\"\napi_key = \"plain-key-value-123\"\nmax_tokens = 5\nmax_total_tokens = 10\ntimeout_secs = 1\n"
            ),
        )
        .unwrap();
        let (child, base) = tests::serve_http(&dir.0, &[]).unwrap();
        let _server = Server(child);
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"))
                .auth_header(ALICE.to_string()),
        );
        let client = ().serve(transport).await.unwrap();
        let draft = || {
            client.call_tool(
                CallToolRequestParams::new("draft_config").with_arguments(
                    json!({ "intent": "two sim servers with nginx", "drafter": "openai" })
                        .as_object()
                        .cloned()
                        .unwrap(),
                ),
            )
        };
        // The first round's prompt alone is over 10 tokens: no second round.
        let first = draft().await.unwrap();
        let d = first.structured_content.clone().unwrap_or_default();
        assert_eq!(d["drafter"], "built-in", "{d}");
        assert!(d["notices"].to_string().contains("spent its token budget"), "{d}");
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 1, "one call, then the budget is spent");
            assert_eq!(seen[0]["max_tokens"], 5, "{}", seen[0]);
        }
        // The next call takes 5 s; the limit is 1 s.
        let started = std::time::Instant::now();
        let second = draft().await.unwrap();
        let d = second.structured_content.clone().unwrap_or_default();
        assert_eq!(d["drafter"], "built-in", "{d}");
        assert!(d["notices"].to_string().contains("did not answer within 1 s"), "{d}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(4),
            "the timeout did not cut the call short: {:?}",
            started.elapsed()
        );
        client.cancel().await.unwrap();
    });
}
