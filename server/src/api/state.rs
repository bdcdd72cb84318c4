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
