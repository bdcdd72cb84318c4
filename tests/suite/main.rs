//! End-to-end suite: drives the real `provisioning` binary (and so the real Nickel sandbox).
//! One trial per fixture and per example, so a failure names the file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod api;
mod approvals;
mod cli;
mod clouds;
mod docs;
mod drafter;
mod edges;
mod engine;
mod examples;
mod first_run;
mod fixtures;
mod fuzz;
mod hostile;
mod live;
mod local;
mod mcp;
mod policies;
mod rag;
mod secrets;
mod ssh;
mod tidy;

use libtest_mimic::{Arguments, Trial};

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = Vec::new();
    trials.extend(fixtures::trials());
    trials.extend(examples::trials());
    trials.extend(cli::trials());
    trials.extend(docs::trials());
    trials.extend(engine::trials());
    trials.extend(policies::trials());
    trials.extend(policies::cli_trials());
    trials.extend(rag::trials());
    trials.extend(approvals::trials());
    trials.extend(drafter::trials());
    trials.extend(mcp::trials());
    trials.extend(api::trials());
    trials.extend(hostile::trials());
    trials.extend(fuzz::trials());
    trials.extend(edges::trials());
    trials.extend(secrets::trials());
    trials.extend(ssh::trials());
    trials.extend(clouds::trials());
    trials.extend(live::trials());
    trials.extend(local::trials());
    trials.extend(first_run::trials());
    trials.extend(tidy::trials());
    libtest_mimic::run(&args, trials).exit();
}

/// One trial `PREFIX::STEM` per `*.ncl` file of `dir`, running `f` on its path, plus a trial
/// `PREFIX::at_least_MIN` that fails when the folder holds fewer than `min` files.
pub fn file_trials(
    dir: &std::path::Path,
    prefix: &str,
    min: usize,
    f: fn(&std::path::Path),
) -> Vec<Trial> {
    let files = tests::ncl_files(dir);
    let count = files.len();
    let mut trials: Vec<Trial> = files
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            Trial::test(format!("{prefix}::{name}"), move || check(move || f(&path)))
        })
        .collect();
    let label = format!("{prefix}::at_least_{min}");
    trials.push(Trial::test(label, move || {
        if count >= min {
            Ok(())
        } else {
            Err(format!("only {count} files, expected at least {min}").into())
        }
    }));
    trials
}

/// Turns a closure that panics on failure into a trial outcome.
pub fn check(f: impl FnOnce() + std::panic::UnwindSafe) -> Result<(), libtest_mimic::Failed> {
    std::panic::catch_unwind(f).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "test panicked".to_owned());
        msg.into()
    })
}
