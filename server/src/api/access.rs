//! Who the caller is, and the catalog.

use super::*;

/// This resource's routes, with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(catalog))
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
