//! Puts a draft together: environment, units, server names, taskservs with their catalog
//! requirements and versions, placement, clusters, owner and workspace name.

use std::collections::BTreeMap;

use super::groups::{Intent, Svc};
use super::placement::place_all;
use super::render::{Cluster, Config, Server};
use super::units::{Unit, units};
use super::vocab::{Env, Role};
use super::{Ctx, DraftError, Notes, quote_list};

pub(crate) fn assemble(
    intent: &Intent,
    ctx: &Ctx,
    notes: &mut Notes,
) -> Result<Config, DraftError> {
    for (from, to) in &intent.corrections {
        notes.assume("text", to, format!("read `{from}` as `{to}`"));
    }
    let environment = environment(intent, ctx, notes);
    let (units, plans) = units(intent, ctx.catalog, notes)?;
    let names = server_names(&units);
    let keys = unit_keys(&units, &names);
    let taskservs: Vec<Vec<(String, Option<String>)>> = units
        .iter()
        .zip(&keys)
        .map(|(u, k)| taskservs(&u.services, k, ctx, notes))
        .collect();
    let bare: Vec<Vec<String>> = taskservs
        .iter()
        .map(|t| t.iter().map(|(n, _)| n.clone()).collect())
        .collect();
    let placed = place_all(&units, &keys, &bare, intent, ctx, notes);
    for u in &intent.unknown {
        notes.warn(format!(
            "`{u}` is not in the catalog, so the draft leaves it out (`provisioning catalog taskservs` lists what can be installed)"
        ));
    }
    let mut servers = Vec::new();
    for (k, u) in units.iter().enumerate() {
        for (i, name) in names[k].iter().enumerate() {
            let mut labels = vec![("role".to_owned(), label(u.role).to_owned())];
            match u.role {
                Role::Primary => labels.push(("pg-role".to_owned(), "primary".to_owned())),
                Role::Replica => labels.push(("pg-role".to_owned(), "replica".to_owned())),
                _ => {}
            }
            servers.push(Server {
                name: name.clone(),
                provider: placed[k].provider.clone(),
                plan: placed[k].plan.clone(),
                zone: placed[k].zones.get(i).cloned().unwrap_or_default(),
                image: None,
                labels,
                taskservs: taskservs[k].clone(),
            });
        }
    }
    let mut clusters: Vec<Cluster> = Vec::new();
    for p in plans {
        let members: Vec<String> = p.units.iter().flat_map(|&k| names[k].clone()).collect();
        if members.is_empty() {
            continue;
        }
        let mut name = p.template.clone();
        let mut n = 2;
        while clusters.iter().any(|c| c.name == name) {
            name = format!("{}-{n}", p.template);
            n += 1;
        }
        clusters.push(Cluster {
            name,
            template: p.template,
            servers: members,
        });
    }
    let owner = owner(intent, ctx, environment, notes);
    let name = workspace(intent, &units, environment, ctx, notes);
    Ok(Config {
        name,
        environment: environment.as_str().to_owned(),
        owner,
        servers,
        clusters,
    })
}

fn label(role: Role) -> &'static str {
    match role {
        Role::Db | Role::Primary | Role::Replica => "database",
        Role::ControlPlane => "control-plane",
        other => other.prefix(),
    }
}

fn environment(intent: &Intent, ctx: &Ctx, notes: &mut Notes) -> Env {
    if let Some(a) = ctx.answers.get("environment") {
        match Env::parse(a) {
            Some(e) => return e,
            None => notes.warn(format!(
                "the answer `{a}` for `environment` is not one of `dev`, `staging`, `prod`"
            )),
        }
    }
    let mut distinct: Vec<Env> = Vec::new();
    for (e, _) in &intent.envs {
        if !distinct.contains(e) {
            distinct.push(*e);
        }
    }
    match distinct.as_slice() {
        [] => {
            notes.assume("environment", "dev", "the text names no environment");
            Env::Dev
        }
        [one] => *one,
        [first, ..] => {
            let all: Vec<&str> = distinct.iter().map(|e| e.as_str()).collect();
            notes.warn(format!(
                "the text names several environments ({}); a workspace has one, the draft uses `{}`",
                quote_list(&all),
                first.as_str()
            ));
            notes.ask(
                "environment",
                format!(
                    "The text names {}; which environment is this workspace?",
                    quote_list(&all)
                ),
                all.iter().map(|s| (*s).to_owned()).collect(),
                first.as_str(),
            );
            *first
        }
    }
}

/// Fixed names, else `PREFIX-N` numbered across all units of that prefix.
fn server_names(units: &[Unit]) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, u32> = BTreeMap::new();
    let mut used: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for u in units {
        let mut names = Vec::new();
        for i in 0..u.count {
            let mut name = match &u.names {
                Some(fixed) if (i as usize) < fixed.len() => fixed[i as usize].clone(),
                _ => {
                    let n = next.entry(u.role.prefix()).or_insert(0);
                    *n += 1;
                    format!("{}-{n}", u.role.prefix())
                }
            };
            let base = name.clone();
            let mut k = 2;
            while used.contains(&name) {
                name = format!("{base}-{k}");
                k += 1;
            }
            used.push(name.clone());
            names.push(name);
        }
        out.push(names);
    }
    out
}

/// The scope of a unit's questions: its role prefix when no other unit shares it, else its
/// first server's name.
fn unit_keys(units: &[Unit], names: &[Vec<String>]) -> Vec<String> {
    units
        .iter()
        .enumerate()
        .map(|(k, u)| {
            let prefix = u.role.prefix();
            let shared = units
                .iter()
                .enumerate()
                .any(|(j, o)| j != k && o.role.prefix() == prefix);
            if shared || u.names.is_some() {
                names[k]
                    .first()
                    .cloned()
                    .unwrap_or_else(|| prefix.to_owned())
            } else {
                prefix.to_owned()
            }
        })
        .collect()
}

/// The unit's taskservs with what they require first, versions checked against the catalog.
fn taskservs(
    services: &[Svc],
    key: &str,
    ctx: &Ctx,
    notes: &mut Notes,
) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    let named: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    for s in services {
        if let Some(alias) = &s.stand_in {
            notes.assume(
                &format!("{key}.taskservs"),
                &s.name,
                format!("the catalog has no `{alias}`; `{}` is the closest", s.name),
            );
        }
        let version = version(s, ctx, notes);
        visit(&s.name, version, &named, key, ctx, notes, &mut out, 0);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn visit(
    name: &str,
    version: Option<String>,
    named: &[&str],
    key: &str,
    ctx: &Ctx,
    notes: &mut Notes,
    out: &mut Vec<(String, Option<String>)>,
    depth: usize,
) {
    if depth > 16 {
        return;
    }
    if let Some(existing) = out.iter_mut().find(|(n, _)| n == name) {
        if existing.1.is_none() {
            existing.1 = version;
        }
        return;
    }
    if let Some(t) = ctx.catalog.taskserv(name) {
        for r in &t.requires {
            if !named.contains(&r.as_str()) && !out.iter().any(|(n, _)| n == r) {
                notes.assume(
                    &format!("{key}.taskservs"),
                    r,
                    format!("`{name}` requires `{r}` on the same server"),
                );
            }
            visit(r, None, named, key, ctx, notes, out, depth + 1);
        }
    }
    out.push((name.to_owned(), version));
}

/// A version the catalog supports: exact, or the newest with the given prefix (`7` → `7.4`).
fn version(s: &Svc, ctx: &Ctx, notes: &mut Notes) -> Option<String> {
    let t = ctx.catalog.taskserv(&s.name)?;
    let field = format!("{}.version", s.name);
    let asked = ctx
        .answers
        .get(&field)
        .cloned()
        .or_else(|| s.version.clone())?;
    if t.versions.contains(&asked) {
        return Some(asked);
    }
    if let Some(v) = t
        .versions
        .iter()
        .rev()
        .find(|v| v.starts_with(&format!("{asked}.")))
    {
        notes.assume(
            &field,
            v,
            format!("`{asked}` read as the newest supported {asked}.x"),
        );
        return Some(v.clone());
    }
    notes.warn(format!(
        "{} {asked} is not supported; the draft uses the catalog default {}",
        s.name, t.default_version
    ));
    notes.ask(
        &field,
        format!("Which {} version? `{asked}` is not supported.", s.name),
        t.versions.clone(),
        &t.default_version,
    );
    None
}

fn owner(intent: &Intent, ctx: &Ctx, env: Env, notes: &mut Notes) -> Option<String> {
    let owner = ctx
        .answers
        .get("owner")
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .or_else(|| intent.owner.clone());
    if owner.is_none() && env == Env::Prod {
        notes.ask(
            "owner",
            "Who owns this production workspace (a user name or email)? Approvers need to know whom to ask.",
            Vec::new(),
            "",
        );
    }
    owner
}

/// A DNS label made from `s`, if any is left.
fn dns_label(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.to_lowercase().chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    let out: String = out.trim_matches('-').chars().take(63).collect();
    let out = out.trim_end_matches('-').to_owned();
    (!out.is_empty()).then_some(out)
}

fn workspace(intent: &Intent, units: &[Unit], env: Env, ctx: &Ctx, notes: &mut Notes) -> String {
    if let Some(a) = ctx.answers.get("workspace")
        && let Some(name) = dns_label(a)
    {
        return name;
    }
    if let Some(name) = intent.workspace.as_deref().and_then(dns_label) {
        return name;
    }
    let main = if units.iter().any(|u| u.role == Role::ControlPlane) {
        "k8s"
    } else {
        units.first().map_or("servers", |u| u.role.prefix())
    };
    let name = format!("{main}-{}", env.as_str());
    notes.assume(
        "workspace",
        &name,
        "the text names no workspace; the main role and the environment",
    );
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert_eq!(dns_label("Shop Front!").as_deref(), Some("shop-front"));
        assert_eq!(dns_label("--").as_deref(), None);
        assert_eq!(dns_label(&"a".repeat(80)).map(|s| s.len()), Some(63));
    }
}
