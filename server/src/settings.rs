//! Effective settings: command line, then `PROVISIONING_*` environment variables (both through
//! clap), then the config file (`--config`, default `$XDG_CONFIG_HOME/provisioning/config.toml`
//! when it exists), then built-in defaults.

mod providers;
use providers::{
    AwsSection, aws_settings, hetzner_settings, ssh_hosts, upcloud_refs, upcloud_settings,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use engine::Limits;
use engine::authz::{Caller, WorkspaceLimits};
use engine::secrets::{Redactor, SecretRef, SecretSource, Secrets};
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
    /// Resolves the config file's secret references; its redactor knows every secret value.
    pub secrets: Secrets,
    /// The OpenAI-compatible drafter, when a base URL and a model are configured.
    pub openai: Option<drafter::openai::OpenAiSettings>,
    /// `[state]` credentials for a SurrealDB server (references, resolved when it is opened).
    pub state_user: Option<SecretRef>,
    pub state_password: Option<SecretRef>,
    /// The `ssh` provider's machines, checked.
    pub ssh_hosts: Vec<engine::provider::ssh::SshHost>,
    /// The `upcloud` provider: endpoint and credential references.
    pub upcloud: engine::provider::upcloud::UpCloudSettings,
    /// The `hetzner` provider: endpoint and token reference.
    pub hetzner: engine::provider::hetzner::HetznerSettings,
    /// The `aws` provider: endpoint, profile and credential references.
    pub aws: engine::provider::aws::AwsSettings,
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
/// link = "https://provisioning.example.com/"   # the Control Center as people open it, for
///                                             # approval links (default: where it is served)
///
/// [access]
/// default_roles = ["viewer"]   # roles of accounts not listed below (none by default; the
///                              # data directory's owner has every role unless listed)
///
/// [users.alice]
/// roles = ["operator"]
///
/// [workspaces.shop]
/// budget = 150.0                 # monthly cost increase without approval
/// forbidden_zones = ["sin"]
///
/// # Credentials are secret references: `env:NAME`, `file:PATH`, `age:PATH` (an age-encrypted
/// # file, decrypted with `secrets.age_identity`), or a plain value. Relative paths are taken
/// # from this file's folder. Every resolved value is redacted from output and logs.
/// [secrets]
/// age_identity = "file:/etc/provisioning/age-key.txt"
///
/// [drafter.openai]
/// base_url = "https://api.openai.com/v1"
/// model = "gpt-4o-mini"
/// api_key = "age:openai-key.age"
/// max_tokens = 2048              # per completion
/// max_total_tokens = 60000       # per draft, over its repair rounds
/// timeout_secs = 60              # per call
///
/// [state]                        # a SurrealDB server (--state ws://...)
/// user = "root"
/// password = "env:SURREAL_PASS"
///
/// # Machines of the `ssh` provider: a config names one (`host = "rack-3"`, default: the
/// # server's name); addresses and keys live only here.
/// [ssh.hosts.rack-3]
/// address = "10.0.0.13"
/// port = 22                      # default 22
/// user = "deploy"                # default root
/// key = "file:/etc/provisioning/ssh/rack-3"   # secret reference to the private key
/// root = "/srv/provisioning"     # our folders on the host; default $HOME/.provisioning
/// workspaces = ["shop"]          # who may use it; "*" for every workspace
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
    #[serde(default)]
    pub secrets: SecretsSection,
    #[serde(default)]
    pub drafter: DrafterSection,
    #[serde(default)]
    pub state: StateSection,
    #[serde(default)]
    pub daemon: DaemonSection,
    #[serde(default)]
    pub ssh: SshSection,
    #[serde(default)]
    pub upcloud: UpCloudSection,
    #[serde(default)]
    pub hetzner: HetznerSection,
    #[serde(default)]
    pub aws: AwsSection,
}

/// `[hetzner]`: where Hetzner Cloud's API is and the project token. Without it: the variables
/// Hetzner's own tools read (`HCLOUD_TOKEN`; `HCLOUD_ENDPOINT` for another endpoint).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HetznerSection {
    /// Base URL with `/v1` (default `https://api.hetzner.cloud/v1`).
    pub endpoint: Option<String>,
    /// A secret reference (`env:NAME`, `file:PATH`, `age:PATH`) to a project API token.
    pub token: Option<String>,
    /// The OpenSSH public key registered in the project for our servers, or `file:PATH`.
    pub ssh_public_key: Option<String>,
    /// A secret reference to the matching private key: taskservs are installed over SSH with it.
    pub ssh_key: Option<String>,
    /// The account (default `root`) and port (default 22) SSH reaches servers with.
    pub ssh_user: Option<String>,
    pub ssh_port: Option<u16>,
    /// The API's names for catalog plans and zones where they differ (`cx22 = "small"`): for a
    /// Hetzner-compatible API that names them otherwise.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    /// CIDRs each server's firewall admits to SSH (default `["0.0.0.0/0", "::/0"]`; `[]` admits
    /// nobody).
    pub ssh_from: Option<Vec<String>>,
    /// Whether each server gets a firewall of its own (default true; false: the operator's).
    pub firewall: Option<bool>,
    /// Whether the workspace's servers join a private network (default true).
    pub private_network: Option<bool>,
    /// Longest wait for an action or a server status, in seconds (default 600).
    pub state_wait_secs: Option<u64>,
}

/// `[upcloud]`: where UpCloud's API is and who we are there. Without it: the variables
/// UpCloud's own tools read (`UPCLOUD_USERNAME` and `UPCLOUD_PASSWORD`, or `UPCLOUD_TOKEN`;
/// `UPCLOUD_DEBUG_API_BASE_URL` for another endpoint).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpCloudSection {
    /// Base URL without `/1.3` (default `https://api.upcloud.com`).
    pub endpoint: Option<String>,
    /// Secret references (`env:NAME`, `file:PATH`, `age:PATH`).
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// The OpenSSH public key put on each server's login account (`ssh-ed25519 AAAA...`), or
    /// `file:PATH` of one.
    pub ssh_public_key: Option<String>,
    /// A secret reference to the matching private key: taskservs on UpCloud servers are
    /// installed over SSH with it. Without it servers are created, nothing is installed.
    pub ssh_key: Option<String>,
    /// The login account made on each server (default `root`) and the SSH port (default 22).
    pub ssh_user: Option<String>,
    pub ssh_port: Option<u16>,
    /// CIDRs each server's firewall admits to SSH (default `["0.0.0.0/0", "::/0"]`; `[]` admits
    /// nobody).
    pub ssh_from: Option<Vec<String>>,
    /// Whether each server's firewall is set and switched on (default true; false: the
    /// operator's).
    pub firewall: Option<bool>,
    /// Longest wait for a server to start or stop, in seconds (default 600).
    pub state_wait_secs: Option<u64>,
}

/// The `ssh` provider's inventory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSection {
    #[serde(default)]
    pub hosts: BTreeMap<String, SshHostEntry>,
}

/// `[ssh.hosts.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshHostEntry {
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// A secret reference to the private key.
    pub key: Option<String>,
    pub root: Option<String>,
    #[serde(default)]
    pub workspaces: Vec<String>,
}

/// The local server (`provisioning daemon`, `serve --socket`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// A group whose members may connect to the socket too (the socket 0660 and its folder 0750,
    /// owned by that group). Each member is still the account the kernel reports, with the roles
    /// `[users.NAME]` gives it (none by default). Unset: the owner alone.
    pub group: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSection {
    /// A reference to the age identity file that decrypts `age:` references.
    pub age_identity: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrafterSection {
    pub openai: Option<OpenAiSection>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSection {
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// A secret reference.
    pub api_key: Option<String>,
    pub max_tokens: Option<u32>,
    pub max_total_tokens: Option<u64>,
    pub timeout_secs: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// A secret reference (or plain value) for the SurrealDB user.
    pub user: Option<String>,
    /// A secret reference (or plain value) for the SurrealDB password.
    pub password: Option<String>,
}

/// An environment variable of this process, `None` when unset or blank (an empty variable counts
/// as unset, as the XDG spec says). The one place the environment is read: library crates take
/// values (clippy's `disallowed-methods` refuses `std::env::var` elsewhere).
#[allow(clippy::disallowed_methods)]
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// [`var`] for a value that need not be UTF-8 (a path).
#[allow(clippy::disallowed_methods)]
pub fn var_os(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The process environment and file system, as the engine's [`SecretSource`].
struct OsSource;

impl SecretSource for OsSource {
    fn var(&self, name: &str) -> Option<String> {
        var(name)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
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
    /// The Control Center's address as people open it (`https://provisioning.example.com/`),
    /// for approval links; default: the address this server serves it on.
    #[serde(default)]
    pub link: Option<String>,
}

impl Default for ApprovalsSection {
    fn default() -> Self {
        ApprovalsSection {
            ttl_hours: default_ttl_hours(),
            link: None,
        }
    }
}

fn default_ttl_hours() -> f64 {
    24.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// Roles of an account the `[users]` table does not list, other than the data directory's
    /// owner (who has every role unless listed). None by default.
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
    Vec::new()
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
            None => Some(default_config_path()).filter(|p| p.is_file()),
        };
        let file = match &config_file {
            Some(path) => read_config(path)?,
            None => ConfigFile::default(),
        };
        let base = config_file
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let origin = config_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(none)".into());
        let reference = |what: &str, text: &str| {
            SecretRef::parse(text)
                .map(|r| r.relative_to(&base))
                .map_err(|e| anyhow::anyhow!("config file {origin}: {what}: {e}"))
        };
        let redactor = Redactor::new();
        // Secrets that come straight from the environment are known from the start.
        for name in [
            "PROVISIONING_TOKEN",
            "PROVISIONING_STATE_PASS",
            "PROVISIONING_DOCS_QDRANT_API_KEY",
            "PROVISIONING_DRAFTER_OPENAI_API_KEY",
            "OPENAI_API_KEY",
            "UPCLOUD_USERNAME",
            "UPCLOUD_PASSWORD",
            "UPCLOUD_TOKEN",
            "HCLOUD_TOKEN",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ] {
            if let Some(value) = var(name) {
                redactor.register(value.trim());
            }
        }
        if let Some(token) = &g.token {
            redactor.register(token);
        }
        let age_identity = match &file.secrets.age_identity {
            Some(text) => Some(reference("secrets.age_identity", text)?),
            None => None,
        };
        let secrets =
            Secrets::new(std::sync::Arc::new(OsSource), redactor).with_age_identity(age_identity);
        let openai = openai_settings(&file, &reference)?;
        // Plain values written in the file are secrets as well.
        for r in openai.iter().filter_map(|o| o.api_key.as_ref()) {
            if let SecretRef::Plain(s) = r {
                secrets.redactor().register(s.expose());
            }
        }
        // `PROVISIONING_STATE_USER`/`_PASS` first, then `[state]` in the file.
        let state_user = match (var("PROVISIONING_STATE_USER"), &file.state.user) {
            (Some(_), _) => Some(SecretRef::Env("PROVISIONING_STATE_USER".into())),
            (None, Some(text)) => Some(reference("state.user", text)?),
            (None, None) => None,
        };
        let state_password = match (var("PROVISIONING_STATE_PASS"), &file.state.password) {
            (Some(_), _) => Some(SecretRef::Env("PROVISIONING_STATE_PASS".into())),
            (None, Some(text)) => Some(reference("state.password", text)?),
            (None, None) => None,
        };
        if let Some(SecretRef::Plain(s)) = &state_password {
            secrets.redactor().register(s.expose());
        }
        let ssh_hosts = ssh_hosts(&file, &reference)
            .map_err(|e| anyhow::anyhow!("config file {origin}: {e}"))?;
        let upcloud = upcloud_settings(&file, &reference)
            .map_err(|e| anyhow::anyhow!("config file {origin}: {e}"))?;
        for r in [upcloud_refs(&upcloud.auth).0, upcloud_refs(&upcloud.auth).1]
            .into_iter()
            .flatten()
        {
            if let SecretRef::Plain(s) = r {
                secrets.redactor().register(s.expose());
            }
        }
        let hetzner = hetzner_settings(&file, &reference)
            .map_err(|e| anyhow::anyhow!("config file {origin}: {e}"))?;
        if let SecretRef::Plain(s) = &hetzner.token {
            secrets.redactor().register(s.expose());
        }
        let aws = aws_settings(&file, &reference)
            .map_err(|e| anyhow::anyhow!("config file {origin}: {e}"))?;
        for r in aws.keys.iter().flat_map(|(a, b)| [a, b]) {
            if let SecretRef::Plain(s) = r {
                secrets.redactor().register(s.expose());
            }
        }
        let mut settings = Settings {
            ssh_hosts,
            upcloud,
            hetzner,
            aws,
            secrets,
            openai,
            state_user,
            state_password,
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
        };
        // When this installation's local server runs, the commands that can ask a server
        // (approvals, status, cancel, audit) ask it: it holds the state, and the kernel says who
        // is asking.
        if settings.remote.is_none() {
            let socket = crate::commands::daemon::default_socket(&settings);
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                settings.remote = Some(crate::remote::Remote::new(
                    &format!("unix:{}", socket.display()),
                    None,
                )?);
            }
        }
        Ok(settings)
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

    /// The accounts of this installation and their roles: `[users.NAME] roles`, else every role
    /// for the account that owns the data directory (whoever runs this, when it does not exist
    /// yet: it will create it), else `[access] default_roles`.
    pub fn accounts(&self) -> crate::http::kernel::Accounts {
        use std::os::unix::fs::MetadataExt as _;
        crate::http::kernel::Accounts {
            owner_uid: std::fs::metadata(&self.data_dir)
                .map(|m| m.uid())
                .unwrap_or_else(|_| nix::unistd::getuid().as_raw()),
            configured: self
                .file
                .users
                .iter()
                .map(|(name, u)| (name.clone(), u.roles.clone()))
                .collect(),
            default_roles: self.file.access.default_roles.clone(),
        }
    }

    /// The person at this terminal: the account the kernel says runs this process (never
    /// `$USER`), with the roles [`Settings::accounts`] gives it.
    pub fn local_caller(&self) -> Caller {
        self.accounts()
            .caller(nix::unistd::getuid().as_raw(), "/", true)
    }

    /// Bearer token (its SHA-256, hex) → who it is, for the HTTP server.
    pub fn token_principals(&self) -> BTreeMap<String, Caller> {
        token_principals_of(&self.file)
    }

    pub fn approval_ttl(&self) -> Duration {
        Duration::from_secs_f64(
            (self.file.approvals.ttl_hours * 3600.0).clamp(60.0, 90.0 * 86400.0),
        )
    }
}

/// The drafter's endpoint: `PROVISIONING_DRAFTER_OPENAI_*` over `[drafter.openai]` over the
/// defaults. The key is a reference: `PROVISIONING_DRAFTER_OPENAI_API_KEY` when set, else the
/// file's `api_key`, else `OPENAI_API_KEY`, each read when a draft is made.
fn openai_settings(
    file: &ConfigFile,
    reference: &dyn Fn(&str, &str) -> anyhow::Result<SecretRef>,
) -> anyhow::Result<Option<drafter::openai::OpenAiSettings>> {
    use drafter::openai::{
        DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOTAL_TOKENS, DEFAULT_TIMEOUT, OpenAiSettings,
    };
    let section = file.drafter.openai.clone().unwrap_or_default();
    let nonblank = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let Some(base_url) =
        var("PROVISIONING_DRAFTER_OPENAI_BASE_URL").or_else(|| nonblank(section.base_url))
    else {
        return Ok(None);
    };
    let Some(model) = var("PROVISIONING_DRAFTER_OPENAI_MODEL").or_else(|| nonblank(section.model))
    else {
        return Ok(None);
    };
    let api_key = if var("PROVISIONING_DRAFTER_OPENAI_API_KEY").is_some() {
        Some(SecretRef::Env("PROVISIONING_DRAFTER_OPENAI_API_KEY".into()))
    } else if let Some(text) = &section.api_key {
        Some(reference("drafter.openai.api_key", text)?)
    } else if var("OPENAI_API_KEY").is_some() {
        Some(SecretRef::Env("OPENAI_API_KEY".into()))
    } else {
        None
    };
    fn number<T: std::str::FromStr>(
        env: &str,
        file: Option<T>,
        default: T,
        expected: &str,
    ) -> anyhow::Result<T> {
        match var(env) {
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{env}: `{text}` is not {expected}")),
            None => Ok(file.unwrap_or(default)),
        }
    }
    let max_tokens = number(
        "PROVISIONING_DRAFTER_OPENAI_MAX_TOKENS",
        section.max_tokens,
        DEFAULT_MAX_TOKENS,
        "a whole number of tokens",
    )?;
    let max_total_tokens = number(
        "PROVISIONING_DRAFTER_OPENAI_MAX_TOTAL_TOKENS",
        section.max_total_tokens,
        DEFAULT_MAX_TOTAL_TOKENS,
        "a whole number of tokens",
    )?;
    let timeout_secs = number(
        "PROVISIONING_DRAFTER_OPENAI_TIMEOUT_SECS",
        section.timeout_secs,
        DEFAULT_TIMEOUT.as_secs_f64(),
        "a number of seconds",
    )?;
    if max_tokens == 0 || max_total_tokens == 0 {
        anyhow::bail!(
            "drafter.openai: max_tokens = {max_tokens}, max_total_tokens = {max_total_tokens}; expected both above 0"
        );
    }
    if !(timeout_secs.is_finite() && (0.1..=3600.0).contains(&timeout_secs)) {
        anyhow::bail!(
            "drafter.openai.timeout_secs = {timeout_secs}; expected between 0.1 and 3600 seconds"
        );
    }
    Ok(Some(OpenAiSettings {
        base_url,
        model,
        api_key,
        max_tokens,
        max_total_tokens,
        timeout: Duration::from_secs_f64(timeout_secs),
    }))
}

/// Bearer token (its SHA-256, hex) → who it is, from a config file.
pub fn token_principals_of(file: &ConfigFile) -> BTreeMap<String, Caller> {
    let mut out = BTreeMap::new();
    for (name, user) in &file.users {
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
    for (name, agent) in &file.agents {
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

/// The tokens of the config file at `path` as it is now (a running server re-reads them when the
/// file changes, so a new or revoked token takes effect without a restart).
pub fn reload_tokens(path: &Path) -> Result<BTreeMap<String, Caller>, String> {
    read_config(path)
        .map(|f| token_principals_of(&f))
        .map_err(|e| format!("{e:#}"))
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
    if let Some(link) = &file.approvals.link {
        let ok = (link.starts_with("https://") || link.starts_with("http://"))
            && link.len() > "https://".len()
            && !link
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '#');
        anyhow::ensure!(
            ok,
            "config file {}: approvals.link = {link:?} is not a web address; expected the Control Center's address as people open it, e.g. \"https://provisioning.example.com/\"",
            path.display()
        );
    }
    let ttl = file.approvals.ttl_hours;
    if !(ttl.is_finite() && (1.0 / 60.0..=24.0 * 90.0).contains(&ttl)) {
        anyhow::bail!(
            "config file {}: approvals.ttl_hours = {ttl} is out of range; expected between 0.0167 (one minute) and 2160 (90 days)",
            path.display()
        );
    }
    for (name, limits) in &file.workspaces {
        for (currency, amount) in limits.budget.iter().flat_map(|b| b.amounts()) {
            if !(amount.is_finite() && amount >= 0.0) {
                let key = match currency.is_empty() {
                    true => format!("workspaces.{name}.budget"),
                    false => format!("workspaces.{name}.budget.{currency}"),
                };
                anyhow::bail!(
                    "config file {}: {key} = {amount}; expected a non-negative amount (one for every currency, or a table such as `budget = {{ EUR = 150.0, USD = 160.0 }}`)",
                    path.display()
                );
            }
        }
    }
    Ok(file)
}

/// `$VAR/provisioning`, else `$HOME/HOME_SUBDIR/provisioning`, else the temp dir's.
/// Where the config file is looked for when `--config` is not given.
pub fn default_config_path() -> PathBuf {
    xdg_dir("XDG_CONFIG_HOME", ".config").join("config.toml")
}

fn xdg_dir(name: &str, home_subdir: &str) -> PathBuf {
    xdg_dir_from(var_os(name), var_os("HOME"), home_subdir)
}

/// As the XDG base-directory spec says: a variable that is empty or holds a relative path is
/// ignored (else an empty `XDG_DATA_HOME` would put the state under `./provisioning` in
/// whatever directory the command runs in).
fn xdg_dir_from(
    value: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
    home_subdir: &str,
) -> PathBuf {
    let usable = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    value
        .and_then(usable)
        .or_else(|| home.and_then(usable).map(|h| h.join(home_subdir)))
        .unwrap_or_else(std::env::temp_dir)
        .join("provisioning")
}

fn default_cache_dir() -> PathBuf {
    xdg_dir("XDG_CACHE_HOME", ".cache")
}

fn default_data_dir() -> PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share")
}

#[cfg(test)]
mod tests {
    use super::xdg_dir_from;
    use std::path::PathBuf;

    #[test]
    fn an_empty_or_relative_xdg_variable_counts_as_unset() {
        let home = || Some("/home/ada".into());
        let at = |p: &str| PathBuf::from(p);
        assert_eq!(
            xdg_dir_from(Some("/srv/data".into()), home(), ".local/share"),
            at("/srv/data/provisioning")
        );
        for ignored in ["", "relative/dir", "."] {
            assert_eq!(
                xdg_dir_from(Some(ignored.into()), home(), ".local/share"),
                at("/home/ada/.local/share/provisioning"),
                "XDG value {ignored:?}"
            );
        }
        assert_eq!(
            xdg_dir_from(None, Some("".into()), ".cache"),
            std::env::temp_dir().join("provisioning")
        );
    }
}
