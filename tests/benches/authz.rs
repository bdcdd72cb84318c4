//! Authorization benchmark: p50 and p99 of one Cedar decision with the default policy set and
//! 1,000 entities (servers in the workspace besides the request's own), and its share of a
//! whole `plan` call (planning a 100-server config against recorded state, in memory).
//!
//! `cargo bench -p tests --bench authz` measures and fails if p99 is 100 µs or more;
//! `--smoke` (CI, debug build) runs fewer iterations and does not enforce.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::exec::Engine;
use engine::provider::Providers;
use engine::provider::sim::{SimOptions, SimProvider};
use engine::state::MemStore;
use policies::{Action, AuthRequest, Facts, PolicyEngine, Principal, Resource, ResourceType};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn request(i: usize) -> AuthRequest {
    let env = ["dev", "staging", "prod"][i % 3];
    AuthRequest {
        principal: Principal::User {
            id: format!("user-{}", i % 7),
            roles: vec!["operator".into()],
        },
        action: [
            Action::Apply,
            Action::Read,
            Action::Destroy,
            Action::Approve,
        ][i % 4],
        resource: Resource {
            kind: ResourceType::Plan,
            id: "p1".into(),
            environment: env.into(),
            owner: None,
            budget_cents: Some(10_000),
            forbidden_zones: Some(vec!["us-east-1".into()]),
            hash: Some("h".into()),
            zone: None,
        },
        facts: Facts {
            authenticated: true,
            channel: "api".into(),
            cost_delta_cents: (i as i64 * 37) % 20_000,
            deletes: (i % 2) as i64,
            zones: vec!["hel1".into()],
            approvals: (i % 3) as i64,
            requester: Some("user-1".into()),
            ..Facts::default()
        },
    }
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let iterations = if smoke { 2_000 } else { 50_000 };
    let engine = PolicyEngine::defaults().unwrap();
    // The request's own entities for every principal variant, plus 1,000 servers.
    let mut json_entities = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..7 {
        for e in PolicyEngine::request_entities(&request(i)) {
            if seen.insert(e["uid"].to_string()) {
                json_entities.push(e);
            }
        }
    }
    for i in 0..1_000 {
        json_entities.push(json!({
            "uid": { "type": "Provisioning::Server", "id": format!("srv-{i}") },
            "attrs": { "environment": "prod", "zone": "hel1" },
            "parents": [],
        }));
    }
    let count = json_entities.len();
    let entities = engine.entities(json_entities).unwrap();

    let mut times = Vec::with_capacity(iterations);
    let mut kinds = std::collections::BTreeMap::new();
    for i in 0..iterations {
        let r = request(i);
        let t0 = Instant::now();
        let d = engine.decide_in(&r, &entities).unwrap();
        times.push(t0.elapsed());
        *kinds.entry(d.kind()).or_insert(0) += 1;
    }
    times.sort();
    let p50 = percentile(&times, 0.50);
    let p99 = percentile(&times, 0.99);

    // A whole plan call: validated model in, plan out (in memory, 100 servers).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(MemStore::new());
    let exec = Engine::new(
        store,
        Providers::new().with(Arc::new(SimProvider::in_memory(SimOptions::default()))),
    );
    let config: engine::Config = serde_json::from_value(json!({
        "workspace": { "name": "bench", "environment": "prod" },
        "servers": (0..100).map(|i| json!({
            "name": format!("web-{i}"), "provider": "sim", "plan": "small", "zone": "sim-1",
            "taskservs": [{ "name": "nginx" }],
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let mut plan_times = Vec::new();
    for _ in 0..if smoke { 5 } else { 30 } {
        let t0 = Instant::now();
        rt.block_on(exec.plan(&config)).unwrap();
        plan_times.push(t0.elapsed());
    }
    plan_times.sort();
    let plan_p50 = percentile(&plan_times, 0.5);
    println!(
        "authorization benchmark ({})",
        if smoke { "smoke" } else { "full" }
    );
    println!(
        "  {iterations} decisions, default policy set, {count} entities; decisions: {kinds:?}"
    );
    println!(
        "  p50 {:.1} us, p99 {:.1} us (target p99 < 100 us)",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    println!(
        "  a plan call for 100 servers (in memory, validation excluded): p50 {:.2} ms; one decision is {:.2}% of it",
        plan_p50.as_secs_f64() * 1e3,
        100.0 * p50.as_secs_f64() / plan_p50.as_secs_f64()
    );
    if p99 >= Duration::from_micros(100) {
        if smoke {
            println!("  (smoke mode, debug build: target not enforced)");
        } else {
            eprintln!("p99 {p99:?} misses the 100 us target");
            std::process::exit(1);
        }
    }
}
