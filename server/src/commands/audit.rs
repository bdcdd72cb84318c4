//! `provisioning audit export | verify`.

use std::process::ExitCode;

use super::engine_setup::{open_engine, runtime};
use crate::Settings;
use crate::cli::{AuditArgs, AuditWhat};

pub fn run(settings: &Settings, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let engine = open_engine(settings).await?;
        let (entries, head) = engine.store.audit_log().await?;
        match args.what {
            AuditWhat::Export => {
                for entry in &entries {
                    println!("{}", serde_json::to_string(entry)?);
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditWhat::Verify => {
                let head_ref = head.as_ref().map(|(s, h)| (*s, h.as_str()));
                match policies::audit::verify(&entries, head_ref) {
                    Ok(n) => {
                        println!(
                            "audit log intact: {n} entries, head {}",
                            head.map(|h| h.1).unwrap_or_else(|| "(empty)".into())
                        );
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(broken) => {
                        println!("audit log TAMPERED: {broken}");
                        Ok(ExitCode::from(1))
                    }
                }
            }
        }
    })
}
