//! What a workspace has around its instances in a region: the key pair and the security group
//! `provisioning-<workspace>`, made before the first launch and removed with the last instance.
//! The group admits SSH from `ssh_from`, everything from its own members (the workspace's
//! instances reach each other's ports), and the public ports of their taskservs (see
//! [`super::taskservs`]).

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, ResourceType, UserIdGroupPair};

use super::{AwsProvider, MANAGED_BY, WORKSPACE, filter, state, tags};
use crate::provider::{ProviderError, ProviderResult};

impl AwsProvider {
    /// The workspace's key pair with our public key: found, replaced when its key differs, or
    /// imported. `None` without `[aws] ssh_public_key`.
    pub(super) async fn key_pair(
        &self,
        client: &Client,
        region: &str,
        workspace: &str,
    ) -> ProviderResult<Option<String>> {
        let Some(public) = &self.settings.ssh_public_key else {
            return Ok(None);
        };
        let name = format!("provisioning-{workspace}");
        let bare = |k: &str| k.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let listed = client
            .describe_key_pairs()
            .filters(filter("key-name", &[&name]))
            .include_public_key(true)
            .send()
            .await
            .map_err(|e| self.fail("DescribeKeyPairs", region, e))?;
        if let Some(found) = listed.key_pairs().first() {
            match found.public_key() {
                Some(key) if bare(key) != bare(public) => {
                    client
                        .delete_key_pair()
                        .key_name(&name)
                        .send()
                        .await
                        .map_err(|e| self.fail("DeleteKeyPair", region, e))?;
                }
                _ => return Ok(Some(name)),
            }
        }
        let imported = client
            .import_key_pair()
            .key_name(&name)
            .public_key_material(Blob::new(public.as_bytes()))
            .tag_specifications(tags(ResourceType::KeyPair, workspace, None, &[]))
            .send()
            .await;
        match imported {
            Ok(_) => Ok(Some(name)),
            // Another step of this workspace imported it meanwhile.
            Err(e) if e.code() == Some("InvalidKeyPair.Duplicate") => Ok(Some(name)),
            Err(e) => Err(self.fail("ImportKeyPair", region, e)),
        }
    }

    /// The workspace's security group, made if missing, with SSH admitted from `ssh_from`.
    pub(super) async fn security_group(
        &self,
        client: &Client,
        region: &str,
        workspace: &str,
    ) -> ProviderResult<String> {
        let name = format!("provisioning-{workspace}");
        let mut created = false;
        let group = loop {
            let listed = client
                .describe_security_groups()
                .filters(filter("group-name", &[&name]))
                .send()
                .await
                .map_err(|e| self.fail("DescribeSecurityGroups", region, e))?;
            if let Some(g) = listed.security_groups().first() {
                break g.clone();
            }
            if created {
                return Err(ProviderError::Transient(format!(
                    "EC2 ({region}) does not list security group `{name}` yet"
                )));
            }
            let made = client
                .create_security_group()
                .group_name(&name)
                .description(format!(
                    "provisioning: instances of workspace {workspace} (SSH, members, public ports)"
                ))
                .tag_specifications(tags(ResourceType::SecurityGroup, workspace, None, &[]))
                .send()
                .await;
            match made {
                Ok(_) => {}
                Err(e) if e.code() == Some("InvalidGroup.Duplicate") => {}
                Err(e) => return Err(self.fail("CreateSecurityGroup", region, e)),
            }
            created = true;
        };
        let id = group.group_id().unwrap_or_default().to_string();
        // Rules a crash may have left unmade are added now.
        let has = |cidr: &str| {
            group.ip_permissions().iter().any(|p| {
                p.from_port() == Some(22)
                    && p.to_port() == Some(22)
                    && (p.ip_ranges().iter().any(|r| r.cidr_ip() == Some(cidr))
                        || p.ipv6_ranges().iter().any(|r| r.cidr_ipv6() == Some(cidr)))
            })
        };
        let missing: Vec<&String> = self.settings.ssh_from.iter().filter(|c| !has(c)).collect();
        if !missing.is_empty() {
            let mut rule = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22);
            for cidr in missing {
                rule = if cidr.contains(':') {
                    rule.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(cidr).build())
                } else {
                    rule.ip_ranges(IpRange::builder().cidr_ip(cidr).build())
                };
            }
            self.authorize(client, region, &id, vec![rule.build()])
                .await?;
        }
        let members = group.ip_permissions().iter().any(|p| {
            p.ip_protocol() == Some("-1")
                && p.user_id_group_pairs()
                    .iter()
                    .any(|g| g.group_id() == Some(id.as_str()))
        });
        if !members {
            let rule = IpPermission::builder()
                .ip_protocol("-1")
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(&id).build())
                .build();
            self.authorize(client, region, &id, vec![rule]).await?;
        }
        Ok(id)
    }

    /// Adds `rules` to security group `id`; rules it already has are no error.
    pub(super) async fn authorize(
        &self,
        client: &Client,
        region: &str,
        id: &str,
        rules: Vec<IpPermission>,
    ) -> ProviderResult<()> {
        let added = client
            .authorize_security_group_ingress()
            .group_id(id)
            .set_ip_permissions(Some(rules))
            .send()
            .await;
        match added {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("InvalidPermission.Duplicate") => Ok(()),
            Err(e) => Err(self.fail("AuthorizeSecurityGroupIngress", region, e)),
        }
    }

    /// Removes the workspace's key pair and security group when none of its instances is left.
    pub(super) async fn tidy(
        &self,
        client: &Client,
        region: &str,
        workspace: &str,
    ) -> ProviderResult<()> {
        let out = client
            .describe_instances()
            .filters(filter(&format!("tag:{MANAGED_BY}"), &["provisioning"]))
            .filters(filter(&format!("tag:{WORKSPACE}"), &[workspace]))
            .filters(filter(
                "instance-state-name",
                &["pending", "running", "stopping", "stopped", "shutting-down"],
            ))
            .send()
            .await
            .map_err(|e| self.fail("DescribeInstances", region, e))?;
        let left = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .any(|i| state(i) != "terminated");
        if left {
            return Ok(());
        }
        let name = format!("provisioning-{workspace}");
        let groups = client
            .describe_security_groups()
            .filters(filter("group-name", &[&name]))
            .filters(filter(&format!("tag:{MANAGED_BY}"), &["provisioning"]))
            .send()
            .await
            .map_err(|e| self.fail("DescribeSecurityGroups", region, e))?;
        for g in groups.security_groups() {
            let deleted = client
                .delete_security_group()
                .set_group_id(g.group_id().map(str::to_string))
                .send()
                .await;
            match deleted {
                Ok(_) => {}
                Err(e) if e.code() == Some("InvalidGroup.NotFound") => {}
                // DependencyViolation while the terminated instance lets go: transient.
                Err(e) => return Err(self.fail("DeleteSecurityGroup", region, e)),
            }
        }
        if self.settings.ssh_public_key.is_some() {
            client
                .delete_key_pair()
                .key_name(&name)
                .send()
                .await
                .map_err(|e| self.fail("DeleteKeyPair", region, e))?;
        }
        Ok(())
    }
}
