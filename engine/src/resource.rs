//! What the engine provisions and records, with no behaviour: resource kinds, a recorded
//! resource and its relations to others. A leaf module: the planner and the state store both
//! build on it, and it on neither (so they do not use each other in a circle).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Server,
    Taskserv,
    Cluster,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Server => "server",
            ResourceKind::Taskserv => "taskserv",
            ResourceKind::Cluster => "cluster",
        }
    }
}

/// A resource the engine created and still holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// `server/web-1`, `taskserv/web-1/nginx`, `cluster/k8s`.
    pub key: String,
    pub workspace: String,
    pub kind: ResourceKind,
    pub name: String,
    pub provider: String,
    pub provider_id: String,
    /// The desired spec it was last applied with (the plan's `ResourceSpec`, as JSON).
    pub spec: Value,
    /// What the provider reported when it was last created, updated or refreshed.
    #[serde(default)]
    pub observed: BTreeMap<String, Value>,
    /// For taskservs: the server key it runs on. For servers: the clusters it belongs to.
    #[serde(default)]
    pub edges: Vec<Edge>,
    pub updated_at: u64,
}

/// A relation from a resource to another of its workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub relation: Relation,
    /// The other resource's key.
    pub to: String,
}

/// How two resources relate (stored by these names; the SurrealDB store also keeps them as
/// graph edges, `runs_on` and `member_of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// A taskserv runs on a server (`to`: the server's key).
    RunsOn,
    /// A cluster has this server as a member (`to`: the server's key).
    Member,
}
