//! Nickel evaluation with limits. Outside input is evaluated in a child process (the
//! `provisioning` binary's hidden `__nickel-eval` command) with an address-space limit and a
//! wall-clock timeout, so a hostile config can neither hang nor crash the server: Nickel allows
//! unbounded recursion, and runaway evaluation ends in an allocation failure or a stack overflow
//! that aborts the process doing it.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wait_timeout::ChildExt;

use crate::EngineError;

/// The hidden subcommand the child process runs.
pub const CHILD_COMMAND: &str = "__nickel-eval";

/// Resource limits for evaluating one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted source, in bytes.
    pub max_input_bytes: usize,
    /// Wall-clock time for one evaluation.
    pub timeout: Duration,
    /// Address space of the evaluating process (subprocess sandbox only).
    pub memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 1024 * 1024,
            timeout: Duration::from_secs(10),
            memory_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// Where Nickel runs.
#[derive(Debug, Clone)]
pub enum Sandbox {
    /// A child process: `program args... __nickel-eval`. The only mode fit for outside input.
    Subprocess {
        program: PathBuf,
        args: Vec<OsString>,
    },
    /// A thread of this process with a large stack and a timeout after which its result is
    /// abandoned (the thread is not stopped). For trusted input: tests and benchmarks.
    InProcess,
}

impl Sandbox {
    /// The running executable as the sandbox (the `provisioning` binary).
    pub fn current_exe() -> std::io::Result<Sandbox> {
        Ok(Sandbox::Subprocess {
            program: std::env::current_exe()?,
            args: Vec::new(),
        })
    }
}

/// One evaluation: the source and where its imports may come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRequest {
    pub source: String,
    /// Name for the main source; relative imports resolve next to it.
    pub source_name: String,
    pub memory_bytes: u64,
    pub cpu_seconds: u64,
}

/// What evaluation produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EvalOutcome {
    /// The fully evaluated value as JSON text.
    Value { json: String },
    /// Nickel's diagnostics, serialized by Nickel itself (codespan JSON).
    NickelError { diagnostics: serde_json::Value },
    /// Evaluation did not finish: time or memory limit, or a crash of the evaluator.
    Aborted { reason: AbortReason, detail: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortReason {
    Timeout,
    Memory,
    StackOverflow,
    Crash,
}

/// Evaluates `request` in `sandbox` under `limits`.
pub fn evaluate(
    sandbox: &Sandbox,
    limits: &Limits,
    request: EvalRequest,
) -> Result<EvalOutcome, EngineError> {
    match sandbox {
        Sandbox::InProcess => Ok(in_thread(request, limits.timeout)),
        Sandbox::Subprocess { program, args } => in_child(program, args, limits, &request),
    }
}

fn in_thread(request: EvalRequest, timeout: Duration) -> EvalOutcome {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("nickel-eval".into())
        .stack_size(EVAL_STACK)
        .spawn(move || {
            let _ = tx.send(eval_nickel(&request));
        });
    if let Err(e) = spawned {
        return aborted(
            AbortReason::Crash,
            format!("cannot start the evaluation thread: {e}"),
        );
    }
    match rx.recv_timeout(timeout) {
        Ok(outcome) => outcome,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => timeout_outcome(timeout),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => aborted(
            AbortReason::Crash,
            "the evaluator failed (the evaluation thread panicked)".into(),
        ),
    }
}

/// Stack of the evaluation thread; deep but legitimate nesting fits, runaway recursion does not.
const EVAL_STACK: usize = 64 * 1024 * 1024;

fn aborted(reason: AbortReason, detail: String) -> EvalOutcome {
    EvalOutcome::Aborted { reason, detail }
}

fn timeout_outcome(timeout: Duration) -> EvalOutcome {
    aborted(
        AbortReason::Timeout,
        format!(
            "evaluation did not finish within the time limit of {}",
            human_duration(timeout)
        ),
    )
}

fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn in_child(
    program: &PathBuf,
    args: &[OsString],
    limits: &Limits,
    request: &EvalRequest,
) -> Result<EvalOutcome, EngineError> {
    let spawn_err = |source| EngineError::SandboxSpawn {
        program: program.display().to_string(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .arg(CHILD_COMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "0")
        .spawn()
        .map_err(spawn_err)?;
    let payload =
        serde_json::to_vec(request).map_err(|e| EngineError::SandboxProtocol(e.to_string()))?;
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(stdin) = stdin.as_mut() {
            let _ = stdin.write_all(&payload);
        }
    });
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read_all(stdout.map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = read_all(stderr.map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = child.wait_timeout(limits.timeout).map_err(spawn_err)?;
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = writer.join();
            return Ok(timeout_outcome(limits.timeout));
        }
    };
    let _ = writer.join();
    let out = out.join().unwrap_or_default();
    let err = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    if status.success() {
        return serde_json::from_slice(&out)
            .map_err(|e| EngineError::SandboxProtocol(e.to_string()));
    }
    let mib = limits.memory_bytes / (1024 * 1024);
    Ok(if err.contains("overflowed its stack") {
        aborted(
            AbortReason::StackOverflow,
            "evaluation recursed too deeply (stack overflow)".into(),
        )
    } else if err.contains("memory allocation") || err.contains("out of memory") {
        aborted(
            AbortReason::Memory,
            format!("evaluation exceeded the memory limit of {mib} MiB"),
        )
    } else {
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        aborted(
            AbortReason::Crash,
            format!("the evaluator stopped ({status}): {last}"),
        )
    })
}

/// Entry point of the child process: reads an [`EvalRequest`] as JSON from stdin, applies the
/// limits to itself, evaluates, and writes an [`EvalOutcome`] as JSON to stdout.
pub fn child_main() -> std::process::ExitCode {
    let mut input = Vec::new();
    if std::io::stdin().read_to_end(&mut input).is_err() {
        return std::process::ExitCode::from(3);
    }
    let Ok(request) = serde_json::from_slice::<EvalRequest>(&input) else {
        return std::process::ExitCode::from(3);
    };
    let request_memory = request.memory_bytes;
    let _ = rlimit::setrlimit(
        rlimit::Resource::AS,
        request.memory_bytes,
        request.memory_bytes,
    );
    let _ = rlimit::setrlimit(
        rlimit::Resource::CPU,
        request.cpu_seconds,
        request.cpu_seconds + 1,
    );
    let handle = std::thread::Builder::new()
        .name("nickel-eval".into())
        .stack_size(EVAL_STACK)
        .spawn(move || eval_nickel(&request));
    let outcome = match handle.map(|h| h.join()) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => panicked(panic.as_ref(), request_memory),
        Err(e) => aborted(
            AbortReason::Crash,
            format!("cannot start the evaluation thread: {e}"),
        ),
    };
    match serde_json::to_writer(std::io::stdout().lock(), &outcome) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::from(3),
    }
}

/// Describes a panic of the evaluation thread. Under the address-space limit, allocation
/// failures inside Nickel surface as panics ("capacity overflow", "out of memory").
fn panicked(payload: &(dyn std::any::Any + Send), memory_bytes: u64) -> EvalOutcome {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    let lower = text.to_lowercase();
    if ["memory", "alloc", "capacity"]
        .iter()
        .any(|w| lower.contains(w))
    {
        let mib = memory_bytes / (1024 * 1024);
        aborted(
            AbortReason::Memory,
            format!("evaluation exceeded the memory limit of {mib} MiB"),
        )
    } else {
        aborted(AbortReason::Crash, format!("the evaluator failed: {text}"))
    }
}

/// Evaluates deeply for export and returns JSON or Nickel's diagnostics.
fn eval_nickel(request: &EvalRequest) -> EvalOutcome {
    let mut ctx = nickel_lang::Context::new().with_source_name(request.source_name.clone());
    let result = ctx
        .eval_deep_for_export(&request.source)
        .and_then(|expr| ctx.expr_to_json(&expr));
    match result {
        Ok(json) => EvalOutcome::Value { json },
        Err(error) => {
            let mut buf = Vec::new();
            match error.format(&mut buf, nickel_lang::ErrorFormat::Json) {
                Ok(()) => match serde_json::from_slice(&buf) {
                    Ok(diagnostics) => EvalOutcome::NickelError { diagnostics },
                    Err(e) => aborted(
                        AbortReason::Crash,
                        format!("unreadable Nickel diagnostics: {e}"),
                    ),
                },
                Err(e) => aborted(
                    AbortReason::Crash,
                    format!("cannot format Nickel diagnostics: {e}"),
                ),
            }
        }
    }
}
