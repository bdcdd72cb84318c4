//! Workflows: one with its steps and latest events, a page of them, its whole log, and the
//! changes to one (cancel, resume, roll back), which a `--read-only` server refuses here, once,
//! for every adapter.

use engine::exec::RunOutcome;
use engine::state::{Event, StepRecord, WorkflowRecord};
use serde::Serialize;

use crate::{App, Caller, Error, Result};

/// How many of a workflow's latest events its view carries.
pub const RECENT_EVENTS: usize = 50;
/// How many of those may be `step_output` batches (the latest): a host's output would
/// otherwise push the steps' own events out of the view. The whole log has every batch.
pub const RECENT_OUTPUT_EVENTS: usize = 2;

/// A workflow with its steps and its latest [`RECENT_EVENTS`] events (at most
/// [`RECENT_OUTPUT_EVENTS`] of them output), oldest first.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WorkflowView {
    pub workflow: WorkflowRecord,
    pub steps: Vec<StepRecord>,
    pub events: Vec<Event>,
}

/// A workflow with every event it recorded.
#[derive(Debug, Clone)]
pub struct WorkflowLog {
    pub workflow: WorkflowRecord,
    pub events: Vec<Event>,
}

/// The newest workflows and how many there are in all.
#[derive(Debug, Clone)]
pub struct WorkflowPage {
    pub workflows: Vec<WorkflowRecord>,
    pub total: usize,
}

/// A workflow to follow: its record, the events recorded so far, and the live events from the
/// moment before those were read (so none falls between; the same event may come twice, by
/// its `seq`).
pub struct Following {
    pub workflow: WorkflowRecord,
    pub recorded: Vec<Event>,
    pub live: tokio::sync::broadcast::Receiver<Event>,
}

/// Where a resume or rollback stands when its caller stops waiting.
#[derive(Debug)]
pub enum Continued {
    /// It finished within the wait.
    Finished(RunOutcome),
    /// It runs on in the background.
    Running { workflow: String },
}

/// The view's events: the latest [`RECENT_OUTPUT_EVENTS`] output batches and the latest other
/// events, [`RECENT_EVENTS`] in all, in order.
fn recent(all: Vec<Event>) -> Vec<Event> {
    let is_output = |e: &Event| e.kind == engine::state::EventKind::StepOutput;
    let outputs = all.iter().filter(|e| is_output(e)).count();
    let mut skip_outputs = outputs.saturating_sub(RECENT_OUTPUT_EVENTS);
    let mut kept: Vec<Event> = all
        .into_iter()
        .filter(|e| {
            if is_output(e) && skip_outputs > 0 {
                skip_outputs -= 1;
                return false;
            }
            true
        })
        .collect();
    let skip = kept.len().saturating_sub(RECENT_EVENTS);
    kept.drain(..skip);
    kept
}

impl App {
    /// Refuses a change on a `--read-only` server.
    pub fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::read_only());
        }
        Ok(())
    }

    pub async fn workflow(&self, id: &str) -> Result<WorkflowView> {
        let (workflow, steps) = self.engine.status(id).await?;
        let events = recent(self.engine.store.events(&workflow.id, 0).await?);
        Ok(WorkflowView {
            workflow,
            steps,
            events,
        })
    }

    pub async fn workflow_log(&self, id: &str) -> Result<WorkflowLog> {
        let workflow = self.engine.workflow(id).await?;
        let events = self.engine.store.events(&workflow.id, 0).await?;
        Ok(WorkflowLog { workflow, events })
    }

    /// Newest first, `limit` at most, only `workspace`'s when given.
    pub async fn workflows(
        &self,
        workspace: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WorkflowRecord>> {
        Ok(self.engine.store.recent_workflows(workspace, limit).await?)
    }

    pub async fn follow(&self, id: &str) -> Result<Following> {
        let workflow = self.engine.workflow(id).await?;
        let live = self.engine.subscribe();
        let recorded = self.engine.store.events(&workflow.id, 0).await?;
        Ok(Following {
            workflow,
            recorded,
            live,
        })
    }

    /// The newest `limit` workflows (of `workspace` when given) and the count of all of them.
    pub async fn workflow_page(
        &self,
        workspace: Option<&str>,
        limit: usize,
    ) -> Result<WorkflowPage> {
        let mut workflows = self.engine.store.workflows(workspace).await?;
        let total = workflows.len();
        workflows.truncate(limit);
        Ok(WorkflowPage { workflows, total })
    }

    /// Asks a running workflow to stop (policy decides who may).
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<()> {
        self.writable()?;
        Ok(self.engine.cancel(id, caller).await?)
    }

    /// Checks that `caller` may resume workflow `id` (policy, an unchanged workspace, a workflow
    /// that is not finished) and returns it with its step count; [`App::run`] continues it.
    pub async fn resume(&self, caller: &Caller, id: &str) -> Result<(WorkflowRecord, usize)> {
        self.writable()?;
        let workflow = self.engine.authorize_resume(id, caller).await?;
        let steps = self.engine.store.steps(&workflow.id).await?.len();
        Ok((workflow, steps))
    }

    /// Rolls workflow `id` back as `caller` (policy is asked again) and waits for the end.
    pub async fn rollback(&self, caller: &Caller, id: &str) -> Result<RunOutcome> {
        self.writable()?;
        Ok(self.engine.rollback(id, caller).await?)
    }

    /// Every workflow event from now on, as it happens.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.engine.subscribe()
    }

    /// Continues an interrupted, failed or cancelled workflow (`rollback` false), or rolls it
    /// back, as `caller`. Refusals (policy, a changed workspace, a finished workflow) come back
    /// as errors; a run that starts goes on in the background and is reported finished when it
    /// ends within `wait`.
    pub async fn continue_workflow(
        &self,
        caller: &Caller,
        id: &str,
        rollback: bool,
        wait: std::time::Duration,
    ) -> Result<Continued> {
        self.writable()?;
        let wf = match rollback {
            // The engine says why a rollback cannot happen (a succeeded workflow is undone
            // with a destroy plan, a rolled back one is done).
            true => self.engine.workflow(id).await?,
            false => self.engine.authorize_resume(id, caller).await?,
        };
        let engine = self.engine.clone();
        let workflow = wf.id.clone();
        let caller = caller.clone();
        let running = self.engine.mark_running(&wf.id);
        in_background(wf.id, wait, async move {
            let _running = running;
            match rollback {
                true => engine.rollback(&workflow, &caller).await,
                false => engine.run(&workflow).await,
            }
        })
        .await
    }

    /// Runs a started workflow (see [`App::start`]) on a task of its own and waits at most
    /// `wait` for its end. The run does not depend on the caller: a client that gives up, or
    /// a request that is cancelled, leaves it running to the end.
    pub async fn run_within(&self, workflow: &str, wait: std::time::Duration) -> Result<Continued> {
        let engine = self.engine.clone();
        let id = workflow.to_string();
        let running = self.engine.mark_running(workflow);
        in_background(workflow.to_string(), wait, async move {
            let _running = running;
            engine.run(&id).await
        })
        .await
    }
}

async fn in_background(
    workflow: String,
    wait: std::time::Duration,
    run: impl std::future::Future<Output = std::result::Result<RunOutcome, engine::exec::ExecError>>
    + Send
    + 'static,
) -> Result<Continued> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(run.await);
    });
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Ok(Ok(outcome))) => Ok(Continued::Finished(outcome)),
        _ => Ok(Continued::Running { workflow }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::state::EventKind;

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            workflow: "wf-1".into(),
            seq,
            at: seq,
            kind,
            step: Some(0),
            message: String::new(),
        }
    }

    #[test]
    fn host_output_does_not_push_the_steps_out_of_the_view() {
        let mut all = vec![
            event(1, EventKind::WorkflowStarted),
            event(2, EventKind::StepStarted),
        ];
        all.extend((3..200).map(|seq| event(seq, EventKind::StepOutput)));
        all.push(event(200, EventKind::StepSucceeded));
        let kept = recent(all);
        let seqs: Vec<u64> = kept.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 198, 199, 200]);

        let many: Vec<Event> = (1..=80).map(|s| event(s, EventKind::StepStarted)).collect();
        let kept = recent(many);
        assert_eq!(kept.len(), RECENT_EVENTS);
        assert_eq!(kept.first().map(|e| e.seq), Some(31));
    }
}
