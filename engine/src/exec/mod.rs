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
pub use approvals::{Authorization, gated_message};
pub use drift::{DriftItem, DriftKind, DriftReport};

/// How long a workspace lock lives without renewal.
const LEASE_MS: u64 = 30_000;

/// Why an apply, resume or cancel did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no plan with id `{id}`{}", hint_list("recent plans", known))]
    PlanNotFound { id: String, known: Vec<String> },
    #[error("no workflow with id `{id}`{}", hint_list("recent workflows", known))]
    WorkflowNotFound { id: String, known: Vec<String> },
    #[error(
        "plan {plan} is stale: it was made against state version {planned}, but workspace `{workspace}` is now at version {current}; run `provisioning plan` again and review the new plan"
    )]
    StalePlan {
        plan: String,
        workspace: String,
        planned: u64,
        current: u64,
    },
    #[error(
        "workspace `{}` is locked by {} (lock {}, workflow {}, since {} ms epoch); wait for it to finish, or check it with `provisioning status {}`",
        .0.workspace, .0.owner, .0.id, .0.workflow, .0.acquired_at, .0.workflow
    )]
    LockHeld(LockHolder),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error(
        "workspace `{workspace}` changed since workflow {workflow} last wrote to it (state version {expected} then, {current} now): another apply or a destroy ran meanwhile, so resuming would work from an outdated plan; plan again from the config and apply the new plan"
    )]
    WorkspaceChanged {
        workflow: String,
        workspace: String,
        expected: u64,
        current: u64,
    },
    #[error("{message}")]
    NeedsApproval {
        message: String,
        request: Box<policies::ApprovalRequest>,
    },
    #[error(
        "no approval request with id `{id}`{}",
        hint_list("recent requests", known)
    )]
    ApprovalNotFound { id: String, known: Vec<String> },
    #[error("{0}")]
    Approval(String),
    #[error("workflow {id} is {status}; there is nothing to {verb}")]
    Finished {
        id: String,
        status: &'static str,
        verb: &'static str,
    },
    #[error(transparent)]
    State(#[from] StateError),
    /// A remote server (the CLI's `--server`) could not be reached or answered an error that
    /// has no engine counterpart; the text says which.
    #[error("{0}")]
    Remote(String),
}

fn hint_list(what: &str, items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" ({what}: {})", items.join(", "))
    }
}

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
        let result = self.run_locked(&mut wf, &plan).await;
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

/// The steps of a plan: one per action that changes something, with dependencies renumbered.
/// Whether `id` can name a record: ids the engine makes are `PREFIX-HEX`; anything empty, long
/// or with other characters names nothing (and never reaches a query).
pub fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub fn steps_for(plan: &Plan, workflow: &str) -> Vec<StepRecord> {
    let changing: Vec<&plan::Action> = plan.changes().collect();
    let position: BTreeMap<usize, usize> = changing
        .iter()
        .enumerate()
        .map(|(pos, a)| (a.index, pos))
        .collect();
    changing
        .iter()
        .enumerate()
        .map(|(pos, a)| StepRecord {
            workflow: workflow.to_string(),
            index: pos,
            key: a.key.clone(),
            kind: a.kind,
            action: a.action,
            depends_on: a
                .depends_on
                .iter()
                .filter_map(|d| position.get(d).copied())
                .collect(),
            status: StepStatus::Pending,
            attempts: 0,
            idempotency_key: format!("{workflow}/{pos}/{}", a.key),
            error: None,
            observed: None,
            started_at: None,
            finished_at: None,
        })
        .collect()
}

struct StepContext {
    engine: Engine,
    workflow: String,
    seq: AtomicU64,
    retry: RetryPolicy,
    /// The plan's changing actions: `actions[step.index]` is the step's action.
    actions: Vec<plan::Action>,
    stopping: AtomicBool,
    on_failure: OnFailure,
    /// Orders "a step starts" against "a step fails for good": a step whose start event comes
    /// after a stopping failure does not start at all.
    gate: std::sync::Mutex<()>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl StepContext {
    fn event(&self, kind: EventKind, step: Option<usize>, message: String) -> Event {
        Event {
            workflow: self.workflow.clone(),
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            at: self.engine.clock.now_ms(),
            kind,
            step,
            message,
        }
    }

    fn action(&self, step: &StepRecord) -> Option<&plan::Action> {
        self.actions.get(step.index)
    }

    async fn checkpoint(
        &self,
        step: &StepRecord,
        resource: Option<ResourceChange>,
        kind: EventKind,
    ) -> Result<(), ExecError> {
        let event = self.step_event(kind, step);
        self.write(step, resource, event).await
    }

    fn step_event(&self, kind: EventKind, step: &StepRecord) -> Event {
        self.event(kind, Some(step.index), describe_event(kind, step))
    }

    async fn write(
        &self,
        step: &StepRecord,
        resource: Option<ResourceChange>,
        event: Event,
    ) -> Result<(), ExecError> {
        let checkpoint = Checkpoint {
            step: step.clone(),
            resource,
            event: event.clone(),
        };
        self.engine.store.checkpoint(&checkpoint).await?;
        if matches!(
            checkpoint.event.kind,
            EventKind::StepSucceeded | EventKind::StepFailed | EventKind::StepCompensated
        ) {
            self.engine
                .audit(
                    "step",
                    "engine",
                    &self.workflow,
                    serde_json::json!({
                        "step": step.index,
                        "resource": step.key,
                        "action": step.action.as_str(),
                        "status": step.status.as_str(),
                        "attempts": step.attempts,
                        "idempotency_key": step.idempotency_key,
                        "error": step.error,
                    }),
                )
                .await?;
        }
        let _ = self.engine.events.send(event);
        Ok(())
    }

    /// Runs one step to success or final failure. Never panics; store errors end the step as
    /// failed with the error recorded where possible.
    async fn run_step(self: Arc<Self>, mut step: StepRecord) -> StepRecord {
        let faults = self.engine.faults.clone();
        let Some(action) = self.action(&step).cloned() else {
            step.status = StepStatus::Failed;
            step.error = Some("the plan has no action for this step".into());
            return step;
        };
        let mut failures = 0u32;
        loop {
            let mut next = step.clone();
            next.status = StepStatus::Running;
            next.attempts += 1;
            next.started_at.get_or_insert(self.engine.clock.now_ms());
            let started = {
                let _gate = self.gate.lock();
                if self.stopping.load(Ordering::SeqCst) && failures == 0 {
                    None
                } else {
                    Some(self.step_event(EventKind::StepStarted, &next))
                }
            };
            let Some(started) = started else {
                // The workflow is stopping: this step does not start.
                return step;
            };
            step = next;
            faults.point(&format!("step {}:before-checkpoint", step.index));
            if let Err(err) = self.write(&step, None, started).await {
                step.status = StepStatus::Pending;
                step.error = Some(err.to_string());
                return step;
            }
            faults.point(&format!("step {}:before-effect", step.index));
            let key = IdempotencyKey(step.idempotency_key.clone());
            let effect = tokio::time::timeout(
                self.engine.step_timeout,
                self.perform(&action, &key, Direction::Forward),
            )
            .await
            .unwrap_or_else(|_| {
                Err(ProviderError::Transient(format!(
                    "timed out after {} s",
                    self.engine.step_timeout.as_secs()
                )))
            });
            faults.point(&format!("step {}:after-effect", step.index));
            match effect {
                Ok(change) => {
                    step.status = StepStatus::Succeeded;
                    step.error = None;
                    step.finished_at = Some(self.engine.clock.now_ms());
                    step.observed = match &change {
                        Some(ResourceChange::Put(r)) => Some(Observed {
                            provider_id: r.provider_id.clone(),
                            attrs: r.observed.clone(),
                        }),
                        _ => None,
                    };
                    if let Err(err) = self
                        .checkpoint(&step, change, EventKind::StepSucceeded)
                        .await
                    {
                        // The effect happened but is not recorded: leave the step resumable.
                        step.status = StepStatus::Running;
                        step.error = Some(err.to_string());
                        return step;
                    }
                    faults.point(&format!("step {}:after-checkpoint", step.index));
                    return step;
                }
                Err(err) => {
                    failures += 1;
                    step.error = Some(err.to_string());
                    let stop = self.stopping.load(Ordering::SeqCst);
                    if err.retryable() && failures < self.retry.max_attempts && !stop {
                        step.status = StepStatus::Retrying;
                        let delay = backoff_delay(&self.retry, failures, self.engine.rng.as_ref());
                        let _ = self.checkpoint(&step, None, EventKind::StepRetrying).await;
                        self.engine.clock.sleep(delay).await;
                        continue;
                    }
                    step.status = StepStatus::Failed;
                    step.finished_at = Some(self.engine.clock.now_ms());
                    let failed = {
                        let _gate = self.gate.lock();
                        if self.on_failure != OnFailure::Continue {
                            self.stopping.store(true, Ordering::SeqCst);
                        }
                        self.step_event(EventKind::StepFailed, &step)
                    };
                    let _ = self.write(&step, None, failed).await;
                    return step;
                }
            }
        }
    }

    async fn compensate_step(self: Arc<Self>, mut step: StepRecord) -> StepRecord {
        let Some(action) = self.action(&step).cloned() else {
            return step;
        };
        let was = step.status;
        step.status = StepStatus::Compensating;
        if self
            .checkpoint(&step, None, EventKind::StepCompensating)
            .await
            .is_err()
        {
            return step;
        }
        let direction = if was == StepStatus::Succeeded || was == StepStatus::Compensating {
            Direction::Undo
        } else {
            // Failed or interrupted: whatever part of it happened is cleaned up.
            Direction::Cleanup
        };
        let key = IdempotencyKey(format!("{}:undo", step.idempotency_key));
        let mut failures = 0;
        loop {
            let effect = tokio::time::timeout(
                self.engine.step_timeout,
                self.perform(&action, &key, direction),
            )
            .await
            .unwrap_or_else(|_| Err(ProviderError::Transient("timed out".into())));
            match effect {
                Ok(change) => {
                    step.status = StepStatus::Compensated;
                    step.finished_at = Some(self.engine.clock.now_ms());
                    let _ = self
                        .checkpoint(&step, change, EventKind::StepCompensated)
                        .await;
                    return step;
                }
                Err(err) => {
                    failures += 1;
                    step.error = Some(format!("rollback: {err}"));
                    if err.retryable() && failures < self.retry.max_attempts {
                        let delay = backoff_delay(&self.retry, failures, self.engine.rng.as_ref());
                        self.engine.clock.sleep(delay).await;
                        continue;
                    }
                    let _ = self.checkpoint(&step, None, EventKind::StepFailed).await;
                    return step;
                }
            }
        }
    }

    /// The provider calls for one action, and the resource change to record.
    fn perform<'a>(
        &'a self,
        action: &'a plan::Action,
        key: &'a IdempotencyKey,
        direction: Direction,
    ) -> BoxFuture<'a, Result<Option<ResourceChange>, ProviderError>> {
        Box::pin(async move {
            let providers = &self.engine.providers;
            let now = self.engine.clock.now_ms();
            let ws = self.workspace(action);
            // What this direction turns the resource into: Some(spec) = make it so, None = gone.
            let (from, to) = match direction {
                Direction::Forward => (action.before.as_ref(), action.after.as_ref()),
                Direction::Undo => (action.after.as_ref(), action.before.as_ref()),
                Direction::Cleanup => match action.action {
                    // A create that failed half-way: remove what may exist.
                    ActionKind::Create => (action.after.as_ref(), None),
                    _ => return Ok(None),
                },
            };
            let sub = |suffix: &str| IdempotencyKey(format!("{}:{suffix}", key.0));
            match (from, to) {
                (_, None) => {
                    let Some(spec) = from else { return Ok(None) };
                    match spec {
                        ResourceSpec::Server(s) => {
                            providers.get(&s.provider)?.delete_server(key, s).await?;
                        }
                        ResourceSpec::Taskserv { spec: t, .. } => {
                            let provider = providers.get(&action.provider)?;
                            provider.remove_taskserv(key, t).await?;
                        }
                        ResourceSpec::Cluster(_) => {}
                    }
                    Ok(Some(ResourceChange::Delete {
                        workspace: ws,
                        key: spec.key(),
                    }))
                }
                (before, Some(spec)) => {
                    let (provider_name, observed, edges) = match spec {
                        ResourceSpec::Server(s) => {
                            let provider = providers.get(&s.provider)?;
                            let observed = match before {
                                None => provider.create_server(key, s).await?,
                                Some(ResourceSpec::Server(old))
                                    if old.provider == s.provider && old.zone == s.zone =>
                                {
                                    provider.update_server(key, s).await?
                                }
                                Some(ResourceSpec::Server(old)) => {
                                    providers
                                        .get(&old.provider)?
                                        .delete_server(&sub("delete"), old)
                                        .await?;
                                    provider.create_server(&sub("create"), s).await?
                                }
                                Some(_) => provider.create_server(key, s).await?,
                            };
                            (s.provider.clone(), observed, Vec::new())
                        }
                        ResourceSpec::Taskserv { spec: t, .. } => {
                            let provider = providers.get(&action.provider)?;
                            let observed = provider.install_taskserv(key, t).await?;
                            let edges = vec![Edge {
                                relation: "runs_on".into(),
                                to: plan::server_key(&t.server),
                            }];
                            (action.provider.clone(), observed, edges)
                        }
                        ResourceSpec::Cluster(c) => {
                            let edges = c
                                .servers
                                .iter()
                                .map(|s| Edge {
                                    relation: "member".into(),
                                    to: plan::server_key(s),
                                })
                                .collect();
                            let observed = Observed {
                                provider_id: format!("cluster:{}/{}", c.workspace, c.name),
                                attrs: BTreeMap::new(),
                            };
                            (action.provider.clone(), observed, edges)
                        }
                    };
                    Ok(Some(ResourceChange::Put(Box::new(Resource {
                        key: spec.key(),
                        workspace: ws,
                        kind: spec.kind(),
                        name: spec.name(),
                        provider: provider_name,
                        provider_id: observed.provider_id,
                        spec: serde_json::to_value(spec).unwrap_or_default(),
                        observed: observed.attrs,
                        edges,
                        updated_at: now,
                    }))))
                }
            }
        })
    }

    fn workspace(&self, action: &plan::Action) -> String {
        match action.after.as_ref().or(action.before.as_ref()) {
            Some(ResourceSpec::Server(s)) => s.workspace.clone(),
            Some(ResourceSpec::Taskserv { spec, .. }) => spec.workspace.clone(),
            Some(ResourceSpec::Cluster(c)) => c.workspace.clone(),
            None => String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Undo,
    Cleanup,
}

fn describe_event(kind: EventKind, step: &StepRecord) -> String {
    let what = format!("{} {}", step.action.as_str(), step.key);
    match kind {
        EventKind::StepStarted => format!("{what}: attempt {}", step.attempts),
        EventKind::StepRetrying => format!(
            "{what}: attempt {} failed, retrying: {}",
            step.attempts,
            step.error.as_deref().unwrap_or("")
        ),
        EventKind::StepSucceeded => format!("{what}: done"),
        EventKind::StepFailed => format!(
            "{what}: failed: {}",
            step.error.as_deref().unwrap_or("unknown error")
        ),
        EventKind::StepSkipped => format!("{what}: {}", step.error.as_deref().unwrap_or("skipped")),
        EventKind::StepCompensating => format!("{what}: rolling back"),
        EventKind::StepCompensated => format!("{what}: rolled back"),
        _ => what,
    }
}

/// The delay before retry number `failures` (1-based): linear or exponential from
/// `initial_delay_ms`, capped at `max_delay_ms`, with "equal jitter" (half fixed, half random)
/// so that many failing steps do not retry in lockstep.
pub fn backoff_delay(retry: &RetryPolicy, failures: u32, rng: &dyn Rng) -> Duration {
    let initial = retry.initial_delay_ms as f64;
    let raw = match retry.backoff {
        Backoff::Linear => initial * f64::from(failures),
        Backoff::Exponential => initial * 2f64.powi(failures.saturating_sub(1).min(30) as i32),
    };
    let capped = raw.min(retry.max_delay_ms as f64);
    let jittered = capped / 2.0 + rng.next_f64() * capped / 2.0;
    Duration::from_millis(jittered as u64)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn pid_alive(pid: u32) -> bool {
    crate::provider::local::procs::alive(pid)
}

#[cfg(test)]
mod tests;
