//! `validate_config`: check Nickel config text against the contracts and catalogs.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::value;
use crate::ProvisioningServer;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigInput {
    /// The config as Nickel source (a plain record; it may not `import` anything).
    pub config: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ValidateOutput {
    pub valid: bool,
    /// Each with severity, code, message, field path, span, expected values and a suggestion.
    #[schemars(schema_with = "super::shape::objects")]
    pub diagnostics: serde_json::Value,
    /// The checked config with defaults filled in, when valid.
    #[schemars(schema_with = "super::shape::object_or_null")]
    pub config: Option<serde_json::Value>,
}

#[tool_router(router = validate_router, vis = "pub(crate)")]
impl ProvisioningServer {
    /// Validate a Nickel config. Returns structured diagnostics (field path, line and column,
    /// what would be accepted, a suggested fix) to repair it, or the checked config.
    #[tool(annotations(
        read_only_hint = true,
        idempotent_hint = true,
        destructive_hint = false,
        open_world_hint = false
    ))]
    async fn validate_config(
        &self,
        Parameters(input): Parameters<ConfigInput>,
    ) -> Result<Json<ValidateOutput>, String> {
        let v = self.app.validate(input.config).await?;
        Ok(Json(ValidateOutput {
            valid: v.is_valid(),
            diagnostics: value(&v.diagnostics),
            config: if v.is_valid() { v.value.clone() } else { None },
        }))
    }
}
