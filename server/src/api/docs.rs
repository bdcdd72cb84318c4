//! Docs search.

use super::*;

/// This resource's routes, with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(docs_search))
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
    let options = rag::SearchOptions {
        k: q.k.unwrap_or(5) as usize,
        ..rag::SearchOptions::default()
    };
    let results = ctx.docs.search(&q.q, &options).await?;
    Ok(json(results))
}
