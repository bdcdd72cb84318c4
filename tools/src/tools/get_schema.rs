//! `get_schema`: the Nickel contract source of the config language.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ProvisioningServer;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetSchemaInput {
    /// Schema name, e.g. `config` (the entry point), `server`, `cluster`, `workflow`. Omit to
    /// list them.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GetSchemaOutput {
    /// Every schema name.
    pub names: Vec<String>,
    /// The requested schema.
    pub name: Option<String>,
    /// Its Nickel source, with comments explaining each field.
    pub source: Option<String>,
}

#[tool_router(router = schema_router, vis = "pub(crate)")]
impl ProvisioningServer {
    /// Read the Nickel contracts a config must satisfy (start with `config`). Each field is
    /// commented with what it means and what values are accepted.
    #[tool(annotations(
        read_only_hint = true,
        idempotent_hint = true,
        destructive_hint = false,
        open_world_hint = false
    ))]
    async fn get_schema(
        &self,
        Parameters(input): Parameters<GetSchemaInput>,
    ) -> Result<Json<GetSchemaOutput>, String> {
        let names: Vec<String> = knowledge::schema_names()
            .into_iter()
            .map(String::from)
            .collect();
        let Some(name) = input.name else {
            return Ok(Json(GetSchemaOutput {
                names,
                name: None,
                source: None,
            }));
        };
        match knowledge::schema(&name) {
            Some(s) => Ok(Json(GetSchemaOutput {
                names,
                name: Some(name),
                source: Some(s.source.to_string()),
            })),
            None => {
                let hint = service::model::did_you_mean(&name, names.iter().map(String::as_str))
                    .map(|m| format!(" Did you mean `{m}`?"))
                    .unwrap_or_default();
                Err(format!(
                    "unknown schema `{name}`.{hint} Known: {}",
                    names.join(", ")
                ))
            }
        }
    }
}
