//! `provisioning status [WORKFLOW]` and `provisioning cancel WORKFLOW`.

use std::process::ExitCode;

use service::Operations;
use service::model::StepStatus;

use super::engine_setup::{open_app, runtime};
use crate::Settings;
use crate::cli::{StatusArgs, WorkflowArgs};
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

/// Where workflows are read: this machine's state, or a running server; one code path.
async fn source(settings: &Settings) -> anyhow::Result<Box<dyn Operations>> {
    Ok(match &settings.remote {
        Some(r) => Box::new(r.clone()),
        None => Box::new(open_app(settings).await?),
    })
}

pub fn status(settings: &Settings, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let ops = source(settings).await?;
        let now = ops.now_ms();
        let Some(id) = &args.workflow else {
            let workflows = ops.workflows(1000).await?;
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
                let steps = ops.workflow(&wf.id).await?.steps;
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
        let service::WorkflowView {
            workflow: wf,
            steps,
            events,
        } = ops.workflow(id).await?;
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
        source(settings)
            .await?
            .cancel(&settings.local_caller(), &args.workflow)
            .await?;
        println!(
            "Cancel requested for {}: no new steps will start; running steps finish.",
            args.workflow
        );
        Ok(ExitCode::SUCCESS)
    })
}
