//! `plan`, `apply`, `destroy`, `resume` and `rollback` through a server: this installation's
//! local server when it runs (on its socket, where the kernel says who you are), or the one
//! `--server URL` names. The server holds the state and decides; this side validates the config
//! (its imports are read here), shows the plan, asks policy before asking you, and follows the
//! workflow's events to the end. A workflow keeps running in the server if this command stops.

use std::process::ExitCode;

use engine::exec::RunOutcome;
use engine::plan::Plan;
use engine::state::{Event, StepRecord, WorkflowRecord};
use policies::Decision;
use serde_json::{Value, json};

use super::apply::{denied, gated};
use super::engine_setup::{Progress, confirm_plan, outcome_code, print_outcome};
use crate::remote::Remote;

/// A stored plan and its rendered diff, as the server keeps it.
pub struct Planned {
    pub plan: Plan,
    pub rendered: String,
}

fn planned(mut v: Value) -> anyhow::Result<Planned> {
    let rendered = v
        .as_object_mut()
        .and_then(|o| o.remove("rendered"))
        .and_then(|r| r.as_str().map(str::to_string))
        .unwrap_or_default();
    let plan = serde_json::from_value(v).map_err(|e| {
        anyhow::anyhow!(
            "the server's plan is not what this CLI expects ({e}); are the versions the same?"
        )
    })?;
    Ok(Planned { plan, rendered })
}

/// Plans `config` (the exported value, written as Nickel) on the server, which validates it
/// again.
pub async fn plan(r: &Remote, config: &Value, destroy: bool) -> anyhow::Result<Planned> {
    let source = knowledge::to_nickel(config)
        .map_err(|e| anyhow::anyhow!("the config cannot be sent: {e}"))?;
    let body = json!({ "config": source, "destroy": destroy });
    planned(r.call(reqwest::Method::POST, "/plans", Some(body)).await?)
}

/// A plan the server stored earlier.
pub async fn load_plan(r: &Remote, id: &str) -> anyhow::Result<Planned> {
    planned(
        r.call(reqwest::Method::GET, &format!("/plans/{id}"), None)
            .await?,
    )
}

/// Show the plan, ask policy, then the person, then run it and follow it to the end.
pub async fn run_plan(
    r: &Remote,
    planned: &Planned,
    yes: bool,
    as_json: bool,
    verb: &str,
) -> anyhow::Result<ExitCode> {
    let plan = &planned.plan;
    if !as_json {
        print!("{}", planned.rendered);
    }
    if plan.is_noop() {
        if as_json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "result": "no_changes", "plan": plan.id }))?
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Ask policy before asking the person: a gated or denied plan needs no confirmation.
    let auth: Value = r
        .call(
            reqwest::Method::POST,
            &format!("/plans/{}/authorize", plan.id),
            None,
        )
        .await?;
    let decision: Decision = serde_json::from_value(auth["authorization"].clone())
        .map_err(|e| anyhow::anyhow!("the server's decision is not one this CLI knows ({e})"))?;
    let principal = auth["principal"].as_str().unwrap_or("you");
    match &decision {
        Decision::Allow { .. } => {}
        Decision::Deny { reasons } => return denied(plan, principal, reasons, as_json),
        Decision::NeedsApproval { .. } => {
            if let Ok(request) = serde_json::from_value(auth["request"].clone()) {
                return gated(plan, &request, as_json);
            }
        }
    }
    if !confirm_plan(plan, verb, yes)? {
        return Ok(ExitCode::from(1));
    }
    let started: Value = r
        .call(
            reqwest::Method::POST,
            &format!("/plans/{}/apply", plan.id),
            None,
        )
        .await?;
    let Some(workflow) = started["workflow"].as_str() else {
        // Nothing to change after all (someone else applied the same thing meanwhile).
        return Ok(ExitCode::SUCCESS);
    };
    follow(r, workflow, as_json, true).await
}

#[derive(serde::Deserialize)]
struct Detail {
    workflow: WorkflowRecord,
    steps: Vec<StepRecord>,
}

async fn detail(r: &Remote, id: &str) -> anyhow::Result<Detail> {
    Ok(
        r.call(reqwest::Method::GET, &format!("/workflows/{id}"), None)
            .await?,
    )
}

/// Prints the workflow's progress from its event stream until it finishes, then its outcome.
pub async fn follow(
    r: &Remote,
    workflow: &str,
    as_json: bool,
    announce: bool,
) -> anyhow::Result<ExitCode> {
    let before = detail(r, workflow).await?;
    if announce {
        eprintln!(
            "Workflow {workflow} started ({} steps) in the server at {}.",
            before.steps.len(),
            r.shown()
        );
    }
    // Checkpointed steps survive the server: say how to continue when it goes away.
    let gone = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "the server at {} stopped answering while workflow {workflow} ran ({e}); once it runs again, `provisioning resume {workflow}` continues from the last checkpoint",
            r.shown()
        )
    };
    let mut progress = Progress::new(before.steps.len());
    let mut stream = r.stream(&format!("/workflows/{workflow}/events")).await?;
    let mut buffer = String::new();
    'events: while let Some(chunk) = stream.chunk().await.map_err(|e| gone(&e))? {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let data: String = message
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            let Ok(event) = serde_json::from_str::<Event>(&data) else {
                continue;
            };
            // The server redacts what it streams.
            let (line, finished) = progress.line(&event);
            eprintln!("{line}");
            if finished {
                break 'events;
            }
        }
    }
    let after = detail(r, workflow).await.map_err(|e| gone(&e))?;
    let outcome = RunOutcome::of(&after.workflow, &after.steps);
    print_outcome(&outcome, as_json)?;
    Ok(outcome_code(&outcome))
}

/// `resume` or `rollback` on the server, followed to the end.
pub async fn workflow_action(
    r: &Remote,
    workflow: &str,
    action: &str,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let answer: Value = r
        .call(
            reqwest::Method::POST,
            &format!("/workflows/{workflow}/{action}"),
            None,
        )
        .await?;
    // Finished within the request: the outcome itself.
    if let Ok(outcome) = serde_json::from_value::<RunOutcome>(answer.clone()) {
        print_outcome(&outcome, as_json)?;
        return Ok(outcome_code(&outcome));
    }
    follow(r, workflow, as_json, false).await
}
