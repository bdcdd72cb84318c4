//! `provisioning serve [--http ADDR] [--read-only]`: the MCP server. Over stdio (logs go to
//! stderr only) it acts as the agent of the person who started it; over HTTP it composes the
//! app: streamable MCP at `/mcp`, REST at `/api/v1`, `/metrics` (all three behind a bearer
//! token), and the public page, OpenAPI document and health checks, everything behind the
//! edge layers of [`crate::http`] (Host and Origin first, counters, panic containment).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use drafter::openai::OpenAiDrafter;
use engine::authz::Caller;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use service::App;
use tools::ProvisioningServer;

/// The model `draft_config` uses when a client offers no sampling: the OpenAI-compatible
/// endpoint, when one is configured (chosen here, at the composition root).
type Drafter = Option<Arc<dyn drafter::model::Model>>;

use super::engine_setup::{open_engine_with, runtime};
use crate::Settings;
use crate::api::MAX_BODY_BYTES;
use crate::cli::ServeArgs;
use crate::http::{Allowed, Edge, Gate, Metrics, problem};

pub fn run(settings: &Settings, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.connect {
        return runtime()?.block_on(pass_through(path));
    }
    // Over stdio, by default, the assistant's session is a client of the installation's local
    // server, which owns the state: any number of assistants and the CLI at once.
    let over_stdio = args.http.is_none() && args.socket.is_none();
    if args.local || (over_stdio && !args.standalone && !args.read_only) {
        let socket = super::daemon::default_socket(settings);
        if let Some(pid) = super::daemon::start(settings, &socket)? {
            tracing::info!(pid, socket = %socket.display(), "started the local server");
        }
        return runtime()?.block_on(pass_through(&socket));
    }
    let validator = Arc::new(super::server_validator(settings)?);
    match validator.confinement() {
        Ok(Some(how)) => {
            tracing::info!(confinement = %how, "config sandbox: {how} (no file, no network, empty environment)")
        }
        Ok(None) => tracing::warn!(
            "config sandbox: the kernel offers no Landlock here, so evaluated configs are not confined by the kernel; \
             they run in a child process with an empty environment, an empty working directory and time, memory and output limits, \
             and a config holding an `import` (found with Nickel's own lexer) is refused before evaluation"
        ),
        Err(e) => tracing::warn!("config sandbox: cannot probe the evaluator: {e}"),
    }
    runtime()?.block_on(async {
        let authz = Arc::new(super::engine_setup::authorizer(settings)?);
        let engine = open_engine_with(settings, authz.clone()).await?;
        let local = settings.local_caller();
        // Over HTTP every caller is its token: a request the transport names no caller for is
        // nobody (policy denies it), never the account that started the server.
        let default_caller = match (&args.http, &args.socket) {
            (Some(_), _) | (_, Some(_)) => Caller::nobody("mcp"),
            (None, None) => Caller {
                principal: format!("agent:mcp@{}", local.person()),
                channel: "mcp".into(),
                roles: local.roles.clone(),
                authenticated: true,
                mfa: false,
            },
        };
        let configured = settings
            .openai
            .clone()
            .map(|o| Arc::new(OpenAiDrafter::new(o, settings.secrets.clone())));
        let ctx = Arc::new(App {
            engine,
            validator,
            read_only: args.read_only,
            default_caller,
            max_config_bytes: settings.limits.max_input_bytes,
            docs: docs_source(settings, &args.docs),
            authz: Some(authz),
        });
        if let Some(d) = &configured {
            tracing::info!(
                "draft_config uses the OpenAI-compatible endpoint at {} (model {}, at most {} tokens a call and {} a draft, {} s a call) when the client offers no sampling",
                d.base_url(),
                d.model(),
                d.settings().max_tokens,
                d.settings().max_total_tokens,
                d.settings().timeout.as_secs_f64()
            );
        }
        let openai: Drafter = configured.map(|d| d as Arc<dyn drafter::model::Model>);
        // Build the docs index in the background: the first index embeds every chunk.
        {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                match ctx.docs.retriever().await {
                    Ok(r) => match r.keyword_only_reason() {
                        Some(reason) => tracing::warn!(
                            "docs index ready ({} chunks); keyword-only retrieval: {reason}",
                            r.chunks().len()
                        ),
                        None => tracing::info!("docs index ready ({} chunks, hybrid)", r.chunks().len()),
                    },
                    Err(e) => tracing::warn!("docs index: {e}"),
                }
            });
        }
        match (&args.http, &args.socket) {
            (_, Some(path)) => {
                socket(ctx, openai, settings, path, args.control_center.as_deref()).await
            }
            (None, None) => stdio(ctx, openai, settings.file.approvals.link.as_deref()).await,
            (Some(addr), None) => http(ctx, openai, settings, addr, args).await,
        }
    })
}

/// The docs index as the `docs` command opens it, built on first use.
fn docs_source(settings: &Settings, docs: &crate::cli::DocsSettings) -> service::Docs {
    let settings = settings.clone();
    let docs = docs.clone();
    let keyword_docs = docs.clone();
    service::Docs::new(Box::new(move || {
        let settings = settings.clone();
        let docs = docs.clone();
        Box::pin(async move {
            super::docs::open(&settings, &docs)
                .await
                .map(|d| d.retriever)
                .map_err(|e| format!("{e:#}"))
        })
    }))
    .with_keyword_fallback(Box::new(move || {
        super::docs::keyword_only(&keyword_docs, "the docs index is not ready yet")
            .map_err(|e| format!("{e:#}"))
    }))
}

async fn stdio(ctx: Arc<App>, openai: Drafter, link: Option<&str>) -> anyhow::Result<ExitCode> {
    tracing::info!(
        "provisioning MCP server on stdio ({}; acting as {})",
        if ctx.read_only {
            "read-only"
        } else {
            "read-write"
        },
        ctx.default_caller.principal
    );
    let service = ProvisioningServer::new(ctx)
        .with_openai(openai)
        .with_control_center(link)
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP session did not start")?;
    service
        .waiting()
        .await
        .context("the MCP session ended with an error")?;
    Ok(ExitCode::SUCCESS)
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
async fn readyz(ctx: Arc<App>) -> Response {
    match ctx.engine.store.workspaces().await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready",
            format!("the state store does not answer: {e}"),
        ),
    }
}

async fn http(
    ctx: Arc<App>,
    openai: Drafter,
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
        tracing::warn!(
            "no tokens in the config file: every request gets 401 until one is added with `provisioning token create NAME --role viewer|operator|approver` (taken without a restart)"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    // The one place Host and Origin are decided; rmcp gets the same lists for its own check.
    let allowed = Allowed::new(bound.port(), &args.allow_host, &args.allow_origin)
        .map_err(anyhow::Error::msg)?;
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()];
    hosts.extend(args.allow_host.iter().cloned());
    let mut origins: Vec<String> = ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .map(|h| format!("http://{h}:{}", bound.port()))
        .collect();
    origins.extend(args.allow_origin.iter().cloned());
    let link = settings
        .file
        .approvals
        .link
        .clone()
        .or_else(|| (!bound.ip().is_unspecified()).then(|| format!("http://{bound}/")));
    let app = compose(
        ctx.clone(),
        openai,
        link,
        hosts,
        origins,
        allowed,
        Auth::Tokens {
            tokens,
            rate_limit: args.rate_limit,
            // The default location is watched too when there is no file yet: `provisioning
            // token create` writes it there.
            reload: Some(
                settings
                    .config_file
                    .clone()
                    .unwrap_or_else(crate::settings::default_config_path),
            ),
        },
    )?;
    // The address on stdout (one line), so scripts and tests can use port 0.
    println!("listening on http://{bound}/mcp");
    tracing::info!(
        "provisioning MCP server at http://{bound}/mcp ({})",
        if ctx.read_only {
            "read-only"
        } else {
            "read-write"
        }
    );
    use std::io::Write as _;
    std::io::stdout().flush().ok();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("the HTTP server stopped with an error")?;
    Ok(ExitCode::SUCCESS)
}

/// The local server: the app on a Unix socket only this account can open (the folder 0700,
/// the socket 0600), callers identified by the kernel. A stale socket left by a dead server is
/// replaced; a live one is an error naming it.
async fn socket(
    ctx: Arc<App>,
    openai: Drafter,
    settings: &Settings,
    path: &std::path::Path,
    control_center: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    // `[daemon] group`: its members may connect too; nobody else.
    let group = match &settings.file.daemon.group {
        None => None,
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .with_context(|| {
                    format!(
                        "[daemon] group `{name}` in {}: no such group on this machine",
                        settings
                            .config_file
                            .as_deref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    )
                })?
                .gid,
        ),
    };
    // Owner only, or owner and group (read and search, never write, for the folder).
    let (folder_mode, socket_mode, foreign) = match group {
        None => (0o700, 0o600, 0o077),
        Some(_) => (0o750, 0o660, 0o027),
    };
    if folder.exists() {
        // Never loosen or tighten a folder someone else chose (say /tmp): it must already be
        // this account's (and the group's, when one is configured).
        let meta = std::fs::metadata(folder)
            .with_context(|| format!("cannot read the socket folder {}", folder.display()))?;
        let me = nix::unistd::geteuid().as_raw();
        let group_ok = group.is_none_or(|g| meta.gid() == g.as_raw() || meta.mode() & 0o070 == 0);
        if meta.uid() != me || meta.mode() & foreign != 0 || !group_ok {
            anyhow::bail!(
                "the socket folder {} is not this account's alone (owner uid {}, group {}, mode {:o}); put the socket in a folder only you (and `[daemon] group`) can open, e.g. $XDG_RUNTIME_DIR/provisioning/provisioning.sock (created {folder_mode:o} when missing)",
                folder.display(),
                meta.uid(),
                meta.gid(),
                meta.mode() & 0o777
            );
        }
    } else {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create the socket folder {}", folder.display()))?;
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(folder_mode))
            .with_context(|| format!("cannot set the mode of {}", folder.display()))?;
        if let Some(gid) = group {
            nix::unistd::chown(folder, None, Some(gid)).with_context(|| {
                format!("cannot give {} to the `[daemon] group`", folder.display())
            })?;
        }
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "a server is already listening on {}; stop it first (or use it)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    // Everything a client reads beside the socket (the pid, the Control Center's URL) is written
    // before the socket exists: `daemon start` returns as soon as it can connect.
    let pid_file = path.with_extension("pid");
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write {}", pid_file.display()))?;
    let url_file = path.with_extension("url");
    let _ = std::fs::remove_file(&url_file);
    let mut link = settings.file.approvals.link.clone();
    if let Some(addr) = control_center {
        let url = loopback(ctx.clone(), openai.clone(), settings, addr).await?;
        link.get_or_insert_with(|| url.clone());
        std::fs::write(&url_file, format!("{url}\n"))
            .with_context(|| format!("cannot write {}", url_file.display()))?;
        tracing::info!("Control Center for this machine's accounts at {url}");
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(gid))
            .with_context(|| format!("cannot give {} to the `[daemon] group`", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(socket_mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    let accounts = settings.accounts();
    // Browsers cannot open a Unix socket; clients send `Host: localhost`.
    let allowed = Allowed::new(80, &[], &[]).map_err(anyhow::Error::msg)?;
    let app = compose(
        ctx.clone(),
        openai,
        link,
        vec!["localhost".into()],
        vec!["http://localhost".into()],
        allowed,
        Auth::Kernel(accounts),
    )?;
    println!("listening on unix:{}", path.display());
    tracing::info!(
        "provisioning local server on {} ({}; callers identified by the kernel; data in {})",
        path.display(),
        match &settings.file.daemon.group {
            Some(g) => format!("the owner and group `{g}`"),
            None => "owner-only".into(),
        },
        settings.data_dir.display()
    );
    use std::io::Write as _;
    std::io::stdout().flush().ok();
    let cleanup = path.to_path_buf();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<crate::http::kernel::Peer>(),
    )
    .with_graceful_shutdown(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    })
    .await
    .context("the local server stopped with an error")?;
    let _ = std::fs::remove_file(&cleanup);
    let _ = std::fs::remove_file(cleanup.with_extension("pid"));
    let _ = std::fs::remove_file(cleanup.with_extension("url"));
    Ok(ExitCode::SUCCESS)
}

/// The local server's app on a loopback TCP address as well, for browsers (which cannot open
/// a Unix socket): each connection is the account the kernel says opened it, with the same
/// roles as on the socket; Host and Origin must be this address's own. Returns the page's URL.
async fn loopback(
    ctx: Arc<App>,
    openai: Drafter,
    settings: &Settings,
    addr: &str,
) -> anyhow::Result<String> {
    let addr: SocketAddr = addr.parse().with_context(|| {
        format!("--control-center `{addr}`: expected a loopback HOST:PORT, e.g. 127.0.0.1:7071")
    })?;
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "--control-center {addr} is not a loopback address; the Control Center of the local server answers this machine only (a team serves it with `serve --http` and tokens)"
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let allowed = Allowed::new(bound.port(), &[], &[]).map_err(anyhow::Error::msg)?;
    let hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()];
    let origins: Vec<String> = ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .map(|h| format!("http://{h}:{}", bound.port()))
        .collect();
    let link = settings
        .file
        .approvals
        .link
        .clone()
        .unwrap_or_else(|| format!("http://{bound}/"));
    let app = compose(
        ctx,
        openai,
        Some(link),
        hosts,
        origins,
        allowed,
        Auth::Loopback(crate::http::loopback::Loopback {
            accounts: settings.accounts(),
            server: bound,
        }),
    )?;
    tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
        if let Err(e) = served {
            tracing::error!("the Control Center listener stopped: {e}");
        }
    });
    Ok(format!("http://{bound}/"))
}

/// Who a request is: its bearer token (HTTP), or the account the kernel reports for the peer
/// (the local server's Unix socket).
enum Auth {
    Tokens {
        tokens: std::collections::BTreeMap<String, Caller>,
        rate_limit: f64,
        /// The config file, re-read for tokens when it changes.
        reload: Option<std::path::PathBuf>,
    },
    Kernel(crate::http::kernel::Accounts),
    /// The account the kernel says opened a loopback TCP connection (the Control Center).
    Loopback(crate::http::loopback::Loopback),
}

/// The app: streamable MCP at `/mcp`, REST at `/api/v1`, `/metrics` behind `auth`, the public
/// page, OpenAPI document and health checks, all behind the edge layers.
fn compose(
    ctx: Arc<App>,
    openai: Drafter,
    approval_link: Option<String>,
    hosts: Vec<String>,
    origins: Vec<String>,
    allowed: Allowed,
    auth: Auth,
) -> anyhow::Result<axum::Router> {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(MAX_BODY_BYTES);
    let service: StreamableHttpService<ProvisioningServer, LocalSessionManager> =
        StreamableHttpService::new(
            {
                let ctx = ctx.clone();
                move || {
                    Ok(ProvisioningServer::new(ctx.clone())
                        .with_openai(openai.clone())
                        .with_control_center(approval_link.as_deref()))
                }
            },
            Default::default(),
            config,
        );
    let metrics = Arc::new(Metrics::default());
    crate::http::metrics::follow(ctx.clone(), metrics.clone());
    let (api, openapi) = crate::api::router();
    let spec = openapi
        .to_pretty_json()
        .context("the OpenAPI document does not serialize")?;
    let protected = axum::Router::new()
        .nest_service("/mcp", service)
        .merge(
            api.with_state(ctx.clone())
                .layer(axum::middleware::from_fn_with_state(
                    ctx.engine.redactor.clone(),
                    crate::api::redact_responses,
                )),
        )
        .route(
            "/metrics",
            get(crate::http::metrics::render).with_state(metrics.clone()),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    let protected = match auth {
        Auth::Tokens {
            tokens,
            rate_limit,
            reload,
        } => {
            let mut gate = Gate::new(tokens, rate_limit, metrics.clone());
            if let Some(path) = reload {
                gate = gate.reloading(path, crate::settings::reload_tokens);
            }
            let gate = Arc::new(gate);
            crate::http::authenticated(protected, gate)
        }
        Auth::Kernel(accounts) => protected.layer(axum::middleware::from_fn_with_state(
            Arc::new(accounts),
            crate::http::kernel::identify,
        )),
        Auth::Loopback(loopback) => protected.layer(axum::middleware::from_fn_with_state(
            Arc::new(loopback),
            crate::http::loopback::identify,
        )),
    };
    let app = protected
        .route(
            "/api/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], spec) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(control_center))
        .route(
            "/readyz",
            get({
                let ctx = ctx.clone();
                move || readyz(ctx.clone())
            }),
        );
    let app = crate::http::harden(
        app,
        &Edge {
            allowed: Arc::new(allowed),
            metrics,
        },
    );
    Ok(app)
}

/// `serve --connect PATH`: MCP from stdio passed through, message by message, to the local
/// server's `/mcp` on its Unix socket (streamable HTTP), and its messages (responses, progress,
/// sampling and elicitation requests) back to stdio. Nothing is interpreted here: the local
/// server decides who the caller is (the kernel's word) and what it may do.
async fn pass_through(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    use rmcp::transport::Transport as _;
    use rmcp::transport::async_rw::AsyncRwTransport;
    use rmcp::transport::streamable_http_client::{
        StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
    };
    tokio::net::UnixStream::connect(path)
        .await
        .with_context(|| {
            format!(
                "no local server answers on {}; start one with `provisioning serve --socket {}`",
                path.display(),
                path.display()
            )
        })?;
    let http = reqwest::Client::builder()
        .unix_socket(path)
        .build()
        .context("cannot make an HTTP client for the socket")?;
    let mut upstream = StreamableHttpClientTransport::with_client(
        http,
        StreamableHttpClientTransportConfig::with_uri("http://localhost/mcp"),
    );
    let mut downstream = AsyncRwTransport::<rmcp::RoleServer, _, _>::new_server(
        tokio::io::stdin(),
        tokio::io::stdout(),
    );
    tracing::info!(
        "provisioning MCP over stdio, passed through to the local server on {}",
        path.display()
    );
    loop {
        tokio::select! {
            from_client = downstream.receive() => match from_client {
                Some(message) => upstream
                    .send(message)
                    .await
                    .map_err(|e| anyhow::anyhow!("the local server on {} stopped answering: {e}", path.display()))?,
                None => break,
            },
            from_server = upstream.receive() => match from_server {
                Some(message) => downstream
                    .send(message)
                    .await
                    .context("stdout closed")?,
                None => anyhow::bail!("the local server on {} closed the session", path.display()),
            },
        }
    }
    let _ = upstream.close().await;
    Ok(ExitCode::SUCCESS)
}
