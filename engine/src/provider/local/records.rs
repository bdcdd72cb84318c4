//! What the provider keeps on disk per server and taskserv (`server.json`, `taskserv.json`), and
//! what it reports of them.

use super::*;

/// What `server.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ServerRecord {
    pub(super) workspace: String,
    pub(super) name: String,
    pub(super) plan: String,
    pub(super) zone: String,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    pub(super) port_base: u16,
    pub(super) port_count: u16,
}

/// What `taskserv.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct TaskservRecord {
    pub(super) spec: TaskservSpec,
    pub(super) port: u16,
    /// The pid of the process we started (the supervisor, or the service itself without one);
    /// it leads its own process group.
    pub(super) pgid: u32,
    /// Its start time (see `procs::Proc::start`), so that a reused pid is not taken for it.
    #[serde(default)]
    pub(super) start: Option<u64>,
    pub(super) supervised: bool,
    pub(super) installed_version: String,
    /// Data that had to live outside the taskserv dir (postgres as root, see the module docs).
    #[serde(default)]
    pub(super) aux_dir: Option<PathBuf>,
    pub(super) health: String,
    pub(super) key: String,
}

impl TaskservRecord {
    pub(super) fn matches(&self, spec: &TaskservSpec) -> bool {
        self.spec.version == spec.version && self.spec.config == spec.config
    }
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> ProviderResult<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| permanent(format!("{} is damaged: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path, e)),
    }
}

pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> ProviderResult<()> {
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| permanent(format!("cannot encode {}: {e}", path.display())))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| io_err("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("write", path, e))
}

impl LocalProvider {
    pub(super) fn observe_server(&self, rec: &ServerRecord) -> Observed {
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

    pub(super) fn observe_taskserv(&self, tsdir: &Path, rec: &TaskservRecord) -> Observed {
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

    pub(super) fn read_server(
        &self,
        workspace: &str,
        server: &str,
    ) -> ProviderResult<Option<ServerRecord>> {
        read_json(&self.server_dir(workspace, server).join(SERVER_FILE))
    }
}
