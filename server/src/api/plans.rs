//! Configs and plans: validate a config, make a plan, read it, ask policy about it, apply it.

use super::*;

/// This resource's routes, with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(validate_config))
        .routes(routes!(create_plan))
        .routes(routes!(get_plan))
        .routes(routes!(apply_plan))
        .routes(routes!(authorize_plan))
}

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

/// Plan a config against recorded state; stores the plan.
#[utoipa::path(post, path = "/plans", request_body = PlanBody,
    responses((status = 201, description = "The stored plan", body = serde_json::Value),
              (status = 422, description = "Invalid config", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "plans")]
async fn create_plan(State(ctx): State<AppState>, Body(b): Body<PlanBody>) -> ApiResult<Response> {
    match ctx.plan(b.config, b.destroy).await? {
        service::Planned::Plan(plan) => {
            Ok((StatusCode::CREATED, json(plan_view(&plan))).into_response())
        }
        service::Planned::Invalid(diagnostics) => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid config".into(),
            "the config does not validate; POST it to /api/v1/configs/validate for the diagnostics"
                .into(),
            diagnostics
                .iter()
                .map(|d| d.message.clone())
                .take(5)
                .collect(),
        )),
    }
}

pub(super) fn plan_view(plan: &service::model::Plan) -> serde_json::Value {
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
    Ok(json(plan_view(&ctx.load_plan(&id).await?)))
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
    match ctx.start(&caller, &id).await? {
        service::Start::NoChanges { plan } => Ok(json(
            serde_json::json!({ "plan": plan, "status": "no_changes" }),
        )),
        service::Start::Started { workflow, .. } => {
            let app = ctx.clone();
            let wf = workflow.clone();
            tokio::spawn(async move {
                let _ = app.run(&wf).await;
            });
            Ok((
                StatusCode::ACCEPTED,
                json(serde_json::json!({ "workflow": workflow, "status": "running" })),
            )
                .into_response())
        }
        service::Start::NeedsApproval { message, request } => Ok((
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::json!({
                "type": "about:blank", "title": "needs approval", "status": 403,
                "detail": message, "approval_request": request,
            })
            .to_string(),
        )
            .into_response()),
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
    let (plan, auth) = ctx.preflight(&caller, &id).await?;
    Ok(json(serde_json::json!({
        "plan": plan.id,
        "principal": caller.principal,
        "action": service::model::plan_action(&plan).as_str(),
        "authorization": auth.decision,
        "request": auth.request,
        "approvals": auth.approvals,
    })))
}
