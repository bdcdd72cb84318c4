//! MCP over streamable HTTP, in one run on one machine: `tools/call` round trips of a read tool
//! (`get_schema`) on `provisioning serve --http` (bearer token, Host/Origin checks, rate limit,
//! structured output) against a bare rmcp echo server built here (same rmcp, same axum, no auth),
//! at 1 session and at 50 concurrent sessions: p50, p99 and throughput, and the ratio of p50s.
//! Also the server's resident memory at rest (after start, and after the load).
//!
//! `cargo bench -p tests --bench mcp` (release) prints the numbers and fails if our p50 at one
//! session is more than 2x the bare server's; `--smoke` (CI, debug) makes a few calls and does not
//! enforce.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, ServerCapabilities, ServerConfig};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleClient, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use sha2::Digest;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EchoInput {
    name: String,
}

#[derive(Clone)]
struct Echo;

#[tool_router]
impl Echo {
    /// Returns its input.
    #[tool]
    async fn get_schema(&self, Parameters(input): Parameters<EchoInput>) -> String {
        input.name
    }
}

#[tool_handler]
impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

async fn bare_server() -> String {
    let service: StreamableHttpService<Echo, LocalSessionManager> = StreamableHttpService::new(
        || Ok(Echo),
        Default::default(),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/mcp")
}

type Client = RunningService<RoleClient, ()>;

async fn connect(url: &str, token: Option<&str>) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(t) = token {
        config = config.auth_header(t.to_string());
    }
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap()
}

fn params() -> CallToolRequestParams {
    CallToolRequestParams::new("get_schema").with_arguments(
        serde_json::json!({ "name": "workspace" })
            .as_object()
            .cloned()
            .unwrap(),
    )
}

struct Run {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

/// `sessions` clients, each making `calls` sequential calls, all at once.
async fn measure(url: &str, token: Option<&str>, sessions: usize, calls: usize) -> Run {
    let mut clients = Vec::new();
    for _ in 0..sessions {
        clients.push(Arc::new(connect(url, token).await));
    }
    // Warm up every session.
    for c in &clients {
        let r = c.call_tool(params()).await.unwrap();
        assert_ne!(r.is_error, Some(true), "{r:?}");
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in &clients {
        let c = c.clone();
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(calls);
            for _ in 0..calls {
                let t = Instant::now();
                let r = c.call_tool(params()).await.unwrap();
                lat.push(t.elapsed());
                assert_ne!(r.is_error, Some(true));
            }
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(l) = tasks.join_next().await {
        all.extend(l.unwrap());
    }
    let wall = start.elapsed();
    all.sort();
    for c in clients {
        if let Ok(c) = Arc::try_unwrap(c) {
            let _ = c.cancel().await;
        }
    }
    Run {
        p50: all[all.len() / 2],
        p99: all[((all.len() as f64 - 1.0) * 0.99).round() as usize],
        per_second: all.len() as f64 / wall.as_secs_f64(),
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (calls_one, calls_many) = if smoke { (20, 4) } else { (2000, 100) };
    let token = "bench-token-0123456789abcdef";
    let dir = tests::scratch("bench-mcp");
    let hash = format!("{:x}", sha2::Sha256::digest(token.as_bytes()));
    std::fs::write(
        dir.join("config.toml"),
        format!("[users.bench]\nroles = [\"viewer\"]\ntoken_sha256 = \"{hash}\"\n"),
    )
    .unwrap();
    let (mut child, base) =
        tests::serve_http(&dir, &["--read-only", "--rate-limit", "1000000"]).unwrap();
    let ours = format!("{base}/mcp");
    let pid = child.id();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        // Let the docs index finish building in the background before measuring.
        tokio::time::sleep(Duration::from_secs(if smoke { 1 } else { 5 })).await;
        let rss_start = rss_kib(pid);
        let bare = bare_server().await;
        let mut rows = Vec::new();
        for sessions in [1usize, 50] {
            let calls = if sessions == 1 { calls_one } else { calls_many };
            let b = measure(&bare, None, sessions, calls).await;
            let o = measure(&ours, Some(token), sessions, calls).await;
            rows.push((sessions, b, o));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        (rss_start, rss_kib(pid), rows)
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (rss_start, rss_after, rows) = result;

    println!(
        "MCP tools/call over streamable HTTP ({}; {} build)",
        if smoke { "smoke" } else { "full" },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!("sessions  server        p50        p99     calls/s   p50 ratio");
    let mut ratio_one = 0.0;
    for (sessions, b, o) in &rows {
        let ratio = o.p50.as_secs_f64() / b.p50.as_secs_f64().max(1e-9);
        if *sessions == 1 {
            ratio_one = ratio;
        }
        println!(
            "{sessions:>8}  bare rmcp {:>9.3?} {:>9.3?} {:>10.0}",
            b.p50, b.p99, b.per_second
        );
        println!(
            "{sessions:>8}  provisioning {:>6.3?} {:>9.3?} {:>10.0}   {ratio:.2}x",
            o.p50, o.p99, o.per_second
        );
    }
    println!(
        "resident memory of `provisioning serve --http`: {:.1} MiB at rest after start, {:.1} MiB after the load",
        rss_start as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    if !smoke && !cfg!(debug_assertions) {
        assert!(
            ratio_one <= 2.0,
            "p50 at one session is {ratio_one:.2}x the bare rmcp server's (target at most 2x)"
        );
    }
}
