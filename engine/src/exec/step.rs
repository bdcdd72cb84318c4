//! One step of a workflow: running or compensating it with retries, backoff and a timeout,
//! the provider call it stands for, and the checkpoints around it.

use super::*;
use crate::provider::{TaskservSpec, output};

/// Output lines per `step_output` event at most.
const OUTPUT_BATCH: usize = 25;
/// How long a partial batch of output waits for more lines.
const OUTPUT_FLUSH: Duration = Duration::from_millis(500);
/// Output lines recorded per provider call at most; the rest is counted.
const OUTPUT_MAX_LINES: usize = 2000;

/// The steps of a plan: one per action that changes something, with dependencies renumbered.
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

pub(super) struct StepContext {
    pub(super) engine: Engine,
    pub(super) workflow: String,
    pub(super) seq: AtomicU64,
    pub(super) retry: RetryPolicy,
    /// The plan's changing actions: `actions[step.index]` is the step's action.
    pub(super) actions: Vec<plan::Action>,
    pub(super) stopping: AtomicBool,
    pub(super) on_failure: OnFailure,
    /// Orders "a step starts" against "a step fails for good": a step whose start event comes
    /// after a stopping failure does not start at all.
    pub(super) gate: std::sync::Mutex<()>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl StepContext {
    /// An event of this workflow. Its message often quotes a provider, so every secret the
    /// engine knows is redacted here, once, before the event is stored, streamed or logged.
    pub(super) fn event(&self, kind: EventKind, step: Option<usize>, message: String) -> Event {
        let message = self.engine.redactor.redact(&message).into_owned();
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

    pub(super) async fn checkpoint(
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
        super::log_event(&event);
        let _ = self.engine.events.send(event);
        Ok(())
    }

    /// Runs one step to success or final failure. Never panics; store errors end the step as
    /// failed with the error recorded where possible.
    pub(super) async fn run_step(self: Arc<Self>, mut step: StepRecord) -> StepRecord {
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
                self.with_output(step.index, self.perform(&action, &key, Direction::Forward)),
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

    pub(super) async fn compensate_step(self: Arc<Self>, mut step: StepRecord) -> StepRecord {
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
                self.with_output(step.index, self.perform(&action, &key, direction)),
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

    /// Runs `call` (a provider call of step `step`) with what its programs print recorded as
    /// `step_output` events: lines batched ([`OUTPUT_BATCH`] lines or [`OUTPUT_FLUSH`], whichever
    /// comes first), at most [`OUTPUT_MAX_LINES`] per call, every batch redacted like any event.
    /// The last batch is written before this returns, so output comes before the step's result.
    async fn with_output<T>(&self, step: usize, call: impl Future<Output = T>) -> T {
        let (capturing, mut captured) = output::channel();
        let record = async {
            let mut batch: Vec<String> = Vec::new();
            let mut recorded = 0usize;
            let mut over = 0u64;
            loop {
                let next = if batch.is_empty() {
                    captured.lines.recv().await
                } else {
                    match tokio::time::timeout(OUTPUT_FLUSH, captured.lines.recv()).await {
                        Ok(next) => next,
                        Err(_) => {
                            self.output_event(step, std::mem::take(&mut batch)).await;
                            continue;
                        }
                    }
                };
                let Some(line) = next else { break };
                if recorded >= OUTPUT_MAX_LINES {
                    over += 1;
                    continue;
                }
                recorded += 1;
                batch.push(match line.stream {
                    output::Stream::Stdout => line.text,
                    output::Stream::Stderr => format!("stderr: {}", line.text),
                });
                if batch.len() >= OUTPUT_BATCH {
                    self.output_event(step, std::mem::take(&mut batch)).await;
                }
            }
            let lost = over + captured.dropped();
            if lost > 0 {
                batch.push(format!(
                    "... {lost} more lines not recorded here (the provider's own log has them)"
                ));
            }
            if !batch.is_empty() {
                self.output_event(step, batch).await;
            }
        };
        let (result, ()) = tokio::join!(capturing.scope(call), record);
        result
    }

    /// Records and sends one batch of output lines. Output is a record of what happened, not
    /// part of the step's outcome: a store error here is logged and the step goes on.
    async fn output_event(&self, step: usize, lines: Vec<String>) {
        let event = self.event(EventKind::StepOutput, Some(step), lines.join("\n"));
        if let Err(e) = self.engine.store.append_event(&event).await {
            tracing::warn!(workflow = %self.workflow, step, "cannot record step output: {e}");
            return;
        }
        super::log_event(&event);
        let _ = self.engine.events.send(event);
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
                            let resolved = self.with_facts(t).await?;
                            let observed = provider.install_taskserv(key, &resolved).await?;
                            let edges = vec![Edge {
                                relation: Relation::RunsOn,
                                to: plan::server_key(&t.server),
                            }];
                            (action.provider.clone(), observed, edges)
                        }
                        ResourceSpec::Cluster(c) => {
                            let edges = c
                                .servers
                                .iter()
                                .map(|s| Edge {
                                    relation: Relation::Member,
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

    /// `t` with the facts its config names (`{{SERVER/TASKSERV.KEY}}`, see [`crate::facts`])
    /// read from the recorded state of those taskservs. State keeps `t` as written.
    async fn with_facts(&self, t: &TaskservSpec) -> Result<TaskservSpec, ProviderError> {
        use crate::facts::{FactRef, config_references, fact_text, substitute};
        let refs = config_references(&t.config).map_err(ProviderError::Permanent)?;
        if refs.is_empty() {
            return Ok(t.clone());
        }
        type Facts = (String, BTreeMap<String, serde_json::Value>);
        let mut known: BTreeMap<String, Option<Facts>> = BTreeMap::new();
        for (_, r) in &refs {
            let key = plan::taskserv_key(&r.server, &r.taskserv);
            if known.contains_key(&key) {
                continue;
            }
            let found = self
                .engine
                .store
                .resource(&t.workspace, &key)
                .await
                .map_err(|e| {
                    ProviderError::Transient(format!("cannot read the facts of `{key}`: {e}"))
                })?;
            known.insert(key, found.map(|r| (r.provider, r.observed)));
        }
        let me = format!("{}/{}", t.server, t.name);
        let lookup = |r: &FactRef| -> Result<String, String> {
            let target = format!("{}/{}", r.server, r.taskserv);
            match known.get(&plan::taskserv_key(&r.server, &r.taskserv)) {
                Some(Some((provider, facts))) => {
                    let Some(value) = facts.get(&r.key) else {
                        let have: Vec<&str> = facts.keys().map(String::as_str).collect();
                        return Err(format!(
                            "the config of taskserv `{me}` uses {r}, but `{target}` reported no \
                             `{}` (it reported: {})",
                            r.key,
                            if have.is_empty() {
                                "nothing".to_string()
                            } else {
                                have.join(", ")
                            }
                        ));
                    };
                    // A generated credential: state holds its name, the provider the value.
                    match crate::provider::secret_fact_name(value) {
                        Some(name) => self
                            .engine
                            .providers
                            .get(provider)
                            .and_then(|p| p.read_secret(name))
                            .map(|secret| secret.expose().to_string())
                            .map_err(|e| {
                                format!("the config of taskserv `{me}` uses {r}, a secret: {e}")
                            }),
                        None => Ok(fact_text(value)),
                    }
                }
                _ => Err(format!(
                    "the config of taskserv `{me}` uses {r}, but `{target}` is not installed \
                     in workspace `{}`",
                    t.workspace
                )),
            }
        };
        let config = substitute(&t.config, &lookup).map_err(ProviderError::Permanent)?;
        Ok(TaskservSpec {
            config,
            ..t.clone()
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
pub(super) enum Direction {
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

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

pub(super) fn pid_alive(pid: u32) -> bool {
    crate::provider::local::procs::alive(pid)
}
