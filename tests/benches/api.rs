//! REST API latency with many workflows recorded: `GET /api/v1/workflows` (the newest 50, as
//! the Control Center asks) on `provisioning serve --http` over an embedded SurrealDB store
//! holding 10,000 workflows, p50/p99 over sequential requests, against `GET /healthz` on the
//! same server (the HTTP path without auth or the store) in the same run.
//!
//! `cargo bench -p tests --bench api` (release) records 10,000 workflows; `--smoke` (CI,
//! debug) records 200 and makes fewer requests. Prints the numbers; enforces nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::{Duration, Instant};

use engine::state::{StateStore, StoreLocation, SurrealStore, WorkflowRecord, WorkflowStatus};
use sha2::Digest;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn timed(http: &reqwest::Client, url: &str, token: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let resp = http.get(url).bearer_auth(token).send().await.unwrap();
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        let _ = resp.bytes().await.unwrap();
        out.push(t.elapsed());
    }
    out.sort();
    out
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (workflows, requests) = if smoke { (200, 30) } else { (10_000, 1_000) };
    let dir = tests::scratch("bench-api");
    let token = "bench-api-token-0123456789";
    let hash = format!("{:x}", sha2::Sha256::digest(token.as_bytes()));
    std::fs::write(
        dir.join("config.toml"),
        format!("[users.bench]\nroles = [\"viewer\"]\ntoken_sha256 = \"{hash}\"\n"),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Record the workflows straight into the store the server will open.
    let t = Instant::now();
    rt.block_on(async {
        let store = SurrealStore::open(StoreLocation::Embedded(dir.join("data/state")))
            .await
            .unwrap();
        for i in 0..workflows {
            let wf = WorkflowRecord {
                id: format!("wf-bench{i:07}"),
                workspace: format!("ws{}", i % 20),
                plan_id: format!("plan-bench{i:07}"),
                plan_hash: "0".repeat(64),
                status: if i % 7 == 0 {
                    WorkflowStatus::Failed
                } else {
                    WorkflowStatus::Succeeded
                },
                settings: engine::Workflow::default(),
                decision: serde_json::json!({ "allow": { "policies": [] } }),
                requested_by: "user:bench".into(),
                cancel_requested: false,
                created_at: 1_700_000_000_000 + i as u64 * 1000,
                updated_at: 1_700_000_000_000 + i as u64 * 1000,
                error: None,
            };
            store.create_workflow(&wf, &[]).await.unwrap();
        }
    });
    let recorded_in = t.elapsed();

    // The embedded store may still be closing in the background after the writes: the server
    // refuses a store another handle holds, so try again briefly.
    let mut started = Err(String::new());
    for _ in 0..40 {
        started = tests::serve_http(&dir, &["--rate-limit", "1000000"]);
        if started.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let (mut child, base) = started.unwrap();
    let (list, health, count) = rt.block_on(async {
        let http = reqwest::Client::new();
        let url = format!("{base}/api/v1/workflows");
        let first: serde_json::Value = http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let count = first.as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(
            first[0]["id"],
            format!("wf-bench{:07}", workflows - 1),
            "newest first"
        );
        let list = timed(&http, &url, token, requests).await;
        let health = timed(&http, &format!("{base}/healthz"), token, requests).await;
        (list, health, count)
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "GET /api/v1/workflows with {workflows} workflows recorded ({}; {} build; recorded in {:.1} s)",
        if smoke { "smoke" } else { "full" },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        recorded_in.as_secs_f64()
    );
    println!(
        "route                    p50        p99   (requests: {requests}, page: {count} workflows)"
    );
    println!(
        "/api/v1/workflows  {:>9.3?} {:>9.3?}",
        percentile(&list, 0.5),
        percentile(&list, 0.99)
    );
    println!(
        "/healthz           {:>9.3?} {:>9.3?}",
        percentile(&health, 0.5),
        percentile(&health, 0.99)
    );
    println!(
        "p99 ratio workflows/healthz: {:.1}x",
        percentile(&list, 0.99).as_secs_f64() / percentile(&health, 0.99).as_secs_f64().max(1e-9)
    );
}
