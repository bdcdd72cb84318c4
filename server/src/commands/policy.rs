//! `provisioning policy validate [DIR] | list | check FILE --as PRINCIPAL`.

use std::process::ExitCode;

use anyhow::bail;
use policies::{Action, PolicyEngine, PolicySource};
use service::{Caller, Operations};

use super::apply::checked;
use super::engine_setup::{authorizer, open_app, runtime};
use crate::Settings;
use crate::cli::{PolicyArgs, PolicyWhat};
use crate::table;

pub fn run(settings: &Settings, args: &PolicyArgs) -> anyhow::Result<ExitCode> {
    match &args.what {
        PolicyWhat::Validate { dir, extend } => {
            let source = match (dir, extend) {
                (None, _) => settings.policy_source(),
                (Some(d), false) => PolicySource::Replace(d.clone()),
                (Some(d), true) => PolicySource::Extend(d.clone()),
            };
            match PolicyEngine::load(&source) {
                Ok(engine) => {
                    println!(
                        "{} policies valid against the schema ({} gate(s)).",
                        engine.policies().len(),
                        engine.policies().iter().filter(|p| p.gate).count()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        PolicyWhat::List { json } => {
            let engine = authorizer(settings)?.policies.current();
            let list = engine.policies();
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|p| {
                        vec![
                            p.id.clone(),
                            if p.gate { "gate".into() } else { String::new() },
                            p.description.clone(),
                        ]
                    })
                    .collect();
                print!("{}", table::render(&["ID", "KIND", "DESCRIPTION"], &rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyWhat::Check {
            file,
            principal,
            action,
            json,
        } => check(settings, file, principal, action, *json),
    }
}

fn check(
    settings: &Settings,
    file: &std::path::Path,
    principal: &str,
    action: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let caller = Caller::parse(principal, "cli").map_err(anyhow::Error::msg)?;
    let action = match action {
        "apply" => Action::Apply,
        "destroy" => Action::Destroy,
        other => bail!("--action `{other}`: expected apply or destroy"),
    };
    let Some(config) = checked(settings, file)? else {
        return Ok(ExitCode::from(1));
    };
    let would = runtime()?.block_on(async {
        let app = open_app(settings).await?;
        let plan = Operations::plan(&app, &config, action == Action::Destroy)
            .await?
            .plan;
        anyhow::Ok(app.would_decide(&caller, &plan.id).await?)
    })?;
    let (plan, request, decision, needed) = (
        &would.plan,
        &would.request,
        &would.decision,
        would.approvals_needed,
    );
    if json {
        let out = serde_json::json!({ "plan": plan.id, "request": request, "decision": decision, "approvals_needed": needed });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} of plan {} ({} change(s), workspace {} in {}): {}",
        action.as_str(),
        plan.id,
        plan.changes().count(),
        plan.workspace,
        plan.environment.as_str(),
        match decision.kind() {
            "allow" => "allowed",
            "deny" => "denied",
            _ => "needs approval",
        }
    );
    let refs = match decision {
        policies::Decision::Allow { policies } => policies,
        policies::Decision::Deny { reasons } => reasons,
        policies::Decision::NeedsApproval { gates } => gates,
    };
    for r in refs {
        println!("  {}: {}", r.id, r.description);
    }
    if let Some(n) = needed {
        println!("  {n} approval(s) from people other than the requester clear the gates.");
    }
    Ok(ExitCode::SUCCESS)
}
