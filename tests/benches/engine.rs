//! Executor benchmark, ratios measured in one run:
//! 1. scheduling overhead of 1,000 and 10,000 no-op steps in memory (target under 50 µs per
//!    step), against a bare tokio baseline that only spawns the same tasks with the same
//!    parallel limit;
//! 2. the same steps with durable checkpoints in embedded SurrealDB (surrealkv, synced on every
//!    commit), as a ratio to the in-memory run;
//! 3. 1,000 steps of 10 ms at parallelism 10 against the ideal 1.0 s (target within 1.2x);
//! 4. installing redis on a loopback OpenSSH server through the `ssh` provider's runner, against
//!    the same script sent by hand over one plain `ssh ... sh -s` call (target at most 1.3x).
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
                host: None,
                image: None,
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
    let rounds = if smoke { 1 } else { 7 };
    let (ours, by_hand) = ssh_install(&rt, rounds);
    let ratio = ours.as_secs_f64() / by_hand.as_secs_f64().max(1e-9);
    println!(
        "  redis install over SSH (median of {rounds}): runner {:.0} ms, the same script by hand over one ssh call {:.0} ms, ratio {ratio:.2} (target <= 1.3)",
        ours.as_secs_f64() * 1e3,
        by_hand.as_secs_f64() * 1e3
    );
    if ratio > 1.3 {
        failures.push(format!("ssh install: {ratio:.2}x by hand, target 1.3"));
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

/// Reads secret references from this machine's files and environment.
struct FsSource;

impl engine::secrets::SecretSource for FsSource {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn read(&self, path: &std::path::Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

/// Median time of a redis install through the provider, and of the same script by hand, in
/// interleaved rounds (each install starts from a removed redis).
fn ssh_install(rt: &tokio::runtime::Runtime, rounds: usize) -> (Duration, Duration) {
    use engine::provider::ssh::{SshHost, SshProvider};
    use tests::sshd::{Sshd, free_port, whoami};
    let dir = tests::scratch("bench-ssh");
    let sshd = Sshd::start(&dir.join("sshd"), None);
    let key = sshd.dir.join("client");
    let host = SshHost {
        name: "bench".into(),
        address: "127.0.0.1".into(),
        port: sshd.port,
        user: whoami(),
        key: Some(engine::secrets::SecretRef::File(key.clone())),
        root: Some(dir.join("root").display().to_string()),
        workspaces: vec!["*".into()],
        configured_in: "[ssh.hosts.bench]".into(),
    };
    let secrets = engine::secrets::Secrets::new(Arc::new(FsSource), Default::default());
    let provider = SshProvider::new(vec![host], secrets, dir.join("data"));
    let server = ServerSpec {
        workspace: "bench".into(),
        name: "s1".into(),
        provider: "ssh".into(),
        plan: "existing".into(),
        zone: "inventory".into(),
        labels: BTreeMap::new(),
        host: Some("bench".into()),
        image: None,
    };
    let spec = TaskservSpec {
        workspace: "bench".into(),
        server: "s1".into(),
        name: "redis".into(),
        version: "7.0".into(),
        config: serde_json::Map::from_iter([(
            "port".to_string(),
            serde_json::Value::from(free_port()),
        )]),
    };
    let k = IdempotencyKey("bench".into());
    rt.block_on(provider.create_server(&k, &server)).unwrap();
    let script = provider.script_text(&spec, "install").unwrap();
    let known_hosts = dir.join("by-hand-known-hosts");
    let by_hand = || {
        use std::io::Write;
        let mut child = std::process::Command::new("ssh")
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=accept-new",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-i")
            .arg(&key)
            .arg("-p")
            .arg(sshd.port.to_string())
            .arg(format!("{}@127.0.0.1", whoami()))
            .arg("sh -s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "the script by hand failed");
    };
    let mut ours = Vec::new();
    let mut hand = Vec::new();
    for _ in 0..rounds {
        rt.block_on(provider.remove_taskserv(&k, &spec)).unwrap();
        let t = Instant::now();
        rt.block_on(provider.install_taskserv(&k, &spec)).unwrap();
        ours.push(t.elapsed());
        rt.block_on(provider.remove_taskserv(&k, &spec)).unwrap();
        let t = Instant::now();
        by_hand();
        hand.push(t.elapsed());
    }
    rt.block_on(provider.remove_taskserv(&k, &spec)).unwrap();
    rt.block_on(provider.delete_server(&k, &server)).unwrap();
    drop(sshd);
    let _ = std::fs::remove_dir_all(&dir);
    ours.sort();
    hand.sort();
    (ours[rounds / 2], hand[rounds / 2])
}
