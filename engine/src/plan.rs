//! The planner: a validated config, the recorded state and the provider catalogs in; a
//! [`Plan`] out: one action per resource with its dependencies, a readable diff, the blast
//! radius, the monthly cost before and after, and a SHA-256 hash over all of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Config, Environment, Workflow};
use crate::provider::{ServerSpec, TaskservSpec};
use crate::resource::Resource;

mod render;

pub use crate::resource::ResourceKind;
pub use policies::canonical::canonical_json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Create,
    Update,
    Replace,
    Delete,
    NoOp,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Create => "create",
            ActionKind::Update => "update",
            ActionKind::Replace => "replace",
            ActionKind::Delete => "delete",
            ActionKind::NoOp => "no-op",
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            ActionKind::Create => "+",
            ActionKind::Update => "~",
            ActionKind::Replace => "-/+",
            ActionKind::Delete => "-",
            ActionKind::NoOp => "=",
        }
    }
}

/// A cluster: a named group of servers following a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSpec {
    pub workspace: String,
    pub name: String,
    pub template: String,
    pub servers: Vec<String>,
    #[serde(default)]
    pub settings: serde_json::Map<String, Value>,
}

/// What a resource should be, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResourceSpec {
    Server(ServerSpec),
    Taskserv {
        #[serde(flatten)]
        spec: TaskservSpec,
        /// Resource keys of the taskservs it depends on.
        #[serde(default)]
        depends_on: Vec<String>,
    },
    Cluster(ClusterSpec),
}

impl ResourceSpec {
    pub fn kind(&self) -> ResourceKind {
        match self {
            ResourceSpec::Server(_) => ResourceKind::Server,
            ResourceSpec::Taskserv { .. } => ResourceKind::Taskserv,
            ResourceSpec::Cluster(_) => ResourceKind::Cluster,
        }
    }

    pub fn key(&self) -> String {
        match self {
            ResourceSpec::Server(s) => server_key(&s.name),
            ResourceSpec::Taskserv { spec, .. } => taskserv_key(&spec.server, &spec.name),
            ResourceSpec::Cluster(c) => cluster_key(&c.name),
        }
    }

    pub fn name(&self) -> String {
        match self {
            ResourceSpec::Server(s) => s.name.clone(),
            ResourceSpec::Taskserv { spec, .. } => format!("{}/{}", spec.server, spec.name),
            ResourceSpec::Cluster(c) => c.name.clone(),
        }
    }
}

pub fn server_key(name: &str) -> String {
    format!("server/{name}")
}

pub fn taskserv_key(server: &str, name: &str) -> String {
    format!("taskserv/{server}/{name}")
}

pub fn cluster_key(name: &str) -> String {
    format!("cluster/{name}")
}

/// One field that differs between the recorded and the desired resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub index: usize,
    pub key: String,
    pub kind: ResourceKind,
    pub action: ActionKind,
    /// The provider that carries it out (clusters: the provider of their first server).
    pub provider: String,
    pub before: Option<ResourceSpec>,
    pub after: Option<ResourceSpec>,
    pub changes: Vec<Change>,
    /// Indices of the actions that must finish first.
    pub depends_on: Vec<usize>,
    /// Why this action: "not in recorded state", "zone changed", ...
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub unchanged: usize,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BlastRadius {
    pub deletes: Vec<String>,
    pub replacements: Vec<String>,
    pub prod: bool,
    /// Resources of a prod workspace this plan changes.
    pub prod_resources_touched: usize,
    pub zones: Vec<String>,
    pub providers: Vec<String>,
}

/// Monthly cost in one currency, from catalog prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub currency: String,
    pub before: f64,
    pub after: f64,
    pub delta: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    /// SHA-256 over the canonical JSON of everything below except `id` and `created_at`.
    pub hash: String,
    pub workspace: String,
    pub environment: Environment,
    pub owner: Option<String>,
    /// What the plan is for: `apply` (reach the config) or `destroy` (remove everything).
    /// Policies treat the two differently, so it is part of the hash.
    #[serde(default)]
    pub intent: Intent,
    /// The state version this plan was made against; applying it later is refused as stale.
    pub state_version: u64,
    pub created_at: u64,
    pub actions: Vec<Action>,
    pub summary: Summary,
    pub blast_radius: BlastRadius,
    pub cost: Vec<Cost>,
    pub settings: Workflow,
    pub warnings: Vec<String>,
}

/// Why a plan was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    #[default]
    Apply,
    Destroy,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Apply => "apply",
            Intent::Destroy => "destroy",
        }
    }
}

impl Plan {
    /// Recomputes the hash and the id after a change.
    pub fn rehash(&mut self) {
        self.hash = plan_hash(self);
        self.id = format!("plan-{}", &self.hash[..12]);
    }

    /// True when applying would change nothing.
    pub fn is_noop(&self) -> bool {
        self.actions.iter().all(|a| a.action == ActionKind::NoOp)
    }

    pub fn changes(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| a.action != ActionKind::NoOp)
    }
}

/// The hash a plan must carry: approvals name it, and apply checks it.
pub fn plan_hash(plan: &Plan) -> String {
    let mut value = serde_json::to_value(plan).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("id");
        map.remove("hash");
        map.remove("created_at");
    }
    policies::canonical::sha256_hex(&value)
}

/// The desired resources of a config, in a stable order: servers, their taskservs, clusters.
pub fn desired_resources(config: &Config) -> Vec<ResourceSpec> {
    let catalog = knowledge::Catalog::embedded().ok();
    let ws = &config.workspace.name;
    let mut out = Vec::new();
    for server in &config.servers {
        out.push(ResourceSpec::Server(ServerSpec {
            workspace: ws.clone(),
            name: server.name.clone(),
            provider: server.provider.clone(),
            plan: server.plan.clone(),
            zone: server.zone.clone(),
            labels: server.labels.clone(),
            host: server.host.clone(),
            image: server.image.clone(),
        }));
    }
    for server in &config.servers {
        for ts in &server.taskservs {
            let version = ts.version.clone().unwrap_or_else(|| {
                catalog
                    .and_then(|c| c.taskserv(&ts.name))
                    .map(|t| t.default_version.clone())
                    .unwrap_or_else(|| "latest".into())
            });
            let mut depends_on: Vec<String> = ts
                .depends_on
                .iter()
                .map(|d| match d.split_once('/') {
                    Some((srv, name)) => taskserv_key(srv, name),
                    None => taskserv_key(&server.name, d),
                })
                .collect();
            // Catalog requirements met on the same server come first too.
            if let Some(entry) = catalog.and_then(|c| c.taskserv(&ts.name)) {
                for required in &entry.requires {
                    if server.taskservs.iter().any(|t| &t.name == required) {
                        depends_on.push(taskserv_key(&server.name, required));
                    }
                }
            }
            depends_on.sort();
            depends_on.dedup();
            out.push(ResourceSpec::Taskserv {
                spec: TaskservSpec {
                    workspace: ws.clone(),
                    server: server.name.clone(),
                    name: ts.name.clone(),
                    version,
                    config: ts.config.clone(),
                },
                depends_on,
            });
        }
    }
    for cluster in &config.clusters {
        out.push(ResourceSpec::Cluster(ClusterSpec {
            workspace: ws.clone(),
            name: cluster.name.clone(),
            template: cluster.template.clone(),
            servers: cluster.servers.clone(),
            settings: cluster.settings.clone(),
        }));
    }
    out
}

/// Compares two specs of one resource: the changed fields, and whether they force a replace.
fn diff(before: &ResourceSpec, after: &ResourceSpec) -> (Vec<Change>, bool) {
    let field = |name: &str, from: Value, to: Value| Change {
        field: name.to_string(),
        from,
        to,
    };
    let mut changes = Vec::new();
    let mut replace = false;
    match (before, after) {
        (ResourceSpec::Server(a), ResourceSpec::Server(b)) => {
            for (name, x, y, forces) in [
                ("provider", &a.provider, &b.provider, true),
                ("zone", &a.zone, &b.zone, true),
                ("plan", &a.plan, &b.plan, false),
            ] {
                if x != y {
                    changes.push(field(name, x.clone().into(), y.clone().into()));
                    replace |= forces;
                }
            }
            // A new image is a new machine. Named or by default, the same image is no change.
            let image = |s: &ServerSpec| {
                knowledge::Catalog::embedded()
                    .ok()
                    .and_then(|c| c.provider(&s.provider))
                    .and_then(|p| p.image_name(s.image.as_deref()).map(str::to_string))
                    .or_else(|| s.image.clone())
            };
            let (from, to) = (image(a), image(b));
            if a.provider == b.provider && from != to {
                changes.push(field(
                    "image",
                    serde_json::to_value(&from).unwrap_or_default(),
                    serde_json::to_value(&to).unwrap_or_default(),
                ));
                replace = true;
            }
            if a.labels != b.labels {
                changes.push(field(
                    "labels",
                    serde_json::to_value(&a.labels).unwrap_or_default(),
                    serde_json::to_value(&b.labels).unwrap_or_default(),
                ));
            }
        }
        (ResourceSpec::Taskserv { spec: a, .. }, ResourceSpec::Taskserv { spec: b, .. }) => {
            if a.version != b.version {
                changes.push(field(
                    "version",
                    a.version.clone().into(),
                    b.version.clone().into(),
                ));
            }
            if a.config != b.config {
                changes.push(field(
                    "config",
                    Value::Object(a.config.clone()),
                    Value::Object(b.config.clone()),
                ));
            }
        }
        (ResourceSpec::Cluster(a), ResourceSpec::Cluster(b)) => {
            if a.template != b.template {
                changes.push(field(
                    "template",
                    a.template.clone().into(),
                    b.template.clone().into(),
                ));
                replace = true;
            }
            if a.servers != b.servers {
                changes.push(field(
                    "servers",
                    serde_json::to_value(&a.servers).unwrap_or_default(),
                    serde_json::to_value(&b.servers).unwrap_or_default(),
                ));
            }
            if a.settings != b.settings {
                changes.push(field(
                    "settings",
                    Value::Object(a.settings.clone()),
                    Value::Object(b.settings.clone()),
                ));
            }
        }
        _ => {
            changes.push(field(
                "kind",
                before.kind().as_str().into(),
                after.kind().as_str().into(),
            ));
            replace = true;
        }
    }
    (changes, replace)
}

fn provider_of(spec: &ResourceSpec, servers: &BTreeMap<String, String>) -> String {
    match spec {
        ResourceSpec::Server(s) => s.provider.clone(),
        ResourceSpec::Taskserv { spec, .. } => servers
            .get(&spec.server)
            .cloned()
            .unwrap_or_else(|| "unknown".into()),
        ResourceSpec::Cluster(c) => c
            .servers
            .first()
            .and_then(|s| servers.get(s))
            .cloned()
            .unwrap_or_else(|| "unknown".into()),
    }
}

/// Monthly price of a server from the catalog, with its currency.
fn server_price(spec: &ServerSpec) -> Option<(String, f64)> {
    let catalog = knowledge::Catalog::embedded().ok()?;
    let provider = catalog.provider(&spec.provider)?;
    let plan = provider.plans.get(&spec.plan)?;
    Some((provider.currency.clone(), plan.price_in(&spec.zone)))
}

/// Builds the plan. `recorded` is the workspace's state at `state_version`.
pub fn make_plan(config: &Config, recorded: &[Resource], state_version: u64, now: u64) -> Plan {
    let desired = desired_resources(config);
    let recorded_specs: BTreeMap<String, ResourceSpec> = recorded
        .iter()
        .filter_map(|r| {
            serde_json::from_value::<ResourceSpec>(r.spec.clone())
                .ok()
                .map(|s| (r.key.clone(), s))
        })
        .collect();
    let mut warnings = Vec::new();
    for r in recorded {
        if !recorded_specs.contains_key(&r.key) {
            warnings.push(format!(
                "recorded resource {} has a spec this version cannot read; it is left alone",
                r.key
            ));
        }
    }

    // Which provider each server uses, desired first, then recorded.
    let mut server_provider: BTreeMap<String, String> = BTreeMap::new();
    for spec in recorded_specs.values().chain(desired.iter()) {
        if let ResourceSpec::Server(s) = spec {
            server_provider.insert(s.name.clone(), s.provider.clone());
        }
    }

    let mut actions: Vec<Action> = Vec::new();
    let mut replaced_servers: BTreeSet<String> = BTreeSet::new();
    for spec in &desired {
        let key = spec.key();
        let provider = provider_of(spec, &server_provider);
        let (action, changes, reason, before) = match recorded_specs.get(&key) {
            None => (
                ActionKind::Create,
                Vec::new(),
                "not in recorded state".to_string(),
                None,
            ),
            Some(before) => {
                let (changes, replace) = diff(before, spec);
                let forced = matches!(spec, ResourceSpec::Taskserv { spec: t, .. } if replaced_servers.contains(&t.server));
                let action = if replace || forced {
                    ActionKind::Replace
                } else if !changes.is_empty() {
                    ActionKind::Update
                } else {
                    ActionKind::NoOp
                };
                let reason = if forced && !replace {
                    "its server is replaced".to_string()
                } else if changes.is_empty() {
                    "unchanged".to_string()
                } else {
                    let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
                    format!("{} changed", fields.join(", "))
                };
                (action, changes, reason, Some(before.clone()))
            }
        };
        if action == ActionKind::Replace
            && let ResourceSpec::Server(s) = spec
        {
            replaced_servers.insert(s.name.clone());
        }
        actions.push(Action {
            index: actions.len(),
            key,
            kind: spec.kind(),
            action,
            provider,
            before,
            after: Some(spec.clone()),
            changes,
            depends_on: Vec::new(),
            reason,
        });
    }
    let desired_keys: BTreeSet<String> = desired.iter().map(ResourceSpec::key).collect();
    // Deletes: clusters, then taskservs, then servers, so the reverse order reads naturally.
    let mut doomed: Vec<&ResourceSpec> = recorded_specs
        .iter()
        .filter(|(k, _)| !desired_keys.contains(*k))
        .map(|(_, s)| s)
        .collect();
    doomed.sort_by_key(|s| match s.kind() {
        ResourceKind::Cluster => 0,
        ResourceKind::Taskserv => 1,
        ResourceKind::Server => 2,
    });
    for spec in doomed {
        actions.push(Action {
            index: actions.len(),
            key: spec.key(),
            kind: spec.kind(),
            action: ActionKind::Delete,
            provider: provider_of(spec, &server_provider),
            before: Some(spec.clone()),
            after: None,
            changes: Vec::new(),
            depends_on: Vec::new(),
            reason: "not in the config any more".into(),
        });
    }

    wire_dependencies(&mut actions);

    let mut summary = Summary::default();
    for a in &actions {
        match a.action {
            ActionKind::Create => summary.create += 1,
            ActionKind::Update => summary.update += 1,
            ActionKind::Replace => summary.replace += 1,
            ActionKind::Delete => summary.delete += 1,
            ActionKind::NoOp => summary.unchanged += 1,
        }
    }
    let prod = config.workspace.environment == Environment::Prod;
    let mut zones = BTreeSet::new();
    let mut providers = BTreeSet::new();
    for a in actions.iter().filter(|a| a.action != ActionKind::NoOp) {
        providers.insert(a.provider.clone());
        for spec in [&a.before, &a.after].into_iter().flatten() {
            if let ResourceSpec::Server(s) = spec {
                zones.insert(s.zone.clone());
            }
        }
    }
    let blast_radius = BlastRadius {
        deletes: actions
            .iter()
            .filter(|a| a.action == ActionKind::Delete)
            .map(|a| a.key.clone())
            .collect(),
        replacements: actions
            .iter()
            .filter(|a| a.action == ActionKind::Replace)
            .map(|a| a.key.clone())
            .collect(),
        prod,
        prod_resources_touched: if prod {
            actions
                .iter()
                .filter(|a| a.action != ActionKind::NoOp)
                .count()
        } else {
            0
        },
        zones: zones.into_iter().collect(),
        providers: providers.into_iter().collect(),
    };

    let mut costs: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for spec in recorded_specs.values() {
        if let ResourceSpec::Server(s) = spec
            && let Some((currency, price)) = server_price(s)
        {
            costs.entry(currency).or_default().0 += price;
        }
    }
    for spec in &desired {
        if let ResourceSpec::Server(s) = spec
            && let Some((currency, price)) = server_price(s)
        {
            costs.entry(currency).or_default().1 += price;
        }
    }
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let cost = costs
        .into_iter()
        .map(|(currency, (before, after))| Cost {
            currency,
            before: round(before),
            after: round(after),
            delta: round(after - before),
        })
        .collect();

    let mut plan = Plan {
        id: String::new(),
        hash: String::new(),
        workspace: config.workspace.name.clone(),
        environment: config.workspace.environment,
        owner: config.workspace.owner.clone(),
        intent: Intent::Apply,
        state_version,
        created_at: now,
        actions,
        summary,
        blast_radius,
        cost,
        settings: config.workflow.clone(),
        warnings,
    };
    plan.rehash();
    plan
}

/// Dependencies between actions that change something. Creates and updates follow the
/// resource graph forwards (server, then its taskservs, then clusters); deletes follow it
/// backwards (clusters, then taskservs, then servers).
fn wire_dependencies(actions: &mut [Action]) {
    let index: BTreeMap<String, usize> = actions
        .iter()
        .filter(|a| a.action != ActionKind::NoOp)
        .map(|a| (a.key.clone(), a.index))
        .collect();
    let live = |key: &str| index.get(key).copied();
    let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); actions.len()];
    for a in actions.iter() {
        if a.action == ActionKind::NoOp {
            continue;
        }
        let spec = a.after.as_ref().or(a.before.as_ref());
        let Some(spec) = spec else { continue };
        if a.action == ActionKind::Delete {
            continue;
        }
        match spec {
            ResourceSpec::Server(_) => {}
            ResourceSpec::Taskserv { spec, depends_on } => {
                deps[a.index].extend(live(&server_key(&spec.server)));
                for dep in depends_on {
                    deps[a.index].extend(live(dep));
                }
            }
            ResourceSpec::Cluster(c) => {
                for server in &c.servers {
                    deps[a.index].extend(live(&server_key(server)));
                    let prefix = format!("taskserv/{server}/");
                    for (key, i) in &index {
                        if key.starts_with(&prefix) && actions[*i].action != ActionKind::Delete {
                            deps[a.index].insert(*i);
                        }
                    }
                }
            }
        }
    }
    // Deletes: a thing goes only after everything that sits on it or uses it has gone.
    for a in actions.iter().filter(|a| a.action == ActionKind::Delete) {
        let Some(spec) = &a.before else { continue };
        for other in actions.iter().filter(|o| o.action == ActionKind::Delete) {
            let Some(other_spec) = &other.before else {
                continue;
            };
            let uses = match (spec, other_spec) {
                (ResourceSpec::Server(s), ResourceSpec::Taskserv { spec: t, .. }) => {
                    t.server == s.name
                }
                (ResourceSpec::Server(s), ResourceSpec::Cluster(c)) => c.servers.contains(&s.name),
                (ResourceSpec::Taskserv { .. }, ResourceSpec::Taskserv { depends_on, .. }) => {
                    depends_on.contains(&a.key)
                }
                (ResourceSpec::Taskserv { spec: t, .. }, ResourceSpec::Cluster(c)) => {
                    c.servers.contains(&t.server)
                }
                _ => false,
            };
            if uses {
                deps[a.index].insert(other.index);
            }
        }
    }
    for (a, d) in actions.iter_mut().zip(deps) {
        a.depends_on = d.into_iter().filter(|i| *i != a.index).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(provider: &str, image: Option<&str>) -> ResourceSpec {
        ResourceSpec::Server(ServerSpec {
            workspace: "w".into(),
            name: "a".into(),
            provider: provider.into(),
            plan: "cx22".into(),
            zone: "hel1".into(),
            labels: BTreeMap::new(),
            host: None,
            image: image.map(str::to_string),
        })
    }

    #[test]
    fn a_new_image_replaces_the_server_and_the_default_by_name_changes_nothing() {
        let (changes, replace) = diff(
            &server("hetzner", None),
            &server("hetzner", Some("ubuntu-24.04")),
        );
        assert!(replace, "{changes:?}");
        assert_eq!(changes[0].field, "image");
        assert_eq!(changes[0].from, "debian-13");
        let (changes, replace) = diff(
            &server("hetzner", None),
            &server("hetzner", Some("debian-13")),
        );
        assert!(!replace && changes.is_empty(), "{changes:?}");
    }
}
