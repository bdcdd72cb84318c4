//! The MCP server end to end: the real binary (`provisioning serve`) driven by rmcp's own
//! client over stdio and over streamable HTTP, against the embedded SurrealDB store, the sim
//! provider and the default Cedar policies.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use libtest_mimic::Trial;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, NumberOrString, ProgressNotificationParam,
    ProgressToken, RequestMetaObject,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use tests::{binary, root, scratch};

use crate::check;

mod drafting;
mod fencing;
mod outside_clients;
mod sdk_flows;

pub(crate) use sdk_flows::python;

/// Counts progress notifications.
#[derive(Clone, Default)]
pub(crate) struct Client {
    progress: Arc<AtomicUsize>,
}

impl ClientHandler for Client {
    async fn on_progress(
        &self,
        _params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.fetch_add(1, Ordering::SeqCst);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::default()
    }
}

/// Bob's token on a team server (`serve --http`) over the same installation.
const BOB_TOKEN: &str = "bob-token-for-the-mcp-trials-0123456789";

/// The people besides the account running the tests (who owns the installation, so has every
/// role): bob, an approver, whose token a team server maps to him.
fn people() -> String {
    use sha2::Digest;
    format!(
        "[users.bob]\nroles = [\"approver\"]\ntoken_sha256 = \"{:x}\"\n",
        sha2::Sha256::digest(BOB_TOKEN.as_bytes())
    )
}

/// The words the drafter turns into the dev config below (3 sim servers with nginx).
const INTENT: &str = "three small sim servers with nginx in sim-1 for the dev workspace lab";

pub(crate) fn dev_config(n: usize) -> String {
    let servers: Vec<String> = (1..=n)
        .map(|i| {
            format!(r#"{{ name = "n{i}", provider = "sim", plan = "small", zone = "sim-1", taskservs = ["nginx"] }}"#)
        })
        .collect();
    format!(
        "{{ workspace = {{ name = \"lab\", environment = \"dev\" }}, servers = [{}], workflow = {{ parallel_limit = 2 }} }}",
        servers.join(", ")
    )
}

pub(crate) const PROD: &str = r#"{ workspace = { name = "shop", environment = "prod" }, servers = [{ name = "w1", provider = "sim", plan = "small", zone = "sim-1" }] }"#;

fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap_or_default()
}

pub(crate) fn structured(result: &CallToolResult) -> serde_json::Value {
    assert_ne!(result.is_error, Some(true), "tool failed: {result:?}");
    result.structured_content.clone().unwrap_or_default()
}

fn error_text(result: &CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected a tool error: {result:?}"
    );
    serde_json::to_string(&result.content).unwrap()
}

pub(crate) struct Dir(pub(crate) PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn command(dir: &std::path::Path, extra: &[&str]) -> tokio::process::Command {
    std::fs::write(dir.join("config.toml"), people()).unwrap();
    let mut cmd = tokio::process::Command::new(binary());
    // This process holds the state: the trials look at it after the server exits.
    cmd.args(["serve", "--standalone"])
        .args(extra)
        .current_dir(root())
        .env("PROVISIONING_PATHS_DATA_DIR", dir.join("data"))
        .env("PROVISIONING_CONFIG", dir.join("config.toml"))
        .env("XDG_CONFIG_HOME", "/nonexistent/provisioning-tests")
        .env("PROVISIONING_PATHS_MODELS_DIR", dir.join("no-models"))
        // Who the stdio server acts for is the account the kernel reports, not this.
        .env("USER", "alice")
        .stderr(Stdio::null());
    cmd
}

/// `provisioning ARGS` on the same data dir and config as the server, as the account running
/// the tests (`USER` says otherwise, to no effect).
fn cli_here(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let data = dir.join("data").display().to_string();
    let config = dir.join("config.toml").display().to_string();
    tests::run_env(
        &root(),
        args,
        &[
            ("PROVISIONING_PATHS_DATA_DIR", data.as_str()),
            ("PROVISIONING_CONFIG", config.as_str()),
            ("USER", "bob"),
        ],
    )
}

/// `provisioning ARGS` as bob: his token, on a team server started over the installation for
/// the command.
fn cli_as_bob(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let (child, url) = start_http(dir);
    let _server = Server(child);
    let data = dir.join("data").display().to_string();
    tests::run_env(
        &root(),
        args,
        &[
            ("PROVISIONING_PATHS_DATA_DIR", data.as_str()),
            ("PROVISIONING_SERVER", url.as_str()),
            ("PROVISIONING_TOKEN", BOB_TOKEN),
        ],
    )
}

pub(crate) async fn call<H: ClientHandler>(
    client: &RunningService<RoleClient, H>,
    name: &'static str,
    arguments: serde_json::Value,
) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(name).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Draft → validate → plan → apply over stdio, with progress; a prod plan stops at the gate.
fn stdio_flow() {
    let dir = Dir(scratch("mcp-stdio"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let handler = Client::default();
        let transport = TokioChildProcess::new(command(&dir.0, &[])).unwrap();
        let client = handler.clone().serve(transport).await.unwrap();

        let tools = client.list_all_tools().await.unwrap();
        let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        for expected in [
            "validate_config",
            "plan_changes",
            "check_policy",
            "apply_plan",
            "get_workflow",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing: {names:?}"
            );
        }
        // What the model sees: any change to names, descriptions, schemas or annotations
        // fails here until the snapshot is reviewed (`cargo insta review`).
        let surface: Vec<serde_json::Value> = tools
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.input_schema,
                    "output_schema": t.output_schema,
                    "annotations": t.annotations,
                })
            })
            .collect();
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_json_snapshot!("mcp_tools_list", surface);
        });
        let apply = tools.iter().find(|t| t.name == "apply_plan").unwrap();
        let ann = apply.annotations.clone().unwrap();
        assert_eq!(ann.destructive_hint, Some(true));
        assert_eq!(ann.read_only_hint, Some(false));
        assert!(
            apply.output_schema.is_some(),
            "structured output is published"
        );

        // A broken config gets structured diagnostics to repair it with.
        let bad = dev_config(1).replace("sim-1", "sim-9");
        let v = structured(
            &call(
                &client,
                "validate_config",
                serde_json::json!({ "config": bad }),
            )
            .await,
        );
        assert_eq!(v["valid"], false);
        assert!(v["diagnostics"].to_string().contains("sim-9"), "{v}");

        // Words → a config, from the built-in drafter (this client offers no sampling), with
        // its assumptions; the draft is valid as returned.
        let drafted = structured(
            &call(&client, "draft_config", serde_json::json!({ "intent": INTENT })).await,
        );
        assert_eq!(drafted["drafter"], "built-in", "{drafted}");
        assert_eq!(drafted["valid"], true, "{drafted}");
        let servers = drafted["config"]["servers"].as_array().unwrap();
        assert_eq!(servers.len(), 3, "{drafted}");
        assert!(servers.iter().all(|s| s["provider"] == "sim" && s["zone"] == "sim-1"));
        let config = drafted["nickel"].as_str().unwrap().to_string();
        let v = structured(
            &call(
                &client,
                "validate_config",
                serde_json::json!({ "config": config }),
            )
            .await,
        );
        assert_eq!(v["valid"], true, "{v}");
        let plan = structured(
            &call(
                &client,
                "plan_changes",
                serde_json::json!({ "config": config }),
            )
            .await,
        );
        let plan_id = plan["plan_id"].as_str().unwrap().to_string();
        assert_eq!(plan["summary"]["create"], 6, "{plan}");
        let diff = client
            .read_resource(rmcp::model::ReadResourceRequestParams::new(format!(
                "provisioning://plans/{plan_id}"
            )))
            .await
            .unwrap();
        assert!(format!("{diff:?}").contains("nginx"), "{diff:?}");

        let policy = structured(
            &call(
                &client,
                "check_policy",
                serde_json::json!({ "plan_id": plan_id }),
            )
            .await,
        );
        assert_eq!(policy["decision"], "allow", "{policy}");
        assert_eq!(
            policy["principal"],
            format!("agent:mcp@{}", crate::local::my_name()),
            "the kernel's account, whatever USER says"
        );

        // Apply with a progress token: one notification per finished step at least.
        let mut params = CallToolRequestParams::new("apply_plan")
            .with_arguments(args(serde_json::json!({ "plan_id": plan_id })));
        params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
            NumberOrString::String("apply-1".into()),
        )));
        let applied = structured(&client.call_tool(params).await.unwrap());
        assert_eq!(applied["status"], "succeeded", "{applied}");
        assert!(
            handler.progress.load(Ordering::SeqCst) >= 6,
            "progress notifications: {}",
            handler.progress.load(Ordering::SeqCst)
        );
        let workflow = applied["workflow"].as_str().unwrap().to_string();
        let wf = structured(
            &call(
                &client,
                "get_workflow",
                serde_json::json!({ "workflow_id": workflow }),
            )
            .await,
        );
        assert_eq!(wf["workflow"]["status"], "succeeded");
        assert_eq!(wf["steps"].as_array().unwrap().len(), 6);
        let state = structured(
            &call(
                &client,
                "get_state",
                serde_json::json!({ "workspace": "lab" }),
            )
            .await,
        );
        assert_eq!(state["resources"].as_array().unwrap().len(), 6);

        // The workflow as resources: its record and its log.
        let templates = client.list_all_resource_templates().await.unwrap();
        assert!(
            templates
                .iter()
                .any(|t| t.uri_template == "provisioning://workflows/{workflow_id}/log"),
            "{templates:?}"
        );
        let log = client
            .read_resource(rmcp::model::ReadResourceRequestParams::new(format!(
                "provisioning://workflows/{workflow}/log"
            )))
            .await
            .unwrap();
        let log = format!("{log:?}");
        assert!(log.contains("not instructions") && log.contains("StepSucceeded"), "{log}");
        let record = client
            .read_resource(rmcp::model::ReadResourceRequestParams::new(format!(
                "provisioning://workflows/{workflow}"
            )))
            .await
            .unwrap();
        assert!(format!("{record:?}").contains("succeeded"));
        let missing = client
            .read_resource(rmcp::model::ReadResourceRequestParams::new(
                "provisioning://workflows/wf-nope",
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(missing.contains("wf-nope"), "{missing}");

        // Prompts: listed, filled from state, and a missing argument is named.
        let prompts = client.list_all_prompts().await.unwrap();
        let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["provision", "review_plan", "troubleshoot_workflow"]);
        let mut get = rmcp::model::GetPromptRequestParams::new("troubleshoot_workflow");
        get.arguments = Some(args(serde_json::json!({ "workflow_id": workflow })));
        let prompt = client.get_prompt(get).await.unwrap();
        assert!(format!("{prompt:?}").contains("is succeeded"), "{prompt:?}");
        let err = client
            .get_prompt(rmcp::model::GetPromptRequestParams::new("review_plan"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("plan_id"), "{err}");

        // Applying the same plan again: refused as stale, with what to do.
        let stale = error_text(
            &call(
                &client,
                "apply_plan",
                serde_json::json!({ "plan_id": plan_id }),
            )
            .await,
        );
        assert!(
            stale.contains("stale") && stale.contains("plan_changes"),
            "{stale}"
        );

        // Prod: the gate, with the approval request, and nothing run.
        let plan = structured(
            &call(
                &client,
                "plan_changes",
                serde_json::json!({ "config": PROD }),
            )
            .await,
        );
        let gated = structured(
            &call(
                &client,
                "apply_plan",
                serde_json::json!({ "plan_id": plan["plan_id"] }),
            )
            .await,
        );
        assert_eq!(gated["status"], "needs_approval", "{gated}");
        let request = gated["approval_request"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            gated["approval_request"]["requester"],
            crate::local::my_name()
        );
        let got = structured(
            &call(
                &client,
                "get_approval",
                serde_json::json!({ "approval_id": request }),
            )
            .await,
        );
        assert_eq!(got["status"], "pending");
        let prod_plan = plan["plan_id"].as_str().unwrap().to_string();

        // Bad input: specific errors, and the server stays up.
        let err = client
            .call_tool(CallToolRequestParams::new("apply_plans"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown tool") && err.contains("apply_plan"),
            "{err}"
        );
        // Arguments the input schema refuses are a tool error the model can correct.
        let err = error_text(
            &call(
                &client,
                "get_workflow",
                serde_json::json!({ "workflow_id": 7 }),
            )
            .await,
        );
        assert!(
            err.contains("argument `workflow_id`: 7 is not of type") && err.contains("string"),
            "{err}"
        );
        let err = error_text(
            &call(
                &client,
                "list_workflows",
                serde_json::json!({ "limit": 0, "workspce": "x" }),
            )
            .await,
        );
        assert!(
            err.contains("argument `limit`: 0 is less than the minimum of 1")
                && err.contains("unknown argument `workspce` (did you mean `workspace`?)"),
            "{err}"
        );
        let unknown = error_text(
            &call(
                &client,
                "apply_plan",
                serde_json::json!({ "plan_id": "plan-000000000000" }),
            )
            .await,
        );
        assert!(unknown.contains("no plan with id"), "{unknown}");
        let huge = "x".repeat(2 * 1024 * 1024);
        let big = error_text(
            &call(
                &client,
                "validate_config",
                serde_json::json!({ "config": huge }),
            )
            .await,
        );
        assert!(big.contains("largest accepted"), "{big}");
        assert!(client.list_all_tools().await.is_ok(), "still serving");
        client.cancel().await.unwrap();
        // The embedded store belongs to one process: wait for the server to let go of it.
        for _ in 0..40 {
            let out = cli_here(&dir.0, &["approvals", "list", "--json"]);
            if out.status.success() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }

        // A second person approves through the CLI; the agent's own person cannot.
        let own = cli_here(&dir.0, &["approvals", "approve", &request]);
        assert_eq!(own.status.code(), Some(4), "{own:?}");
        let ok = cli_as_bob(&dir.0, &["approvals", "approve", &request, "--comment", "ok"]);
        assert!(ok.status.success(), "{ok:?}");

        // The agent applies the same plan id again: now it runs.
        let transport = TokioChildProcess::new(command(&dir.0, &[])).unwrap();
        let client = Client::default().serve(transport).await.unwrap();
        let applied = structured(
            &call(&client, "apply_plan", serde_json::json!({ "plan_id": prod_plan })).await,
        );
        assert_eq!(applied["status"], "succeeded", "{applied}");
        let state = structured(
            &call(&client, "get_state", serde_json::json!({ "workspace": "shop" })).await,
        );
        assert_eq!(state["resources"].as_array().unwrap().len(), 1, "{state}");
        client.cancel().await.unwrap();
    });
}

/// `--read-only` lists only read tools and refuses the others server-side.
fn read_only_refuses_changes() {
    let dir = Dir(scratch("mcp-ro"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let transport = TokioChildProcess::new(command(&dir.0, &["--read-only"])).unwrap();
        let client = Client::default().serve(transport).await.unwrap();
        let tools = client.list_all_tools().await.unwrap();
        assert!(
            tools
                .iter()
                .all(|t| t.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true)),
            "{tools:?}"
        );
        assert!(!tools.iter().any(|t| t.name == "apply_plan"));
        let err = client
            .call_tool(
                CallToolRequestParams::new("apply_plan")
                    .with_arguments(args(serde_json::json!({ "plan_id": "plan-x" }))),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("read-only"), "{err}");
        client.cancel().await.unwrap();
    });
}

/// A raw HTTP/1.1 POST to `/mcp` with `body` (an `initialize` request when `None`); returns
/// the status code.
fn post_status(addr: &str, headers: &[(&str, &str)], body: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let body = body.unwrap_or(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    // The server may answer (and close) before reading a body it refuses.
    let _ = s.write_all(req.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `provisioning serve --http 127.0.0.1:0` on the trial's data dir; the child and its URL.
pub(crate) fn start_http(dir: &std::path::Path) -> (std::process::Child, String) {
    let (child, base) = tests::serve_http(dir, &[]).unwrap();
    (child, format!("{base}/mcp"))
}

/// Kills the child when dropped (a failed assertion must not leave a server running).
pub(crate) struct Server(pub(crate) std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn http_client(
    url: &str,
    token: &str,
    handler: Client,
) -> RunningService<RoleClient, Client> {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_string())
            .auth_header(token.to_string()),
    );
    handler.serve(transport).await.unwrap()
}

/// Streamable HTTP: bearer tokens map to principals, a foreign Origin gets 403, a missing or
/// wrong token 401, an oversized body 413; then rmcp's HTTP client runs the whole flow as the
/// token's principal: draft, validate, plan, apply with progress, the workflow log resource; a
/// prod plan stops at the gate and runs after a second person approved it through the CLI.
fn http_auth_and_origin() {
    use sha2::Digest;
    let dir = Dir(scratch("mcp-http"));
    let token = "t0ken-for-alice-1234567890";
    let hash = format!("{:x}", sha2::Sha256::digest(token.as_bytes()));
    std::fs::write(
        dir.0.join("config.toml"),
        format!(
            "[users.alice]\nroles = [\"operator\"]\ntoken_sha256 = \"{hash}\"\n\n{}",
            people()
        ),
    )
    .unwrap();
    let (child, url) = start_http(&dir.0);
    let server = Server(child);
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let bearer = format!("Bearer {token}");
    assert_eq!(post_status(&addr, &[], None), 401, "no token");
    assert_eq!(
        post_status(&addr, &[("Authorization", "Bearer wrong")], None),
        401,
        "wrong token"
    );
    assert_eq!(
        post_status(
            &addr,
            &[
                ("Authorization", &bearer),
                ("Origin", "http://evil.example")
            ],
            None
        ),
        403,
        "foreign origin"
    );
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"validate_config","arguments":{{"config":"{}"}}}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    assert_eq!(
        post_status(&addr, &[("Authorization", &bearer)], Some(&huge)),
        413,
        "a body over 1 MiB"
    );
    assert_eq!(
        post_status(&addr, &[("Authorization", &bearer)], None),
        200,
        "still up"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (prod_plan, request) = rt.block_on(async {
        let handler = Client::default();
        let client = http_client(&url, token, handler.clone()).await;
        assert!(client.list_all_tools().await.unwrap().len() >= 18);
        let drafted = structured(
            &call(
                &client,
                "draft_config",
                serde_json::json!({ "intent": INTENT }),
            )
            .await,
        );
        assert_eq!(drafted["valid"], true, "{drafted}");
        let config = drafted["nickel"].as_str().unwrap().to_string();
        let v = structured(
            &call(
                &client,
                "validate_config",
                serde_json::json!({ "config": config }),
            )
            .await,
        );
        assert_eq!(v["valid"], true);
        let plan = structured(
            &call(
                &client,
                "plan_changes",
                serde_json::json!({ "config": config }),
            )
            .await,
        );
        let mut params = CallToolRequestParams::new("apply_plan")
            .with_arguments(args(serde_json::json!({ "plan_id": plan["plan_id"] })));
        params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
            NumberOrString::String("http-apply".into()),
        )));
        let applied = structured(&client.call_tool(params).await.unwrap());
        assert_eq!(applied["status"], "succeeded", "{applied}");
        assert!(
            handler.progress.load(Ordering::SeqCst) >= 6,
            "progress over HTTP: {}",
            handler.progress.load(Ordering::SeqCst)
        );
        let log = client
            .read_resource(rmcp::model::ReadResourceRequestParams::new(format!(
                "provisioning://workflows/{}/log",
                applied["workflow"].as_str().unwrap()
            )))
            .await
            .unwrap();
        assert!(format!("{log:?}").contains("StepSucceeded"));

        let plan = structured(
            &call(
                &client,
                "plan_changes",
                serde_json::json!({ "config": PROD }),
            )
            .await,
        );
        let policy = structured(
            &call(
                &client,
                "check_policy",
                serde_json::json!({ "plan_id": plan["plan_id"] }),
            )
            .await,
        );
        assert_eq!(
            policy["principal"], "user:alice",
            "the token's principal: {policy}"
        );
        assert_eq!(policy["decision"], "needs_approval", "{policy}");
        let gated = structured(
            &call(
                &client,
                "apply_plan",
                serde_json::json!({ "plan_id": plan["plan_id"] }),
            )
            .await,
        );
        assert_eq!(gated["status"], "needs_approval", "{gated}");
        client.cancel().await.unwrap();
        (
            plan["plan_id"].as_str().unwrap().to_string(),
            gated["approval_request"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    });
    drop(server);

    let ok = cli_as_bob(
        &dir.0,
        &["approvals", "approve", &request, "--comment", "ok"],
    );
    assert!(ok.status.success(), "{ok:?}");
    let (child, url) = start_http(&dir.0);
    let _server = Server(child);
    rt.block_on(async {
        let client = http_client(&url, token, Client::default()).await;
        let applied = structured(
            &call(
                &client,
                "apply_plan",
                serde_json::json!({ "plan_id": prod_plan }),
            )
            .await,
        );
        assert_eq!(applied["status"], "succeeded", "{applied}");
        client.cancel().await.unwrap();
    });
}

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("mcp::http_auth_and_origin", || check(http_auth_and_origin)),
        Trial::test("mcp::typescript_sdk_flow", || {
            check(sdk_flows::typescript_sdk_flow)
        }),
        Trial::test("mcp::conformance_suite", || {
            check(outside_clients::conformance_suite)
        }),
        Trial::test("mcp::inspector_cli", || {
            check(outside_clients::inspector_cli)
        }),
        Trial::test("mcp::typescript_sdk_over_http", || {
            check(outside_clients::typescript_sdk_over_http)
        }),
        Trial::test("mcp::stdio_flow", || check(stdio_flow)),
        Trial::test("mcp::python_sdk_flow", || check(sdk_flows::python_sdk_flow)),
        Trial::test("mcp::python_sdk_follows_a_long_apply", || {
            check(sdk_flows::python_sdk_follows_a_long_apply)
        }),
        Trial::test("mcp::python_sdk_approves_through_the_link", || {
            check(sdk_flows::python_sdk_approves_through_the_link)
        }),
        Trial::test("mcp::python_sdk_task_survives_kill_9", || {
            check(sdk_flows::python_sdk_task_survives_kill_9)
        }),
        Trial::test("mcp::drafting_with_an_openai_endpoint", || {
            check(drafting::drafting_with_an_openai_endpoint)
        }),
        Trial::test("mcp::drafting_with_sampling_and_elicitation", || {
            check(drafting::drafting_with_sampling_and_elicitation)
        }),
        Trial::test("mcp::outside_text_stays_data", || {
            check(fencing::outside_text_stays_data)
        }),
        Trial::test("mcp::read_only_refuses_changes", || {
            check(read_only_refuses_changes)
        }),
    ]
}
