//! Hostile input, as an attacker holding the weakest token (a viewer) against the real server:
//! every config of `tests/fixtures/hostile/` (imports in every string and comment form, escapes,
//! unicode, `std` functions, huge outputs, deep recursion) plus generated deep nesting is sent
//! through REST (`POST /api/v1/configs/validate`) and through MCP (`validate_config`). None may
//! reveal a file outside the contracts, an environment variable or a canary secret set in the
//! server's environment, and the server must still answer afterwards. Also: nested policy text
//! and nested JSON bodies get a 4xx, not a dead server; the sandbox refuses to read files even
//! when the `import` check in front of it is bypassed.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use libtest_mimic::Trial;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use sha2::Digest;
use tests::{root, scratch};

use crate::check;
use crate::mcp::{Dir, Server, http_client};

const VIEWER: &str = "viewer-token-4b1d9e0c77";
const ENV_CANARY: &str = "canary-env-7f3a9c21d4";
const FILE_CANARY: &str = "canary-file-51e2b8aa90";

/// Texts that must appear in no answer: the canaries, and what the machine's files and
/// environment look like.
fn forbidden(dir: &Path) -> Vec<String> {
    let mut words: Vec<String> = vec![
        ENV_CANARY.into(),
        FILE_CANARY.into(),
        "root:x:0".into(),
        "PATH=".into(),
        "HOME=".into(),
        "PROVISIONING_CONFIG".into(),
        "[workspace]".into(),
    ];
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let hash = config.split('"').nth(3).unwrap().to_string();
    words.push(hash);
    words
}

fn corpus(dir: &Path, server_pid: u32) -> Vec<(String, String)> {
    let secret = dir.join("secret.txt");
    let secret_ncl = dir.join("secret.ncl");
    let secret_json = dir.join("secret.json");
    std::fs::write(&secret, FILE_CANARY).unwrap();
    std::fs::write(&secret_ncl, format!("{{ canary = \"{FILE_CANARY}\" }}")).unwrap();
    std::fs::write(&secret_json, format!("{{ \"canary\": \"{FILE_CANARY}\" }}")).unwrap();
    let fill = |text: String| {
        text.replace("@SECRET_FILE@", &secret.display().to_string())
            .replace("@SECRET_NCL@", &secret_ncl.display().to_string())
            .replace("@SECRET_JSON@", &secret_json.display().to_string())
            .replace(
                "@CONFIG_FILE@",
                &dir.join("config.toml").display().to_string(),
            )
            .replace("@SERVER_PID@", &server_pid.to_string())
    };
    let mut cases: Vec<(String, String)> = tests::ncl_files(&root().join("tests/fixtures/hostile"))
        .into_iter()
        .map(|p: PathBuf| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, fill(std::fs::read_to_string(&p).unwrap()))
        })
        .collect();
    let n = 100_000;
    cases.push((
        "deep-parentheses".into(),
        format!("{}1{}", "(".repeat(n), ")".repeat(n)),
    ));
    cases.push((
        "deep-records".into(),
        format!("{}1{}", "{a=".repeat(n), "}".repeat(n)),
    ));
    cases.push((
        "deep-arrays".into(),
        format!("{}1{}", "[".repeat(n), "]".repeat(n)),
    ));
    cases.push((
        "deep-interpolations".into(),
        format!("{}x{}", "\"%{".repeat(20_000), "}\"".repeat(20_000)),
    ));
    cases
}

fn people() -> String {
    let h = format!("{:x}", sha2::Sha256::digest(VIEWER.as_bytes()));
    format!("[users.vic]\nroles = [\"viewer\"]\ntoken_sha256 = \"{h}\"\n")
}

fn start(dir: &Path) -> (Server, String) {
    std::fs::write(dir.join("config.toml"), people()).unwrap();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let (child, base) = tests::serve_http_with(
        dir,
        &[
            "--eval-timeout-ms",
            "4000",
            "--eval-memory-mb",
            "768",
            "--rate-limit",
            "100000",
        ],
        &[("PROVISIONING_TEST_CANARY", ENV_CANARY)],
        Stdio::from(log),
    )
    .unwrap();
    (Server(child), base)
}

async fn healthy(http: &reqwest::Client, base: &str) {
    let r = http.get(format!("{base}/healthz")).send().await;
    assert!(
        r.is_ok_and(|r| r.status().is_success()),
        "the server stopped answering /healthz"
    );
}

/// The whole corpus through REST and MCP as a viewer.
fn corpus_reveals_nothing() {
    let dir = Dir(scratch("hostile"));
    let (server, base) = start(&dir.0);
    let cases = corpus(&dir.0, server.0.id());
    assert!(cases.len() >= 30, "only {} hostile configs", cases.len());
    let words = forbidden(&dir.0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let mcp = http_client(&format!("{base}/mcp"), VIEWER, Default::default()).await;
        let mut valid = Vec::new();
        for (name, text) in &cases {
            let resp = http
                .post(format!("{base}/api/v1/configs/validate"))
                .bearer_auth(VIEWER)
                .json(&json!({ "config": text }))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{name}: REST request failed: {e}"));
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            let tool = mcp
                .call_tool(
                    CallToolRequestParams::new("validate_config")
                        .with_arguments(json!({ "config": text }).as_object().cloned().unwrap()),
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: MCP call failed: {e}"));
            let tool = serde_json::to_string(&tool).unwrap();
            for (channel, answer) in [("REST", &body), ("MCP", &tool)] {
                for w in &words {
                    assert!(
                        !answer.contains(w.as_str()),
                        "{name}: the {channel} answer reveals `{w}`: {}",
                        &answer[..answer.len().min(600)]
                    );
                }
            }
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status == 200 && v["valid"] == true {
                valid.push(name.clone());
            }
            healthy(&http, &base).await;
        }
        // `primop`, `unicode-escapes` and the like evaluate to harmless values; none of the
        // import cases may validate, nor the attempts to escape the contract.
        for name in &valid {
            assert!(
                !name.starts_with("import") && !name.starts_with("wrapper"),
                "{name} validated"
            );
        }
        mcp.cancel().await.unwrap();
    });
    drop(server);
    let log = std::fs::read_to_string(dir.0.join("server.log")).unwrap();
    for w in &words {
        assert!(!log.contains(w.as_str()), "the server log reveals `{w}`");
    }
}

/// Policy text and JSON bodies nested deep enough to overflow a parser's stack get a 4xx, and
/// the server keeps answering.
fn nested_inputs_get_4xx() {
    let dir = Dir(scratch("hostile-nested"));
    let (_server, base) = start(&dir.0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let n = 50_000;
        for (what, policy) in [
            ("brackets", format!(
                "@id(\"x\")\n@description(\"x\")\npermit(principal, action, resource) when {{ {}true{} }};",
                "(".repeat(n),
                ")".repeat(n)
            )),
            ("negations", format!(
                "@id(\"x\")\n@description(\"x\")\npermit(principal, action, resource) when {{ {}true }};",
                "!".repeat(n)
            )),
            ("chain", format!(
                "@id(\"x\")\n@description(\"x\")\npermit(principal, action, resource) when {{ true{} }};",
                " && true".repeat(20_000)
            )),
        ] {
            let resp = http
                .post(format!("{base}/api/v1/policies/validate"))
                .bearer_auth(VIEWER)
                .json(&json!({ "policies": policy }))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: the server died: {e}"));
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert_eq!(status, 422, "{what}: {body}");
            assert!(body.contains("simpler policies"), "{what}: {body}");
            healthy(&http, &base).await;
        }
        let deep_json = format!("{{\"config\": {}1{}}}", "[".repeat(n), "]".repeat(n));
        let resp = http
            .post(format!("{base}/api/v1/configs/validate"))
            .bearer_auth(VIEWER)
            .header("content-type", "application/json")
            .body(deep_json)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{}", resp.status());
        healthy(&http, &base).await;
    });
}

/// Below the `import` check: a confined evaluation asked directly (as if the check had been
/// bypassed) cannot read a file, and no evaluation sees the server's environment.
fn the_sandbox_holds_without_the_import_check() {
    use engine::sandbox::{self, EvalRequest, Sandbox};
    let dir = Dir(scratch("hostile-sandbox"));
    std::fs::write(dir.0.join("secret.txt"), FILE_CANARY).unwrap();
    let sb = Sandbox::Subprocess {
        program: tests::binary(),
        args: Vec::new(),
        workdir: dir.0.join("cwd"),
    };
    let limits = engine::Limits::default();
    let eval = |source: String, confined: bool| {
        let out = sandbox::evaluate(
            &sb,
            &limits,
            EvalRequest {
                source,
                source_name: "<input>/t.ncl".into(),
                memory_bytes: limits.memory_bytes,
                cpu_seconds: 5,
                confined,
                user: None,
            },
        )
        .unwrap();
        serde_json::to_string(&out).unwrap()
    };
    let secret = dir.0.join("secret.txt").display().to_string();
    let confined = eval(format!("import \"{secret}\" as 'Text"), true);
    assert!(!confined.contains(FILE_CANARY), "{confined}");
    assert!(confined.contains("nickel_error"), "{confined}");
    // The same request unconfined reads it: the protection above is the confinement.
    let open = eval(format!("import \"{secret}\" as 'Text"), false);
    assert!(open.contains(FILE_CANARY), "{open}");
    // Even unconfined, the child's environment is empty.
    let environ = eval("import \"/proc/self/environ\" as 'Text".into(), false);
    assert!(
        environ.contains("\"outcome\":\"value\"") && environ.contains("RUST_BACKTRACE=0"),
        "{environ}"
    );
    assert!(!environ.contains("PATH="), "{environ}");
    // Output past the cap stops the child and is refused, whatever it holds: a 64 KiB value
    // under a 16 KiB cap, while the same value fits under the default cap.
    let small = engine::Limits {
        max_output_bytes: 16 * 1024,
        ..engine::Limits::default()
    };
    let big = "std.string.join \"\" (std.array.replicate 65536 \"x\")".to_string();
    let request = |limits: &engine::Limits| EvalRequest {
        source: big.clone(),
        source_name: "<input>/t.ncl".into(),
        memory_bytes: limits.memory_bytes,
        cpu_seconds: 5,
        confined: true,
        user: None,
    };
    let capped =
        serde_json::to_string(&sandbox::evaluate(&sb, &small, request(&small)).unwrap()).unwrap();
    assert!(
        capped.contains("\"reason\":\"output\"") && !capped.contains("xxxxxxxx"),
        "{capped}"
    );
    let fits =
        serde_json::to_string(&sandbox::evaluate(&sb, &limits, request(&limits)).unwrap()).unwrap();
    assert!(
        fits.contains("\"outcome\":\"value\""),
        "{}",
        &fits[..fits.len().min(200)]
    );
}

/// With one evaluation slot: a config that runs until a limit ends it holds the slot, and the next
/// caller is told "busy, retry" at once (503 with `Retry-After`), while health checks are answered;
/// the evaluating child runs under `SCHED_IDLE` (so the server's own threads preempt it); once
/// the slot is free a good config validates.
fn a_busy_server_says_retry() {
    let dir = Dir(scratch("hostile-busy"));
    std::fs::write(dir.0.join("config.toml"), people()).unwrap();
    let (child, base) = tests::serve_http(
        &dir.0,
        &[
            "--eval-timeout-ms",
            "3000",
            "--max-evals",
            "1",
            "--rate-limit",
            "100000",
        ],
    )
    .unwrap();
    let server = Server(child);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let validate = |config: &str| {
            http.post(format!("{base}/api/v1/configs/validate"))
                .bearer_auth(VIEWER)
                .json(&json!({ "config": config }))
                .send()
        };
        let endless = tokio::spawn(validate("let rec f = fun x => f (x + 1) in f 0"));
        // Wait for the evaluating child to exist, then read its scheduling policy.
        let started = std::time::Instant::now();
        let evaluator = loop {
            if let Some(pid) = evaluating_child(server.0.id()) {
                break pid;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(3),
                "no evaluating child appeared"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let stat = std::fs::read_to_string(format!("/proc/{evaluator}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // Field 41 of `proc_pid_stat(5)`, the policy; 5 is SCHED_IDLE.
        assert_eq!(
            fields[41 - 3],
            "5",
            "the evaluator is not under SCHED_IDLE: {stat}"
        );
        let busy = validate("{ servers = [] }").await.unwrap();
        assert_eq!(busy.status().as_u16(), 503);
        assert_eq!(
            busy.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("2")
        );
        let body = busy.text().await.unwrap();
        assert!(body.contains("retry in a few seconds"), "{body}");
        healthy(&http, &base).await;
        let ended = endless.await.unwrap().unwrap();
        assert_eq!(ended.status().as_u16(), 200);
        let ended = ended.text().await.unwrap();
        // Unbounded recursion ends at whichever limit it meets first: usually the 3 s time
        // limit; on a loaded machine it has also reached the memory limit first.
        assert!(
            ended.contains("time limit") || ended.contains("memory limit"),
            "{ended}"
        );
        let fine = validate("{}").await.unwrap();
        assert_eq!(
            fine.status().as_u16(),
            200,
            "{}",
            fine.text().await.unwrap()
        );
    });
}

/// The process of `server` evaluating a config (`__nickel-eval`), if one runs now.
fn evaluating_child(server: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let evaluating = cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == engine::sandbox::CHILD_COMMAND.as_bytes());
            (ppid == server && evaluating).then_some(pid)
        })
}

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("hostile::corpus_reveals_nothing", || {
            check(corpus_reveals_nothing)
        }),
        Trial::test("hostile::nested_inputs_get_4xx", || {
            check(nested_inputs_get_4xx)
        }),
        Trial::test(
            "hostile::the_sandbox_holds_without_the_import_check",
            || check(the_sandbox_holds_without_the_import_check),
        ),
        Trial::test("hostile::a_busy_server_says_retry", || {
            check(a_busy_server_says_retry)
        }),
    ]
}
