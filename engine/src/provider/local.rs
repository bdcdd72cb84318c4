//! The `local` provider: real work on this machine, no cloud.
//!
//! A server is a directory `root/<workspace>/<server>/` with a `server.json` (name, plan, zone,
//! labels) and a block of 10 loopback ports chosen once, deterministically, from a hash of
//! `workspace/server` (from port 20000 on, skipping blocks other servers hold or that are in use).
//! Taskservs (`redis`, `nginx`, `postgres`) are real processes from the system's packages, each
//! in `root/<workspace>/<server>/taskservs/<name>/` with its `taskserv.json`, its log
//! (`service.log`) and its data, listening on 127.0.0.1 at the server's port base plus 0 (redis),
//! 1 (nginx) or 2 (postgres). Each runs under a supervisor process (see [`supervise_main`]) that
//! outlives the engine, restarts the service when it dies and stops it on SIGTERM.
//!
//! Every process started for a taskserv carries `PROVISIONING_LOCAL_TSDIR=<taskserv dir>` in its
//! environment and starts in the process group of the process we spawned; `taskserv.json`
//! records that pid with its start time. Removal stops the supervisor (which stops the service),
//! then kills whatever is left of the family: the group, the descendants (postgres children open
//! sessions of their own) and the marked processes. The supervisor is a child subreaper, so it
//! also cleans up orphans when the service dies. Destroy leaves no process and no file behind.
//!
//! As root, postgres runs as `nobody` (it refuses to run as root); when the taskserv dir is not
//! reachable by other users (a data dir under `/root`), its data and socket live in
//! `$TMPDIR/provisioning-local-<hash>/`, recorded in `taskserv.json` and removed with it. nginx
//! workers then run as root too, so that they can read the page they serve.

pub(crate) mod procs;
mod services;
mod supervise;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    Health, IdempotencyKey, Observed, Provider, ProviderError, ProviderResult, ServerSpec,
    TaskservSpec,
};
use procs::MARKER_ENV;
use services::{Binaries, Check, Kind, Launch, PgLayout};
pub use services::{LOCAL_TASKSERVS, local_taskservs_available};
pub use supervise::supervise_main;
use supervise::{CHILD_PID, Opts, SUPERVISOR_PID};

/// The hidden subcommand that runs [`supervise_main`]; `Supervisor::binary` puts it first.
pub const SUPERVISE_COMMAND: &str = "__supervise";

const SERVER_FILE: &str = "server.json";
const TASKSERV_FILE: &str = "taskserv.json";
const TASKSERVS_DIR: &str = "taskservs";
const LOG_FILE: &str = "service.log";
/// Names the aux dir (see the module docs) as soon as it exists, before `taskserv.json` does.
const AUX_FILE: &str = "aux_dir";
const ADDRESS: &str = "127.0.0.1";
const PORT_START: u16 = 20000;
const PORTS_PER_SERVER: u16 = 10;
const PORT_BLOCKS: u16 = 4000;
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an already running taskserv gets to pass its check before it is restarted.
const RUNNING_GRACE: Duration = Duration::from_secs(5);
const HEALTH_POLL: Duration = Duration::from_millis(200);
/// The supervisor waits 10 s for its child; we wait a bit longer for the supervisor.
const SUPERVISOR_STOP_WAIT: Duration = Duration::from_secs(15);
const DIRECT_STOP_WAIT: Duration = Duration::from_secs(10);
const KILL_WAIT: Duration = Duration::from_secs(10);
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);

/// How the supervisor process is started: `program args_prefix... --dir TSDIR ... -- COMMAND...`.
/// The `provisioning` binary runs [`supervise_main`] for `__supervise`, so
/// `Supervisor::binary(path_to_provisioning)` is the usual value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervisor {
    pub program: PathBuf,
    pub args_prefix: Vec<String>,
}

impl Supervisor {
    /// `program __supervise ...`.
    pub fn binary(program: PathBuf) -> Self {
        Self {
            program,
            args_prefix: vec![SUPERVISE_COMMAND.to_string()],
        }
    }

    /// No supervisor (an empty `program`): the service itself is started detached, in its own
    /// process group, with its pid in `supervisor.pid` and `child.pid`, and nothing restarts it
    /// when it exits. Meant for tests and machines where no supervisor binary is at hand.
    pub fn none() -> Self {
        Self {
            program: PathBuf::new(),
            args_prefix: Vec::new(),
        }
    }

    pub fn is_none(&self) -> bool {
        self.program.as_os_str().is_empty()
    }
}

/// What `server.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ServerRecord {
    workspace: String,
    name: String,
    plan: String,
    zone: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    port_base: u16,
    port_count: u16,
}

/// What `taskserv.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TaskservRecord {
    spec: TaskservSpec,
    port: u16,
    /// The pid of the process we started (the supervisor, or the service itself without one);
    /// it leads its own process group.
    pgid: u32,
    /// Its start time (see `procs::Proc::start`), so that a reused pid is not taken for it.
    #[serde(default)]
    start: Option<u64>,
    supervised: bool,
    installed_version: String,
    /// Data that had to live outside the taskserv dir (postgres as root, see the module docs).
    #[serde(default)]
    aux_dir: Option<PathBuf>,
    health: String,
    key: String,
}

impl TaskservRecord {
    fn matches(&self, spec: &TaskservSpec) -> bool {
        self.spec.version == spec.version && self.spec.config == spec.config
    }
}

/// The `local` provider. Cheap to share; all state lives under `root`.
#[derive(Debug)]
pub struct LocalProvider {
    root: PathBuf,
    supervisor: Supervisor,
    alloc: tokio::sync::Mutex<()>,
    locks: std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

fn permanent(msg: impl Into<String>) -> ProviderError {
    ProviderError::Permanent(msg.into())
}

fn transient(msg: impl Into<String>) -> ProviderError {
    ProviderError::Transient(msg.into())
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> ProviderError {
    let msg = format!("cannot {what} {}: {e}", path.display());
    match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            permanent(msg)
        }
        _ => transient(msg),
    }
}

fn valid_name(what: &str, name: &str) -> ProviderResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(permanent(format!(
            "{what} name {name:?} cannot be used by the local provider (letters, digits, `-`, `_` \
             and `.`, not starting with `.`)"
        )))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> ProviderResult<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| permanent(format!("{} is damaged: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path, e)),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> ProviderResult<()> {
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| permanent(format!("cannot encode {}: {e}", path.display())))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| io_err("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("write", path, e))
}

fn path_str(path: &Path) -> ProviderResult<&str> {
    path.to_str()
        .ok_or_else(|| permanent(format!("path {} is not valid UTF-8", path.display())))
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The last `n` lines of the taskserv's logs, for error messages.
fn log_tail(tsdir: &Path, n: usize) -> String {
    let mut out = String::new();
    for name in [LOG_FILE, "logs/error.log"] {
        let Ok(text) = std::fs::read_to_string(tsdir.join(name)) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(n)..];
        if !tail.is_empty() {
            out.push_str(&format!(
                "\n--- last lines of {} ---\n{}",
                tsdir.join(name).display(),
                tail.join("\n")
            ));
        }
    }
    out
}

/// What the log at `path` gained after its first `from` bytes.
fn log_since(path: &Path, from: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind((ADDRESS, port)).is_ok()
}

fn hash64(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// Waits until `pid` is gone (zombies count as gone); false when `limit` ran out first.
async fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while procs::alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

impl LocalProvider {
    pub fn new(root: PathBuf, supervisor: Supervisor) -> Self {
        Self {
            root,
            supervisor,
            alloc: tokio::sync::Mutex::new(()),
            locks: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/<workspace>/<server>`.
    pub fn server_dir(&self, workspace: &str, server: &str) -> PathBuf {
        self.root.join(workspace).join(server)
    }

    /// `root/<workspace>/<server>/taskservs/<name>`.
    pub fn taskserv_dir(&self, workspace: &str, server: &str, name: &str) -> PathBuf {
        self.server_dir(workspace, server)
            .join(TASKSERVS_DIR)
            .join(name)
    }

    /// The supervisor's pid and the service's pid, when the taskserv is running.
    pub fn taskserv_pids(&self, spec: &TaskservSpec) -> Option<(u32, Option<u32>)> {
        let tsdir = self.taskserv_dir(&spec.workspace, &spec.server, &spec.name);
        let rec: TaskservRecord = read_json(&tsdir.join(TASKSERV_FILE)).ok()??;
        if !self.running(&tsdir, &rec) {
            return None;
        }
        let child = read_pid(&tsdir.join(CHILD_PID)).filter(|p| procs::alive(*p));
        Some((rec.pgid, child))
    }

    fn lock_for(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(path.to_path_buf()).or_default().clone()
    }

    fn check_server_names(spec: &ServerSpec) -> ProviderResult<()> {
        valid_name("workspace", &spec.workspace)?;
        valid_name("server", &spec.name)
    }

    fn check_taskserv_names(spec: &TaskservSpec) -> ProviderResult<Kind> {
        valid_name("workspace", &spec.workspace)?;
        valid_name("server", &spec.server)?;
        Kind::parse(&spec.name).ok_or_else(|| {
            permanent(format!(
                "the local provider cannot run taskserv `{}`; it can run: {}",
                spec.name,
                LOCAL_TASKSERVS.join(", ")
            ))
        })
    }

    fn observe_server(&self, rec: &ServerRecord) -> Observed {
        let dir = self.server_dir(&rec.workspace, &rec.name);
        let last = rec.port_base + rec.port_count.saturating_sub(1);
        let attrs = BTreeMap::from([
            ("dir".to_string(), json!(dir.to_string_lossy())),
            ("address".to_string(), json!(ADDRESS)),
            ("port_base".to_string(), json!(rec.port_base)),
            (
                "port_range".to_string(),
                json!(format!("{}-{last}", rec.port_base)),
            ),
            ("plan".to_string(), json!(rec.plan)),
            ("zone".to_string(), json!(rec.zone)),
            ("labels".to_string(), json!(rec.labels)),
        ]);
        Observed {
            provider_id: format!("local:{}/{}", rec.workspace, rec.name),
            attrs,
        }
    }

    fn observe_taskserv(&self, tsdir: &Path, rec: &TaskservRecord) -> Observed {
        let spec = &rec.spec;
        let attrs = BTreeMap::from([
            ("address".to_string(), json!(ADDRESS)),
            ("port".to_string(), json!(rec.port)),
            ("pid".to_string(), json!(rec.pgid)),
            ("supervised".to_string(), json!(rec.supervised)),
            ("version".to_string(), json!(spec.version)),
            (
                "installed_version".to_string(),
                json!(rec.installed_version),
            ),
            ("health".to_string(), json!(rec.health)),
            ("dir".to_string(), json!(tsdir.to_string_lossy())),
            (
                "log".to_string(),
                json!(tsdir.join(LOG_FILE).to_string_lossy()),
            ),
        ]);
        Observed {
            provider_id: format!("local:{}/{}/{}", spec.workspace, spec.server, spec.name),
            attrs,
        }
    }

    /// Port bases recorded by every server under `root`.
    fn used_port_bases(&self) -> BTreeSet<u16> {
        let mut used = BTreeSet::new();
        for ws in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            for server in std::fs::read_dir(ws.path()).into_iter().flatten().flatten() {
                if let Ok(Some(rec)) = read_json::<ServerRecord>(&server.path().join(SERVER_FILE)) {
                    used.insert(rec.port_base);
                }
            }
        }
        used
    }

    /// A free block of ports, the first one probing from the hash of `workspace/server`.
    fn allocate_ports(&self, workspace: &str, server: &str) -> ProviderResult<u16> {
        let used = self.used_port_bases();
        let start = hash64(&format!("{workspace}/{server}")) % u64::from(PORT_BLOCKS);
        let start = u16::try_from(start).unwrap_or(0);
        for i in 0..PORT_BLOCKS {
            let block = (start + i) % PORT_BLOCKS;
            let base = PORT_START + block * PORTS_PER_SERVER;
            if used.contains(&base) {
                continue;
            }
            if (base..base + PORTS_PER_SERVER).all(port_free) {
                return Ok(base);
            }
        }
        Err(transient(format!(
            "no free block of {PORTS_PER_SERVER} loopback ports between {PORT_START} and {}",
            PORT_START + PORT_BLOCKS * PORTS_PER_SERVER - 1
        )))
    }

    fn read_server(&self, workspace: &str, server: &str) -> ProviderResult<Option<ServerRecord>> {
        read_json(&self.server_dir(workspace, server).join(SERVER_FILE))
    }

    /// Whether the process we started for the taskserv is still there.
    fn running(&self, tsdir: &Path, rec: &TaskservRecord) -> bool {
        match rec.start {
            Some(start) => procs::same_process(rec.pgid, start),
            None => {
                procs::alive(rec.pgid)
                    && tsdir
                        .to_str()
                        .is_some_and(|t| procs::has_marker(rec.pgid, t))
            }
        }
    }

    /// Stops every process of the taskserv in `tsdir` (keeping its files): asks the process we
    /// started to stop (the supervisor stops the service), then kills whatever of the family is
    /// left.
    async fn stop_processes(
        &self,
        tsdir: &Path,
        rec: Option<&TaskservRecord>,
    ) -> ProviderResult<()> {
        let tsdir_s = path_str(tsdir)?;
        let pgid = rec
            .map(|r| r.pgid)
            .or_else(|| read_pid(&tsdir.join(SUPERVISOR_PID)));
        let start = rec.and_then(|r| r.start);
        // Who is there now, descendants included: some leave the group and lose the marker.
        let before = procs::family(pgid, start, tsdir_s);
        let leader = match (rec, pgid) {
            (Some(r), _) if self.running(tsdir, r) => Some(r.pgid),
            (None, Some(pid)) if procs::alive(pid) && procs::has_marker(pid, tsdir_s) => Some(pid),
            _ => None,
        };
        if let Some(pid) = leader {
            let supervised = rec.is_none_or(|r| r.supervised);
            let (sig, wait) = if supervised {
                (Signal::SIGTERM, SUPERVISOR_STOP_WAIT)
            } else {
                let kind = rec.and_then(|r| Kind::parse(&r.spec.name));
                (
                    kind.map_or(Signal::SIGTERM, Kind::stop_signal),
                    DIRECT_STOP_WAIT,
                )
            };
            procs::signal(pid, sig);
            wait_gone(pid, wait).await;
        }
        let deadline = Instant::now() + KILL_WAIT;
        loop {
            let family = procs::family(pgid, start, tsdir_s);
            // `family` only counts group members when the group is ours.
            let group = pgid.filter(|g| family.iter().any(|p| p.pgrp == *g));
            let mut left: Vec<u32> = family.iter().map(|p| p.pid).collect();
            left.extend(
                before
                    .iter()
                    .filter(|p| procs::same_process(p.pid, p.start))
                    .map(|p| p.pid),
            );
            left.sort_unstable();
            left.dedup();
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(transient(format!(
                    "processes {left:?} of {} do not go away even after SIGKILL",
                    tsdir.display()
                )));
            }
            if let Some(g) = group {
                procs::signal_group(g, Signal::SIGKILL);
            }
            for pid in &left {
                procs::signal(*pid, Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = std::fs::remove_file(tsdir.join(SUPERVISOR_PID));
        let _ = std::fs::remove_file(tsdir.join(CHILD_PID));
        Ok(())
    }

    /// Stops the taskserv in `tsdir` and removes its files (and its aux dir).
    async fn destroy_taskserv_dir(&self, tsdir: &Path) -> ProviderResult<()> {
        if !tsdir.exists() {
            return Ok(());
        }
        let mut rec: Option<TaskservRecord> = read_json(&tsdir.join(TASKSERV_FILE)).unwrap_or(None);
        let aux = rec.as_ref().and_then(|r| r.aux_dir.clone()).or_else(|| {
            let text = std::fs::read_to_string(tsdir.join(AUX_FILE)).ok()?;
            Some(PathBuf::from(text.trim())).filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("provisioning-local-"))
            })
        });
        if let Some(r) = rec.as_mut() {
            r.aux_dir = aux.clone();
        }
        self.stop_processes(tsdir, rec.as_ref()).await?;
        if let Some(aux) = &aux {
            match std::fs::remove_dir_all(aux) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err("remove", aux, e));
                }
                _ => {}
            }
        }
        match std::fs::remove_dir_all(tsdir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("remove", tsdir, e)),
            _ => {
                if let Some(parent) = tsdir.parent() {
                    let _ = std::fs::remove_dir(parent); // only when empty
                }
                Ok(())
            }
        }
    }

    /// Starts the detached process (the supervisor, or the service itself) and returns its pid.
    /// Returns its pid and start time.
    fn spawn_detached(&self, tsdir: &Path, launch: &Launch) -> ProviderResult<(u32, Option<u64>)> {
        let log_path = tsdir.join(LOG_FILE);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_err("open", &log_path, e))?;
        let log2 = log.try_clone().map_err(|e| io_err("open", &log_path, e))?;
        let (program, args, cwd) = if self.supervisor.is_none() {
            let (program, args) = launch
                .argv
                .split_first()
                .ok_or_else(|| permanent("empty command line"))?;
            (PathBuf::from(program), args.to_vec(), launch.cwd.clone())
        } else {
            let opts = Opts {
                dir: tsdir.to_path_buf(),
                cwd: Some(launch.cwd.clone()),
                stop_signal: launch.stop_signal,
                backoff: Duration::from_millis(500),
                command: launch.argv.clone(),
            };
            let mut args = self.supervisor.args_prefix.clone();
            args.extend(opts.to_args());
            (self.supervisor.program.clone(), args, tsdir.to_path_buf())
        };
        let mut cmd = std::process::Command::new(&program);
        cmd.args(&args)
            .current_dir(&cwd)
            .env(MARKER_ENV, tsdir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| permanent(format!("cannot start {}: {e}", program.display())))?;
        let pid = child.id();
        // Read before the reaper thread can reap it, so that the pid is still ours.
        let start = procs::start_time(pid);
        // Reap it when it exits, so that it does not linger as a zombie of this process.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let _ = std::fs::write(tsdir.join(SUPERVISOR_PID), format!("{pid}\n"));
        if self.supervisor.is_none() {
            let _ = std::fs::write(tsdir.join(CHILD_PID), format!("{pid}\n"));
        }
        Ok((pid, start))
    }

    /// Polls `check` until it passes, the process we started is gone, or `limit` runs out.
    /// Polls `check` until it passes, the process we started is gone, or `limit` runs out. With
    /// `log_from` (the log's length before the start), it also gives up once the supervisor has
    /// had to restart the service twice: a service that keeps crashing will not get healthy.
    async fn wait_healthy(
        &self,
        tsdir: &Path,
        rec: &TaskservRecord,
        check: &Check,
        limit: Duration,
        log_from: Option<u64>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let last = match check.run().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if !self.running(tsdir, rec) {
                return Err(format!("the process exited ({last})"));
            }
            if let Some(from) = log_from {
                let restarts = log_since(&tsdir.join(LOG_FILE), from)
                    .matches(supervise::RESTART_MESSAGE)
                    .count();
                if restarts >= 2 {
                    return Err(format!("it keeps exiting ({restarts} restarts; {last})"));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not healthy after {limit:?}: {last}"));
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// Where postgres keeps its data and as whom it runs.
    fn pg_layout(
        &self,
        tsdir: &Path,
        as_root: bool,
    ) -> ProviderResult<(PgLayout, Option<PathBuf>)> {
        if !as_root {
            let layout = PgLayout {
                data: tsdir.join("data"),
                socket: tsdir.join("run"),
                run_as: Vec::new(),
            };
            for d in [&layout.data, &layout.socket] {
                std::fs::create_dir_all(d).map_err(|e| io_err("create", d, e))?;
            }
            return Ok((layout, None));
        }
        let (base, aux) = if procs::reachable_by_others(tsdir) {
            (tsdir.to_path_buf(), None)
        } else {
            let tmp = std::env::temp_dir();
            if !procs::reachable_by_others(&tmp) {
                return Err(permanent(format!(
                    "postgres must run as `nobody`, who can reach neither {} nor {}",
                    tsdir.display(),
                    tmp.display()
                )));
            }
            let aux = tmp.join(format!(
                "provisioning-local-{:016x}",
                hash64(path_str(tsdir)?)
            ));
            (aux.clone(), Some(aux))
        };
        let (uid, gid) = procs::nobody();
        let layout = PgLayout {
            data: base.join("data"),
            socket: base.join("run"),
            run_as: if let Some(setpriv) = services::which("setpriv") {
                vec![
                    path_str(&setpriv)?.to_string(),
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".into(),
                    "--".into(),
                ]
            } else if let Some(runuser) = services::which("runuser") {
                vec![
                    path_str(&runuser)?.to_string(),
                    "-u".into(),
                    "nobody".into(),
                    "--".into(),
                ]
            } else {
                return Err(permanent(
                    "postgres refuses to run as root and neither `setpriv` nor `runuser` is \
                     installed to run it as `nobody`",
                ));
            },
        };
        std::fs::create_dir_all(&base).map_err(|e| io_err("create", &base, e))?;
        for d in [&layout.data, &layout.socket] {
            std::fs::create_dir_all(d).map_err(|e| io_err("create", d, e))?;
            std::os::unix::fs::chown(d, Some(uid), Some(gid)).map_err(|e| io_err("chown", d, e))?;
        }
        Ok((layout, aux))
    }

    /// `initdb` unless the data dir already holds a cluster.
    async fn initdb(
        &self,
        tsdir: &Path,
        bin: &Binaries,
        layout: &PgLayout,
        installed: &str,
    ) -> ProviderResult<()> {
        let pg_version = layout.data.join("PG_VERSION");
        if let Ok(existing) = std::fs::read_to_string(&pg_version) {
            let existing = existing.trim();
            let major = installed.split('.').next().unwrap_or("");
            if !major.is_empty() && existing != major {
                return Err(permanent(format!(
                    "{} holds a postgres {existing} cluster but the installed postgres is {installed}; \
                     remove the taskserv to start afresh",
                    layout.data.display()
                )));
            }
            return Ok(());
        }
        let initdb = bin
            .initdb
            .as_ref()
            .ok_or_else(|| permanent("`initdb` not found"))?;
        // A half-done earlier attempt: start again from an empty directory.
        if std::fs::read_dir(&layout.data)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
        {
            let meta =
                std::fs::metadata(&layout.data).map_err(|e| io_err("read", &layout.data, e))?;
            std::fs::remove_dir_all(&layout.data).map_err(|e| io_err("clear", &layout.data, e))?;
            std::fs::create_dir_all(&layout.data).map_err(|e| io_err("create", &layout.data, e))?;
            use std::os::unix::fs::MetadataExt;
            let _ = std::os::unix::fs::chown(&layout.data, Some(meta.uid()), Some(meta.gid()));
        }
        let mut argv = layout.run_as.clone();
        argv.extend([
            path_str(initdb)?.to_string(),
            "-D".into(),
            path_str(&layout.data)?.to_string(),
            "-U".into(),
            "postgres".into(),
            "--auth=trust".into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C".into(),
            "--no-sync".into(),
        ]);
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| permanent("empty initdb command"))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(&layout.data)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = match tokio::time::timeout(INITDB_TIMEOUT, cmd.output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(permanent(format!("cannot run {program}: {e}"))),
            Err(_) => {
                return Err(transient(format!(
                    "initdb did not finish within {INITDB_TIMEOUT:?}"
                )));
            }
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log_path = tsdir.join(LOG_FILE);
        if let Ok(mut log) = OpenOptions::new().create(true).append(true).open(&log_path) {
            use std::io::Write;
            let _ = writeln!(log, "$ {}\n{text}", argv.join(" "));
        }
        if !out.status.success() {
            let tail: Vec<&str> = text
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(permanent(format!(
                "initdb failed ({}):\n{}",
                out.status,
                tail.join("\n")
            )));
        }
        Ok(())
    }

    /// `nginx -t` on the generated config, so that mistakes come back as such.
    async fn nginx_test(&self, launch: &Launch) -> ProviderResult<()> {
        let (program, args) = launch
            .argv
            .split_first()
            .ok_or_else(|| permanent("empty nginx command"))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .arg("-t")
            .arg("-q")
            .current_dir(&launch.cwd)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(Duration::from_secs(10), cmd.output()).await {
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => Err(permanent(format!(
                "nginx rejects the generated config: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
            Ok(Err(e)) => Err(permanent(format!("cannot run {program}: {e}"))),
            Err(_) => Err(transient("`nginx -t` did not finish within 10s")),
        }
    }

    /// Prepares the taskserv's files, starts it and waits until it is healthy.
    async fn start_taskserv(
        &self,
        key: &IdempotencyKey,
        spec: &TaskservSpec,
        kind: Kind,
        server: &ServerRecord,
        tsdir: &Path,
    ) -> ProviderResult<TaskservRecord> {
        let port = server.port_base + kind.port_offset();
        let config = services::check_config(kind, &spec.config).map_err(permanent)?;
        let bin = Binaries::resolve(kind, &spec.version).map_err(permanent)?;
        let check = Check::for_kind(kind, port, &bin).map_err(permanent)?;
        if !port_free(port) {
            return Err(transient(format!(
                "port {port} on {ADDRESS}, which taskserv `{}` of server `{}` uses, is taken by \
                 another process",
                spec.name, spec.server
            )));
        }
        std::fs::create_dir_all(tsdir).map_err(|e| io_err("create", tsdir, e))?;
        let installed_version = bin.version(kind).await;
        let as_root = procs::is_root();
        let (launch, aux_dir) = match kind {
            Kind::Redis => (
                services::redis_launch(&bin, tsdir, port, &config).map_err(permanent)?,
                None,
            ),
            Kind::Nginx => {
                let launch = services::nginx_prepare(&bin, tsdir, port, &config, as_root)
                    .map_err(permanent)?;
                self.nginx_test(&launch).await?;
                (launch, None)
            }
            Kind::Postgres => {
                let (layout, aux) = self.pg_layout(tsdir, as_root)?;
                // Record the aux dir before initdb, so that a remove after a failure finds it.
                if let Some(aux) = &aux {
                    let _ = std::fs::write(tsdir.join(AUX_FILE), path_str(aux)?);
                }
                self.initdb(tsdir, &bin, &layout, &installed_version)
                    .await?;
                (
                    services::postgres_launch(&bin, &layout, port, &config).map_err(permanent)?,
                    aux,
                )
            }
        };
        let log_from = std::fs::metadata(tsdir.join(LOG_FILE)).map_or(0, |m| m.len());
        let (pgid, start) = self.spawn_detached(tsdir, &launch)?;
        let rec = TaskservRecord {
            spec: spec.clone(),
            port,
            pgid,
            start,
            supervised: !self.supervisor.is_none(),
            installed_version,
            aux_dir,
            health: check.describe(),
            key: key.0.clone(),
        };
        write_json(&tsdir.join(TASKSERV_FILE), &rec)?;
        if let Err(why) = self
            .wait_healthy(tsdir, &rec, &check, HEALTH_TIMEOUT, Some(log_from))
            .await
        {
            let tail = log_tail(tsdir, 20);
            self.stop_processes(tsdir, Some(&rec)).await?;
            return Err(transient(format!(
                "taskserv `{}` on local server `{}` did not become healthy ({}): {why}{tail}",
                spec.name,
                spec.server,
                check.describe()
            )));
        }
        Ok(rec)
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    async fn create_server(
        &self,
        _key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        Self::check_server_names(spec)?;
        let _alloc = self.alloc.lock().await;
        let dir = self.server_dir(&spec.workspace, &spec.name);
        let lock = self.lock_for(&dir);
        let _guard = lock.lock().await;
        if let Some(rec) = self.read_server(&spec.workspace, &spec.name)? {
            return Ok(self.observe_server(&rec));
        }
        let port_base = self.allocate_ports(&spec.workspace, &spec.name)?;
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
        let rec = ServerRecord {
            workspace: spec.workspace.clone(),
            name: spec.name.clone(),
            plan: spec.plan.clone(),
            zone: spec.zone.clone(),
            labels: spec.labels.clone(),
            port_base,
            port_count: PORTS_PER_SERVER,
        };
        write_json(&dir.join(SERVER_FILE), &rec)?;
        Ok(self.observe_server(&rec))
    }

    async fn update_server(
        &self,
        _key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        Self::check_server_names(spec)?;
        let dir = self.server_dir(&spec.workspace, &spec.name);
        let lock = self.lock_for(&dir);
        let _guard = lock.lock().await;
        let Some(mut rec) = self.read_server(&spec.workspace, &spec.name)? else {
            return Err(permanent(format!(
                "local server `{}` of workspace `{}` does not exist; create it first",
                spec.name, spec.workspace
            )));
        };
        if rec.plan != spec.plan || rec.labels != spec.labels {
            rec.plan = spec.plan.clone();
            rec.labels = spec.labels.clone();
            write_json(&dir.join(SERVER_FILE), &rec)?;
        }
        Ok(self.observe_server(&rec))
    }

    async fn inspect_server(&self, spec: &ServerSpec) -> ProviderResult<Option<Observed>> {
        Self::check_server_names(spec)?;
        Ok(self
            .read_server(&spec.workspace, &spec.name)?
            .map(|rec| self.observe_server(&rec)))
    }

    async fn delete_server(&self, _key: &IdempotencyKey, spec: &ServerSpec) -> ProviderResult<()> {
        Self::check_server_names(spec)?;
        let dir = self.server_dir(&spec.workspace, &spec.name);
        let lock = self.lock_for(&dir);
        let _guard = lock.lock().await;
        if dir.exists() {
            let taskservs = dir.join(TASKSERVS_DIR);
            for entry in std::fs::read_dir(&taskservs)
                .into_iter()
                .flatten()
                .flatten()
            {
                let tsdir = entry.path();
                let ts_lock = self.lock_for(&tsdir);
                let _ts_guard = ts_lock.lock().await;
                self.destroy_taskserv_dir(&tsdir).await?;
            }
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err("remove", &dir, e));
                }
                _ => {}
            }
        }
        if let Some(ws) = dir.parent() {
            let _ = std::fs::remove_dir(ws); // only when empty
        }
        Ok(())
    }

    async fn install_taskserv(
        &self,
        key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<Observed> {
        let kind = Self::check_taskserv_names(spec)?;
        let Some(server) = self.read_server(&spec.workspace, &spec.server)? else {
            return Err(permanent(format!(
                "local server `{}` of workspace `{}` does not exist; create it before its taskservs",
                spec.server, spec.workspace
            )));
        };
        let tsdir = self.taskserv_dir(&spec.workspace, &spec.server, &spec.name);
        let lock = self.lock_for(&tsdir);
        let _guard = lock.lock().await;
        let existing: Option<TaskservRecord> = read_json(&tsdir.join(TASKSERV_FILE))?;
        if let Some(rec) = existing {
            if rec.matches(spec) && self.running(&tsdir, &rec) {
                let bin = Binaries::resolve(kind, &spec.version).map_err(permanent)?;
                let check = Check::for_kind(kind, rec.port, &bin).map_err(permanent)?;
                if self
                    .wait_healthy(&tsdir, &rec, &check, RUNNING_GRACE, None)
                    .await
                    .is_ok()
                {
                    return Ok(self.observe_taskserv(&tsdir, &rec));
                }
            }
            self.stop_processes(&tsdir, Some(&rec)).await?;
        }
        let rec = self
            .start_taskserv(key, spec, kind, &server, &tsdir)
            .await?;
        Ok(self.observe_taskserv(&tsdir, &rec))
    }

    async fn taskserv_health(&self, spec: &TaskservSpec) -> ProviderResult<Health> {
        let kind = Self::check_taskserv_names(spec)?;
        let tsdir = self.taskserv_dir(&spec.workspace, &spec.server, &spec.name);
        let Some(rec) = read_json::<TaskservRecord>(&tsdir.join(TASKSERV_FILE))? else {
            return Ok(Health::Missing);
        };
        if !self.running(&tsdir, &rec) {
            let what = if rec.supervised {
                "its supervisor"
            } else {
                "the process"
            };
            return Ok(Health::Unhealthy(format!(
                "not running: {what} (pid {}) is gone; see {}",
                rec.pgid,
                tsdir.join(LOG_FILE).display()
            )));
        }
        let check = match Binaries::resolve(kind, &rec.spec.version)
            .and_then(|bin| Check::for_kind(kind, rec.port, &bin))
        {
            Ok(check) => check,
            Err(e) => return Ok(Health::Unhealthy(e)),
        };
        Ok(match check.run().await {
            Ok(()) => Health::Healthy,
            Err(reason) => Health::Unhealthy(reason),
        })
    }

    async fn remove_taskserv(
        &self,
        _key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<()> {
        Self::check_taskserv_names(spec)?;
        let tsdir = self.taskserv_dir(&spec.workspace, &spec.server, &spec.name);
        let lock = self.lock_for(&tsdir);
        let _guard = lock.lock().await;
        self.destroy_taskserv_dir(&tsdir).await
    }
}
