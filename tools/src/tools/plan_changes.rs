//! `plan_changes`: what applying a config would change; stores the plan.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Serialize;

use super::{app_fail, value};
use crate::ProvisioningServer;

#[derive(Debug, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    /// The config as Nickel source (a plain record; it may not `import` anything).
    pub config: String,
    /// Plan removing everything this config's workspace has recorded, instead of reaching the
    /// config (policy decides a destroy separately: it may wait for approvals).
    #[serde(default)]
    pub destroy: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PlanOutput {
    /// Pass this to `check_policy` and `apply_plan`.
    pub plan_id: String,
    pub plan_hash: String,
    pub workspace: String,
    pub environment: String,
    /// Counts of create, update, replace, delete, no-op.
    #[schemars(schema_with = "super::shape::object")]
    pub summary: serde_json::Value,
    /// What the plan could break: deletes, replacements, prod resources touched, zones, providers.
    #[schemars(schema_with = "super::shape::object")]
    pub blast_radius: serde_json::Value,
    /// Monthly cost before and after, one entry per currency.
    #[schemars(schema_with = "super::shape::objects")]
    pub cost: serde_json::Value,
    /// The diff as a person reads it.
    pub rendered: String,
    /// Every action with its dependencies.
    #[schemars(schema_with = "super::shape::objects")]
    pub actions: serde_json::Value,
    pub warnings: Vec<String>,
}

impl PlanOutput {
    pub fn of(plan: &service::model::Plan) -> PlanOutput {
        PlanOutput {
            plan_id: plan.id.clone(),
            plan_hash: plan.hash.clone(),
            workspace: plan.workspace.clone(),
            environment: plan.environment.as_str().into(),
            summary: value(&plan.summary),
            blast_radius: value(&plan.blast_radius),
            cost: value(&plan.cost),
            rendered: plan.render(),
            actions: value(&plan.actions),
            warnings: plan.warnings.clone(),
        }
    }
}

#[tool_router(router = plan_router, vis = "pub(crate)")]
impl ProvisioningServer {
    /// Compare a config with recorded state: create / update / replace / delete per resource,
    /// blast radius, monthly cost change. With `destroy`, plan removing everything the
    /// workspace has instead. Changes nothing; stores the plan and returns its id.
    #[tool(annotations(
        read_only_hint = true,
        idempotent_hint = true,
        destructive_hint = false,
        open_world_hint = false
    ))]
    async fn plan_changes(
        &self,
        Parameters(input): Parameters<PlanInput>,
    ) -> Result<Json<PlanOutput>, String> {
        match self
            .app
            .plan(input.config, input.destroy)
            .await
            .map_err(app_fail)?
        {
            service::Planned::Plan(plan) => Ok(Json(PlanOutput::of(&plan))),
            service::Planned::Invalid(diagnostics) => Err(format!(
                "the config is invalid; fix it first (validate_config shows the same): {}",
                value(&diagnostics)
            )),
        }
    }
}
