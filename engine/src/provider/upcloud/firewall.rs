//! Each UpCloud server's own firewall: its rules written whole (`PUT
//! /server/{uuid}/firewall_rule`) once the server has started, then the firewall switched on.
//!
//! UpCloud's firewall is **stateless** (it tracks no connections; it filters the public and
//! utility interfaces), so besides what may come in, the rules admit the replies to what the
//! server itself asks for. Inbound, in order:
//!
//! - SSH (`ssh_port`) from `ssh_from`;
//! - the public ports of the taskservs on the server (a web server's port) from everyone;
//! - ICMP (IPv4 and IPv6: ping, path MTU, IPv6 neighbour discovery);
//! - everything from the utility network (`10.0.0.0/8`: the account's servers reach each other's
//!   other ports, a database's);
//! - TCP and UDP to the ephemeral ports 32768–60999 (Linux's default range): replies to the
//!   server's own connections (package downloads, DNS, NTP, the metadata service);
//! - DHCP replies (UDP 67 → 68, and DHCPv6 on 546);
//! - then everything else dropped.
//!
//! Outbound is accepted. The public ports are recorded per server ([`crate::provider::ports`])
//! and the rules recomputed after each taskserv install and removal. `[upcloud] firewall = false` leaves the firewall to the operator.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::UpCloudProvider;
use crate::provider::{ProviderResult, TaskservSpec};

/// Linux's default ephemeral port range (`net.ipv4.ip_local_port_range`).
const EPHEMERAL: (u16, u16) = (32768, 60999);

/// `CIDR` as UpCloud's family and first and last address.
fn range(cidr: &str) -> Option<(&'static str, String, String)> {
    let (ip, prefix) = cidr.split_once('/')?;
    let prefix: u32 = prefix.parse().ok()?;
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) if prefix <= 32 => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            let start = u32::from(v4) & mask;
            Some((
                "IPv4",
                std::net::Ipv4Addr::from(start).to_string(),
                std::net::Ipv4Addr::from(start | !mask).to_string(),
            ))
        }
        IpAddr::V6(v6) if prefix <= 128 => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            let start = u128::from(v6) & mask;
            Some((
                "IPv6",
                std::net::Ipv6Addr::from(start).to_string(),
                std::net::Ipv6Addr::from(start | !mask).to_string(),
            ))
        }
        _ => None,
    }
}

/// One inbound `accept` rule (UpCloud's fields are strings).
fn accept(family: &str, protocol: &str, comment: &str) -> Value {
    let mut rule =
        json!({ "direction": "in", "action": "accept", "family": family, "comment": comment });
    if !protocol.is_empty() {
        rule["protocol"] = Value::from(protocol);
    }
    rule
}

fn ports(mut rule: Value, side: &str, (start, end): (u16, u16)) -> Value {
    rule[format!("{side}_port_start")] = Value::from(start.to_string());
    rule[format!("{side}_port_end")] = Value::from(end.to_string());
    rule
}

fn from(mut rule: Value, start: &str, end: &str) -> Value {
    rule["source_address_start"] = Value::from(start);
    rule["source_address_end"] = Value::from(end);
    rule
}

/// The rule set of a server whose taskservs serve `public` ports.
pub(super) fn rules(ssh_from: &[String], ssh_port: u16, public: &[u16]) -> Vec<Value> {
    let mut all = Vec::new();
    for cidr in ssh_from {
        let Some((family, start, end)) = range(cidr) else {
            continue;
        };
        let rule = ports(
            accept(family, "tcp", "SSH (provisioning)"),
            "destination",
            (ssh_port, ssh_port),
        );
        all.push(if cidr.ends_with("/0") {
            rule
        } else {
            from(rule, &start, &end)
        });
    }
    for family in ["IPv4", "IPv6"] {
        for port in public {
            all.push(ports(
                accept(family, "tcp", "public port of a taskserv (provisioning)"),
                "destination",
                (*port, *port),
            ));
        }
    }
    for family in ["IPv4", "IPv6"] {
        all.push(accept(family, "icmp", "ICMP (provisioning)"));
    }
    all.push(from(
        accept("IPv4", "", "utility network (provisioning)"),
        "10.0.0.0",
        "10.255.255.255",
    ));
    for family in ["IPv4", "IPv6"] {
        for protocol in ["tcp", "udp"] {
            all.push(ports(
                accept(
                    family,
                    protocol,
                    "replies to the server's connections (provisioning)",
                ),
                "destination",
                EPHEMERAL,
            ));
        }
    }
    all.push(ports(
        ports(
            accept("IPv4", "udp", "DHCP (provisioning)"),
            "source",
            (67, 67),
        ),
        "destination",
        (68, 68),
    ));
    all.push(ports(
        accept("IPv6", "udp", "DHCPv6 (provisioning)"),
        "destination",
        (546, 546),
    ));
    all.push(
        json!({ "direction": "in", "action": "drop", "comment": "everything else (provisioning)" }),
    );
    all.push(
        json!({ "direction": "out", "action": "accept", "comment": "outbound (provisioning)" }),
    );
    all
}

impl UpCloudProvider {
    /// The server's rules written when they differ, then its firewall switched on.
    pub(super) async fn fortify(
        &self,
        workspace: &str,
        name: &str,
        server: &Value,
    ) -> ProviderResult<()> {
        if !self.settings.firewall {
            return Ok(());
        }
        let uuid = server["uuid"].as_str().unwrap_or_default();
        let public = self.ports.open(workspace, name);
        let want = rules(&self.settings.ssh_from, self.settings.ssh_port, &public);
        let path = format!("server/{uuid}/firewall_rule");
        let have = self.get(&path).await?.unwrap_or(Value::Null);
        // Compared field by field as UpCloud answers (every field, unset ones empty).
        let same = |a: &Value, b: &Value| {
            let fields = a.as_object().into_iter().flatten().map(|(k, _)| k);
            fields
                .chain(b.as_object().into_iter().flatten().map(|(k, _)| k))
                .filter(|k| *k != "position")
                .all(|k| a[k].as_str().unwrap_or_default() == b[k].as_str().unwrap_or_default())
        };
        let current = have["firewall_rules"]["firewall_rule"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let matches =
            current.len() == want.len() && current.iter().zip(&want).all(|(a, b)| same(a, b));
        if !matches {
            self.call(
                reqwest::Method::PUT,
                &path,
                Some(json!({ "firewall_rules": { "firewall_rule": want } })),
            )
            .await?;
        }
        if server["firewall"].as_str() != Some("on") {
            self.call(
                reqwest::Method::PUT,
                &format!("server/{uuid}"),
                Some(json!({ "server": { "firewall": "on" } })),
            )
            .await?;
        }
        Ok(())
    }

    /// A taskserv installed (`true`) or removed: its public ports recorded, and its server's
    /// rules brought up to date.
    pub(super) async fn taskserv_ports(
        &self,
        spec: &TaskservSpec,
        installed: bool,
    ) -> ProviderResult<()> {
        if !self.settings.firewall {
            return Ok(());
        }
        let _one_at_a_time = self.ports_lock.lock().await;
        self.ports.update(spec, installed)?;
        if let Some(server) = self.find_named(&spec.workspace, &spec.server).await? {
            self.fortify(&spec.workspace, &spec.server, &server).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_become_address_ranges() {
        assert_eq!(
            range("203.0.113.0/24"),
            Some(("IPv4", "203.0.113.0".into(), "203.0.113.255".into()))
        );
        assert_eq!(
            range("10.1.2.3/32"),
            Some(("IPv4", "10.1.2.3".into(), "10.1.2.3".into()))
        );
        assert_eq!(
            range("0.0.0.0/0"),
            Some(("IPv4", "0.0.0.0".into(), "255.255.255.255".into()))
        );
        assert_eq!(
            range("2001:db8::/32"),
            Some((
                "IPv6",
                "2001:db8::".into(),
                "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".into()
            ))
        );
        assert_eq!(range("10.0.0.0/33"), None);
    }

    #[test]
    fn the_rules_admit_ssh_public_ports_and_replies_then_drop() {
        let set = rules(&["203.0.113.0/24".into(), "::/0".into()], 22, &[80]);
        let ssh = &set[0];
        assert_eq!(ssh["destination_port_start"], "22");
        assert_eq!(ssh["source_address_start"], "203.0.113.0");
        assert_eq!(ssh["source_address_end"], "203.0.113.255");
        // Everyone: no address range.
        assert_eq!(set[1]["family"], "IPv6");
        assert!(set[1].get("source_address_start").is_none());
        assert!(
            set.iter()
                .any(|r| r["destination_port_start"] == "80" && r["family"] == "IPv6")
        );
        assert!(set.iter().any(|r| r["protocol"] == "udp"
            && r["destination_port_start"] == "32768"
            && r["destination_port_end"] == "60999"));
        let last_in = set.iter().rev().find(|r| r["direction"] == "in").unwrap();
        assert_eq!(last_in["action"], "drop");
        assert!(last_in.get("protocol").is_none(), "{last_in}");
        // Nobody may SSH in when `ssh_from` is empty; the rest stands.
        let closed = rules(&[], 22, &[]);
        assert!(!closed.iter().any(|r| r["destination_port_start"] == "22"));
    }
}
