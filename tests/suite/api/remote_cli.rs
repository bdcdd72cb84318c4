//! The CLI against a running server (`--server URL` with a token): approvals, status, state,
//! audit and the refusals, with the server holding the embedded store the CLI never opens.

use super::*;

/// `provisioning ARGS --server BASE` with `token` in PROVISIONING_TOKEN, from a directory with
/// no state of its own.
fn remote_cli(base: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let elsewhere = scratch("api-cli-elsewhere");
    let data = elsewhere.display().to_string();
    let mut env = vec![
        ("PROVISIONING_SERVER", base),
        ("PROVISIONING_PATHS_DATA_DIR", data.as_str()),
    ];
    if let Some(t) = token {
        env.push(("PROVISIONING_TOKEN", t));
    }
    tests::run_env(&tests::root(), args, &env)
}

/// The CLI's approvals, status and audit against a running server (the server holds the
/// embedded store; the CLI never opens it).
pub(super) fn cli_over_rest() {
    let dir = Dir(scratch("api-cli"));
    std::fs::write(dir.0.join("config.toml"), people()).unwrap();
    let (child, url) = start_http(&dir.0);
    let _server = Server(child);
    let base = url.trim_end_matches("/mcp").to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = Api {
        base: base.clone(),
        http: reqwest::Client::new(),
    };
    let (plan, request) = rt.block_on(async {
        let (_, plan) = api
            .post("/api/v1/plans", ALICE, json!({ "config": PROD }))
            .await;
        let plan_id = plan["id"].as_str().unwrap().to_string();
        let (s, gated) = api
            .post(&format!("/api/v1/plans/{plan_id}/apply"), ALICE, json!({}))
            .await;
        assert_eq!(s, 403, "{gated}");
        (
            plan_id,
            gated["approval_request"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    });
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let out = remote_cli(&base, None, &["approvals"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("PROVISIONING_TOKEN"), "{}", text(&out));
    let out = remote_cli(&base, Some("wrong"), &["approvals"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out).contains("refused the token"), "{}", text(&out));

    let out = remote_cli(&base, Some(VIC), &["approvals"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&request) && text(&out).contains("alice"),
        "{}",
        text(&out)
    );
    let out = remote_cli(&base, Some(VIC), &["approvals", "show", &request]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Gated by") && text(&out).contains("w1"),
        "{}",
        text(&out)
    );
    let out = remote_cli(&base, Some(ALICE), &["approvals", "approve", &request]);
    assert_eq!(out.status.code(), Some(4), "the requester: {}", text(&out));
    let out = remote_cli(
        &base,
        Some(BOB),
        &["approvals", "approve", &request, "--comment", "ok"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Approved request"), "{}", text(&out));
    let out = remote_cli(
        &base,
        Some(BOB),
        &["approvals", "approve", &request, "--comment", "again"],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "a repeated approval: {}",
        text(&out)
    );

    let wf = rt.block_on(async {
        let (s, v) = api
            .post(&format!("/api/v1/plans/{plan}/apply"), ALICE, json!({}))
            .await;
        assert_eq!(s, 202, "{v}");
        let wf = v["workflow"].as_str().unwrap().to_string();
        api.wait_for(&wf, "succeeded").await;
        wf
    });
    let out = remote_cli(&base, Some(VIC), &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&wf) && text(&out).contains("succeeded"),
        "{}",
        text(&out)
    );
    let out = remote_cli(&base, Some(VIC), &["status", &wf]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("server/w1"), "{}", text(&out));
    let out = remote_cli(&base, Some(VIC), &["status", "wf-nope"]);
    assert_ne!(out.status.code(), Some(0));
    let out = remote_cli(&base, Some(VIC), &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("intact"), "{}", text(&out));
    let out = remote_cli(&base, Some(VIC), &["audit", "export"]);
    assert!(out.status.success());
    let kinds: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(kinds.iter().any(|k| k == "approval_granted"), "{kinds:?}");
}
