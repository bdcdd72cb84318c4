//! `resume_workflow`: continue an interrupted, failed or cancelled workflow.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};

use super::app_fail;
use super::apply_plan::{ApplyOutput, forward_progress, outcome_output};
use super::get_workflow::WorkflowIdInput;
use crate::ProvisioningServer;

#[tool_router(router = resume_router, vis = "pub(crate)")]
impl ProvisioningServer {
    /// Continue a workflow that was interrupted, failed or cancelled, without repeating the
    /// side effects of finished steps. Reports progress.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = true
    ))]
    async fn resume_workflow(
        &self,
        Parameters(input): Parameters<WorkflowIdInput>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<ApplyOutput>, String> {
        let caller = self.caller(&rc);
        let (wf, steps) = self
            .app
            .resume(&caller, &input.workflow_id)
            .await
            .map_err(app_fail)?;
        let progress = forward_progress(&self.app, wf.id.clone(), steps, &rc, &self.log);
        let outcome = self.app.run(&wf.id).await.map_err(app_fail)?;
        if let Some(task) = progress {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
        }
        Ok(Json(outcome_output(&wf.plan_id, &outcome)))
    }
}
