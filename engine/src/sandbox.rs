//! Nickel evaluation with limits. Outside input is evaluated in a child process (the
//! `provisioning` binary's hidden `__nickel-eval` command) with an address-space limit, a
//! wall-clock timeout and a cap on what it may write back, so a hostile config can neither hang
//! nor crash the server: Nickel allows unbounded recursion, and runaway evaluation ends in an
//! allocation failure or a stack overflow that aborts the process doing it.
//!
//! The child starts with an empty environment in an empty working directory, and a confined
//! request (outside input) makes it give up, before it reads the source, every file access and
//! the network through Landlock where the kernel has it (see [`confine`]). The contracts travel
//! inside the source ([`knowledge::contract_bundle`]), so a confined evaluation needs no file.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
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
    /// Largest result the evaluator may write back, in bytes (subprocess sandbox only).
    pub max_output_bytes: usize,
    /// Evaluations running at once; more are refused as busy, not queued.
    pub max_concurrent: usize,
    /// Whether a server's evaluations yield the CPU (subprocess sandbox only): above 0 they run
    /// under `SCHED_IDLE` (see [`lower_this_thread`]), or at this `nice -n` value where the
    /// kernel refuses that; 0 leaves them at the caller's priority. A server sets it, so its own
    /// answers (health checks, approvals, other callers) come before a hostile config's CPU; a
    /// command at the terminal does not, since the person waiting for it is the only caller.
    pub niceness: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 1024 * 1024,
            timeout: Duration::from_secs(10),
            memory_bytes: 2 * 1024 * 1024 * 1024,
            max_output_bytes: 16 * 1024 * 1024,
            max_concurrent: default_max_concurrent(),
            niceness: 0,
        }
    }
}

/// Evaluations at once by default: one fewer than the cores this process may use, at least one.
/// A core is left to the server's own work: with an evaluation on every core, each health check
/// and approval waits for a core to come free (a memory bomb's page faults and its exit are
/// kernel work that even `SCHED_IDLE` does not preempt). Measured on 2 cores under 40 hostile
/// clients: `/healthz` p99 about 6x idle with 4 evaluations at once, 2-3x with one.
pub fn default_max_concurrent() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

/// Where Nickel runs.
#[derive(Debug, Clone)]
pub enum Sandbox {
    /// A child process: `program args... __nickel-eval`. The only mode fit for outside input.
    Subprocess {
        program: PathBuf,
        args: Vec<OsString>,
        /// The child's working directory: an empty folder of the server's own.
        workdir: PathBuf,
    },
    /// A thread of this process with a large stack and a timeout after which its result is
    /// abandoned (the thread is not stopped). For trusted input: tests and benchmarks.
    InProcess,
}

impl Sandbox {
    /// The running executable as the sandbox (the `provisioning` binary), working in an empty
    /// folder `sandbox-cwd` under `cache_dir`.
    pub fn current_exe(cache_dir: &std::path::Path) -> std::io::Result<Sandbox> {
        Ok(Sandbox::Subprocess {
            program: std::env::current_exe()?,
            args: Vec::new(),
            workdir: cache_dir.join("sandbox-cwd"),
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
    /// Outside input: the child confines itself (no file, no network) before it evaluates.
    #[serde(default)]
    pub confined: bool,
    /// Byte range of the caller's own text inside `source` (the rest is ours: the wrapper and
    /// the contracts). It must parse as one complete expression by itself, so it cannot close
    /// the wrapper's parenthesis and steer the contracts onto something else; when it does not,
    /// it is evaluated alone for Nickel's syntax diagnostics (positions mapped into `source`).
    #[serde(default)]
    pub user: Option<(usize, usize)>,
}

/// What the child sends back: the outcome, and how it was confined.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildReport {
    pub outcome: EvalOutcome,
    /// The kernel restriction in force, e.g. `landlock ABI 7, fully enforced`; `None` when the
    /// request was not confined.
    pub confinement: Option<String>,
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
    /// The result was larger than [`Limits::max_output_bytes`].
    Output,
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
        Sandbox::Subprocess {
            program,
            args,
            workdir,
        } => Ok(in_child(program, args, workdir, limits, &request)?.outcome),
    }
}

/// Runs a trivial confined evaluation and returns how the child was confined: `Some` with the
/// kernel restriction, `None` when the kernel offers none (or the sandbox is in-process).
pub fn probe(sandbox: &Sandbox, limits: &Limits) -> Result<Option<String>, EngineError> {
    let Sandbox::Subprocess {
        program,
        args,
        workdir,
    } = sandbox
    else {
        return Ok(None);
    };
    let request = EvalRequest {
        source: "1".into(),
        source_name: "<probe>".into(),
        memory_bytes: limits.memory_bytes,
        cpu_seconds: limits.timeout.as_secs() + 1,
        confined: true,
        user: None,
    };
    Ok(in_child(program, args, workdir, limits, &request)?.confinement)
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

/// The system's `nice`, when there is one: the fallback that lowers a server's evaluations when
/// the kernel refuses `SCHED_IDLE` for the evaluating thread ([`lower_this_thread`]). Not the
/// lowest nice value: the time limit is wall-clock, and at `nice 19` a legitimate config starves
/// whenever the machine is busy.
fn nice_program() -> Option<&'static Path> {
    static NICE: std::sync::OnceLock<Option<&'static Path>> = std::sync::OnceLock::new();
    *NICE.get_or_init(|| {
        ["/usr/bin/nice", "/bin/nice"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file())
    })
}

/// Puts the calling thread under `SCHED_IDLE`: any other thread of the machine that wakes up (a
/// health check, an approval) preempts it at once, instead of sharing the CPU out by nice
/// values. What this thread starts inherits the policy: the evaluating child, whose CPU is the
/// hostile part, and the threads that feed and read it. The kernel work of its end is done here
/// too (reaping a child that used hundreds of MiB walks its `/proc` entries for tens of
/// milliseconds in `wait4`), so even that waits for an idle core. On an idle machine it all runs
/// at full speed. False when the kernel refuses.
fn lower_this_thread() -> bool {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    )
    .is_ok()
}

fn in_child(
    program: &Path,
    args: &[OsString],
    workdir: &Path,
    limits: &Limits,
    request: &EvalRequest,
) -> Result<ChildReport, EngineError> {
    if limits.niceness == 0 {
        return run_child(program, args, workdir, limits, request, false);
    }
    // A server's evaluation: on a thread of its own, lowered before anything is started.
    let (program, args, workdir) = (program.to_path_buf(), args.to_vec(), workdir.to_path_buf());
    let (limits, request) = (*limits, request.clone());
    let lowered = std::thread::Builder::new()
        .name("nickel-sandbox".into())
        .spawn(move || {
            let idle = lower_this_thread();
            run_child(&program, &args, &workdir, &limits, &request, !idle)
        })
        .map_err(|source| EngineError::SandboxSpawn {
            program: "the sandbox thread".into(),
            source,
        })?;
    lowered.join().unwrap_or_else(|_| {
        Err(EngineError::SandboxProtocol(
            "the sandbox thread panicked".into(),
        ))
    })
}

/// Starts the evaluator, feeds it `request`, reads its capped output and reaps it. `nice`: run it
/// under the system's `nice` (the thread could not be lowered).
fn run_child(
    program: &Path,
    args: &[OsString],
    workdir: &Path,
    limits: &Limits,
    request: &EvalRequest,
    nice: bool,
) -> Result<ChildReport, EngineError> {
    let spawn_err = |source| EngineError::SandboxSpawn {
        program: program.display().to_string(),
        source,
    };
    std::fs::create_dir_all(workdir).map_err(spawn_err)?;
    let mut command = match nice_program().filter(|_| nice) {
        Some(nice) => {
            let mut c = Command::new(nice);
            c.arg("-n").arg(limits.niceness.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    };
    let mut child = command
        .args(args)
        .arg(CHILD_COMMAND)
        // Nothing of the server's environment (keys, tokens, database URLs) reaches the child.
        .env_clear()
        .env("RUST_BACKTRACE", "0")
        .current_dir(workdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let report = |outcome| ChildReport {
        outcome,
        confinement: None,
    };
    let payload =
        serde_json::to_vec(request).map_err(|e| EngineError::SandboxProtocol(e.to_string()))?;
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(stdin) = stdin.as_mut() {
            let _ = stdin.write_all(&payload);
        }
    });
    let pid = child.id();
    let out = read_capped(child.stdout.take(), limits.max_output_bytes, pid);
    let err = read_capped(child.stderr.take(), STDERR_CAP, pid);
    let status = child.wait_timeout(limits.timeout).map_err(spawn_err)?;
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let _ = writer.join();
        return Ok(report(timeout_outcome(limits.timeout)));
    };
    let _ = writer.join();
    let (out, out_over) = out.join().unwrap_or_default();
    let (err, _) = err.join().unwrap_or_default();
    if out_over {
        return Ok(report(aborted(
            AbortReason::Output,
            format!(
                "the evaluated config is larger than the limit of {} MiB",
                limits.max_output_bytes / (1024 * 1024)
            ),
        )));
    }
    let err = String::from_utf8_lossy(&err).into_owned();
    if status.success() {
        return serde_json::from_slice(&out)
            .map_err(|e| EngineError::SandboxProtocol(e.to_string()));
    }
    let mib = limits.memory_bytes / (1024 * 1024);
    Ok(report(if err.contains("overflowed its stack") {
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
    }))
}

/// What is kept of the child's standard error (the last line names a crash).
const STDERR_CAP: usize = 64 * 1024;

/// Reads `pipe` on a thread, keeping at most `cap` bytes; past the cap the child is killed
/// (it would otherwise block on a full pipe until the timeout) and the flag is set.
fn read_capped<R: Read + Send + 'static>(
    pipe: Option<R>,
    cap: usize,
    pid: u32,
) -> std::thread::JoinHandle<(Vec<u8>, bool)> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let Some(pipe) = pipe else {
            return (buf, false);
        };
        let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
        let _ = pipe.take(limit).read_to_end(&mut buf);
        let over = buf.len() > cap;
        if over {
            buf.truncate(cap);
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        (buf, over)
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
    // Before the source is parsed or evaluated: no file, no network.
    let confinement = request.confined.then(confine);
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
    let report = ChildReport {
        outcome,
        confinement: confinement.flatten(),
    };
    match serde_json::to_writer(std::io::stdout().lock(), &report) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::from(3),
    }
}

/// Confines the calling thread and every thread it starts afterwards (so call it before the
/// evaluation thread is spawned): with Landlock, no file may be read, written or executed and
/// no TCP connection made, signals and abstract sockets stay inside; written files are capped at
/// zero bytes either way. Returns a description of the kernel restriction, or `None` when the
/// kernel offers none: then an empty environment, an empty working directory and the refusal of
/// `import` tokens before evaluation (with Nickel's own lexer) are what protect the files.
pub fn confine() -> Option<String> {
    let _ = rlimit::setrlimit(rlimit::Resource::FSIZE, 0, 0);
    landlock_all().ok().flatten()
}

fn landlock_all() -> Result<Option<String>, landlock::RulesetError> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, LandlockStatus, Ruleset, RulesetAttr, RulesetStatus,
        Scope,
    };
    let abi = ABI::V10;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .handle_access(AccessNet::from_all(abi))?
        .scope(Scope::from_all(abi))?
        .create()?
        .restrict_self()?;
    let kernel = match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => kernel_abi.map_or_else(|| format!("{effective_abi:?}"), |k| format!("V{k}")),
        _ => return Ok(None),
    };
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Some(format!("landlock ABI {kernel}, fully enforced")),
        RulesetStatus::PartiallyEnforced => {
            Some(format!("landlock ABI {kernel}, partially enforced"))
        }
        _ => None,
    })
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
    if let Some((start, end)) = request.user {
        let Some(user) = request.source.get(start..end) else {
            return aborted(AbortReason::Crash, "bad user range in the request".into());
        };
        if !parses_alone(user) {
            return match eval_source(user, &request.source_name) {
                EvalOutcome::NickelError { mut diagnostics } => {
                    shift_labels(&mut diagnostics, start);
                    EvalOutcome::NickelError { diagnostics }
                }
                _ => aborted(
                    AbortReason::Crash,
                    "the config is not one complete Nickel expression".into(),
                ),
            };
        }
    }
    eval_source(&request.source, &request.source_name)
}

/// Whether `text` parses as one complete Nickel term (with Nickel's own parser).
fn parses_alone(text: &str) -> bool {
    use nickel_lang_parser::ErrorTolerantParser;
    let alloc = nickel_lang_parser::ast::AstAlloc::new();
    let mut files = nickel_lang_parser::files::Files::empty();
    let id = files.add("<input>", text);
    nickel_lang_parser::grammar::TermParser::new()
        .parse_strict(&alloc, id, nickel_lang_parser::lexer::Lexer::new(text))
        .is_ok()
}

/// Moves every label of Nickel's diagnostics `by` bytes later (they were reported against the
/// user's text alone).
fn shift_labels(diagnostics: &mut serde_json::Value, by: usize) {
    let Some(list) = diagnostics
        .get_mut("diagnostics")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return;
    };
    for d in list {
        let Some(labels) = d
            .get_mut("labels")
            .and_then(serde_json::Value::as_array_mut)
        else {
            continue;
        };
        for label in labels {
            if let Some(range) = label.get_mut("range") {
                for key in ["start", "end"] {
                    if let Some(n) = range.get(key).and_then(serde_json::Value::as_u64) {
                        range[key] = serde_json::Value::from(n + by as u64);
                    }
                }
            }
        }
    }
}

fn eval_source(source: &str, source_name: &str) -> EvalOutcome {
    let mut ctx = nickel_lang::Context::new().with_source_name(source_name.to_owned());
    let result = ctx
        .eval_deep_for_export(source)
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
