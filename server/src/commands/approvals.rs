//! `provisioning approvals [list|show ID|approve ID|reject ID --comment TEXT]`.

use std::process::ExitCode;

use policies::{ApprovalRequest, ApprovalStatus};
use service::{ErrorKind, Operations};

use super::engine_setup::{open_app, runtime};
use super::status::age;
use crate::Settings;
use crate::cli::{ApprovalsArgs, ApprovalsWhat};
use crate::table;

pub fn run(settings: &Settings, args: &ApprovalsArgs) -> anyhow::Result<ExitCode> {
    let what = args.what.clone().unwrap_or(ApprovalsWhat::List);
    runtime()?.block_on(async {
        let source: Box<dyn Operations> = match &settings.remote {
            Some(r) => Box::new(r.clone()),
            None => Box::new(open_app(settings).await?),
        };
        let source = source.as_ref();
        let caller = settings.local_caller();
        match what {
            ApprovalsWhat::List => list(source, args.status.clone(), args.all, args.json).await,
            ApprovalsWhat::Show { id } => show(source, &id, args.json).await,
            ApprovalsWhat::Approve { id, comment } => {
                let result = source
                    .decide(&caller, &id, true, comment.as_deref().unwrap_or(""))
                    .await;
                verdict(source, result, args.json, true)
            }
            ApprovalsWhat::Reject { id, comment } => {
                let result = source.decide(&caller, &id, false, &comment).await;
                verdict(source, result, args.json, false)
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
    engine: &dyn Operations,
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
    let now = engine.now_ms();
    let mut requests = engine.approvals(filter, 1000).await?;
    if filter == Some(ApprovalStatus::Pending) {
        // "Waiting" means waiting for people: approved ones wait only for the apply.
        requests.extend(
            engine
                .approvals(Some(ApprovalStatus::Approved), 1000)
                .await?,
        );
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
        let which = match filter {
            Some(ApprovalStatus::Pending) => "open ".to_string(),
            Some(other) => format!("{} ", other.as_str()),
            None => String::new(),
        };
        println!(
            "No {which}approval requests.{}",
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
                if r.is_open(now) {
                    until(now, r.expires_at)
                } else {
                    "-".into()
                },
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

async fn show(engine: &dyn Operations, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let service::ApprovalView {
        request,
        plan,
        plan_is_stale: stale,
        ..
    } = engine.approval(id).await?;
    let now = engine.now_ms();
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
    engine: &dyn Operations,
    result: service::Result<ApprovalRequest>,
    json: bool,
    approve: bool,
) -> anyhow::Result<ExitCode> {
    let request = match result {
        Ok(request) => request,
        // Refused: policy, a used, expired or rejected request, a stale or vanished plan, a
        // missing or overlong comment. An unknown request id is a usage error (exit 2).
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::Forbidden | ErrorKind::Conflict | ErrorKind::BadInput
            ) || (err.kind() == ErrorKind::NotFound && err.subject() == Some("plan")) =>
        {
            eprintln!("error: {err}");
            if err.kind() == ErrorKind::BadInput && !approve {
                eprintln!("Give the reason with --comment TEXT.");
            }
            eprintln!("No approval was recorded (the refusal is in the audit log).");
            // Any refusal of a verdict (used, expired, rejected, not allowed, no comment) is
            // a refusal here, not only policy's.
            return Ok(ExitCode::from(crate::EXIT_REFUSED));
        }
        Err(err) => return Err(err.into()),
    };
    let now = engine.now_ms();
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
