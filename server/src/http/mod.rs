//! The HTTP edge every route sits behind, in order from the outside: the `Host`/`Origin` guard
//! (before anything else, authentication included), the request counters, panic containment
//! (a panicking handler answers 500 and the server keeps going), then, on the routes that need
//! it, the bearer-token check with its rate limits (per principal, and per client address for
//! requests without a valid token). [`harden`] applies the outer layers and is the only place
//! they are put together, for the server and for its tests alike.

pub mod guard;
pub mod kernel;
pub mod limit;
pub mod loopback;
pub mod metrics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use service::Caller;
use sha2::{Digest, Sha256};

pub use guard::Allowed;
pub use metrics::{Happened, Metrics};

use limit::Buckets;

/// Problem details (RFC 9457) with `status`, `title` and `detail`.
pub fn problem(status: StatusCode, title: &str, detail: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail.into(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// What the outer layers share.
#[derive(Clone)]
pub struct Edge {
    pub allowed: Arc<Allowed>,
    pub metrics: Arc<Metrics>,
}

/// `router` behind the guard, the counters and panic containment (outermost first).
pub fn harden(router: axum::Router, edge: &Edge) -> axum::Router {
    // `layer` wraps what is there, so the last one added runs first.
    router
        .layer(from_fn_with_state(edge.metrics.clone(), contain_panics))
        .layer(from_fn_with_state(edge.metrics.clone(), metrics::count))
        .layer(from_fn_with_state(edge.clone(), check_host_and_origin))
        .layer(axum::middleware::map_response(close_after_too_large))
        .layer(axum::middleware::from_fn(trace_request))
}

/// Every request gets an id (`rq-…`, returned as `x-request-id`) and a span carrying it with the
/// method, path and, once authenticated, the caller: the log lines of the tool calls, plans and
/// workflows it starts are tied to it, and to the audit entries that name the same plan or
/// workflow. Finished requests are logged at debug, server errors at warn (not 503: shed load).
async fn trace_request(mut request: Request, next: Next) -> Response {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tracing::Instrument;
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = format!(
        "rq-{:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let span = tracing::info_span!(
        "request",
        request = %id,
        method = %request.method(),
        path = %request.uri().path(),
        caller = tracing::field::Empty,
    );
    request
        .extensions_mut()
        .insert(tools::RequestId(id.clone()));
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_millis();
    span.in_scope(|| {
        // 503 is load shed on purpose (every evaluation slot taken; the client is told to
        // retry): at warn, a client flooding the server would flood its log as well.
        if status >= 500 && status != 503 {
            tracing::warn!(status, ms, "answered");
        } else {
            tracing::debug!(status, ms, "answered");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// A 413 leaves the rest of the body unread, so the connection cannot carry another request:
/// say so (`Connection: close`), or a client that reuses it from its pool gets a dropped
/// connection on its next request instead of an answer.
async fn close_after_too_large(mut response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn check_host_and_origin(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let refusal = match edge.allowed.check(request.headers(), request.uri()) {
        Ok(()) => return next.run(request).await,
        Err(r) => r,
    };
    let (status, title, detail) = match refusal {
        guard::Refusal::Host(detail) => {
            metrics::bump(&edge.metrics.refused_host);
            (StatusCode::MISDIRECTED_REQUEST, "unknown host", detail)
        }
        guard::Refusal::Origin(detail) => {
            metrics::bump(&edge.metrics.refused_origin);
            (StatusCode::FORBIDDEN, "foreign origin", detail)
        }
    };
    if request.uri().path().starts_with("/api/") {
        problem(status, title, detail)
    } else {
        (
            status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            format!("{title}: {detail}\n"),
        )
            .into_response()
    }
}

/// A panic in a handler answers 500 with nothing of the panic in it; the message goes to the
/// log (standard error) with the method and path.
async fn contain_panics(State(m): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(payload) => {
            metrics::bump(&m.panics);
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic payload".into());
            tracing::error!(%method, %path, "the handler panicked: {what}; answered 500");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                "the server failed while answering this request; it was logged and the server keeps running",
            )
        }
    }
}

/// Bearer tokens and the rate limits that go with them.
pub struct Gate {
    /// SHA-256 of a token (hex) → the principal it stands for.
    tokens: std::sync::RwLock<BTreeMap<String, Caller>>,
    /// Where the tokens come from, re-read when the file changes.
    source: Option<TokenSource>,
    principals: Buckets,
    addresses: Buckets,
    metrics: Arc<Metrics>,
}

/// Reads the tokens of a config file.
pub type TokenLoader = fn(&std::path::Path) -> Result<BTreeMap<String, Caller>, String>;

struct TokenSource {
    path: std::path::PathBuf,
    load: TokenLoader,
    /// When the file was last looked at, and its modification time then.
    seen: std::sync::Mutex<(Option<Instant>, Option<std::time::SystemTime>)>,
}

/// How often the config file is looked at for token changes, at most.
const TOKEN_RECHECK: Duration = Duration::from_secs(1);

impl Gate {
    /// `rate` requests per second (twice that as a burst) per principal, and the same per
    /// client address for requests without a valid token.
    pub fn new(tokens: BTreeMap<String, Caller>, rate: f64, metrics: Arc<Metrics>) -> Gate {
        let burst = (rate * 2.0).max(1.0);
        Gate {
            tokens: std::sync::RwLock::new(tokens),
            source: None,
            principals: Buckets::new(rate, burst, 100_000),
            addresses: Buckets::new(rate, burst, 10_000),
            metrics,
        }
    }

    /// Re-reads the tokens from `path` when it changes (looked at once a second at most): a
    /// token created or revoked with `provisioning token` counts without a restart. A file that
    /// no longer reads keeps the tokens in force and says why in the log.
    pub fn reloading(mut self, path: std::path::PathBuf, load: TokenLoader) -> Gate {
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        self.source = Some(TokenSource {
            path,
            load,
            seen: std::sync::Mutex::new((Some(Instant::now()), mtime)),
        });
        self
    }

    fn refresh(&self, now: Instant) {
        let Some(source) = &self.source else {
            return;
        };
        let Ok(mut seen) = source.seen.lock() else {
            return;
        };
        if seen
            .0
            .is_some_and(|at| now.duration_since(at) < TOKEN_RECHECK)
        {
            return;
        }
        seen.0 = Some(now);
        let mtime = std::fs::metadata(&source.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime == seen.1 {
            return;
        }
        seen.1 = mtime;
        match (source.load)(&source.path) {
            Ok(tokens) => {
                let n = tokens.len();
                if let Ok(mut current) = self.tokens.write() {
                    *current = tokens;
                }
                tracing::info!(
                    "tokens re-read from {} ({n} in force)",
                    source.path.display()
                );
            }
            Err(e) => tracing::warn!("tokens not re-read, the ones in force stay: {e}"),
        }
    }

    fn caller(&self, hash: &str) -> Option<Caller> {
        self.tokens.read().ok().and_then(|t| t.get(hash).cloned())
    }
}

/// `router` with every request authenticated: the bearer token's principal goes into the
/// request's extensions (rmcp hands it to the tools; REST handlers extract it).
pub fn authenticated<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    gate: Arc<Gate>,
) -> axum::Router<S> {
    router.layer(from_fn_with_state(gate, authenticate))
}

async fn authenticate(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let now = Instant::now();
    let token = bearer(request.headers());
    gate.refresh(now);
    let caller = token.as_ref().and_then(|t| {
        let hash = format!("{:x}", Sha256::digest(t.as_bytes()));
        gate.caller(&hash)
    });
    let Some(caller) = caller else {
        let address = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| limit::client_key(c.0.ip()));
        if let Err(wait) = gate.addresses.take(&address, now) {
            metrics::bump(&gate.metrics.limited_address);
            return too_many(
                wait,
                format!(
                    "more than {} requests per second without a valid bearer token came from this address; retry after {} s",
                    gate.addresses.rate(),
                    wait.as_secs()
                ),
            );
        }
        metrics::bump(&gate.metrics.unauthorized);
        return match token {
            None => problem(
                StatusCode::UNAUTHORIZED,
                "missing bearer token",
                "send `Authorization: Bearer TOKEN`; tokens are configured per user or agent in the config file (token_sha256)",
            ),
            Some(_) => problem(
                StatusCode::UNAUTHORIZED,
                "unknown token",
                "the bearer token matches no user or agent in the config file",
            ),
        };
    };
    if let Err(wait) = gate.principals.take(&caller.principal, now) {
        metrics::bump(&gate.metrics.limited_principal);
        return too_many(
            wait,
            format!(
                "{} made more than {} requests per second; retry after {} s",
                caller.principal,
                gate.principals.rate(),
                wait.as_secs()
            ),
        );
    }
    // The channel recorded is the door used: MCP over HTTP, or the REST API (and the Control
    // Center, which calls it).
    let mut caller = caller;
    caller.channel = if request.uri().path().starts_with("/mcp") {
        "mcp".into()
    } else {
        "rest".into()
    };
    tracing::Span::current().record("caller", caller.principal.as_str());
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn too_many(wait: Duration, detail: String) -> Response {
    let mut response = problem(StatusCode::TOO_MANY_REQUESTS, "rate limited", detail);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs()));
    response
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::sync::atomic::Ordering;

    const TOKEN: &str = "a-valid-token-0123456789";

    /// `router` behind [`harden`] (and, for `/p`, [`authenticated`] at `rate`), served on a
    /// free loopback port; the base URL and the shared counters.
    async fn serve(rate: f64) -> (String, Arc<Metrics>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let metrics = Arc::new(Metrics::default());
        let caller = Caller {
            principal: "user:alice".into(),
            channel: "http".into(),
            roles: vec!["viewer".into()],
            authenticated: true,
            mfa: false,
        };
        let tokens = BTreeMap::from([(format!("{:x}", Sha256::digest(TOKEN.as_bytes())), caller)]);
        let gate = Arc::new(Gate::new(tokens, rate, metrics.clone()));
        let protected = axum::Router::new().route("/p", get(|| async { "private" }));
        let app = authenticated(protected, gate)
            .route("/ok", get(|| async { "ok" }))
            .route("/api/ok", get(|| async { "ok" }))
            .route(
                "/boom",
                get(|| async {
                    let detail = "secret internal detail 4242";
                    if !detail.is_empty() {
                        panic!("{detail}");
                    }
                    "unreachable"
                }),
            );
        let edge = Edge {
            allowed: Arc::new(Allowed::new(port, &[], &[]).unwrap()),
            metrics: metrics.clone(),
        };
        let app = harden(app, &edge);
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        (format!("http://127.0.0.1:{port}"), metrics)
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_server_keeps_answering() {
        let (base, metrics) = serve(100.0).await;
        let http = reqwest::Client::new();
        for _ in 0..3 {
            let r = http.get(format!("{base}/boom")).send().await.unwrap();
            assert_eq!(r.status(), 500);
            assert_eq!(
                r.headers()["content-type"],
                "application/problem+json",
                "a problem"
            );
            let body = r.text().await.unwrap();
            assert!(body.contains("internal error"), "{body}");
            assert!(!body.contains("secret") && !body.contains("4242"), "{body}");
            let r = http.get(format!("{base}/ok")).send().await.unwrap();
            assert_eq!(r.status(), 200, "still answering");
        }
        assert_eq!(metrics.panics.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn host_and_origin_are_checked_before_anything_else() {
        let (base, metrics) = serve(100.0).await;
        let http = reqwest::Client::new();
        let evil = "http://evil.example";
        for (path, token) in [
            ("/ok", None),
            ("/p", None),
            ("/p", Some(TOKEN)),
            ("/boom", None),
        ] {
            let mut req = http.get(format!("{base}{path}")).header("Origin", evil);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 403, "{path} with token {token:?}");
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/plain")
            );
            let mut req = http
                .get(format!("{base}{path}"))
                .header("Host", "evil.example:80");
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            assert_eq!(req.send().await.unwrap().status(), 421, "{path}");
        }
        let r = http
            .get(format!("{base}/api/ok"))
            .header("Origin", evil)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        // The handler that panics never ran: the guard answered first.
        assert_eq!(metrics.panics.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.refused_origin.load(Ordering::Relaxed), 5);
        assert_eq!(metrics.refused_host.load(Ordering::Relaxed), 4);
        // Its own origin and no origin are fine.
        let own = base.clone();
        let r = http
            .get(format!("{base}/p"))
            .header("Origin", own)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    #[tokio::test]
    async fn requests_without_a_valid_token_are_limited_per_address() {
        // 1 per second, a burst of 2.
        let (base, metrics) = serve(1.0).await;
        let http = reqwest::Client::new();
        let bad = |t: &'static str| http.get(format!("{base}/p")).bearer_auth(t).send();
        assert_eq!(bad("wrong").await.unwrap().status(), 401);
        assert_eq!(
            http.get(format!("{base}/p")).send().await.unwrap().status(),
            401
        );
        let r = bad("wrong").await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        // A valid token has its own bucket.
        assert_eq!(bad(TOKEN).await.unwrap().status(), 200);
        assert_eq!(bad(TOKEN).await.unwrap().status(), 200);
        let r = bad(TOKEN).await.unwrap();
        assert_eq!(r.status(), 429);
        assert!(r.text().await.unwrap().contains("user:alice"));
        assert_eq!(metrics.limited_address.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.limited_principal.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.unauthorized.load(Ordering::Relaxed), 2);
    }
}
