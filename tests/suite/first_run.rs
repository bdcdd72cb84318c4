//! A new user's first run, as they would do it: `provisioning init` writes the config and a token,
//! the token opens `serve --http`, `token revoke` closes it again, `doctor` reports; and on a
//! fresh data directory with the embedding model present, the first docs search answers at once
//! while the index is built behind it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use tests::{binary, scratch};

use crate::check;
use crate::mcp::Dir;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("first_run::init_token_and_doctor", || {
            check(init_token_and_doctor)
        }),
        Trial::test("first_run::the_first_docs_search_answers_at_once", || {
            check(the_first_docs_search_answers_at_once)
        }),
    ]
}

/// The CLI with this scratch folder as the user's home for config, data and cache.
fn cli(home: &Path) -> Command {
    let mut c = Command::new(binary());
    c.env_remove("PROVISIONING_CONFIG")
        .env_remove("PROVISIONING_PATHS_DATA_DIR")
        .env_remove("PROVISIONING_PATHS_CACHE_DIR")
        .env_remove("PROVISIONING_PATHS_MODELS_DIR")
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CACHE_HOME", home.join("cache"));
    c
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn token_in(text: &str) -> Option<String> {
    let start = text.find("Bearer prov_")? + "Bearer ".len();
    Some(text[start..start + 5 + 64].to_string())
}

async fn status_of(base: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/api/v1/workflows"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn init_token_and_doctor() {
    let home = Dir(scratch("first-run"));
    let out = cli(&home.0)
        .args(["init", "--name", "olga"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = token_in(&stdout).unwrap_or_else(|| panic!("no token in {stdout}"));
    for client in ["Claude Desktop", "Claude Code", "Cursor", "VS Code"] {
        assert!(stdout.contains(client), "{client} missing: {stdout}");
    }
    let config = home.0.join("config/provisioning/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        !text.contains(&token),
        "the token itself was stored: {text}"
    );
    assert!(text.starts_with("# Provisioning's config file"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");

    // Again: nothing that exists changes, no new token.
    let again = cli(&home.0)
        .args(["init", "--name", "olga"])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    assert!(token_in(&String::from_utf8_lossy(&again.stdout)).is_none());

    // The token opens the HTTP server; a made-up one does not; revoked while the server runs,
    // it no longer does, without a restart (the server re-reads the file when it changes).
    let serve_dir = Dir(scratch("first-run-serve"));
    let served_config = serve_dir.0.join("config.toml");
    std::fs::copy(&config, &served_config).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (child, base) = tests::serve_http(&serve_dir.0, &[]).unwrap();
    let _server = Killed(child);
    let (ok, forged) = rt.block_on(async {
        (
            status_of(&base, &token).await,
            status_of(&base, &format!("prov_{}", "0".repeat(64))).await,
        )
    });
    assert_eq!((ok, forged), (200, 401));
    let with_config = |args: &[&str]| {
        let out = cli(&home.0)
            .arg("--config")
            .arg(&served_config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    with_config(&["token", "revoke", "olga"]);
    // A new token for someone else counts as soon, too.
    let viewer = with_config(&["token", "create", "vic", "--role", "viewer"]);
    let viewer = viewer.trim().to_string();
    let (revoked, added) = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = (
                status_of(&base, &token).await,
                status_of(&base, &viewer).await,
            );
            if now == (401, 200) || Instant::now() > deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    assert_eq!((revoked, added), (401, 200));

    // The doctor: every check named, nothing failing on this machine (the model may be a
    // warning: this home has none).
    let out = cli(&home.0).args(["doctor", "--json"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let checks: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let named = |n: &str| {
        checks
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("no `{n}` check: {stdout}"))
    };
    for ok in ["config", "tokens", "policies", "sandbox", "state"] {
        assert_eq!(named(ok)["status"], "ok", "{stdout}");
    }
    // The doctor changes nothing: this home has no state store, and still has none.
    assert!(
        named("state")["detail"]
            .as_str()
            .unwrap()
            .contains("does not exist yet"),
        "{stdout}"
    );
    assert!(!home.0.join("data/provisioning/state").exists());
    let model = named("embedding model");
    assert_eq!(model["status"], "warn", "{stdout}");
    assert!(
        model["fix"]
            .as_str()
            .unwrap()
            .starts_with("scripts/fetch-models"),
        "{stdout}"
    );
}

fn the_first_docs_search_answers_at_once() {
    use sha2::Digest;
    let models = crate::rag::require_model();
    let dir = Dir(scratch("first-search"));
    let token = "first-search-token-0123456789";
    let hash = format!("{:x}", sha2::Sha256::digest(token.as_bytes()));
    std::fs::write(
        dir.0.join("config.toml"),
        format!("[users.vic]\nroles = [\"viewer\"]\ntoken_sha256 = \"{hash}\"\n"),
    )
    .unwrap();
    let models = models.display().to_string();
    let (child, base) = tests::serve_http_with(
        &dir.0,
        &[],
        &[("PROVISIONING_PATHS_MODELS_DIR", models.as_str())],
        std::process::Stdio::null(),
    )
    .unwrap();
    let child = Killed(child);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (elapsed, first) = rt.block_on(async {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"))
                .auth_header(token.to_string()),
        );
        let client = ().serve(transport).await.unwrap();
        let started = Instant::now();
        let result = client
            .call_tool(
                CallToolRequestParams::new("search_docs").with_arguments(
                    serde_json::json!({ "query": "which hetzner zones are in helsinki" })
                        .as_object()
                        .cloned()
                        .unwrap(),
                ),
            )
            .await
            .unwrap();
        let elapsed = started.elapsed();
        let _ = client.cancel().await;
        (elapsed, result.structured_content.unwrap_or_default())
    });
    drop(child);
    // The whole corpus takes a minute or more to embed on this machine; the answer does not
    // wait for it.
    assert!(
        elapsed < Duration::from_secs(5),
        "the first search took {elapsed:?}: {first}"
    );
    let notices = first["notices"].to_string();
    assert!(
        notices.contains("still being built") && notices.contains("keyword-only"),
        "{first}"
    );
    assert_eq!(first["retrievers"], serde_json::json!(["bm25"]), "{first}");
    let docs: Vec<&str> = first["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["doc"].as_str())
        .collect();
    assert!(docs.contains(&"providers/hetzner.md"), "{docs:?}");
}
