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

mod health;
mod lifecycle;
mod ports;
mod postgres;
pub(crate) mod procs;
mod records;
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
use health::log_tail;
use lifecycle::read_pid;
use ports::{hash64, port_free};
use procs::MARKER_ENV;
use records::{ServerRecord, TaskservRecord, read_json, write_json};
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

fn path_str(path: &Path) -> ProviderResult<&str> {
    path.to_str()
        .ok_or_else(|| permanent(format!("path {} is not valid UTF-8", path.display())))
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
