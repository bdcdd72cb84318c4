//! The `ssh` provider: machines you already have (bare metal, VMs elsewhere), reached over SSH.
//!
//! The machines are an inventory in the operator's config (`[ssh.hosts.NAME]`: address, port,
//! user, a secret reference to the private key, the workspaces allowed to use it), never in a
//! Nickel config: a config names a host of the inventory (`host`, else the server's name), so
//! an assistant cannot point the operator's key at another machine or name a key file.
//!
//! "Create" registers and verifies: it reaches the host (recording its key on first contact),
//! reads its OS, cores and memory, and makes the server's folder `<root>/<workspace>/<server>`
//! on it. "Delete" runs the remove script of every taskserv still there and deletes that
//! folder; it never powers anything off. Taskservs are installed by their scripts from
//! `knowledge/taskservs/<name>/` (see [`runner`]), each in its own folder under the server's, so
//! several inventory hosts on one machine (different `root`s) and several workspaces on one
//! host never collide.

pub mod runner;
mod script;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Health, IdempotencyKey, Observed, Provider, ProviderError, ProviderResult, ServerSpec,
    TaskservSpec,
};
use crate::secrets::{SecretRef, Secrets};
use runner::{Output, Runner};
use script::{config_vars, preamble, script_error};

/// One machine of the inventory.
#[derive(Debug, Clone)]
pub struct SshHost {
    /// The inventory name configs use.
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// The private key; `None` leaves authentication to... nothing (the call fails unless the
    /// host accepts the account without a key, which OpenSSH never does by default).
    pub key: Option<SecretRef>,
    /// Where our folders live on the host; `None`: `$HOME/.provisioning` of `user`.
    pub root: Option<String>,
    /// Workspaces allowed to use the host; `*` allows every workspace.
    pub workspaces: Vec<String>,
    /// Where the operator configures the account and key (`[ssh.hosts.web]`, `[upcloud]`):
    /// what an error about them points to.
    pub configured_in: String,
}

impl SshHost {
    fn allows(&self, workspace: &str) -> bool {
        self.workspaces.iter().any(|w| w == "*" || w == workspace)
    }
}

/// The `ssh` provider.
#[derive(Debug)]
pub struct SshProvider {
    hosts: BTreeMap<String, SshHost>,
    /// Cloud servers: the account, port, key and root every attached server is reached with
    /// (its address comes from the cloud's API at create, see [`SshProvider::attach`]).
    cloud: Option<SshHost>,
    runner: Runner,
    /// Our records: which host each server was registered on, the scripts' logs.
    dir: PathBuf,
    /// How long one script may run (an install fetching packages takes a while).
    pub script_timeout: Duration,
}

/// What we remember of a registered server.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Registration {
    host: String,
    /// A cloud server's address (the host is not in the inventory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    /// A cloud server's account where it is not the cloud's (the image's default user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

impl SshProvider {
    /// `dir` holds the known-hosts file, the registrations and the logs.
    pub fn new(hosts: Vec<SshHost>, secrets: Secrets, dir: PathBuf) -> SshProvider {
        let runner = Runner {
            program: PathBuf::from("ssh"),
            known_hosts: dir.join("known_hosts"),
            private_dir: dir.join("private"),
            connect_timeout: Duration::from_secs(10),
            secrets,
        };
        let provider = SshProvider {
            hosts: hosts.into_iter().map(|h| (h.name.clone(), h)).collect(),
            cloud: None,
            runner,
            dir,
            script_timeout: Duration::from_secs(600),
        };
        provider.redact_kept_secrets();
        provider
    }

    /// Every secret kept from an earlier run joins the redactor now, not only when read: a
    /// script's output after a restart may quote one.
    fn redact_kept_secrets(&self) {
        fn walk(dir: &std::path::Path, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else {
                    found.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.dir.join("secrets"), &mut files);
        for file in files {
            if let Ok(text) = std::fs::read_to_string(&file) {
                self.runner
                    .secrets
                    .redactor()
                    .register(text.trim_end_matches('\n'));
            }
        }
    }

    /// The runner of a cloud provider: no inventory; servers are attached by the cloud
    /// provider once they run, and reached as `account` says (its name and address unused).
    pub fn for_cloud(account: SshHost, secrets: Secrets, dir: PathBuf) -> SshProvider {
        let mut provider = SshProvider::new(Vec::new(), secrets, dir);
        provider.cloud = Some(account);
        provider
    }

    /// The OpenSSH client to use (default `ssh` on `PATH`).
    pub fn with_program(mut self, program: PathBuf) -> SshProvider {
        self.runner.program = program;
        self
    }

    fn host_for_spec(&self, spec: &ServerSpec) -> ProviderResult<&SshHost> {
        let name = spec.host.as_deref().unwrap_or(&spec.name);
        let host = self.hosts.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.hosts.keys().map(String::as_str).collect();
            ProviderError::Permanent(format!(
                "server `{}` names host `{name}`, which is not in the operator's SSH inventory \
                 ({}); hosts are added by the operator in `[ssh.hosts.NAME]` of the config file",
                spec.name,
                if known.is_empty() {
                    "it is empty".to_string()
                } else {
                    format!("known: {}", known.join(", "))
                }
            ))
        })?;
        if !host.allows(&spec.workspace) {
            return Err(ProviderError::Permanent(format!(
                "host `{name}` is not open to workspace `{}` (its `workspaces` in \
                 `[ssh.hosts.{name}]`: {})",
                spec.workspace,
                host.workspaces.join(", ")
            )));
        }
        Ok(host)
    }

    fn registration_path(&self, workspace: &str, server: &str) -> PathBuf {
        self.dir
            .join("servers")
            .join(workspace)
            .join(format!("{server}.json"))
    }

    fn registered(&self, workspace: &str, server: &str) -> Option<SshHost> {
        let text = std::fs::read_to_string(self.registration_path(workspace, server)).ok()?;
        let reg: Registration = serde_json::from_str(&text).ok()?;
        match (reg.address, &self.cloud) {
            (Some(address), Some(account)) => Some(SshHost {
                name: reg.host,
                address,
                user: reg.user.unwrap_or_else(|| account.user.clone()),
                ..account.clone()
            }),
            (None, None) => self.hosts.get(&reg.host).cloned(),
            _ => None,
        }
    }

    fn register(&self, workspace: &str, server: &str, reg: &Registration) -> ProviderResult<()> {
        // Recorded before the host is reached: a crash after registering on the host leaves a
        // record that delete can follow.
        let path = self.registration_path(workspace, server);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ProviderError::Permanent(format!("{}: {e}", dir.display())))?;
        }
        let record = serde_json::to_string(reg).unwrap_or_default();
        std::fs::write(&path, record)
            .map_err(|e| ProviderError::Permanent(format!("{}: {e}", path.display())))
    }

    /// Whether `server` of `workspace` is registered (attached, for a cloud server).
    pub fn is_registered(&self, workspace: &str, server: &str) -> bool {
        self.registered(workspace, server).is_some()
    }

    /// A cloud server that now runs at `address` (as its cloud's API reports it): registered
    /// as host `id` (a name that is never reused, so a new server behind a reused address is
    /// not taken for the old one), then reached — waiting up to `wait` for its SSH server to
    /// come up and its key to be authorized — and its folder made. Returns what SSH reports
    /// (OS, cores, memory, the host key's fingerprint).
    pub async fn attach(
        &self,
        spec: &ServerSpec,
        id: &str,
        address: &str,
        user: Option<&str>,
        wait: Duration,
    ) -> ProviderResult<Observed> {
        let Some(account) = &self.cloud else {
            return Err(ProviderError::Permanent(
                "this ssh runner has no cloud account to reach servers with".into(),
            ));
        };
        // Provider output is data: only an IP address becomes an argument of `ssh`.
        let ip: std::net::IpAddr = address.parse().map_err(|_| {
            ProviderError::Permanent(format!(
                "{} reported `{}` as the address of server `{}`, which is not an IP address",
                spec.provider,
                address.chars().take(64).collect::<String>(),
                spec.name
            ))
        })?;
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-';
        if id.is_empty() || !id.chars().all(plain) {
            return Err(ProviderError::Permanent(format!(
                "`{}` cannot name a host (letters, digits and `-`)",
                id.chars().take(64).collect::<String>()
            )));
        }
        let account_name = |u: &str| {
            !u.is_empty()
                && !u.starts_with('-')
                && u.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
        };
        if let Some(u) = user.filter(|u| !account_name(u)) {
            return Err(ProviderError::Permanent(format!(
                "`{}` is not an account name to reach server `{}` as",
                u.chars().take(32).collect::<String>(),
                spec.name
            )));
        }
        let host = SshHost {
            name: id.to_string(),
            address: ip.to_string(),
            user: user.unwrap_or(&account.user).to_string(),
            ..account.clone()
        };
        self.register(
            &spec.workspace,
            &spec.name,
            &Registration {
                host: host.name.clone(),
                address: Some(host.address.clone()),
                user: user.map(str::to_string),
            },
        )?;
        let started = tokio::time::Instant::now();
        let deadline = started + wait;
        let mut delay = Duration::from_secs(1);
        loop {
            match self.facts(&host, spec, true).await {
                Ok((_, observed)) => return Ok(observed),
                // Booting: sshd not listening yet (transient), or listening before the key is
                // in place (refused, for the first minute).
                Err(err)
                    if tokio::time::Instant::now() + delay < deadline
                        && (err.retryable() || started.elapsed() < Duration::from_secs(60)) =>
                {
                    tracing::debug!(server = %spec.name, error = %err, "waiting for SSH");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// A cloud server as state records it: `api` (the cloud's view, whose `address` is the public
    /// IPv4 address) attached as host `<cloud>-<provider id>`, with what SSH reads on the machine
    /// added; the API stays the authority on what the server is.
    pub async fn attach_observed(
        &self,
        spec: &ServerSpec,
        api: Observed,
        wait: Duration,
    ) -> ProviderResult<Observed> {
        self.attach_observed_as(spec, api, None, wait).await
    }

    /// [`Self::attach_observed`] as `user` (the image's account) instead of the cloud's.
    pub async fn attach_observed_as(
        &self,
        spec: &ServerSpec,
        api: Observed,
        user: Option<&str>,
        wait: Duration,
    ) -> ProviderResult<Observed> {
        let address = api
            .attrs
            .get("address")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ProviderError::Permanent(format!(
                    "{} server {} has no public IPv4 address to reach it over SSH",
                    spec.provider, api.provider_id
                ))
            })?;
        let id = format!("{}-{}", spec.provider, api.provider_id);
        let mut seen = self.attach(spec, &id, address, user, wait).await?;
        seen.attrs.extend(api.attrs);
        seen.provider_id = api.provider_id;
        Ok(seen)
    }

    /// Forgets an attached server (its cloud server is gone): the registration, the secrets
    /// kept for its taskservs and its recorded host key.
    pub async fn detach(&self, workspace: &str, server: &str) {
        if let Some(host) = self.registered(workspace, server) {
            let _ = tokio::process::Command::new("ssh-keygen")
                .arg("-R")
                .arg(runner::key_alias(&host))
                .arg("-f")
                .arg(&self.runner.known_hosts)
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .output()
                .await;
            let _ = std::fs::remove_file(self.runner.known_hosts.with_extension("old"));
        }
        let _ = std::fs::remove_file(self.registration_path(workspace, server));
        self.drop_secrets(workspace, server, None);
    }

    fn host_for_taskserv(&self, spec: &TaskservSpec) -> ProviderResult<SshHost> {
        self.registered(&spec.workspace, &spec.server)
            .ok_or_else(|| {
                ProviderError::Permanent(format!(
                    "server `{}` of workspace `{}` is not registered with the ssh provider (or its \
                 host left the inventory); apply the server first",
                    spec.server, spec.workspace
                ))
            })
    }

    /// Where the secret `name` (`WORKSPACE/SERVER/TASKSERV/KEY`) is kept: a file only this
    /// account can read under `DIR/secrets`. Any other name is refused, so a fact cannot name
    /// a path of its own.
    fn secret_path(&self, name: &str) -> ProviderResult<PathBuf> {
        let parts: Vec<&str> = name.split('/').collect();
        let plain = |p: &&str| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if parts.len() != 4 || !parts.iter().all(plain) {
            return Err(ProviderError::Permanent(format!(
                "`{name}` is not a secret of the ssh provider (expected \
                 WORKSPACE/SERVER/TASKSERV/KEY)"
            )));
        }
        Ok(self.dir.join("secrets").join(name))
    }

    /// Keeps a value a taskserv's install generated; returns its name for the secret fact.
    fn keep_secret(
        &self,
        spec: &TaskservSpec,
        key: &str,
        value: &crate::secrets::Secret,
    ) -> ProviderResult<String> {
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(ProviderError::Permanent(format!(
                "taskserv `{}` reported a secret named `{key}`; names are lowercase letters, \
                 digits and `_`",
                spec.name
            )));
        }
        let name = format!("{}/{}/{}/{key}", spec.workspace, spec.server, spec.name);
        let path = self.secret_path(&name)?;
        self.runner.secrets.redactor().register(value.expose());
        let fail = |e: std::io::Error| {
            ProviderError::Permanent(format!(
                "cannot keep secret `{name}` in {}: {e}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent() {
            runner::create_private_dir(dir).map_err(fail)?;
        }
        let staged = path.with_extension("new");
        let _ = std::fs::remove_file(&staged);
        runner::write_private(&staged, value.expose()).map_err(fail)?;
        std::fs::rename(&staged, &path).map_err(fail)?;
        Ok(name)
    }

    /// Forgets the secrets of a taskserv (`Some`) or of a whole server.
    fn drop_secrets(&self, workspace: &str, server: &str, taskserv: Option<&str>) {
        let mut dir = self.dir.join("secrets").join(workspace).join(server);
        if let Some(t) = taskserv {
            dir = dir.join(t);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    fn log_path(&self, workspace: &str, server: &str, taskserv: &str) -> PathBuf {
        self.dir
            .join("logs")
            .join(workspace)
            .join(server)
            .join(format!("{taskserv}.log"))
    }

    /// The facts script: where our folders are, OS, cores, memory. `register`: make the
    /// server's folder (create), else only report whether it exists (inspect).
    fn facts_script(&self, host: &SshHost, spec: &ServerSpec, register: bool) -> String {
        let mut s = preamble(host, &spec.workspace, &spec.name, None, &[]);
        s.push_str("server_dir=\"$PROV_ROOT/$PROV_WORKSPACE/$PROV_SERVER\"\n");
        if register {
            s.push_str("mkdir -p \"$server_dir\"\n");
        }
        s.push_str(
            r#"if [ -d "$server_dir" ]; then echo "PROV_OUTPUT registered=yes"; else echo "PROV_OUTPUT registered=no"; fi
os=unknown
if [ -r /etc/os-release ]; then os=$(. /etc/os-release; printf '%s-%s' "${ID:-unknown}" "${VERSION_ID%%.*}"); fi
echo "PROV_OUTPUT os=$os"
echo "PROV_OUTPUT cores=$(nproc 2>/dev/null || echo 0)"
echo "PROV_OUTPUT memory_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo 2>/dev/null || echo 0)"
echo "PROV_OUTPUT arch=$(uname -m)"
echo "PROV_OUTPUT hostname=$(hostname 2>/dev/null || uname -n)"
"#,
        );
        s
    }

    async fn facts(
        &self,
        host: &SshHost,
        spec: &ServerSpec,
        register: bool,
    ) -> ProviderResult<(bool, Observed)> {
        let script = self.facts_script(host, spec, register);
        let out = self.runner.run(host, &script, CHECK_TIMEOUT, None).await?;
        if out.status != 0 {
            return Err(ProviderError::Permanent(format!(
                "host `{}` could not be inspected (exit {}): {}",
                host.name,
                out.status,
                out.last_words()
            )));
        }
        let facts: BTreeMap<String, String> = out.facts().into_iter().collect();
        let mut attrs: BTreeMap<String, Value> = BTreeMap::new();
        attrs.insert("host".into(), Value::from(host.name.clone()));
        attrs.insert("address".into(), Value::from(host.address.clone()));
        attrs.insert("ssh_port".into(), Value::from(host.port));
        attrs.insert("user".into(), Value::from(host.user.clone()));
        for key in ["os", "arch", "hostname"] {
            if let Some(v) = facts.get(key) {
                attrs.insert(key.into(), Value::from(v.clone()));
            }
        }
        for key in ["cores", "memory_mb"] {
            if let Some(n) = facts.get(key).and_then(|v| v.parse::<u64>().ok()) {
                attrs.insert(key.into(), Value::from(n));
            }
        }
        if let Some(fp) = self.fingerprint(host).await {
            attrs.insert("host_key".into(), Value::from(fp));
        }
        let registered = facts.get("registered").map(String::as_str) == Some("yes");
        Ok((
            registered,
            Observed {
                provider_id: format!("ssh:{}", host.name),
                attrs,
            },
        ))
    }

    /// The recorded host key's fingerprint (`SHA256:...`).
    async fn fingerprint(&self, host: &SshHost) -> Option<String> {
        let out = tokio::process::Command::new("ssh-keygen")
            .args(["-l", "-F"])
            .arg(runner::key_alias(host))
            .arg("-f")
            .arg(&self.runner.known_hosts)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .output()
            .await
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find(|w| w.starts_with("SHA256:"))
            .map(str::to_string)
    }

    fn scripts(&self, name: &str) -> ProviderResult<knowledge::TaskservScripts> {
        knowledge::taskserv_scripts(name)
            .map_err(|e| ProviderError::Permanent(e.to_string()))?
            .ok_or_else(|| {
                ProviderError::Permanent(format!(
                    "taskserv `{name}` has no install scripts for SSH hosts yet (available: {})",
                    knowledge::script_taskservs().join(", ")
                ))
            })
    }

    /// The whole text sent for one script of a taskserv: preamble, the shared functions, its
    /// health check as `prov_health`, then `body`.
    fn taskserv_script(
        &self,
        host: &SshHost,
        spec: &TaskservSpec,
        scripts: &knowledge::TaskservScripts,
        body: &str,
    ) -> ProviderResult<String> {
        let config = config_vars(&spec.config)?;
        let mut s = preamble(
            host,
            &spec.workspace,
            &spec.server,
            Some((&spec.name, &spec.version)),
            &config,
        );
        s.push_str(knowledge::taskserv_lib());
        s.push_str("\nprov_health() (\n");
        s.push_str(scripts.health);
        s.push_str("\n)\n");
        s.push_str(body);
        s.push('\n');
        Ok(s)
    }

    /// The exact text sent to the host to run one of a taskserv's scripts (`install`,
    /// `health` or `remove`): for a person who wants to run it by hand, and for the benchmark.
    pub fn script_text(&self, spec: &TaskservSpec, what: &str) -> ProviderResult<String> {
        let host = self.host_for_taskserv(spec)?;
        self.script_text_for(&host, spec, what)
    }

    fn script_text_for(
        &self,
        host: &SshHost,
        spec: &TaskservSpec,
        what: &str,
    ) -> ProviderResult<String> {
        let scripts = self.scripts(&spec.name)?;
        let body = match what {
            "install" => scripts.install,
            "health" => scripts.health,
            "remove" => scripts.remove,
            other => {
                return Err(ProviderError::Permanent(format!(
                    "no script `{other}`: install, health or remove"
                )));
            }
        };
        self.taskserv_script(host, spec, &scripts, body)
    }

    async fn run_taskserv(
        &self,
        host: &SshHost,
        spec: &TaskservSpec,
        what: &str,
    ) -> ProviderResult<Output> {
        let script = self.script_text_for(host, spec, what)?;
        let log = self.log_path(&spec.workspace, &spec.server, &spec.name);
        let timeout = if what == "health" {
            CHECK_TIMEOUT
        } else {
            self.script_timeout
        };
        self.runner.run(host, &script, timeout, Some(&log)).await
    }
}

#[async_trait]
impl Provider for SshProvider {
    fn name(&self) -> &str {
        "ssh"
    }

    async fn create_server(
        &self,
        _key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        let host = self.host_for_spec(spec)?;
        self.register(
            &spec.workspace,
            &spec.name,
            &Registration {
                host: host.name.clone(),
                address: None,
                user: None,
            },
        )?;
        let (_, observed) = self.facts(host, spec, true).await?;
        Ok(observed)
    }

    async fn update_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        self.create_server(key, spec).await
    }

    async fn inspect_server(&self, spec: &ServerSpec) -> ProviderResult<Option<Observed>> {
        let Some(host) = self.registered(&spec.workspace, &spec.name) else {
            return Ok(None);
        };
        let (registered, observed) = self.facts(&host, spec, false).await?;
        Ok(registered.then_some(observed))
    }

    async fn delete_server(&self, _key: &IdempotencyKey, spec: &ServerSpec) -> ProviderResult<()> {
        let Some(host) = self.registered(&spec.workspace, &spec.name) else {
            return Ok(());
        };
        // Whatever taskserv is still on the host goes through its remove script.
        let mut list = preamble(&host, &spec.workspace, &spec.name, None, &[]);
        list.push_str(
            "d=\"$PROV_ROOT/$PROV_WORKSPACE/$PROV_SERVER\"\n[ -d \"$d\" ] || exit 0\nfor t in \"$d\"/*/; do [ -d \"$t\" ] && echo \"PROV_OUTPUT taskserv=$(basename \"$t\")\"; done; true\n",
        );
        let out = self.runner.run(&host, &list, CHECK_TIMEOUT, None).await?;
        for (k, name) in out.facts() {
            if k != "taskserv" || knowledge::taskserv_scripts(&name).ok().flatten().is_none() {
                continue;
            }
            let ts = TaskservSpec {
                workspace: spec.workspace.clone(),
                server: spec.name.clone(),
                name,
                version: String::new(),
                config: serde_json::Map::new(),
            };
            self.remove_taskserv(_key, &ts).await?;
        }
        let mut rm = preamble(&host, &spec.workspace, &spec.name, None, &[]);
        rm.push_str("rm -rf \"$PROV_ROOT/$PROV_WORKSPACE/$PROV_SERVER\"\n");
        // The workspace's folder goes with its last server.
        rm.push_str("rmdir \"$PROV_ROOT/$PROV_WORKSPACE\" 2>/dev/null || true\n");
        let out = self.runner.run(&host, &rm, CHECK_TIMEOUT, None).await?;
        if out.status != 0 {
            return Err(ProviderError::Permanent(format!(
                "cannot delete the server's folder on host `{}`: {}",
                host.name,
                out.last_words()
            )));
        }
        let _ = std::fs::remove_file(self.registration_path(&spec.workspace, &spec.name));
        self.drop_secrets(&spec.workspace, &spec.name, None);
        Ok(())
    }

    async fn install_taskserv(
        &self,
        _key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<Observed> {
        let host = self.host_for_taskserv(spec)?;
        let out = self.run_taskserv(&host, spec, "install").await?;
        if out.status != 0 {
            return Err(script_error("install", spec, &host.name, &out));
        }
        let mut attrs: BTreeMap<String, Value> = out
            .facts()
            .into_iter()
            .map(|(k, v)| {
                let value = v.parse::<u64>().map_or(Value::from(v), Value::from);
                (k, value)
            })
            .collect();
        // A service listening on every address is reached at the host's inventory address.
        let wildcard = attrs
            .get("address")
            .and_then(Value::as_str)
            .is_none_or(|a| matches!(a, "0.0.0.0" | "::" | "[::]"));
        if wildcard {
            attrs.insert("address".into(), Value::from(host.address.clone()));
        }
        for (key, value) in &out.secrets {
            let name = self.keep_secret(spec, key, value)?;
            attrs.insert(key.clone(), super::secret_fact(&name));
        }
        attrs.insert("host".into(), Value::from(host.name.clone()));
        attrs.insert("version".into(), Value::from(spec.version.clone()));
        Ok(Observed {
            provider_id: format!(
                "ssh:{}/{}/{}/{}",
                host.name, spec.workspace, spec.server, spec.name
            ),
            attrs,
        })
    }

    async fn taskserv_health(&self, spec: &TaskservSpec) -> ProviderResult<Health> {
        let Some(host) = self.registered(&spec.workspace, &spec.server) else {
            return Ok(Health::Missing);
        };
        let out = self.run_taskserv(&host, spec, "health").await?;
        Ok(match out.status {
            0 => Health::Healthy,
            2 => Health::Missing,
            _ => Health::Unhealthy(out.last_words()),
        })
    }

    async fn remove_taskserv(
        &self,
        _key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<()> {
        let Ok(host) = self.host_for_taskserv(spec) else {
            // Not registered: nothing of ours can be on a host.
            return Ok(());
        };
        let out = self.run_taskserv(&host, spec, "remove").await?;
        if out.status != 0 {
            return Err(script_error("remove", spec, &host.name, &out));
        }
        self.drop_secrets(&spec.workspace, &spec.server, Some(&spec.name));
        Ok(())
    }

    fn read_secret(&self, name: &str) -> ProviderResult<crate::secrets::Secret> {
        let path = self.secret_path(name)?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ProviderError::Permanent(format!(
                "secret `{name}` is not kept here any more ({}: {e}); install its taskserv again",
                path.display()
            ))
        })?;
        let value = text.trim_end_matches('\n').to_string();
        self.runner.secrets.redactor().register(&value);
        Ok(crate::secrets::Secret::new(value))
    }
}
