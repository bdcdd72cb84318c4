//! End-to-end suite: drives the real `provisioning` binary (and so the real Nickel sandbox).
//! One trial per fixture and per example, so a failure names the file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod docs;
mod examples;
mod fixtures;

use libtest_mimic::{Arguments, Trial};

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = Vec::new();
    trials.extend(fixtures::trials());
    trials.extend(examples::trials());
    trials.extend(cli::trials());
    trials.extend(docs::trials());
    libtest_mimic::run(&args, trials).exit();
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
