//! Taskservs on EC2 instances: installed over SSH by the same runner and scripts as on the
//! `ssh` provider's hosts, UpCloud and Hetzner. Once an instance runs, its public IPv4 address
//! is attached to this provider's runner as the image's account (`admin` on Debian's AMIs,
//! `ubuntu` on Ubuntu's; `[aws] ssh_user` overrides), with `[aws] ssh_key`; the scripts use
//! that account's password-less sudo.
//!
//! The workspace's security group then admits the public ports of the taskservs installed on
//! its instances in that region (a web server's port) from everyone; the group admits all
//! traffic between its own members (see [`super::workspace`]), so the other ports (a
//! database's) are reached from the workspace's instances only. Each server's region is
//! recorded at create (`regions/<workspace>/<server>`), its public ports as the other clouds
//! record them ([`crate::provider::ports`]), and the group's public rules recomputed from the
//! records after each install and removal.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range};

use super::AwsProvider;
use crate::provider::{Observed, ProviderError, ProviderResult, ServerSpec, TaskservSpec};

const EVERYONE_V4: &str = "0.0.0.0/0";
const EVERYONE_V6: &str = "::/0";

impl AwsProvider {
    fn region_path(&self, workspace: &str, server: &str) -> std::path::PathBuf {
        self.dir.join("regions").join(workspace).join(server)
    }

    /// The region `server` was created in, as recorded then.
    fn region_of(&self, workspace: &str, server: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.region_path(workspace, server)).ok()?;
        Some(text.trim().to_string()).filter(|r| !r.is_empty())
    }

    /// A running instance, reached over SSH when `[aws] ssh_key` is set (else as EC2 sees it).
    pub(super) async fn attach(
        &self,
        spec: &ServerSpec,
        api: Observed,
    ) -> ProviderResult<Observed> {
        if self.region_of(&spec.workspace, &spec.name).as_deref() != Some(spec.zone.as_str()) {
            let path = self.region_path(&spec.workspace, &spec.name);
            let fail = |e: std::io::Error| {
                ProviderError::Permanent(format!("cannot record in {}: {e}", path.display()))
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(fail)?;
            }
            std::fs::write(&path, &spec.zone).map_err(fail)?;
        }
        if self.settings.ssh_key.is_none() {
            return Ok(api);
        }
        let (_, image) = spec.image_entry()?;
        let user = self.settings.ssh_user.clone().or(image.user);
        self.ssh
            .attach_observed_as(spec, api, user.as_deref(), self.settings.state_wait)
            .await
    }

    /// The server's region (recorded at create) and whether EC2 still has its instance.
    pub(super) async fn instance_there(&self, spec: &TaskservSpec) -> ProviderResult<bool> {
        let Some(region) = self.region_of(&spec.workspace, &spec.server) else {
            return Ok(false);
        };
        let client = self.client(&region).await?;
        Ok(self
            .find(&client, &region, &spec.workspace, &spec.server)
            .await?
            .is_some())
    }

    /// Before an install: the instance is ours, attached, and SSH can reach it.
    pub(super) async fn ready_for(&self, spec: &TaskservSpec) -> ProviderResult<()> {
        if self.settings.ssh_key.is_none() {
            return Err(ProviderError::Permanent(format!(
                "taskserv `{}` on EC2 instance `{}`: taskservs are installed over SSH, and `[aws] \
                 ssh_key` (the private key matching `ssh_public_key`) is not set in the \
                 operator's config",
                spec.name, spec.server
            )));
        }
        let Some(region) = self.region_of(&spec.workspace, &spec.server) else {
            return Err(ProviderError::Permanent(format!(
                "no EC2 instance `{}` of workspace `{}` was created here to install taskserv `{}` \
                 on; apply the server first",
                spec.server, spec.workspace, spec.name
            )));
        };
        if self.ssh.is_registered(&spec.workspace, &spec.server) {
            return Ok(());
        }
        // Created before SSH was configured, or its registration lost: attach it now.
        let client = self.client(&region).await?;
        let Some(instance) = self
            .find(&client, &region, &spec.workspace, &spec.server)
            .await?
        else {
            return Err(ProviderError::Permanent(format!(
                "EC2 has no instance `{}` of workspace `{}` in {region} to install taskserv `{}` \
                 on; apply the server first",
                spec.server, spec.workspace, spec.name
            )));
        };
        let server = ServerSpec {
            workspace: spec.workspace.clone(),
            name: spec.server.clone(),
            provider: "aws".into(),
            plan: String::new(),
            zone: region.clone(),
            labels: BTreeMap::new(),
            host: None,
            image: instance
                .tags()
                .iter()
                .find(|t| t.key() == Some(super::IMAGE))
                .and_then(|t| t.value())
                .map(str::to_string),
        };
        self.attach(&server, Self::observed(&region, &instance))
            .await
            .map(|_| ())
    }

    /// A taskserv installed (`true`) or removed: its public ports recorded, and the security
    /// group of its region brought up to date.
    pub(super) async fn taskserv_ports(
        &self,
        spec: &TaskservSpec,
        installed: bool,
    ) -> ProviderResult<()> {
        let _one_at_a_time = self.ports_lock.lock().await;
        let Some(region) = self.region_of(&spec.workspace, &spec.server) else {
            return Ok(());
        };
        self.ports.update(spec, installed)?;
        let client = self.client(&region).await?;
        self.sync_public_ports(&client, &region, &spec.workspace)
            .await
    }

    /// The public ports the workspace's records want open in `region`.
    fn wanted_ports(&self, workspace: &str, region: &str) -> BTreeSet<u16> {
        self.ports
            .servers(workspace)
            .into_iter()
            .filter(|server| self.region_of(workspace, server).as_deref() == Some(region))
            .flat_map(|server| self.ports.open(workspace, &server))
            .collect()
    }

    /// The security group's rules from everyone on ports other than SSH's, made to match the
    /// records: missing ones authorized, ones no taskserv needs any more revoked.
    pub(super) async fn sync_public_ports(
        &self,
        client: &Client,
        region: &str,
        workspace: &str,
    ) -> ProviderResult<()> {
        let name = format!("provisioning-{workspace}");
        let listed = client
            .describe_security_groups()
            .filters(super::filter("group-name", &[&name]))
            .send()
            .await
            .map_err(|e| self.fail("DescribeSecurityGroups", region, e))?;
        let Some(group) = listed.security_groups().first() else {
            return Ok(());
        };
        let id = group.group_id().unwrap_or_default().to_string();
        let open: BTreeSet<u16> = group
            .ip_permissions()
            .iter()
            .filter(|p| p.ip_protocol() == Some("tcp") && p.from_port() == p.to_port())
            .filter(|p| {
                p.ip_ranges()
                    .iter()
                    .any(|r| r.cidr_ip() == Some(EVERYONE_V4))
            })
            .filter_map(|p| p.from_port().and_then(|n| u16::try_from(n).ok()))
            .filter(|p| *p != 22)
            .collect();
        let want = self.wanted_ports(workspace, region);
        let rule = |port: u16| {
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(i32::from(port))
                .to_port(i32::from(port))
                .ip_ranges(IpRange::builder().cidr_ip(EVERYONE_V4).build())
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6(EVERYONE_V6).build())
                .build()
        };
        let missing: Vec<IpPermission> = want.difference(&open).map(|p| rule(*p)).collect();
        if !missing.is_empty() {
            self.authorize(client, region, &id, missing).await?;
        }
        let extra: Vec<IpPermission> = open.difference(&want).map(|p| rule(*p)).collect();
        if !extra.is_empty() {
            let revoked = client
                .revoke_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(extra))
                .send()
                .await;
            match revoked {
                Ok(_) => {}
                Err(e) if e.code() == Some("InvalidPermission.NotFound") => {}
                Err(e) => return Err(self.fail("RevokeSecurityGroupIngress", region, e)),
            }
        }
        Ok(())
    }

    /// The server is gone: its record, and the ports only it needed.
    pub(super) async fn forget(
        &self,
        client: &Client,
        region: &str,
        spec: &ServerSpec,
    ) -> ProviderResult<()> {
        let _one_at_a_time = self.ports_lock.lock().await;
        let had_ports = !self.ports.open(&spec.workspace, &spec.name).is_empty();
        self.ports.forget(&spec.workspace, &spec.name);
        let _ = std::fs::remove_file(self.region_path(&spec.workspace, &spec.name));
        self.ssh.detach(&spec.workspace, &spec.name).await;
        if had_ports {
            self.sync_public_ports(client, region, &spec.workspace)
                .await?;
        }
        Ok(())
    }
}
