//! `provisioning apply FILE|--plan ID`, `provisioning destroy FILE`, `provisioning resume WF`,
//! `provisioning rollback WF`: one code path over [`Operations`], answered in this process (the
//! engine runs the workflow here) or by a server (this installation's local server on its
//! socket, or `--server URL`: it runs the workflow and this follows its events). Either way the
//! config is validated on this side (its imports are read here), the plan is shown, policy is
//! asked before the person, and the run is followed to its end.

use std::process::ExitCode;

use service::model::{Decision, Plan, PolicyRef, RunOutcome, plan_action};
use service::{Caller, Checked, Events, Operations, PlanView, Start};

use super::engine_setup::{
    Progress, confirm_plan, load_checked, open_app, outcome_code, print_outcome, runtime,
};
use crate::Settings;
use crate::cli::{ApplyArgs, DestroyArgs, WorkflowArgs};

/// Where plans are made and run: this machine's state, or a running server.
pub(super) async fn operations(settings: &Settings) -> anyhow::Result<Box<dyn Operations>> {
    Ok(match &settings.remote {
        Some(r) => Box::new(r.clone()),
        None => Box::new(open_app(settings).await?),
    })
}

/// The config in `file`, checked here; `None` when it is invalid (its diagnostics are shown).
pub(super) fn checked(
    settings: &Settings,
    file: &std::path::Path,
) -> anyhow::Result<Option<Checked>> {
    Ok(load_checked(settings, file)?.map(|(config, value)| Checked { config, value }))
}

pub fn apply(settings: &Settings, args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.file {
        Some(file) => match checked(settings, file)? {
            Some(config) => Some(config),
            None => return Ok(ExitCode::from(1)),
        },
        None => None,
    };
    runtime()?.block_on(async {
        let ops = operations(settings).await?;
        let planned = match (&config, &args.plan) {
            (Some(config), _) => ops.plan(config, false).await?,
            (None, Some(id)) => ops.stored_plan(id).await?,
            (None, None) => anyhow::bail!("give a config file or --plan ID"),
        };
        let caller = settings.local_caller();
        run_plan(&*ops, &caller, &planned, args.yes, args.json, "Apply").await
    })
}

pub fn destroy(settings: &Settings, args: &DestroyArgs) -> anyhow::Result<ExitCode> {
    let Some(config) = checked(settings, &args.file)? else {
        return Ok(ExitCode::from(1));
    };
    runtime()?.block_on(async {
        let ops = operations(settings).await?;
        let planned = ops.plan(&config, true).await?;
        let caller = settings.local_caller();
        run_plan(&*ops, &caller, &planned, args.yes, args.json, "Destroy").await
    })
}

/// Show the plan, ask policy, then the person, then run it and follow it to the end.
async fn run_plan(
    ops: &dyn Operations,
    caller: &Caller,
    planned: &PlanView,
    yes: bool,
    json: bool,
    verb: &str,
) -> anyhow::Result<ExitCode> {
    let plan = &planned.plan;
    if !json {
        print!("{}", planned.rendered);
    }
    if plan.is_noop() {
        return no_changes(plan, json);
    }
    // Ask policy before asking the person: a gated or denied plan needs no confirmation.
    let preflight = ops.preflight(caller, &plan.id).await?;
    match &preflight.decision {
        Decision::Allow { .. } => {}
        Decision::Deny { reasons } => return denied(plan, &preflight.principal, reasons, json),
        Decision::NeedsApproval { .. } => {
            if let Some(request) = &preflight.request {
                return gated(plan, request, json);
            }
        }
    }
    if !confirm_plan(plan, verb, yes)? {
        return Ok(ExitCode::from(1));
    }
    let (workflow, steps) = match ops.start(caller, &plan.id).await? {
        Start::Started { workflow, steps } => (workflow, steps),
        // Nothing to change after all (someone else applied the same thing meanwhile).
        Start::NoChanges { .. } => return no_changes(plan, json),
        Start::NeedsApproval { request, .. } => return gated(plan, &request, json),
    };
    eprintln!(
        "Workflow {workflow} started ({steps} steps){}.",
        ops.location()
            .map(|at| format!(" in the server at {at}"))
            .unwrap_or_default()
    );
    let outcome = with_progress(steps, 0, |events| ops.finish(&workflow, events)).await?;
    print_outcome(&outcome, json)?;
    Ok(outcome_code(&outcome))
}

/// Prints a line to stderr for each of the workflow's events while `run` waits for its end.
async fn with_progress<'a, F>(
    steps: usize,
    done: usize,
    run: impl FnOnce(Events) -> F,
) -> service::Result<RunOutcome>
where
    F: std::future::Future<Output = service::Result<RunOutcome>> + 'a,
{
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        let mut progress = Progress::from(steps, done);
        while let Some(event) = received.recv().await {
            let (line, finished) = progress.line(&event);
            eprintln!("{line}");
            if finished {
                break;
            }
        }
    });
    // The sender goes with `run`: when it ends, the printer has every event it sent.
    let outcome = run(events).await;
    let _ = printer.await;
    outcome
}

fn no_changes(plan: &Plan, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let out = serde_json::json!({ "result": "no_changes", "plan": plan.id });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit code when a plan waits for approval.
pub const EXIT_NEEDS_APPROVAL: u8 = 3;

fn gated(plan: &Plan, request: &policies::ApprovalRequest, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let out =
            serde_json::json!({ "result": "needs_approval", "plan": plan.id, "request": request });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    eprintln!(
        "Waiting for approval: {}.",
        service::model::gated_message(plan, request)
    );
    Ok(ExitCode::from(EXIT_NEEDS_APPROVAL))
}

fn denied(
    plan: &Plan,
    principal: &str,
    reasons: &[PolicyRef],
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        let out = serde_json::json!({ "result": "denied", "plan": plan.id, "reasons": reasons });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    eprintln!(
        "Denied: {} may not {} plan {}. Nothing was changed.",
        principal,
        plan_action(plan).as_str(),
        plan.id
    );
    for r in reasons {
        eprintln!("  {}: {}", r.id, r.description);
    }
    Ok(ExitCode::from(crate::EXIT_REFUSED))
}

pub fn rollback(settings: &Settings, args: &WorkflowArgs) -> anyhow::Result<ExitCode> {
    continue_to_end(settings, args, true)
}

pub fn resume(settings: &Settings, args: &WorkflowArgs) -> anyhow::Result<ExitCode> {
    continue_to_end(settings, args, false)
}

fn continue_to_end(
    settings: &Settings,
    args: &WorkflowArgs,
    rollback: bool,
) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let ops = operations(settings).await?;
        let steps = ops.workflow(&args.workflow).await?.steps;
        // A resume counts on from the steps already done; a rollback counts what it undoes.
        let done = match rollback {
            true => 0,
            false => steps
                .iter()
                .filter(|s| s.status == service::model::StepStatus::Succeeded)
                .count(),
        };
        let caller = settings.local_caller();
        let outcome = with_progress(steps.len(), done, |events| {
            ops.continue_to_end(&caller, &args.workflow, rollback, events)
        })
        .await?;
        print_outcome(&outcome, args.json)?;
        Ok(outcome_code(&outcome))
    })
}
