//! `provisioning apply FILE|--plan ID`, `provisioning destroy FILE`, `provisioning resume WF`,
//! `provisioning rollback WF`: in this process, or through the server (see `through_server`).

use std::process::ExitCode;

use engine::authz::{Caller, Decision};
use engine::exec::{ApplyResult, Engine, ExecError, gated_message};
use engine::plan::Plan;

use super::engine_setup::{
    confirm_plan, load_checked, open_engine, outcome_code, print_outcome, runtime, spawn_progress,
};
use super::through_server;
use crate::Settings;
use crate::cli::{ApplyArgs, DestroyArgs, WorkflowArgs};

pub fn apply(settings: &Settings, args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.file {
        Some(file) => match load_checked(settings, file)? {
            Some(config) => Some(config),
            None => return Ok(ExitCode::from(1)),
        },
        None => None,
    };
    if let Some(r) = &settings.remote {
        return runtime()?.block_on(async {
            let planned = match (&config, &args.plan) {
                (Some((_, value)), _) => through_server::plan(r, value, false).await?,
                (None, Some(id)) => through_server::load_plan(r, id).await?,
                (None, None) => anyhow::bail!("give a config file or --plan ID"),
            };
            through_server::run_plan(r, &planned, args.yes, args.json, "Apply").await
        });
    }
    let config = config.map(|(config, _)| config);
    runtime()?.block_on(async {
        let engine = open_engine(settings).await?;
        let plan = match (&config, &args.plan) {
            (Some(config), _) => engine.plan(config).await?,
            (None, Some(id)) => engine.load_plan(id).await?,
            (None, None) => anyhow::bail!("give a config file or --plan ID"),
        };
        run_plan(
            &engine,
            &settings.local_caller(),
            &plan,
            args.yes,
            args.json,
            "Apply",
        )
        .await
    })
}

pub fn destroy(settings: &Settings, args: &DestroyArgs) -> anyhow::Result<ExitCode> {
    let Some((config, value)) = load_checked(settings, &args.file)? else {
        return Ok(ExitCode::from(1));
    };
    if let Some(r) = &settings.remote {
        return runtime()?.block_on(async {
            let planned = through_server::plan(r, &value, true).await?;
            through_server::run_plan(r, &planned, args.yes, args.json, "Destroy").await
        });
    }
    runtime()?.block_on(async {
        let engine = open_engine(settings).await?;
        let plan = engine.plan_destroy(&config).await?;
        run_plan(
            &engine,
            &settings.local_caller(),
            &plan,
            args.yes,
            args.json,
            "Destroy",
        )
        .await
    })
}

async fn run_plan(
    engine: &Engine,
    caller: &Caller,
    plan: &Plan,
    yes: bool,
    json: bool,
    verb: &str,
) -> anyhow::Result<ExitCode> {
    if !json {
        print!("{}", plan.render());
    }
    if plan.is_noop() {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&ApplyResult::NoChanges {
                    plan: plan.id.clone()
                })?
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Ask policy before asking the person: a gated or denied plan needs no confirmation.
    let auth = engine.preflight(plan, caller).await?;
    match &auth.decision {
        Decision::Allow { .. } => {}
        Decision::Deny { reasons } => {
            return denied(plan, &caller.principal, reasons, json);
        }
        Decision::NeedsApproval { .. } => {
            if let Some(request) = &auth.request {
                return gated(plan, request, json);
            }
        }
    }
    if !confirm_plan(plan, verb, yes)? {
        return Ok(ExitCode::from(1));
    }
    let started = match engine.start(&plan.id, caller).await {
        Ok(ApplyResult::Ran(started)) => started,
        Ok(ApplyResult::NoChanges { .. }) => return Ok(ExitCode::SUCCESS),
        Err(ExecError::NeedsApproval { request, .. }) => return gated(plan, &request, json),
        Err(err) => return Err(err.into()),
    };
    eprintln!(
        "Workflow {} started ({} steps).",
        started.workflow, started.not_started
    );
    let progress = spawn_progress(engine, started.not_started);
    let outcome = engine.run(&started.workflow).await?;
    let _ = progress.await;
    print_outcome(&outcome, json)?;
    Ok(outcome_code(&outcome))
}

/// Exit code when a plan waits for approval.
pub const EXIT_NEEDS_APPROVAL: u8 = 3;
/// Exit code when policy denies a plan.
pub const EXIT_DENIED: u8 = 4;

pub(super) fn gated(
    plan: &Plan,
    request: &policies::ApprovalRequest,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        let out =
            serde_json::json!({ "result": "needs_approval", "plan": plan.id, "request": request });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    eprintln!("Waiting for approval: {}.", gated_message(plan, request));
    Ok(ExitCode::from(EXIT_NEEDS_APPROVAL))
}

pub(super) fn denied(
    plan: &Plan,
    principal: &str,
    reasons: &[policies::PolicyRef],
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        let out = serde_json::json!({ "result": "denied", "plan": plan.id, "reasons": reasons });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    eprintln!(
        "Denied: {} may not {} plan {}. Nothing was changed.",
        principal,
        engine::authz::plan_action(plan).as_str(),
        plan.id
    );
    for r in reasons {
        eprintln!("  {}: {}", r.id, r.description);
    }
    Ok(ExitCode::from(EXIT_DENIED))
}

pub fn rollback(settings: &Settings, args: &WorkflowArgs) -> anyhow::Result<ExitCode> {
    if let Some(r) = &settings.remote {
        return runtime()?.block_on(through_server::workflow_action(
            r,
            &args.workflow,
            "rollback",
            args.json,
        ));
    }
    runtime()?.block_on(async {
        let engine = open_engine(settings).await?;
        let (_, steps) = engine.status(&args.workflow).await?;
        let progress = spawn_progress(&engine, steps.len());
        let outcome = engine
            .rollback(&args.workflow, &settings.local_caller())
            .await;
        let outcome = match outcome {
            Ok(o) => {
                let _ = progress.await;
                o
            }
            Err(e) => {
                progress.abort();
                return Err(e.into());
            }
        };
        print_outcome(&outcome, args.json)?;
        Ok(outcome_code(&outcome))
    })
}

pub fn resume(settings: &Settings, args: &WorkflowArgs) -> anyhow::Result<ExitCode> {
    if let Some(r) = &settings.remote {
        return runtime()?.block_on(through_server::workflow_action(
            r,
            &args.workflow,
            "resume",
            args.json,
        ));
    }
    runtime()?.block_on(async {
        let engine = open_engine(settings).await?;
        let wf = engine
            .authorize_resume(&args.workflow, &settings.local_caller())
            .await?;
        let (_, steps) = engine.status(&wf.id).await?;
        let progress = spawn_progress(&engine, steps.len());
        let outcome = engine.run(&wf.id).await?;
        let _ = progress.await;
        print_outcome(&outcome, args.json)?;
        Ok(outcome_code(&outcome))
    })
}
