//! The supervisor: a small process that outlives the engine, keeps one service running and stops
//! it on request. Started as `<program> <args_prefix...> --dir TSDIR [--cwd DIR]
//! [--stop-signal SIG] [--backoff-ms N] -- COMMAND...`; see [`supervise_main`].

use std::path::PathBuf;
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

/// The pid files the supervisor keeps in the taskserv dir.
pub(crate) const SUPERVISOR_PID: &str = "supervisor.pid";
pub(crate) const CHILD_PID: &str = "child.pid";

/// What the supervisor logs when it restarts the service (the engine counts these).
pub(crate) const RESTART_MESSAGE: &str = "; restarting in ";
/// Restarts allowed within [`RESTART_WINDOW`] before the supervisor gives up.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long the child gets to stop after the stop signal before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Opts {
    pub(crate) dir: PathBuf,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) stop_signal: Signal,
    pub(crate) backoff: Duration,
    pub(crate) command: Vec<String>,
}

pub(crate) fn parse_signal(s: &str) -> Result<Signal, String> {
    let name = if s.starts_with("SIG") {
        s.to_string()
    } else {
        format!("SIG{s}")
    };
    Signal::from_str(&name).map_err(|_| format!("unknown signal `{s}`"))
}

impl Opts {
    pub(crate) fn parse(args: &[String]) -> Result<Opts, String> {
        let mut dir = None;
        let mut cwd = None;
        let mut stop_signal = Signal::SIGTERM;
        let mut backoff = Duration::from_millis(500);
        let mut it = args.iter();
        let mut command = Vec::new();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("`{name}` needs a value"))
            };
            match arg.as_str() {
                "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
                "--cwd" => cwd = Some(PathBuf::from(value("--cwd")?)),
                "--stop-signal" => stop_signal = parse_signal(&value("--stop-signal")?)?,
                "--backoff-ms" => {
                    let v = value("--backoff-ms")?;
                    let ms: u64 = v.parse().map_err(|_| format!("bad --backoff-ms `{v}`"))?;
                    backoff = Duration::from_millis(ms);
                }
                "--" => {
                    command = it.cloned().collect();
                    break;
                }
                other => return Err(format!("unexpected argument `{other}`")),
            }
        }
        let dir = dir.ok_or("missing `--dir TSDIR`")?;
        if command.is_empty() {
            return Err("missing `-- COMMAND...`".into());
        }
        Ok(Opts {
            dir,
            cwd,
            stop_signal,
            backoff,
            command,
        })
    }

    /// The arguments that [`Opts::parse`] reads back.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = vec!["--dir".to_string(), self.dir.to_string_lossy().into_owned()];
        if let Some(cwd) = &self.cwd {
            args.extend(["--cwd".to_string(), cwd.to_string_lossy().into_owned()]);
        }
        let sig = self.stop_signal.as_str();
        args.extend([
            "--stop-signal".to_string(),
            sig.trim_start_matches("SIG").to_string(),
        ]);
        args.extend([
            "--backoff-ms".to_string(),
            self.backoff.as_millis().to_string(),
        ]);
        args.push("--".into());
        args.extend(self.command.iter().cloned());
        args
    }
}

fn log(msg: &str) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    eprintln!("[supervisor {} t={secs}] {msg}", std::process::id());
}

/// The supervisor's entry point; `args` are what follows `__supervise` on the command line.
///
/// Writes `TSDIR/supervisor.pid`, starts the command (stdin, stdout and stderr inherited; the
/// engine points them at the taskserv's log file), writes `TSDIR/child.pid`, and restarts the
/// command whenever it exits, with exponential backoff, giving up (exit 1) after 5 restarts within
/// 60 s. On SIGTERM or SIGINT it sends the stop signal (SIGTERM unless `--stop-signal`) to the
/// child, waits up to 10 s before SIGKILL, removes the pid files and exits 0. SIGHUP is ignored.
/// Returns the process exit code; 2 for bad arguments.
pub fn supervise_main(args: &[String]) -> i32 {
    let opts = match Opts::parse(args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("supervise: {e}");
            eprintln!(
                "usage: __supervise --dir TSDIR [--cwd DIR] [--stop-signal SIG] [--backoff-ms N] \
                 -- COMMAND..."
            );
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("supervise: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(supervise(opts))
}

/// Kills and reaps what the child left behind: the rest of our process group, and the orphans
/// the kernel handed to us as their subreaper (postgres children live in sessions of their own).
async fn sweep() {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mine: Vec<super::procs::Proc> = super::procs::all()
            .into_iter()
            .filter(|p| p.ppid == me || p.pgrp == me)
            .collect();
        for p in mine.iter().filter(|p| p.ppid == me && p.zombie()) {
            if let Some(pid) = super::procs::to_pid(p.pid) {
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            }
        }
        let live: Vec<u32> = mine.iter().filter(|p| !p.zombie()).map(|p| p.pid).collect();
        if live.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            log(&format!("processes {live:?} outlive SIGKILL"));
            return;
        }
        log(&format!("killing leftover processes {live:?}"));
        for pid in live {
            super::procs::signal(pid, Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn remove_pid_files(opts: &Opts) {
    let _ = std::fs::remove_file(opts.dir.join(CHILD_PID));
    let _ = std::fs::remove_file(opts.dir.join(SUPERVISOR_PID));
}

enum Event {
    Stop(&'static str),
    Exited(String),
    Ignore,
}

async fn supervise(opts: Opts) -> i32 {
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            log("cannot install signal handlers");
            return 1;
        }
    };
    if let Err(e) = std::fs::write(
        opts.dir.join(SUPERVISOR_PID),
        format!("{}\n", std::process::id()),
    ) {
        log(&format!(
            "cannot write {}: {e}",
            opts.dir.join(SUPERVISOR_PID).display()
        ));
        return 1;
    }
    let mut restarts: Vec<Instant> = Vec::new();
    loop {
        let mut cmd = tokio::process::Command::new(&opts.command[0]);
        cmd.args(&opts.command[1..])
            .current_dir(opts.cwd.as_ref().unwrap_or(&opts.dir))
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        let spawned = cmd.spawn();
        let event = match spawned {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                log(&format!(
                    "started `{}` as pid {pid}",
                    opts.command.join(" ")
                ));
                let _ = std::fs::write(opts.dir.join(CHILD_PID), format!("{pid}\n"));
                let event = loop {
                    let event = tokio::select! {
                        _ = term.recv() => Event::Stop("SIGTERM"),
                        _ = int.recv() => Event::Stop("SIGINT"),
                        _ = hup.recv() => Event::Ignore,
                        status = child.wait() => Event::Exited(match status {
                            Ok(s) => s.to_string(),
                            Err(e) => format!("unknown status ({e})"),
                        }),
                    };
                    if !matches!(event, Event::Ignore) {
                        break event;
                    }
                };
                if let Event::Stop(why) = event {
                    log(&format!(
                        "{why}: stopping pid {pid} with {}",
                        opts.stop_signal
                    ));
                    super::procs::signal(pid, opts.stop_signal);
                    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                        Ok(status) => log(&format!("pid {pid} stopped: {status:?}")),
                        Err(_) => {
                            log(&format!(
                                "pid {pid} still running after {STOP_GRACE:?}; SIGKILL"
                            ));
                            let _ = child.start_kill();
                            let _ = child.wait().await;
                        }
                    }
                    sweep().await;
                    remove_pid_files(&opts);
                    return 0;
                }
                event
            }
            Err(e) => Event::Exited(format!("could not be started: {e}")),
        };
        let _ = std::fs::remove_file(opts.dir.join(CHILD_PID));
        let Event::Exited(status) = event else {
            continue;
        };
        sweep().await;
        let now = Instant::now();
        restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if restarts.len() >= MAX_RESTARTS {
            log(&format!(
                "`{}` exited ({status}); giving up after {MAX_RESTARTS} restarts within {RESTART_WINDOW:?}",
                opts.command[0]
            ));
            remove_pid_files(&opts);
            return 1;
        }
        let exp = u32::try_from(restarts.len()).unwrap_or(u32::MAX).min(16);
        let backoff = opts.backoff.saturating_mul(1 << exp).min(MAX_BACKOFF);
        restarts.push(now);
        log(&format!(
            "`{}` exited ({status}){RESTART_MESSAGE}{backoff:?}",
            opts.command[0]
        ));
        tokio::select! {
            _ = term.recv() => { log("SIGTERM while waiting to restart"); remove_pid_files(&opts); return 0; }
            _ = int.recv() => { log("SIGINT while waiting to restart"); remove_pid_files(&opts); return 0; }
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_round_trip() {
        let opts = Opts {
            dir: "/tmp/x y".into(),
            cwd: Some("/tmp/d".into()),
            stop_signal: Signal::SIGINT,
            backoff: Duration::from_millis(20),
            command: strings(&["redis-server", "--port", "1", "--", "x"]),
        };
        assert_eq!(Opts::parse(&opts.to_args()).unwrap(), opts);
        let plain = Opts::parse(&strings(&["--dir", "/d", "--", "sleep", "1"])).unwrap();
        assert_eq!(plain.stop_signal, Signal::SIGTERM);
        assert_eq!(plain.cwd, None);
    }

    #[test]
    fn bad_args_exit_2() {
        assert_eq!(supervise_main(&strings(&["--dir", "/d"])), 2);
        assert_eq!(supervise_main(&strings(&["--", "true"])), 2);
        assert_eq!(supervise_main(&strings(&["--bogus"])), 2);
        assert!(
            Opts::parse(&strings(&[
                "--dir",
                "/d",
                "--stop-signal",
                "NOPE",
                "--",
                "x"
            ]))
            .is_err()
        );
    }
}
