//! `provisioning validate FILE [--json]`.

use std::process::ExitCode;

use service::model::Severity;

use super::{Source, validator};
use crate::Settings;
use crate::cli::ValidateArgs;

pub fn run(settings: &Settings, args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let source = Source::read(&args.file)?;
    let v = validator(settings)?.validate(&source.input())?;
    if args.json {
        let out = serde_json::json!({
            "valid": v.is_valid(),
            "file": source.name,
            "diagnostics": v.diagnostics,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for d in &v.diagnostics {
            println!("{}", d.render(&source.name, Some(&source.text)));
        }
        let errors = v
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        let warnings = v.diagnostics.len() - errors;
        match &v.config {
            Some(c) if v.is_valid() => {
                let taskservs: usize = c.servers.iter().map(|s| s.taskservs.len()).sum();
                println!(
                    "{} is valid: workspace `{}` ({}), {} server(s), {} taskserv(s), {} cluster(s){}",
                    source.name,
                    c.workspace.name,
                    c.workspace.environment.as_str(),
                    c.servers.len(),
                    taskservs,
                    c.clusters.len(),
                    if warnings > 0 {
                        format!(", {warnings} warning(s)")
                    } else {
                        String::new()
                    }
                );
            }
            _ => println!(
                "{} is invalid: {errors} error(s), {warnings} warning(s)",
                source.name
            ),
        }
    }
    Ok(if v.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
