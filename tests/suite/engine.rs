//! The engine end to end through the CLI: crash and resume under `kill -9`, failure injection
//! with rollback, bad input, and the local provider with real processes.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use libtest_mimic::Trial;
use tests::{copy_tree, root, run_env, scratch};

use crate::check;

pub fn trials() -> Vec<Trial> {
    let mut trials = Vec::new();
    for seed in 0..CRASH_RUNS {
        trials.push(Trial::test(
            format!("engine::crash_resume::seed_{seed:02}"),
            move || check(move || crash_and_resume(seed)),
        ));
    }
    for seed in 0..5u64 {
        trials.push(Trial::test(
            format!("engine::rollback_leaves_nothing::seed_{seed}"),
            move || check(move || rollback_leaves_nothing(seed)),
        ));
    }
    trials.push(Trial::test(
        "engine::crash_resume::the_local_server_killed_mid_apply",
        || check(the_local_server_killed_mid_apply_resumes),
    ));
    trials.push(Trial::test("engine::bad_input::unknown_plan", || {
        check(unknown_plan)
    }));
    trials.push(Trial::test("engine::bad_input::stale_plan", || {
        check(stale_plan)
    }));
    trials.push(Trial::test("engine::bad_input::concurrent_apply", || {
        check(concurrent_apply)
    }));
    trials.push(Trial::test(
        "engine::bad_input::cycle_is_not_planned",
        || check(cycle_is_not_planned),
    ));
    trials.push(Trial::test("engine::local_dev_stack_end_to_end", || {
        check(local_dev_stack)
    }));
    trials.push(Trial::test(
        "engine::resume_counts_on_from_the_steps_already_done",
        || check(resume_counts_on),
    ));
    trials.push(Trial::test(
        "engine::audit_verify_detects_edits_and_removals",
        || check(audit_tampering),
    ));
    trials
}

/// `provisioning resume` counts `[done/total]` on from the steps finished before it: resuming a
/// 4-step workflow whose second server failed ends at `[4/4]`, not at the steps it ran itself.
fn resume_counts_on() {
    let dir = scratch("resume-progress");
    let data = dir.join("data");
    let config = dir.join("two.ncl");
    std::fs::write(&config, sim_config("resumecount", 2, "fail", 1)).unwrap();
    let out = cli(
        &data,
        &["apply", config.to_str().unwrap(), "--yes"],
        &[("PROVISIONING_SIM_FAIL", "node-1")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let wf = latest_workflow(&data);
    let before = json(&cli(&data, &["status", &wf, "--json"], &[]));
    let done = before["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "succeeded")
        .count();
    assert!((1..4).contains(&done), "{before}");
    let out = cli(&data, &["resume", &wf], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[4/4] ok"), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

const CRASH_RUNS: u64 = 50;
/// 25 servers with one taskserv each: a 50-step workflow.
const SERVERS: usize = 25;
/// Fault points in a clean run: workflow start, four per step, workflow end.
const FAULT_POINTS: u64 = 2 + 4 * 2 * SERVERS as u64;

fn sim_config(workspace: &str, servers: usize, on_failure: &str, parallel: u32) -> String {
    let mut out = format!(
        "{{\n  workspace = {{ name = \"{workspace}\", environment = \"dev\" }},\n  workflow = {{ parallel_limit = {parallel}, on_failure = \"{on_failure}\", retry = {{ max_attempts = 2, initial_delay_ms = 1, max_delay_ms = 5 }} }},\n  servers = [\n"
    );
    for i in 0..servers {
        let ts = if i % 2 == 0 { "redis" } else { "nginx" };
        out.push_str(&format!(
            "    {{ name = \"node-{i}\", provider = \"sim\", plan = \"small\", zone = \"sim-{}\", taskservs = [\"{ts}\"] }},\n",
            1 + i % 2
        ));
    }
    out.push_str("  ],\n}\n");
    out
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn cli(data: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let data_dir = data.display().to_string();
    let mut env: Vec<(&str, &str)> = vec![("PROVISIONING_PATHS_DATA_DIR", data_dir.as_str())];
    env.extend_from_slice(extra);
    run_env(&root(), args, &env)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// A data dir holding a stored, not yet applied plan for the 50-step workflow; copied per run.
fn crash_template() -> &'static (PathBuf, String) {
    static TEMPLATE: OnceLock<(PathBuf, String)> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = scratch("crash-template");
        let config = dir.join("fleet.ncl");
        std::fs::write(&config, sim_config("crash", SERVERS, "fail", 4)).unwrap();
        let data = dir.join("data");
        let out = cli(&data, &["plan", config.to_str().unwrap(), "--json"], &[]);
        assert!(out.status.success(), "{}", text(&out));
        let plan = json(&out);
        assert_eq!(plan["summary"]["create"], 2 * SERVERS, "{plan}");
        (data, plan["id"].as_str().unwrap().to_string())
    })
}

/// splitmix64, so the kill points are the same in every run of the suite.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn ledger(data: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data.join("sim/ledger.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn latest_workflow(data: &Path) -> String {
    let out = cli(data, &["status", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    json(&out)[0]["id"].as_str().unwrap().to_string()
}

/// Kill -9 at a seeded point, resume; every tenth run is killed a second time while resuming.
fn crash_and_resume(seed: u64) {
    let (template, plan) = crash_template();
    let dir = scratch(&format!("crash-{seed}"));
    let data = dir.join("data");
    copy_tree(template, &data).unwrap();
    let kill_at = 1 + mix(seed) % FAULT_POINTS;
    let at = kill_at.to_string();
    let out = cli(
        &data,
        &["apply", "--plan", plan, "--yes"],
        &[("PROVISIONING_FAULT_KILL_AT", &at)],
    );
    assert_eq!(
        out.status.signal(),
        Some(9),
        "expected SIGKILL at point {kill_at}: {}",
        text(&out)
    );
    let wf = latest_workflow(&data);
    if seed % 10 == 3 {
        let again = (1 + mix(seed ^ 0xFF) % 100).to_string();
        let out = cli(
            &data,
            &["resume", &wf],
            &[("PROVISIONING_FAULT_KILL_AT", &again)],
        );
        // It may finish before reaching that point; if not, it was killed.
        assert!(
            out.status.success() || out.status.signal() == Some(9),
            "{}",
            text(&out)
        );
    }
    let out = cli(&data, &["resume", &wf, "--json"], &[]);
    let finished = if out.status.success() {
        json(&out)
    } else {
        // The second kill may have come after the last step: nothing left to resume.
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nothing to resume"),
            "{}",
            text(&out)
        );
        let status = cli(&data, &["status", &wf, "--json"], &[]);
        json(&status)["workflow"].clone()
    };
    assert_eq!(
        finished["status"], "succeeded",
        "kill at {kill_at}: {finished}"
    );

    exactly_once(&data, &format!("kill at {kill_at}"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ledger holds every side effect exactly once: 25 servers and 25 taskservs created,
/// nothing else, nothing twice; and state records them all.
fn exactly_once(data: &Path, context: &str) {
    let entries = ledger(data);
    let mut per_resource: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &entries {
        per_resource
            .entry(e["resource"].as_str().unwrap().to_string())
            .or_default()
            .push(e["op"].as_str().unwrap().to_string());
    }
    let lost = 2 * SERVERS - per_resource.len();
    let duplicated: Vec<_> = per_resource
        .iter()
        .filter(|(_, ops)| ops.len() != 1)
        .collect();
    assert_eq!(lost, 0, "{context}: lost side effects");
    assert!(
        duplicated.is_empty(),
        "{context}: duplicated {duplicated:?}"
    );
    assert_eq!(entries.len(), 2 * SERVERS);
    let state = cli(data, &["state", "--json"], &[]);
    assert_eq!(
        json(&state).as_array().unwrap().len(),
        2 * SERVERS,
        "state after resume"
    );
}

/// The local server (what the CLI and the assistants talk to) dies like `kill -9` in the middle
/// of an apply; started again, it resumes the workflow, and every side effect happened exactly
/// once. The CLI that was following the apply says what happened and what to do.
fn the_local_server_killed_mid_apply_resumes() {
    let (template, plan) = crash_template();
    let dir = scratch("crash-daemon");
    let data = dir.join("data");
    copy_tree(template, &data).unwrap();
    struct Stop<'a>(&'a Path);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = cli(self.0, &["daemon", "stop"], &[]);
        }
    }
    let _stop = Stop(&data);
    let kill_at = (FAULT_POINTS / 2).to_string();
    let started = cli(
        &data,
        &["daemon", "start"],
        &[("PROVISIONING_FAULT_KILL_AT", &kill_at)],
    );
    assert!(started.status.success(), "{}", text(&started));

    // Through the local server, which dies at the fault point.
    let out = cli(&data, &["apply", "--plan", plan, "--yes"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in the server at") && err.contains("provisioning resume wf-"),
        "{}",
        text(&out)
    );
    assert_eq!(
        cli(&data, &["daemon", "status"], &[]).status.code(),
        Some(3),
        "the local server is gone"
    );
    let done = ledger(&data).len();
    assert!(
        0 < done && done < 2 * SERVERS,
        "killed in the middle: {done} side effects"
    );

    // Started again (its stale socket is replaced); the CLI resumes through it.
    let started = cli(&data, &["daemon", "start"], &[]);
    assert!(started.status.success(), "{}", text(&started));
    let wf = latest_workflow(&data);
    let out = cli(&data, &["resume", &wf, "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["status"], "succeeded", "{}", text(&out));
    exactly_once(&data, &format!("the local server killed at {kill_at}"));
    drop(_stop);
    let _ = std::fs::remove_dir_all(&dir);
}

fn rollback_leaves_nothing(seed: u64) {
    let dir = scratch(&format!("rollback-{seed}"));
    let config = dir.join("c.ncl");
    std::fs::write(&config, sim_config("rb", 12, "rollback", 3)).unwrap();
    let data = dir.join("data");
    let victim = match mix(seed) % 2 {
        0 => format!("node-{}", mix(seed + 100) % 12),
        _ => {
            let i = mix(seed + 100) % 12;
            format!(
                "node-{i}/{}",
                if i.is_multiple_of(2) {
                    "redis"
                } else {
                    "nginx"
                }
            )
        }
    };
    let out = cli(
        &data,
        &["apply", config.to_str().unwrap(), "--yes", "--json"],
        &[
            ("PROVISIONING_SIM_FAIL", &victim),
            ("PROVISIONING_SIM_LATENCY_MS", "1-5"),
            ("PROVISIONING_SIM_SEED", &seed.to_string()),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let outcome = json(&out);
    assert_eq!(outcome["status"], "rolled_back", "{outcome}");
    assert!(
        outcome["error"].as_str().unwrap().contains(&victim),
        "{outcome}"
    );
    let state = cli(&data, &["state", "--json"], &[]);
    assert_eq!(json(&state), serde_json::json!([]), "state after rollback");
    // In the sim cloud: whatever was created was deleted again.
    let mut live: BTreeMap<String, i32> = BTreeMap::new();
    for e in ledger(&data) {
        let delta = match e["op"].as_str().unwrap() {
            "create_server" | "install_taskserv" => 1,
            "delete_server" | "remove_taskserv" => -1,
            _ => 0,
        };
        *live
            .entry(e["resource"].as_str().unwrap().to_string())
            .or_default() += delta;
    }
    // Deleting a server removes its taskservs with it.
    let servers_alive: Vec<_> = live
        .iter()
        .filter(|(k, v)| k.matches('/').count() == 1 && **v > 0)
        .collect();
    assert!(servers_alive.is_empty(), "left behind: {servers_alive:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn unknown_plan() {
    let dir = scratch("unknown-plan");
    let out = cli(
        &dir.join("data"),
        &["apply", "--plan", "plan-000000000000", "--yes"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no plan with id `plan-000000000000`"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn stale_plan() {
    let dir = scratch("stale-plan");
    let data = dir.join("data");
    let one = dir.join("one.ncl");
    let two = dir.join("two.ncl");
    std::fs::write(&one, sim_config("stale", 1, "fail", 2)).unwrap();
    std::fs::write(&two, sim_config("stale", 2, "fail", 2)).unwrap();
    let first = json(&cli(&data, &["plan", one.to_str().unwrap(), "--json"], &[]));
    let out = cli(&data, &["apply", two.to_str().unwrap(), "--yes"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let before = json(&cli(&data, &["state", "--json"], &[]));
    let out = cli(
        &data,
        &["apply", "--plan", first["id"].as_str().unwrap(), "--yes"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is stale") && err.contains("state version 0"),
        "{err}"
    );
    assert_eq!(
        json(&cli(&data, &["state", "--json"], &[])),
        before,
        "state changed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn concurrent_apply() {
    let dir = scratch("concurrent");
    let data = dir.join("data");
    let config = dir.join("slow.ncl");
    std::fs::write(&config, sim_config("busy", 20, "fail", 1)).unwrap();
    let mut slow = std::process::Command::new(tests::binary())
        .args(["apply", config.to_str().unwrap(), "--yes"])
        .env("PROVISIONING_PATHS_DATA_DIR", &data)
        .env("PROVISIONING_SIM_LATENCY_MS", "100")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first apply is running steps.
    let stderr = slow.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    loop {
        let line = lines.next().expect("first apply ended early").unwrap();
        if line.contains("attempt 1") {
            break;
        }
    }
    let out = cli(&data, &["apply", config.to_str().unwrap(), "--yes"], &[]);
    let _ = slow.kill();
    let _ = slow.wait();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("open in another provisioning process")
            && err.contains(&format!("pid {}", slow.id()))
            && err.contains("apply"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn cycle_is_not_planned() {
    let dir = scratch("cycle");
    let data = dir.join("data");
    let config = dir.join("cycle.ncl");
    std::fs::write(
        &config,
        r#"{
  workspace = { name = "loop", environment = "dev" },
  servers = [
    { name = "a", provider = "sim", plan = "small", zone = "sim-1",
      taskservs = [{ name = "redis", depends_on = ["nginx"] }, { name = "nginx", depends_on = ["redis"] }] },
  ],
}"#,
    )
    .unwrap();
    let out = cli(&data, &["plan", config.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cycle") && err.contains("nothing was planned"),
        "{err}"
    );
    let out = cli(&data, &["apply", config.to_str().unwrap(), "--yes"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let status = json(&cli(&data, &["status", "--json"], &[]));
    assert_eq!(status, serde_json::json!([]), "a workflow was recorded");
    let _ = std::fs::remove_dir_all(&dir);
}

fn pids_alive(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect()
}

fn local_dev_stack() {
    let dir = scratch("local-dev");
    let data = dir.join("data");
    let example = root().join("examples/local-dev.ncl");
    let example = example.to_str().unwrap();
    let out = cli(&data, &["apply", example, "--yes", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let state = json(&cli(&data, &["state", "--json"], &[]));
    let taskservs: Vec<&serde_json::Value> = state
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "taskserv")
        .collect();
    assert_eq!(taskservs.len(), 3, "{state}");
    let mut pids = Vec::new();
    for ts in &taskservs {
        let port = ts["observed"]["port"].as_u64().unwrap();
        let name = ts["name"].as_str().unwrap();
        if let Some(pid) = ts["observed"]["pid"].as_u64() {
            pids.push(pid as u32);
        }
        // A real answer from a real process on loopback.
        if name.ends_with("/redis") {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
            std::io::Write::write_all(&mut s, b"PING\r\n").unwrap();
            let mut buf = [0u8; 16];
            let n = std::io::Read::read(&mut s, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"+PONG\r\n");
        }
        if name.ends_with("/nginx") {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
            std::io::Write::write_all(&mut s, b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut body = String::new();
            std::io::Read::read_to_string(&mut s, &mut body).unwrap();
            assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        }
    }
    assert!(
        !pids.is_empty() && pids_alive(&pids).len() == pids.len(),
        "{pids:?}"
    );

    let out = cli(&data, &["apply", example, "--yes", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        json(&out)["result"],
        "no_changes",
        "second apply must be a no-op"
    );
    let drift = cli(&data, &["drift"], &[]);
    assert!(drift.status.success(), "{}", text(&drift));

    // A person's own destroy in dev needs only the confirmation (`--yes` here), no approvals.
    let out = cli(&data, &["destroy", example, "--yes", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        json(&cli(&data, &["state", "--json"], &[])),
        serde_json::json!([])
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !pids_alive(&pids).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        pids_alive(&pids).is_empty(),
        "processes left: {:?}",
        pids_alive(&pids)
    );
    let local = data.join("local");
    let leftovers: Vec<_> = tests::walk(&local);
    assert!(leftovers.is_empty(), "files left: {leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs SurrealQL against a data dir's embedded store (the CLI must not be running), and
/// waits until the store has let go of its file lock again.
pub(crate) fn tamper(data: &Path, query: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = engine::state::SurrealStore::open(engine::state::StoreLocation::Embedded(
            data.join("state"),
        ))
        .await
        .unwrap();
        store.raw_query(query).await.unwrap();
        drop(store);
        // The embedded engine shuts down in the background, on this runtime.
        let lock = std::fs::File::open(data.join("state/LOCK")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while lock.try_lock().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the store stayed locked"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let _ = lock.unlock();
    });
}

fn audit_tampering() {
    let dir = scratch("audit");
    let config = dir.join("c.ncl");
    std::fs::write(&config, sim_config("aud", 3, "fail", 2)).unwrap();
    let data = dir.join("data");
    let out = cli(&data, &["apply", config.to_str().unwrap(), "--yes"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cli(&data, &["audit", "verify"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    // decision + 6 steps + workflow
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("intact: 8 entries"),
        "{}",
        text(&out)
    );
    let export = cli(&data, &["audit", "export"], &[]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[0]["kind"], "decision");
    assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);

    let copy = dir.join("copy");
    copy_tree(&data, &copy).unwrap();
    // Edit one entry in place.
    tamper(&data, "UPDATE audit:3 SET data.actor = 'user:mallory'");
    let out = cli(&data, &["audit", "verify"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("broken at entry 3"),
        "{}",
        text(&out)
    );
    // Remove one entry.
    tamper(&copy, "DELETE audit:5");
    let out = cli(&copy, &["audit", "verify"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("entry 5 is missing"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
