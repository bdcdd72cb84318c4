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
    let result = ::policies::audit::verify(&entries, head.as_ref().map(|(n, h)| (*n, h.as_str())));
    Ok(json(serde_json::json!({
        "entries": entries.len(),
        "ok": result.is_ok(),
        "problem": result.err().map(|e| e.to_string()),
    })))
}
