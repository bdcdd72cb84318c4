//! Recorded state, by workspace, and drift (what the providers say now against what is
//! recorded).

use std::collections::BTreeMap;

use engine::exec::DriftReport;
use engine::state::Resource;

use crate::{App, Error, Result};

/// Recorded resources of the workspaces asked for, and every workspace there is.
#[derive(Debug, Clone)]
pub struct StateView {
    /// Every workspace with recorded state or workflows.
    pub workspaces: Vec<String>,
    /// The resources of each workspace asked for (all of them when none was named).
    pub resources: BTreeMap<String, Vec<Resource>>,
}

impl App {
    /// `workspace`'s resources, or every workspace's; with `key` only that resource (which
    /// needs `workspace`), an error naming the key forms when it is not there.
    pub async fn state(&self, workspace: Option<&str>, key: Option<&str>) -> Result<StateView> {
        let store = &self.engine.store;
        let workspaces = store.workspaces().await?;
        let mut resources = BTreeMap::new();
        match (workspace, key) {
            (Some(ws), Some(key)) => match store.resource(ws, key).await? {
                Some(r) => {
                    resources.insert(ws.to_string(), vec![r]);
                }
                None => {
                    return Err(Error::new(
                        crate::ErrorKind::NotFound,
                        "not found",
                        format!(
                            "no resource `{key}` in workspace `{ws}` (keys look like server/NAME, taskserv/SERVER/NAME, cluster/NAME)"
                        ),
                    ));
                }
            },
            (None, Some(_)) => return Err(Error::bad("`key` needs `workspace`")),
            (Some(ws), None) => {
                resources.insert(ws.to_string(), store.resources(ws).await?);
            }
            (None, None) => {
                for ws in &workspaces {
                    resources.insert(ws.clone(), store.resources(ws).await?);
                }
            }
        }
        Ok(StateView {
            workspaces,
            resources,
        })
    }

    /// Every workspace with recorded state or workflows, by name.
    pub async fn workspaces(&self) -> Result<Vec<String>> {
        Ok(self.engine.store.workspaces().await?)
    }

    /// Asks the providers about `workspace`'s recorded resources.
    pub async fn drift(&self, workspace: &str) -> Result<DriftReport> {
        Ok(self.engine.drift(workspace).await?)
    }
}
