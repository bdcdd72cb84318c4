//! `cancel_workflow`: stop starting new steps of a running workflow.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::Serialize;

use super::app_fail;
use super::get_workflow::WorkflowIdInput;
use crate::ProvisioningServer;

#[derive(Debug, Serialize, JsonSchema)]
pub struct CancelOutput {
    pub workflow_id: String,
    pub message: String,
}

#[tool_router(router = cancel_router, vis = "pub(crate)")]
impl ProvisioningServer {
    /// Ask a running workflow to stop: no new steps start, running ones finish. resume_workflow
    /// continues it later.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn cancel_workflow(
        &self,
        Parameters(input): Parameters<WorkflowIdInput>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<CancelOutput>, String> {
        let caller = self.caller(&rc);
        self.app
            .cancel(&caller, &input.workflow_id)
            .await
            .map_err(app_fail)?;
        Ok(Json(CancelOutput {
            message: format!(
                "Cancel requested for {}: no new steps start; running steps finish.",
                input.workflow_id
            ),
            workflow_id: input.workflow_id,
        }))
    }
}
