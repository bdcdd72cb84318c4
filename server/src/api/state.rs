//! Recorded state and drift.

use super::*;

/// This resource's routes, with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_state))
        .routes(routes!(get_drift))
}

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
    Ok(json(
        ctx.state(q.workspace.as_deref(), None).await?.resources,
    ))
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
    Ok(json(ctx.drift(&w).await?))
}
