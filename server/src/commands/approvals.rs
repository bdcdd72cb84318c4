//! `provisioning approvals [list|show ID|approve ID|reject ID --comment TEXT]`.

use std::process::ExitCode;

use engine::exec::{Engine, ExecError};
use policies::{ApprovalRequest, ApprovalStatus};

use super::engine_setup::{open_engine, runtime};
use super::status::age;
use crate::Settings;
use crate::cli::{ApprovalsArgs, ApprovalsWhat};
use crate::table;

/// Exit code when the approval could not be given or taken back (used, expired, rejected,
/// not allowed).
const EXIT_REFUSED: u8 = 4;

pub fn run(settings: &Settings, args: &ApprovalsArgs) -> anyhow::Result<ExitCode> {
    let what = args.what.clone().unwrap_or(ApprovalsWhat::List);
    runtime()?.block_on(async {
        let engine = open_engine(settings).await?;
        match what {
            ApprovalsWhat::List => list(&engine, args.status.clone(), args.all, args.json).await,
            ApprovalsWhat::Show { id } => show(&engine, &id, args.json).await,
            ApprovalsWhat::Approve { id, comment } => {
                let caller = settings.local_caller();
                let result = engine
                    .approve(&id, &caller, comment.as_deref().unwrap_or(""))
                    .await;
                verdict(&engine, result, args.json, true)
            }
            ApprovalsWhat::Reject { id, comment } => {
                let caller = settings.local_caller();
                let result = engine.reject(&id, &caller, &comment).await;
                verdict(&engine, result, args.json, false)
            }
        }
    })
}

fn until(now: u64, at: u64) -> String {
    if at <= now {
        return "expired".into();
    }
    let s = (at - now) / 1000;
    match s {
        0..=59 => format!("in {s}s"),
        60..=3599 => format!("in {}m", s / 60),
        3600..=86_399 => format!("in {}h", s / 3600),
        _ => format!("in {}d", s / 86_400),
    }
}

async fn list(
    engine: &Engine,
    status: Option<String>,
    all: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let filter = match (status.as_deref(), all) {
        (Some(text), _) => Some(ApprovalStatus::parse(text).ok_or_else(|| {
            anyhow::anyhow!(
                "--status `{text}`: expected pending, approved, rejected, used or expired"
            )
        })?),
        (None, true) => None,
        (None, false) => Some(ApprovalStatus::Pending),
    };
    let now = engine.clock.now_ms();
    let mut requests = engine.approvals(filter).await?;
    if filter == Some(ApprovalStatus::Pending) {
        // "Waiting" means waiting for people: approved ones wait only for the apply.
        requests.extend(engine.approvals(Some(ApprovalStatus::Approved)).await?);
        requests.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    }
    if json {
        let out: Vec<_> = requests
            .iter()
            .map(|r| serde_json::json!({ "request": r, "status": r.status_at(now).as_str() }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if requests.is_empty() {
        println!(
            "No {}approval requests.{}",
            if filter.is_some() { "open " } else { "" },
            if all {
                ""
            } else {
                " (--all lists every request)"
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.status_at(now).as_str().into(),
                format!("{}/{}", r.approvals.len(), r.required),
                r.action.as_str().into(),
                format!("{} ({})", r.workspace, r.environment),
                r.requester.clone(),
                r.plan_id.clone(),
                age(now, r.created_at),
                until(now, r.expires_at),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "REQUEST",
                "STATUS",
                "APPROVALS",
                "ACTION",
                "WORKSPACE",
                "REQUESTER",
                "PLAN",
                "ASKED",
                "EXPIRES"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

async fn show(engine: &Engine, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let request = engine.approval(id).await?;
    let now = engine.clock.now_ms();
    let plan = engine.store.plan(&request.plan_id).await?;
    let current = engine.store.state_version(&request.workspace).await?;
    let stale = plan.as_ref().is_some_and(|p| p.state_version != current);
    if json {
        let out = serde_json::json!({
            "request": request,
            "status": request.status_at(now).as_str(),
            "plan": plan,
            "plan_is_stale": stale,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Approval request {}: {} ({} of {} approval(s))",
        request.id,
        request.status_at(now).as_str(),
        request.approvals.len(),
        request.required
    );
    println!(
        "  {} of plan {} to workspace {} ({}), asked by {} via {} {}, expires {}",
        request.action.as_str(),
        request.plan_id,
        request.workspace,
        request.environment,
        request.requested_by,
        request.channel,
        age(now, request.created_at),
        until(now, request.expires_at)
    );
    println!("  Plan hash: {}", request.plan_hash);
    println!("  Gated by:");
    for gate in &request.gates {
        println!("    {}: {}", gate.id, gate.description);
    }
    for v in &request.approvals {
        println!(
            "  Approved by {} {}{}",
            v.by,
            age(now, v.at),
            comment_suffix(&v.comment)
        );
    }
    if let Some(v) = &request.rejection {
        println!(
            "  Rejected by {} {}{}",
            v.by,
            age(now, v.at),
            comment_suffix(&v.comment)
        );
    }
    if let Some(wf) = &request.used_by {
        println!("  Used by workflow {wf}");
    }
    if stale {
        println!(
            "  Note: state changed since this plan was made; applying it will be refused as stale."
        );
    }
    match plan {
        Some(plan) => {
            println!();
            print!("{}", plan.render());
        }
        None => println!("  (the plan itself is no longer stored)"),
    }
    Ok(ExitCode::SUCCESS)
}

fn comment_suffix(comment: &str) -> String {
    if comment.is_empty() {
        String::new()
    } else {
        format!(": \"{comment}\"")
    }
}

fn verdict(
    engine: &Engine,
    result: Result<ApprovalRequest, ExecError>,
    json: bool,
    approve: bool,
) -> anyhow::Result<ExitCode> {
    let request = match result {
        Ok(request) => request,
        Err(
            err @ (ExecError::NotAllowed(_)
            | ExecError::Approval(_)
            | ExecError::PlanNotFound { .. }),
        ) => {
            eprintln!("error: {err}");
            eprintln!("Nothing was recorded.");
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
        Err(err) => return Err(err.into()),
    };
    let now = engine.clock.now_ms();
    if json {
        let out =
            serde_json::json!({ "request": request, "status": request.status_at(now).as_str() });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !approve {
        println!(
            "Rejected request {}; the requester sees your comment. Applying plan {} is refused from now on.",
            request.id, request.plan_id
        );
        return Ok(ExitCode::SUCCESS);
    }
    let have = request.approvals.len();
    if request.status_at(now) == ApprovalStatus::Approved {
        println!(
            "Approved request {} ({have} of {}). Plan {} can now be applied once: `provisioning apply --plan {}`.",
            request.id, request.required, request.plan_id, request.plan_id
        );
    } else {
        println!(
            "Approved request {} ({have} of {}); it still needs {} more approval(s) from other people.",
            request.id,
            request.required,
            request.required as usize - have.min(request.required as usize)
        );
    }
    Ok(ExitCode::SUCCESS)
}
