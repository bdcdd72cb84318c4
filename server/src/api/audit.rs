//! The audit log: entries, export, verification of the hash chain.

use super::*;

/// This resource's routes, with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_audit))
        .routes(routes!(audit_export))
        .routes(routes!(audit_verify))
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
    Ok(json(
        ctx.audit(q.kind.as_deref(), q.actor.as_deref(), limit)
            .await?,
    ))
}

/// Every audit entry, one JSON object per line.
#[utoipa::path(get, path = "/audit/export",
    responses((status = 200, description = "JSON lines", body = String, content_type = "application/x-ndjson")),
    security(("bearer" = [])), tag = "audit")]
async fn audit_export(State(ctx): State<AppState>) -> ApiResult<Response> {
    let entries = ctx.audit_all().await?;
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
    let check = ctx.verify_audit().await?;
    Ok(json(serde_json::json!({
        "entries": check.entries,
        "ok": check.problem.is_none(),
        "problem": check.problem,
    })))
}
