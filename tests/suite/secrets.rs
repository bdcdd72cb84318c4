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
    vec![Trial::test(
        "secrets::a_resolved_canary_never_leaves",
        || check(a_resolved_canary_never_leaves),
    )]
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
        let (child, base) =
            tests::serve_http_with(&dir.0, &[], std::process::Stdio::from(log)).unwrap();
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
