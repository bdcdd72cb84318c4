//! MCP tasks (the tasks extension, `io.modelcontextprotocol/tasks`) backed by our workflows.
//!
//! A client that declares the extension gets `apply_plan`, `resume_workflow` and
//! `rollback_workflow` as tasks: the tool starts the workflow (policy, approval gate and all, as
//! always) and, instead of waiting, answers with a task whose id is the workflow's id. The
//! task's state is the workflow's, read from the store on every `tasks/get`: nothing of it lives
//! in this process, so a task id outlives the server. `tasks/get` on a workflow that no live
//! process runs any more (the server was killed mid-run) continues it as the caller, the way
//! `resume_workflow` would (policy asked again; finished steps are not repeated). `tasks/cancel`
//! is the authorized workflow cancel. Answers that are not a started workflow (a plan that needs
//! approval, no changes, a refusal) stay ordinary tool results.

use rmcp::RoleServer;
use rmcp::model::{
    CallToolResult, CreateTaskResult, DetailedTask, ErrorData, JsonObject, Task, TaskPayload,
    TaskStatus,
};
use rmcp::service::RequestContext;
use service::model::{RunOutcome, WorkflowStatus};

use crate::ProvisioningServer;
use crate::tools::apply_plan::outcome_output;

/// The tools a client may run as tasks.
pub(crate) const TASK_TOOLS: [&str; 3] = ["apply_plan", "resume_workflow", "rollback_workflow"];

/// How often a client should ask (`pollIntervalMs`).
const POLL_MS: u64 = 2000;

/// Whether this request's client takes tasks (it declared the tasks extension).
pub(crate) fn wants_tasks(rc: &RequestContext<RoleServer>) -> bool {
    rc.client_capabilities().is_some_and(|c| c.supports_tasks())
}

fn iso(ms: u64) -> String {
    service::model::rfc3339(ms)
}

impl ProvisioningServer {
    /// A task tool's `running` answer (see `apply_plan`) as the task that follows it.
    pub(crate) fn as_task(&self, result: &CallToolResult) -> Option<CreateTaskResult> {
        let answer = result.structured_content.as_ref()?;
        if answer.get("status")?.as_str()? != "running" {
            return None;
        }
        let workflow = answer.get("workflow")?.as_str()?;
        let now = iso(self.app.engine.clock.now_ms());
        Some(CreateTaskResult::new(
            Task::new(workflow, TaskStatus::Working, now.clone(), now)
                .with_poll_interval_ms(POLL_MS)
                .with_status_message(format!("workflow {workflow} is running")),
        ))
    }

    /// `tasks/get`: the workflow's state as a task.
    pub(crate) async fn task_state(
        &self,
        id: &str,
        rc: &RequestContext<RoleServer>,
    ) -> Result<DetailedTask, ErrorData> {
        let view = self.app.workflow(id).await.map_err(|e| {
            ErrorData::invalid_params(format!("no task `{id}`: {}", e.message()), None)
        })?;
        let wf = &view.workflow;
        let head = Task::new(
            wf.id.clone(),
            TaskStatus::Working,
            iso(wf.created_at),
            iso(wf.updated_at),
        )
        .with_poll_interval_ms(POLL_MS);
        let outcome = RunOutcome::of(wf, &view.steps);
        // The run ended (a failed or cancelled workflow can be resumed, but as a new request:
        // the task that started it is over).
        let ended = matches!(
            wf.status,
            WorkflowStatus::Succeeded
                | WorkflowStatus::RolledBack
                | WorkflowStatus::Failed
                | WorkflowStatus::Cancelled
        );
        if ended {
            if wf.status == WorkflowStatus::Cancelled {
                return Ok(DetailedTask::new(
                    head.with_status_message(format!("workflow {} was cancelled", wf.id)),
                    TaskPayload::Cancelled,
                ));
            }
            let output = outcome_output(&wf.plan_id, &outcome);
            let mut value = serde_json::to_value(&output)
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            self.app.redactor().redact_json(&mut value);
            let result = CallToolResult::structured(value);
            let result: JsonObject = match serde_json::to_value(&result) {
                Ok(serde_json::Value::Object(o)) => o,
                _ => {
                    return Err(ErrorData::internal_error(
                        "the task's result does not serialize",
                        None,
                    ));
                }
            };
            return Ok(DetailedTask::new(
                head.with_status_message(format!("workflow {} {}", wf.id, wf.status.as_str())),
                TaskPayload::Completed { result },
            ));
        }
        let done = outcome.succeeded + outcome.compensated + outcome.skipped;
        let mut message = format!(
            "workflow {} {}: {done} of {} steps done",
            wf.id,
            wf.status.as_str(),
            view.steps.len()
        );
        if !self.app.engine.is_running_here(&wf.id)
            && !self.app.engine.runs_elsewhere(wf).await
            && self.still_unfinished(&wf.id).await
        {
            // Interrupted: the process that ran it is gone. The caller following the task
            // continues it, as resume_workflow would (policy decides).
            let caller = self.caller(rc);
            let rollback = wf.status == WorkflowStatus::RollingBack;
            match self
                .app
                .continue_workflow(&caller, &wf.id, rollback, std::time::Duration::ZERO)
                .await
            {
                Ok(_) => message.push_str("; it was interrupted and continues now"),
                Err(e) => message.push_str(&format!(
                    "; it was interrupted and cannot continue as {}: {}",
                    caller.principal,
                    self.app.redactor().redact(e.message())
                )),
            }
        }
        Ok(DetailedTask::new(
            head.with_status_message(message),
            TaskPayload::Working,
        ))
    }

    /// Whether the workflow is still recorded as pending or running, read again after this
    /// process was seen not to run it: a run that ended in between is not an interruption.
    async fn still_unfinished(&self, id: &str) -> bool {
        match self.app.engine.workflow(id).await {
            Ok(wf) => matches!(
                wf.status,
                WorkflowStatus::Pending | WorkflowStatus::Running | WorkflowStatus::RollingBack
            ),
            Err(_) => false,
        }
    }

    /// `tasks/cancel`: the workflow's cancel, as the caller (policy decides).
    pub(crate) async fn cancel_task(
        &self,
        id: &str,
        rc: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let caller = self.caller(rc);
        self.app.cancel(&caller, id).await.map_err(|e| {
            ErrorData::invalid_params(self.app.redactor().redact(e.message()).into_owned(), None)
        })
    }
}
