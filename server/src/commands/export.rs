//! `provisioning export FILE [--format json|yaml|toml]`: the checked config with defaults filled
//! in. Keys come out sorted, so the output is stable.

use std::process::ExitCode;

use anyhow::Context;

use super::{Source, validator};
use crate::Settings;
use crate::cli::{ExportArgs, Format};

pub fn run(settings: &Settings, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let source = Source::read(&args.file)?;
    let v = validator(settings)?.validate(&source.input())?;
    let value = match (&v.value, v.is_valid()) {
        (Some(value), true) => value,
        _ => {
            for d in &v.diagnostics {
                eprintln!("{}", d.render(&source.name, Some(&source.text)));
            }
            eprintln!("{} is invalid; nothing exported", source.name);
            return Ok(ExitCode::from(1));
        }
    };
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Yaml => serde_yaml::to_string(value).context("cannot write YAML")?,
        Format::Toml => toml::to_string_pretty(value).context("cannot write TOML")?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
