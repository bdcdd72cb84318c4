//! The public ports of the taskservs on each cloud server, as its provider recorded them
//! (`ports/<workspace>/<server>.json` under the provider's folder: taskserv → ports), so a
//! firewall's rules can be recomputed whole from them after every install and removal.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{ProviderError, ProviderResult, TaskservSpec};

/// A provider's records of public ports.
#[derive(Debug, Clone)]
pub(crate) struct PortRecords {
    dir: PathBuf,
}

impl PortRecords {
    /// Records kept under `dir/ports`.
    pub(crate) fn new(dir: &std::path::Path) -> PortRecords {
        PortRecords {
            dir: dir.join("ports"),
        }
    }

    fn path(&self, workspace: &str, server: &str) -> PathBuf {
        self.dir.join(workspace).join(format!("{server}.json"))
    }

    /// The public ports of the taskservs recorded on `server`, by taskserv.
    pub(crate) fn read(&self, workspace: &str, server: &str) -> BTreeMap<String, Vec<u16>> {
        std::fs::read_to_string(self.path(workspace, server))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Every public port recorded on `server`, sorted, once each.
    pub(crate) fn open(&self, workspace: &str, server: &str) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .read(workspace, server)
            .into_values()
            .flatten()
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The servers of `workspace` with a record.
    pub(crate) fn servers(&self, workspace: &str) -> Vec<String> {
        std::fs::read_dir(self.dir.join(workspace))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect()
    }

    /// A taskserv installed (`true`) or removed: its public ports recorded, or dropped.
    pub(crate) fn update(&self, spec: &TaskservSpec, installed: bool) -> ProviderResult<()> {
        let mut ports = self.read(&spec.workspace, &spec.server);
        let public = spec.public_ports();
        if installed && !public.is_empty() {
            ports.insert(spec.name.clone(), public);
        } else {
            ports.remove(&spec.name);
        }
        let path = self.path(&spec.workspace, &spec.server);
        let fail = |e: std::io::Error| {
            ProviderError::Permanent(format!("cannot record ports in {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        std::fs::write(&path, serde_json::json!(ports).to_string()).map_err(fail)
    }

    /// The server is gone, with its taskservs.
    pub(crate) fn forget(&self, workspace: &str, server: &str) {
        let _ = std::fs::remove_file(self.path(workspace, server));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_and_removals_are_recorded_per_taskserv() {
        let dir = std::env::temp_dir().join(format!("prov-ports-{}", std::process::id()));
        let records = PortRecords::new(&dir);
        let spec = |name: &str, port: u64| TaskservSpec {
            workspace: "w".into(),
            server: "web-1".into(),
            name: name.into(),
            version: String::new(),
            config: serde_json::json!({ "port": port })
                .as_object()
                .cloned()
                .unwrap(),
        };
        records.update(&spec("nginx", 8080), true).unwrap();
        records.update(&spec("haproxy", 80), true).unwrap();
        // postgres's port is not public: nothing recorded for it.
        records.update(&spec("postgres", 5432), true).unwrap();
        assert_eq!(records.open("w", "web-1"), [80, 8080]);
        assert_eq!(records.servers("w"), ["web-1"]);
        records.update(&spec("nginx", 8080), false).unwrap();
        assert_eq!(records.open("w", "web-1"), [80]);
        records.forget("w", "web-1");
        assert!(records.open("w", "web-1").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
