//! Drift: ask the providers about every recorded resource and report where reality differs.
//! Read-only: recorded state is not changed, so plans made before stay valid.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Engine, ExecError};
use crate::plan::ResourceSpec;
use crate::provider::Health;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// Recorded, but the provider has no such thing.
    Missing,
    /// Exists, but an attribute differs from what was applied.
    Changed,
    /// Exists, but fails its health check.
    Unhealthy,
    /// The provider could not be asked.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftItem {
    pub key: String,
    pub kind: DriftKind,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub workspace: String,
    pub checked: usize,
    pub items: Vec<DriftItem>,
}

impl Engine {
    pub async fn drift(&self, workspace: &str) -> Result<DriftReport, ExecError> {
        let recorded = self.store.resources(workspace).await?;
        let mut items = Vec::new();
        for resource in &recorded {
            let Ok(spec) = serde_json::from_value::<ResourceSpec>(resource.spec.clone()) else {
                items.push(DriftItem {
                    key: resource.key.clone(),
                    kind: DriftKind::Unknown,
                    detail: "recorded spec is unreadable".into(),
                });
                continue;
            };
            let provider = match self.providers.get(&resource.provider) {
                Ok(p) => p,
                Err(err) => {
                    items.push(DriftItem {
                        key: resource.key.clone(),
                        kind: DriftKind::Unknown,
                        detail: err.to_string(),
                    });
                    continue;
                }
            };
            match &spec {
                ResourceSpec::Server(server) => match provider.inspect_server(server).await {
                    Ok(None) => items.push(DriftItem {
                        key: resource.key.clone(),
                        kind: DriftKind::Missing,
                        detail: format!("{} has no server {}", server.provider, server.name),
                    }),
                    Ok(Some(observed)) => {
                        for field in ["plan", "zone"] {
                            let want = match field {
                                "plan" => &server.plan,
                                _ => &server.zone,
                            };
                            if let Some(Value::String(have)) = observed.attrs.get(field)
                                && have != want
                            {
                                items.push(DriftItem {
                                    key: resource.key.clone(),
                                    kind: DriftKind::Changed,
                                    detail: format!("{field} is {have}, recorded {want}"),
                                });
                            }
                        }
                    }
                    Err(err) => items.push(DriftItem {
                        key: resource.key.clone(),
                        kind: DriftKind::Unknown,
                        detail: err.to_string(),
                    }),
                },
                ResourceSpec::Taskserv { spec: ts, .. } => {
                    match provider.taskserv_health(ts).await {
                        Ok(Health::Healthy) => {}
                        Ok(Health::Missing) => items.push(DriftItem {
                            key: resource.key.clone(),
                            kind: DriftKind::Missing,
                            detail: format!("{} is not installed on {}", ts.name, ts.server),
                        }),
                        Ok(Health::Unhealthy(why)) => items.push(DriftItem {
                            key: resource.key.clone(),
                            kind: DriftKind::Unhealthy,
                            detail: why,
                        }),
                        Err(err) => items.push(DriftItem {
                            key: resource.key.clone(),
                            kind: DriftKind::Unknown,
                            detail: err.to_string(),
                        }),
                    }
                }
                ResourceSpec::Cluster(_) => {}
            }
        }
        Ok(DriftReport {
            workspace: workspace.to_string(),
            checked: recorded.len(),
            items,
        })
    }
}
