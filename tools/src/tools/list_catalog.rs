//! `list_catalog`: providers with plans and zones, taskservs, cluster templates.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ProvisioningServer;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListCatalogInput {
    /// What to list: `providers` (default), `taskservs` or `templates`.
    #[serde(default)]
    pub what: Option<String>,
    /// Only this provider (for `providers`): its plans with cores, memory and price, and zones.
    #[serde(default)]
    pub provider: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListCatalogOutput {
    /// `providers`, `taskservs` or `templates`.
    pub what: String,
    /// The entries by name, as in the catalog files.
    #[schemars(schema_with = "super::shape::object")]
    pub items: serde_json::Value,
}

#[tool_router(router = catalog_router, vis = "pub(crate)")]
impl ProvisioningServer {
    /// List what can be provisioned: providers (plans with cores, memory, disk and monthly
    /// price; zones with city and country), taskservs (versions, requirements) and cluster
    /// templates (roles, minimum size).
    #[tool(annotations(
        read_only_hint = true,
        idempotent_hint = true,
        destructive_hint = false,
        open_world_hint = false
    ))]
    async fn list_catalog(
        &self,
        Parameters(input): Parameters<ListCatalogInput>,
    ) -> Result<Json<ListCatalogOutput>, String> {
        let catalog = knowledge::Catalog::embedded().map_err(|e| e.to_string())?;
        let what = input.what.as_deref().unwrap_or("providers");
        let items = match what {
            "providers" => match &input.provider {
                Some(name) => {
                    let provider = catalog.provider(name).ok_or_else(|| {
                        format!(
                            "unknown provider `{name}`; known: {}",
                            catalog
                                .providers
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                    serde_json::json!({ name.clone(): provider })
                }
                None => serde_json::to_value(&catalog.providers).map_err(|e| e.to_string())?,
            },
            "taskservs" => serde_json::to_value(&catalog.taskservs).map_err(|e| e.to_string())?,
            "templates" => serde_json::to_value(&catalog.templates).map_err(|e| e.to_string())?,
            other => {
                return Err(format!(
                    "`what` = `{other}`: expected providers, taskservs or templates"
                ));
            }
        };
        Ok(Json(ListCatalogOutput {
            what: what.into(),
            items,
        }))
    }
}
