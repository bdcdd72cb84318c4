//! `provisioning token create|list|revoke`: API tokens for `serve --http`. A token is shown once;
//! the config file keeps only its SHA-256 (`token_sha256` of a `[users.NAME]` or
//! `[agents.NAME]` entry). The file is edited in place with `toml_edit`, so its comments and
//! layout stay as they were.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use toml_edit::{Array, DocumentMut, Item, Table, value};

use crate::Settings;
use crate::cli::{TokenArgs, TokenWhat};

/// The prefix of every token this command makes (so a leaked one is recognisable).
pub const TOKEN_PREFIX: &str = "prov_";

pub fn run(settings: &Settings, args: &TokenArgs) -> anyhow::Result<ExitCode> {
    let path = config_path(settings);
    match &args.what {
        TokenWhat::Create {
            name,
            roles,
            agent_for,
            rotate,
        } => {
            let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            let made = create(&path, name, &roles, agent_for.as_deref(), *rotate)?;
            println!("{}", made.token);
            eprintln!(
                "{} (roles: {}). Shown once: {} keeps only its SHA-256. Send it as `Authorization: Bearer TOKEN`; \
                 a running `provisioning serve --http` with this config file takes it within a second.",
                made.principal,
                if made.roles.is_empty() {
                    "none".to_string()
                } else {
                    made.roles.join(", ")
                },
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        TokenWhat::List { json } => {
            let tokens = list(&path)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else if tokens.is_empty() {
                println!(
                    "no tokens in {} (create one with `provisioning token create NAME --role viewer`)",
                    path.display()
                );
            } else {
                println!("{:<24} {:<8} {:<28} SHA-256", "NAME", "KIND", "ROLES");
                for t in &tokens {
                    println!(
                        "{:<24} {:<8} {:<28} {}…",
                        t.principal,
                        t.kind,
                        t.roles.join(","),
                        t.sha256_prefix
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenWhat::Revoke { name } => {
            let principal = revoke(&path, name)?;
            eprintln!(
                "revoked the token of {principal} in {}; a running `provisioning serve --http` with this config file refuses it within a second",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The config file to edit: the one in use, else the default location.
pub fn config_path(settings: &Settings) -> PathBuf {
    settings
        .config_file
        .clone()
        .unwrap_or_else(crate::settings::default_config_path)
}

/// A token just made.
#[derive(Debug)]
pub struct Created {
    pub token: String,
    pub principal: String,
    pub roles: Vec<String>,
}

/// One token in the config file (never the token itself).
#[derive(Debug, serde::Serialize)]
pub struct Listed {
    pub principal: String,
    pub kind: &'static str,
    pub roles: Vec<String>,
    pub sha256_prefix: String,
}

/// A new random token: the prefix and 32 random bytes in hex.
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{TOKEN_PREFIX}{hex}"))
}

pub(super) fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        bail!(
            "`{name}` is not a usable name: use 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter or digit (e.g. `olga` or `ci-bot`)"
        );
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<DocumentMut> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    text.parse::<DocumentMut>()
        .with_context(|| format!("{} is not valid TOML", path.display()))
}

/// Writes `doc` after checking it still reads as a config file; a new file is the owner's alone.
fn write(path: &Path, doc: &DocumentMut) -> anyhow::Result<()> {
    let text = doc.to_string();
    toml::from_str::<crate::settings::ConfigFile>(&text).with_context(|| {
        format!(
            "the edit would leave {} unreadable; nothing was written",
            path.display()
        )
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("toml.tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap_or(0o600);
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

fn section<'d>(doc: &'d mut DocumentMut, key: &str) -> anyhow::Result<&'d mut Table> {
    let item = doc.entry(key).or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    item.as_table_mut()
        .with_context(|| format!("`{key}` in the config file is not a table"))
}

fn roles_of(entry: &Table) -> Vec<String> {
    entry
        .get("roles")
        .and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Creates a token for user `name` (or agent `name` acting for `agent_for`) and records its hash.
pub fn create(
    path: &Path,
    name: &str,
    roles: &[&str],
    agent_for: Option<&str>,
    rotate: bool,
) -> anyhow::Result<Created> {
    check_name(name)?;
    let mut doc = read(path)?;
    let token = new_token()?;
    let hash = format!("{:x}", Sha256::digest(token.as_bytes()));
    let kind = if agent_for.is_some() {
        "agents"
    } else {
        "users"
    };
    let users: Vec<String> = doc
        .get("users")
        .and_then(Item::as_table)
        .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
        .unwrap_or_default();
    if let Some(user) = agent_for {
        check_name(user)?;
        if !users.iter().any(|u| u == user) {
            bail!(
                "an agent acts for a user of this config file, and `{user}` is not one ({}); create the user first: `provisioning token create {user} --role operator`",
                if users.is_empty() {
                    "there are none".to_string()
                } else {
                    format!("users: {}", users.join(", "))
                }
            );
        }
    }
    let table = section(&mut doc, kind)?;
    let entry = table
        .entry(name)
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_mut()
        .with_context(|| format!("`{kind}.{name}` in the config file is not a table"))?;
    if entry.contains_key("token_sha256") && !rotate {
        bail!(
            "{kind}.{name} already has a token; pass --rotate to replace it (the old one stops working), or `provisioning token revoke {name}` first"
        );
    }
    if !roles.is_empty() {
        let mut list = Array::new();
        for r in roles {
            list.push(*r);
        }
        entry.insert("roles", value(list));
    } else if !entry.contains_key("roles") {
        entry.insert("roles", value(Array::new()));
    }
    if let Some(user) = agent_for {
        entry.insert("acting_for", value(user));
    }
    entry.insert("token_sha256", value(hash));
    let roles = roles_of(entry);
    write(path, &doc)?;
    let principal = match agent_for {
        Some(user) => format!("agent:{name}@{user}"),
        None => format!("user:{name}"),
    };
    Ok(Created {
        token,
        principal,
        roles,
    })
}

/// Every token recorded in the config file.
pub fn list(path: &Path) -> anyhow::Result<Vec<Listed>> {
    let doc = read(path)?;
    let mut out = Vec::new();
    for (kind, label) in [("users", "user"), ("agents", "agent")] {
        let Some(table) = doc.get(kind).and_then(Item::as_table) else {
            continue;
        };
        for (name, entry) in table.iter() {
            let Some(entry) = entry.as_table() else {
                continue;
            };
            let Some(hash) = entry.get("token_sha256").and_then(Item::as_str) else {
                continue;
            };
            let principal = match entry.get("acting_for").and_then(Item::as_str) {
                Some(user) => format!("agent:{name}@{user}"),
                None => format!("{label}:{name}"),
            };
            out.push(Listed {
                principal,
                kind: label,
                roles: roles_of(entry),
                sha256_prefix: hash.chars().take(12).collect(),
            });
        }
    }
    Ok(out)
}

/// Removes the token of user or agent `name`: a user keeps its roles (it may still use the
/// local server), an agent entry goes (it exists for its token).
pub fn revoke(path: &Path, name: &str) -> anyhow::Result<String> {
    let mut doc = read(path)?;
    if let Some(users) = doc.get_mut("users").and_then(Item::as_table_mut)
        && let Some(entry) = users.get_mut(name).and_then(Item::as_table_mut)
        && entry.remove("token_sha256").is_some()
    {
        write(path, &doc)?;
        return Ok(format!("user:{name}"));
    }
    if let Some(agents) = doc.get_mut("agents").and_then(Item::as_table_mut)
        && agents.get(name).is_some()
    {
        let user = agents
            .get(name)
            .and_then(Item::as_table)
            .and_then(|t| t.get("acting_for"))
            .and_then(Item::as_str)
            .unwrap_or("?")
            .to_string();
        agents.remove(name);
        write(path, &doc)?;
        return Ok(format!("agent:{name}@{user}"));
    }
    let known: Vec<String> = list(path)?.into_iter().map(|t| t.principal).collect();
    bail!(
        "no token for `{name}` in {} ({})",
        path.display(),
        if known.is_empty() {
            "it has none".to_string()
        } else {
            format!("tokens: {}", known.join(", "))
        }
    )
}

#[cfg(test)]
mod tests {
    use super::{TOKEN_PREFIX, create, list, revoke};
    use sha2::{Digest, Sha256};

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("prov-token-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("config.toml")
    }

    #[test]
    fn a_token_is_shown_once_and_stored_as_its_hash_keeping_the_file_as_it_was() {
        let path = scratch("create");
        let before = "# my config\n[approvals]\nttl_hours = 12 # half a day\n";
        std::fs::write(&path, before).unwrap();
        let made = create(&path, "olga", &["operator", "approver"], None, false).unwrap();
        assert!(made.token.starts_with(TOKEN_PREFIX) && made.token.len() == 69);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(before), "{text}");
        assert!(!text.contains(&made.token), "{text}");
        let hash = format!("{:x}", Sha256::digest(made.token.as_bytes()));
        assert!(text.contains(&hash), "{text}");
        let file: crate::settings::ConfigFile = toml::from_str(&text).unwrap();
        assert_eq!(file.users["olga"].roles, ["operator", "approver"]);
        // A second token for the same name is refused unless rotated.
        let again = create(&path, "olga", &[], None, false)
            .unwrap_err()
            .to_string();
        assert!(
            again.contains("already has a token") && again.contains("--rotate"),
            "{again}"
        );
        let rotated = create(&path, "olga", &[], None, true).unwrap();
        assert_ne!(rotated.token, made.token);
        assert_eq!(rotated.roles, ["operator", "approver"]);
        // An agent acts for a known user only.
        let stray = create(&path, "bot", &["viewer"], Some("nobody"), false)
            .unwrap_err()
            .to_string();
        assert!(
            stray.contains("`nobody` is not one") && stray.contains("olga"),
            "{stray}"
        );
        create(&path, "bot", &["viewer"], Some("olga"), false).unwrap();
        let listed = list(&path).unwrap();
        let names: Vec<&str> = listed.iter().map(|t| t.principal.as_str()).collect();
        assert_eq!(names, ["user:olga", "agent:bot@olga"]);
        assert!(
            !serde_json::to_string(&listed)
                .unwrap()
                .contains(&rotated.token)
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn revoking_removes_the_hash_and_bad_input_changes_nothing() {
        let path = scratch("revoke");
        create(&path, "olga", &["operator"], None, false).unwrap();
        create(&path, "bot", &["viewer"], Some("olga"), false).unwrap();
        let before = std::fs::read_to_string(&path).unwrap();
        let unknown = revoke(&path, "olgaa").unwrap_err().to_string();
        assert!(
            unknown.contains("no token for `olgaa`") && unknown.contains("user:olga"),
            "{unknown}"
        );
        let bad = create(&path, "../etc", &[], None, false)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("not a usable name"), "{bad}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        assert_eq!(revoke(&path, "bot").unwrap(), "agent:bot@olga");
        assert_eq!(revoke(&path, "olga").unwrap(), "user:olga");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("token_sha256") && text.contains("[users.olga]"),
            "{text}"
        );
        assert!(list(&path).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
