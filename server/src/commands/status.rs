//! `provisioning status [WORKFLOW]` and `provisioning cancel WORKFLOW`.

use std::process::ExitCode;

use engine::exec::{Engine, ExecError};
use engine::state::{Event, StepRecord, StepStatus, WorkflowRecord};

use super::engine_setup::{open_engine, runtime};
use crate::Settings;
use crate::cli::{StatusArgs, WorkflowArgs};
use crate::remote::Remote;
use crate::table;

pub(crate) fn age(now: u64, at: u64) -> String {
    let s = now.saturating_sub(at) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// Where workflows are read: the local state store, or a running server.
enum Source {
    Local(Engine),
    Remote(Remote),
}

impl Source {
    fn now(&self) -> u64 {
        match self {
            Source::Local(engine) => engine.clock.now_ms(),
            Source::Remote(_) => engine::runtime::Clock::now_ms(&engine::runtime::SystemClock),
        }
    }

    async fn workflows(&self) -> Result<Vec<WorkflowRecord>, ExecError> {
        match self {
            Source::Local(engine) => Ok(engine.store.workflows(None).await?),
            Source::Remote(r) => {
                r.call(reqwest::Method::GET, "/workflows?limit=1000", None)
                    .await
            }
        }
    }

    async fn steps(&self, id: &str) -> Result<Vec<StepRecord>, ExecError> {
        Ok(self.detail(id).await?.1)
    }

    async fn detail(
        &self,
        id: &str,
    ) -> Result<(WorkflowRecord, Vec<StepRecord>, Vec<Event>), ExecError> {
        match self {
            Source::Local(engine) => {
                let (wf, steps) = engine.status(id).await?;
                let events = engine.store.events(&wf.id, 0).await?;
                Ok((wf, steps, events))
            }
            Source::Remote(r) => {
                #[derive(serde::Deserialize)]
                struct Detail {
                    workflow: WorkflowRecord,
                    steps: Vec<StepRecord>,
                    events: Vec<Event>,
                }
                let d: Detail = r
                    .call(reqwest::Method::GET, &format!("/workflows/{id}"), None)
                    .await?;
                Ok((d.workflow, d.steps, d.events))
            }
        }
    }
}

pub fn status(settings: &Settings, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let engine = match &settings.remote {
            Some(r) => Source::Remote(r.clone()),
            None => Source::Local(open_engine(settings).await?),
        };
        let now = engine.now();
        let Some(id) = &args.workflow else {
            let workflows = engine.workflows().await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&workflows)?);
                return Ok(ExitCode::SUCCESS);
            }
            if workflows.is_empty() {
                println!("No workflows yet. Start one with `provisioning apply FILE`.");
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = Vec::new();
            for wf in workflows.iter().take(20) {
                let steps = engine.steps(&wf.id).await?;
                let done = steps
                    .iter()
                    .filter(|s| s.status == StepStatus::Succeeded)
                    .count();
                rows.push(vec![
                    wf.id.clone(),
                    wf.workspace.clone(),
                    wf.status.as_str().to_string(),
                    format!("{done}/{}", steps.len()),
                    wf.plan_id.clone(),
                    age(now, wf.created_at),
                ]);
            }
            print!(
                "{}",
                table::render(
                    &["WORKFLOW", "WORKSPACE", "STATUS", "DONE", "PLAN", "STARTED"],
                    &rows
                )
            );
            return Ok(ExitCode::SUCCESS);
        };
        let (wf, steps, events) = engine.detail(id).await?;
        if args.json {
            let out = serde_json::json!({ "workflow": wf, "steps": steps, "events": events });
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "Workflow {} for workspace {}: {} (plan {}, requested by {}, started {})",
            wf.id,
            wf.workspace,
            wf.status.as_str(),
            wf.plan_id,
            wf.requested_by,
            age(now, wf.created_at)
        );
        if let Some(error) = &wf.error {
            println!("Error: {error}");
        }
        let rows: Vec<Vec<String>> = steps
            .iter()
            .map(|s| {
                vec![
                    s.index.to_string(),
                    s.action.as_str().to_string(),
                    s.key.clone(),
                    s.status.as_str().to_string(),
                    s.attempts.to_string(),
                    s.depends_on
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    s.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        println!();
        print!(
            "{}",
            table::render(
                &[
                    "#", "ACTION", "RESOURCE", "STATUS", "TRIES", "AFTER", "ERROR"
                ],
                &rows
            )
        );
        println!("\nLast events:");
        for e in events.iter().rev().take(10).rev() {
            println!("  {:>4}  {}", e.seq, e.message);
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn cancel(settings: &Settings, args: &WorkflowArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match &settings.remote {
            Some(r) => {
                r.call::<serde_json::Value>(
                    reqwest::Method::POST,
                    &format!("/workflows/{}/cancel", args.workflow),
                    None,
                )
                .await?;
            }
            None => {
                open_engine(settings)
                    .await?
                    .cancel(&args.workflow, &settings.local_caller())
                    .await?
            }
        }
        println!(
            "Cancel requested for {}: no new steps will start; running steps finish.",
            args.workflow
        );
        Ok(ExitCode::SUCCESS)
    })
}
