//! `provisioning policy validate [DIR] | list | check FILE --as PRINCIPAL`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use engine::plan::Plan;
use policies::{
    Action, AuthRequest, Facts, PolicyEngine, PolicySource, Principal, Resource, ResourceType,
};

use super::engine_setup::{load_config, open_engine, runtime};
use crate::Settings;
use crate::cli::{PolicyArgs, PolicyWhat};
use crate::table;

pub fn run(settings: &Settings, args: &PolicyArgs) -> anyhow::Result<ExitCode> {
    match &args.what {
        PolicyWhat::Validate { dir, extend } => {
            let source = match (dir, extend) {
                (None, _) => PolicySource::Defaults,
                (Some(d), false) => PolicySource::Replace(d.clone()),
                (Some(d), true) => PolicySource::Extend(d.clone()),
            };
            match PolicyEngine::load(&source) {
                Ok(engine) => {
                    println!(
                        "{} policies valid against the schema ({} gate(s)).",
                        engine.policies().len(),
                        engine.policies().iter().filter(|p| p.2).count()
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
            let engine = PolicyEngine::defaults()?;
            let list = engine.policies();
            if *json {
                let out: Vec<_> = list
                    .iter()
                    .map(|(id, d, gate, file)| serde_json::json!({ "id": id, "description": d, "gate": gate, "file": file }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|(id, d, gate, _)| {
                        vec![
                            id.clone(),
                            if *gate { "gate".into() } else { String::new() },
                            d.clone(),
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

/// `user:alice[:operator,approver]` or `agent:claude@alice[:operator]`.
fn parse_principal(text: &str) -> anyhow::Result<Principal> {
    let usage = "expected user:NAME[:ROLE,ROLE] or agent:NAME@USER[:ROLE,ROLE]";
    let mut parts = text.splitn(3, ':');
    let kind = parts.next().unwrap_or_default();
    let name = parts
        .next()
        .filter(|n| !n.is_empty())
        .with_context(|| format!("`{text}`: {usage}"))?;
    let roles: Vec<String> = parts
        .next()
        .map(|r| {
            r.split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    match kind {
        "user" => Ok(Principal::User {
            id: name.into(),
            roles,
        }),
        "agent" => {
            let (id, user) = name
                .split_once('@')
                .with_context(|| format!("`{text}`: an agent acts for a user; {usage}"))?;
            Ok(Principal::Agent {
                id: id.into(),
                acting_for: user.into(),
                roles,
            })
        }
        other => bail!("`{other}` is not a principal kind; {usage}"),
    }
}

fn facts_of(plan: &Plan) -> Facts {
    let delta: f64 = plan.cost.iter().map(|c| c.delta).sum();
    Facts {
        authenticated: true,
        channel: "cli".into(),
        mfa: false,
        cost_delta_cents: (delta * 100.0).round() as i64,
        deletes: plan.summary.delete as i64,
        replacements: plan.summary.replace as i64,
        prod_resources_touched: plan.blast_radius.prod_resources_touched as i64,
        zones: plan.blast_radius.zones.clone(),
        approvals: 0,
        requester: None,
    }
}

fn check(
    settings: &Settings,
    file: &std::path::Path,
    principal: &str,
    action: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let principal = parse_principal(principal)?;
    let action = match action {
        "apply" => Action::Apply,
        "destroy" => Action::Destroy,
        other => bail!("--action `{other}`: expected apply or destroy"),
    };
    let policy = PolicyEngine::defaults()?;
    let Some(config) = load_config(settings, file)? else {
        return Ok(ExitCode::from(1));
    };
    let plan = runtime()?.block_on(async {
        let engine = open_engine(settings).await?;
        let plan = match action {
            Action::Destroy => engine.plan_destroy(&config).await?,
            _ => engine.plan(&config).await?,
        };
        anyhow::Ok(plan)
    })?;
    let request = AuthRequest {
        principal,
        action,
        resource: Resource {
            kind: ResourceType::Plan,
            id: plan.id.clone(),
            environment: plan.environment.as_str().into(),
            owner: plan.owner.clone(),
            budget_cents: None,
            forbidden_zones: None,
            hash: Some(plan.hash.clone()),
            zone: None,
        },
        facts: facts_of(&plan),
    };
    let decision = policy.decide(&request)?;
    if json {
        let out = serde_json::json!({ "plan": plan.id, "request": request, "decision": decision });
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
    let refs = match &decision {
        policies::Decision::Allow { policies } => policies,
        policies::Decision::Deny { reasons } => reasons,
        policies::Decision::NeedsApproval { gates } => gates,
    };
    for r in refs {
        println!("  {}: {}", r.id, r.description);
    }
    Ok(ExitCode::SUCCESS)
}
