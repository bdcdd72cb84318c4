//! The `hetzner` provider: servers on Hetzner Cloud, through its public REST API (`/v1`).
//!
//! A server is created from the provider's default image (a current Debian) with the operator's
//! SSH key (registered once per project, found again by its public key), labelled with who owns
//! it (`managed-by=provisioning`, `prov-workspace`, `prov-server`) and named
//! `<workspace>-<server>` (names are unique in a Hetzner project). Hetzner's mutating calls
//! return *actions*; each is polled until it succeeds or fails, then the server is waited for
//! in the status the next call needs (backing off from 0.5 s to 10 s).
//!
//! Finding our server again: the id recorded when it was created (in the provider's folder),
//! checked against its name; else a lookup by our labels (`label_selector`, and the labels
//! checked again here); a create that meets a taken name adopts the server only when it
//! carries our labels. So a step repeated after a crash never makes a second server.
//!
//! Rate limits: a `429` is waited out (until `RateLimit-Reset`, within bounds) and the call
//! repeated; `423 locked` (another action runs) and 5xx are transient for the step's retries.
//!
//! Around each server ([`guard`]): a firewall of its own (SSH from `ssh_from`, ICMP, and the
//! public ports of its taskservs) and the workspace's private network in its network zone.
//!
//! Taskservs are installed over SSH exactly as on UpCloud (see [`super::upcloud`]): once a
//! server runs, its public IPv4 address is attached to this provider's own SSH runner, which
//! waits for sshd and the key, when `[hetzner] ssh_key` is set.
//!
//! Credentials: `HCLOUD_TOKEN` (or `[hetzner] token`, a secret reference), resolved at each
//! call and redacted; the endpoint `HCLOUD_ENDPOINT` (or `[hetzner] endpoint`), as Hetzner's own
//! tools take them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::ssh::{SshHost, SshProvider};
use super::web::{encode, without_url};
use super::{
    Health, IdempotencyKey, Observed, Provider, ProviderError, ProviderResult, ServerSpec,
    TaskservSpec,
};
use crate::secrets::{SecretRef, Secrets};

mod guard;

const MANAGED_BY: &str = "managed-by";
const WORKSPACE: &str = "prov-workspace";
const SERVER: &str = "prov-server";

/// How Hetzner Cloud is reached and who we are there.
#[derive(Debug, Clone)]
pub struct HetznerSettings {
    /// Base URL with `/v1` (default `https://api.hetzner.cloud/v1`).
    pub endpoint: String,
    pub token: SecretRef,
    /// Registered as the project's SSH key for our servers (root's authorized key).
    pub ssh_public_key: Option<String>,
    /// The API's names for catalog plans and zones where they differ (a Hetzner-compatible API
    /// with other names); both ways, so state and drift speak the catalog's names.
    pub names: BTreeMap<String, String>,
    /// The private key matching `ssh_public_key`: without it nothing is installed on servers.
    pub ssh_key: Option<SecretRef>,
    /// The account and port SSH reaches servers with (default `root`, 22).
    pub ssh_user: String,
    pub ssh_port: u16,
    /// CIDRs each server's firewall admits to SSH (`[]`: nobody).
    pub ssh_from: Vec<String>,
    /// Whether each server gets a firewall of its own (default true).
    pub firewall: bool,
    /// Whether the workspace's servers join a private network (default true).
    pub private_network: bool,
    /// Longest wait for an action or a server status (and for SSH).
    pub state_wait: Duration,
}

/// The `hetzner` provider.
#[derive(Debug)]
pub struct HetznerProvider {
    settings: HetznerSettings,
    secrets: Secrets,
    http: reqwest::Client,
    /// Our records: the id of each server we created.
    dir: PathBuf,
    /// Installs taskservs on our servers (records under `dir/ssh`).
    ssh: SshProvider,
    /// One change at a time to the records of ports and to the workspace's networks.
    guard_lock: tokio::sync::Mutex<()>,
    /// The public ports of each server's taskservs, for its firewall.
    ports: super::ports::PortRecords,
}

impl HetznerProvider {
    pub fn new(settings: HetznerSettings, secrets: Secrets, dir: PathBuf) -> HetznerProvider {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("provisioning/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let account = SshHost {
            name: "hetzner".into(),
            address: String::new(),
            port: settings.ssh_port,
            user: settings.ssh_user.clone(),
            key: settings.ssh_key.clone(),
            root: None,
            workspaces: vec!["*".into()],
            configured_in: "[hetzner] ssh_key, ssh_user, ssh_port".into(),
        };
        let ssh = SshProvider::for_cloud(account, secrets.clone(), dir.join("ssh"));
        HetznerProvider {
            settings,
            secrets,
            http,
            ports: super::ports::PortRecords::new(&dir),
            dir,
            ssh,
            guard_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The API's name for a catalog name.
    fn api_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.settings.names.get(name).map_or(name, String::as_str)
    }

    /// The catalog's name for an API name.
    fn catalog_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.settings
            .names
            .iter()
            .find(|(_, v)| v.as_str() == name)
            .map_or(name, |(k, _)| k.as_str())
    }

    /// One call. `Ok(None)` for 404; a 429 is waited out and repeated (up to five times).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> ProviderResult<Option<Value>> {
        let url = format!("{}/{path}", self.settings.endpoint.trim_end_matches('/'));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let token = self.secrets.resolve(&self.settings.token).map_err(|e| {
                ProviderError::Permanent(format!(
                    "provider `hetzner` has no API token: {e} (set HCLOUD_TOKEN, or `[hetzner] \
                     token` in the config file)"
                ))
            })?;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose());
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| {
                ProviderError::Transient(format!(
                    "Hetzner Cloud API at {} did not answer {method} /{path}: {}",
                    self.settings.endpoint,
                    without_url(&e)
                ))
            })?;
            let status = response.status();
            let reset = response
                .headers()
                .get("ratelimit-reset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                if text.trim().is_empty() {
                    return Ok(Some(Value::Null));
                }
                return serde_json::from_str(&text).map(Some).map_err(|e| {
                    ProviderError::Transient(format!(
                        "Hetzner answered {method} /{path} with a body that is not JSON: {e}"
                    ))
                });
            }
            let (code, message) = api_error(&text);
            let what = format!("Hetzner refused {method} /{path}: {status} {code}: {message}");
            match status.as_u16() {
                404 => return Ok(None),
                429 if attempt <= 5 => {
                    tokio::time::sleep(rate_limit_wait(reset, attempt)).await;
                    continue;
                }
                401 | 403 => {
                    return Err(ProviderError::Permanent(format!(
                        "{what} (token from {})",
                        self.settings.token.describe()
                    )));
                }
                409 if code == "conflict" => return Err(ProviderError::Transient(what)),
                423 | 429 => return Err(ProviderError::Transient(what)),
                s if s >= 500 => return Err(ProviderError::Transient(what)),
                _ => return Err(ProviderError::Permanent(what)),
            }
        }
    }

    async fn get(&self, path: &str) -> ProviderResult<Option<Value>> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> ProviderResult<Value> {
        Ok(self
            .call(reqwest::Method::POST, path, Some(body))
            .await?
            .unwrap_or(Value::Null))
    }

    fn record_path(&self, workspace: &str, name: &str) -> PathBuf {
        self.dir
            .join("servers")
            .join(workspace)
            .join(format!("{name}.json"))
    }

    fn record(&self, spec: &ServerSpec, id: u64) -> ProviderResult<()> {
        let path = self.record_path(&spec.workspace, &spec.name);
        let fail = |e: std::io::Error| {
            ProviderError::Permanent(format!(
                "cannot record server id in {}: {e}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        std::fs::write(&path, json!({ "id": id }).to_string()).map_err(fail)
    }

    fn recorded(&self, workspace: &str, name: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.record_path(workspace, name)).ok()?;
        serde_json::from_str::<Value>(&text).ok()?["id"].as_u64()
    }

    fn forget(&self, workspace: &str, name: &str) {
        let _ = std::fs::remove_file(self.record_path(workspace, name));
    }

    /// The name of our server in the project.
    fn server_name(spec: &ServerSpec) -> ProviderResult<String> {
        let name = format!("{}-{}", spec.workspace, spec.name);
        if name.len() > 63 {
            return Err(ProviderError::Permanent(format!(
                "Hetzner server names are at most 63 characters; `{name}` (workspace-server) is {}",
                name.len()
            )));
        }
        Ok(name)
    }

    fn ours(server: &Value, workspace: &str, name: &str) -> bool {
        let labels = &server["labels"];
        labels[MANAGED_BY] == "provisioning"
            && labels[WORKSPACE] == workspace
            && labels[SERVER] == name
    }

    /// Our server for `spec`, if Hetzner has it.
    async fn find(&self, spec: &ServerSpec) -> ProviderResult<Option<Value>> {
        self.find_named(&spec.workspace, &spec.name).await
    }

    async fn find_named(&self, workspace: &str, name: &str) -> ProviderResult<Option<Value>> {
        let full = format!("{workspace}-{name}");
        if let Some(id) = self.recorded(workspace, name) {
            match self.get(&format!("servers/{id}")).await? {
                // The id is ours only while it names our server (ids can be reused).
                Some(v) if v["server"]["name"] == full.as_str() => {
                    return Ok(Some(v["server"].clone()));
                }
                _ => self.forget(workspace, name),
            }
        }
        let selector =
            format!("{MANAGED_BY}==provisioning,{WORKSPACE}=={workspace},{SERVER}=={name}");
        let listed = self
            .get(&format!("servers?label_selector={}", encode(&selector)))
            .await?
            .unwrap_or(Value::Null);
        let mine: Vec<&Value> = listed["servers"]
            .as_array()
            .into_iter()
            .flatten()
            // The selector is the API's filter; the labels are checked here too.
            .filter(|s| Self::ours(s, workspace, name))
            .collect();
        match mine.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => Err(ProviderError::Permanent(format!(
                "Hetzner has {} servers labelled as `{name}` of workspace `{workspace}` (ids {}); \
                 delete the extra ones by hand, then apply again",
                many.len(),
                many.iter()
                    .map(|s| s["id"].to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Polls an action until it succeeds (or fails: permanent, with Hetzner's reason).
    async fn finish(&self, action: &Value) -> ProviderResult<()> {
        let Some(id) = action["id"].as_u64() else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + self.settings.state_wait;
        let mut delay = Duration::from_millis(500);
        let mut now = action.clone();
        loop {
            match now["status"].as_str() {
                Some("success") => return Ok(()),
                Some("error") => {
                    return Err(ProviderError::Permanent(format!(
                        "Hetzner action {} ({}) failed: {}: {}",
                        id,
                        now["command"].as_str().unwrap_or("?"),
                        now["error"]["code"].as_str().unwrap_or("?"),
                        now["error"]["message"].as_str().unwrap_or("?")
                    )));
                }
                _ => {}
            }
            if tokio::time::Instant::now() + delay > deadline {
                return Err(ProviderError::Transient(format!(
                    "Hetzner action {id} ({}) is still running after {} s",
                    now["command"].as_str().unwrap_or("?"),
                    self.settings.state_wait.as_secs()
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
            now = self
                .get(&format!("actions/{id}"))
                .await?
                .map(|v| v["action"].clone())
                .unwrap_or(Value::Null);
        }
    }

    /// Waits until the server's status is `want`.
    async fn wait_for(&self, id: u64, want: &str) -> ProviderResult<Value> {
        let deadline = tokio::time::Instant::now() + self.settings.state_wait;
        let mut delay = Duration::from_millis(500);
        loop {
            let server = self
                .get(&format!("servers/{id}"))
                .await?
                .map(|v| v["server"].clone())
                .ok_or_else(|| {
                    ProviderError::Permanent(format!(
                        "Hetzner server {id} disappeared while waiting for it to be {want}"
                    ))
                })?;
            let status = server["status"].as_str().unwrap_or_default().to_string();
            if status == want {
                return Ok(server);
            }
            if tokio::time::Instant::now() + delay > deadline {
                return Err(ProviderError::Transient(format!(
                    "Hetzner server {id} is still `{status}` after {} s, not `{want}`",
                    self.settings.state_wait.as_secs()
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// The project's SSH key with our public key: found by the key itself, else registered.
    async fn ssh_key_id(&self) -> ProviderResult<Option<u64>> {
        let Some(public) = &self.settings.ssh_public_key else {
            return Ok(None);
        };
        let bare = |k: &str| k.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let want = bare(public);
        let mut page = 1;
        loop {
            let listed = self
                .get(&format!("ssh_keys?per_page=50&page={page}"))
                .await?
                .unwrap_or(Value::Null);
            for key in listed["ssh_keys"].as_array().into_iter().flatten() {
                if bare(key["public_key"].as_str().unwrap_or_default()) == want {
                    return Ok(key["id"].as_u64());
                }
            }
            match listed["meta"]["pagination"]["next_page"].as_u64() {
                Some(next) if next > page => page = next,
                _ => break,
            }
        }
        use sha2::Digest;
        let digest = sha2::Sha256::digest(want.as_bytes());
        let name = format!(
            "provisioning-{}",
            digest
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let made = self
            .post(
                "ssh_keys",
                &json!({ "name": name, "public_key": public, "labels": { MANAGED_BY: "provisioning" } }),
            )
            .await?;
        Ok(made["ssh_key"]["id"].as_u64())
    }

    async fn create(&self, spec: &ServerSpec) -> ProviderResult<Value> {
        let name = Self::server_name(spec)?;
        let (_, image) = spec.image_entry()?;
        let mut labels = serde_json::Map::new();
        for (k, v) in &spec.labels {
            labels.insert(k.clone(), Value::from(v.clone()));
        }
        labels.insert(MANAGED_BY.into(), Value::from("provisioning"));
        labels.insert(WORKSPACE.into(), Value::from(spec.workspace.clone()));
        labels.insert(SERVER.into(), Value::from(spec.name.clone()));
        let mut body = json!({
            "name": name,
            "server_type": self.api_name(&spec.plan),
            "location": self.api_name(&spec.zone),
            "image": self.api_name(&image.api),
            "labels": labels,
            "start_after_create": true,
            "public_net": { "enable_ipv4": true, "enable_ipv6": true },
        });
        if let Some(key) = self.ssh_key_id().await? {
            body["ssh_keys"] = json!([key]);
        }
        if let Some(firewall) = self.firewall_for(spec).await? {
            body["firewalls"] = json!([{ "firewall": firewall }]);
        }
        if let Some(network) = self.network_for(spec).await? {
            body["networks"] = json!([network]);
        }
        let made = match self.post("servers", &body).await {
            Ok(made) => made,
            Err(ProviderError::Permanent(why)) if why.contains("uniqueness_error") => {
                // The name is taken: ours from an attempt whose answer was lost, or not ours.
                let listed = self
                    .get(&format!("servers?name={}", encode(&name)))
                    .await?
                    .unwrap_or(Value::Null);
                let found = listed["servers"]
                    .as_array()
                    .and_then(|a| a.first())
                    .cloned();
                return match found {
                    Some(s) if Self::ours(&s, &spec.workspace, &spec.name) => {
                        if let Some(id) = s["id"].as_u64() {
                            self.record(spec, id)?;
                        }
                        Ok(s)
                    }
                    _ => Err(ProviderError::Permanent(format!(
                        "Hetzner already has a server named `{name}` that does not carry our \
                         labels (managed-by=provisioning, prov-workspace, prov-server): it is not \
                         ours to adopt; rename or delete it"
                    ))),
                };
            }
            Err(e) => return Err(e),
        };
        let id = made["server"]["id"].as_u64().ok_or_else(|| {
            ProviderError::Transient("Hetzner answered the create without a server id".into())
        })?;
        self.record(spec, id)?;
        self.finish(&made["action"]).await?;
        for next in made["next_actions"].as_array().into_iter().flatten() {
            self.finish(next).await?;
        }
        self.wait_for(id, "running").await
    }

    async fn attached(&self, spec: &TaskservSpec) -> ProviderResult<bool> {
        if self.settings.ssh_key.is_none() {
            return Err(ProviderError::Permanent(format!(
                "taskserv `{}` on Hetzner server `{}`: taskservs are installed over SSH, and \
                 `[hetzner] ssh_key` (the private key matching `ssh_public_key`) is not set in \
                 the operator's config",
                spec.name, spec.server
            )));
        }
        if self.ssh.is_registered(&spec.workspace, &spec.server) {
            return Ok(true);
        }
        // Created before SSH was configured, or its record lost: attach it now.
        let server_spec = ServerSpec {
            workspace: spec.workspace.clone(),
            name: spec.server.clone(),
            provider: "hetzner".into(),
            plan: String::new(),
            zone: String::new(),
            labels: BTreeMap::new(),
            host: None,
            image: None,
        };
        let Some(server) = self.find(&server_spec).await? else {
            return Ok(false);
        };
        self.ssh
            .attach_observed(
                &server_spec,
                self.observed(&server),
                self.settings.state_wait,
            )
            .await
            .map(|_| true)
    }

    fn observed(&self, server: &Value) -> Observed {
        let mut attrs = BTreeMap::new();
        if let Some(ip) = server["public_net"]["ipv4"]["ip"].as_str() {
            attrs.insert("address".into(), Value::from(ip));
        }
        if let Some(net) = server["public_net"]["ipv6"]["ip"].as_str() {
            attrs.insert("ipv6".into(), Value::from(net));
        }
        if let Some(ip) = server["private_net"][0]["ip"].as_str() {
            attrs.insert("private_address".into(), Value::from(ip));
        }
        if let Some(t) = server["server_type"]["name"].as_str() {
            attrs.insert("plan".into(), Value::from(self.catalog_name(t)));
        }
        if let Some(z) = server["datacenter"]["location"]["name"].as_str() {
            attrs.insert("zone".into(), Value::from(self.catalog_name(z)));
        }
        if let Some(s) = server["status"].as_str() {
            attrs.insert("state".into(), Value::from(s));
        }
        if let Some(i) = server["image"]["name"].as_str() {
            // The catalog's name for the API's image.
            let api = self.catalog_name(i);
            let name = knowledge::Catalog::embedded()
                .ok()
                .and_then(|c| c.provider("hetzner"))
                .and_then(|p| p.images.iter().find(|(_, img)| img.api == api))
                .map_or(api, |(n, _)| n.as_str());
            attrs.insert("image".into(), Value::from(name));
        }
        for (key, field) in [("cores", "cores"), ("memory_gb", "memory")] {
            if let Some(n) = server["server_type"][field].as_f64() {
                attrs.insert(key.into(), json!(n));
            }
        }
        Observed {
            provider_id: server["id"]
                .as_u64()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            attrs,
        }
    }
}

/// How long to wait after a 429: until `RateLimit-Reset` (a Unix time) when given, else
/// 1, 2, 4... s; never more than 60 s at once.
fn rate_limit_wait(reset: Option<u64>, attempt: u32) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let secs = match reset {
        Some(at) if at > now => at - now,
        _ => 1u64 << attempt.saturating_sub(1).min(5),
    };
    Duration::from_secs(secs.clamp(1, 60))
}

/// `{"error": {"code", "message"}}`.
fn api_error(text: &str) -> (String, String) {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    match v.get("error") {
        Some(e) => (
            e["code"].as_str().unwrap_or_default().to_string(),
            e["message"].as_str().unwrap_or_default().to_string(),
        ),
        None => (String::new(), text.chars().take(300).collect()),
    }
}

#[async_trait]
impl Provider for HetznerProvider {
    fn name(&self) -> &str {
        "hetzner"
    }

    async fn create_server(
        &self,
        _key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        let server = match self.find(spec).await? {
            Some(s) => s,
            None => self.create(spec).await?,
        };
        let id = server["id"].as_u64().unwrap_or_default();
        let server = match server["status"].as_str() {
            Some("running") => server,
            Some("off") => {
                let started = self
                    .post(&format!("servers/{id}/actions/poweron"), &json!({}))
                    .await?;
                self.finish(&started["action"]).await?;
                self.wait_for(id, "running").await?
            }
            _ => self.wait_for(id, "running").await?,
        };
        // Made by an earlier attempt, or before the firewall or network existed.
        self.guard(spec, &server).await?;
        let server = self.wait_for(id, "running").await?;
        let api = self.observed(&server);
        if self.settings.ssh_key.is_none() {
            return Ok(api);
        }
        self.ssh
            .attach_observed(spec, api, self.settings.state_wait)
            .await
    }

    async fn update_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        let Some(server) = self.find(spec).await? else {
            return self.create_server(key, spec).await;
        };
        let id = server["id"].as_u64().unwrap_or_default();
        let mut labels = server["labels"].as_object().cloned().unwrap_or_default();
        for (k, v) in &spec.labels {
            labels.insert(k.clone(), Value::from(v.clone()));
        }
        self.call(
            reqwest::Method::PUT,
            &format!("servers/{id}"),
            Some(&json!({ "labels": labels })),
        )
        .await?;
        let want = self.api_name(&spec.plan).to_string();
        if server["server_type"]["name"].as_str() != Some(want.as_str()) {
            // A type change needs the server off; the disk is kept as it is (downgrade-able).
            if server["status"].as_str() != Some("off") {
                let off = self
                    .post(&format!("servers/{id}/actions/shutdown"), &json!({}))
                    .await?;
                self.finish(&off["action"]).await?;
                self.wait_for(id, "off").await?;
            }
            let changed = self
                .post(
                    &format!("servers/{id}/actions/change_type"),
                    &json!({ "server_type": want, "upgrade_disk": false }),
                )
                .await?;
            self.finish(&changed["action"]).await?;
        }
        self.create_server(key, spec).await
    }

    async fn inspect_server(&self, spec: &ServerSpec) -> ProviderResult<Option<Observed>> {
        Ok(self.find(spec).await?.map(|s| self.observed(&s)))
    }

    async fn delete_server(&self, _key: &IdempotencyKey, spec: &ServerSpec) -> ProviderResult<()> {
        if let Some(server) = self.find(spec).await? {
            let id = server["id"].as_u64().unwrap_or_default();
            if let Some(done) = self
                .call(reqwest::Method::DELETE, &format!("servers/{id}"), None)
                .await?
            {
                self.finish(&done["action"]).await?;
            }
        }
        self.forget(&spec.workspace, &spec.name);
        // The machine is gone with everything on it: forget how we reached it.
        self.ssh.detach(&spec.workspace, &spec.name).await;
        self.unguard(spec).await
    }

    async fn install_taskserv(
        &self,
        key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<Observed> {
        if !self.attached(spec).await? {
            return Err(ProviderError::Permanent(format!(
                "Hetzner has no server `{}` of workspace `{}` to install taskserv `{}` on; apply \
                 the server first",
                spec.server, spec.workspace, spec.name
            )));
        }
        let observed = self.ssh.install_taskserv(key, spec).await?;
        self.taskserv_ports(spec, true).await?;
        Ok(observed)
    }

    async fn taskserv_health(&self, spec: &TaskservSpec) -> ProviderResult<Health> {
        // A server deleted behind our back takes its taskservs with it.
        let there = if self.ssh.is_registered(&spec.workspace, &spec.server) {
            self.find_named(&spec.workspace, &spec.server)
                .await?
                .is_some()
        } else {
            self.attached(spec).await?
        };
        if !there {
            return Ok(Health::Missing);
        }
        self.ssh.taskserv_health(spec).await
    }

    async fn remove_taskserv(
        &self,
        key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<()> {
        if self
            .find_named(&spec.workspace, &spec.server)
            .await?
            .is_none()
        {
            // The server is gone, and the taskserv with it.
            return Ok(());
        }
        self.ssh.remove_taskserv(key, spec).await?;
        self.taskserv_ports(spec, false).await
    }

    fn read_secret(&self, name: &str) -> ProviderResult<crate::secrets::Secret> {
        self.ssh.read_secret(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_is_waited_out_within_bounds() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let wait = rate_limit_wait(Some(now + 7), 1).as_secs();
        assert!((6..=7).contains(&wait), "{wait}");
        assert_eq!(rate_limit_wait(Some(now + 3600), 1).as_secs(), 60);
        assert_eq!(rate_limit_wait(None, 1).as_secs(), 1);
        assert_eq!(rate_limit_wait(None, 3).as_secs(), 4);
        assert_eq!(rate_limit_wait(Some(now - 5), 2).as_secs(), 2);
    }

    #[test]
    fn errors_are_read_from_the_envelope() {
        assert_eq!(
            api_error(
                r#"{"error":{"code":"uniqueness_error","message":"name already used","details":null}}"#
            ),
            (
                "uniqueness_error".to_string(),
                "name already used".to_string()
            )
        );
    }

    #[test]
    fn only_servers_with_all_our_labels_are_ours() {
        let s = json!({"labels": {"managed-by": "provisioning", "prov-workspace": "w", "prov-server": "a"}});
        assert!(HetznerProvider::ours(&s, "w", "a"));
        assert!(!HetznerProvider::ours(&s, "w", "b"));
        assert!(!HetznerProvider::ours(&json!({"labels": {}}), "w", "a"));
    }
}
