//! Policies: the set in force, validating a text, simulating a decision.

use super::*;

/// This resource's routes, with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_policies))
        .routes(routes!(validate_policies))
        .routes(routes!(simulate_policies))
}

/// The policies in force.
#[utoipa::path(get, path = "/policies",
    responses((status = 200, description = "id, description, whether it is a gate, file", body = Vec<serde_json::Value>)),
    security(("bearer" = [])), tag = "policies")]
async fn list_policies(State(ctx): State<AppState>) -> ApiResult<Response> {
    let authz = ctx.authz.as_ref().ok_or_else(no_policies)?;
    let set = authz.policies.current();
    Ok(json(set.policies()))
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
    ::policies::bounds::check("submitted.cedar", &b.policies)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let result = ::policies::PolicyEngine::defaults_with("submitted.cedar", &b.policies);
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
    ctx.authz.as_ref().ok_or_else(no_policies)?;
    let who = match &b.principal {
        Some(p) => Caller::parse(p, "rest").map_err(ApiError::bad)?,
        None => caller,
    };
    let would = ctx.would_decide(&who, &b.plan_id).await?;
    Ok(json(serde_json::json!({
        "principal": who.principal,
        "action": would.action.as_str(),
        "plan": would.plan.id,
        "decision": would.decision,
        "approvals_needed": would.approvals_needed,
    })))
}
