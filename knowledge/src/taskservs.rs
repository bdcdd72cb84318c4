//! Taskserv definitions for real hosts: per taskserv, POSIX shell scripts (install, health,
//! remove) and a `taskserv.toml` saying which OS and versions they support, what they need and
//! what they report. The SSH runner sends them to a host; the docs describe them.

use std::collections::BTreeMap;

use include_dir::{Dir, include_dir};
use serde::Deserialize;

use crate::KnowledgeError;

static TASKSERVS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/taskservs");

/// What `taskserv.toml` says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskservMeta {
    pub name: String,
    /// Hosts the scripts support, as `ID-MAJOR` from `/etc/os-release` (`debian-12`).
    pub os: Vec<String>,
    /// OS packages the install script uses.
    pub packages: Vec<String>,
    /// The version each OS packages: the version a config must name there.
    #[serde(default)]
    pub packaged: BTreeMap<String, String>,
    /// Default ports by config key.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// Keys of `ports` that serve clients outside the workspace (a web server's port): the
    /// cloud providers' firewalls open them to everyone. The other ports are reached from the
    /// workspace's own servers only (over the provider's private network).
    #[serde(default)]
    pub public: Vec<String>,
    pub memory_mb: u32,
    /// The `config` keys the scripts read.
    #[serde(default)]
    pub config: Vec<String>,
    /// Facts the install script reports (`PROV_OUTPUT key=value`).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Installed, health-checked and removed by the test suite; false: checked only with
    /// `sh -n` and shellcheck.
    pub tested: bool,
}

impl TaskservMeta {
    /// Whether the scripts install `version` on `os` (`ID-MAJOR`, as an image's `os` names it).
    /// The scripts install the OS's own packages, so the version must be what the OS packages.
    pub fn fit(&self, version: &str, os: &str) -> Fit {
        if !self.os.iter().any(|o| o == os) {
            return Fit::Os {
                supported: self.os.clone(),
            };
        }
        match self.packaged.get(os) {
            Some(packaged) if packaged != version => Fit::Version {
                packaged: packaged.clone(),
            },
            _ => Fit::Yes,
        }
    }
}

/// Whether a taskserv's scripts install a version on an OS (see [`TaskservMeta::fit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    Yes,
    /// The scripts do not support the OS; they support `supported`.
    Os {
        supported: Vec<String>,
    },
    /// The OS packages another version.
    Version {
        packaged: String,
    },
}

/// One taskserv's scripts and description.
#[derive(Debug, Clone)]
pub struct TaskservScripts {
    pub meta: TaskservMeta,
    pub install: &'static str,
    pub health: &'static str,
    pub remove: &'static str,
}

/// The functions every script may use (`knowledge/taskservs/lib.sh`).
pub fn taskserv_lib() -> &'static str {
    TASKSERVS
        .get_file("lib.sh")
        .and_then(|f| f.contents_utf8())
        .unwrap_or_default()
}

/// Names of the taskservs that have scripts, sorted.
pub fn script_taskservs() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = TASKSERVS.dirs().filter_map(|d| d.path().to_str()).collect();
    names.sort_unstable();
    names
}

/// The scripts of `name`, `None` when it has none.
pub fn taskserv_scripts(name: &str) -> Result<Option<TaskservScripts>, KnowledgeError> {
    if TASKSERVS.get_dir(name).is_none() {
        return Ok(None);
    }
    let text = |file: &str| -> Result<&'static str, KnowledgeError> {
        TASKSERVS
            .get_file(format!("{name}/{file}"))
            .and_then(|f| f.contents_utf8())
            .ok_or_else(|| KnowledgeError::Catalog {
                path: format!("taskservs/{name}/{file}"),
                message: "missing or not UTF-8".into(),
            })
    };
    let meta_path = format!("taskservs/{name}/taskserv.toml");
    let meta: TaskservMeta =
        toml::from_str(text("taskserv.toml")?).map_err(|e| KnowledgeError::Catalog {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
    if meta.name != name {
        return Err(KnowledgeError::Catalog {
            path: meta_path,
            message: format!("names `{}`, expected `{name}`", meta.name),
        });
    }
    Ok(Some(TaskservScripts {
        meta,
        install: text("install.sh")?,
        health: text("health.sh")?,
        remove: text("remove.sh")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_definition_reads_and_names_a_catalog_taskserv() {
        let catalog = crate::Catalog::embedded().unwrap();
        let names = script_taskservs();
        assert!(names.contains(&"redis"), "{names:?}");
        for name in names {
            let scripts = taskserv_scripts(name).unwrap().unwrap();
            assert!(
                catalog.taskservs.contains_key(name),
                "taskservs/{name} is not in the catalog"
            );
            for key in &scripts.meta.public {
                assert!(
                    scripts.meta.ports.contains_key(key),
                    "{name}: public port `{key}` is not in `ports`"
                );
            }
            for (os, version) in &scripts.meta.packaged {
                assert!(scripts.meta.os.contains(os), "{name}: {os} is not in `os`");
                assert!(
                    catalog.taskservs[name].versions.contains(version),
                    "{name}: {os} packages {version}, which the catalog does not list"
                );
            }
        }
        // Every image's OS is one the scripts know, or one they plainly do not support yet.
        for p in catalog.providers.values() {
            for (name, image) in &p.images {
                assert!(
                    image.os.split_once('-').is_some_and(|(id, major)| {
                        !id.is_empty() && major.chars().all(|c| c.is_ascii_digit())
                    }),
                    "{}: image {name} has os `{}`, not ID-MAJOR",
                    p.name,
                    image.os
                );
            }
        }
        assert!(taskserv_lib().contains("prov_start()"));
        assert!(taskserv_scripts("no-such").unwrap().is_none());
    }

    #[test]
    fn fit_names_the_os_or_the_packaged_version() {
        let nginx = taskserv_scripts("nginx").unwrap().unwrap().meta;
        assert_eq!(nginx.fit("1.22", "debian-12"), Fit::Yes);
        assert_eq!(nginx.fit("1.24", "ubuntu-24"), Fit::Yes);
        assert_eq!(
            nginx.fit("1.26", "debian-12"),
            Fit::Version {
                packaged: "1.22".into()
            }
        );
        assert_eq!(
            nginx.fit("1.22", "debian-13"),
            Fit::Os {
                supported: vec!["debian-12".into(), "ubuntu-24".into()]
            }
        );
    }
}
