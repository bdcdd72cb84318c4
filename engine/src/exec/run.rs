//! Running a workflow: the workspace lock, the forward pass over the step DAG, cancellation, and
//! compensation in reverse dependency order.

use super::*;

impl Engine {
    /// Takes the lock. A lock this process took for the same workflow (between `start` and
    /// `run`), or one left by a dead process on this host, is taken over at once; a lock on
    /// another host is free once its lease runs out.
    pub(super) async fn acquire(&self, lock: &LockHolder) -> Result<(), ExecError> {
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
        let _running = self.mark_running(workflow_id);
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
        // A step waits for each dependency that has not succeeded yet.
        let waits: Vec<(usize, usize)> = todo
            .iter()
            .flat_map(|&i| steps[i].depends_on.iter().map(move |&d| (i, d)))
            .filter(|&(_, d)| !done(&steps[d]))
            .collect();
        let mut ready = ReadySet::new(todo.iter().copied(), waits);
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
                let Some(i) = ready.next(false) else { break };
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
                ready.done(i, |j| steps[j].status != StepStatus::Skipped);
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
                            for j in ready.waiting_for(k) {
                                if steps[j].status == StepStatus::Pending {
                                    ready.drop(j);
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
        let waits: Vec<(usize, usize)> = undo
            .iter()
            .flat_map(|&j| steps[j].depends_on.iter().map(move |&d| (d, j)))
            .filter(|(d, _)| undo.contains(d))
            .collect();
        let mut ready = ReadySet::new(undo.iter().copied(), waits);
        let mut running: JoinSet<(usize, StepRecord)> = JoinSet::new();
        ctx.stopping.store(false, Ordering::SeqCst);
        loop {
            while running.len() < limit {
                // Undo the latest steps first among those that are free to go.
                let Some(i) = ready.next(true) else { break };
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
                ready.done(i, |_| true);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct ForwardOutcome {
    failed: bool,
    cancelled: bool,
}

/// A workflow event in the log, with the workflow id the audit entries carry (the message is
/// already redacted where the event was made).
pub(crate) fn log_event(event: &Event) {
    let kind = serde_json::to_value(event.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    if event.kind == EventKind::StepOutput {
        // A host's output: kept in the workflow's log; the server's log has it at debug level.
        tracing::debug!(target: "engine::workflow", workflow = %event.workflow, seq = event.seq, step = ?event.step, event = %kind, "{}", event.message);
    } else if matches!(event.kind, EventKind::StepFailed | EventKind::StepRetrying) {
        tracing::warn!(target: "engine::workflow", workflow = %event.workflow, seq = event.seq, step = ?event.step, event = %kind, "{}", event.message);
    } else {
        tracing::info!(target: "engine::workflow", workflow = %event.workflow, seq = event.seq, step = ?event.step, event = %kind, "{}", event.message);
    }
}
