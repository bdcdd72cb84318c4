//! The local server on its Unix socket (`provisioning serve --socket PATH`): callers are the
//! operating-system accounts the kernel reports, with the roles the server's own config gives
//! them, whatever the caller's environment says; the socket is owner-only.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libtest_mimic::Trial;
use serde_json::{Value, json};
use tests::scratch;

use crate::check;
use crate::mcp::{Dir, Server, dev_config};

mod accounts;
use accounts::make_account;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("local::the_kernel_says_who_calls", || {
            check(the_kernel_says_who_calls)
        }),
        Trial::test("local::two_assistants_and_the_cli_share_one_server", || {
            check(two_assistants_and_the_cli_share_one_server)
        }),
        Trial::test("local::serve_local_starts_the_daemon_on_first_use", || {
            check(serve_local_starts_the_daemon_on_first_use)
        }),
        Trial::test("local::a_group_member_is_another_person", || {
            check(accounts::a_group_member_is_another_person)
        }),
        Trial::test(
            "local::the_control_center_approves_while_the_assistant_is_connected",
            || check(the_control_center_approves_while_the_assistant_is_connected),
        ),
    ]
}

/// Starts `serve --socket` on `dir`; returns the child and the socket path.
fn serve_socket(dir: &Path) -> (std::process::Child, PathBuf) {
    let socket = dir.join("run").join("provisioning.sock");
    let mut child = Command::new(tests::binary())
        .args(["serve", "--socket"])
        .arg(&socket)
        .current_dir(tests::root())
        .env("PROVISIONING_PATHS_DATA_DIR", dir.join("data"))
        .env("PROVISIONING_CONFIG", dir.join("config.toml"))
        .env("PROVISIONING_PATHS_MODELS_DIR", dir.join("no-models"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    assert_eq!(
        line.trim(),
        format!("listening on unix:{}", socket.display()),
        "no socket announced"
    );
    (child, socket)
}

fn client(socket: &Path) -> reqwest::Client {
    reqwest::Client::builder()
        .unix_socket(socket)
        .build()
        .unwrap()
}

pub(crate) fn my_name() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn the_kernel_says_who_calls() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = Dir(scratch("local-socket"));
    std::fs::write(dir.0.join("config.toml"), "").unwrap();
    let me = my_name();
    let (child, socket) = serve_socket(&dir.0);
    let server = Server(child);
    // Owner-only: the folder 0700, the socket 0600.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(socket.parent().unwrap()), 0o700);
    assert_eq!(mode(&socket), 0o600);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = client(&socket);
        // The owner of the data directory, with every role; nothing the client sends changes it.
        let who: Value = http
            .get("http://localhost/api/v1/whoami")
            .header("x-provisioning-as", "user:bob:approver")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(who["principal"], format!("user:{me}"), "{who}");
        assert_eq!(who["roles"], json!(["operator", "approver"]), "{who}");

        // Their own dev apply goes through the socket and is recorded as theirs.
        let plan: Value = http
            .post("http://localhost/api/v1/plans")
            .json(&json!({ "config": dev_config(1) }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = plan["id"].as_str().unwrap_or_else(|| panic!("{plan}"));
        let r = http
            .post(format!("http://localhost/api/v1/plans/{id}/apply"))
            .header(tests_cli_header(), "cli")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let audit: Value = http
            .get("http://localhost/api/v1/audit?kind=decision&limit=20")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["actor"] == format!("user:{me}") && e["data"]["channel"] == "cli"),
            "{audit}"
        );
    });

    // MCP over the same socket is the person's agent.
    let out = Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(&socket)
        .args([
            "http://localhost/mcp",
            "-H",
            "content-type: application/json",
            "-H",
            "accept: application/json, text/event-stream",
            "-d",
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"serverInfo\""), "{text}");

    // A socket in a folder others can open is refused before anything listens.
    let shared = dir.0.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(tests::binary())
        .args(["serve", "--socket"])
        .arg(shared.join("p.sock"))
        .env("PROVISIONING_PATHS_DATA_DIR", dir.0.join("data2"))
        .env("PROVISIONING_CONFIG", dir.0.join("config.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("not this account's alone"), "{err}");
    assert!(!shared.join("p.sock").exists());

    // Another operating-system account cannot even connect.
    if me == "root" && Path::new("/usr/sbin/useradd").exists() {
        let name = format!("provt{}", std::process::id() % 100_000);
        let uid = make_account(&name, None);
        let out = Command::new("setpriv")
            .args([
                "--reuid",
                &uid,
                "--regid",
                &uid,
                "--clear-groups",
                "curl",
                "-sS",
                "--unix-socket",
            ])
            .arg(&socket)
            .arg("http://localhost/api/v1/whoami")
            .output()
            .unwrap();
        let _ = Command::new("userdel").arg(&name).status();
        assert!(
            !out.status.success(),
            "another account reached the socket: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("principal"));
    }
    drop(server);
}

fn tests_cli_header() -> &'static str {
    "x-provisioning-client"
}

/// Two MCP clients (the official Python SDK) through `serve --connect`, and the CLI over the
/// same socket, all at once (tests/python/local_server.py).
fn two_assistants_and_the_cli_share_one_server() {
    let py = crate::mcp::python();
    assert!(
        py.exists(),
        "no Python with the `mcp` package at {}; run scripts/test",
        py.display()
    );
    let dir = Dir(scratch("local-assistants"));
    std::fs::write(dir.0.join("config.toml"), "").unwrap();
    let (child, socket) = serve_socket(&dir.0);
    let _server = Server(child);
    let out = Command::new(&py)
        .arg(tests::root().join("tests/python/local_server.py"))
        .arg(tests::binary())
        .arg(&dir.0)
        .arg(&socket)
        .current_dir(tests::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "local server flow failed ({:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("local server flow: ok"));
}

/// `provisioning` with the test installation's data directory and config.
fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(tests::binary())
        .args(args)
        .current_dir(tests::root())
        .env("PROVISIONING_PATHS_DATA_DIR", dir.join("data"))
        .env("PROVISIONING_CONFIG", dir.join("config.toml"))
        .env("PROVISIONING_PATHS_MODELS_DIR", dir.join("no-models"))
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// With the local server holding the state (an assistant connected), the person's plan, apply,
/// state, drift, status and destroy at the CLI go through it, as the account the kernel reports
/// whatever `USER` says, and a config of the caller's choosing gives them nothing.
fn the_cli_works_through_the_server(dir: &Path) {
    let config = dir.join("lab.ncl");
    std::fs::write(&config, crate::mcp::dev_config(2)).unwrap();
    let config = config.to_str().unwrap();
    // A config the caller wrote, naming policies that forbid nothing: the server never reads it.
    std::fs::write(
        dir.join("mine.toml"),
        "[users.mallory]\nroles = [\"operator\", \"approver\"]\n[access]\ndefault_roles = []\n",
    )
    .unwrap();
    let as_mallory = |args: &[&str]| {
        Command::new(tests::binary())
            .args(args)
            .current_dir(tests::root())
            .env("PROVISIONING_PATHS_DATA_DIR", dir.join("data"))
            .env("PROVISIONING_CONFIG", dir.join("mine.toml"))
            .env("PROVISIONING_PATHS_MODELS_DIR", dir.join("no-models"))
            .env("USER", "mallory")
            .env("LOGNAME", "mallory")
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .unwrap()
    };

    let plan = as_mallory(&["plan", config]);
    assert!(plan.status.success(), "{}", text(&plan));
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert!(
        shown.contains("+ server n1") && shown.contains("apply --plan"),
        "{}",
        text(&plan)
    );

    let applied = as_mallory(&["apply", config, "--yes", "--json"]);
    assert!(applied.status.success(), "{}", text(&applied));
    let outcome: Value = serde_json::from_slice(&applied.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&applied)));
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert_eq!(
        outcome["succeeded"], 4,
        "two servers and their taskservs: {outcome}"
    );
    let progress = String::from_utf8_lossy(&applied.stderr);
    assert!(
        progress.contains("[4/4] ok"),
        "the server's events, followed: {progress}"
    );

    let state = as_mallory(&["state", "--json"]);
    assert!(state.status.success(), "{}", text(&state));
    let resources: Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(resources.as_array().map(Vec::len), Some(4), "{resources}");
    let unknown = as_mallory(&["state", "--workspace", "lob"]);
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("did you mean `lab`"),
        "{}",
        text(&unknown)
    );
    let drift = as_mallory(&["drift", "--workspace", "lab"]);
    assert!(drift.status.success(), "{}", text(&drift));
    assert!(
        String::from_utf8_lossy(&drift.stdout).contains("no drift"),
        "{}",
        text(&drift)
    );

    // Nothing new to do: the same config plans no change.
    let again = as_mallory(&["apply", config, "--yes", "--json"]);
    assert!(again.status.success(), "{}", text(&again));
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["result"], "no_changes", "{again}");

    // The person's own dev destroy, after the confirmation (--yes).
    let destroyed = as_mallory(&["destroy", config, "--yes", "--json"]);
    assert!(destroyed.status.success(), "{}", text(&destroyed));
    let state = as_mallory(&["state", "--json"]);
    let resources: Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(resources.as_array().map(Vec::len), Some(0), "{resources}");

    // The audit log names the account the kernel reported, on the CLI's channel; mallory and
    // the caller's config appear nowhere.
    let audit = cli(dir, &["audit", "export"]);
    assert!(audit.status.success(), "{}", text(&audit));
    let log = String::from_utf8_lossy(&audit.stdout);
    let me = format!("user:{}", my_name());
    let entries: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect();
    let decisions: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "decision").collect();
    assert_eq!(decisions.len(), 2, "the apply and the destroy: {log}");
    for e in &decisions {
        assert_eq!(e["actor"], me.as_str(), "{e}");
        assert_eq!(e["data"]["channel"], "cli", "{e}");
    }
    let actions: Vec<&str> = decisions
        .iter()
        .filter_map(|e| e["data"]["action"].as_str())
        .collect();
    assert_eq!(actions, ["apply", "destroy"], "{log}");
    let runs = entries.iter().filter(|e| e["kind"] == "workflow").count();
    assert_eq!(runs, 2, "{log}");
    assert!(!log.contains("mallory"), "{log}");
}

/// Plain `serve` (what an assistant's config runs; the same as `serve --local`) starts the
/// installation's local server when none runs and passes MCP through to it; `daemon
/// status|stop` see and stop it.
fn serve_local_starts_the_daemon_on_first_use() {
    use rmcp::ServiceExt as _;
    let dir = Dir(scratch("local-daemon"));
    std::fs::write(dir.0.join("config.toml"), "").unwrap();
    let status = cli(&dir.0, &["daemon", "status"]);
    assert_eq!(status.status.code(), Some(3), "nothing runs yet");
    // A server that cannot start says why, from its log, where it is asked to start.
    std::fs::write(
        dir.0.join("config.toml"),
        "[daemon]\ngroup = \"no-such-group-here\"\n",
    )
    .unwrap();
    let failed = cli(&dir.0, &["daemon", "start"]);
    assert!(!failed.status.success(), "{}", text(&failed));
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("no such group on this machine"),
        "{}",
        text(&failed)
    );
    std::fs::write(dir.0.join("config.toml"), "").unwrap();
    // A failed assertion must not leave the local server running.
    struct Stop<'a>(&'a Path);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = cli(self.0, &["daemon", "stop"]);
        }
    }
    let _stop = Stop(&dir.0);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut cmd = tokio::process::Command::new(tests::binary());
        cmd.args(["serve"])
            .current_dir(tests::root())
            .env("PROVISIONING_PATHS_DATA_DIR", dir.0.join("data"))
            .env("PROVISIONING_CONFIG", dir.0.join("config.toml"))
            .env("PROVISIONING_PATHS_MODELS_DIR", dir.0.join("no-models"))
            .env_remove("XDG_RUNTIME_DIR")
            .stderr(Stdio::null());
        let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
        let client = ().serve(transport).await.unwrap();
        let tools = client.list_all_tools().await.unwrap();
        assert!(tools.iter().any(|t| t.name == "apply_plan"), "{tools:?}");

        // While the assistant is connected, the CLI reaches the same server.
        let status = cli(&dir.0, &["daemon", "status"]);
        let text = String::from_utf8_lossy(&status.stdout);
        assert_eq!(status.status.code(), Some(0), "{text}");
        assert!(text.contains("running") && text.contains("roles"), "{text}");
        // Without --server, the commands that can ask a server ask the local one (the state is
        // open there), as the account the kernel reports.
        let listed = cli(&dir.0, &["approvals", "list"]);
        assert!(
            listed.status.success(),
            "{}",
            String::from_utf8_lossy(&listed.stderr)
        );
        let audit = cli(&dir.0, &["audit", "verify"]);
        assert!(
            audit.status.success(),
            "{}{}",
            String::from_utf8_lossy(&audit.stdout),
            String::from_utf8_lossy(&audit.stderr)
        );
        the_cli_works_through_the_server(&dir.0);
        client.cancel().await.unwrap();
    });

    // The local server outlives the assistant's session, until it is stopped.
    assert_eq!(cli(&dir.0, &["daemon", "status"]).status.code(), Some(0));
    let stop = cli(&dir.0, &["daemon", "stop"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert_eq!(cli(&dir.0, &["daemon", "status"]).status.code(), Some(3));
}

/// The person alone with their assistant: the assistant (the official Python SDK), connected
/// through plain `serve` the whole time, builds a dev stack and then asks to destroy it; the local server's Control
/// Center, opened in a real browser without any token (the kernel says which account opened
/// the loopback connection), shows the request and the person approves it there, out of band;
/// the assistant's next `apply_plan` runs it. Another account reaching the same page has no
/// roles.
fn the_control_center_approves_while_the_assistant_is_connected() {
    let dir = Dir(scratch("local-cc"));
    std::fs::write(dir.0.join("config.toml"), "").unwrap();
    struct Stop<'a>(&'a Path);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = cli(self.0, &["daemon", "stop"]);
        }
    }
    let _stop = Stop(&dir.0);
    let started = cli(&dir.0, &["daemon", "start"]);
    assert!(started.status.success(), "{}", text(&started));
    let said = String::from_utf8_lossy(&started.stdout).to_string();
    let url = said
        .lines()
        .find_map(|l| l.strip_prefix("Control Center: "))
        .unwrap_or_else(|| panic!("no Control Center URL: {said}"))
        .trim_end_matches('/')
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let status = cli(&dir.0, &["daemon", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(&url),
        "{}",
        text(&status)
    );

    // The assistant: the official Python SDK over plain `serve`, connected throughout.
    let py = crate::mcp::python();
    assert!(
        py.exists(),
        "no Python with the `mcp` package at {}",
        py.display()
    );
    let mut assistant = Command::new(&py)
        .arg(tests::root().join("tests/python/control_center_flow.py"))
        .arg(tests::binary())
        .arg(&dir.0)
        .current_dir(tests::root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = std::io::BufReader::new(assistant.stdout.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    let asked: Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(e) => {
            let _ = assistant.kill();
            let out = assistant.wait_with_output().unwrap();
            panic!("{e}: {line:?}; {}", text(&out))
        }
    };
    let request = asked["request"].as_str().unwrap().to_string();
    // The assistant was given the Control Center's link to the request (the local server's
    // own page); opening it finds the request, approving still takes the person.
    let link = asked["link"].as_str().unwrap_or_default().to_string();
    assert_eq!(link, format!("{url}/#approval/{request}"), "{asked}");

    // The person, in a browser, opens the link.
    let artifacts = tests::root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("local-control-center.png");
    let browser = Command::new("node")
        .arg(tests::root().join("tests/browser/local_approve.cjs"))
        .env("NODE_PATH", crate::api::node_modules())
        .env("BASE_URL", &url)
        .env("REQUEST_ID", &request)
        .env("LINK", &link)
        .env("ACCOUNT", my_name())
        .env("SCREENSHOT", &shot)
        .output()
        .unwrap();
    if !browser.status.success() {
        let _ = assistant.kill();
    }
    assert!(browser.status.success(), "browser: {}", text(&browser));

    // Still connected: the assistant's next apply runs the approved destroy.
    use std::io::Write as _;
    writeln!(assistant.stdin.take().unwrap(), "approved").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut said, &mut rest).unwrap();
    let out = assistant.wait_with_output().unwrap();
    assert!(
        out.status.success() && rest.contains("control center flow: ok"),
        "assistant: {rest}\n{}",
        text(&out)
    );

    // The approval is the person's, given over the page (channel rest), not the assistant's.
    let audit = cli(&dir.0, &["audit", "export"]);
    let granted: Vec<Value> = String::from_utf8_lossy(&audit.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "approval_granted")
        .collect();
    assert_eq!(granted.len(), 1, "{}", text(&audit));
    assert_eq!(granted[0]["actor"], format!("user:{}", my_name()));

    // Another account on this machine reaches the page as itself, with no roles.
    if my_name() == "root" && Path::new("/usr/sbin/useradd").exists() {
        let name = format!("provp{}", std::process::id() % 100_000);
        let uid = make_account(&name, None);
        let out = Command::new("setpriv")
            .args([
                "--reuid",
                &uid,
                "--regid",
                &uid,
                "--clear-groups",
                "curl",
                "-sS",
            ])
            .arg(format!("{url}/api/v1/whoami"))
            .output()
            .unwrap();
        let _ = Command::new("userdel").arg(&name).status();
        let who: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        assert_eq!(who["principal"], format!("user:{name}"), "{who}");
        assert_eq!(who["roles"], json!([]), "{who}");
    }
}
