//! Executor tests: in memory and deterministic where it matters (a manual clock for backoff,
//! seeded randomness). The end-to-end tests run the same code against SurrealDB and real
//! processes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use proptest::prelude::*;

use super::*;
use crate::model::{Environment, Server, TaskservRef, Workspace};
use crate::provider::sim::{SimOptions, SimProvider};
use crate::provider::{Health, Provider, ProviderResult, ServerSpec, TaskservSpec};
use crate::runtime::ManualClock;
use crate::state::{MemStore, StoreLocation, SurrealStore};

fn config(workspace: &str, servers: usize, taskservs: &[&str]) -> Config {
    Config {
        workspace: Workspace {
            name: workspace.into(),
            environment: Environment::Dev,
            owner: None,
        },
        servers: (0..servers)
            .map(|i| Server {
                name: format!("node-{i}"),
                provider: "sim".into(),
                plan: "small".into(),
                zone: "sim-1".into(),
                labels: BTreeMap::new(),
                host: None,
                image: None,
                taskservs: taskservs
                    .iter()
                    .map(|t| TaskservRef {
                        name: (*t).into(),
                        version: None,
                        config: serde_json::Map::new(),
                        depends_on: Vec::new(),
                    })
                    .collect(),
            })
            .collect(),
        clusters: Vec::new(),
        workflow: crate::model::Workflow::default(),
    }
}

fn engine_with(sim: Arc<SimProvider>) -> (Engine, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::starting_at(1_000_000));
    let engine = Engine::new(Arc::new(MemStore::new()), Providers::new().with(sim))
        .with_clock(clock.clone())
        .with_rng(Arc::new(SeededRng::new(7)));
    (engine, clock)
}

fn caller() -> Caller {
    Caller::parse("user:test", "cli").unwrap()
}

async fn ran(engine: &Engine, plan: &Plan) -> RunOutcome {
    match engine.apply(&plan.id, &caller()).await {
        Ok(ApplyResult::Ran(outcome)) => outcome,
        other => panic!("expected a run, got {other:?}"),
    }
}

#[tokio::test]
async fn apply_then_plan_again_is_a_noop_and_destroy_empties_state() {
    let sim = Arc::new(SimProvider::in_memory(SimOptions::default()));
    let (engine, _) = engine_with(sim.clone());
    let cfg = config("ws", 3, &["redis", "nginx"]);
    let plan = engine.plan(&cfg).await.unwrap();
    assert_eq!(plan.summary.create, 9);
    let outcome = ran(&engine, &plan).await;
    assert_eq!(outcome.status, WorkflowStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.succeeded, 9);
    assert_eq!((sim.server_count(), sim.taskserv_count()), (3, 6));
    assert_eq!(engine.store.resources("ws").await.unwrap().len(), 9);

    let again = engine.plan(&cfg).await.unwrap();
    assert!(again.is_noop(), "{}", again.render());
    assert_eq!(
        engine.apply(&again.id, &caller()).await.unwrap(),
        ApplyResult::NoChanges {
            plan: again.id.clone()
        }
    );

    let destroy = engine.plan_destroy(&cfg).await.unwrap();
    assert_eq!(destroy.summary.delete, 9);
    // Taskservs go before the server they run on.
    for a in destroy.changes().filter(|a| a.kind == ResourceKind::Server) {
        let taskservs: Vec<usize> = destroy
            .changes()
            .filter(|t| {
                t.key.starts_with(&format!(
                    "taskserv/{}/",
                    a.key.trim_start_matches("server/")
                ))
            })
            .map(|t| t.index)
            .collect();
        for t in taskservs {
            assert!(a.depends_on.contains(&t), "{} must wait for {t}", a.key);
        }
    }
    let outcome = ran(&engine, &destroy).await;
    assert_eq!(outcome.status, WorkflowStatus::Succeeded);
    assert!(engine.store.resources("ws").await.unwrap().is_empty());
    assert_eq!((sim.server_count(), sim.taskserv_count()), (0, 0));
}

use crate::plan::ResourceKind;

#[tokio::test]
async fn stale_and_unknown_plans_are_refused_and_change_nothing() {
    let sim = Arc::new(SimProvider::in_memory(SimOptions::default()));
    let (engine, _) = engine_with(sim.clone());
    let first = engine.plan(&config("ws", 1, &[])).await.unwrap();
    let second = engine.plan(&config("ws", 2, &[])).await.unwrap();
    ran(&engine, &second).await;
    let version = engine.store.state_version("ws").await.unwrap();
    let err = engine.apply(&first.id, &caller()).await.unwrap_err();
    assert!(
        matches!(err, ExecError::StalePlan { planned: 0, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("run `provisioning plan` again"),
        "{err}"
    );
    assert_eq!(engine.store.state_version("ws").await.unwrap(), version);
    assert_eq!(sim.server_count(), 2);

    let err = engine
        .apply("plan-doesnotexist", &caller())
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::PlanNotFound { .. }), "{err}");
    assert_eq!(engine.store.workflows(None).await.unwrap().len(), 1);
    // Ids that cannot name a record are "not found", never a store error.
    for bad in ["", "plan-\u{0}", "x y", &"a".repeat(65)] {
        assert!(
            matches!(
                engine.load_plan(bad).await,
                Err(ExecError::PlanNotFound { .. })
            ),
            "{bad:?}"
        );
        assert!(
            matches!(
                engine.workflow(bad).await,
                Err(ExecError::WorkflowNotFound { .. })
            ),
            "{bad:?}"
        );
        assert!(
            matches!(
                engine.approval(bad).await,
                Err(ExecError::ApprovalNotFound { .. })
            ),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn a_second_apply_on_a_locked_workspace_fails_fast_and_names_the_holder() {
    let sim = Arc::new(SimProvider::in_memory(SimOptions::default()));
    let (engine, clock) = engine_with(sim.clone());
    let plan = engine.plan(&config("ws", 2, &[])).await.unwrap();
    // Pid 1 is alive on every Linux machine: a live holder on this host.
    let holder = LockHolder {
        id: "lock-other".into(),
        workspace: "ws".into(),
        owner: "alice@elsewhere pid 1".into(),
        workflow: "wf-other".into(),
        host: hostname(),
        pid: 1,
        acquired_at: clock.now_ms(),
        lease_until: clock.now_ms() + LEASE_MS,
    };
    engine
        .store
        .acquire_lock(&holder, clock.now_ms())
        .await
        .unwrap()
        .unwrap();
    let err = engine.apply(&plan.id, &caller()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ExecError::LockHeld(_)), "{text}");
    assert!(
        text.contains("alice@elsewhere pid 1") && text.contains("wf-other"),
        "{text}"
    );
    assert!(engine.store.workflows(None).await.unwrap().is_empty());
    assert_eq!(sim.server_count(), 0);

    // A holder whose process is gone is taken over at once.
    let mut dead = holder.clone();
    dead.pid = u32::MAX - 7;
    engine.store.release_lock("ws", "lock-other").await.unwrap();
    engine
        .store
        .acquire_lock(&dead, clock.now_ms())
        .await
        .unwrap()
        .unwrap();
    let outcome = ran(&engine, &plan).await;
    assert_eq!(outcome.status, WorkflowStatus::Succeeded);
    assert!(
        engine.store.lock("ws").await.unwrap().is_none(),
        "lock released"
    );
}

fn failing(names: &[&str]) -> SimOptions {
    SimOptions {
        fail: names.iter().map(|s| s.to_string()).collect(),
        ..SimOptions::default()
    }
}

#[tokio::test]
async fn rollback_after_a_failure_leaves_nothing_behind() {
    for (seed, victim) in [
        (1u64, "node-3"),
        (2, "node-0/nginx"),
        (3, "node-5/redis"),
        (4, "node-7"),
    ] {
        let sim = Arc::new(SimProvider::in_memory(SimOptions {
            seed,
            ..failing(&[victim])
        }));
        let (engine, _) = engine_with(sim.clone());
        let mut cfg = config("ws", 8, &["redis", "nginx"]);
        cfg.workflow.on_failure = OnFailure::Rollback;
        cfg.workflow.parallel_limit = 3;
        let plan = engine.plan(&cfg).await.unwrap();
        let outcome = ran(&engine, &plan).await;
        assert_eq!(
            outcome.status,
            WorkflowStatus::RolledBack,
            "{victim}: {outcome:?}"
        );
        assert!(
            outcome.error.as_deref().unwrap_or("").contains(victim),
            "{outcome:?}"
        );
        assert_eq!(
            (sim.server_count(), sim.taskserv_count()),
            (0, 0),
            "{victim}"
        );
        assert!(
            engine.store.resources("ws").await.unwrap().is_empty(),
            "{victim}"
        );
    }
}

#[tokio::test]
async fn fail_mode_records_exactly_the_completed_steps_and_starts_nothing_after() {
    let sim = Arc::new(SimProvider::in_memory(failing(&["node-2"])));
    let (engine, _) = engine_with(sim.clone());
    let mut cfg = config("ws", 6, &["redis"]);
    cfg.workflow.parallel_limit = 2;
    cfg.workflow.retry.max_attempts = 1;
    let plan = engine.plan(&cfg).await.unwrap();
    let outcome = ran(&engine, &plan).await;
    assert_eq!(outcome.status, WorkflowStatus::Failed);
    assert!(outcome.not_started > 0, "{outcome:?}");
    let (wf, steps) = engine.status(&outcome.workflow).await.unwrap();
    let succeeded: BTreeSet<String> = steps
        .iter()
        .filter(|s| s.status == StepStatus::Succeeded)
        .map(|s| s.key.clone())
        .collect();
    let recorded: BTreeSet<String> = engine
        .store
        .resources("ws")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(recorded, succeeded);
    let events = engine.store.events(&wf.id, 0).await.unwrap();
    let failed_at = events
        .iter()
        .find(|e| e.kind == EventKind::StepFailed)
        .map(|e| e.seq)
        .unwrap();
    let started_before: BTreeSet<Option<usize>> = events
        .iter()
        .filter(|e| e.kind == EventKind::StepStarted && e.seq < failed_at)
        .map(|e| e.step)
        .collect();
    for e in events
        .iter()
        .filter(|e| e.kind == EventKind::StepStarted && e.seq > failed_at)
    {
        assert!(
            started_before.contains(&e.step),
            "step {:?} started after the failure",
            e.step
        );
    }
}

#[tokio::test]
async fn continue_mode_skips_only_what_depends_on_the_failure() {
    let sim = Arc::new(SimProvider::in_memory(failing(&["node-1"])));
    let (engine, _) = engine_with(sim.clone());
    let mut cfg = config("ws", 3, &["redis"]);
    cfg.workflow.on_failure = OnFailure::Continue;
    cfg.workflow.retry.max_attempts = 1;
    let plan = engine.plan(&cfg).await.unwrap();
    let outcome = ran(&engine, &plan).await;
    assert_eq!(outcome.status, WorkflowStatus::Failed);
    let (_, steps) = engine.status(&outcome.workflow).await.unwrap();
    let by_key: BTreeMap<&str, StepStatus> =
        steps.iter().map(|s| (s.key.as_str(), s.status)).collect();
    assert_eq!(by_key["server/node-1"], StepStatus::Failed);
    assert_eq!(by_key["taskserv/node-1/redis"], StepStatus::Skipped);
    for ok in [
        "server/node-0",
        "server/node-2",
        "taskserv/node-0/redis",
        "taskserv/node-2/redis",
    ] {
        assert_eq!(by_key[ok], StepStatus::Succeeded, "{ok}");
    }
}

#[tokio::test]
async fn transient_failures_are_retried_with_capped_jittered_backoff_and_no_duplicates() {
    let sim = Arc::new(SimProvider::in_memory(SimOptions {
        flaky_rate: 0.3,
        lost_response_rate: 0.3,
        seed: 11,
        ..SimOptions::default()
    }));
    let (engine, clock) = engine_with(sim.clone());
    let mut cfg = config("ws", 10, &["redis"]);
    cfg.workflow.retry.max_attempts = 20;
    cfg.workflow.retry.initial_delay_ms = 100;
    cfg.workflow.retry.max_delay_ms = 1_000;
    let plan = engine.plan(&cfg).await.unwrap();
    let outcome = ran(&engine, &plan).await;
    assert_eq!(outcome.status, WorkflowStatus::Succeeded, "{outcome:?}");
    assert_eq!((sim.server_count(), sim.taskserv_count()), (10, 10));
    assert!(
        sim.replays() > 0,
        "lost responses must have been retried with the same key"
    );
    let sleeps = clock.sleeps();
    assert!(!sleeps.is_empty());
    for d in &sleeps {
        let ms = d.as_millis() as u64;
        assert!(
            (50..=1_000).contains(&ms),
            "delay {ms} ms outside [initial/2, max]"
        );
    }
    // Exponential: the n-th retry waits at least half of min(100 * 2^(n-1), 1000).
    let rng = SeededRng::new(3);
    let retry = &cfg.workflow.retry;
    for n in 1..8 {
        let d = backoff_delay(retry, n, &rng).as_millis() as u64;
        let full = (100u64 << (n - 1)).min(1_000);
        assert!(
            d >= full / 2 && d <= full,
            "retry {n}: {d} not in [{}, {full}]",
            full / 2
        );
    }
}

#[tokio::test]
async fn cancel_stops_new_steps_and_resume_finishes_the_rest() {
    let sim = Arc::new(SimProvider::in_memory(SimOptions {
        latency_ms: (20, 20),
        ..SimOptions::default()
    }));
    let engine = Engine::new(
        Arc::new(MemStore::new()),
        Providers::new().with(sim.clone()),
    );
    let mut cfg = config("ws", 6, &[]);
    cfg.workflow.parallel_limit = 1;
    let plan = engine.plan(&cfg).await.unwrap();
    let ApplyResult::Ran(started) = engine.start(&plan.id, &caller()).await.unwrap() else {
        panic!("expected a workflow");
    };
    let mut events = engine.subscribe();
    let runner = {
        let engine = engine.clone();
        let id = started.workflow.clone();
        tokio::spawn(async move { engine.run(&id).await })
    };
    loop {
        let e = events.recv().await.unwrap();
        if e.kind == EventKind::StepSucceeded {
            break;
        }
    }
    engine.cancel(&started.workflow, &caller()).await.unwrap();
    let outcome = runner.await.unwrap().unwrap();
    assert_eq!(outcome.status, WorkflowStatus::Cancelled);
    assert!(
        outcome.succeeded >= 1 && outcome.succeeded < 6,
        "{outcome:?}"
    );
    // Its own writes do not count as someone else's: the resume goes ahead.
    let resumed = engine.resume(&started.workflow, &caller()).await.unwrap();
    assert_eq!(resumed.status, WorkflowStatus::Succeeded);
    assert_eq!(resumed.succeeded, 6);
    assert_eq!(sim.server_count(), 6);
    let err = engine.run(&started.workflow).await.unwrap_err();
    assert!(matches!(err, ExecError::Finished { .. }), "{err}");
}

/// A provider that watches concurrency and order: what ran, when, and how many at once.
#[derive(Default)]
struct Probe {
    log: Mutex<Vec<(String, bool)>>,
    in_flight: Mutex<(usize, usize)>,
}

#[async_trait]
impl Provider for Probe {
    fn name(&self) -> &str {
        "sim"
    }
    async fn create_server(
        &self,
        _: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        {
            let mut f = self.in_flight.lock().unwrap();
            f.0 += 1;
            f.1 = f.1.max(f.0);
            self.log.lock().unwrap().push((spec.name.clone(), true));
        }
        for _ in 0..(spec.name.len() % 3) {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
        self.in_flight.lock().unwrap().0 -= 1;
        self.log.lock().unwrap().push((spec.name.clone(), false));
        Ok(Observed::default())
    }
    async fn update_server(&self, k: &IdempotencyKey, s: &ServerSpec) -> ProviderResult<Observed> {
        self.create_server(k, s).await
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

/// A plan of `n` server creates with the given edges (from a later action to an earlier one,
/// so the graph is acyclic).
fn dag_plan(n: usize, edges: &[(usize, usize)], limit: u32) -> Plan {
    let cfg = {
        let mut c = config("dag", n, &[]);
        c.workflow.parallel_limit = limit;
        c
    };
    let mut plan = crate::plan::make_plan(&cfg, &[], 0, 0);
    for &(a, b) in edges {
        let (later, earlier) = (a.max(b), a.min(b));
        if later != earlier && !plan.actions[later].depends_on.contains(&earlier) {
            plan.actions[later].depends_on.push(earlier);
        }
    }
    plan.rehash();
    plan
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_dags_respect_dependencies_and_the_parallel_limit(
        n in 1usize..40,
        edges in prop::collection::vec((0usize..40, 0usize..40), 0..80),
        limit in 1u32..8,
    ) {
        let edges: Vec<(usize, usize)> = edges.into_iter().filter(|(a, b)| *a < n && *b < n).collect();
        let plan = dag_plan(n, &edges, limit);
        let probe = Arc::new(Probe::default());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let outcome = runtime.block_on(async {
            let engine = Engine::new(Arc::new(MemStore::new()), Providers::new().with(probe.clone()));
            engine.store.save_plan(&plan).await.unwrap();
            engine.apply(&plan.id, &caller()).await.unwrap()
        });
        let ApplyResult::Ran(outcome) = outcome else { panic!("no run") };
        prop_assert_eq!(outcome.status, WorkflowStatus::Succeeded);
        prop_assert_eq!(outcome.succeeded, n);
        let log = probe.log.lock().unwrap().clone();
        let position = |name: &str, start: bool| log.iter().position(|(x, s)| x == name && *s == start).unwrap();
        for a in &plan.actions {
            let name = a.key.trim_start_matches("server/");
            for d in &a.depends_on {
                let dep = plan.actions[*d].key.trim_start_matches("server/");
                prop_assert!(position(dep, false) < position(name, true), "{} started before {} finished", name, dep);
            }
        }
        let max = probe.in_flight.lock().unwrap().1;
        prop_assert!(max <= limit as usize, "{} steps ran at once, limit {}", max, limit);
    }
}

#[tokio::test]
async fn surreal_store_keeps_checkpoints_resources_edges_and_locks_across_reopen() {
    let dir = std::env::temp_dir().join(format!("prov-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sim = Arc::new(SimProvider::in_memory(SimOptions::default()));
    let workflow_id;
    {
        let store = SurrealStore::open(StoreLocation::Embedded(dir.clone()))
            .await
            .unwrap();
        let engine = Engine::new(Arc::new(store), Providers::new().with(sim.clone()));
        let mut cfg = config("ws", 2, &["redis"]);
        cfg.clusters.push(crate::model::Cluster {
            name: "c1".into(),
            template: "cache".into(),
            servers: vec!["node-0".into(), "node-1".into()],
            settings: serde_json::Map::new(),
        });
        let plan = engine.plan(&cfg).await.unwrap();
        let outcome = ran(&engine, &plan).await;
        assert_eq!(outcome.status, WorkflowStatus::Succeeded, "{outcome:?}");
        workflow_id = outcome.workflow;
        drop(engine);
    }
    // The embedded engine shuts down in the background after the last handle is dropped.
    let mut reopened = None;
    for _ in 0..100 {
        match SurrealStore::open(StoreLocation::Embedded(dir.clone())).await {
            Ok(store) => {
                reopened = Some(store);
                break;
            }
            Err(crate::state::StateError::Busy { .. }) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("{other}"),
        }
    }
    let store = reopened.expect("store reopened");
    let resources = store.resources("ws").await.unwrap();
    assert_eq!(resources.len(), 5, "{resources:#?}");
    let redis = store
        .resource("ws", "taskserv/node-0/redis")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(redis.edges[0].to, "server/node-0");
    assert_eq!(store.state_version("ws").await.unwrap(), 5);
    let steps = store.steps(&workflow_id).await.unwrap();
    assert!(steps.iter().all(|s| s.status == StepStatus::Succeeded));
    let events = store.events(&workflow_id, 0).await.unwrap();
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(events.last().unwrap().kind, EventKind::WorkflowFinished);
    let edges: Vec<serde_json::Value> = {
        let mut r = store_query(&store, "SELECT VALUE [in.key, out.key] FROM runs_on").await;
        r.sort_by_key(|v| v.to_string());
        r
    };
    assert_eq!(edges.len(), 2, "{edges:?}");
    let members = store_query(&store, "SELECT VALUE in.key FROM member_of").await;
    assert_eq!(members.len(), 2, "{members:?}");
    assert_eq!(store.workspaces().await.unwrap(), vec!["ws".to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn store_query(store: &SurrealStore, q: &str) -> Vec<serde_json::Value> {
    store.raw_query(q).await.unwrap()
}

#[tokio::test]
async fn a_step_slower_than_its_timeout_fails_as_retryable_and_is_retried() {
    let sim = Arc::new(SimProvider::in_memory(SimOptions {
        latency_ms: (300, 300),
        ..SimOptions::default()
    }));
    let mut engine = Engine::new(
        Arc::new(MemStore::new()),
        Providers::new().with(sim.clone()),
    );
    engine.step_timeout = Duration::from_millis(30);
    let mut cfg = config("ws", 1, &[]);
    cfg.workflow.retry.max_attempts = 2;
    cfg.workflow.retry.initial_delay_ms = 1;
    let plan = engine.plan(&cfg).await.unwrap();
    let outcome = ran(&engine, &plan).await;
    assert_eq!(outcome.status, WorkflowStatus::Failed);
    let (_, steps) = engine.status(&outcome.workflow).await.unwrap();
    assert_eq!(steps[0].attempts, 2, "a timeout is retryable");
    assert!(
        steps[0].error.as_deref().unwrap().contains("timed out"),
        "{:?}",
        steps[0].error
    );
}

#[tokio::test]
async fn drift_reports_what_the_provider_lost_without_changing_state() {
    let sim = Arc::new(SimProvider::in_memory(SimOptions::default()));
    // The real SurrealDB engine, in memory (`mem://`).
    let store = SurrealStore::open(StoreLocation::Memory).await.unwrap();
    let engine = Engine::new(Arc::new(store), Providers::new().with(sim.clone()));
    let cfg = config("ws", 2, &["redis"]);
    let plan = engine.plan(&cfg).await.unwrap();
    assert_eq!(ran(&engine, &plan).await.status, WorkflowStatus::Succeeded);
    assert!(engine.drift("ws").await.unwrap().items.is_empty());
    // Someone deletes a server behind our back.
    let gone = ServerSpec {
        workspace: "ws".into(),
        name: "node-1".into(),
        provider: "sim".into(),
        plan: "small".into(),
        zone: "sim-1".into(),
        labels: BTreeMap::new(),
        host: None,
        image: None,
    };
    sim.delete_server(&IdempotencyKey("out-of-band".into()), &gone)
        .await
        .unwrap();
    let version = engine.store.state_version("ws").await.unwrap();
    let report = engine.drift("ws").await.unwrap();
    let found: BTreeMap<&str, DriftKind> = report
        .items
        .iter()
        .map(|i| (i.key.as_str(), i.kind))
        .collect();
    assert_eq!(
        found,
        BTreeMap::from([
            ("server/node-1", DriftKind::Missing),
            ("taskserv/node-1/redis", DriftKind::Missing),
        ])
    );
    assert_eq!(report.checked, 4);
    assert_eq!(engine.store.state_version("ws").await.unwrap(), version);
}

mod approvals;

/// The lock on the real SurrealDB engine (the MemStore test above covers the engine's use of
/// it): a live lease keeps a second holder out and names the first.
#[tokio::test]
async fn surreal_lock_keeps_a_second_holder_out_until_the_lease_ends() {
    let store = SurrealStore::open(StoreLocation::Memory).await.unwrap();
    let holder = |id: &str, lease_until: u64| LockHolder {
        id: id.into(),
        workspace: "ws".into(),
        owner: format!("{id}@host pid 1"),
        workflow: format!("wf-{id}"),
        host: "host".into(),
        pid: 1,
        acquired_at: 0,
        lease_until,
    };
    assert!(
        store
            .acquire_lock(&holder("a", 1_000), 0)
            .await
            .unwrap()
            .is_ok()
    );
    let held = store.acquire_lock(&holder("b", 2_000), 10).await.unwrap();
    assert_eq!(held.unwrap_err().id, "a");
    // The same holder may take it again (renewal), and after the lease anyone may.
    assert!(
        store
            .acquire_lock(&holder("a", 1_500), 20)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        store
            .acquire_lock(&holder("b", 3_000), 1_600)
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(store.lock("ws").await.unwrap().unwrap().id, "b");
}

/// An engine over a fresh store and the sim ledger at `ledger`, failing `fail`.
fn engine_on_ledger(ledger: &std::path::Path, fail: &[&str]) -> (Engine, Arc<dyn StateStore>) {
    let store: Arc<dyn StateStore> = Arc::new(MemStore::new());
    (engine_sharing(&store, ledger, fail), store)
}

/// Another engine over the same store and the ledger's world as it is now, with a different
/// failure set: like an operator resuming after the cause was fixed.
fn engine_sharing(store: &Arc<dyn StateStore>, ledger: &std::path::Path, fail: &[&str]) -> Engine {
    let sim = Arc::new(SimProvider::with_ledger(failing(fail), ledger.to_path_buf()).unwrap());
    Engine::new(store.clone(), Providers::new().with(sim))
        .with_clock(Arc::new(ManualClock::starting_at(1_000_000)))
        .with_rng(Arc::new(SeededRng::new(7)))
}

fn world(ledger: &std::path::Path) -> (usize, usize) {
    let sim = SimProvider::with_ledger(SimOptions::default(), ledger.to_path_buf()).unwrap();
    (sim.server_count(), sim.taskserv_count())
}

fn scratch_ledger(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("prov-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("ledger.jsonl")
}

#[tokio::test]
async fn resuming_a_failed_workflow_retries_the_failed_step_and_runs_what_it_blocked() {
    let ledger = scratch_ledger("resume-failed");
    let (first, store) = engine_on_ledger(&ledger, &["node-2"]);
    let mut cfg = config("ws", 4, &["redis"]);
    cfg.workflow.retry.max_attempts = 1;
    cfg.workflow.on_failure = OnFailure::Continue;
    let plan = first.plan(&cfg).await.unwrap();
    let outcome = ran(&first, &plan).await;
    assert_eq!(outcome.status, WorkflowStatus::Failed, "{outcome:?}");
    let (_, steps) = first.status(&outcome.workflow).await.unwrap();
    assert!(
        steps.iter().any(|s| s.status == StepStatus::Skipped),
        "{steps:?}"
    );

    // The cause is gone (the second sim fails nothing): resume finishes everything once.
    let second = engine_sharing(&store, &ledger, &[]);
    let resumed = second.run(&outcome.workflow).await.unwrap();
    assert_eq!(resumed.status, WorkflowStatus::Succeeded, "{resumed:?}");
    assert_eq!(world(&ledger), (4, 4));
    assert_eq!(second.store.resources("ws").await.unwrap().len(), 8);
    // Every resource's side effect happened exactly once across both runs.
    let resources: Vec<String> = crate::provider::sim::read_ledger(&ledger)
        .unwrap()
        .into_iter()
        .map(|e| e.resource)
        .collect();
    let distinct: BTreeSet<&String> = resources.iter().collect();
    assert_eq!((resources.len(), distinct.len()), (8, 8), "{resources:?}");
    let _ = std::fs::remove_dir_all(ledger.parent().unwrap());
}

#[tokio::test]
async fn rollback_undoes_a_failed_workflow_once_and_refuses_the_rest() {
    let ledger = scratch_ledger("rollback-failed");
    let (first, store) = engine_on_ledger(&ledger, &["node-3"]);
    let mut cfg = config("ws", 5, &["nginx"]);
    cfg.workflow.retry.max_attempts = 1;
    let plan = first.plan(&cfg).await.unwrap();
    let outcome = ran(&first, &plan).await;
    assert_eq!(outcome.status, WorkflowStatus::Failed, "{outcome:?}");
    assert!(
        world(&ledger).0 > 0,
        "something was created before the failure"
    );

    let second = engine_sharing(&store, &ledger, &[]);
    let rolled = second.rollback(&outcome.workflow, &caller()).await.unwrap();
    assert_eq!(rolled.status, WorkflowStatus::RolledBack, "{rolled:?}");
    assert_eq!(world(&ledger), (0, 0));
    assert!(second.store.resources("ws").await.unwrap().is_empty());

    let again = second
        .rollback(&outcome.workflow, &caller())
        .await
        .unwrap_err();
    assert!(matches!(again, ExecError::Finished { .. }), "{again}");
    let unknown = second.rollback("wf-nope", &caller()).await.unwrap_err();
    assert!(
        matches!(unknown, ExecError::WorkflowNotFound { .. }),
        "{unknown}"
    );

    // A succeeded workflow is not rolled back: that is a destroy, planned and authorized.
    let plan = second.plan(&config("ws2", 1, &[])).await.unwrap();
    let done = ran(&second, &plan).await;
    assert_eq!(done.status, WorkflowStatus::Succeeded);
    let err = second
        .rollback(&done.workflow, &caller())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("plan a destroy"), "{err}");
    let _ = std::fs::remove_dir_all(ledger.parent().unwrap());
}

mod workflow_actions;

/// A provider's error that quotes a secret the engine knows reaches the workflow's events (the
/// log resource, the event stream, progress and log notifications) redacted. The sim's failure
/// message names the failing server; here that name is registered as the secret.
#[tokio::test]
async fn a_secret_quoted_by_a_provider_error_is_redacted_in_the_events() {
    let secret = "canary-4f1d9b7e";
    let sim = Arc::new(SimProvider::in_memory(failing(&[secret])));
    let (engine, _) = engine_with(sim);
    assert!(engine.redactor.register(secret));
    let mut cfg = config("ws", 1, &[]);
    cfg.servers[0].name = secret.into();
    let plan = engine.plan(&cfg).await.unwrap();
    let outcome = ran(&engine, &plan).await;
    assert_eq!(outcome.status, WorkflowStatus::Failed, "{outcome:?}");
    let events = engine.store.events(&outcome.workflow, 0).await.unwrap();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::StepFailed)
        .collect();
    assert!(!failed.is_empty(), "{events:#?}");
    for e in &events {
        assert!(!e.message.contains(secret), "{e:?}");
    }
    assert!(failed[0].message.contains("[redacted]"), "{failed:?}");
}
