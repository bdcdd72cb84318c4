//! `provisioning state [list|show KEY]` and `provisioning drift`.

use std::process::ExitCode;

use anyhow::bail;
use engine::state::Resource;

use super::engine_setup::{open_engine, runtime};
use crate::Settings;
use crate::cli::{DriftArgs, StateArgs, StateWhat};
use crate::table;

async fn workspaces(
    engine: &engine::exec::Engine,
    only: Option<&String>,
) -> anyhow::Result<Vec<String>> {
    let all = engine.store.workspaces().await?;
    match only {
        None => Ok(all),
        Some(ws) if all.contains(ws) => Ok(vec![ws.clone()]),
        Some(ws) => {
            let hint = engine::did_you_mean(ws, all.iter().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            bail!(
                "no workspace `{ws}` in state (known: {}){hint}",
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.join(", ")
                }
            )
        }
    }
}

pub fn state(settings: &Settings, args: &StateArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let engine = open_engine(settings).await?;
        let mut resources: Vec<Resource> = Vec::new();
        for ws in workspaces(&engine, args.workspace.as_ref()).await? {
            resources.extend(engine.store.resources(&ws).await?);
        }
        match &args.what {
            None | Some(StateWhat::List) => {
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&resources)?);
                } else if resources.is_empty() {
                    println!("No resources recorded.");
                } else {
                    let rows: Vec<Vec<String>> = resources
                        .iter()
                        .map(|r| {
                            vec![
                                r.workspace.clone(),
                                r.key.clone(),
                                r.provider.clone(),
                                r.provider_id.clone(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table::render(&["WORKSPACE", "RESOURCE", "PROVIDER", "PROVIDER ID"], &rows)
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Some(StateWhat::Show { key }) => {
                let matches: Vec<&Resource> = resources.iter().filter(|r| &r.key == key).collect();
                match matches.as_slice() {
                    [one] => {
                        println!("{}", serde_json::to_string_pretty(one)?);
                        Ok(ExitCode::SUCCESS)
                    }
                    [] => {
                        let hint = engine::did_you_mean(key, resources.iter().map(|r| r.key.as_str()))
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default();
                        bail!(
                            "no recorded resource `{key}` (keys look like server/NAME, taskserv/SERVER/NAME, cluster/NAME){hint}"
                        )
                    }
                    many => bail!(
                        "`{key}` is recorded in {} workspaces ({}); pick one with --workspace",
                        many.len(),
                        many.iter().map(|r| r.workspace.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                }
            }
        }
    })
}

pub fn drift(settings: &Settings, args: &DriftArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let engine = open_engine(settings).await?;
        let mut reports = Vec::new();
        for ws in workspaces(&engine, args.workspace.as_ref()).await? {
            reports.push(engine.drift(&ws).await?);
        }
        let drifted = reports.iter().any(|r| !r.items.is_empty());
        if args.json {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        } else if reports.is_empty() {
            println!("No resources recorded: nothing to compare.");
        } else {
            for report in &reports {
                if report.items.is_empty() {
                    println!(
                        "{}: {} resource(s) checked, no drift.",
                        report.workspace, report.checked
                    );
                    continue;
                }
                println!(
                    "{}: {} resource(s) checked, {} differ:",
                    report.workspace,
                    report.checked,
                    report.items.len()
                );
                for item in &report.items {
                    println!("  {:<10} {}  {}", format!("{:?}", item.kind).to_lowercase(), item.key, item.detail);
                }
            }
            if drifted {
                println!("Recorded state is unchanged; `provisioning destroy FILE` then `apply` rebuilds drifted resources.");
            }
        }
        // Like `diff`: 0 no drift, 1 drift found.
        Ok(if drifted { ExitCode::from(1) } else { ExitCode::SUCCESS })
    })
}
