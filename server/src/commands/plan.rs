//! `provisioning plan FILE [--json]`: here, or on the server that holds the state.

use std::process::ExitCode;

use super::engine_setup::{load_checked, open_engine, runtime};
use crate::Settings;
use crate::cli::PlanArgs;

pub fn run(settings: &Settings, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let Some((config, value)) = load_checked(settings, &args.file)? else {
        return Ok(ExitCode::from(1));
    };
    runtime()?.block_on(async {
        let (plan, rendered) = match &settings.remote {
            Some(r) => {
                let p = super::through_server::plan(r, &value, false).await?;
                (p.plan, p.rendered)
            }
            None => {
                let plan = open_engine(settings).await?.plan(&config).await?;
                let rendered = plan.render();
                (plan, rendered)
            }
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{rendered}");
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
