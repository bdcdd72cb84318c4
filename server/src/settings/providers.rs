//! The providers' sections of the config file (`[ssh.hosts]`, `[upcloud]`, `[hetzner]`, `[aws]`),
//! checked.

use std::time::Duration;

use engine::secrets::SecretRef;
use serde::Deserialize;

use super::{ConfigFile, var};

/// The `[ssh.hosts]` inventory, checked: names are DNS labels, addresses and users cannot be
/// taken for `ssh` options, every host says which workspaces may use it.
pub(super) fn ssh_hosts(
    file: &ConfigFile,
    reference: &dyn Fn(&str, &str) -> anyhow::Result<SecretRef>,
) -> anyhow::Result<Vec<engine::provider::ssh::SshHost>> {
    let word = |what: &str, text: &str| -> anyhow::Result<()> {
        let ok = !text.is_empty()
            && !text.starts_with('-')
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        anyhow::ensure!(
            ok,
            "{what}: `{text}` is not a host name, an IP address or an account name"
        );
        Ok(())
    };
    let mut hosts = Vec::new();
    for (name, h) in &file.ssh.hosts {
        let at = format!("ssh.hosts.{name}");
        anyhow::ensure!(
            !name.is_empty()
                && name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !name.starts_with('-'),
            "{at}: a host name must be lowercase letters, digits and `-` (it is what configs write in `host`)"
        );
        word(&format!("{at}.address"), &h.address)?;
        let user = h.user.clone().unwrap_or_else(|| "root".into());
        word(&format!("{at}.user"), &user)?;
        anyhow::ensure!(
            !h.workspaces.is_empty(),
            "{at}.workspaces is empty: list the workspaces that may use this host, or [\"*\"] for every one"
        );
        let key = match &h.key {
            Some(text) => Some(reference(&format!("{at}.key"), text)?),
            None => None,
        };
        hosts.push(engine::provider::ssh::SshHost {
            name: name.clone(),
            address: h.address.clone(),
            port: h.port.unwrap_or(22),
            user,
            key,
            root: h.root.clone(),
            workspaces: h.workspaces.clone(),
            configured_in: format!("[{at}]"),
        });
    }
    Ok(hosts)
}

/// The references of UpCloud credentials (username or token, password).
pub(super) fn upcloud_refs(
    auth: &engine::provider::upcloud::UpCloudAuth,
) -> (Option<&SecretRef>, Option<&SecretRef>) {
    match auth {
        engine::provider::upcloud::UpCloudAuth::Basic { username, password } => {
            (Some(username), Some(password))
        }
        engine::provider::upcloud::UpCloudAuth::Token(t) => (Some(t), None),
    }
}

/// `[upcloud]`, checked, with UpCloud's own environment variables as the defaults.
pub(super) fn upcloud_settings(
    file: &ConfigFile,
    reference: &dyn Fn(&str, &str) -> anyhow::Result<SecretRef>,
) -> anyhow::Result<engine::provider::upcloud::UpCloudSettings> {
    use engine::provider::upcloud::{UpCloudAuth, UpCloudSettings};
    let u = &file.upcloud;
    let auth = match (&u.token, &u.username, &u.password) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            anyhow::bail!("upcloud: give either `token` or `username` and `password`, not both")
        }
        (Some(t), None, None) => UpCloudAuth::Token(reference("upcloud.token", t)?),
        (None, Some(user), Some(pass)) => UpCloudAuth::Basic {
            username: reference("upcloud.username", user)?,
            password: reference("upcloud.password", pass)?,
        },
        (None, Some(_), None) | (None, None, Some(_)) => {
            anyhow::bail!("upcloud: `username` and `password` go together")
        }
        (None, None, None)
            if var("UPCLOUD_TOKEN").is_some() && var("UPCLOUD_USERNAME").is_none() =>
        {
            UpCloudAuth::Token(SecretRef::Env("UPCLOUD_TOKEN".into()))
        }
        (None, None, None) => UpCloudAuth::Basic {
            username: SecretRef::Env("UPCLOUD_USERNAME".into()),
            password: SecretRef::Env("UPCLOUD_PASSWORD".into()),
        },
    };
    let (endpoint, from) = match (&u.endpoint, var("UPCLOUD_DEBUG_API_BASE_URL")) {
        (Some(e), _) => (e.trim().to_string(), "upcloud.endpoint"),
        (None, Some(e)) => (e.trim().to_string(), "UPCLOUD_DEBUG_API_BASE_URL"),
        (None, None) => ("https://api.upcloud.com".to_string(), "the default"),
    };
    let endpoint = endpoint
        .trim_end_matches('/')
        .trim_end_matches("/1.3")
        .to_string();
    base_url(from, &endpoint, "https://api.upcloud.com, without /1.3")?;
    let ssh_public_key = public_key("upcloud.ssh_public_key", u.ssh_public_key.as_deref())?;
    let (ssh_key, ssh_user) = ssh_account(
        "upcloud",
        u.ssh_key.as_deref(),
        u.ssh_user.as_deref(),
        ssh_public_key.is_some(),
        reference,
    )?;
    let ssh_from = cidrs("upcloud.ssh_from", u.ssh_from.as_ref())?;
    Ok(UpCloudSettings {
        endpoint,
        auth,
        ssh_public_key,
        ssh_key,
        ssh_user,
        ssh_port: u.ssh_port.unwrap_or(22),
        ssh_from,
        firewall: u.firewall.unwrap_or(true),
        state_wait: Duration::from_secs(u.state_wait_secs.unwrap_or(600).clamp(10, 3600)),
    })
}

/// A cloud's `ssh_key` (a reference; it needs `ssh_public_key`) and `ssh_user` (default root).
fn ssh_account(
    section: &str,
    key: Option<&str>,
    user: Option<&str>,
    has_public_key: bool,
    reference: &dyn Fn(&str, &str) -> anyhow::Result<SecretRef>,
) -> anyhow::Result<(Option<SecretRef>, String)> {
    let key = match key {
        Some(text) => Some(reference(&format!("{section}.ssh_key"), text)?),
        None => None,
    };
    anyhow::ensure!(
        key.is_none() || has_public_key,
        "{section}.ssh_key is set without {section}.ssh_public_key: servers get the public key, \
         and the private key reaches them"
    );
    let user = user.unwrap_or("root").to_string();
    anyhow::ensure!(
        !user.is_empty()
            && user.len() <= 32
            && !user.starts_with('-')
            && user
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_')),
        "{section}.ssh_user: `{user}` is not an account name (lowercase letters, digits, `-`, `_`)"
    );
    Ok((key, user))
}

/// An OpenSSH public key line, or `file:PATH` of one.
fn public_key(what: &str, text: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let key = match text.strip_prefix("file:") {
        Some(path) => std::fs::read_to_string(path.trim())
            .map_err(|e| anyhow::anyhow!("{what}: cannot read {path}: {e}"))?,
        None => text.to_string(),
    };
    let key = key.trim().to_string();
    anyhow::ensure!(
        (key.starts_with("ssh-") || key.starts_with("ecdsa-"))
            && key.split_whitespace().count() >= 2
            && !key.contains('\n'),
        "{what}: expected one OpenSSH public key line (`ssh-ed25519 AAAA... comment`), not a private key or a path"
    );
    Ok(Some(key))
}

/// An http(s) base URL without query or fragment.
fn base_url(from: &str, url: &str, example: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        (url.starts_with("https://") || url.starts_with("http://"))
            && url.len() > "https://".len()
            && !url.contains(char::is_whitespace)
            && !url.contains(['?', '#']),
        "{from}: `{url}` is not an http(s) base URL (e.g. {example})"
    );
    Ok(())
}

/// `[hetzner]`, checked, with Hetzner's own environment variables as the defaults.
pub(super) fn hetzner_settings(
    file: &ConfigFile,
    reference: &dyn Fn(&str, &str) -> anyhow::Result<SecretRef>,
) -> anyhow::Result<engine::provider::hetzner::HetznerSettings> {
    let h = &file.hetzner;
    let token = match &h.token {
        Some(t) => reference("hetzner.token", t)?,
        None => SecretRef::Env("HCLOUD_TOKEN".into()),
    };
    let (endpoint, from) = match (&h.endpoint, var("HCLOUD_ENDPOINT")) {
        (Some(e), _) => (e.trim().to_string(), "hetzner.endpoint"),
        (None, Some(e)) => (e.trim().to_string(), "HCLOUD_ENDPOINT"),
        (None, None) => ("https://api.hetzner.cloud/v1".to_string(), "the default"),
    };
    let endpoint = endpoint.trim_end_matches('/').to_string();
    base_url(from, &endpoint, "https://api.hetzner.cloud/v1")?;
    for (k, v) in &h.names {
        let plain = |t: &str| {
            !t.is_empty()
                && t.len() <= 63
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        anyhow::ensure!(
            plain(k) && plain(v),
            "hetzner.names: `{k} = \"{v}\"` must map a catalog name to an API name (letters, digits, `-`, `_`, `.`)"
        );
    }
    let ssh_public_key = public_key("hetzner.ssh_public_key", h.ssh_public_key.as_deref())?;
    let (ssh_key, ssh_user) = ssh_account(
        "hetzner",
        h.ssh_key.as_deref(),
        h.ssh_user.as_deref(),
        ssh_public_key.is_some(),
        reference,
    )?;
    let ssh_from = cidrs("hetzner.ssh_from", h.ssh_from.as_ref())?;
    Ok(engine::provider::hetzner::HetznerSettings {
        endpoint,
        token,
        ssh_public_key,
        ssh_key,
        ssh_user,
        ssh_port: h.ssh_port.unwrap_or(22),
        ssh_from,
        firewall: h.firewall.unwrap_or(true),
        private_network: h.private_network.unwrap_or(true),
        names: h.names.clone(),
        state_wait: Duration::from_secs(h.state_wait_secs.unwrap_or(600).clamp(5, 3600)),
    })
}

/// `[aws]`: how EC2 is reached. Without it: what the AWS CLI and SDKs read (`AWS_ACCESS_KEY_ID`
/// and `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE` and the shared files, SSO, instance roles;
/// `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_EC2` for another endpoint). The region is each
/// server's `zone`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    /// The EC2 endpoint for every region (an emulator, a VPC endpoint).
    pub endpoint: Option<String>,
    /// A profile of the shared config files (`~/.aws/config`).
    pub profile: Option<String>,
    /// Secret references (`env:NAME`, `file:PATH`, `age:PATH`), both or neither; without them
    /// the standard credential chain is used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// The OpenSSH public key imported as the workspace's key pair, or `file:PATH` of one.
    pub ssh_public_key: Option<String>,
    /// CIDRs the workspace's security group admits to SSH (default with a public key:
    /// `["0.0.0.0/0", "::/0"]`; `[]` admits nobody).
    pub ssh_from: Option<Vec<String>>,
    /// A secret reference to the private key matching `ssh_public_key`: taskservs are
    /// installed over SSH with it. Without it instances are launched, nothing is installed.
    pub ssh_key: Option<String>,
    /// The account SSH reaches instances as (default: the image's, `admin` on Debian's AMIs,
    /// `ubuntu` on Ubuntu's).
    pub ssh_user: Option<String>,
    /// Longest wait for an instance state, in seconds (default 600).
    pub state_wait_secs: Option<u64>,
}

/// `[aws]`, checked.
pub(super) fn aws_settings(
    file: &ConfigFile,
    reference: &dyn Fn(&str, &str) -> anyhow::Result<SecretRef>,
) -> anyhow::Result<engine::provider::aws::AwsSettings> {
    let a = &file.aws;
    let keys = match (&a.access_key_id, &a.secret_access_key) {
        (Some(id), Some(secret)) => Some((
            reference("aws.access_key_id", id)?,
            reference("aws.secret_access_key", secret)?,
        )),
        (None, None) => None,
        _ => anyhow::bail!(
            "aws: `access_key_id` and `secret_access_key` go together (or leave both out for the \
             AWS credential chain: AWS_ACCESS_KEY_ID, profiles, SSO, instance roles)"
        ),
    };
    if let Some(e) = &a.endpoint {
        base_url("aws.endpoint", e.trim(), "http://127.0.0.1:5000")?;
    }
    if let Some(p) = &a.profile {
        anyhow::ensure!(
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')),
            "aws.profile: `{p}` is not a profile name of the shared config files"
        );
    }
    let ssh_public_key = public_key("aws.ssh_public_key", a.ssh_public_key.as_deref())?;
    // The account is the image's unless set; when set it is checked like the other clouds'.
    let (ssh_key, user) = ssh_account(
        "aws",
        a.ssh_key.as_deref(),
        a.ssh_user.as_deref(),
        ssh_public_key.is_some(),
        reference,
    )?;
    let ssh_user = a.ssh_user.as_ref().map(|_| user);
    let ssh_from = match &a.ssh_from {
        Some(list) => list.clone(),
        None if ssh_public_key.is_some() => vec!["0.0.0.0/0".into(), "::/0".into()],
        None => Vec::new(),
    };
    for cidr in &ssh_from {
        anyhow::ensure!(
            is_cidr(cidr),
            "aws.ssh_from: `{cidr}` is not a CIDR block (e.g. \"203.0.113.0/24\" or \"2001:db8::/32\")"
        );
    }
    Ok(engine::provider::aws::AwsSettings {
        endpoint: a
            .endpoint
            .as_ref()
            .map(|e| e.trim().trim_end_matches('/').to_string()),
        profile: a.profile.clone().or_else(|| var("AWS_PROFILE")),
        keys,
        ssh_public_key,
        ssh_from,
        ssh_key,
        ssh_user,
        state_wait: Duration::from_secs(a.state_wait_secs.unwrap_or(600).clamp(10, 3600)),
    })
}

/// A cloud's `ssh_from`, checked (default: everyone).
fn cidrs(what: &str, list: Option<&Vec<String>>) -> anyhow::Result<Vec<String>> {
    let list = list
        .cloned()
        .unwrap_or_else(|| vec!["0.0.0.0/0".into(), "::/0".into()]);
    for cidr in &list {
        anyhow::ensure!(
            is_cidr(cidr),
            "{what}: `{cidr}` is not a CIDR block (e.g. \"203.0.113.0/24\" or \"2001:db8::/32\")"
        );
    }
    Ok(list)
}

/// `ADDRESS/PREFIX`, IPv4 or IPv6.
fn is_cidr(text: &str) -> bool {
    let Some((ip, prefix)) = text.split_once('/') else {
        return false;
    };
    match (ip.parse::<std::net::IpAddr>(), prefix.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(p)) => p <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(p)) => p <= 128,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ConfigFile {
        toml::from_str(text).unwrap()
    }

    fn reference(what: &str, text: &str) -> anyhow::Result<SecretRef> {
        SecretRef::parse(text).map_err(|e| anyhow::anyhow!("{what}: {e}"))
    }

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8yM1lKx0aWJ0 ops@example";

    #[test]
    fn a_cloud_ssh_account_is_checked() {
        let e = hetzner_settings(&file("[hetzner]\nssh_key = \"env:K\"\n"), &reference)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hetzner.ssh_key is set without hetzner.ssh_public_key"),
            "{e}"
        );
        let bad_user = format!(
            "[upcloud]\nssh_public_key = \"{KEY}\"\nssh_key = \"env:K\"\nssh_user = \"-oProxyCommand=x\"\n"
        );
        let e = upcloud_settings(&file(&bad_user), &reference)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("upcloud.ssh_user") && e.contains("not an account name"),
            "{e}"
        );
        let private = "[hetzner]\nssh_public_key = \"-----BEGIN OPENSSH PRIVATE KEY-----\"\n";
        let e = hetzner_settings(&file(private), &reference)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a private key"), "{e}");
    }

    #[test]
    fn hetzner_names_map_plain_names_only() {
        let ok =
            hetzner_settings(&file("[hetzner.names]\ncx22 = \"small\"\n"), &reference).unwrap();
        assert_eq!(ok.names.get("cx22").map(String::as_str), Some("small"));
        let e = hetzner_settings(
            &file("[hetzner.names]\ncx22 = \"../servers\"\n"),
            &reference,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("hetzner.names") && e.contains("../servers"),
            "{e}"
        );
    }

    #[test]
    fn hetzner_firewall_settings_are_checked() {
        let defaults = hetzner_settings(&file(""), &reference).unwrap();
        assert_eq!(defaults.ssh_from, ["0.0.0.0/0", "::/0"]);
        assert!(defaults.firewall && defaults.private_network);
        let e = hetzner_settings(
            &file("[hetzner]\nssh_from = [\"10.0.0.0/8\", \"office\"]\n"),
            &reference,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("hetzner.ssh_from") && e.contains("`office`"),
            "{e}"
        );
        let own = hetzner_settings(
            &file("[hetzner]\nfirewall = false\nprivate_network = false\nssh_from = []\n"),
            &reference,
        )
        .unwrap();
        assert!(!own.firewall && !own.private_network && own.ssh_from.is_empty());
    }

    #[test]
    fn aws_settings_are_checked() {
        let e = aws_settings(&file("[aws]\naccess_key_id = \"env:A\"\n"), &reference)
            .unwrap_err()
            .to_string();
        assert!(e.contains("go together"), "{e}");
        let e = aws_settings(
            &file("[aws]\nssh_from = [\"203.0.113.0/24\", \"everyone\"]\n"),
            &reference,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("aws.ssh_from") && e.contains("`everyone`"),
            "{e}"
        );
        let e = aws_settings(&file("[aws]\nendpoint = \"localhost:5000\"\n"), &reference)
            .unwrap_err()
            .to_string();
        assert!(e.contains("aws.endpoint"), "{e}");
        // With a public key, SSH is admitted from anywhere unless `ssh_from` says otherwise.
        let open = aws_settings(
            &file(&format!("[aws]\nssh_public_key = \"{KEY}\"\n")),
            &reference,
        )
        .unwrap();
        assert_eq!(open.ssh_from, ["0.0.0.0/0", "::/0"]);
        let closed = aws_settings(
            &file(&format!(
                "[aws]\nssh_public_key = \"{KEY}\"\nssh_from = []\n"
            )),
            &reference,
        )
        .unwrap();
        assert!(closed.ssh_from.is_empty());
        let keys = aws_settings(
            &file("[aws]\naccess_key_id = \"env:A\"\nsecret_access_key = \"file:/s\"\n"),
            &reference,
        )
        .unwrap();
        assert!(keys.keys.is_some());
        // The account is the image's unless set; a key needs the public key it matches.
        assert_eq!(keys.ssh_user, None);
        let e = aws_settings(&file("[aws]\nssh_key = \"env:K\"\n"), &reference)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("aws.ssh_key is set without aws.ssh_public_key"),
            "{e}"
        );
        let e = aws_settings(
            &file("[aws]\nssh_user = \"-oProxyCommand=x\"\n"),
            &reference,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("aws.ssh_user"), "{e}");
        assert!(is_cidr("2001:db8::/32") && !is_cidr("10.0.0.0/33") && !is_cidr("10.0.0.0"));
    }
}
