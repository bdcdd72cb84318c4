//! Validation benchmark: generated `sim` configs of 10, 100 and 1,000 servers (two taskservs
//! each, one dependency), validated end to end as users run it: in the subprocess sandbox of the
//! `provisioning` binary, contracts, typed model and cross-field checks included.
//!
//! Prints the median time per size, the ratio t(1000)/t(100), and, as a baseline measured in the
//! same run, plain Nickel evaluation of the same source without contracts, so the cost of our
//! checks shows as a ratio rather than as a machine-dependent number.
//!
//! `cargo build --release -p server && cargo bench -p tests --bench validate` measures and fails
//! if a target is missed (100 servers under 300 ms, ratio under 15). `--smoke` (used by CI in
//! the debug build) runs each size once and reports without enforcing targets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use engine::sandbox::{self, EvalOutcome, EvalRequest};
use engine::{Input, Limits, Sandbox, Validator};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let runs = if smoke { 1 } else { 7 };
    let limits = Limits {
        max_input_bytes: 64 * 1024 * 1024,
        ..Limits::default()
    };
    let cache = std::env::temp_dir().join("provisioning-bench-cache");
    let program = tests::binary();
    assert!(
        program.exists(),
        "{} not found: build it first (cargo build --release -p server)",
        program.display()
    );
    let validator = Validator::new(
        Sandbox::Subprocess {
            program,
            args: Vec::new(),
        },
        limits,
        &cache,
    )
    .unwrap();

    println!(
        "validation benchmark ({} mode, median of {runs} run(s))",
        if smoke { "smoke" } else { "full" }
    );
    println!(
        "{:>8}  {:>12}  {:>14}  {:>9}",
        "servers", "validate", "plain nickel", "ratio"
    );
    let mut results = Vec::new();
    for n in [10usize, 100, 1000] {
        let src = tests::generated_config(n);
        let input = Input {
            source: &src,
            name: "bench.ncl",
            imports_from: None,
        };
        let mut ours = Vec::new();
        let mut base = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let v = validator.validate(&input).unwrap();
            ours.push(t.elapsed());
            assert!(
                v.is_valid(),
                "generated config invalid: {:?}",
                v.diagnostics.first()
            );
            assert_eq!(v.config.as_ref().map(|c| c.servers.len()), Some(n));

            let t = Instant::now();
            let req = EvalRequest {
                source: src.clone(),
                source_name: "bench.ncl".into(),
                memory_bytes: 0,
                cpu_seconds: 0,
            };
            let out = sandbox::evaluate(&Sandbox::InProcess, &limits, req).unwrap();
            base.push(t.elapsed());
            assert!(matches!(out, EvalOutcome::Value { .. }));
        }
        let (o, b) = (median(ours), median(base));
        println!(
            "{n:>8}  {:>9.1} ms  {:>11.1} ms  {:>8.2}x",
            o.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            o.as_secs_f64() / b.as_secs_f64()
        );
        results.push((n, o));
    }
    let t100 = results[1].1.as_secs_f64();
    let t1000 = results[2].1.as_secs_f64();
    let ratio = t1000 / t100;
    println!("t(1000)/t(100) = {ratio:.2} (target < 15)");
    println!(
        "t(100) = {:.1} ms (target < 300 ms in a release build)",
        t100 * 1e3
    );
    if !smoke {
        let mut failed = false;
        if ratio >= 15.0 {
            println!("FAIL: scaling ratio {ratio:.2} >= 15");
            failed = true;
        }
        if t100 >= 0.300 {
            println!("FAIL: 100 servers took {:.1} ms", t100 * 1e3);
            failed = true;
        }
        if failed {
            std::process::exit(1);
        }
        println!("targets met");
    }
}
