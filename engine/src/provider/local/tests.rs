//! Tests against real processes. The supervisor is this very test binary: the libtest harness
//! runs only `supervisor_entry` (an exact filter) and that test hands everything after
//! `__supervise` to [`supervise_main`], then exits. Under a normal test run `supervisor_entry`
//! finds no `__supervise` argument and does nothing.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use super::*;

/// The supervisor hook; see the module docs.
#[test]
fn supervisor_entry() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == SUPERVISE_COMMAND) {
        std::process::exit(supervise_main(&args[i + 1..]));
    }
}

fn test_supervisor() -> Supervisor {
    let name = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    Supervisor {
        program: std::env::current_exe().unwrap(),
        args_prefix: vec![
            format!("{name}::supervisor_entry"),
            "--exact".into(),
            "--nocapture".into(),
            "--test-threads=1".into(),
            "--".into(),
            SUPERVISE_COMMAND.into(),
        ],
    }
}

/// A fresh root; mode 0700 like a data dir under /root, so that postgres-as-nobody has to use
/// its aux dir.
fn temp_root(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prov-local-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn server(workspace: &str, name: &str) -> ServerSpec {
    ServerSpec {
        workspace: workspace.into(),
        name: name.into(),
        provider: "local".into(),
        plan: "small".into(),
        zone: "local".into(),
        labels: BTreeMap::from([("role".to_string(), "test".to_string())]),
        host: None,
        image: None,
    }
}

fn taskserv(workspace: &str, server: &str, name: &str, version: &str) -> TaskservSpec {
    TaskservSpec {
        workspace: workspace.into(),
        server: server.into(),
        name: name.into(),
        version: version.into(),
        config: serde_json::Map::new(),
    }
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey(s.into())
}

fn available(name: &str) -> bool {
    let ok = local_taskservs_available()
        .iter()
        .any(|(n, ok)| *n == name && *ok);
    if !ok {
        eprintln!("note: `{name}` is not installed here; skipping it");
    }
    ok
}

async fn eventually_healthy(p: &LocalProvider, spec: &TaskservSpec, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let health = p.taskserv_health(spec).await.unwrap();
        if health == Health::Healthy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never became healthy again: {health:?}",
            spec.name
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn eventually_dead(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| procs::alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "some of {pids:?} are still alive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn servers_get_stable_port_blocks_and_vanish_on_delete() {
    let root = temp_root("servers");
    let p = LocalProvider::new(root.clone(), Supervisor::none());
    assert_eq!(p.name(), "local");
    let a = server("ws1", "alpha");
    let b = server("ws1", "beta");
    assert_eq!(p.inspect_server(&a).await.unwrap(), None);

    let obs_a = p.create_server(&key("k1"), &a).await.unwrap();
    assert_eq!(obs_a.provider_id, "local:ws1/alpha");
    assert_eq!(obs_a.attrs["address"], "127.0.0.1");
    let base_a = obs_a.attrs["port_base"].as_u64().unwrap();
    assert!(
        (20000..60000).contains(&base_a) && base_a % 10 == 0,
        "{base_a}"
    );
    assert!(root.join("ws1/alpha/server.json").is_file());
    // Idempotent, and stable.
    assert_eq!(p.create_server(&key("k1"), &a).await.unwrap(), obs_a);
    assert_eq!(p.create_server(&key("other"), &a).await.unwrap(), obs_a);
    assert_eq!(p.inspect_server(&a).await.unwrap(), Some(obs_a.clone()));

    let obs_b = p.create_server(&key("k2"), &b).await.unwrap();
    let base_b = obs_b.attrs["port_base"].as_u64().unwrap();
    assert!(base_a.abs_diff(base_b) >= 10, "{base_a} {base_b}");

    // Update rewrites plan and labels, keeps the ports.
    let mut a2 = a.clone();
    a2.plan = "large".into();
    a2.labels.insert("tier".into(), "gold".into());
    let upd = p.update_server(&key("k3"), &a2).await.unwrap();
    assert_eq!(upd.attrs["plan"], "large");
    assert_eq!(upd.attrs["labels"]["tier"], "gold");
    assert_eq!(upd.attrs["port_base"].as_u64(), Some(base_a));
    assert_eq!(p.inspect_server(&a).await.unwrap(), Some(upd));
    assert!(matches!(
        p.update_server(&key("k4"), &server("ws1", "nope")).await,
        Err(ProviderError::Permanent(_))
    ));

    // Another provider over the same root sees the same servers.
    let p2 = LocalProvider::new(root.clone(), Supervisor::none());
    assert_eq!(p2.create_server(&key("k2"), &b).await.unwrap(), obs_b);

    p.delete_server(&key("d1"), &a).await.unwrap();
    assert!(!root.join("ws1/alpha").exists());
    assert!(root.join("ws1").exists(), "beta is still there");
    p.delete_server(&key("d1"), &a).await.unwrap(); // idempotent
    p.delete_server(&key("d2"), &b).await.unwrap();
    assert!(
        !root.join("ws1").exists(),
        "the empty workspace dir is removed too"
    );
    assert_eq!(p.inspect_server(&a).await.unwrap(), None);
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn bad_names_and_unknown_taskservs_are_permanent() {
    let root = temp_root("names");
    let p = LocalProvider::new(root.clone(), Supervisor::none());
    for bad in ["", "..", "a/b", ".hidden"] {
        let err = p
            .create_server(&key("k"), &server("ws", bad))
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Permanent(_)), "{bad:?}: {err}");
    }
    p.create_server(&key("k"), &server("ws", "s"))
        .await
        .unwrap();
    let err = p
        .install_taskserv(&key("k"), &taskserv("ws", "s", "kafka", "3"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Permanent(m) if m.contains("kafka") && m.contains("redis, nginx, postgres")),
        "{err}"
    );
    let err = p
        .install_taskserv(&key("k"), &taskserv("ws", "missing", "redis", "7"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Permanent(m) if m.contains("does not exist")),
        "{err}"
    );
    let mut bad_config = taskserv("ws", "s", "redis", "7");
    bad_config.config.insert("requirepass".into(), json!("x"));
    let err = p
        .install_taskserv(&key("k"), &bad_config)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Permanent(m) if m.contains("requirepass")),
        "{err}"
    );
    assert_eq!(
        p.taskserv_health(&taskserv("ws", "s", "redis", "7"))
            .await
            .unwrap(),
        Health::Missing
    );
    p.remove_taskserv(&key("k"), &taskserv("ws", "s", "redis", "7"))
        .await
        .unwrap();
    p.delete_server(&key("k"), &server("ws", "s"))
        .await
        .unwrap();
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn taken_port_is_transient() {
    // Its own workspace name, so that concurrent runs pick different port blocks.
    let ws = format!("ws{}", std::process::id());
    if !available("redis") {
        return;
    }
    let root = temp_root("taken");
    let _cleanup = Cleanup(root.clone());
    let p = LocalProvider::new(root.clone(), Supervisor::none());
    let obs = p
        .create_server(&key("k"), &server(&ws, "busy"))
        .await
        .unwrap();
    let port = u16::try_from(obs.attrs["port_base"].as_u64().unwrap()).unwrap();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let err = p
        .install_taskserv(&key("k"), &taskserv(&ws, "busy", "redis", "7.2"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Transient(m) if m.contains("taken")),
        "{err}"
    );
    drop(squatter);
    p.delete_server(&key("k"), &server(&ws, "busy"))
        .await
        .unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}

/// A service that cannot start fails the install quickly, as transient, with its log; nothing
/// keeps running; removal cleans up.
#[tokio::test]
async fn crashing_service_fails_fast_with_its_log() {
    // Its own workspace name, so that concurrent runs pick different port blocks.
    let ws = format!("ws{}", std::process::id());
    if !available("redis") {
        return;
    }
    let root = temp_root("crash");
    let _cleanup = Cleanup(root.clone());
    for (name, supervisor) in [("none", Supervisor::none()), ("sup", test_supervisor())] {
        let p = LocalProvider::new(root.clone(), supervisor);
        let srv = server(&ws, name);
        p.create_server(&key("c"), &srv).await.unwrap();
        let mut redis = taskserv(&ws, name, "redis", "7.2");
        redis.config.insert("maxmemory".into(), json!("lots"));
        let started = Instant::now();
        let err = p.install_taskserv(&key("i"), &redis).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let ProviderError::Transient(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(
            msg.contains("last lines of") && msg.contains("maxmemory"),
            "{msg}"
        );
        assert!(p.taskserv_pids(&redis).is_none());
        assert!(matches!(
            p.taskserv_health(&redis).await.unwrap(),
            Health::Unhealthy(_)
        ));
        p.remove_taskserv(&key("r"), &redis).await.unwrap();
        p.delete_server(&key("d"), &srv).await.unwrap();
    }
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    std::fs::remove_dir_all(&root).unwrap();
}

/// The `provisioning` binary next to this test binary (`target/debug/provisioning`), if built.
fn provisioning_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("provisioning");
    bin.is_file().then_some(bin)
}

/// The real supervisor: `provisioning __supervise ...` keeps redis running and stops it.
#[tokio::test]
async fn real_provisioning_binary_supervises() {
    // Its own workspace name, so that concurrent runs pick different port blocks.
    let ws = format!("ws{}", std::process::id());
    let Some(bin) = provisioning_binary() else {
        eprintln!(
            "note: target/debug/provisioning is not built (cargo build -p server --bin \
             provisioning); skipping the test of the real supervisor"
        );
        return;
    };
    if !available("redis") {
        return;
    }
    let root = temp_root("real");
    let _cleanup = Cleanup(root.clone());
    let p = LocalProvider::new(root.clone(), Supervisor::binary(bin.clone()));
    let srv = server(&ws, "real");
    p.create_server(&key("c"), &srv).await.unwrap();
    let redis = taskserv(&ws, "real", "redis", "7.2");
    let obs = p.install_taskserv(&key("i"), &redis).await.unwrap();
    let sup = u32::try_from(obs.attrs["pid"].as_u64().unwrap()).unwrap();
    let cmdline = std::fs::read(format!("/proc/{sup}/cmdline")).unwrap();
    assert!(cmdline.starts_with(bin.to_str().unwrap().as_bytes()));
    let (_, child) = p.taskserv_pids(&redis).unwrap();
    let child = child.unwrap();
    procs::signal(child, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((s, Some(c))) = p.taskserv_pids(&redis)
            && c != child
            && p.taskserv_health(&redis).await.unwrap() == Health::Healthy
        {
            assert_eq!(s, sup);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the real supervisor did not restart redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, child) = p.taskserv_pids(&redis).unwrap();
    p.delete_server(&key("d"), &srv).await.unwrap();
    eventually_dead(&[sup, child.unwrap()]).await;
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Without a supervisor: the service runs detached, and removal stops it.
#[tokio::test]
async fn unsupervised_redis_lifecycle() {
    // Its own workspace name, so that concurrent runs pick different port blocks.
    let ws = format!("ws{}", std::process::id());
    if !available("redis") {
        return;
    }
    let root = temp_root("direct");
    let _cleanup = Cleanup(root.clone());
    let p = LocalProvider::new(root.clone(), Supervisor::none());
    let srv = server(&ws, "direct");
    p.create_server(&key("c"), &srv).await.unwrap();
    let redis = taskserv(&ws, "direct", "redis", "7.2");
    let obs = p.install_taskserv(&key("i"), &redis).await.unwrap();
    assert_eq!(obs.attrs["supervised"], false);
    let pid = u32::try_from(obs.attrs["pid"].as_u64().unwrap()).unwrap();
    assert_eq!(p.taskserv_pids(&redis), Some((pid, Some(pid))));
    assert_eq!(p.taskserv_health(&redis).await.unwrap(), Health::Healthy);
    assert_eq!(p.install_taskserv(&key("i"), &redis).await.unwrap(), obs);

    // Nothing restarts it: once killed it is unhealthy, and install starts it again.
    procs::signal(pid, Signal::SIGKILL);
    eventually_dead(&[pid]).await;
    assert!(
        matches!(p.taskserv_health(&redis).await.unwrap(), Health::Unhealthy(m) if m.contains("gone"))
    );
    let again = p.install_taskserv(&key("i"), &redis).await.unwrap();
    let pid2 = u32::try_from(again.attrs["pid"].as_u64().unwrap()).unwrap();
    assert_ne!(pid, pid2);

    p.remove_taskserv(&key("r"), &redis).await.unwrap();
    eventually_dead(&[pid2]).await;
    assert_eq!(p.taskserv_health(&redis).await.unwrap(), Health::Missing);
    p.delete_server(&key("d"), &srv).await.unwrap();
    assert!(!root.join(&ws).exists());
    std::fs::remove_dir_all(&root).unwrap();
}

/// The whole flow under the real supervisor: install, idempotent re-install, health, a killed
/// service restarted by its supervisor, a config change, removal and server deletion leaving no
/// process and no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn supervised_taskservs_full_lifecycle() {
    // Its own workspace name, so that concurrent runs pick different port blocks.
    let ws = format!("dev{}", std::process::id());
    let root = temp_root("full");
    let _cleanup = Cleanup(root.clone());
    let p = LocalProvider::new(root.clone(), test_supervisor());
    let srv = server(&ws, "box-1");
    let obs = p.create_server(&key("create"), &srv).await.unwrap();
    let base = u16::try_from(obs.attrs["port_base"].as_u64().unwrap()).unwrap();

    let mut specs = Vec::new();
    if available("redis") {
        specs.push(taskserv(&ws, "box-1", "redis", "7.2"));
    }
    if available("nginx") {
        specs.push(taskserv(&ws, "box-1", "nginx", "1.26"));
    }
    if available("postgres") {
        specs.push(taskserv(&ws, "box-1", "postgres", "15"));
    }
    let started = Instant::now();
    let keys: Vec<IdempotencyKey> = specs
        .iter()
        .map(|s| key(&format!("install-{}", s.name)))
        .collect();
    let installs = specs
        .iter()
        .zip(&keys)
        .map(|(s, k)| Box::pin(p.install_taskserv(k, s)))
        .collect();
    let observed: Vec<Observed> = join_all(installs)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    eprintln!(
        "installed {} taskservs in {:?}",
        specs.len(),
        started.elapsed()
    );

    let mut all_pids = Vec::new();
    let mut aux_dirs = Vec::new();
    for (spec, obs) in specs.iter().zip(&observed) {
        let offset = Kind::parse(&spec.name).unwrap().port_offset();
        assert_eq!(
            obs.attrs["port"].as_u64(),
            Some(u64::from(base + offset)),
            "{}",
            spec.name
        );
        assert_eq!(obs.attrs["supervised"], true);
        assert_eq!(obs.provider_id, format!("local:{ws}/box-1/{}", spec.name));
        assert!(!obs.attrs["installed_version"].as_str().unwrap().is_empty());
        assert_eq!(
            p.taskserv_health(spec).await.unwrap(),
            Health::Healthy,
            "{}",
            spec.name
        );
        let (sup, child) = p.taskserv_pids(spec).unwrap();
        assert_eq!(obs.attrs["pid"].as_u64(), Some(u64::from(sup)));
        let tsdir = p.taskserv_dir(&ws, "box-1", &spec.name);
        assert_eq!(read_pid(&tsdir.join(SUPERVISOR_PID)), Some(sup));
        all_pids.push(sup);
        all_pids.extend(child);
        let rec: TaskservRecord = read_json(&tsdir.join(TASKSERV_FILE)).unwrap().unwrap();
        aux_dirs.extend(rec.aux_dir);

        // Same key, same spec: nothing happens.
        let again = p
            .install_taskserv(&key(&format!("install-{}", spec.name)), spec)
            .await
            .unwrap();
        assert_eq!(&again, obs, "{}", spec.name);
        assert_eq!(p.taskserv_pids(spec).unwrap().0, sup);
    }
    if let Some(i) = specs.iter().position(|s| s.name == "nginx") {
        let page = reqwest_free_get(base + 1).await;
        assert!(
            page.contains("200 OK") && page.contains("nginx on 127.0.0.1"),
            "{page}"
        );
        assert!(
            observed[i].attrs["health"]
                .as_str()
                .unwrap()
                .contains("GET /")
        );
    }

    eprintln!("installed and checked at {:?}", started.elapsed());
    // Kill each service: its supervisor starts it again and it becomes healthy again.
    for spec in &specs {
        let (sup, child) = p.taskserv_pids(spec).unwrap();
        let child = child.unwrap();
        procs::signal(child, Signal::SIGKILL);
        eventually_dead(&[child]).await;
        // Until the supervisor has started a new one (an nginx worker of the killed master may
        // still answer for a moment, until the supervisor sweeps it away).
        let deadline = Instant::now() + Duration::from_secs(20);
        let child2 = loop {
            let (sup2, child2) = p.taskserv_pids(spec).unwrap();
            assert_eq!(sup, sup2, "{}: same supervisor", spec.name);
            if let Some(c) = child2.filter(|c| *c != child) {
                break c;
            }
            assert!(Instant::now() < deadline, "{}: never restarted", spec.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        eventually_healthy(&p, spec, Duration::from_secs(20)).await;
        assert_eq!(
            p.taskserv_pids(spec),
            Some((sup, Some(child2))),
            "{}",
            spec.name
        );
        eprintln!(
            "{} restarted and healthy at {:?}",
            spec.name,
            started.elapsed()
        );
        all_pids.push(child2);
        let log = std::fs::read_to_string(p.taskserv_dir(&ws, "box-1", &spec.name).join(LOG_FILE))
            .unwrap();
        assert!(log.contains("restarting in"), "{log}");
    }

    eprintln!("restarted after SIGKILL at {:?}", started.elapsed());
    // A config change restarts the taskserv with the new spec.
    if let Some(redis) = specs.iter().find(|s| s.name == "redis") {
        let (sup, _) = p.taskserv_pids(redis).unwrap();
        let mut changed = redis.clone();
        changed.config.insert("maxmemory".into(), json!("32mb"));
        let obs = p
            .install_taskserv(&key("install-redis-2"), &changed)
            .await
            .unwrap();
        let sup2 = u32::try_from(obs.attrs["pid"].as_u64().unwrap()).unwrap();
        assert_ne!(sup, sup2);
        eventually_dead(&[sup]).await;
        let (_, child) = p.taskserv_pids(&changed).unwrap();
        let answer = raw_exchange(base, b"CONFIG GET maxmemory\r\n", "33554432").await;
        assert!(answer.contains("33554432"), "{answer}");
        all_pids.push(sup2);
        all_pids.extend(child);
    }

    eprintln!("reconfigured redis at {:?}", started.elapsed());
    // Remove one taskserv, then delete the server with the rest.
    if let Some(first) = specs.first() {
        p.remove_taskserv(&key("remove"), first).await.unwrap();
        assert_eq!(p.taskserv_health(first).await.unwrap(), Health::Missing);
        assert!(!p.taskserv_dir(&ws, "box-1", &first.name).exists());
        p.remove_taskserv(&key("remove"), first).await.unwrap(); // idempotent
    }
    p.delete_server(&key("delete"), &srv).await.unwrap();
    eventually_dead(&all_pids).await;
    eprintln!("removed everything at {:?}", started.elapsed());
    assert!(!root.join(&ws).exists(), "nothing left under the root");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    for aux in &aux_dirs {
        assert!(!aux.exists(), "{} is left behind", aux.display());
    }
    let root_s = root.to_str().unwrap();
    let left: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| procs::alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                String::from_utf8_lossy(&env).contains(&format!("{MARKER_ENV}={root_s}"))
            })
        })
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// The supervisor gives up on a command that keeps failing, and removes its pid files. (It runs
/// in a process of its own: as a subreaper it kills whatever it finds among its children.)
#[test]
fn supervisor_gives_up_on_a_crash_loop() {
    let dir = temp_root("giveup");
    let sup = test_supervisor();
    let started = Instant::now();
    let status = std::process::Command::new(&sup.program)
        .args(&sup.args_prefix)
        .args([
            "--dir",
            dir.to_str().unwrap(),
            "--backoff-ms",
            "10",
            "--",
            "false",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!dir.join(SUPERVISOR_PID).exists() && !dir.join(CHILD_PID).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SIGTERM to a supervisor stops its child and the supervisor exits 0.
#[test]
fn supervisor_stops_its_child_on_sigterm() {
    let dir = temp_root("sigterm");
    let sup = test_supervisor();
    let mut cmd = std::process::Command::new(&sup.program);
    cmd.args(&sup.args_prefix)
        .args(["--dir", dir.to_str().unwrap(), "--", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleeper = loop {
        if let Some(pid) = read_pid(&dir.join(CHILD_PID)) {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the supervisor never started its child"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(read_pid(&dir.join(SUPERVISOR_PID)), Some(child.id()));
    procs::signal(child.id(), Signal::SIGTERM);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(!procs::alive(sleeper));
    assert!(!dir.join(SUPERVISOR_PID).exists() && !dir.join(CHILD_PID).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sends `request` to 127.0.0.1:`port` and reads until `until` shows up or the peer closes.
async fn raw_exchange(port: u16, request: &[u8], until: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&out).contains(until) {
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        match read {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Cleans up after a failed test: kills every process of every taskserv under the root (the
/// happy path removes them through the provider) and removes the root and the aux dirs.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let pattern = self.0.join("*/*/taskservs/*");
        for ws in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            for srv in std::fs::read_dir(ws.path()).into_iter().flatten().flatten() {
                for ts in std::fs::read_dir(srv.path().join(TASKSERVS_DIR))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let tsdir = ts.path();
                    let rec: Option<TaskservRecord> =
                        read_json(&tsdir.join(TASKSERV_FILE)).ok().flatten();
                    let tsdir_s = tsdir.to_str().unwrap_or_default();
                    for _ in 0..50 {
                        let family = procs::family(
                            rec.as_ref().map(|r| r.pgid),
                            rec.as_ref().and_then(|r| r.start),
                            tsdir_s,
                        );
                        if family.is_empty() {
                            break;
                        }
                        for p in family {
                            procs::signal(p.pid, Signal::SIGKILL);
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    if let Some(aux) = rec.and_then(|r| r.aux_dir) {
                        let _ = std::fs::remove_dir_all(aux);
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
        eprintln!("cleaned up {} after the failure", pattern.display());
    }
}

/// `GET /` by hand, returning the whole answer.
async fn reqwest_free_get(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Runs the futures concurrently (the engine has no `futures` crate).
async fn join_all<F: std::future::Future + Unpin>(mut futs: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut results: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if results[i].is_none() {
                match std::pin::Pin::new(&mut *f).poll(cx) {
                    Poll::Ready(v) => results[i] = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(Option::unwrap).collect()
}
