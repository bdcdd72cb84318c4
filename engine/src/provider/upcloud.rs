//! The `upcloud` provider: servers on UpCloud, through its public REST API (version 1.3).
//!
//! A server is created from a Debian template with the operator's SSH public key in its login
//! block, labelled with who owns it (`managed-by=provisioning`, `prov-workspace`,
//! `prov-server`). UpCloud has no client token, so every create first looks the server up by
//! those labels: a step repeated after a crash finds the server it made instead of making a
//! second one. Calls follow the server state machine: after a create, wait for `started`; a plan
//! change stops the server, changes it and starts it again; a delete stops it and waits for
//! `stopped` first (UpCloud refuses to delete a started server), and takes its disks with it.
//!
//! Software gets onto a server the way it gets onto any machine: over SSH, by the `ssh`
//! provider's runner (see [`super::ssh`]). Once a server is `started`, its public address (as
//! the API reports it) is attached to a runner of this provider's own, which waits for the SSH
//! server to come up and the key to be accepted; taskservs are then installed, checked and
//! removed by their scripts exactly as on an inventory host. With no `[upcloud] ssh_key`
//! servers are created but nothing is installed on them (a clear error says what to set).
//!
//! Each server has its own firewall ([`firewall`]): SSH from `ssh_from`, its taskservs' public
//! ports, the utility network and the replies to its own connections (UpCloud's firewall is
//! stateless); everything else inbound is dropped.
//!
//! Credentials are secret references resolved at the moment of each call (by default the
//! variables UpCloud's own tools read: `UPCLOUD_USERNAME` and `UPCLOUD_PASSWORD`, or
//! `UPCLOUD_TOKEN`), never from a config, a tool argument or the model; every value resolved
//! joins the redactor. The endpoint can be overridden the way UpCloud's tools allow
//! (`UPCLOUD_DEBUG_API_BASE_URL`, without `/1.3`) or in the config file.

use std::collections::BTreeMap;
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

mod firewall;

/// Label keys of ownership (UpCloud label keys: 2–32 printable characters, not starting with `_`).
const MANAGED_BY: &str = "managed-by";
const WORKSPACE: &str = "prov-workspace";
const SERVER: &str = "prov-server";

/// How UpCloud is reached and who we are there.
#[derive(Debug, Clone)]
pub struct UpCloudSettings {
    /// Base URL without `/1.3` (default `https://api.upcloud.com`).
    pub endpoint: String,
    pub auth: UpCloudAuth,
    /// Public key put in every server's login block, for the SSH runner.
    pub ssh_public_key: Option<String>,
    /// The matching private key: without it no taskserv can be installed on UpCloud servers.
    pub ssh_key: Option<SecretRef>,
    /// The account of the login block (default `root`), and the SSH port (default 22).
    pub ssh_user: String,
    pub ssh_port: u16,
    /// CIDRs each server's firewall admits to SSH (`[]`: nobody).
    pub ssh_from: Vec<String>,
    /// Whether each server's firewall is set and switched on (default true).
    pub firewall: bool,
    /// Longest wait for a server to reach the state a call needs (and for its SSH server).
    pub state_wait: Duration,
}

/// Credentials, as references.
#[derive(Debug, Clone)]
pub enum UpCloudAuth {
    Basic {
        username: SecretRef,
        password: SecretRef,
    },
    Token(SecretRef),
}

impl UpCloudAuth {
    fn describe(&self) -> String {
        match self {
            UpCloudAuth::Basic { username, password } => format!(
                "username from {} and password from {}",
                username.describe(),
                password.describe()
            ),
            UpCloudAuth::Token(t) => format!("token from {}", t.describe()),
        }
    }
}

/// The `upcloud` provider.
#[derive(Debug)]
pub struct UpCloudProvider {
    settings: UpCloudSettings,
    secrets: Secrets,
    http: reqwest::Client,
    /// Installs taskservs on our servers (its records, known hosts and logs are in `dir`).
    ssh: SshProvider,
    /// The public ports of each server's taskservs, for its firewall.
    ports: super::ports::PortRecords,
    /// One change at a time to the records of ports.
    ports_lock: tokio::sync::Mutex<()>,
}

impl UpCloudProvider {
    /// `dir`: the SSH runner's records (registrations, known hosts, taskserv logs, secrets).
    pub fn new(
        settings: UpCloudSettings,
        secrets: Secrets,
        dir: std::path::PathBuf,
    ) -> UpCloudProvider {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("provisioning/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let account = SshHost {
            name: "upcloud".into(),
            address: String::new(),
            port: settings.ssh_port,
            user: settings.ssh_user.clone(),
            key: settings.ssh_key.clone(),
            root: None,
            workspaces: vec!["*".into()],
            configured_in: "[upcloud] ssh_key, ssh_user, ssh_port".into(),
        };
        let ports = super::ports::PortRecords::new(&dir);
        let ssh = SshProvider::for_cloud(account, secrets.clone(), dir);
        UpCloudProvider {
            settings,
            secrets,
            http,
            ssh,
            ports,
            ports_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/1.3/{path}",
            self.settings.endpoint.trim_end_matches('/')
        )
    }

    /// The credentials, resolved now; a reference that does not resolve is a permanent error
    /// naming where it was looked for.
    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> ProviderResult<reqwest::RequestBuilder> {
        let resolve = |r: &SecretRef| {
            self.secrets.resolve(r).map_err(|e| {
                ProviderError::Permanent(format!(
                    "provider `upcloud` has no credentials: {e} (set UPCLOUD_USERNAME and \
                     UPCLOUD_PASSWORD, or UPCLOUD_TOKEN, or `[upcloud]` in the config file)"
                ))
            })
        };
        Ok(match &self.settings.auth {
            UpCloudAuth::Basic { username, password } => {
                let user = resolve(username)?;
                let pass = resolve(password)?;
                request.basic_auth(user.expose(), Some(pass.expose()))
            }
            UpCloudAuth::Token(t) => request.bearer_auth(resolve(t)?.expose()),
        })
    }

    /// One API call: `Ok(None)` for 404, the body otherwise; errors classified (401/403 and
    /// other 4xx permanent, 429, 5xx and network errors transient). Bodies are provider data.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> ProviderResult<Option<Value>> {
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let request = self.authorize(request.header("Accept", "application/json"))?;
        let response = request.send().await.map_err(|e| {
            ProviderError::Transient(format!(
                "UpCloud API at {} did not answer {method} /1.3/{path}: {}",
                self.settings.endpoint,
                without_url(&e)
            ))
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Some(Value::Null));
            }
            return serde_json::from_str(&text).map(Some).map_err(|e| {
                ProviderError::Transient(format!(
                    "UpCloud answered {method} /1.3/{path} with a body that is not JSON: {e}"
                ))
            });
        }
        let (code, message) = api_error(&text);
        let what = format!("UpCloud refused {method} /1.3/{path}: {status} {code}: {message}");
        Err(match status.as_u16() {
            404 if code.ends_with("NOT_FOUND") || code.is_empty() => return Ok(None),
            401 | 403 => ProviderError::Permanent(format!(
                "{what} (credentials: {})",
                self.settings.auth.describe()
            )),
            409 | 429 => ProviderError::Transient(what),
            s if s >= 500 => ProviderError::Transient(what),
            _ => ProviderError::Permanent(what),
        })
    }

    async fn get(&self, path: &str) -> ProviderResult<Option<Value>> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Our server for `spec`, found by its labels (full details), if UpCloud has it.
    async fn find(&self, spec: &ServerSpec) -> ProviderResult<Option<Value>> {
        self.find_named(&spec.workspace, &spec.name).await
    }

    async fn find_named(&self, workspace: &str, name: &str) -> ProviderResult<Option<Value>> {
        let query = format!(
            "server/?label={MANAGED_BY}%3Dprovisioning&label={WORKSPACE}%3D{}&label={SERVER}%3D{}",
            encode(workspace),
            encode(name)
        );
        let listed = self.get(&query).await?.unwrap_or(Value::Null);
        let uuids: Vec<String> = listed["servers"]["server"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["uuid"].as_str().map(String::from))
            .collect();
        match uuids.as_slice() {
            [] => Ok(None),
            [uuid] => self.details(uuid).await,
            many => Err(ProviderError::Permanent(format!(
                "UpCloud has {} servers labelled as `{name}` of workspace `{workspace}` ({}); \
                 delete the extra ones by hand, then apply again",
                many.len(),
                many.join(", ")
            ))),
        }
    }

    async fn details(&self, uuid: &str) -> ProviderResult<Option<Value>> {
        Ok(self
            .get(&format!("server/{uuid}"))
            .await?
            .map(|v| v["server"].clone()))
    }

    /// Polls the server until `state` is `want` (backing off from 1 s to 10 s), within the
    /// configured wait. `error` is a state UpCloud leaves by itself, so it is waited out too.
    async fn wait_for(&self, uuid: &str, want: &str) -> ProviderResult<Value> {
        let deadline = tokio::time::Instant::now() + self.settings.state_wait;
        let mut delay = Duration::from_millis(500);
        loop {
            let server = self.details(uuid).await?.ok_or_else(|| {
                ProviderError::Permanent(format!(
                    "UpCloud server {uuid} disappeared while waiting for it to be {want}"
                ))
            })?;
            let state = server["state"].as_str().unwrap_or_default().to_string();
            if state == want {
                return Ok(server);
            }
            if tokio::time::Instant::now() + delay > deadline {
                return Err(ProviderError::Transient(format!(
                    "UpCloud server {uuid} is still `{state}` after {} s, not `{want}`",
                    self.settings.state_wait.as_secs()
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// The plan's disk size (GiB), from UpCloud's plan list; an unknown plan is permanent.
    async fn plan_disk(&self, plan: &str) -> ProviderResult<u64> {
        let plans = self.get("plan").await?.unwrap_or(Value::Null);
        let all: Vec<&Value> = plans["plans"]["plan"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        all.iter()
            .find(|p| p["name"].as_str() == Some(plan))
            .and_then(|p| number(&p["storage_size"]))
            .ok_or_else(|| {
                let names: Vec<&str> = all.iter().filter_map(|p| p["name"].as_str()).collect();
                ProviderError::Permanent(format!(
                    "UpCloud has no plan `{plan}` (plans: {})",
                    names.join(", ")
                ))
            })
    }

    fn labels(spec: &ServerSpec) -> Value {
        let mut labels = vec![
            json!({ "key": MANAGED_BY, "value": "provisioning" }),
            json!({ "key": WORKSPACE, "value": spec.workspace }),
            json!({ "key": SERVER, "value": spec.name }),
        ];
        for (k, v) in &spec.labels {
            if ![MANAGED_BY, WORKSPACE, SERVER].contains(&k.as_str()) {
                labels.push(json!({ "key": k, "value": v }));
            }
        }
        json!({ "label": labels })
    }

    async fn create(&self, spec: &ServerSpec) -> ProviderResult<Value> {
        let (_, image) = spec.image_entry()?;
        let disk = self.plan_disk(&spec.plan).await?;
        let mut server = json!({
            "zone": spec.zone,
            "title": format!("{}-{}", spec.workspace, spec.name),
            "hostname": spec.name,
            "plan": spec.plan,
            "labels": Self::labels(spec),
            "metadata": "yes",
            "firewall": "off",
            "password_delivery": "none",
            "networking": { "interfaces": { "interface": [
                { "type": "public", "ip_addresses": { "ip_address": [{ "family": "IPv4" }] } },
                { "type": "utility", "ip_addresses": { "ip_address": [{ "family": "IPv4" }] } },
            ]}},
            "storage_devices": { "storage_device": [{
                "action": "clone",
                "storage": image.api,
                "title": format!("{}-{}-os", spec.workspace, spec.name),
                "size": disk,
                "tier": "maxiops",
            }]},
        });
        if let Some(key) = &self.settings.ssh_public_key {
            server["login_user"] = json!({
                "username": self.settings.ssh_user,
                "create_password": "no",
                "ssh_keys": { "ssh_key": [key] },
            });
        }
        let created = self
            .call(
                reqwest::Method::POST,
                "server",
                Some(json!({ "server": server })),
            )
            .await?
            .unwrap_or(Value::Null);
        let uuid = created["server"]["uuid"].as_str().ok_or_else(|| {
            ProviderError::Transient("UpCloud answered the create without a server uuid".into())
        })?;
        self.wait_for(uuid, "started").await
    }

    /// Stops a started server and waits for `stopped`.
    async fn stop(&self, uuid: &str, state: &str) -> ProviderResult<()> {
        if state == "stopped" {
            return Ok(());
        }
        if state == "started" {
            self.call(
                reqwest::Method::POST,
                &format!("server/{uuid}/stop"),
                Some(json!({ "stop_server": { "stop_type": "soft", "timeout": "60" } })),
            )
            .await?;
        }
        self.wait_for(uuid, "stopped").await.map(|_| ())
    }

    /// A started server, as state records it: the API's view, and when SSH is configured,
    /// attached to the runner (waiting for SSH) with what SSH reports about the machine.
    async fn ready(&self, spec: &ServerSpec, server: &Value) -> ProviderResult<Observed> {
        self.fortify(&spec.workspace, &spec.name, server).await?;
        let api = observed(server);
        if self.settings.ssh_key.is_none() {
            return Ok(api);
        }
        self.ssh
            .attach_observed(spec, api, self.settings.state_wait)
            .await
    }

    /// The server a taskserv goes on, attached to the runner: `None` when UpCloud has no such
    /// server of ours.
    async fn server_for(&self, spec: &TaskservSpec) -> ProviderResult<Option<()>> {
        if self.settings.ssh_key.is_none() {
            return Err(ProviderError::Permanent(format!(
                "taskserv `{}` on UpCloud server `{}`: taskservs are installed over SSH, and \
                 `[upcloud] ssh_key` (the private key matching `ssh_public_key`) is not set in \
                 the operator's config",
                spec.name, spec.server
            )));
        }
        if self.ssh.is_registered(&spec.workspace, &spec.server) {
            return Ok(Some(()));
        }
        // Created before SSH was configured, or its record lost: attach it now.
        let Some(server) = self.find_named(&spec.workspace, &spec.server).await? else {
            return Ok(None);
        };
        let server_spec = ServerSpec {
            workspace: spec.workspace.clone(),
            name: spec.server.clone(),
            provider: "upcloud".into(),
            plan: String::new(),
            zone: String::new(),
            labels: BTreeMap::new(),
            host: None,
            image: None,
        };
        self.ready(&server_spec, &server).await.map(|_| Some(()))
    }
}

/// What a server looks like in state.
fn observed(server: &Value) -> Observed {
    let mut attrs = BTreeMap::new();
    let addresses = server["ip_addresses"]["ip_address"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |access: &str| {
        addresses
            .iter()
            .find(|a| a["access"] == access && a["family"] == "IPv4")
            .and_then(|a| a["address"].as_str())
            .map(String::from)
    };
    if let Some(a) = find("public") {
        attrs.insert("address".into(), Value::from(a));
    }
    if let Some(a) = find("utility") {
        attrs.insert("private_address".into(), Value::from(a));
    }
    for key in ["zone", "plan", "state", "hostname", "title"] {
        if let Some(v) = server[key].as_str() {
            attrs.insert(key.into(), Value::from(v));
        }
    }
    if let Some(n) = number(&server["core_number"]) {
        attrs.insert("cores".into(), Value::from(n));
    }
    if let Some(n) = number(&server["memory_amount"]) {
        attrs.insert("memory_mb".into(), Value::from(n));
    }
    Observed {
        provider_id: server["uuid"].as_str().unwrap_or_default().to_string(),
        attrs,
    }
}

/// UpCloud sends many numbers as strings.
fn number(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// `{"error": {"error_code", "error_message"}}`, or RFC 7807 from newer endpoints.
fn api_error(text: &str) -> (String, String) {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if let Some(e) = v.get("error") {
        return (
            e["error_code"].as_str().unwrap_or_default().to_string(),
            e["error_message"].as_str().unwrap_or_default().to_string(),
        );
    }
    if let Some(title) = v.get("title").and_then(Value::as_str) {
        let code = v["type"]
            .as_str()
            .and_then(|t| t.rsplit('#').next())
            .unwrap_or_default();
        return (code.to_string(), title.to_string());
    }
    (String::new(), text.chars().take(300).collect())
}

#[async_trait]
impl Provider for UpCloudProvider {
    fn name(&self) -> &str {
        "upcloud"
    }

    async fn create_server(
        &self,
        _key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        // Found by its labels: made by an earlier attempt of this step (or an earlier apply).
        if let Some(server) = self.find(spec).await? {
            let uuid = server["uuid"].as_str().unwrap_or_default().to_string();
            let server = match server["state"].as_str() {
                Some("started") => server,
                Some("stopped") => {
                    self.call(
                        reqwest::Method::POST,
                        &format!("server/{uuid}/start"),
                        Some(json!({ "server": {} })),
                    )
                    .await?;
                    self.wait_for(&uuid, "started").await?
                }
                _ => self.wait_for(&uuid, "started").await?,
            };
            return self.ready(spec, &server).await;
        }
        let server = self.create(spec).await?;
        self.ready(spec, &server).await
    }

    async fn update_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        let Some(server) = self.find(spec).await? else {
            return self.create_server(key, spec).await;
        };
        let uuid = server["uuid"].as_str().unwrap_or_default().to_string();
        let mut change = json!({ "labels": Self::labels(spec) });
        if server["plan"].as_str() != Some(spec.plan.as_str()) {
            self.plan_disk(&spec.plan).await?;
            self.stop(&uuid, server["state"].as_str().unwrap_or_default())
                .await?;
            change["plan"] = Value::from(spec.plan.clone());
        }
        self.call(
            reqwest::Method::PUT,
            &format!("server/{uuid}"),
            Some(json!({ "server": change })),
        )
        .await?;
        let now = self.details(&uuid).await?.unwrap_or(Value::Null);
        if now["state"].as_str() == Some("stopped") {
            self.call(
                reqwest::Method::POST,
                &format!("server/{uuid}/start"),
                Some(json!({ "server": {} })),
            )
            .await?;
        }
        let server = self.wait_for(&uuid, "started").await?;
        self.ready(spec, &server).await
    }

    async fn inspect_server(&self, spec: &ServerSpec) -> ProviderResult<Option<Observed>> {
        Ok(self.find(spec).await?.map(|s| observed(&s)))
    }

    async fn delete_server(&self, _key: &IdempotencyKey, spec: &ServerSpec) -> ProviderResult<()> {
        if let Some(server) = self.find(spec).await? {
            let uuid = server["uuid"].as_str().unwrap_or_default().to_string();
            self.stop(&uuid, server["state"].as_str().unwrap_or_default())
                .await?;
            self.call(
                reqwest::Method::DELETE,
                &format!("server/{uuid}/?storages=1&backups=delete"),
                None,
            )
            .await?;
        }
        // The machine is gone with everything on it: forget how we reached it.
        self.ssh.detach(&spec.workspace, &spec.name).await;
        self.ports.forget(&spec.workspace, &spec.name);
        Ok(())
    }

    async fn install_taskserv(
        &self,
        key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<Observed> {
        if self.server_for(spec).await?.is_none() {
            return Err(ProviderError::Permanent(format!(
                "UpCloud has no server `{}` of workspace `{}` to install taskserv `{}` on; apply \
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
            self.server_for(spec).await?.is_some()
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
    fn errors_are_read_in_both_shapes() {
        assert_eq!(
            api_error(
                r#"{"error":{"error_code":"SERVER_INVALID","error_message":"The server UUID is invalid."}}"#
            ),
            (
                "SERVER_INVALID".to_string(),
                "The server UUID is invalid.".to_string()
            )
        );
        assert_eq!(
            api_error(r#"{"status":404,"title":"The resource you requested does not exist.","type":"https://developers.upcloud.com/1.3/errors#ERROR_RESOURCE_NOT_FOUND"}"#).0,
            "ERROR_RESOURCE_NOT_FOUND"
        );
    }

    #[test]
    fn a_server_is_recorded_with_its_addresses_and_numbers() {
        let server = json!({
            "uuid": "00abc", "zone": "fi-hel1", "plan": "1xCPU-1GB", "state": "started",
            "core_number": "1", "memory_amount": "1024",
            "ip_addresses": {"ip_address": [
                {"access": "utility", "address": "10.6.6.191", "family": "IPv4"},
                {"access": "public", "address": "2a04::1", "family": "IPv6"},
                {"access": "public", "address": "94.237.106.241", "family": "IPv4"}]}
        });
        let o = observed(&server);
        assert_eq!(o.provider_id, "00abc");
        assert_eq!(o.attrs["address"], "94.237.106.241");
        assert_eq!(o.attrs["private_address"], "10.6.6.191");
        assert_eq!(o.attrs["memory_mb"], 1024);
    }
}
