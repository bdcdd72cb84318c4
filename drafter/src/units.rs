//! Groups → units (sets of like servers) and the clusters over them: pronouns and mirrors are
//! resolved, roles get their default taskservs, "k8s" with control planes or workers becomes a
//! `k8s-ha` cluster, a replicated postgres a primary with replicas, and "a web stack", "a build
//! farm", "a redis cluster" their templates.

use knowledge::Catalog;

use super::groups::{Group, GroupKind, Intent, Mods, Svc};
use super::tagger::CountHow;
use super::vocab::Role;
use super::{DraftError, MAX_SERVERS, MAX_SERVERS_PER_GROUP, Notes, quote_list};

/// Servers that are alike: same role, taskservs and placement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unit {
    pub role: Role,
    pub count: u32,
    pub services: Vec<Svc>,
    pub mods: Mods,
    /// Names fixed by a template (`db-primary`); otherwise numbered from the role.
    pub names: Option<Vec<String>>,
    /// The group's words, for messages.
    pub text: String,
    /// Index of the group the unit came from, to keep text order.
    pub origin: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClusterPlan {
    pub template: String,
    pub units: Vec<usize>,
}

const K8S_PARTS: &[&str] = &[
    "kubernetes",
    "containerd",
    "etcd",
    "coredns",
    "cilium",
    "calico",
    "flannel",
];
const CNIS: &[&str] = &["cilium", "calico", "flannel"];

fn has(services: &[Svc], name: &str) -> bool {
    services.iter().any(|s| s.name == name)
}

fn svc(name: &str) -> Svc {
    Svc {
        name: name.to_owned(),
        version: None,
        stand_in: None,
    }
}

/// Takes providers and places from `from` where `to` has none.
fn inherit_place(to: &mut Mods, from: &Mods) {
    if to.providers.is_empty() {
        to.providers.clone_from(&from.providers);
    }
    if to.places.is_empty() {
        to.places.clone_from(&from.places);
        to.spread |= from.spread;
    }
}

fn template_roles(catalog: &Catalog, template: &str) -> Vec<(String, u32, Vec<String>)> {
    catalog
        .template(template)
        .map(|t| {
            t.roles
                .iter()
                .map(|r| (r.name.clone(), r.min, r.taskservs.clone()))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn units(
    intent: &Intent,
    catalog: &Catalog,
    notes: &mut Notes,
) -> Result<(Vec<Unit>, Vec<ClusterPlan>), DraftError> {
    let mut groups = intent.groups.clone();
    if let Some(first) = groups.first_mut() {
        let mut loose = intent.loose.clone();
        loose.retain(|s| !has(&first.services, &s.name));
        loose.append(&mut first.services);
        first.services = loose;
    }
    resolve_references(&mut groups);
    for g in &mut groups {
        if g.role.is_none() && g.kind != GroupKind::Cluster {
            g.role = Some(role_of_services(&g.services));
        }
    }
    let mut out = Builder {
        catalog,
        units: Vec::new(),
        clusters: Vec::new(),
        origin: 0,
    };
    let mut consumed = vec![false; groups.len()];
    out.kubernetes(&groups, intent, &mut consumed, notes);
    out.postgres(&groups, intent, &mut consumed, notes);
    let mut stacks = Vec::new();
    for (k, g) in groups.iter().enumerate() {
        if consumed[k] {
            continue;
        }
        if g.kind == GroupKind::Cluster
            && let Some(t) = template_of(g, catalog)
        {
            stacks.push((k, t));
            continue;
        }
        // `a cluster for the shop: ...` with no template and nothing to run: a heading.
        if g.kind == GroupKind::Cluster && g.services.is_empty() && groups.len() > 1 {
            continue;
        }
        out.origin = k;
        out.plain(g, notes);
    }
    for (k, template) in stacks {
        out.origin = k;
        out.stack(&groups[k], &template, notes);
    }
    out.order_by_text();
    if out.units.is_empty() {
        return Err(DraftError::NothingToProvision {
            excerpt: intent
                .groups
                .first()
                .map_or_else(String::new, |g| g.text.clone()),
        });
    }
    if let Some(u) = out.units.iter().find(|u| u.count > MAX_SERVERS_PER_GROUP) {
        return Err(DraftError::TooManyServers {
            text: format!("`{}`", u.text),
            requested: u64::from(u.count),
            max: MAX_SERVERS,
            per_group: MAX_SERVERS_PER_GROUP,
        });
    }
    let total: u64 = out.units.iter().map(|u| u64::from(u.count)).sum();
    if total > u64::from(MAX_SERVERS) {
        return Err(DraftError::TooManyServers {
            text: "the intent, all groups together,".to_owned(),
            requested: total,
            max: MAX_SERVERS,
            per_group: MAX_SERVERS_PER_GROUP,
        });
    }
    Ok((out.units, out.clusters))
}

/// "another one" and "mirror them" take what they refer to from the group before.
fn resolve_references(groups: &mut [Group]) {
    for k in 1..groups.len() {
        let prev = groups[k - 1].clone();
        let g = &mut groups[k];
        match g.kind {
            GroupKind::Pronoun if g.services.is_empty() && g.role.is_none() => {
                g.role = prev.role;
                g.services = prev.services;
                g.mods.inherit_size(&prev.mods);
            }
            GroupKind::Mirror => {
                g.kind = GroupKind::Servers;
                g.text = format!("{} (mirrored)", prev.text);
                g.role = prev.role;
                g.count = prev.count;
                g.pair = prev.pair;
                g.services = prev.services;
                g.ha = prev.ha;
                g.replicated = prev.replicated;
                g.mods.inherit_size(&prev.mods);
                if g.mods.providers.is_empty() {
                    g.mods.providers = prev.mods.providers;
                }
            }
            _ => {}
        }
    }
}

/// The role of a server described only by its taskservs.
fn role_of_services(services: &[Svc]) -> Role {
    services
        .iter()
        .map(|s| Role::of_taskserv(&s.name))
        .find(|r| *r != Role::Node)
        .unwrap_or(if services.is_empty() {
            Role::Server
        } else {
            Role::Node
        })
}

/// Which template a "cluster", "stack" or "farm" phrase names.
fn template_of(g: &Group, catalog: &Catalog) -> Option<String> {
    let s = &g.services;
    let role = g.role;
    // Taskservs of different kinds ("a dev stack: nginx, redis and postgres") name no template.
    let kinds: Vec<Role> = s
        .iter()
        .map(|x| Role::of_taskserv(&x.name))
        .filter(|r| *r != Role::Node)
        .collect();
    if role.is_none() && kinds.iter().any(|k| *k != kinds[0]) {
        return None;
    }
    let t = if has(s, "kubernetes") {
        "k8s-ha"
    } else if has(s, "postgres") || matches!(role, Some(Role::Db | Role::Primary | Role::Replica)) {
        "postgresql"
    } else if has(s, "redis") || role == Some(Role::Cache) {
        "cache"
    } else if role == Some(Role::Monitoring)
        || s.iter()
            .any(|x| matches!(x.name.as_str(), "prometheus" | "grafana" | "loki"))
    {
        "observability"
    } else if role == Some(Role::Builder) || has(s, "buildkit") {
        "build"
    } else if role == Some(Role::Git) || has(s, "gitea") {
        "git"
    } else if role == Some(Role::Registry) || has(s, "registry") {
        "registry"
    } else if matches!(role, Some(Role::Web | Role::App)) {
        "web"
    } else {
        return None;
    };
    catalog.template(t).map(|_| t.to_owned())
}

fn count_of(g: &Group, notes: &mut Notes) -> u32 {
    match g.count {
        Some((_, CountHow::Article)) | None if g.pair => 2,
        Some((n, how)) => {
            if how == CountHow::Vague {
                notes.assume(
                    "count",
                    &n.to_string(),
                    format!("`{}` names no number; took {n}", g.text),
                );
            }
            n
        }
        None => 1,
    }
}

struct Builder<'a> {
    catalog: &'a Catalog,
    units: Vec<Unit>,
    clusters: Vec<ClusterPlan>,
    /// The group the units being made come from.
    origin: usize,
}

impl Builder<'_> {
    /// Puts the units in the order their groups appear in the text.
    fn order_by_text(&mut self) {
        let mut order: Vec<usize> = (0..self.units.len()).collect();
        order.sort_by_key(|&k| self.units[k].origin);
        let mut new_index = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        let units = std::mem::take(&mut self.units);
        let mut slots: Vec<Option<Unit>> = units.into_iter().map(Some).collect();
        self.units = order.iter().filter_map(|&k| slots[k].take()).collect();
        for c in &mut self.clusters {
            for k in &mut c.units {
                *k = new_index[*k];
            }
        }
    }

    fn push(&mut self, unit: Unit) -> Option<usize> {
        if unit.count == 0 {
            return None;
        }
        self.units.push(unit);
        Some(self.units.len() - 1)
    }

    /// A group that is just servers: its taskservs, or its role's defaults.
    fn plain(&mut self, g: &Group, notes: &mut Notes) {
        let role = match g.role {
            Some(Role::Primary | Role::Replica) => Role::Db,
            Some(r) => r,
            None => role_of_services(&g.services),
        };
        let mut services = g.services.clone();
        if services.is_empty() && !role.default_taskservs().is_empty() {
            services = role.default_taskservs().iter().map(|s| svc(s)).collect();
            notes.assume(
                &format!("{}.taskservs", role.prefix()),
                &services
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                format!("`{}` names no software; the usual one for the role", g.text),
            );
        }
        let count = count_of(g, notes);
        if count == 0 {
            notes.warn(format!("`{}` asks for no servers; left out", g.text));
        }
        self.push(Unit {
            role,
            count,
            services,
            mods: g.mods.clone(),
            names: None,
            text: g.text.clone(),
            origin: self.origin,
        });
    }

    /// Control planes and workers, or a k8s cluster phrase, become a `k8s-ha` cluster.
    fn kubernetes(
        &mut self,
        groups: &[Group],
        intent: &Intent,
        consumed: &mut [bool],
        notes: &mut Notes,
    ) {
        let mentions = groups.iter().any(|g| has(&g.services, "kubernetes"));
        let is_cp = |g: &Group| g.role == Some(Role::ControlPlane);
        let is_worker = |g: &Group| g.role == Some(Role::Worker) && mentions;
        let is_cluster = |g: &Group| g.kind == GroupKind::Cluster && has(&g.services, "kubernetes");
        let ha = mentions
            && (intent.ha
                || groups
                    .iter()
                    .any(|g| g.ha && has(&g.services, "kubernetes")));
        if !(groups
            .iter()
            .any(|g| is_cp(g) || is_worker(g) || is_cluster(g))
            || ha)
        {
            return;
        }
        let k8s_only = |g: &Group| {
            has(&g.services, "kubernetes")
                && matches!(g.role, None | Some(Role::Node | Role::Server))
        };
        let mut cluster_mods = Mods::default();
        let mut cluster_count = None;
        let mut named: Vec<Svc> = Vec::new();
        let (mut cps, mut workers): (Vec<&Group>, Vec<&Group>) = (Vec::new(), Vec::new());
        for (k, g) in groups.iter().enumerate() {
            let part = is_cp(g) || is_worker(g) || is_cluster(g) || k8s_only(g);
            if !part {
                continue;
            }
            if !consumed.iter().take(k).any(|c| *c) {
                self.origin = k;
            }
            consumed[k] = true;
            named.extend(g.services.iter().cloned());
            if is_cp(g) {
                cps.push(g);
            } else if is_worker(g) {
                workers.push(g);
            } else {
                inherit_place(&mut cluster_mods, &g.mods);
                cluster_mods.inherit_size(&g.mods);
                if cluster_count.is_none() {
                    cluster_count = g.count.filter(|c| c.1 != CountHow::Article).map(|c| c.0);
                }
            }
        }
        let cni = named
            .iter()
            .find(|s| CNIS.contains(&s.name.as_str()))
            .map_or("cilium", |s| s.name.as_str())
            .to_owned();
        let version = |name: &str| {
            named
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.version.clone())
        };
        let extras: Vec<Svc> = named
            .iter()
            .filter(|s| !K8S_PARTS.contains(&s.name.as_str()))
            .cloned()
            .collect();
        let roles = template_roles(self.catalog, "k8s-ha");
        let role_services = |name: &str, fallback: &[&str]| -> Vec<Svc> {
            let list: Vec<String> = roles.iter().find(|r| r.0 == name).map_or_else(
                || fallback.iter().map(|s| (*s).to_owned()).collect(),
                |r| r.2.clone(),
            );
            list.iter()
                .map(|n| {
                    if n == "cilium" {
                        cni.clone()
                    } else {
                        n.clone()
                    }
                })
                .map(|n| Svc {
                    version: version(&n),
                    name: n,
                    stand_in: None,
                })
                .collect()
        };
        let min_cp = roles
            .iter()
            .find(|r| r.0 == "control-plane")
            .map_or(3, |r| r.1);
        let mut cp_count: u32 = cps.iter().map(|g| count_of(g, notes)).sum();
        let mut worker_count: u32 = workers.iter().map(|g| count_of(g, notes)).sum();
        if cps.is_empty() {
            cp_count = min_cp;
            match cluster_count {
                Some(n) if n >= min_cp => {
                    if workers.is_empty() {
                        worker_count = n - min_cp;
                    }
                    notes.assume(
                        "k8s-ha",
                        &format!("{min_cp} control planes, {worker_count} workers"),
                        format!("{n} nodes; the `k8s-ha` template runs {min_cp} control planes, the rest work"),
                    );
                }
                Some(n) => notes.warn(format!(
                    "asked for {n} Kubernetes nodes; the `k8s-ha` template needs {min_cp} control planes, so the draft has {min_cp}"
                )),
                None => notes.assume(
                    "k8s-ha",
                    &format!("{min_cp} control planes"),
                    "no number of control planes given; the `k8s-ha` template's minimum",
                ),
            }
        } else if cp_count < min_cp {
            notes.warn(format!(
                "`k8s-ha` is built for {min_cp} control planes; the draft keeps the {cp_count} asked for"
            ));
        }
        if cp_count + worker_count < min_cp {
            cp_count = min_cp - worker_count;
        }
        let mut cp_mods = cps.first().map(|g| g.mods.clone()).unwrap_or_default();
        inherit_place(&mut cp_mods, &cluster_mods);
        cp_mods.inherit_size(&cluster_mods);
        let mut cp_services = role_services(
            "control-plane",
            &["containerd", "etcd", "kubernetes", "cilium", "coredns"],
        );
        for e in &extras {
            if !has(&cp_services, &e.name) {
                cp_services.push(e.clone());
            }
        }
        let mut members = Vec::new();
        members.extend(self.push(Unit {
            role: Role::ControlPlane,
            count: cp_count,
            services: cp_services,
            mods: cp_mods,
            names: None,
            text: cps.first().map_or_else(
                || "kubernetes control planes".to_owned(),
                |g| g.text.clone(),
            ),
            origin: self.origin,
        }));
        let mut w_mods = workers.first().map(|g| g.mods.clone()).unwrap_or_default();
        inherit_place(&mut w_mods, &cluster_mods);
        let w_services = role_services("worker", &["containerd", "kubernetes"]);
        members.extend(
            self.push(Unit {
                role: Role::Worker,
                count: worker_count,
                services: w_services,
                mods: w_mods,
                names: None,
                text: workers
                    .first()
                    .map_or_else(|| "kubernetes workers".to_owned(), |g| g.text.clone()),
                origin: self.origin,
            }),
        );
        if self.catalog.template("k8s-ha").is_some() {
            self.clusters.push(ClusterPlan {
                template: "k8s-ha".to_owned(),
                units: members,
            });
        }
    }

    /// A replicated postgres (or a primary with replicas) becomes a `postgresql` cluster.
    fn postgres(
        &mut self,
        groups: &[Group],
        intent: &Intent,
        consumed: &mut [bool],
        notes: &mut Notes,
    ) {
        let is_pg = |g: &Group| {
            let role_ok = matches!(g.role, Some(Role::Db | Role::Primary | Role::Replica));
            let svc_ok = has(&g.services, "postgres") || (g.services.is_empty() && role_ok);
            svc_ok && (role_ok || matches!(g.role, None | Some(Role::Node | Role::Server)))
        };
        let replicas: Vec<usize> = (0..groups.len())
            .filter(|&k| !consumed[k] && groups[k].role == Some(Role::Replica) && is_pg(&groups[k]))
            .collect();
        if let Some(&first_replica) = replicas.first() {
            // The primary: a group called primary, else the postgres group before the replicas.
            let primary = (0..groups.len())
                .find(|&k| !consumed[k] && groups[k].role == Some(Role::Primary))
                .or_else(|| {
                    (0..first_replica).rev().find(|&k| {
                        !consumed[k] && is_pg(&groups[k]) && groups[k].kind != GroupKind::Cluster
                    })
                });
            let mut base = match primary {
                Some(p) => groups[p].clone(),
                None => {
                    let r = &groups[first_replica];
                    notes.assume(
                        "db-primary",
                        "1 server",
                        format!("`{}` replicates a primary the text does not name", r.text),
                    );
                    r.clone()
                }
            };
            if let Some(p) = primary {
                consumed[p] = true;
            }
            self.origin = primary.map_or(first_replica, |p| p.min(first_replica));
            let mut replica_count = 0;
            let mut replica_mods = groups[first_replica].mods.clone();
            for &r in &replicas {
                consumed[r] = true;
                replica_count += count_of(&groups[r], notes);
                if base.services.is_empty() {
                    base.services = groups[r].services.clone();
                }
            }
            base.mods.inherit_size(&replica_mods);
            inherit_place(&mut base.mods, &replica_mods);
            replica_mods.inherit_size(&base.mods);
            inherit_place(&mut replica_mods, &base.mods);
            self.pg_cluster(&base, 1, replica_count, base.mods.clone(), replica_mods);
            return;
        }
        for (k, g) in groups.iter().enumerate() {
            if consumed[k] || !is_pg(g) {
                continue;
            }
            let cluster_phrase = g.kind == GroupKind::Cluster
                && template_of(g, self.catalog).as_deref() == Some("postgresql");
            let replicated =
                g.replicated || g.ha || intent.replicated || intent.ha || cluster_phrase;
            if !replicated {
                continue;
            }
            consumed[k] = true;
            self.origin = k;
            let n = count_of(g, notes);
            let replica_count = n.saturating_sub(1).max(1);
            if n < 2 {
                notes.assume(
                    "db-replica",
                    "1 server",
                    format!(
                        "`{}` is replicated: one primary and one streaming replica",
                        g.text
                    ),
                );
            }
            self.pg_cluster(g, 1, replica_count, g.mods.clone(), g.mods.clone());
        }
    }

    fn pg_cluster(&mut self, base: &Group, primaries: u32, replicas: u32, pm: Mods, rm: Mods) {
        let mut services = base.services.clone();
        if !has(&services, "postgres") {
            services.insert(0, svc("postgres"));
        }
        let replica_names = if replicas == 1 {
            vec!["db-replica".to_owned()]
        } else {
            (1..=replicas).map(|i| format!("db-replica-{i}")).collect()
        };
        let mut members = Vec::new();
        members.extend(self.push(Unit {
            role: Role::Primary,
            count: primaries,
            services: services.clone(),
            mods: pm,
            names: Some(vec!["db-primary".to_owned()]),
            text: base.text.clone(),
            origin: self.origin,
        }));
        members.extend(self.push(Unit {
            role: Role::Replica,
            count: replicas,
            services,
            mods: rm,
            names: Some(replica_names),
            text: base.text.clone(),
            origin: self.origin,
        }));
        if self.catalog.template("postgresql").is_some() {
            self.clusters.push(ClusterPlan {
                template: "postgresql".to_owned(),
                units: members,
            });
        }
    }

    /// "a web stack", "a build farm", "a 3-node redis cluster": members named elsewhere in the
    /// text, or servers made from the template.
    fn stack(&mut self, g: &Group, template: &str, notes: &mut Notes) {
        // `database cluster: postgres primary + 2 replicas`: the phrase names a cluster the
        // text already describes.
        if let Some(c) = self.clusters.iter().find(|c| c.template == template) {
            for &k in &c.units {
                inherit_place(&mut self.units[k].mods, &g.mods);
                self.units[k].mods.inherit_size(&g.mods);
            }
            return;
        }
        let member = |u: &Unit| -> bool {
            let s = &u.services;
            match template {
                "web" => matches!(u.role, Role::Web | Role::App | Role::Db | Role::Primary),
                "build" => u.role == Role::Builder || has(s, "buildkit"),
                "cache" => has(s, "redis"),
                "observability" => u.role == Role::Monitoring,
                "git" => has(s, "gitea"),
                "registry" => has(s, "registry"),
                "postgresql" => has(s, "postgres"),
                _ => false,
            }
        };
        let in_other_cluster = |k: usize, clusters: &[ClusterPlan]| {
            clusters
                .iter()
                .any(|c| c.units.contains(&k) && c.template != "postgresql")
        };
        let members: Vec<usize> = (0..self.units.len())
            .filter(|&k| member(&self.units[k]) && !in_other_cluster(k, &self.clusters))
            .filter(|&k| !(template == "web" && self.units[k].role == Role::Replica))
            .collect();
        if !members.is_empty() {
            for &k in &members {
                inherit_place(&mut self.units[k].mods, &g.mods);
                self.units[k].mods.inherit_size(&g.mods);
            }
            self.clusters.push(ClusterPlan {
                template: template.to_owned(),
                units: members,
            });
            return;
        }
        let roles = template_roles(self.catalog, template);
        let mut made = Vec::new();
        let asked = g.count.map(|c| c.0);
        for (i, (name, min, taskservs)) in roles.iter().enumerate() {
            let mut services: Vec<Svc> = taskservs.iter().map(|t| svc(t)).collect();
            for s in &g.services {
                if !has(&services, &s.name) && i == 0 {
                    services.push(s.clone());
                }
                if let Some(x) = services.iter_mut().find(|x| x.name == s.name) {
                    x.version.clone_from(&s.version);
                }
            }
            let count = match (i, asked) {
                (0, Some(n)) => n,
                (0, None) if template == "cache" => {
                    notes.assume(
                        "cache",
                        "3 servers",
                        format!("`{}` gives no size; three nodes", g.text),
                    );
                    3
                }
                _ => (*min).max(1),
            };
            let role = services
                .first()
                .map_or(Role::Server, |s| Role::of_taskserv(&s.name));
            let role = if template == "web" && name == "frontend" {
                Role::Web
            } else {
                role
            };
            made.extend(self.push(Unit {
                role,
                count,
                services,
                mods: g.mods.clone(),
                names: None,
                text: g.text.clone(),
                origin: self.origin,
            }));
        }
        notes.assume(
            &format!("{template}.servers"),
            &roles
                .iter()
                .map(|r| r.0.clone())
                .collect::<Vec<_>>()
                .join(", "),
            format!(
                "`{}` names the `{template}` template and no servers; one group per role ({})",
                g.text,
                quote_list(&roles.iter().map(|r| r.0.as_str()).collect::<Vec<_>>())
            ),
        );
        self.clusters.push(ClusterPlan {
            template: template.to_owned(),
            units: made,
        });
    }
}
