//! `request_approval`: record (or find) the approval request for a gated plan without trying
//! to apply it.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::Serialize;

use super::check_policy::PlanIdInput;
use super::{app_fail, records, value};
use crate::ProvisioningServer;

#[derive(Debug, Serialize, JsonSchema)]
pub struct RequestApprovalOutput {
    /// `needs_approval` (the request is below), `allow` (no approval needed) or `deny`.
    pub decision: String,
    #[schemars(schema_with = "super::shape::object_or_null")]
    pub approval_request: Option<serde_json::Value>,
    /// The Control Center page of the request, to give the user: a person signs in there and
    /// approves (opening the link approves nothing). `null` when no Control Center is known.
    pub approval_url: Option<String>,
    /// Deny reasons or gates.
    #[schemars(schema_with = "super::shape::objects")]
    pub policies: serde_json::Value,
}

#[tool_router(router = request_approval_router, vis = "pub(crate)")]
impl ProvisioningServer {
    /// Ask for human approval of a gated plan ahead of applying it. Returns the request (reused
    /// if one is already open for this exact plan); people approve it outside this
    /// conversation.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn request_approval(
        &self,
        Parameters(input): Parameters<PlanIdInput>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<RequestApprovalOutput>, String> {
        let caller = self.caller(&rc);
        let (_, auth) = self
            .app
            .preflight(&caller, &input.plan_id)
            .await
            .map_err(app_fail)?;
        let policies = match &auth.decision {
            policies::Decision::Allow { policies } => value(policies),
            policies::Decision::Deny { reasons } => value(reasons),
            policies::Decision::NeedsApproval { gates } => value(gates),
        };
        let gated = matches!(&auth.decision, policies::Decision::NeedsApproval { .. });
        let approval_url = auth
            .request
            .as_ref()
            .filter(|_| gated)
            .and_then(|r| self.approval_link(&r.id));
        Ok(Json(RequestApprovalOutput {
            decision: auth.decision.kind().into(),
            approval_url,
            approval_request: match &auth.decision {
                policies::Decision::NeedsApproval { .. } => {
                    auth.request.as_ref().map(records::approval)
                }
                _ => None,
            },
            policies,
        }))
    }
}
