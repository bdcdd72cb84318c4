//! Workflows: list, read, cancel, resume, roll back, and follow their events (server-sent events).

use super::*;

/// This resource's routes, with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workflows))
        .routes(routes!(get_workflow))
        .routes(routes!(cancel_workflow))
        .routes(routes!(resume_workflow))
        .routes(routes!(rollback_workflow))
        .routes(routes!(workflow_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkflowQuery {
    /// Only this workspace.
    pub workspace: Option<String>,
    /// At most this many, newest first (1 to 1000; default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Workflows, newest first.
#[utoipa::path(get, path = "/workflows", params(WorkflowQuery),
    responses((status = 200, description = "Workflows", body = Vec<serde_json::Value>),
              (status = 422, description = "Bad limit", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "workflows")]
async fn list_workflows(
    State(ctx): State<AppState>,
    Params(q): Params<WorkflowQuery>,
) -> ApiResult<Response> {
    let limit = bounded_limit(q.limit, 50, 1000)?;
    Ok(json(ctx.workflows(q.workspace.as_deref(), limit).await?))
}

/// One workflow with its steps and its latest 50 events.
#[utoipa::path(get, path = "/workflows/{id}", params(("id" = String, Path, description = "Workflow id")),
    responses((status = 200, description = "Workflow and steps", body = serde_json::Value),
              (status = 404, description = "Unknown workflow", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "workflows")]
async fn get_workflow(State(ctx): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(ctx.workflow(&id).await?))
}

/// Ask a running workflow to stop.
#[utoipa::path(post, path = "/workflows/{id}/cancel", params(("id" = String, Path, description = "Workflow id")),
    responses((status = 202, description = "Cancel requested", body = serde_json::Value),
              (status = 404, description = "Unknown workflow", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Already finished", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "workflows")]
async fn cancel_workflow(
    State(ctx): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ctx.cancel(&caller, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        json(serde_json::json!({ "workflow": id, "cancel_requested": true })),
    )
        .into_response())
}

/// Resumes (`rollback` false) or rolls back workflow `id` for `caller`; refusals (policy,
/// a changed workspace, a finished workflow) come back at once.
async fn in_background(
    ctx: &AppState,
    id: &str,
    caller: Caller,
    rollback: bool,
) -> ApiResult<Response> {
    // Refusals come back at once; a run that starts keeps going in the background.
    let wait = std::time::Duration::from_millis(200);
    match ctx.continue_workflow(&caller, id, rollback, wait).await? {
        service::Continued::Finished(outcome) => Ok(json(outcome)),
        service::Continued::Running { workflow } => Ok((
            StatusCode::ACCEPTED,
            json(serde_json::json!({ "workflow": workflow, "status": "running" })),
        )
            .into_response()),
    }
}

/// Continue an interrupted, failed or cancelled workflow (failed steps are tried again).
#[utoipa::path(post, path = "/workflows/{id}/resume", params(("id" = String, Path, description = "Workflow id")),
    responses((status = 202, description = "Resumed (running)", body = serde_json::Value),
              (status = 200, description = "Finished already within the request", body = serde_json::Value),
              (status = 404, description = "Unknown workflow", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Finished, or the workspace is locked", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "workflows")]
async fn resume_workflow(
    State(ctx): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    in_background(&ctx, &id, caller, false).await
}

/// Roll back a failed or cancelled workflow (policy is asked again).
#[utoipa::path(post, path = "/workflows/{id}/rollback", params(("id" = String, Path, description = "Workflow id")),
    responses((status = 202, description = "Rolling back", body = serde_json::Value),
              (status = 200, description = "Rolled back within the request", body = serde_json::Value),
              (status = 403, description = "Policy denies, or the workflow succeeded (plan a destroy)", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "Unknown workflow", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Already rolled back", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "workflows")]
async fn rollback_workflow(
    State(ctx): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    in_background(&ctx, &id, caller, true).await
}

/// The workflow's events as server-sent events: the recorded ones, then live ones until it
/// finishes.
#[utoipa::path(get, path = "/workflows/{id}/events", params(("id" = String, Path, description = "Workflow id")),
    responses((status = 200, description = "text/event-stream of events (JSON data)", body = String, content_type = "text/event-stream"),
              (status = 404, description = "Unknown workflow", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "workflows")]
async fn workflow_events(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let service::Following {
        workflow: wf,
        recorded,
        live,
    } = ctx.follow(&id).await?;
    // Parallel steps record their events in any order, so a live event is new when its number
    // has not been sent, not when it is above the highest one sent.
    let sent: std::collections::HashSet<u64> = recorded.iter().map(|e| e.seq).collect();
    let done = wf.status.is_final()
        || matches!(
            wf.status,
            service::model::WorkflowStatus::Failed | service::model::WorkflowStatus::Cancelled
        );
    let redactor = ctx.redactor().clone();
    let to_sse = |e: &service::model::Event| {
        SseEvent::default()
            .event("step")
            .id(e.seq.to_string())
            .data(redactor.redact(&serde_json::to_string(e).unwrap_or_default()))
    };
    let first: Vec<Result<SseEvent, std::convert::Infallible>> =
        recorded.iter().map(|e| Ok(to_sse(e))).collect();
    let wf_id = wf.id.clone();
    let tail =
        futures_util::stream::unfold((live, sent, done), move |(mut live, mut sent, done)| {
            let wf_id = wf_id.clone();
            let redactor = redactor.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    match live.recv().await {
                        Ok(e) if e.workflow == wf_id && sent.insert(e.seq) => {
                            let finished =
                                matches!(e.kind, service::model::EventKind::WorkflowFinished);
                            let ev = SseEvent::default()
                                .event("step")
                                .id(e.seq.to_string())
                                .data(
                                    redactor.redact(&serde_json::to_string(&e).unwrap_or_default()),
                                );
                            return Some((Ok(ev), (live, sent, finished)));
                        }
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return None,
                    }
                }
            }
        });
    let stream = futures_util::StreamExt::chain(futures_util::stream::iter(first), tail);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
