//! Effective settings: command line, then `PROVISIONING_*` environment variables (both through
//! clap), then the config file (`--config`, default `$XDG_CONFIG_HOME/provisioning/config.toml`
//! when it exists), then built-in defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use engine::Limits;
use engine::authz::{Caller, WorkspaceLimits};
use policies::PolicySource;
use serde::Deserialize;

use crate::cli::Global;

#[derive(Debug, Clone)]
pub struct Settings {
    pub cache_dir: PathBuf,
    pub data_dir: PathBuf,
    /// `surrealkv://PATH`, `mem://` or `ws://HOST:PORT`; `None` means `<data_dir>/state`.
    pub state: Option<String>,
    pub limits: Limits,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// A running server to talk to (`--server`), with its token.
    pub remote: Option<crate::remote::Remote>,
    pub file: ConfigFile,
}

/// The config file. Every section is optional.
///
/// ```toml
/// [policies]
/// dir = "policies"          # relative to this file
/// mode = "extend"           # or "replace" (the defaults are dropped)
///
/// [approvals]
/// ttl_hours = 24
///
/// [access]
/// default_roles = ["operator"]   # roles of users not listed below
///
/// [users.alice]
/// roles = ["operator"]
///
/// [workspaces.shop]
/// budget = 150.0                 # monthly cost increase without approval
/// forbidden_zones = ["sin"]
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub policies: PoliciesSection,
    #[serde(default)]
    pub approvals: ApprovalsSection,
    #[serde(default)]
    pub access: AccessSection,
    #[serde(default)]
    pub users: BTreeMap<String, UserEntry>,
    /// MCP clients acting for a user over HTTP: `[agents.NAME] acting_for, roles, token_sha256`.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentEntry>,
    #[serde(default)]
    pub workspaces: BTreeMap<String, WorkspaceLimits>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesSection {
    /// A directory of `.cedar` files.
    pub dir: Option<PathBuf>,
    #[serde(default)]
    pub mode: PolicyMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// The directory's policies are added to the defaults.
    #[default]
    Extend,
    /// Only the directory's policies apply.
    Replace,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSection {
    /// How long an approval request stays open.
    #[serde(default = "default_ttl_hours")]
    pub ttl_hours: f64,
}

impl Default for ApprovalsSection {
    fn default() -> Self {
        ApprovalsSection {
            ttl_hours: default_ttl_hours(),
        }
    }
}

fn default_ttl_hours() -> f64 {
    24.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// Roles of a user the `[users]` table does not list.
    #[serde(default = "default_roles")]
    pub default_roles: Vec<String>,
}

impl Default for AccessSection {
    fn default() -> Self {
        AccessSection {
            default_roles: default_roles(),
        }
    }
}

fn default_roles() -> Vec<String> {
    vec!["operator".into()]
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    #[serde(default)]
    pub roles: Vec<String>,
    /// SHA-256 (hex) of this user's API token, for the HTTP server. Tokens are never stored.
    #[serde(default)]
    pub token_sha256: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    pub acting_for: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub token_sha256: String,
}

impl Settings {
    pub fn from_cli(g: &Global) -> anyhow::Result<Settings> {
        let config_file = match &g.config {
            Some(path) => Some(path.clone()),
            None => Some(xdg_dir("XDG_CONFIG_HOME", ".config").join("config.toml"))
                .filter(|p| p.is_file()),
        };
        let file = match &config_file {
            Some(path) => read_config(path)?,
            None => ConfigFile::default(),
        };
        Ok(Settings {
            cache_dir: g.cache_dir.clone().unwrap_or_else(default_cache_dir),
            data_dir: g.data_dir.clone().unwrap_or_else(default_data_dir),
            state: g.state.clone(),
            limits: Limits {
                max_input_bytes: g.max_input_bytes,
                timeout: Duration::from_millis(g.eval_timeout_ms),
                memory_bytes: g.eval_memory_mb.saturating_mul(1024 * 1024),
                max_concurrent: usize::from(g.max_evals),
                ..Limits::default()
            },
            config_file,
            file,
            remote: match &g.server {
                Some(url) => Some(crate::remote::Remote::new(url, g.token.as_deref())?),
                None => None,
            },
        })
    }

    /// Where policies come from: the config file's directory, else the defaults.
    pub fn policy_source(&self) -> PolicySource {
        match &self.file.policies.dir {
            None => PolicySource::Defaults,
            Some(dir) => {
                let base = self
                    .config_file
                    .as_deref()
                    .and_then(Path::parent)
                    .unwrap_or(Path::new("."));
                let dir = base.join(dir);
                match self.file.policies.mode {
                    PolicyMode::Extend => PolicySource::Extend(dir),
                    PolicyMode::Replace => PolicySource::Replace(dir),
                }
            }
        }
    }

    /// The person at this terminal with the roles the config file gives them.
    pub fn local_caller(&self) -> Caller {
        let caller = Caller::local_user();
        let roles = self.roles_of(caller.person());
        caller.with_roles(roles)
    }

    pub fn roles_of(&self, user: &str) -> Vec<String> {
        self.file
            .users
            .get(user)
            .map(|u| u.roles.clone())
            .unwrap_or_else(|| self.file.access.default_roles.clone())
    }

    /// Bearer token (its SHA-256, hex) → who it is, for the HTTP server.
    pub fn token_principals(&self) -> BTreeMap<String, Caller> {
        let mut out = BTreeMap::new();
        for (name, user) in &self.file.users {
            if let Some(hash) = &user.token_sha256 {
                let caller = Caller {
                    principal: format!("user:{name}"),
                    channel: "mcp".into(),
                    roles: user.roles.clone(),
                    authenticated: true,
                    mfa: false,
                };
                out.insert(hash.to_lowercase(), caller);
            }
        }
        for (name, agent) in &self.file.agents {
            let caller = Caller {
                principal: format!("agent:{name}@{}", agent.acting_for),
                channel: "mcp".into(),
                roles: agent.roles.clone(),
                authenticated: true,
                mfa: false,
            };
            out.insert(agent.token_sha256.to_lowercase(), caller);
        }
        out
    }

    pub fn approval_ttl(&self) -> Duration {
        Duration::from_secs_f64(
            (self.file.approvals.ttl_hours * 3600.0).clamp(60.0, 90.0 * 86400.0),
        )
    }
}

fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "config file {} is invalid: {}",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    let ttl = file.approvals.ttl_hours;
    if !(ttl.is_finite() && (1.0 / 60.0..=24.0 * 90.0).contains(&ttl)) {
        anyhow::bail!(
            "config file {}: approvals.ttl_hours = {ttl} is out of range; expected between 0.0167 (one minute) and 2160 (90 days)",
            path.display()
        );
    }
    for (name, limits) in &file.workspaces {
        if let Some(budget) = limits.budget
            && !(budget.is_finite() && budget >= 0.0)
        {
            anyhow::bail!(
                "config file {}: workspaces.{name}.budget = {budget}; expected a non-negative amount in the plan's currency",
                path.display()
            );
        }
    }
    Ok(file)
}

/// `$VAR/provisioning`, else `$HOME/HOME_SUBDIR/provisioning`, else the temp dir's.
fn xdg_dir(var: &str, home_subdir: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(home_subdir)))
        .unwrap_or_else(std::env::temp_dir)
        .join("provisioning")
}

fn default_cache_dir() -> PathBuf {
    xdg_dir("XDG_CACHE_HOME", ".cache")
}

fn default_data_dir() -> PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share")
}
