//! `provisioning approvals [list|show ID|approve ID|reject ID --comment TEXT]`.

use std::process::ExitCode;

use engine::authz::Caller;
use engine::exec::{Engine, ExecError};
use engine::plan::Plan;
use policies::{ApprovalRequest, ApprovalStatus};

use super::engine_setup::{open_engine, runtime};
use super::status::age;
use crate::Settings;
use crate::cli::{ApprovalsArgs, ApprovalsWhat};
use crate::remote::Remote;
use crate::table;

/// Exit code when the approval could not be given or taken back (used, expired, rejected,
/// not allowed).
const EXIT_REFUSED: u8 = 4;

/// Where approvals are read and decided: the local state store, or a running server.
enum Source {
    Local(Engine, Caller),
    Remote(Remote),
}

impl Source {
    fn now(&self) -> u64 {
        match self {
            Source::Local(engine, _) => engine.clock.now_ms(),
            Source::Remote(_) => engine::runtime::Clock::now_ms(&engine::runtime::SystemClock),
        }
    }

    async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<ApprovalRequest>, ExecError> {
        match self {
            Source::Local(engine, _) => engine.approvals(status).await,
            Source::Remote(r) => {
                let which = status.map(|s| s.as_str()).unwrap_or("all");
                r.call(
                    reqwest::Method::GET,
                    &format!("/approvals?status={which}&limit=1000"),
                    None,
                )
                .await
            }
        }
    }

    /// The request, its plan (if still stored) and whether that plan is stale.
    async fn approval(&self, id: &str) -> Result<(ApprovalRequest, Option<Plan>, bool), ExecError> {
        match self {
            Source::Local(engine, _) => {
                let request = engine.approval(id).await?;
                let plan = engine.store.plan(&request.plan_id).await?;
                let current = engine.store.state_version(&request.workspace).await?;
                let stale = plan.as_ref().is_some_and(|p| p.state_version != current);
                Ok((request, plan, stale))
            }
            Source::Remote(r) => {
                let v: serde_json::Value = r
                    .call(reqwest::Method::GET, &format!("/approvals/{id}"), None)
                    .await?;
                let request = serde_json::from_value(v["request"].clone()).map_err(|e| {
                    ExecError::Approval(format!("the server sent an unreadable request: {e}"))
                })?;
                let mut plan = v["plan"].clone();
                if let Some(o) = plan.as_object_mut() {
                    o.remove("rendered");
                }
                let plan = serde_json::from_value(plan).ok();
                Ok((request, plan, v["plan_is_stale"] == true))
            }
        }
    }

    async fn decide(
        &self,
        id: &str,
        comment: &str,
        approve: bool,
    ) -> Result<ApprovalRequest, ExecError> {
        match self {
            Source::Local(engine, caller) if approve => engine.approve(id, caller, comment).await,
            Source::Local(engine, caller) => engine.reject(id, caller, comment).await,
            Source::Remote(r) => {
                r.call(
                    reqwest::Method::POST,
                    &format!(
                        "/approvals/{id}/{}",
                        if approve { "approve" } else { "reject" }
                    ),
                    Some(serde_json::json!({ "comment": comment })),
                )
                .await
            }
        }
    }
}

pub fn run(settings: &Settings, args: &ApprovalsArgs) -> anyhow::Result<ExitCode> {
    let what = args.what.clone().unwrap_or(ApprovalsWhat::List);
    runtime()?.block_on(async {
        let source = match &settings.remote {
            Some(r) => Source::Remote(r.clone()),
            None => Source::Local(open_engine(settings).await?, settings.local_caller()),
        };
        match what {
            ApprovalsWhat::List => list(&source, args.status.clone(), args.all, args.json).await,
            ApprovalsWhat::Show { id } => show(&source, &id, args.json).await,
            ApprovalsWhat::Approve { id, comment } => {
                let result = source
                    .decide(&id, comment.as_deref().unwrap_or(""), true)
                    .await;
                verdict(&source, result, args.json, true)
            }
            ApprovalsWhat::Reject { id, comment } => {
                let result = source.decide(&id, &comment, false).await;
                verdict(&source, result, args.json, false)
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
    engine: &Source,
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
    let now = engine.now();
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

async fn show(engine: &Source, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (request, plan, stale) = engine.approval(id).await?;
    let now = engine.now();
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
    engine: &Source,
    result: Result<ApprovalRequest, ExecError>,
    json: bool,
    approve: bool,
) -> anyhow::Result<ExitCode> {
    let request = match result {
        Ok(request) => request,
        Err(
            err @ (ExecError::NotAllowed(_)
            | ExecError::Approval(_)
            | ExecError::PlanNotFound { .. }
            | ExecError::StalePlan { .. }),
        ) => {
            eprintln!("error: {err}");
            eprintln!("No approval was recorded (the refusal is in the audit log).");
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
        Err(err) => return Err(err.into()),
    };
    let now = engine.now();
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
