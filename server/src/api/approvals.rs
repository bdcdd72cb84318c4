//! Approval requests: list, read, approve, reject.

use super::plans::plan_view;
use super::*;

/// This resource's routes, with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_approvals))
        .routes(routes!(get_approval))
        .routes(routes!(approve))
        .routes(routes!(reject))
}

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
        text => Some(::policies::ApprovalStatus::parse(text).ok_or_else(|| {
            ApiError::bad(format!(
                "unknown status `{text}`; expected pending, approved, rejected, used, expired or all"
            ))
        })?),
    };
    Ok(json(ctx.approvals(status, limit).await?))
}

/// One approval request with its plan (diff, blast radius, cost).
#[utoipa::path(get, path = "/approvals/{id}", params(("id" = String, Path, description = "Request id")),
    responses((status = 200, description = "The request and its plan", body = serde_json::Value),
              (status = 404, description = "Unknown request", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "approvals")]
async fn get_approval(State(ctx): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let view = ctx.approval(&id).await?;
    Ok(json(serde_json::json!({
        "request": view.request,
        "status": view.status.as_str(),
        "plan": view.plan.as_ref().map(plan_view),
        "plan_is_stale": view.plan_is_stale,
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
    decided(&ctx, &caller, &id, b, true).await
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
    decided(&ctx, &caller, &id, b, false).await
}

/// A person's decision on request `id`, answered with the request and marked for the metrics.
async fn decided(
    ctx: &AppState,
    caller: &Caller,
    id: &str,
    body: CommentBody,
    approve: bool,
) -> ApiResult<Response> {
    let comment = body.comment.unwrap_or_default();
    let mut response = json(ctx.decide(caller, id, approve, &comment).await?);
    response.extensions_mut().insert(match approve {
        true => crate::http::Happened::ApprovalGranted,
        false => crate::http::Happened::ApprovalRejected,
    });
    Ok(response)
}
