//! The executor: runs a plan as a DAG of steps with a parallel limit, retries with capped
//! exponential backoff and jitter, per-step timeouts, and `on_failure` = fail | continue |
//! rollback. Every side effect is bracketed by durable checkpoints, so a workflow interrupted
//! at any point (even by `kill -9`) resumes without repeating finished side effects: a step
//! found `running` after a crash is repeated with the same idempotency key, which the provider
//! honours.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use crate::authz::{self, Authorizer, Caller, Decision};
use crate::model::{Backoff, Config, OnFailure, RetryPolicy};
use crate::plan::{self, ActionKind, Plan, ResourceSpec};
use crate::provider::{IdempotencyKey, Observed, ProviderError, Providers};
use crate::runtime::{Clock, Faults, NoFaults, Rng, SeededRng, SystemClock, new_id};
use crate::state::{
    AuditRecord, Checkpoint, Edge, Event, EventKind, LockHolder, Resource, ResourceChange,
    StateError, StateStore, StepRecord, StepStatus, WorkflowRecord, WorkflowStatus,
};

mod actions;
mod approvals;
mod drift;
mod error;
mod step;
pub use approvals::{Authorization, gated_message};
pub use drift::{DriftItem, DriftKind, DriftReport};
pub use error::ExecError;
use step::{StepContext, hostname, pid_alive};
pub use step::{backoff_delay, steps_for};

/// How long a workspace lock lives without renewal.
const LEASE_MS: u64 = 30_000;

/// Everything the engine needs from outside, handed in.
#[derive(Clone)]
pub struct Engine {
    pub store: Arc<dyn StateStore>,
    pub providers: Providers,
    pub authorizer: Arc<dyn Authorizer>,
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<dyn Rng>,
    pub faults: Arc<dyn Faults>,
    /// Longest a single provider call may take before it counts as a (retryable) failure.
    pub step_timeout: Duration,
    /// How often a running workflow looks for a cancel request in the store.
    pub cancel_poll: Duration,
    /// How long an approval request stays open.
    pub approval_ttl: Duration,
    /// Every secret value the server knows; applied to each audit entry before it is written.
    pub redactor: crate::secrets::Redactor,
    events: broadcast::Sender<Event>,
    cancel: Arc<std::sync::Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("providers", &self.providers)
            .field("step_timeout", &self.step_timeout)
            .finish_non_exhaustive()
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub workflow: String,
    pub status: WorkflowStatus,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub compensated: usize,
    pub not_started: usize,
    pub error: Option<String>,
}

impl RunOutcome {
    /// The outcome a workflow's record and steps show.
    pub fn of(wf: &WorkflowRecord, steps: &[StepRecord]) -> RunOutcome {
        let count = |status: StepStatus| steps.iter().filter(|s| s.status == status).count();
        RunOutcome {
            workflow: wf.id.clone(),
            status: wf.status,
            succeeded: count(StepStatus::Succeeded),
            failed: count(StepStatus::Failed),
            skipped: count(StepStatus::Skipped),
            compensated: count(StepStatus::Compensated),
            not_started: count(StepStatus::Pending),
            error: wf.error.clone(),
        }
    }
}

/// What applying produced: the workflow, or nothing because the plan changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ApplyResult {
    NoChanges { plan: String },
    Ran(RunOutcome),
}

impl Engine {
    pub fn new(store: Arc<dyn StateStore>, providers: Providers) -> Engine {
        let (events, _) = broadcast::channel(4096);
        Engine {
            store,
            providers,
            authorizer: Arc::new(crate::authz::NoPolicies),
            clock: Arc::new(SystemClock),
            rng: Arc::new(SeededRng::from_entropy()),
            faults: Arc::new(NoFaults),
            step_timeout: Duration::from_secs(600),
            cancel_poll: Duration::from_millis(250),
            approval_ttl: Duration::from_secs(24 * 3600),
            redactor: crate::secrets::Redactor::new(),
            events,
            cancel: Arc::new(std::sync::Mutex::new(BTreeSet::new())),
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_rng(mut self, rng: Arc<dyn Rng>) -> Self {
        self.rng = rng;
        self
    }

    pub fn with_faults(mut self, faults: Arc<dyn Faults>) -> Self {
        self.faults = faults;
        self
    }

    pub fn with_authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = authorizer;
        self
    }

    /// The redactor shared with the server's edges (tool results, REST, logs).
    pub fn with_redactor(mut self, redactor: crate::secrets::Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Live progress events of every workflow this engine runs.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Plans a validated config against the recorded state and stores the plan.
    pub async fn plan(&self, config: &Config) -> Result<Plan, ExecError> {
        self.plan_with(config, plan::Intent::Apply).await
    }

    /// A plan that removes everything recorded for the config's workspace.
    pub async fn plan_destroy(&self, config: &Config) -> Result<Plan, ExecError> {
        let mut empty = config.clone();
        empty.servers.clear();
        empty.clusters.clear();
        self.plan_with(&empty, plan::Intent::Destroy).await
    }

    async fn plan_with(&self, config: &Config, intent: plan::Intent) -> Result<Plan, ExecError> {
        let ws = &config.workspace.name;
        let version = self.store.state_version(ws).await?;
        let recorded = self.store.resources(ws).await?;
        let mut plan = plan::make_plan(config, &recorded, version, self.clock.now_ms());
        if intent != plan.intent {
            plan.intent = intent;
            plan.rehash();
        }
        self.store.save_plan(&plan).await?;
        tracing::info!(target: "engine::plan", plan = %plan.id, workspace = %plan.workspace, actions = plan.actions.len(), "plan stored");
        Ok(plan)
    }

    /// Refuses a plan made against an older state version of its workspace.
    async fn ensure_current(&self, plan: &Plan) -> Result<(), ExecError> {
        let current = self.store.state_version(&plan.workspace).await?;
        if current != plan.state_version {
            return Err(ExecError::StalePlan {
                plan: plan.id.clone(),
                workspace: plan.workspace.clone(),
                planned: plan.state_version,
                current,
            });
        }
        Ok(())
    }

    pub async fn load_plan(&self, id: &str) -> Result<Plan, ExecError> {
        if !is_id(id) {
            return Err(ExecError::PlanNotFound {
                id: id.to_string(),
                known: Vec::new(),
            });
        }
        match self.store.plan(id).await? {
            Some(plan) => Ok(plan),
            None => Err(ExecError::PlanNotFound {
                id: id.to_string(),
                known: Vec::new(),
            }),
        }
    }

    /// Checks the plan is current, asks the authorizer, takes the workspace lock and records
    /// the workflow. Nothing runs yet; call [`Engine::run`] with the returned id.
    pub async fn start(&self, plan_id: &str, caller: &Caller) -> Result<ApplyResult, ExecError> {
        let plan = self.load_plan(plan_id).await?;
        self.ensure_current(&plan).await?;
        if plan.is_noop() {
            return Ok(ApplyResult::NoChanges { plan: plan.id });
        }
        let auth = self.authorize(&plan, caller).await?;
        let decision = auth.decision.clone();
        match &decision {
            Decision::Allow { .. } => {}
            Decision::Deny { reasons } => {
                return Err(ExecError::NotAllowed(format!(
                    "{} of plan {} is denied: {}",
                    authz::plan_action(&plan).as_str(),
                    plan.id,
                    reasons
                        .iter()
                        .map(|r| format!("{} ({})", r.id, r.description))
                        .collect::<Vec<_>>()
                        .join("; ")
                )));
            }
            Decision::NeedsApproval { .. } => {
                let Some(request) = auth.request else {
                    return Err(ExecError::NotAllowed(format!(
                        "plan {} needs approval, but no request could be recorded",
                        plan.id
                    )));
                };
                return Err(ExecError::NeedsApproval {
                    message: gated_message(&plan, &request),
                    request: Box::new(request),
                });
            }
        }
        let now = self.clock.now_ms();
        let workflow_id = new_id("wf", self.clock.as_ref(), self.rng.as_ref());
        let lock = self.lock_holder(&plan.workspace, &workflow_id);
        self.acquire(&lock).await?;
        // The lock stays with this workflow until `run` finishes it; on any error here it is
        // released. Staleness is checked again under the lock.
        let created = async {
            self.ensure_current(&plan).await?;
            // Approvals are single use: the request that cleared the gates is spent on this
            // workflow, before it exists, so a failed start can never reuse them.
            if auth.approvals > 0
                && let Some(request) = &auth.request
            {
                self.consume_approval(request, &workflow_id, caller).await?;
            }
            let steps: Vec<StepRecord> = steps_for(&plan, &workflow_id);
            let record = WorkflowRecord {
                id: workflow_id.clone(),
                workspace: plan.workspace.clone(),
                plan_id: plan.id.clone(),
                plan_hash: plan.hash.clone(),
                status: WorkflowStatus::Pending,
                settings: plan.settings.clone(),
                decision: serde_json::to_value(&decision).unwrap_or_default(),
                requested_by: caller.principal.clone(),
                cancel_requested: false,
                created_at: now,
                updated_at: now,
                error: None,
            };
            self.store.create_workflow(&record, &steps).await?;
            Ok(steps)
        }
        .await;
        let steps = match created {
            Ok(steps) => steps,
            Err(err) => {
                let _ = self.store.release_lock(&plan.workspace, &lock.id).await;
                return Err(err);
            }
        };
        Ok(ApplyResult::Ran(RunOutcome {
            workflow: workflow_id,
            status: WorkflowStatus::Pending,
            succeeded: 0,
            failed: 0,
            skipped: 0,
            compensated: 0,
            not_started: steps.len(),
            error: None,
        }))
    }

    /// Appends to the audit log, every known secret redacted (workflow, step and approval
    /// entries all pass here).
    pub async fn audit(
        &self,
        kind: &str,
        actor: &str,
        subject: &str,
        mut data: serde_json::Value,
    ) -> Result<(), ExecError> {
        self.redactor.redact_json(&mut data);
        self.store
            .append_audit(AuditRecord {
                at: self.clock.now_ms(),
                kind: self.redactor.redact(kind).into_owned(),
                actor: self.redactor.redact(actor).into_owned(),
                subject: self.redactor.redact(subject).into_owned(),
                data,
            })
            .await?;
        Ok(())
    }

    /// `start` then `run`.
    pub async fn apply(&self, plan_id: &str, caller: &Caller) -> Result<ApplyResult, ExecError> {
        match self.start(plan_id, caller).await? {
            ApplyResult::Ran(started) => Ok(ApplyResult::Ran(self.run(&started.workflow).await?)),
            nothing => Ok(nothing),
        }
    }

    pub async fn workflow(&self, id: &str) -> Result<WorkflowRecord, ExecError> {
        let found = if is_id(id) {
            self.store.workflow(id).await?
        } else {
            None
        };
        match found {
            Some(wf) => Ok(wf),
            None => {
                let known = self
                    .store
                    .workflows(None)
                    .await?
                    .into_iter()
                    .take(5)
                    .map(|w| w.id)
                    .collect();
                Err(ExecError::WorkflowNotFound {
                    id: id.to_string(),
                    known,
                })
            }
        }
    }

    fn lock_holder(&self, workspace: &str, workflow: &str) -> LockHolder {
        let host = hostname();
        let user = authz::login_name();
        let pid = std::process::id();
        let now = self.clock.now_ms();
        LockHolder {
            id: new_id("lock", self.clock.as_ref(), self.rng.as_ref()),
            workspace: workspace.to_string(),
            owner: format!("{user}@{host} pid {pid}"),
            workflow: workflow.to_string(),
            host,
            pid,
            acquired_at: now,
            lease_until: now + LEASE_MS,
        }
    }

    /// Takes the lock. A lock this process took for the same workflow (between `start` and
    /// `run`), or one left by a dead process on this host, is taken over at once; a lock on
    /// another host is free once its lease runs out.
    async fn acquire(&self, lock: &LockHolder) -> Result<(), ExecError> {
        let now = self.clock.now_ms();
        match self.store.acquire_lock(lock, now).await? {
            Ok(()) => Ok(()),
            Err(held) => {
                let same_host = held.host == lock.host;
                let ours = held.pid == lock.pid && held.workflow == lock.workflow;
                let dead = held.pid != lock.pid && !pid_alive(held.pid);
                if same_host && (ours || dead) {
                    match self.store.acquire_lock(lock, held.lease_until).await? {
                        Ok(()) => return Ok(()),
                        Err(other) => return Err(ExecError::LockHeld(other)),
                    }
                }
                Err(ExecError::LockHeld(held))
            }
        }
    }

    /// Runs (or resumes) a workflow until it finishes, fails, or is cancelled.
    pub async fn run(&self, workflow_id: &str) -> Result<RunOutcome, ExecError> {
        let mut wf = self.workflow(workflow_id).await?;
        if wf.status.is_final() {
            return Err(ExecError::Finished {
                id: wf.id,
                status: wf.status.as_str(),
                verb: "resume",
            });
        }
        let decision: Option<Decision> = serde_json::from_value(wf.decision.clone()).ok();
        if !decision.as_ref().is_some_and(Decision::is_allow) {
            return Err(ExecError::NotAllowed(format!(
                "workflow {} has no recorded policy decision allowing it",
                wf.id
            )));
        }
        let plan = self.load_plan(&wf.plan_id).await?;
        let lock = self.lock_holder(&wf.workspace, &wf.id);
        self.acquire(&lock).await?;
        let heartbeat = {
            let store = self.store.clone();
            let clock = self.clock.clone();
            let mut lock = lock.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(LEASE_MS / 3)).await;
                    lock.lease_until = clock.now_ms() + LEASE_MS;
                    let _ = store.renew_lock(&lock).await;
                }
            })
        };
        let span = tracing::info_span!(
            "workflow",
            workflow = %wf.id,
            plan = %wf.plan_id,
            workspace = %wf.workspace
        );
        let result = tracing::Instrument::instrument(self.run_locked(&mut wf, &plan), span).await;
        heartbeat.abort();
        let released = self.store.release_lock(&wf.workspace, &lock.id).await;
        if let Ok(mut set) = self.cancel.lock() {
            set.remove(&wf.id);
        }
        let outcome = result?;
        released?;
        Ok(outcome)
    }

    async fn run_locked(
        &self,
        wf: &mut WorkflowRecord,
        plan: &Plan,
    ) -> Result<RunOutcome, ExecError> {
        let mut steps = self.store.steps(&wf.id).await?;
        // Resuming a failed or cancelled workflow tries its failed steps again (attempts start
        // over; the idempotency key stays, so a step whose effect did happen is not repeated)
        // and runs the steps skipped because of them. The store is updated when each starts.
        if matches!(
            wf.status,
            WorkflowStatus::Failed | WorkflowStatus::Cancelled
        ) {
            for step in steps
                .iter_mut()
                .filter(|s| matches!(s.status, StepStatus::Failed | StepStatus::Skipped))
            {
                step.status = StepStatus::Pending;
                step.attempts = 0;
                step.error = None;
            }
        }
        let last_seq = self
            .store
            .events(&wf.id, 0)
            .await?
            .last()
            .map(|e| e.seq)
            .unwrap_or(0);
        let ctx = Arc::new(StepContext {
            engine: self.clone(),
            workflow: wf.id.clone(),
            seq: AtomicU64::new(last_seq),
            retry: wf.settings.retry.clone(),
            actions: plan.changes().cloned().collect(),
            stopping: AtomicBool::new(false),
            on_failure: wf.settings.on_failure,
            gate: std::sync::Mutex::new(()),
        });
        let resumed = wf.status != WorkflowStatus::Pending;
        let rolling_back = wf.status == WorkflowStatus::RollingBack;
        wf.status = if rolling_back {
            WorkflowStatus::RollingBack
        } else {
            WorkflowStatus::Running
        };
        wf.cancel_requested = false;
        wf.updated_at = self.clock.now_ms();
        let event = ctx.event(
            if resumed {
                EventKind::WorkflowResumed
            } else {
                EventKind::WorkflowStarted
            },
            None,
            format!(
                "{} workflow {} for plan {} ({} steps, parallel limit {}, on failure {:?})",
                if resumed { "resuming" } else { "starting" },
                wf.id,
                wf.plan_id,
                steps.len(),
                wf.settings.parallel_limit,
                wf.settings.on_failure
            ),
        );
        self.store.update_workflow(wf, Some(&event)).await?;
        self.faults.point("workflow:started");
        log_event(&event);
        let _ = self.events.send(event);

        let limit = wf.settings.parallel_limit.max(1) as usize;
        let mut failed_any = steps.iter().any(|s| s.status == StepStatus::Failed);
        let mut cancelled = false;
        if !rolling_back {
            let forward = self
                .forward(&ctx, &mut steps, limit, wf.settings.on_failure)
                .await?;
            failed_any |= forward.failed;
            cancelled = forward.cancelled;
        }
        let rollback = rolling_back
            || (failed_any && !cancelled && wf.settings.on_failure == OnFailure::Rollback);
        if rollback {
            if !rolling_back {
                wf.status = WorkflowStatus::RollingBack;
                wf.updated_at = self.clock.now_ms();
                self.store.update_workflow(wf, None).await?;
            }
            self.compensate(&ctx, &mut steps, limit).await?;
        }

        let failures: Vec<String> = steps
            .iter()
            .filter(|s| s.status == StepStatus::Failed || s.error.is_some() && rollback)
            .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.key)))
            .collect();
        // A step left running or pending although nothing failed or cancelled: the run was
        // cut short (a store write failed). It stays resumable.
        let interrupted = !cancelled
            && !rollback
            && steps.iter().any(|s| {
                matches!(
                    s.status,
                    StepStatus::Running | StepStatus::Retrying | StepStatus::Pending
                )
            });
        let failures: Vec<String> = if interrupted && failures.is_empty() {
            steps
                .iter()
                .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.key)))
                .collect()
        } else {
            failures
        };
        let failed_any = failed_any || interrupted;
        let still_failed = steps
            .iter()
            .any(|s| matches!(s.status, StepStatus::Failed | StepStatus::Compensating));
        wf.status = if cancelled {
            WorkflowStatus::Cancelled
        } else if rollback {
            if still_failed && steps.iter().any(|s| s.status == StepStatus::Compensating) {
                WorkflowStatus::Failed
            } else {
                WorkflowStatus::RolledBack
            }
        } else if failed_any {
            WorkflowStatus::Failed
        } else {
            WorkflowStatus::Succeeded
        };
        wf.error = if failures.is_empty() {
            None
        } else {
            Some(failures.join("; "))
        };
        wf.updated_at = self.clock.now_ms();
        let outcome = RunOutcome::of(wf, &steps);
        let event = ctx.event(
            EventKind::WorkflowFinished,
            None,
            format!(
                "workflow {} {}: {} succeeded, {} failed, {} skipped, {} rolled back, {} not started",
                wf.id,
                wf.status.as_str(),
                outcome.succeeded,
                outcome.failed,
                outcome.skipped,
                outcome.compensated,
                outcome.not_started
            ),
        );
        self.faults.point("workflow:before-finish");
        self.store.update_workflow(wf, Some(&event)).await?;
        self.audit(
            "workflow",
            &wf.requested_by,
            &wf.id,
            serde_json::json!({
                "status": wf.status.as_str(),
                "plan": wf.plan_id,
                "plan_hash": wf.plan_hash,
                "succeeded": outcome.succeeded,
                "failed": outcome.failed,
                "compensated": outcome.compensated,
                "not_started": outcome.not_started,
            }),
        )
        .await?;
        log_event(&event);
        let _ = self.events.send(event);
        Ok(outcome)
    }

    fn cancel_requested_locally(&self, workflow: &str) -> bool {
        self.cancel
            .lock()
            .map(|set| set.contains(workflow))
            .unwrap_or(false)
    }

    async fn forward(
        &self,
        ctx: &Arc<StepContext>,
        steps: &mut [StepRecord],
        limit: usize,
        on_failure: OnFailure,
    ) -> Result<ForwardOutcome, ExecError> {
        let done = |s: &StepRecord| s.status == StepStatus::Succeeded;
        let todo: BTreeSet<usize> = steps
            .iter()
            .filter(|s| {
                matches!(
                    s.status,
                    StepStatus::Pending | StepStatus::Running | StepStatus::Retrying
                )
            })
            .map(|s| s.index)
            .collect();
        let mut waiting: BTreeMap<usize, usize> = BTreeMap::new();
        let mut dependents: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &i in &todo {
            let open = steps[i]
                .depends_on
                .iter()
                .filter(|d| !done(&steps[**d]))
                .count();
            waiting.insert(i, open);
            for d in &steps[i].depends_on {
                dependents.entry(*d).or_default().push(i);
            }
        }
        let mut ready: BTreeSet<usize> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(i, _)| *i)
            .collect();
        let mut running: JoinSet<(usize, StepRecord)> = JoinSet::new();
        let mut outcome = ForwardOutcome::default();
        let mut stopping = false;
        let mut last_poll = tokio::time::Instant::now();
        loop {
            if !stopping && self.should_cancel(&ctx.workflow, &mut last_poll).await? {
                stopping = true;
                outcome.cancelled = true;
                ctx.stopping.store(true, Ordering::SeqCst);
            }
            while !stopping && running.len() < limit {
                let Some(i) = ready.pop_first() else { break };
                let step = steps[i].clone();
                let ctx = ctx.clone();
                running.spawn(async move {
                    let record = ctx.run_step(step).await;
                    (i, record)
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (i, record) = match joined {
                Ok(pair) => pair,
                Err(err) => {
                    return Err(ExecError::State(StateError::Backend(format!(
                        "a step task ended abnormally: {err}"
                    ))));
                }
            };
            let ok = record.status == StepStatus::Succeeded;
            steps[i] = record;
            if ok {
                for &j in dependents.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
                    if let Some(n) = waiting.get_mut(&j) {
                        *n = n.saturating_sub(1);
                        if *n == 0 && steps[j].status != StepStatus::Skipped {
                            ready.insert(j);
                        }
                    }
                }
                continue;
            }
            if steps[i].status == StepStatus::Failed {
                outcome.failed = true;
                match on_failure {
                    OnFailure::Fail | OnFailure::Rollback => {
                        stopping = true;
                        ctx.stopping.store(true, Ordering::SeqCst);
                    }
                    OnFailure::Continue => {
                        // Everything downstream of the failure is skipped; the rest goes on.
                        let mut stack = vec![i];
                        while let Some(k) = stack.pop() {
                            for &j in dependents.get(&k).map(Vec::as_slice).unwrap_or(&[]) {
                                if steps[j].status == StepStatus::Pending {
                                    ready.remove(&j);
                                    let mut skipped = steps[j].clone();
                                    skipped.status = StepStatus::Skipped;
                                    skipped.error = Some(format!(
                                        "skipped: depends on failed {}",
                                        steps[i].key
                                    ));
                                    ctx.checkpoint(&skipped, None, EventKind::StepSkipped)
                                        .await?;
                                    steps[j] = skipped;
                                    stack.push(j);
                                }
                            }
                        }
                    }
                }
            } else if steps[i].status != StepStatus::Succeeded {
                // A step interrupted by a stop request stays resumable.
                stopping = true;
            }
        }
        Ok(outcome)
    }

    async fn should_cancel(
        &self,
        workflow: &str,
        last_poll: &mut tokio::time::Instant,
    ) -> Result<bool, ExecError> {
        if self.cancel_requested_locally(workflow) {
            return Ok(true);
        }
        if last_poll.elapsed() >= self.cancel_poll {
            *last_poll = tokio::time::Instant::now();
            let wf = self.store.workflow(workflow).await?;
            return Ok(wf.is_some_and(|w| w.cancel_requested));
        }
        Ok(false)
    }

    /// Undoes succeeded steps (and cleans up after failed or interrupted creates) in reverse
    /// dependency order: a step is undone only after every step that depended on it.
    async fn compensate(
        &self,
        ctx: &Arc<StepContext>,
        steps: &mut [StepRecord],
        limit: usize,
    ) -> Result<(), ExecError> {
        let undo: BTreeSet<usize> = steps
            .iter()
            .filter(|s| {
                matches!(
                    s.status,
                    StepStatus::Succeeded
                        | StepStatus::Compensating
                        | StepStatus::Failed
                        | StepStatus::Running
                        | StepStatus::Retrying
                )
            })
            .map(|s| s.index)
            .collect();
        // i waits for every j in `undo` that depends on i.
        let mut waiting: BTreeMap<usize, usize> = undo.iter().map(|i| (*i, 0)).collect();
        let mut unblocks: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &j in &undo {
            for d in &steps[j].depends_on {
                if undo.contains(d) {
                    *waiting.entry(*d).or_default() += 1;
                    unblocks.entry(j).or_default().push(*d);
                }
            }
        }
        let mut ready: BTreeSet<usize> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(i, _)| *i)
            .collect();
        let mut running: JoinSet<(usize, StepRecord)> = JoinSet::new();
        ctx.stopping.store(false, Ordering::SeqCst);
        loop {
            while running.len() < limit {
                // Undo the latest steps first among those that are free to go.
                let Some(i) = ready.pop_last() else { break };
                let step = steps[i].clone();
                let ctx = ctx.clone();
                running.spawn(async move { (i, ctx.compensate_step(step).await) });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (i, record) = joined.map_err(|err| {
                ExecError::State(StateError::Backend(format!(
                    "a compensation task ended abnormally: {err}"
                )))
            })?;
            let ok = record.status == StepStatus::Compensated;
            steps[i] = record;
            if ok {
                for &d in unblocks.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
                    if let Some(n) = waiting.get_mut(&d) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            ready.insert(d);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Recorded workflow and its steps.
    pub async fn status(
        &self,
        workflow_id: &str,
    ) -> Result<(WorkflowRecord, Vec<StepRecord>), ExecError> {
        let wf = self.workflow(workflow_id).await?;
        let steps = self.store.steps(&wf.id).await?;
        Ok((wf, steps))
    }
}

#[derive(Debug, Default)]
struct ForwardOutcome {
    failed: bool,
    cancelled: bool,
}

/// Whether `id` can name a record: ids the engine makes are `PREFIX-HEX`; anything empty, long
/// or with other characters names nothing (and never reaches a query).
/// A workflow event in the log, with the workflow id the audit entries carry (the message is
/// already redacted where the event was made).
pub(crate) fn log_event(event: &Event) {
    let kind = serde_json::to_value(event.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    if matches!(event.kind, EventKind::StepFailed | EventKind::StepRetrying) {
        tracing::warn!(target: "engine::workflow", workflow = %event.workflow, seq = event.seq, step = ?event.step, event = %kind, "{}", event.message);
    } else {
        tracing::info!(target: "engine::workflow", workflow = %event.workflow, seq = event.seq, step = ?event.step, event = %kind, "{}", event.message);
    }
}

pub fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests;
