//! Executor benchmark, ratios measured in one run:
//! 1. scheduling overhead of 1,000 and 10,000 no-op steps in memory (target under 50 µs per
//!    step), against a bare tokio baseline that only spawns the same tasks with the same
//!    parallel limit;
//! 2. the same steps with durable checkpoints in embedded SurrealDB (surrealkv, synced on every
//!    commit), as a ratio to the in-memory run;
//! 3. 1,000 steps of 10 ms at parallelism 10 against the ideal 1.0 s (target within 1.2x).
//!
//! `cargo bench -p tests --bench engine` measures and fails if a target is missed; `--smoke`
//! (CI, debug build) runs smaller sizes and reports without enforcing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use engine::authz::Caller;
use engine::exec::{ApplyResult, Engine};
use engine::provider::sim::{SimOptions, SimProvider};
use engine::provider::{
    Health, IdempotencyKey, Observed, Provider, ProviderResult, Providers, ServerSpec, TaskservSpec,
};
use engine::state::{MemStore, StateStore, StoreLocation, SurrealStore, WorkflowStatus};
use engine::{Config, Environment, Server, Workflow, Workspace};

/// Does nothing, at once.
struct Noop;

#[async_trait]
impl Provider for Noop {
    fn name(&self) -> &str {
        "sim"
    }
    async fn create_server(&self, _: &IdempotencyKey, _: &ServerSpec) -> ProviderResult<Observed> {
        Ok(Observed::default())
    }
    async fn update_server(&self, _: &IdempotencyKey, _: &ServerSpec) -> ProviderResult<Observed> {
        Ok(Observed::default())
    }
    async fn inspect_server(&self, _: &ServerSpec) -> ProviderResult<Option<Observed>> {
        Ok(None)
    }
    async fn delete_server(&self, _: &IdempotencyKey, _: &ServerSpec) -> ProviderResult<()> {
        Ok(())
    }
    async fn install_taskserv(
        &self,
        _: &IdempotencyKey,
        _: &TaskservSpec,
    ) -> ProviderResult<Observed> {
        Ok(Observed::default())
    }
    async fn taskserv_health(&self, _: &TaskservSpec) -> ProviderResult<Health> {
        Ok(Health::Healthy)
    }
    async fn remove_taskserv(&self, _: &IdempotencyKey, _: &TaskservSpec) -> ProviderResult<()> {
        Ok(())
    }
}

fn config(steps: usize, parallel: u32) -> Config {
    Config {
        workspace: Workspace {
            name: "bench".into(),
            environment: Environment::Dev,
            owner: None,
        },
        servers: (0..steps)
            .map(|i| Server {
                name: format!("n-{i}"),
                provider: "sim".into(),
                plan: "small".into(),
                zone: "sim-1".into(),
                labels: BTreeMap::new(),
                taskservs: Vec::new(),
            })
            .collect(),
        clusters: Vec::new(),
        workflow: Workflow {
            parallel_limit: parallel,
            ..Workflow::default()
        },
    }
}

/// Time to apply `steps` steps (planning excluded).
async fn apply(
    store: Arc<dyn StateStore>,
    provider: Arc<dyn Provider>,
    steps: usize,
    parallel: u32,
) -> Duration {
    let engine = Engine::new(store, Providers::new().with(provider));
    let plan = engine.plan(&config(steps, parallel)).await.unwrap();
    let caller = Caller::parse("user:bench", "cli").unwrap();
    let t0 = Instant::now();
    let result = engine.apply(&plan.id, &caller).await.unwrap();
    let elapsed = t0.elapsed();
    match result {
        ApplyResult::Ran(o) => assert_eq!(o.status, WorkflowStatus::Succeeded, "{o:?}"),
        other => panic!("{other:?}"),
    }
    elapsed
}

/// The floor: spawn the same number of no-op tasks, at most `parallel` at once.
async fn baseline(steps: usize, parallel: usize) -> Duration {
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..steps {
        if set.len() >= parallel {
            set.join_next().await;
        }
        set.spawn(async move { std::hint::black_box(i) });
    }
    while set.join_next().await.is_some() {}
    t0.elapsed()
}

fn per_step_us(d: Duration, steps: usize) -> f64 {
    d.as_secs_f64() * 1e6 / steps as f64
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut failures = Vec::new();
    let sizes: &[usize] = if smoke { &[1_000] } else { &[1_000, 10_000] };
    println!(
        "engine benchmark ({})",
        if smoke { "smoke" } else { "full" }
    );
    let mut memory_us = 0.0;
    for &n in sizes {
        let ours = rt.block_on(apply(Arc::new(MemStore::new()), Arc::new(Noop), n, 16));
        let floor = rt.block_on(baseline(n, 16));
        let us = per_step_us(ours, n);
        memory_us = us;
        println!(
            "  {n:>6} no-op steps in memory: {:>8.1} ms, {us:>6.1} us/step; bare tokio {:>6.2} us/step; ratio {:.1}x",
            ours.as_secs_f64() * 1e3,
            per_step_us(floor, n),
            ours.as_secs_f64() / floor.as_secs_f64().max(1e-9)
        );
        if us > 50.0 {
            failures.push(format!(
                "{n} in-memory steps: {us:.1} us/step, target under 50"
            ));
        }
    }

    let durable_n = if smoke { 50 } else { 1_000 };
    let dir = std::env::temp_dir().join(format!("provisioning-bench-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let durable = rt.block_on(async {
        let store = SurrealStore::open(StoreLocation::Embedded(dir.clone()))
            .await
            .unwrap();
        apply(Arc::new(store), Arc::new(Noop), durable_n, 16).await
    });
    let _ = std::fs::remove_dir_all(&dir);
    let durable_us = per_step_us(durable, durable_n);
    println!(
        "  {durable_n:>6} no-op steps, durable checkpoints in embedded SurrealDB (sync per commit): {durable_us:.0} us/step, {:.0}x the in-memory run",
        durable_us / memory_us.max(1e-9)
    );

    let (n, ideal) = if smoke { (100, 0.1) } else { (1_000, 1.0) };
    let sim = SimProvider::in_memory(SimOptions {
        latency_ms: (10, 10),
        ..SimOptions::default()
    });
    let timed = rt.block_on(apply(Arc::new(MemStore::new()), Arc::new(sim), n, 10));
    let ratio = timed.as_secs_f64() / ideal;
    println!(
        "  {n:>6} steps of 10 ms at parallelism 10: {:.3} s, ideal {ideal:.1} s, ratio {ratio:.2} (target <= 1.2)",
        timed.as_secs_f64()
    );
    if ratio > 1.2 {
        failures.push(format!("10 ms steps: {ratio:.2}x the ideal, target 1.2"));
    }
    if !failures.is_empty() {
        if smoke {
            println!("  (smoke mode, debug build: targets not enforced) {failures:?}");
        } else {
            eprintln!("targets missed: {failures:?}");
            std::process::exit(1);
        }
    }
}
