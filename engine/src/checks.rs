//! Checks that span several fields, which the Nickel contracts cannot express well: unique
//! names, dependency references and cycles, cluster membership and size, taskservs the `local`
//! provider cannot run or the install scripts cannot install (on `ssh` hosts and on the clouds'
//! images), catalog requirements, and workflow delay bounds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use knowledge::Catalog;

use crate::suggest::did_you_mean;
use crate::{Config, Diagnostic, Environment, Span};

pub(crate) fn check(config: &Config, catalog: &Catalog, source: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    unique_names(config, source, &mut out);
    local_taskservs(config, catalog, source, &mut out);
    remote_taskservs(config, catalog, source, &mut out);
    fact_references(config, source, &mut out);
    dependencies(config, catalog, source, &mut out);
    clusters(config, catalog, source, &mut out);
    workflow(config, source, &mut out);
    if config.workspace.environment == Environment::Prod && config.workspace.owner.is_none() {
        out.push(
            Diagnostic::warning("requirement", "prod workspace has no `owner`")
                .at("workspace")
                .expected("an owner such as `owner = \"platform-team@example.com\"`, so approvers know whom to ask"),
        );
    }
    out
}

fn unique_names(config: &Config, source: &str, out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, s) in config.servers.iter().enumerate() {
        let nth = seen.entry(&s.name).or_insert(0);
        *nth += 1;
        if *nth > 1 {
            let first = config
                .servers
                .iter()
                .position(|x| x.name == s.name)
                .unwrap_or(0);
            out.push(
                Diagnostic::error(
                    "duplicate-name",
                    format!("duplicate server name `{}`", s.name),
                )
                .at(format!("servers[{i}].name"))
                .with_span(find_field(source, "name", &s.name, *nth))
                .expected(format!(
                    "a name not used by another server (`servers[{first}].name` is `{}`)",
                    s.name
                )),
            );
        }
        let mut ts_seen = BTreeSet::new();
        for (k, t) in s.taskservs.iter().enumerate() {
            if !ts_seen.insert(t.name.as_str()) {
                out.push(
                    Diagnostic::error(
                        "duplicate-name",
                        format!(
                            "taskserv `{}` is listed twice on server `{}`",
                            t.name, s.name
                        ),
                    )
                    .at(format!("servers[{i}].taskservs[{k}]"))
                    .with_span(find_literal(source, &t.name, 2))
                    .expected("each taskserv at most once per server"),
                );
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, c) in config.clusters.iter().enumerate() {
        if !seen.insert(c.name.as_str()) {
            out.push(
                Diagnostic::error(
                    "duplicate-name",
                    format!("duplicate cluster name `{}`", c.name),
                )
                .at(format!("clusters[{i}].name"))
                .with_span(find_field(source, "name", &c.name, 2))
                .expected("a name not used by another cluster"),
            );
        }
    }
}

fn local_taskservs(config: &Config, catalog: &Catalog, source: &str, out: &mut Vec<Diagnostic>) {
    let runnable: Vec<&str> = catalog
        .taskservs
        .iter()
        .filter(|(_, t)| t.local)
        .map(|(n, _)| n.as_str())
        .collect();
    for (i, s) in config
        .servers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.provider == "local")
    {
        for (k, t) in s.taskservs.iter().enumerate() {
            if !runnable.contains(&t.name.as_str()) {
                out.push(
                    Diagnostic::error(
                        "unsupported",
                        format!("the `local` provider cannot run taskserv `{}`", t.name),
                    )
                    .at(format!("servers[{i}].taskservs[{k}]"))
                    .with_span(find_literal(source, &t.name, 1))
                    .expected(format!(
                        "one of {} on `local`, or a `sim` or cloud server",
                        quote(&runnable)
                    )),
                );
            }
        }
    }
}

/// Providers whose servers get their taskservs over SSH, from the install scripts
/// (`knowledge/taskservs/<name>/`): hosts of the `ssh` inventory and the cloud providers' servers.
const OVER_SSH: [&str; 4] = ["ssh", "hetzner", "upcloud", "aws"];

/// Taskservs installed over SSH: the scripts must exist (on `ssh`; on a cloud server their
/// absence is a warning, as this build then plans and prices the server but cannot finish it),
/// read every config key given, and, where the image is known before the server exists (the
/// clouds), support the image's OS at the version it packages.
fn remote_taskservs(config: &Config, catalog: &Catalog, source: &str, out: &mut Vec<Diagnostic>) {
    let scripted = knowledge::script_taskservs();
    for (i, s) in config
        .servers
        .iter()
        .enumerate()
        .filter(|(_, s)| OVER_SSH.contains(&s.provider.as_str()))
    {
        let mut unscripted = Vec::new();
        let mut metas = Vec::new();
        for (k, t) in s.taskservs.iter().enumerate() {
            match knowledge::taskserv_scripts(&t.name) {
                Ok(Some(scripts)) => {
                    config_keys(i, k, t, &scripts.meta, s, out);
                    metas.push(scripts.meta);
                }
                _ if s.provider == "ssh" => out.push(
                    Diagnostic::error(
                        "unsupported",
                        format!(
                            "taskserv `{}` has no install scripts for `ssh` hosts yet",
                            t.name
                        ),
                    )
                    .at(format!("servers[{i}].taskservs[{k}]"))
                    .with_span(find_literal(source, &t.name, 1))
                    .expected(format!("one of {} on `ssh`", quote(&scripted))),
                ),
                _ => unscripted.push((k, t.name.as_str())),
            }
        }
        if let Some(&(k, first)) = unscripted.first() {
            let names: Vec<&str> = unscripted.iter().map(|(_, n)| *n).collect();
            out.push(
                Diagnostic::warning(
                    "unsupported",
                    format!(
                        "this build has no install scripts for {} yet: applying creates server `{}` on `{}` and fails at {} install",
                        quote(&names),
                        s.name,
                        s.provider,
                        if names.len() == 1 { "its" } else { "their" }
                    ),
                )
                .at(format!("servers[{i}].taskservs[{k}]"))
                .with_span(find_literal(source, first, 1))
                .expected(format!(
                    "taskservs with install scripts ({}) on `{}` servers, or the `sim` provider to rehearse the rest",
                    quote(&scripted),
                    s.provider
                )),
            );
        }
        // A server this build cannot finish anyway is not told to change versions for it.
        if metas.len() == s.taskservs.len() {
            image_fit(i, s, &metas, catalog, source, out);
        }
    }
}

/// A config key the scripts do not read would be silently ignored on the host; a line break
/// would end the line it is written on.
fn config_keys(
    i: usize,
    k: usize,
    t: &crate::TaskservRef,
    meta: &knowledge::TaskservMeta,
    s: &crate::Server,
    out: &mut Vec<Diagnostic>,
) {
    let reads: Vec<&str> = meta.config.iter().map(String::as_str).collect();
    for (key, value) in &t.config {
        if value
            .as_str()
            .is_some_and(|v| v.chars().any(char::is_control))
        {
            out.push(
                Diagnostic::error(
                    "unsupported",
                    format!(
                        "config `{key}` of taskserv `{}` contains a line break or another control character",
                        t.name
                    ),
                )
                .at(format!("servers[{i}].taskservs[{k}].config.{key}"))
                .expected("a single line of text"),
            );
        }
    }
    for key in t.config.keys().filter(|key| !reads.contains(&key.as_str())) {
        out.push(
            Diagnostic::error(
                "unsupported",
                format!(
                    "taskserv `{}` on {} `{}` server does not read config `{key}`",
                    t.name,
                    if s.provider == "hetzner" { "a" } else { "an" },
                    s.provider
                ),
            )
            .at(format!("servers[{i}].taskservs[{k}].config.{key}"))
            .expected(if reads.is_empty() {
                "no config: its scripts read none".to_string()
            } else {
                format!("one of {}", quote(&reads))
            })
            .suggest(
                did_you_mean(key, reads.iter().copied()).map(|m| format!("did you mean `{m}`?")),
            ),
        );
    }
}

/// On a cloud server the image, so the OS, is known before the server exists: every taskserv
/// must install on it, at the version the OS packages (the scripts install the OS's packages).
fn image_fit(
    i: usize,
    s: &crate::Server,
    metas: &[knowledge::TaskservMeta],
    catalog: &Catalog,
    source: &str,
    out: &mut Vec<Diagnostic>,
) {
    let Some(p) = catalog.provider(&s.provider) else {
        return;
    };
    let Some((image_name, image)) = p.image(s.image.as_deref()) else {
        return;
    };
    let which = if s.image.is_some() {
        format!("image `{image_name}`")
    } else {
        format!("image `{image_name}` (the `{}` default)", s.provider)
    };
    // Every taskserv has scripts here (`metas`, in the server's order).
    for (k, (t, meta)) in s.taskservs.iter().zip(metas).enumerate() {
        let Some(version) = t
            .version
            .clone()
            .or_else(|| catalog.taskserv(&t.name).map(|c| c.default_version.clone()))
        else {
            continue;
        };
        match meta.fit(&version, &image.os) {
            knowledge::Fit::Yes => {}
            knowledge::Fit::Os { supported } => {
                let fits: Vec<&str> = p
                    .images
                    .iter()
                    .filter(|(_, im)| supported.contains(&im.os))
                    .map(|(n, _)| n.as_str())
                    .collect();
                out.push(
                    Diagnostic::error(
                        "unsupported",
                        format!(
                            "taskserv `{}` does not install on server `{}`'s {which}: its scripts support {} only",
                            t.name,
                            s.name,
                            supported.join(", ")
                        ),
                    )
                    .at(format!("servers[{i}].taskservs[{k}]"))
                    .with_span(find_literal(source, &t.name, 1))
                    .expected(if fits.is_empty() {
                        format!("a provider whose images include {}", supported.join(" or "))
                    } else {
                        format!("`image = \"{}\"` on this server", fits.join("\"` or `image = \""))
                    }),
                );
            }
            knowledge::Fit::Version { packaged } => {
                let named = t.version.is_some();
                out.push(
                    Diagnostic::error(
                        "unsupported",
                        format!(
                            "taskserv `{}` {version}{} is not what {} packages ({packaged}), and its install scripts use the OS's packages",
                            t.name,
                            if named { "" } else { " (the catalog default)" },
                            image.os
                        ),
                    )
                    .at(format!("servers[{i}].taskservs[{k}]"))
                    .with_span(find_literal(source, &version, 1).or_else(|| find_literal(source, &t.name, 1)))
                    .expected(format!(
                        "`version = \"{packaged}\"` on {which}, or an image that packages {version}"
                    )),
                );
            }
        }
    }
}

/// `{{SERVER/TASKSERV.KEY}}` in a taskserv's config (see [`crate::facts`]) must be well formed
/// and name a taskserv this one depends on, so that it is installed first.
fn fact_references(config: &Config, source: &str, out: &mut Vec<Diagnostic>) {
    for (i, s) in config.servers.iter().enumerate() {
        for (k, t) in s.taskservs.iter().enumerate() {
            let at = format!("servers[{i}].taskservs[{k}].config");
            let refs = match crate::facts::config_references(&t.config) {
                Ok(refs) => refs,
                Err(e) => {
                    out.push(Diagnostic::error("reference", e).at(at.clone()).expected(
                        "`{{SERVER/TASKSERV.KEY}}` naming a fact of a taskserv this one depends on",
                    ));
                    continue;
                }
            };
            for (key, r) in refs {
                let target = format!("{}/{}", r.server, r.taskserv);
                let exists = config.servers.iter().any(|x| {
                    x.name == r.server && x.taskservs.iter().any(|y| y.name == r.taskserv)
                });
                let depends = t
                    .depends_on
                    .iter()
                    .any(|d| *d == target || (r.server == s.name && *d == r.taskserv));
                let problem = if !exists {
                    Some((
                        format!(
                            "config `{key}` uses {r}, but there is no taskserv `{target}` in this config"
                        ),
                        "a taskserv of this config, as `SERVER/TASKSERV`".to_string(),
                    ))
                } else if !depends {
                    Some((
                        format!(
                            "config `{key}` uses {r}, but taskserv `{}/{}` does not depend on `{target}`, so it may be installed first",
                            s.name, t.name
                        ),
                        format!("`{target}` in `servers[{i}].taskservs[{k}].depends_on`"),
                    ))
                } else {
                    None
                };
                if let Some((message, expected)) = problem {
                    out.push(
                        Diagnostic::error("reference", message)
                            .at(format!("{at}.{key}"))
                            .with_span(
                                source.find(&r.to_string()).map(|at| {
                                    Span::from_offsets(source, at, at + r.to_string().len())
                                }),
                            )
                            .expected(expected),
                    );
                }
            }
        }
    }
}

/// A node of the dependency graph: `server/taskserv`.
type Node = (usize, usize);

fn dependencies(config: &Config, catalog: &Catalog, source: &str, out: &mut Vec<Diagnostic>) {
    let mut index: HashMap<(&str, &str), Node> = HashMap::new();
    for (i, s) in config.servers.iter().enumerate() {
        for (k, t) in s.taskservs.iter().enumerate() {
            index.entry((&s.name, &t.name)).or_insert((i, k));
        }
    }
    let mut edges: BTreeMap<Node, Vec<Node>> = BTreeMap::new();
    for (i, s) in config.servers.iter().enumerate() {
        let here: Vec<&str> = s.taskservs.iter().map(|t| t.name.as_str()).collect();
        for (k, t) in s.taskservs.iter().enumerate() {
            let from = (i, k);
            for (d, dep) in t.depends_on.iter().enumerate() {
                let (server, name) = dep.split_once('/').unwrap_or((&s.name, dep));
                match index.get(&(server, name)) {
                    Some(to) => edges.entry(from).or_default().push(*to),
                    None => {
                        let path = format!("servers[{i}].taskservs[{k}].depends_on[{d}]");
                        let on_server = config.servers.iter().find(|x| x.name == server);
                        let (msg, expected, suggestion) = match on_server {
                            None => (
                                format!(
                                    "`{dep}` names server `{server}`, which is not in this workspace"
                                ),
                                "`NAME` for a taskserv on this server or `SERVER/NAME`".to_owned(),
                                did_you_mean(
                                    server,
                                    config.servers.iter().map(|x| x.name.as_str()),
                                )
                                .map(|m| format!("did you mean `{m}/{name}`?")),
                            ),
                            Some(x) => {
                                let names: Vec<&str> =
                                    x.taskservs.iter().map(|t| t.name.as_str()).collect();
                                (
                                    format!("`{dep}` is not a taskserv on server `{server}`"),
                                    if names.is_empty() {
                                        format!("server `{server}` has no taskservs")
                                    } else {
                                        format!("one of {}", quote(&names))
                                    },
                                    did_you_mean(name, names.iter().copied())
                                        .map(|m| format!("did you mean `{m}`?")),
                                )
                            }
                        };
                        out.push(
                            Diagnostic::error("reference", msg)
                                .at(path)
                                .with_span(find_literal(source, dep, 1))
                                .expected(expected)
                                .suggest(suggestion),
                        );
                    }
                }
            }
            let Some(entry) = catalog.taskserv(&t.name) else {
                continue;
            };
            for req in &entry.requires {
                match here.iter().position(|n| n == req) {
                    Some(r) => edges.entry(from).or_default().push((i, r)),
                    None => out.push(
                        Diagnostic::warning("requirement", format!("taskserv `{}` on server `{}` requires `{req}`, which is not listed on that server", t.name, s.name))
                            .at(format!("servers[{i}].taskservs[{k}]"))
                            .expected(format!("`{req}` in `servers[{i}].taskservs`")),
                    ),
                }
            }
        }
    }
    let label = |(i, k): Node| {
        format!(
            "{}/{}",
            config.servers[i].name, config.servers[i].taskservs[k].name
        )
    };
    for cycle in cycles(&edges) {
        let first = cycle[0];
        let mut names: Vec<String> = cycle.iter().map(|n| format!("`{}`", label(*n))).collect();
        names.push(names[0].clone());
        let explicit = config.servers[first.0].taskservs[first.1]
            .depends_on
            .first()
            .map(String::as_str);
        out.push(
            Diagnostic::error(
                "dependency-cycle",
                format!("taskserv dependency cycle: {}", names.join(" → ")),
            )
            .at(format!(
                "servers[{}].taskservs[{}].depends_on",
                first.0, first.1
            ))
            .with_span(explicit.and_then(|d| find_literal(source, d, 1)))
            .expected("dependencies without cycles: remove one `depends_on` entry of the cycle"),
        );
    }
}

/// Every elementary cycle found by depth-first search, each once, starting at its smallest node.
fn cycles(edges: &BTreeMap<Node, Vec<Node>>) -> Vec<Vec<Node>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    let mut marks: HashMap<Node, Mark> = HashMap::new();
    let mut found: BTreeSet<Vec<Node>> = BTreeSet::new();
    for &start in edges.keys() {
        if marks.contains_key(&start) {
            continue;
        }
        // Iterative DFS: (node, next edge index) with the path on the stack.
        let mut stack: Vec<(Node, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::Open);
        while let Some((node, next)) = stack.last().copied() {
            let succ = edges.get(&node).map_or(&[][..], Vec::as_slice);
            if let Some(&to) = succ.get(next) {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                match marks.get(&to) {
                    None => {
                        marks.insert(to, Mark::Open);
                        stack.push((to, 0));
                    }
                    Some(Mark::Open) => {
                        let from = stack.iter().position(|(n, _)| *n == to).unwrap_or(0);
                        let mut cycle: Vec<Node> = stack[from..].iter().map(|(n, _)| *n).collect();
                        let min = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| **n)
                            .map_or(0, |(i, _)| i);
                        cycle.rotate_left(min);
                        found.insert(cycle);
                    }
                    Some(Mark::Done) => {}
                }
            } else {
                marks.insert(node, Mark::Done);
                stack.pop();
            }
        }
    }
    found.into_iter().collect()
}

fn clusters(config: &Config, catalog: &Catalog, source: &str, out: &mut Vec<Diagnostic>) {
    let names: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
    for (i, c) in config.clusters.iter().enumerate() {
        for (j, member) in c.servers.iter().enumerate() {
            if !names.contains(&member.as_str()) {
                out.push(
                    Diagnostic::error(
                        "reference",
                        format!(
                            "cluster `{}` names server `{member}`, which is not in this workspace",
                            c.name
                        ),
                    )
                    .at(format!("clusters[{i}].servers[{j}]"))
                    .with_span(find_literal(source, member, 1))
                    .expected(if names.is_empty() {
                        "a server defined in `servers`".to_owned()
                    } else {
                        format!("one of {}", quote(&names))
                    })
                    .suggest(
                        did_you_mean(member, names.iter().copied())
                            .map(|m| format!("did you mean `{m}`?")),
                    ),
                );
            }
        }
        let Some(t) = catalog.template(&c.template) else {
            continue;
        };
        let need = t.min_servers() as usize;
        if c.servers.len() < need {
            let roles: Vec<String> = t
                .roles
                .iter()
                .filter(|r| r.min > 0)
                .map(|r| format!("{} {}", r.min, r.name))
                .collect();
            out.push(
                Diagnostic::error(
                    "requirement",
                    format!(
                        "template `{}` needs at least {need} servers, cluster `{}` lists {}",
                        c.template,
                        c.name,
                        c.servers.len()
                    ),
                )
                .at(format!("clusters[{i}].servers"))
                .with_span(find_field(source, "name", &c.name, 1))
                .expected(format!(
                    "at least {need} server names ({})",
                    roles.join(", ")
                )),
            );
        }
    }
}

fn workflow(config: &Config, source: &str, out: &mut Vec<Diagnostic>) {
    let r = &config.workflow.retry;
    if r.initial_delay_ms > r.max_delay_ms {
        out.push(
            Diagnostic::error(
                "contract",
                format!(
                    "`initial_delay_ms` ({}) is larger than `max_delay_ms` ({})",
                    r.initial_delay_ms, r.max_delay_ms
                ),
            )
            .at("workflow.retry.initial_delay_ms")
            .with_span(find_key(source, "initial_delay_ms"))
            .expected(format!(
                "at most {} ms, or a larger `max_delay_ms`",
                r.max_delay_ms
            )),
        );
    }
}

fn quote(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `nth` (1-based) string literal `"value"` in `source`.
fn find_literal(source: &str, value: &str, nth: usize) -> Option<Span> {
    let needle = format!("\"{value}\"");
    let (at, _) = source.match_indices(&needle).nth(nth.checked_sub(1)?)?;
    Some(Span::from_offsets(source, at, at + needle.len()))
}

/// The `nth` (1-based) `field = "value"` in `source`.
fn find_field(source: &str, field: &str, value: &str, nth: usize) -> Option<Span> {
    let needle = format!("\"{value}\"");
    let (at, _) = source
        .match_indices(&needle)
        .filter(|(at, _)| {
            let before = source[..*at].trim_end();
            before
                .strip_suffix('=')
                .is_some_and(|b| b.trim_end().ends_with(field))
        })
        .nth(nth.checked_sub(1)?)?;
    Some(Span::from_offsets(source, at, at + needle.len()))
}

/// The first `key =` outside a comment line.
fn find_key(source: &str, key: &str) -> Option<Span> {
    let (at, _) = source.match_indices(key).find(|(at, _)| {
        let line_start = source[..*at].rfind('\n').map_or(0, |i| i + 1);
        !source[line_start..*at].contains('#')
            && source[at + key.len()..].trim_start().starts_with('=')
    })?;
    Some(Span::from_offsets(source, at, at + key.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_found_once_with_their_members() {
        let mut e: BTreeMap<Node, Vec<Node>> = BTreeMap::new();
        e.insert((0, 0), vec![(0, 1)]);
        e.insert((0, 1), vec![(0, 2)]);
        e.insert((0, 2), vec![(0, 0), (1, 0)]);
        e.insert((1, 0), vec![]);
        assert_eq!(cycles(&e), vec![vec![(0, 0), (0, 1), (0, 2)]]);
        e.insert((1, 0), vec![(1, 0)]);
        assert_eq!(cycles(&e).len(), 2);
        e.clear();
        e.insert((0, 0), vec![(0, 1)]);
        e.insert((0, 1), vec![]);
        assert!(cycles(&e).is_empty());
    }

    #[test]
    fn finds_field_literals() {
        let src = "[{ name = \"a\" }, { x = \"a\" }, { name  =  \"a\" }]";
        let s = find_field(src, "name", "a", 2).unwrap();
        assert_eq!(s.column, src.rfind("\"a\"").unwrap() + 1);
    }
}
