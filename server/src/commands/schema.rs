//! `provisioning schema [NAME]`: the Nickel contract sources.

use std::process::ExitCode;

use crate::cli::SchemaArgs;

pub fn run(args: &SchemaArgs) -> anyhow::Result<ExitCode> {
    let names = knowledge::schema_names();
    let Some(name) = &args.name else {
        for n in &names {
            let summary = knowledge::schema(n)
                .and_then(|s| {
                    s.source
                        .lines()
                        .next()
                        .map(|l| l.trim_start_matches('#').trim().to_owned())
                })
                .unwrap_or_default();
            println!("{n:<10} {summary}");
        }
        println!("\nprovisioning schema NAME prints one; `config` is the entry point.");
        return Ok(ExitCode::SUCCESS);
    };
    match knowledge::schema(name) {
        Some(s) => {
            print!("{}", s.source);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let hint = service::model::did_you_mean(name, names.iter().copied())
                .map(|m| format!("; did you mean `{m}`?"))
                .unwrap_or_default();
            anyhow::bail!(
                "unknown schema `{name}`{hint} expected one of {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}
