//! The REST API under `/api/v1`: the same engine functions the CLI and the MCP tools use, as
//! the principal the bearer token maps to (the auth layer in `commands/serve.rs` puts it in
//! the request). Errors are problem details (`application/problem+json`): 400/422 for bad
//! input, 403 with the policy reasons, 404 for unknown ids, 409 for stale plans and used,
//! expired or rejected approvals. The OpenAPI document is generated from these handlers
//! (utoipa) and served at `/api/openapi.json`.
//!
//! One file per resource, each with its `routes()`; this file holds what they share: problem
//! details, the body and query extractors, the response redaction layer and the document.

mod access;
mod approvals;
mod audit;
mod docs;
mod plans;
mod policies;
mod state;
mod workflows;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use service::App;
use service::Caller;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub type AppState = Arc<App>;

/// Largest request body (the server's body limit; also documented as the 413 answer).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
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

/// `Retry-After` of a busy answer, in seconds.
const RETRY_AFTER_SECONDS: &str = "2";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: "about:blank".into(),
            title: self.1,
            status: self.0.as_u16(),
            detail: self.2,
            reasons: self.3,
        };
        let mut response = (
            self.0,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response();
        // Shed load (every evaluation slot taken): say when to come back, as HTTP does.
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

impl From<service::ValidateError> for ApiError {
    fn from(e: service::ValidateError) -> ApiError {
        service::Error::from(e).into()
    }
}

/// The one conversion of a use case's error at this edge: its kind is the status; an internal
/// failure is logged with its details, and the client gets a generic text (a store's words are
/// not for clients).
impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> ApiError {
        use service::ErrorKind;
        let status = match e.kind() {
            ErrorKind::BadInput => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Forbidden | ErrorKind::ReadOnly => StatusCode::FORBIDDEN,
            ErrorKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => {
                tracing::error!(error = %e, "a request failed inside the server");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    e.title(),
                    "the server failed while answering; its log has the details",
                );
            }
        };
        ApiError::new(status, e.title(), e.message())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Refuses a change on a `--read-only` server.
fn writable(ctx: &AppState) -> ApiResult<()> {
    Ok(ctx.writable()?)
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
    State(redactor): State<service::model::Redactor>,
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
        .merge(plans::routes())
        .merge(approvals::routes())
        .merge(workflows::routes())
        .merge(state::routes())
        .merge(audit::routes())
        .merge(docs::routes())
        .merge(policies::routes())
        .merge(access::routes());
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

#[cfg(test)]
mod tests {
    use super::{ApiError, StatusCode};

    #[test]
    fn an_internal_failure_is_logged_and_not_sent() {
        let inside = service::Error::remote(
            "surrealdb at 10.0.0.5:8000: authentication failed for user root",
        );
        let sent = ApiError::from(inside);
        assert_eq!(sent.0, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !sent.2.contains("10.0.0.5") && !sent.2.contains("root"),
            "{}",
            sent.2
        );
        // A refusal the client can act on keeps its words.
        let stale = service::Error::new(
            service::ErrorKind::Conflict,
            "workflow finished",
            "workflow wf-1 already succeeded; there is nothing to cancel",
        );
        let sent = ApiError::from(stale);
        assert_eq!(
            (sent.0, sent.1.as_str()),
            (StatusCode::CONFLICT, "workflow finished")
        );
        assert!(sent.2.contains("wf-1"), "{}", sent.2);
    }
}
