//! `check_policy`: what policy decides for a stored plan, for the caller, without recording
//! anything.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{app_fail, value};
use crate::ProvisioningServer;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanIdInput {
    /// A plan id from `plan_changes` (`plan-...`).
    pub plan_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckPolicyOutput {
    /// `allow`, `deny` or `needs_approval`.
    pub decision: String,
    /// The deciding policies with their descriptions.
    #[schemars(schema_with = "super::shape::objects")]
    pub policies: serde_json::Value,
    /// Approvals by other people that clear the gates, when gated.
    pub approvals_needed: Option<u32>,
    /// Who was asked about.
    pub principal: String,
}

#[tool_router(router = check_policy_router, vis = "pub(crate)")]
impl ProvisioningServer {
    /// Ask policy whether you may apply a plan: allowed, denied (with the policies and why), or
    /// allowed once people approve it. Records nothing.
    #[tool(annotations(
        read_only_hint = true,
        idempotent_hint = true,
        destructive_hint = false,
        open_world_hint = false
    ))]
    async fn check_policy(
        &self,
        Parameters(input): Parameters<PlanIdInput>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<CheckPolicyOutput>, String> {
        let caller = self.caller(&rc);
        let would = self
            .app
            .would_decide(&caller, &input.plan_id)
            .await
            .map_err(app_fail)?;
        let decision = would.decision;
        let refs = match &decision {
            policies::Decision::Allow { policies } => value(policies),
            policies::Decision::Deny { reasons } => value(reasons),
            policies::Decision::NeedsApproval { gates } => value(gates),
        };
        Ok(Json(CheckPolicyOutput {
            decision: decision.kind().into(),
            policies: refs,
            approvals_needed: would.approvals_needed,
            principal: caller.principal,
        }))
    }
}
