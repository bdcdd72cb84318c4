//! What a Hetzner server gets around it: a **firewall** of its own and the workspace's
//! **private network**.
//!
//! Firewall `<workspace>-<server>` (labelled like the server) is applied to the server when it
//! is created. Its inbound rules: SSH (`ssh_port`) from `ssh_from`, ICMP from everyone, and
//! the public ports of the taskservs installed on the server (a web server's port, from each
//! taskserv's definition and config) from everyone. Anything else inbound on the public
//! interfaces is dropped; outbound is open. The rule set is recomputed from the records of the
//! server's public ports ([`crate::provider::ports`]) whenever a taskserv is installed or
//! removed, and written whole (`set_rules`), so a step repeated after a crash converges on it.
//!
//! Network `provisioning-<workspace>-<network zone>` (10.0.0.0/16 with one cloud subnet,
//! 10.0.1.0/24: up to 250 servers) joins the workspace's servers of one network zone: their
//! other ports (a database's) are reached over it, where Hetzner's firewalls do not apply. It
//! is removed when no server is attached.
//!
//! `[hetzner] firewall = false` / `private_network = false` leave either to the operator (or
//! to a Hetzner-compatible API that has no such endpoints).

use std::time::Duration;

use serde_json::{Value, json};

use super::{HetznerProvider, MANAGED_BY, SERVER, WORKSPACE};
use crate::provider::web::encode;
use crate::provider::{ProviderError, ProviderResult, ServerSpec, TaskservSpec};

/// The private network's range, and its one subnet (as Hetzner's own examples make them).
const NETWORK_RANGE: &str = "10.0.0.0/16";
const SUBNET_RANGE: &str = "10.0.1.0/24";
const EVERYONE: [&str; 2] = ["0.0.0.0/0", "::/0"];

impl HetznerProvider {
    /// The inbound rules of `server`'s firewall.
    fn firewall_rules(&self, workspace: &str, server: &str) -> Vec<Value> {
        let mut rules = Vec::new();
        if !self.settings.ssh_from.is_empty() {
            rules.push(json!({
                "direction": "in", "protocol": "tcp",
                "port": self.settings.ssh_port.to_string(),
                "source_ips": self.settings.ssh_from,
                "description": "SSH (provisioning)",
            }));
        }
        rules.push(json!({
            "direction": "in", "protocol": "icmp", "source_ips": EVERYONE,
            "description": "ICMP (provisioning)",
        }));
        for port in self.ports.open(workspace, server) {
            rules.push(json!({
                "direction": "in", "protocol": "tcp", "port": port.to_string(),
                "source_ips": EVERYONE,
                "description": "public port of a taskserv (provisioning)",
            }));
        }
        rules
    }

    /// Our firewall named `name`, if the project has it.
    async fn firewall_named(&self, name: &str) -> ProviderResult<Option<Value>> {
        let listed = self
            .get(&format!("firewalls?name={}", encode(name)))
            .await?
            .unwrap_or(Value::Null);
        Ok(listed["firewalls"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["name"] == name))
            .cloned())
    }

    /// The id of `spec`'s firewall, made (with its current rules) when missing. `None` when
    /// firewalls are left to the operator.
    pub(super) async fn firewall_for(&self, spec: &ServerSpec) -> ProviderResult<Option<u64>> {
        if !self.settings.firewall {
            return Ok(None);
        }
        let name = Self::server_name(spec)?;
        if let Some(found) = self.firewall_named(&name).await? {
            if !Self::ours(&found, &spec.workspace, &spec.name) {
                return Err(ProviderError::Permanent(format!(
                    "Hetzner already has a firewall named `{name}` that does not carry our labels \
                     (managed-by=provisioning, prov-workspace, prov-server): it is not ours to use; \
                     rename or delete it, or set `[hetzner] firewall = false`"
                )));
            }
            return Ok(found["id"].as_u64());
        }
        let body = json!({
            "name": name,
            "labels": {
                MANAGED_BY: "provisioning", WORKSPACE: spec.workspace, SERVER: spec.name,
            },
            "rules": self.firewall_rules(&spec.workspace, &spec.name),
        });
        let made = match self.post("firewalls", &body).await {
            Ok(made) => made,
            // Made by a parallel attempt whose answer we did not see.
            Err(ProviderError::Permanent(why)) if why.contains("uniqueness_error") => {
                return Ok(self
                    .firewall_named(&name)
                    .await?
                    .and_then(|f| f["id"].as_u64()));
            }
            Err(e) => return Err(e),
        };
        for action in made["actions"].as_array().into_iter().flatten() {
            self.finish(action).await?;
        }
        made["firewall"]["id"].as_u64().map(Some).ok_or_else(|| {
            ProviderError::Permanent(format!(
                "Hetzner answered POST /firewalls without a firewall id (an API without \
                 firewalls? set `[hetzner] firewall = false` there): {}",
                made.to_string().chars().take(200).collect::<String>()
            ))
        })
    }

    /// `server`'s firewall applied to it and its rules current; the server on the workspace's
    /// private network. For a server made by an earlier attempt, or before either existed.
    pub(super) async fn guard(&self, spec: &ServerSpec, server: &Value) -> ProviderResult<()> {
        let id = server["id"].as_u64().unwrap_or_default();
        if let Some(firewall) = self.firewall_for(spec).await? {
            let applied = server["public_net"]["firewalls"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| f["id"].as_u64() == Some(firewall));
            if !applied {
                let body = json!({ "apply_to": [{ "type": "server", "server": { "id": id } }] });
                match self
                    .post(
                        &format!("firewalls/{firewall}/actions/apply_to_resources"),
                        &body,
                    )
                    .await
                {
                    Ok(done) => {
                        for action in done["actions"].as_array().into_iter().flatten() {
                            self.finish(action).await?;
                        }
                    }
                    Err(ProviderError::Permanent(why))
                        if why.contains("firewall_already_applied") => {}
                    Err(e) => return Err(e),
                }
            }
            self.sync_rules(&spec.workspace, &spec.name).await?;
        }
        if let Some(network) = self.network_for(spec).await? {
            let attached = server["private_net"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["network"].as_u64() == Some(network));
            if !attached {
                match self
                    .post(
                        &format!("servers/{id}/actions/attach_to_network"),
                        &json!({ "network": network }),
                    )
                    .await
                {
                    Ok(done) => self.finish(&done["action"]).await?,
                    Err(ProviderError::Permanent(why))
                        if why.contains("server_already_attached") => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Writes `server`'s rule set when the firewall's differs.
    async fn sync_rules(&self, workspace: &str, server: &str) -> ProviderResult<()> {
        let name = format!("{workspace}-{server}");
        let Some(firewall) = self.firewall_named(&name).await? else {
            return Ok(());
        };
        let want = self.firewall_rules(workspace, server);
        let key = |r: &Value| {
            let mut ips: Vec<String> = r["source_ips"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            ips.sort();
            (
                r["direction"].as_str().unwrap_or_default().to_string(),
                r["protocol"].as_str().unwrap_or_default().to_string(),
                r["port"].as_str().unwrap_or_default().to_string(),
                ips,
            )
        };
        let mut have: Vec<_> = firewall["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(key)
            .collect();
        let mut wanted: Vec<_> = want.iter().map(key).collect();
        have.sort();
        wanted.sort();
        if have == wanted {
            return Ok(());
        }
        let id = firewall["id"].as_u64().unwrap_or_default();
        let done = self
            .post(
                &format!("firewalls/{id}/actions/set_rules"),
                &json!({ "rules": want }),
            )
            .await?;
        for action in done["actions"].as_array().into_iter().flatten() {
            self.finish(action).await?;
        }
        Ok(())
    }

    /// A taskserv installed (`Some`) or removed (`None`) on its server: its public ports
    /// recorded, and the server's firewall rules brought up to date.
    pub(super) async fn taskserv_ports(
        &self,
        spec: &TaskservSpec,
        installed: bool,
    ) -> ProviderResult<()> {
        if !self.settings.firewall {
            return Ok(());
        }
        let _one_at_a_time = self.guard_lock.lock().await;
        self.ports.update(spec, installed)?;
        self.sync_rules(&spec.workspace, &spec.server).await
    }

    /// After the server is deleted: its firewall (once Hetzner has let go of it), its record of
    /// ports, and the workspace's networks that no server uses any more.
    pub(super) async fn unguard(&self, spec: &ServerSpec) -> ProviderResult<()> {
        self.ports.forget(&spec.workspace, &spec.name);
        if self.settings.firewall {
            let name = format!("{}-{}", spec.workspace, spec.name);
            let deadline = tokio::time::Instant::now() + self.settings.state_wait;
            let mut delay = Duration::from_millis(500);
            while let Some(firewall) = self.firewall_named(&name).await? {
                if !Self::ours(&firewall, &spec.workspace, &spec.name) {
                    break;
                }
                let id = firewall["id"].as_u64().unwrap_or_default();
                let in_use = firewall["applied_to"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty());
                if !in_use {
                    match self
                        .call(reqwest::Method::DELETE, &format!("firewalls/{id}"), None)
                        .await
                    {
                        Ok(_) => break,
                        Err(ProviderError::Permanent(why)) if why.contains("resource_in_use") => {}
                        Err(e) => return Err(e),
                    }
                }
                if tokio::time::Instant::now() + delay > deadline {
                    return Err(ProviderError::Transient(format!(
                        "Hetzner firewall {id} (`{name}`) is still applied {} s after its server \
                         was deleted",
                        self.settings.state_wait.as_secs()
                    )));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
        if self.settings.private_network {
            let _one_at_a_time = self.guard_lock.lock().await;
            let selector = format!("{MANAGED_BY}==provisioning,{WORKSPACE}=={}", spec.workspace);
            let listed = self
                .get(&format!("networks?label_selector={}", encode(&selector)))
                .await?
                .unwrap_or(Value::Null);
            for network in listed["networks"].as_array().into_iter().flatten() {
                let unused = network["servers"].as_array().is_none_or(|s| s.is_empty());
                if unused && network["labels"][WORKSPACE] == spec.workspace.as_str() {
                    let id = network["id"].as_u64().unwrap_or_default();
                    self.call(reqwest::Method::DELETE, &format!("networks/{id}"), None)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The id of the workspace's network in `spec`'s network zone, made when missing. `None`
    /// when private networks are left to the operator.
    pub(super) async fn network_for(&self, spec: &ServerSpec) -> ProviderResult<Option<u64>> {
        if !self.settings.private_network {
            return Ok(None);
        }
        let location = self.api_name(&spec.zone);
        let found = self
            .get(&format!("locations?name={}", encode(location)))
            .await?
            .unwrap_or(Value::Null);
        let zone = found["locations"]
            .as_array()
            .and_then(|a| a.iter().find(|l| l["name"] == location))
            .and_then(|l| l["network_zone"].as_str())
            .ok_or_else(|| {
                ProviderError::Permanent(format!(
                    "Hetzner has no location `{location}` with a network zone (an API without \
                     private networks? set `[hetzner] private_network = false` there)"
                ))
            })?
            .to_string();
        let name = format!("provisioning-{}-{zone}", spec.workspace);
        let _one_at_a_time = self.guard_lock.lock().await;
        let named = |listed: Value| {
            listed["networks"]
                .as_array()
                .and_then(|a| a.iter().find(|n| n["name"] == name.as_str()))
                .cloned()
        };
        let lookup = format!("networks?name={}", encode(&name));
        if let Some(network) = named(self.get(&lookup).await?.unwrap_or(Value::Null)) {
            return Ok(network["id"].as_u64());
        }
        let body = json!({
            "name": name,
            "ip_range": NETWORK_RANGE,
            "labels": { MANAGED_BY: "provisioning", WORKSPACE: spec.workspace },
            "subnets": [{ "type": "cloud", "ip_range": SUBNET_RANGE, "network_zone": zone }],
        });
        let made = match self.post("networks", &body).await {
            Ok(made) => made,
            Err(ProviderError::Permanent(why)) if why.contains("uniqueness_error") => {
                named(self.get(&lookup).await?.unwrap_or(Value::Null))
                    .map(|n| json!({ "network": n }))
                    .unwrap_or(Value::Null)
            }
            Err(e) => return Err(e),
        };
        made["network"]["id"].as_u64().map(Some).ok_or_else(|| {
            ProviderError::Permanent(format!(
                "Hetzner answered POST /networks without a network id (an API without private \
                 networks? set `[hetzner] private_network = false` there): {}",
                made.to_string().chars().take(200).collect::<String>()
            ))
        })
    }
}
