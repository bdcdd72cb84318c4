//! `provisioning state [list|show KEY]` and `provisioning drift`: read here, or from the server
//! that holds the state.

use std::process::ExitCode;

use std::collections::BTreeMap;

use anyhow::bail;
use service::Operations;
use service::model::Resource;

use super::engine_setup::{open_app, runtime};
use crate::Settings;
use crate::cli::{DriftArgs, StateArgs, StateWhat};
use crate::table;

/// Where recorded state is read: this machine's state, or the server that holds the store.
async fn holder(settings: &Settings) -> anyhow::Result<Box<dyn Operations>> {
    Ok(match &settings.remote {
        Some(r) => Box::new(r.clone()),
        None => Box::new(open_app(settings).await?),
    })
}

/// The recorded workspaces (only `only` when given, which must be one of them) and their
/// resources.
async fn recorded(
    holder: &dyn Operations,
    only: Option<&String>,
) -> anyhow::Result<BTreeMap<String, Vec<Resource>>> {
    let mut all = holder.state().await?;
    match only {
        None => Ok(all),
        Some(ws) => match all.remove(ws) {
            Some(resources) => Ok(BTreeMap::from([(ws.clone(), resources)])),
            None => {
                let hint = service::model::did_you_mean(ws, all.keys().map(String::as_str))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                bail!(
                    "no workspace `{ws}` in state (known: {}){hint}",
                    if all.is_empty() {
                        "none".to_string()
                    } else {
                        all.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                )
            }
        },
    }
}

pub fn state(settings: &Settings, args: &StateArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let holder = holder(settings).await?;
        let resources: Vec<Resource> = recorded(holder.as_ref(), args.workspace.as_ref())
            .await?
            .into_values()
            .flatten()
            .collect();
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
                        let hint = service::model::did_you_mean(key, resources.iter().map(|r| r.key.as_str()))
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
        let holder = holder(settings).await?;
        let mut reports = Vec::new();
        for ws in recorded(holder.as_ref(), args.workspace.as_ref()).await?.keys() {
            reports.push(holder.drift(ws).await?);
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
