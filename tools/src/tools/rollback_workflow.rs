//! `rollback_workflow`: undo what a failed or cancelled workflow did.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};

use super::app_fail;
use super::apply_plan::{ApplyOutput, answer, forward_progress, run_wait};
use super::get_workflow::WorkflowIdInput;
use crate::ProvisioningServer;

#[tool_router(router = rollback_router, vis = "pub(crate)")]
impl ProvisioningServer {
    /// Roll back a failed or cancelled workflow: compensate its finished steps in reverse
    /// dependency order (delete what it created, restore what it changed) and clean up failed
    /// ones; it ends `rolled_back`. Policy is asked again; a succeeded workflow is undone by
    /// planning a destroy instead. Reports progress; answers `running` after a few seconds when
    /// it takes longer (follow it with get_workflow).
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = true
    ))]
    async fn rollback_workflow(
        &self,
        Parameters(input): Parameters<WorkflowIdInput>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<ApplyOutput>, String> {
        let caller = self.caller(&rc);
        let view = self
            .app
            .workflow(&input.workflow_id)
            .await
            .map_err(app_fail)?;
        let wf = view.workflow;
        let progress = forward_progress(&self.app, wf.id.clone(), view.steps.len(), &rc, &self.log);
        let continued = self
            .app
            .continue_workflow(&caller, &wf.id, true, run_wait(&rc))
            .await;
        answer(&self.app, &wf.plan_id, continued, progress)
            .await
            .map(Json)
    }
}
