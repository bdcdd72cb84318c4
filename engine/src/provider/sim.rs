//! `sim`: a simulated cloud. It keeps servers and taskservs in memory, takes configurable time,
//! fails on demand, and writes every side effect it performs to a ledger (a JSON-lines file,
//! synced per entry) so tests can count exactly what happened, across crashes and restarts.
//! Like a real cloud API with client tokens, it performs a mutating call at most once per
//! idempotency key and answers repeats with the first result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Health, IdempotencyKey, Observed, Provider, ProviderError, ProviderResult, ServerSpec,
    TaskservSpec,
};
use crate::runtime::{Rng, SeededRng};

/// How the simulated cloud behaves.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SimOptions {
    /// Each call takes between these many milliseconds (inclusive).
    pub latency_ms: (u64, u64),
    /// Chance that a call fails with a retryable error before doing anything.
    pub flaky_rate: f64,
    /// Chance that a call does its work but the answer is lost (a retryable error after the
    /// side effect): the caller must retry with the same key and must not get a duplicate.
    pub lost_response_rate: f64,
    /// Resources whose every mutating call fails for good: `web-3` (a server) or
    /// `web-3/redis` (a taskserv).
    pub fail: BTreeSet<String>,
    pub seed: u64,
}

impl SimOptions {
    /// From the settings `var` looks up: `PROVISIONING_SIM_LATENCY_MS` (`5` or `2-10`),
    /// `PROVISIONING_SIM_FLAKY_RATE`, `PROVISIONING_SIM_LOST_RESPONSE_RATE`,
    /// `PROVISIONING_SIM_FAIL` (comma-separated names) and `PROVISIONING_SIM_SEED`. The server
    /// passes its environment; a blank value counts as unset.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<SimOptions, String> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut options = SimOptions::default();
        if let Some(text) = var("PROVISIONING_SIM_LATENCY_MS") {
            let parse = |s: &str| {
                s.trim().parse::<u64>().map_err(|_| {
                    format!(
                        "PROVISIONING_SIM_LATENCY_MS: `{text}` is not N or MIN-MAX milliseconds"
                    )
                })
            };
            options.latency_ms = match text.split_once('-') {
                Some((a, b)) => (parse(a)?, parse(b)?),
                None => {
                    let n = parse(&text)?;
                    (n, n)
                }
            };
            if options.latency_ms.0 > options.latency_ms.1 {
                return Err(format!(
                    "PROVISIONING_SIM_LATENCY_MS: `{text}` has MIN above MAX"
                ));
            }
        }
        for (name, slot) in [
            ("PROVISIONING_SIM_FLAKY_RATE", &mut options.flaky_rate),
            (
                "PROVISIONING_SIM_LOST_RESPONSE_RATE",
                &mut options.lost_response_rate,
            ),
        ] {
            if let Some(text) = var(name) {
                let rate: f64 = text
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name}: `{text}` is not a number between 0 and 1"))?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(format!("{name}: {rate} is not between 0 and 1"));
                }
                *slot = rate;
            }
        }
        if let Some(text) = var("PROVISIONING_SIM_FAIL") {
            options.fail = text
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(text) = var("PROVISIONING_SIM_SEED") {
            options.seed = text
                .trim()
                .parse()
                .map_err(|_| format!("PROVISIONING_SIM_SEED: `{text}` is not an integer"))?;
        }
        Ok(options)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimOp {
    CreateServer,
    UpdateServer,
    DeleteServer,
    InstallTaskserv,
    RemoveTaskserv,
}

/// One side effect the simulated cloud performed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub seq: u64,
    pub op: SimOp,
    pub key: String,
    /// `workspace/server` or `workspace/server/taskserv`.
    pub resource: String,
    pub provider_id: String,
    pub attrs: BTreeMap<String, Value>,
}

/// Reads a ledger file; a torn last line (a crash mid-write) is ignored.
pub fn read_ledger(path: &Path) -> std::io::Result<Vec<LedgerEntry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

#[derive(Debug, Default)]
struct World {
    /// First result per idempotency key.
    answered: HashMap<String, Observed>,
    servers: BTreeMap<String, Observed>,
    taskservs: BTreeMap<String, Observed>,
    seq: u64,
    /// Repeated calls answered from `answered` without a new side effect.
    replays: u64,
}

impl World {
    fn apply(&mut self, entry: &LedgerEntry) {
        let observed = Observed {
            provider_id: entry.provider_id.clone(),
            attrs: entry.attrs.clone(),
        };
        self.seq = self.seq.max(entry.seq);
        self.answered.insert(entry.key.clone(), observed.clone());
        match entry.op {
            SimOp::CreateServer | SimOp::UpdateServer => {
                self.servers.insert(entry.resource.clone(), observed);
            }
            SimOp::DeleteServer => {
                self.servers.remove(&entry.resource);
                let prefix = format!("{}/", entry.resource);
                self.taskservs.retain(|k, _| !k.starts_with(&prefix));
            }
            SimOp::InstallTaskserv => {
                self.taskservs.insert(entry.resource.clone(), observed);
            }
            SimOp::RemoveTaskserv => {
                self.taskservs.remove(&entry.resource);
            }
        }
    }
}

pub struct SimProvider {
    options: SimOptions,
    ledger: Option<PathBuf>,
    world: Mutex<World>,
    rng: SeededRng,
}

impl std::fmt::Debug for SimProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimProvider")
            .field("options", &self.options)
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

fn poisoned() -> ProviderError {
    ProviderError::Permanent("sim: internal state poisoned".into())
}

impl SimProvider {
    /// A simulated cloud that forgets everything when dropped.
    pub fn in_memory(options: SimOptions) -> SimProvider {
        let rng = SeededRng::new(options.seed);
        SimProvider {
            options,
            ledger: None,
            world: Mutex::new(World::default()),
            rng,
        }
    }

    /// A simulated cloud whose world is the ledger at `path` (created if missing).
    pub fn with_ledger(options: SimOptions, path: PathBuf) -> std::io::Result<SimProvider> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut world = World::default();
        for entry in read_ledger(&path)? {
            world.apply(&entry);
        }
        // Different runs over one ledger should not draw the same failures.
        let rng = SeededRng::new(options.seed ^ world.seq.wrapping_mul(0x9E37_79B9));
        Ok(SimProvider {
            options,
            ledger: Some(path),
            world: Mutex::new(world),
            rng,
        })
    }

    /// Calls answered from memory instead of being performed again.
    pub fn replays(&self) -> u64 {
        self.world.lock().map(|w| w.replays).unwrap_or(0)
    }

    pub fn server_count(&self) -> usize {
        self.world.lock().map(|w| w.servers.len()).unwrap_or(0)
    }

    pub fn taskserv_count(&self) -> usize {
        self.world.lock().map(|w| w.taskservs.len()).unwrap_or(0)
    }

    async fn latency(&self) {
        let (lo, hi) = self.options.latency_ms;
        if hi == 0 {
            return;
        }
        let span = hi - lo;
        let ms = if span == 0 {
            lo
        } else {
            lo + self.rng.next_u64() % (span + 1)
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// The one path every mutation takes: dedupe, fail on demand, perform, record.
    async fn mutate(
        &self,
        key: &IdempotencyKey,
        op: SimOp,
        resource: String,
        name_for_failures: &str,
        attrs: BTreeMap<String, Value>,
    ) -> ProviderResult<Observed> {
        self.latency().await;
        {
            let mut world = self.world.lock().map_err(|_| poisoned())?;
            if let Some(previous) = world.answered.get(&key.0).cloned() {
                world.replays += 1;
                return Ok(previous);
            }
        }
        let creates = matches!(
            op,
            SimOp::CreateServer | SimOp::UpdateServer | SimOp::InstallTaskserv
        );
        if creates && self.options.fail.contains(name_for_failures) {
            return Err(ProviderError::Permanent(format!(
                "sim: {name_for_failures} is set to fail (PROVISIONING_SIM_FAIL)"
            )));
        }
        if self.options.flaky_rate > 0.0 && self.rng.next_f64() < self.options.flaky_rate {
            return Err(ProviderError::Transient(format!(
                "sim: injected flaky failure on {name_for_failures}"
            )));
        }
        let observed = {
            let mut world = self.world.lock().map_err(|_| poisoned())?;
            let noop = match op {
                SimOp::DeleteServer => !world.servers.contains_key(&resource),
                SimOp::RemoveTaskserv => !world.taskservs.contains_key(&resource),
                _ => false,
            };
            if noop {
                return Ok(Observed::default());
            }
            let seq = world.seq + 1;
            let provider_id = match op {
                SimOp::UpdateServer => world
                    .servers
                    .get(&resource)
                    .map(|o| o.provider_id.clone())
                    .unwrap_or_else(|| format!("sim-{seq}")),
                _ => format!("sim-{seq}"),
            };
            let entry = LedgerEntry {
                seq,
                op,
                key: key.0.clone(),
                resource,
                provider_id,
                attrs,
            };
            if let Some(path) = &self.ledger {
                append(path, &entry).map_err(|e| {
                    ProviderError::Transient(format!("sim: cannot write ledger: {e}"))
                })?;
            }
            world.apply(&entry);
            Observed {
                provider_id: entry.provider_id,
                attrs: entry.attrs,
            }
        };
        if self.options.lost_response_rate > 0.0
            && self.rng.next_f64() < self.options.lost_response_rate
        {
            return Err(ProviderError::Transient(format!(
                "sim: injected lost response on {name_for_failures} (the change was made)"
            )));
        }
        Ok(observed)
    }
}

fn append(path: &Path, entry: &LedgerEntry) -> std::io::Result<()> {
    let mut line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

fn server_attrs(spec: &ServerSpec) -> BTreeMap<String, Value> {
    BTreeMap::from([
        ("plan".to_string(), Value::String(spec.plan.clone())),
        ("zone".to_string(), Value::String(spec.zone.clone())),
    ])
}

#[async_trait]
impl Provider for SimProvider {
    fn name(&self) -> &str {
        "sim"
    }

    async fn create_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        let resource = format!("{}/{}", spec.workspace, spec.name);
        self.mutate(
            key,
            SimOp::CreateServer,
            resource,
            &spec.name,
            server_attrs(spec),
        )
        .await
    }

    async fn update_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        let resource = format!("{}/{}", spec.workspace, spec.name);
        self.mutate(
            key,
            SimOp::UpdateServer,
            resource,
            &spec.name,
            server_attrs(spec),
        )
        .await
    }

    async fn inspect_server(&self, spec: &ServerSpec) -> ProviderResult<Option<Observed>> {
        self.latency().await;
        let world = self.world.lock().map_err(|_| poisoned())?;
        Ok(world
            .servers
            .get(&format!("{}/{}", spec.workspace, spec.name))
            .cloned())
    }

    async fn delete_server(&self, key: &IdempotencyKey, spec: &ServerSpec) -> ProviderResult<()> {
        let resource = format!("{}/{}", spec.workspace, spec.name);
        self.mutate(
            key,
            SimOp::DeleteServer,
            resource,
            &spec.name,
            BTreeMap::new(),
        )
        .await
        .map(|_| ())
    }

    async fn install_taskserv(
        &self,
        key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<Observed> {
        let server = format!("{}/{}", spec.workspace, spec.server);
        let exists = self
            .world
            .lock()
            .map_err(|_| poisoned())?
            .servers
            .contains_key(&server);
        if !exists {
            return Err(ProviderError::Permanent(format!(
                "sim: server {} does not exist",
                spec.server
            )));
        }
        let name = format!("{}/{}", spec.server, spec.name);
        let attrs = BTreeMap::from([
            ("version".to_string(), Value::String(spec.version.clone())),
            ("config".to_string(), Value::Object(spec.config.clone())),
        ]);
        self.mutate(
            key,
            SimOp::InstallTaskserv,
            format!("{server}/{}", spec.name),
            &name,
            attrs,
        )
        .await
    }

    async fn taskserv_health(&self, spec: &TaskservSpec) -> ProviderResult<Health> {
        self.latency().await;
        let world = self.world.lock().map_err(|_| poisoned())?;
        let key = format!("{}/{}/{}", spec.workspace, spec.server, spec.name);
        Ok(if world.taskservs.contains_key(&key) {
            Health::Healthy
        } else {
            Health::Missing
        })
    }

    async fn remove_taskserv(
        &self,
        key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<()> {
        let name = format!("{}/{}", spec.server, spec.name);
        let resource = format!("{}/{}/{}", spec.workspace, spec.server, spec.name);
        self.mutate(key, SimOp::RemoveTaskserv, resource, &name, BTreeMap::new())
            .await
            .map(|_| ())
    }
}
