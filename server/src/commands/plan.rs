//! `provisioning plan FILE [--json]`: here, or on the server that holds the state.

use std::process::ExitCode;

use super::apply::{checked, operations};
use super::engine_setup::runtime;
use crate::Settings;
use crate::cli::PlanArgs;

pub fn run(settings: &Settings, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let Some(config) = checked(settings, &args.file)? else {
        return Ok(ExitCode::from(1));
    };
    runtime()?.block_on(async {
        let planned = operations(settings).await?.plan(&config, false).await?;
        let plan = &planned.plan;
        if args.json {
            println!("{}", serde_json::to_string_pretty(plan)?);
        } else {
            print!("{}", planned.rendered);
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
