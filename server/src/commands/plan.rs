//! `provisioning plan FILE [--json]`.

use std::process::ExitCode;

use super::engine_setup::{load_config, open_engine, runtime};
use crate::Settings;
use crate::cli::PlanArgs;

pub fn run(settings: &Settings, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let Some(config) = load_config(settings, &args.file)? else {
        return Ok(ExitCode::from(1));
    };
    runtime()?.block_on(async {
        let engine = open_engine(settings).await?;
        let plan = engine.plan(&config).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", plan.render());
            if !plan.is_noop() {
                println!(
                    "\nApply exactly this plan with `provisioning apply --plan {}`.",
                    plan.id
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
