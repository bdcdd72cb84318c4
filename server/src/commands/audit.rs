//! `provisioning audit export | verify`, from this machine's state or a running server.

use std::process::ExitCode;

use service::Operations;

use super::engine_setup::{open_app, runtime};
use crate::Settings;
use crate::cli::{AuditArgs, AuditWhat};

pub fn run(settings: &Settings, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let source: Box<dyn Operations> = match &settings.remote {
            Some(r) => Box::new(r.clone()),
            None => Box::new(open_app(settings).await?),
        };
        match args.what {
            AuditWhat::Export => {
                for entry in source.audit_all().await? {
                    println!("{}", serde_json::to_string(&entry)?);
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditWhat::Verify => {
                let check = source.verify_audit().await?;
                match check.problem {
                    None => {
                        println!(
                            "audit log intact: {} entries, {}",
                            check.entries,
                            match (&check.head, &settings.remote) {
                                (Some(head), _) => format!("head {head}"),
                                (None, Some(r)) => format!("verified by {}", r.shown()),
                                (None, None) => "head (empty)".to_string(),
                            }
                        );
                        Ok(ExitCode::SUCCESS)
                    }
                    Some(broken) => {
                        println!("audit log TAMPERED: {broken}");
                        Ok(ExitCode::from(1))
                    }
                }
            }
        }
    })
}
