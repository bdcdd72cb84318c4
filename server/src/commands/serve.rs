//! `provisioning serve [--http ADDR] [--read-only]`: the MCP server. Over stdio (logs go to
//! stderr only) it acts as the agent of the person who started it; over streamable HTTP at
//! `/mcp` every request needs a bearer token mapped to a principal in the config file, the
//! `Host` and `Origin` headers are checked, bodies are capped and each principal is rate
//! limited.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engine::authz::Caller;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};
use tools::{Context, ProvisioningServer};

use super::engine_setup::{open_engine_with, runtime};
use super::validator;
use crate::Settings;
use crate::cli::ServeArgs;

/// Largest HTTP request body accepted.
const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn run(settings: &Settings, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let validator = Arc::new(validator(settings)?);
    runtime()?.block_on(async {
        let authz = Arc::new(super::engine_setup::authorizer(settings)?);
        let engine = open_engine_with(settings, authz.clone()).await?;
        let local = settings.local_caller();
        let default_caller = Caller {
            principal: format!("agent:mcp@{}", local.person()),
            channel: "mcp".into(),
            roles: local.roles.clone(),
            authenticated: true,
            mfa: false,
        };
        let ctx = Arc::new(Context {
            engine,
            validator,
            read_only: args.read_only,
            default_caller,
            max_config_bytes: settings.limits.max_input_bytes,
            docs: docs_source(settings, &args.docs),
            openai: settings
                .openai
                .clone()
                .map(|o| tools::openai::OpenAiDrafter::new(o, settings.secrets.clone())),
            authz: Some(authz),
        });
        if let Some(d) = &ctx.openai {
            eprintln!(
                "draft_config uses the OpenAI-compatible endpoint at {} (model {}, at most {} tokens a call and {} a draft, {} s a call) when the client offers no sampling",
                d.base_url(),
                d.model(),
                d.settings().max_tokens,
                d.settings().max_total_tokens,
                d.settings().timeout.as_secs_f64()
            );
        }
        // Build the docs index in the background: the first index embeds every chunk.
        {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                match ctx.docs.retriever().await {
                    Ok(r) => match r.keyword_only_reason() {
                        Some(reason) => eprintln!(
                            "docs index ready ({} chunks); keyword-only retrieval: {reason}",
                            r.chunks().len()
                        ),
                        None => eprintln!("docs index ready ({} chunks, hybrid)", r.chunks().len()),
                    },
                    Err(e) => eprintln!("warning: {}", ctx.engine.redactor.redact(&e)),
                }
            });
        }
        match &args.http {
            None => stdio(ctx).await,
            Some(addr) => http(ctx, settings, addr, args).await,
        }
    })
}

/// The docs index as the `docs` command opens it, built on first use.
fn docs_source(settings: &Settings, docs: &crate::cli::DocsSettings) -> tools::Docs {
    let settings = settings.clone();
    let docs = docs.clone();
    tools::Docs::new(Box::new(move || {
        let settings = settings.clone();
        let docs = docs.clone();
        Box::pin(async move {
            super::docs::open(&settings, &docs)
                .await
                .map(|d| d.retriever)
                .map_err(|e| format!("{e:#}"))
        })
    }))
}

async fn stdio(ctx: Arc<Context>) -> anyhow::Result<ExitCode> {
    eprintln!(
        "provisioning MCP server on stdio ({}; acting as {})",
        if ctx.read_only {
            "read-only"
        } else {
            "read-write"
        },
        ctx.default_caller.principal
    );
    let service = ProvisioningServer::new(ctx)
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP session did not start")?;
    service
        .waiting()
        .await
        .context("the MCP session ended with an error")?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone)]
struct Gate {
    tokens: Arc<BTreeMap<String, Caller>>,
    limiter: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
    /// Requests per second each principal may make, with this burst.
    rate: f64,
    burst: f64,
}

fn problem(status: StatusCode, title: &str, detail: String) -> Response {
    let body = serde_json::json!({ "type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// Bearer token → principal (as a request extension rmcp hands to the tools), and a token
/// bucket per principal.
async fn authenticate(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let token = bearer(request.headers());
    let Some(token) = token else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "missing bearer token",
            "send `Authorization: Bearer TOKEN`; tokens are configured per user or agent in the config file (token_sha256)".into(),
        );
    };
    let hash = format!("{:x}", Sha256::digest(token.as_bytes()));
    let Some(caller) = gate.tokens.get(&hash).cloned() else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "unknown token",
            "the bearer token matches no user or agent in the config file".into(),
        );
    };
    let allowed = match gate.limiter.lock() {
        Ok(mut buckets) => {
            let now = Instant::now();
            let (tokens, last) = buckets
                .entry(caller.principal.clone())
                .or_insert((gate.burst, now));
            *tokens =
                (*tokens + now.duration_since(*last).as_secs_f64() * gate.rate).min(gate.burst);
            *last = now;
            if *tokens >= 1.0 {
                *tokens -= 1.0;
                true
            } else {
                false
            }
        }
        Err(_) => true,
    };
    if !allowed {
        return problem(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limited",
            format!(
                "{} made more than {} requests per second; slow down",
                caller.principal, gate.rate
            ),
        );
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Request counters by status class, for `/metrics`.
#[derive(Default)]
struct Metrics {
    by_class: [std::sync::atomic::AtomicU64; 6],
    started: std::sync::OnceLock<Instant>,
}

async fn count(State(m): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    m.started.get_or_init(Instant::now);
    let response = next.run(request).await;
    let class = (response.status().as_u16() / 100).min(5) as usize;
    m.by_class[class].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    response
}

/// The Control Center: one page, no build step; it signs in with a token and talks to the
/// REST API.
async fn control_center() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../control_center.html"),
    )
        .into_response()
}

/// Ready when the state store answers.
async fn readyz(ctx: Arc<Context>) -> Response {
    match ctx.engine.store.workspaces().await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready",
            format!("the state store does not answer: {e}"),
        ),
    }
}

/// Prometheus text format.
async fn render_metrics(ctx: Arc<Context>, m: Arc<Metrics>) -> Response {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP provisioning_http_requests_total HTTP requests answered, by status class."
    );
    let _ = writeln!(out, "# TYPE provisioning_http_requests_total counter");
    for (i, c) in m.by_class.iter().enumerate().skip(1) {
        let _ = writeln!(
            out,
            "provisioning_http_requests_total{{class=\"{i}xx\"}} {}",
            c.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    let mut by_status: BTreeMap<&'static str, u64> = BTreeMap::new();
    if let Ok(all) = ctx.engine.store.workflows(None).await {
        for wf in &all {
            *by_status.entry(wf.status.as_str()).or_default() += 1;
        }
    }
    let _ = writeln!(
        out,
        "# HELP provisioning_workflows Workflows recorded, by status."
    );
    let _ = writeln!(out, "# TYPE provisioning_workflows gauge");
    for (status, n) in by_status {
        let _ = writeln!(out, "provisioning_workflows{{status=\"{status}\"}} {n}");
    }
    let pending = ctx
        .engine
        .approvals(Some(policies::ApprovalStatus::Pending))
        .await
        .map(|v| v.len())
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "# HELP provisioning_approvals_pending Approval requests waiting."
    );
    let _ = writeln!(out, "# TYPE provisioning_approvals_pending gauge");
    let _ = writeln!(out, "provisioning_approvals_pending {pending}");
    let uptime = m
        .started
        .get()
        .map(|t| t.elapsed().as_secs_f64())
        .unwrap_or(0.0);
    let _ = writeln!(
        out,
        "# HELP provisioning_uptime_seconds Seconds since the first request."
    );
    let _ = writeln!(out, "# TYPE provisioning_uptime_seconds gauge");
    let _ = writeln!(out, "provisioning_uptime_seconds {uptime:.3}");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_string())
}

async fn http(
    ctx: Arc<Context>,
    settings: &Settings,
    addr: &str,
    args: &ServeArgs,
) -> anyhow::Result<ExitCode> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("--http `{addr}`: expected HOST:PORT, e.g. 127.0.0.1:7070"))?;
    if !addr.ip().is_loopback() && !args.allow_remote {
        anyhow::bail!(
            "--http {addr} is not a loopback address; pass --allow-remote to listen on other interfaces (and put TLS in front)"
        );
    }
    let tokens = settings.token_principals();
    if tokens.is_empty() {
        eprintln!(
            "warning: no tokens in the config file; every request will get 401. Add token_sha256 to a [users.NAME] or [agents.NAME] entry."
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()];
    hosts.extend(args.allow_host.iter().cloned());
    let mut origins: Vec<String> = vec![
        format!("http://127.0.0.1:{}", bound.port()),
        format!("http://localhost:{}", bound.port()),
    ];
    origins.extend(args.allow_origin.iter().cloned());
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(MAX_BODY_BYTES);
    let service: StreamableHttpService<ProvisioningServer, LocalSessionManager> =
        StreamableHttpService::new(
            {
                let ctx = ctx.clone();
                move || Ok(ProvisioningServer::new(ctx.clone()))
            },
            Default::default(),
            config,
        );
    let gate = Gate {
        tokens: Arc::new(tokens),
        limiter: Arc::new(Mutex::new(HashMap::new())),
        rate: args.rate_limit,
        burst: (args.rate_limit * 2.0).max(1.0),
    };
    let (api, openapi) = crate::rest::router();
    let spec = openapi
        .to_pretty_json()
        .context("the OpenAPI document does not serialize")?;
    let metrics = Arc::new(Metrics::default());
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .merge(
            api.with_state(ctx.clone())
                .layer(axum::middleware::from_fn_with_state(
                    ctx.engine.redactor.clone(),
                    crate::rest::redact_responses,
                )),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(gate, authenticate))
        .route(
            "/api/openapi.json",
            axum::routing::get(move || async move {
                ([(header::CONTENT_TYPE, "application/json")], spec)
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/", axum::routing::get(control_center))
        .route(
            "/readyz",
            axum::routing::get({
                let ctx = ctx.clone();
                move || readyz(ctx.clone())
            }),
        )
        .route(
            "/metrics",
            axum::routing::get({
                let ctx = ctx.clone();
                let metrics = metrics.clone();
                move || render_metrics(ctx.clone(), metrics.clone())
            }),
        )
        .layer(axum::middleware::from_fn_with_state(metrics, count));
    // The address on stdout (one line), so scripts and tests can use port 0.
    println!("listening on http://{bound}/mcp");
    eprintln!(
        "provisioning MCP server at http://{bound}/mcp ({})",
        if ctx.read_only {
            "read-only"
        } else {
            "read-write"
        }
    );
    use std::io::Write as _;
    std::io::stdout().flush().ok();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the HTTP server stopped with an error")?;
    Ok(ExitCode::SUCCESS)
}
