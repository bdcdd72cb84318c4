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
    AuditRecord, Checkpoint, Edge, Event, EventKind, LockHolder, Relation, Resource,
    ResourceChange, StateError, StateStore, StepRecord, StepStatus, WorkflowRecord, WorkflowStatus,
};

mod actions;
mod approvals;
mod drift;
mod error;
mod run;
mod schedule;
use schedule::ReadySet;
mod step;
pub use approvals::{Authorization, gated_message};
pub use drift::{DriftItem, DriftKind, DriftReport};
pub use error::ExecError;
pub(crate) use run::log_event;
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
    /// Workflows this process is running now (runs or rollbacks in progress, counted: a second
    /// attempt that finds the workflow locked must not unmark the first).
    running: Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
}

/// Marks a workflow as running in this process until dropped (see [`Engine::mark_running`]).
pub struct Running {
    set: Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
    id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = set.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                set.remove(&self.id);
            }
        }
    }
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
            running: Arc::new(std::sync::Mutex::new(BTreeMap::new())),
        }
    }

    /// Whether this process is running workflow `id` now. A workflow recorded as running that
    /// no live process runs was interrupted (a crash, `kill -9`) and can be resumed.
    pub fn is_running_here(&self, id: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }

    /// Whether another live process holds `wf`'s workspace lock for it (a CLI apply on the same
    /// state, another server of a team); `true` when the store cannot say.
    pub async fn runs_elsewhere(&self, wf: &WorkflowRecord) -> bool {
        match self.store.lock(&wf.workspace).await {
            Ok(Some(holder)) => {
                holder.workflow == wf.id
                    && holder.pid != std::process::id()
                    && (holder.host != hostname() || pid_alive(holder.pid))
            }
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Marks `id` as running here until the guard drops: [`Engine::run`] and
    /// [`Engine::rollback`] do it themselves; a caller that spawns a run marks it first, so
    /// the workflow never looks interrupted between the spawn and the run's start.
    pub fn mark_running(&self, id: &str) -> Running {
        *self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_default() += 1;
        Running {
            set: self.running.clone(),
            id: id.to_string(),
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

/// Whether `id` can name a record: ids the engine makes are `PREFIX-HEX`; anything empty, long
/// or with other characters names nothing (and never reaches a query).
pub fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests;
