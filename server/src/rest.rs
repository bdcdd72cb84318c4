//! The REST API under `/api/v1`: the same engine functions the CLI and the MCP tools use, as
//! the principal the bearer token maps to (the auth layer in `commands/serve.rs` puts it in
//! the request). Errors are problem details (`application/problem+json`): 400/422 for bad
//! input, 403 with the policy reasons, 404 for unknown ids, 409 for stale plans and used,
//! expired or rejected approvals. The OpenAPI document is generated from these handlers
//! (utoipa) and served at `/api/openapi.json`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use engine::authz::Caller;
use engine::exec::{ApplyResult, ExecError};
use serde::{Deserialize, Serialize};
use tools::Context;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub type AppState = Arc<Context>;

/// Largest request body (the server's body limit; also documented as the 413 answer).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest approval or rejection comment, in bytes.
pub const MAX_COMMENT_BYTES: usize = 4096;
/// Longest policy text `POST /policies/validate` takes, in bytes.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// An error as problem details (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Policy ids and descriptions, for a denial.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

pub struct ApiError(StatusCode, String, String, Vec<String>);

impl ApiError {
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> ApiError {
        ApiError(status, title.to_string(), detail.into(), Vec::new())
    }
    fn bad(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid input", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: "about:blank".into(),
            title: self.1,
            status: self.0.as_u16(),
            detail: self.2,
            reasons: self.3,
        };
        (
            self.0,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response()
    }
}

impl From<tools::ValidateError> for ApiError {
    fn from(e: tools::ValidateError) -> ApiError {
        match e {
            tools::ValidateError::Busy(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy, retry", m)
            }
            tools::ValidateError::Rejected(m) => ApiError::bad(m),
        }
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> ApiError {
        let (status, title) = match &e {
            ExecError::PlanNotFound { .. }
            | ExecError::WorkflowNotFound { .. }
            | ExecError::ApprovalNotFound { .. } => (StatusCode::NOT_FOUND, "not found"),
            ExecError::StalePlan { .. } => (StatusCode::CONFLICT, "stale plan"),
            ExecError::WorkspaceChanged { .. } => (StatusCode::CONFLICT, "workspace changed"),
            ExecError::NotAllowed(_) => (StatusCode::FORBIDDEN, "not allowed"),
            ExecError::Approval(_) => (StatusCode::CONFLICT, "approval refused"),
            ExecError::Finished { .. } => (StatusCode::CONFLICT, "workflow finished"),
            ExecError::LockHeld(_) => (StatusCode::CONFLICT, "workspace locked"),
            ExecError::NeedsApproval { .. } => (StatusCode::FORBIDDEN, "needs approval"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        };
        ApiError::new(status, title, e.to_string())
    }
}

impl From<engine::state::StateError> for ApiError {
    fn from(e: engine::state::StateError) -> ApiError {
        ExecError::from(e).into()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Refuses a change on a `--read-only` server.
fn writable(ctx: &AppState) -> ApiResult<()> {
    if ctx.read_only {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "read-only server",
            "this server runs with --read-only: it validates, plans and reports, and changes nothing",
        ));
    }
    Ok(())
}

/// A JSON body whose syntax or shape errors are problem details (400 for malformed JSON, 422
/// for a valid document of the wrong shape), not axum's plain-text rejections.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::bad(e.body_text())),
            Err(JsonRejection::MissingJsonContentType(e)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected JSON",
                e.body_text(),
            )),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large",
                format!("the request body is over {MAX_BODY_BYTES} bytes (1 MiB); send less"),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed body",
                e.body_text(),
            )),
        }
    }
}

/// Query parameters whose errors are problem details (422), not axum's plain-text rejection.
pub struct Params<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Params(v)),
            Err(e) => Err(ApiError::bad(e.body_text())),
        }
    }
}

/// `limit`, or `default` when absent; an error naming the accepted range outside 1..=max.
fn bounded_limit(limit: Option<u32>, default: u32, max: u32) -> ApiResult<usize> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit as usize)
    } else {
        Err(ApiError::bad(format!(
            "`limit` must be 1 to {max}, got {limit}"
        )))
    }
}

fn json(v: impl Serialize) -> Response {
    axum::Json(serde_json::to_value(v).unwrap_or_default()).into_response()
}

// ---------------------------------------------------------------------------------------------
// configs and plans

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    /// The config as Nickel source (a plain record; no imports).
    pub config: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    /// The config as Nickel source.
    pub config: String,
    /// Plan removing everything the config's workspace holds instead.
    #[serde(default)]
    pub destroy: bool,
}

/// Validate a config: diagnostics with field paths, spans and suggestions.
#[utoipa::path(post, path = "/configs/validate", request_body = ConfigBody,
    responses((status = 200, description = "Validation result (valid or not)", body = serde_json::Value),
              (status = 422, description = "Not a config request", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "configs")]
async fn validate_config(
    State(ctx): State<AppState>,
    Body(b): Body<ConfigBody>,
) -> ApiResult<Response> {
    let v = ctx.validate(b.config).await?;
    Ok(json(serde_json::json!({
        "valid": v.is_valid(), "diagnostics": v.diagnostics, "config": v.value,
    })))
}

async fn checked_config(ctx: &AppState, source: String) -> ApiResult<engine::Config> {
    let v = ctx.validate(source).await?;
    match v.config {
        Some(c) if v.is_valid() => Ok(c),
        _ => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid config".into(),
            "the config does not validate; POST it to /api/v1/configs/validate for the diagnostics"
                .into(),
            v.diagnostics
                .iter()
                .map(|d| d.message.clone())
                .take(5)
                .collect(),
        )),
    }
}

/// Plan a config against recorded state; stores the plan.
#[utoipa::path(post, path = "/plans", request_body = PlanBody,
    responses((status = 201, description = "The stored plan", body = serde_json::Value),
              (status = 422, description = "Invalid config", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "plans")]
async fn create_plan(State(ctx): State<AppState>, Body(b): Body<PlanBody>) -> ApiResult<Response> {
    let config = checked_config(&ctx, b.config).await?;
    let plan = if b.destroy {
        ctx.engine.plan_destroy(&config).await?
    } else {
        ctx.engine.plan(&config).await?
    };
    Ok((StatusCode::CREATED, json(plan_view(&plan))).into_response())
}

fn plan_view(plan: &engine::plan::Plan) -> serde_json::Value {
    let mut v = serde_json::to_value(plan).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("rendered".into(), plan.render().into());
    }
    v
}

/// A stored plan with its rendered diff.
#[utoipa::path(get, path = "/plans/{id}", params(("id" = String, Path, description = "Plan id")),
    responses((status = 200, description = "The plan", body = serde_json::Value),
              (status = 404, description = "Unknown plan", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "plans")]
async fn get_plan(State(ctx): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(plan_view(&ctx.engine.load_plan(&id).await?)))
}

/// Apply a stored plan as the caller. Policy decides: 202 with the workflow when allowed (it
/// runs in the background), 403 with the approval request when it needs approval, 403 with
/// reasons when denied, 409 when the plan is stale.
#[utoipa::path(post, path = "/plans/{id}/apply", params(("id" = String, Path, description = "Plan id")),
    responses((status = 202, description = "Workflow started", body = serde_json::Value),
              (status = 200, description = "Nothing to change", body = serde_json::Value),
              (status = 403, description = "Needs approval or denied", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "Unknown plan", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Stale plan", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "plans")]
async fn apply_plan(
    State(ctx): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    writable(&ctx)?;
    match ctx.engine.start(&id, &caller).await {
        Ok(ApplyResult::NoChanges { plan }) => Ok(json(
            serde_json::json!({ "plan": plan, "status": "no_changes" }),
        )),
        Ok(ApplyResult::Ran(started)) => {
            let engine = ctx.engine.clone();
            let wf = started.workflow.clone();
            tokio::spawn(async move {
                let _ = engine.run(&wf).await;
            });
            Ok((
                StatusCode::ACCEPTED,
                json(serde_json::json!({ "workflow": started.workflow, "status": "running" })),
            )
                .into_response())
        }
        Err(ExecError::NeedsApproval { message, request }) => Ok((
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::json!({
                "type": "about:blank", "title": "needs approval", "status": 403,
                "detail": message, "approval_request": request,
            })
            .to_string(),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

/// Ask policy, now, whether the caller may apply (or destroy with) a stored plan, with the
/// approvals granted so far, without applying it: what a client asks before asking its person
/// to confirm. A gated plan gets its approval request here (made, or the one already open); a
/// denial names its policies. Recorded in the audit log like any decision that is not an allow.
#[utoipa::path(post, path = "/plans/{id}/authorize", params(("id" = String, Path, description = "Plan id")),
    responses((status = 200, description = "The decision (`authorization.decision`: allow, deny or needs_approval), and the approval request when gated", body = serde_json::Value),
              (status = 404, description = "Unknown plan", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Stale plan", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "plans")]
async fn authorize_plan(
    State(ctx): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    writable(&ctx)?;
    let plan = ctx.engine.load_plan(&id).await?;
    let auth = ctx.engine.preflight(&plan, &caller).await?;
    Ok(json(serde_json::json!({
        "plan": plan.id,
        "principal": caller.principal,
        "action": engine::authz::plan_action(&plan).as_str(),
        "authorization": auth.decision,
        "request": auth.request,
        "approvals": auth.approvals,
    })))
}

// ---------------------------------------------------------------------------------------------
// approvals

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApprovalQuery {
    /// `pending` (default), `approved`, `rejected`, `used`, `expired` or `all`.
    pub status: Option<String>,
    /// At most this many, newest first (1 to 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Approval requests, newest first.
#[utoipa::path(get, path = "/approvals", params(ApprovalQuery),
    responses((status = 200, description = "Requests", body = Vec<serde_json::Value>),
              (status = 422, description = "Unknown status or bad limit", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "approvals")]
async fn list_approvals(
    State(ctx): State<AppState>,
    Params(q): Params<ApprovalQuery>,
) -> ApiResult<Response> {
    let limit = bounded_limit(q.limit, 100, 1000)?;
    let status = match q.status.as_deref().unwrap_or("pending") {
        "all" => None,
        text => Some(policies::ApprovalStatus::parse(text).ok_or_else(|| {
            ApiError::bad(format!(
                "unknown status `{text}`; expected pending, approved, rejected, used, expired or all"
            ))
        })?),
    };
    let mut requests = ctx.engine.approvals(status).await?;
    requests.truncate(limit);
    Ok(json(requests))
}

/// One approval request with its plan (diff, blast radius, cost).
#[utoipa::path(get, path = "/approvals/{id}", params(("id" = String, Path, description = "Request id")),
    responses((status = 200, description = "The request and its plan", body = serde_json::Value),
              (status = 404, description = "Unknown request", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "approvals")]
async fn get_approval(State(ctx): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let request = ctx.engine.approval(&id).await?;
    let plan = ctx.engine.load_plan(&request.plan_id).await.ok();
    let current = ctx.engine.store.state_version(&request.workspace).await?;
    let stale = plan.as_ref().is_some_and(|p| p.state_version != current);
    Ok(json(serde_json::json!({
        "request": request,
        "status": request.status_at(ctx.engine.clock.now_ms()).as_str(),
        "plan": plan.as_ref().map(plan_view),
        "plan_is_stale": stale,
    })))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    /// Why (required to reject; at most 4096 bytes).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub comment: Option<String>,
}

impl CommentBody {
    /// The comment, or an error naming the limit when it is too long.
    fn checked(self) -> ApiResult<String> {
        let comment = self.comment.unwrap_or_default();
        if comment.len() > MAX_COMMENT_BYTES {
            return Err(ApiError::bad(format!(
                "`comment` is {} bytes; at most {MAX_COMMENT_BYTES} are accepted",
                comment.len()
            )));
        }
        Ok(comment)
    }
}

/// Approve a request as the caller (policy decides; never the requester; single use).
#[utoipa::path(post, path = "/approvals/{id}/approve", params(("id" = String, Path, description = "Request id")),
    request_body = CommentBody,
    responses((status = 200, description = "The updated request", body = serde_json::Value),
              (status = 403, description = "Policy or the requester rule refuses", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "Unknown request", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Used, expired, rejected or already approved by the caller", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "approvals")]
async fn approve(
    State(ctx): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(b): Body<CommentBody>,
) -> ApiResult<Response> {
    writable(&ctx)?;
    let comment = b.checked()?;
    let mut response = json(ctx.engine.approve(&id, &caller, &comment).await?);
    response
        .extensions_mut()
        .insert(crate::http::Happened::ApprovalGranted);
    Ok(response)
}

/// Reject a request with a comment; final for that plan.
#[utoipa::path(post, path = "/approvals/{id}/reject", params(("id" = String, Path, description = "Request id")),
    request_body = CommentBody,
    responses((status = 200, description = "The rejected request", body = serde_json::Value),
              (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "Unknown request", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Already used, expired or rejected", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "No comment", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "approvals")]
async fn reject(
    State(ctx): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(b): Body<CommentBody>,
) -> ApiResult<Response> {
    writable(&ctx)?;
    let comment = b.checked()?;
    if comment.trim().is_empty() {
        return Err(ApiError::bad(
            "a rejection needs a `comment` telling the requester why",
        ));
    }
    let mut response = json(ctx.engine.reject(&id, &caller, &comment).await?);
    response
        .extensions_mut()
        .insert(crate::http::Happened::ApprovalRejected);
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// workflows

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
    let page = ctx
        .engine
        .store
        .recent_workflows(q.workspace.as_deref(), limit)
        .await?;
    Ok(json(page))
}

/// One workflow with its steps and its latest 50 events.
#[utoipa::path(get, path = "/workflows/{id}", params(("id" = String, Path, description = "Workflow id")),
    responses((status = 200, description = "Workflow and steps", body = serde_json::Value),
              (status = 404, description = "Unknown workflow", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "workflows")]
async fn get_workflow(State(ctx): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let (wf, steps) = ctx.engine.status(&id).await?;
    let events = ctx.engine.store.events(&wf.id, 0).await?;
    let recent: Vec<_> = events.iter().rev().take(50).rev().collect();
    Ok(json(
        serde_json::json!({ "workflow": wf, "steps": steps, "events": recent }),
    ))
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
    writable(&ctx)?;
    ctx.engine.cancel(&id, &caller).await?;
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
    let wf = match rollback {
        // The engine says why a rollback cannot happen (a succeeded workflow is undone with a
        // destroy plan, a rolled back one is done).
        true => ctx.engine.workflow(id).await?,
        false => ctx.engine.authorize_resume(id, &caller).await?,
    };
    let engine = ctx.engine.clone();
    let id = wf.id.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let result = match rollback {
            true => engine.rollback(&id, &caller).await,
            false => engine.run(&id).await,
        };
        let _ = tx.send(result);
    });
    // Refusals come back at once; a run that starts keeps going in the background.
    match tokio::time::timeout(std::time::Duration::from_millis(200), rx).await {
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Ok(Ok(outcome))) => Ok(json(outcome)),
        _ => Ok((
            StatusCode::ACCEPTED,
            json(serde_json::json!({ "workflow": wf.id, "status": "running" })),
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
    writable(&ctx)?;
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
    writable(&ctx)?;
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
    let wf = ctx.engine.workflow(&id).await?;
    let live = ctx.engine.subscribe();
    let recorded = ctx.engine.store.events(&wf.id, 0).await?;
    // Parallel steps record their events in any order, so a live event is new when its number
    // has not been sent, not when it is above the highest one sent.
    let sent: std::collections::HashSet<u64> = recorded.iter().map(|e| e.seq).collect();
    let done = wf.status.is_final()
        || matches!(
            wf.status,
            engine::state::WorkflowStatus::Failed | engine::state::WorkflowStatus::Cancelled
        );
    let redactor = ctx.engine.redactor.clone();
    let to_sse = |e: &engine::state::Event| {
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
                                matches!(e.kind, engine::state::EventKind::WorkflowFinished);
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

// ---------------------------------------------------------------------------------------------
// state, drift, audit, policies, docs, catalog

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkspaceQuery {
    /// The workspace (every workspace when omitted, for state).
    pub workspace: Option<String>,
}

/// Recorded resources.
#[utoipa::path(get, path = "/state", params(WorkspaceQuery),
    responses((status = 200, description = "Resources per workspace", body = serde_json::Value)),
    security(("bearer" = [])), tag = "state")]
async fn get_state(
    State(ctx): State<AppState>,
    Params(q): Params<WorkspaceQuery>,
) -> ApiResult<Response> {
    let store = &ctx.engine.store;
    let workspaces = match q.workspace {
        Some(w) => vec![w],
        None => store.workspaces().await?,
    };
    let mut out = serde_json::Map::new();
    for w in workspaces {
        let resources = store.resources(&w).await?;
        out.insert(w, serde_json::to_value(resources).unwrap_or_default());
    }
    Ok(json(out))
}

/// Ask the providers about a workspace's recorded resources.
#[utoipa::path(get, path = "/drift", params(WorkspaceQuery),
    responses((status = 200, description = "Drift report", body = serde_json::Value),
              (status = 422, description = "No workspace given", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "state")]
async fn get_drift(
    State(ctx): State<AppState>,
    Params(q): Params<WorkspaceQuery>,
) -> ApiResult<Response> {
    let Some(w) = q.workspace else {
        return Err(ApiError::bad("give `workspace`"));
    };
    Ok(json(ctx.engine.drift(&w).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries of this kind (e.g. `approval_granted`).
    pub kind: Option<String>,
    /// Only entries by this actor (e.g. `user:bob`).
    pub actor: Option<String>,
    /// The newest this many (1 to 10000; default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

/// Audit entries, oldest first, filtered.
#[utoipa::path(get, path = "/audit", params(AuditQuery),
    responses((status = 200, description = "Entries", body = Vec<serde_json::Value>),
              (status = 422, description = "Bad limit", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "audit")]
async fn get_audit(
    State(ctx): State<AppState>,
    Params(q): Params<AuditQuery>,
) -> ApiResult<Response> {
    let limit = bounded_limit(q.limit, 100, 10_000)?;
    let (entries, _) = ctx.engine.store.audit_log().await?;
    let mut picked: Vec<_> = entries
        .into_iter()
        .filter(|e| q.kind.as_ref().is_none_or(|k| e.kind == *k))
        .filter(|e| q.actor.as_ref().is_none_or(|a| e.actor == *a))
        .collect();
    let skip = picked.len().saturating_sub(limit);
    picked.drain(..skip);
    Ok(json(picked))
}

/// Every audit entry, one JSON object per line.
#[utoipa::path(get, path = "/audit/export",
    responses((status = 200, description = "JSON lines", body = String, content_type = "application/x-ndjson")),
    security(("bearer" = [])), tag = "audit")]
async fn audit_export(State(ctx): State<AppState>) -> ApiResult<Response> {
    let (entries, _) = ctx.engine.store.audit_log().await?;
    let mut out = String::new();
    for e in &entries {
        out.push_str(&serde_json::to_string(e).unwrap_or_default());
        out.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

/// Recompute the audit hash chain and compare it with the recorded head.
#[utoipa::path(get, path = "/audit/verify",
    responses((status = 200, description = "Verification result", body = serde_json::Value)),
    security(("bearer" = [])), tag = "audit")]
async fn audit_verify(State(ctx): State<AppState>) -> ApiResult<Response> {
    let (entries, head) = ctx.engine.store.audit_log().await?;
    let result = policies::audit::verify(&entries, head.as_ref().map(|(n, h)| (*n, h.as_str())));
    Ok(json(serde_json::json!({
        "entries": entries.len(),
        "ok": result.is_ok(),
        "problem": result.err().map(|e| e.to_string()),
    })))
}

/// Search the docs (hybrid BM25 + dense), with citations.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DocsQuery {
    /// The question or keywords (1 to 2048 bytes).
    #[param(min_length = 1, max_length = 2048)]
    pub q: String,
    /// Results (1 to 50, more is clamped to 50; default 5).
    #[param(minimum = 1)]
    pub k: Option<u32>,
}

#[utoipa::path(get, path = "/docs/search", params(DocsQuery),
    responses((status = 200, description = "Hits with citations", body = serde_json::Value),
              (status = 422, description = "Empty or too long query, k = 0", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "docs")]
async fn docs_search(
    State(ctx): State<AppState>,
    Params(q): Params<DocsQuery>,
) -> ApiResult<Response> {
    rag::hybrid::check_query(&q.q).map_err(|e| ApiError::bad(e.to_string()))?;
    let k = q.k.unwrap_or(5) as usize;
    if k == 0 {
        return Err(ApiError::bad(
            rag::RagError::ZeroK { max: rag::MAX_K }.to_string(),
        ));
    }
    let (retriever, building) = ctx
        .docs
        .now()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "docs unavailable", e))?;
    let mut results = retriever
        .search(
            &q.q,
            &rag::SearchOptions {
                k,
                ..rag::SearchOptions::default()
            },
        )
        .await
        .map_err(|e| ApiError::bad(e.to_string()))?;
    if let Some(notice) = building {
        results.notices.insert(0, notice);
    }
    Ok(json(results))
}

/// The policies in force.
#[utoipa::path(get, path = "/policies",
    responses((status = 200, description = "id, description, whether it is a gate, file", body = Vec<serde_json::Value>)),
    security(("bearer" = [])), tag = "policies")]
async fn list_policies(State(ctx): State<AppState>) -> ApiResult<Response> {
    let authz = ctx.authz.as_ref().ok_or_else(no_policies)?;
    let set = authz.policies.current();
    let out: Vec<_> = set
        .policies()
        .iter()
        .map(|(id, d, gate, file)| serde_json::json!({ "id": id, "description": d, "gate": gate, "file": file }))
        .collect();
    Ok(json(out))
}

fn no_policies() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no policies",
        "this server runs without a policy set",
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyText {
    /// Cedar policy text (one or more policies with `@id` and `@description`; at most 256 KiB).
    #[schema(max_length = 262144)]
    pub policies: String,
}

/// Validate Cedar policy text against the schema, as an addition to the policies in force.
/// Changes nothing.
#[utoipa::path(post, path = "/policies/validate", request_body = PolicyText,
    responses((status = 200, description = "valid, and the policy count; or the errors", body = serde_json::Value),
              (status = 422, description = "Not a policy request", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "policies")]
async fn validate_policies(Body(b): Body<PolicyText>) -> ApiResult<Response> {
    if b.policies.len() > MAX_POLICY_BYTES {
        return Err(ApiError::bad(format!(
            "`policies` is {} bytes; at most {MAX_POLICY_BYTES} (256 KiB) are accepted",
            b.policies.len()
        )));
    }
    // Bounded before Cedar's recursive parser sees it (size, nesting, operator chains).
    policies::bounds::check("submitted.cedar", &b.policies)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let result = policies::PolicyEngine::defaults_with("submitted.cedar", &b.policies);
    Ok(json(match result {
        Ok(engine) => serde_json::json!({ "valid": true, "policies": engine.policies().len() }),
        Err(e) => serde_json::json!({ "valid": false, "error": e.to_string() }),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Simulation {
    /// A stored plan.
    pub plan_id: String,
    /// `user:NAME[:ROLE,ROLE]` or `agent:NAME@USER[:ROLE,ROLE]`; the caller when omitted.
    #[serde(default)]
    pub principal: Option<String>,
}

/// What policy would decide if PRINCIPAL applied (or destroyed) a stored plan, and why.
#[utoipa::path(post, path = "/policies/simulate", request_body = Simulation,
    responses((status = 200, description = "decision with the policies behind it, and approvals needed", body = serde_json::Value),
              (status = 404, description = "Unknown plan", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Bad principal", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "policies")]
async fn simulate_policies(
    State(ctx): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(b): Body<Simulation>,
) -> ApiResult<Response> {
    use engine::authz::{ApprovalFacts, Authorizer};
    let authz = ctx.authz.as_ref().ok_or_else(no_policies)?;
    let who = match &b.principal {
        Some(p) => Caller::parse(p, "rest").map_err(ApiError::bad)?,
        None => caller,
    };
    let plan = ctx.engine.load_plan(&b.plan_id).await?;
    let action = engine::authz::plan_action(&plan);
    let decision = authz.decide(&who, action, &plan, &ApprovalFacts::default());
    let needed = match &decision {
        policies::Decision::NeedsApproval { .. } => authz.approvals_needed(&who, action, &plan),
        _ => None,
    };
    Ok(json(serde_json::json!({
        "principal": who.principal,
        "action": action.as_str(),
        "plan": plan.id,
        "decision": decision,
        "approvals_needed": needed,
    })))
}

/// Who the token belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct Whoami {
    /// `user:NAME` or `agent:NAME@PERSON`.
    pub principal: String,
    pub roles: Vec<String>,
}

/// The principal and roles the bearer token maps to.
#[utoipa::path(get, path = "/whoami",
    responses((status = 200, description = "The caller", body = Whoami)),
    security(("bearer" = [])), tag = "access")]
async fn whoami(Extension(caller): Extension<Caller>) -> axum::Json<Whoami> {
    axum::Json(Whoami {
        principal: caller.principal,
        roles: caller.roles,
    })
}

/// Providers, taskservs and cluster templates.
#[utoipa::path(get, path = "/catalog",
    responses((status = 200, description = "The catalog", body = serde_json::Value)),
    security(("bearer" = [])), tag = "catalog")]
async fn catalog() -> ApiResult<Response> {
    let c = knowledge::Catalog::embedded()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "catalog", e.to_string()))?;
    Ok(json(c))
}

// ---------------------------------------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(title = "Provisioning", description = "Provision infrastructure safely: validate, plan, authorize (Cedar), approve, apply and audit."),
    modifiers(&Bearer),
    tags((name = "access"), (name = "configs"), (name = "plans"), (name = "approvals"), (name = "workflows"),
         (name = "state"), (name = "policies"), (name = "audit"), (name = "docs"), (name = "catalog"))
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Largest response body the redaction layer reads; a larger one is refused rather than sent
/// unchecked.
const MAX_REDACTED_BODY: usize = 256 * 1024 * 1024;

/// A layer for every REST response: the body with each secret the server knows replaced by
/// `[redacted]`. Server-sent events pass through (each event is redacted where it is made).
pub async fn redact_responses(
    State(redactor): State<engine::secrets::Redactor>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if streaming || redactor.is_empty() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REDACTED_BODY).await else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            "the response could not be checked for secrets, so it is withheld",
        )
        .into_response();
    };
    let redacted = match std::str::from_utf8(&bytes) {
        Ok(text) => match redactor.redact(text) {
            std::borrow::Cow::Owned(redacted) => Some(redacted),
            std::borrow::Cow::Borrowed(_) => None,
        },
        Err(_) => None,
    };
    let body = match redacted {
        Some(redacted) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            axum::body::Bytes::from(redacted)
        }
        None => bytes,
    };
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The API routes (to be nested under `/api/v1`) and the OpenAPI document describing them.
pub fn router() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let v1: OpenApiRouter<AppState> = OpenApiRouter::new()
        .routes(routes!(validate_config))
        .routes(routes!(create_plan))
        .routes(routes!(get_plan))
        .routes(routes!(apply_plan))
        .routes(routes!(authorize_plan))
        .routes(routes!(list_approvals))
        .routes(routes!(get_approval))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(list_workflows))
        .routes(routes!(get_workflow))
        .routes(routes!(cancel_workflow))
        .routes(routes!(resume_workflow))
        .routes(routes!(rollback_workflow))
        .routes(routes!(workflow_events))
        .routes(routes!(get_state))
        .routes(routes!(get_drift))
        .routes(routes!(get_audit))
        .routes(routes!(audit_export))
        .routes(routes!(audit_verify))
        .routes(routes!(docs_search))
        .routes(routes!(catalog))
        .routes(routes!(whoami))
        .routes(routes!(list_policies))
        .routes(routes!(validate_policies))
        .routes(routes!(simulate_policies));
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_string();
    document_common_answers(&mut api);
    (router, api)
}

/// The answers every operation can give that its own annotation does not list: 403 and 421 from
/// the Host/Origin guard, 401 and 429 from the token layer, 500 from panic containment; 400,
/// 413, 415 and 422 for a request body; 422 for query parameters.
fn document_common_answers(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let problem = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    for item in api.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post].into_iter().flatten() {
            let has_body = op.request_body.is_some();
            let has_query = op.parameters.iter().flatten().any(|p| match p {
                RefOr::T(p) => matches!(p.parameter_in, ParameterIn::Query),
                RefOr::Ref(_) => false,
            });
            let r = &mut op.responses.responses;
            r.entry("401".into())
                .or_insert_with(|| problem("Missing or unknown bearer token"));
            r.entry("403".into())
                .or_insert_with(|| problem("A foreign `Origin` (checked before the token)"));
            r.entry("421".into()).or_insert_with(|| {
                problem("A `Host` this server does not answer for (checked before the token)")
            });
            r.entry("429".into()).or_insert_with(|| {
                problem("Too many requests from this principal, or without a valid token from this address; see `Retry-After`")
            });
            r.entry("500".into()).or_insert_with(|| {
                problem("The server failed while answering (logged; nothing internal is revealed)")
            });
            if has_body {
                r.entry("400".into())
                    .or_insert_with(|| problem("Malformed JSON"));
                r.entry("413".into())
                    .or_insert_with(|| problem("Body over 1 MiB"));
                r.entry("415".into())
                    .or_insert_with(|| problem("Body is not application/json"));
                r.entry("422".into())
                    .or_insert_with(|| problem("Body of the wrong shape"));
            }
            if has_query {
                r.entry("422".into())
                    .or_insert_with(|| problem("Bad query parameters"));
            }
        }
    }
}
