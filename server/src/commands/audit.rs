//! `provisioning audit export | verify`.

use std::process::ExitCode;

use super::engine_setup::{open_engine, runtime};
use crate::Settings;
use crate::cli::{AuditArgs, AuditWhat};

pub fn run(settings: &Settings, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        if let Some(r) = &settings.remote {
            return remote(r, &args.what).await;
        }
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

/// `audit` against a running server: the export as it sends it, and its own verification.
async fn remote(r: &crate::remote::Remote, what: &AuditWhat) -> anyhow::Result<ExitCode> {
    match what {
        AuditWhat::Export => {
            print!("{}", r.text("/audit/export").await?);
            Ok(ExitCode::SUCCESS)
        }
        AuditWhat::Verify => {
            let v: serde_json::Value = r.call(reqwest::Method::GET, "/audit/verify", None).await?;
            if v["ok"] == true {
                println!(
                    "audit log intact: {} entries (verified by {})",
                    v["entries"],
                    r.shown()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "audit log TAMPERED: {}",
                    v["problem"].as_str().unwrap_or("(no detail)")
                );
                Ok(ExitCode::from(1))
            }
        }
    }
}
