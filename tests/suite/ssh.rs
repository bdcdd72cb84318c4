//! The `ssh` provider against a real OpenSSH server (Debian `openssh-server`) that each trial
//! starts on a loopback port, with its own host key and an authorized key the trial generates.
//! The inventory host's `root` keeps each trial's "host" in its own folder, so trials on this one
//! machine do not collide. What is checked is what a user sees: the services answer on their
//! ports, drift finds nothing, destroy leaves no process and no folder, a changed host key stops
//! the step, a `kill -9` after an install then `resume` starts each service once.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use libtest_mimic::Trial;
use serde_json::Value;
use tests::sshd::{Sshd, free_port, keygen};
use tests::{root, scratch};

use crate::check;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("ssh::the_example_stack_applies_drifts_and_destroys", || {
            check(the_example_stack_applies_drifts_and_destroys)
        }),
        Trial::test("ssh::a_changed_host_key_fails_the_step", || {
            check(a_changed_host_key_fails_the_step)
        }),
        Trial::test(
            "ssh::kill_after_an_install_then_resume_starts_it_once",
            || check(kill_after_an_install_then_resume_starts_it_once),
        ),
        Trial::test("ssh::two_hosts_pass_facts_across_namespaces", || {
            check(two_hosts_pass_facts_across_namespaces)
        }),
        Trial::test(
            "ssh::every_tested_taskserv_installs_answers_and_goes",
            || check(every_tested_taskserv_installs_answers_and_goes),
        ),
        Trial::test(
            "ssh::an_unpackaged_version_fails_at_once_and_rolls_back",
            || check(an_unpackaged_version_fails_at_once_and_rolls_back),
        ),
        Trial::test("ssh::every_script_passes_sh_n_and_shellcheck", || {
            check(every_script_passes_sh_n_and_shellcheck)
        }),
        Trial::test(
            "ssh::the_inventory_decides_which_hosts_a_config_reaches",
            || check(the_inventory_decides_which_hosts_a_config_reaches),
        ),
    ]
}

/// A config reaches only the inventory's hosts, and only those open to its workspace; a bad
/// inventory entry stops the server from starting, naming the entry. No refusal records
/// anything or contacts any host (the inventory's address here has no SSH server at all).
fn the_inventory_decides_which_hosts_a_config_reaches() {
    let dir = scratch("ssh-inventory");
    let port = free_port();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[ssh.hosts.rack-1]\naddress = \"127.0.0.1\"\nport = {port}\nuser = \"ops\"\n\
             workspaces = [\"team-a\"]\n"
        ),
    )
    .unwrap();
    let cases = [
        (
            "team-a",
            "rack-9",
            "names host `rack-9`, which is not in the operator's SSH inventory (known: rack-1)",
        ),
        (
            "team-b",
            "rack-1",
            "host `rack-1` is not open to workspace `team-b`",
        ),
    ];
    for (workspace, host, expected) in cases {
        let ncl = dir.join(format!("{workspace}.ncl"));
        std::fs::write(
            &ncl,
            format!(
                "{{ workspace = {{ name = \"{workspace}\", environment = \"dev\" }},\n  servers = [\n    \
                 {{ name = \"s1\", provider = \"ssh\", plan = \"existing\", zone = \"inventory\", host = \"{host}\" }}\n  ],\n}}\n"
            ),
        )
        .unwrap();
        let out = cli(&dir, &["apply", &ncl.display().to_string(), "--yes"], &[]);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(expected), "{}", text(&out));
        // One attempt: a refusal is permanent.
        assert!(!text(&out).contains("retrying"), "{}", text(&out));
    }
    let state = ok(cli(&dir, &["state", "--json"], &[]));
    let state: Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(state, serde_json::json!([]), "nothing is recorded");
    assert!(
        !dir.join("data/ssh/known_hosts").exists(),
        "no host was contacted"
    );

    for (entry, expected) in [
        (
            "address = \"-oProxyCommand=touch /tmp/x\"\nworkspaces = [\"*\"]",
            "ssh.hosts.bad.address: `-oProxyCommand=touch /tmp/x` is not a host name",
        ),
        (
            "address = \"10.0.0.5\"\nworkspaces = []",
            "ssh.hosts.bad.workspaces is empty",
        ),
        (
            "address = \"10.0.0.5\"\nuser = \"root -i x\"\nworkspaces = [\"*\"]",
            "ssh.hosts.bad.user: `root -i x` is not",
        ),
    ] {
        std::fs::write(
            dir.join("config.toml"),
            format!("[ssh.hosts.bad]\n{entry}\n"),
        )
        .unwrap();
        let out = cli(&dir, &["state"], &[]);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(expected), "{}", text(&out));
    }
}

/// The CLI on the installation in `dir` (data, config file), with `env` added.
pub(crate) fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(tests::binary())
        .args(args)
        .current_dir(dir)
        .env("PROVISIONING_PATHS_DATA_DIR", dir.join("data"))
        .env("PROVISIONING_CONFIG", dir.join("config.toml"))
        .env("PROVISIONING_PATHS_MODELS_DIR", dir.join("no-models"))
        .env("XDG_CONFIG_HOME", "/nonexistent/provisioning-tests")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", text(&out));
    out
}

/// Processes whose command line or working directory mentions `needle`.
pub(crate) fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
        {
            continue;
        }
        // Some services rewrite their command line (redis shows only its address), so the
        // working directory counts too.
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) || cwd.contains(needle) {
                found.push(format!("{cmd} (in {cwd})"));
            }
        }
    }
    found
}

fn redis_ping(port: u16) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "ping"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub(crate) fn http_get(port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The acceptance stack: `examples/ssh-dev.ncl` (redis, nginx, postgres on three servers of the
/// loopback host) applies, every service answers, drift finds nothing, a re-plan has nothing to
/// do, destroy leaves no process and no folder.
fn the_example_stack_applies_drifts_and_destroys() {
    let dir = scratch("ssh-stack");
    let sshd = Sshd::start(&dir.join("sshd"), None);
    let hostroot = dir.join("hostroot");
    sshd.write_config(&dir.join("config.toml"), &hostroot);
    let example = root().join("examples/ssh-dev.ncl");
    let example = example.to_str().unwrap();
    let out = ok(cli(&dir, &["apply", example, "--yes"], &[]));
    assert!(text(&out).contains("succeeded"), "{}", text(&out));
    assert_eq!(redis_ping(26379), "PONG");
    assert_eq!(http_get(28080, "/"), "nginx for ssh-dev/web-1\n");
    let pg = Command::new("pg_isready")
        .args(["-h", "127.0.0.1", "-p", "25432"])
        .output()
        .unwrap();
    assert!(pg.status.success(), "{pg:?}");
    // The host key was recorded on first contact and the server's facts read from the host.
    let known = std::fs::read_to_string(dir.join("data/ssh/known_hosts")).unwrap();
    assert!(known.contains("provisioning-loopback"), "{known}");
    let status = ok(cli(&dir, &["state", "--json"], &[]));
    let state: Value = serde_json::from_slice(&status.stdout).unwrap();
    let server = state
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "server/cache-1")
        .unwrap();
    let seen = &server["observed"];
    assert!(
        seen["host_key"].as_str().unwrap().starts_with("SHA256:"),
        "host key fingerprint recorded: {server}"
    );
    let os = seen["os"].as_str().unwrap();
    assert!(
        os.starts_with("debian-") || os.starts_with("ubuntu-"),
        "{server}"
    );
    assert!(seen["cores"].as_u64().unwrap() >= 1, "{server}");
    assert!(seen["memory_mb"].as_u64().unwrap() >= 64, "{server}");
    let drift = ok(cli(&dir, &["drift", "--workspace", "ssh-dev"], &[]));
    assert!(
        String::from_utf8_lossy(&drift.stdout).contains("no drift"),
        "{}",
        text(&drift)
    );
    let again = ok(cli(&dir, &["plan", example], &[]));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 to create"),
        "{}",
        text(&again)
    );
    let pg_data = std::fs::read_to_string(hostroot.join("ssh-dev/db-1/postgres/datadir"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| {
            hostroot
                .join("ssh-dev/db-1/postgres/data")
                .display()
                .to_string()
        });
    ok(cli(&dir, &["destroy", example, "--yes"], &[]));
    assert_eq!(redis_ping(26379), "");
    let left: Vec<_> = std::fs::read_dir(&hostroot)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left on the host: {left:?}");
    assert!(!Path::new(&pg_data).exists(), "{pg_data} is left");
    for needle in [hostroot.display().to_string(), pg_data] {
        let procs = processes_with(&needle);
        assert!(procs.is_empty(), "still running: {procs:?}");
    }
}

/// A config of one server with redis on `port`.
fn one_redis(dir: &Path, workspace: &str, port: u16) -> String {
    let path = dir.join(format!("{workspace}.ncl"));
    std::fs::write(
        &path,
        format!(
            "{{ workspace = {{ name = \"{workspace}\", environment = \"dev\" }},\n\
             servers = [{{ name = \"cache-1\", provider = \"ssh\", plan = \"existing\", \
             zone = \"inventory\", host = \"loopback\", taskservs = [{{ name = \"redis\", \
             version = \"7.0\", config = {{ port = {port} }} }}] }}] }}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// The host comes back with another key (reinstalled, or someone in the middle): the step fails
/// at once, permanently, saying what to do; nothing is installed or removed. With the old key
/// back, destroy goes through.
fn a_changed_host_key_fails_the_step() {
    let dir = scratch("ssh-hostkey");
    let sshd_dir = dir.join("sshd");
    let sshd = Sshd::start(&sshd_dir, None);
    let hostroot = dir.join("hostroot");
    sshd.write_config(&dir.join("config.toml"), &hostroot);
    let port = free_port();
    let config = one_redis(&dir, "hostkey", port);
    ok(cli(&dir, &["apply", &config, "--yes"], &[]));
    assert_eq!(redis_ping(port), "PONG");
    let ssh_port = sshd.port;
    drop(sshd);
    std::fs::copy(sshd_dir.join("host_key"), dir.join("original_host_key")).unwrap();
    keygen(&sshd_dir.join("host_key"));
    let impostor = Sshd::start(&sshd_dir, Some(ssh_port));
    let out = cli(&dir, &["destroy", &config, "--yes"], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("is not the one recorded at first contact"),
        "{said}"
    );
    assert!(
        said.contains("ssh-keygen -R provisioning-loopback"),
        "{said}"
    );
    // Permanent: one attempt, no retries against the impostor.
    assert!(!said.contains("attempt 2"), "{said}");
    assert_eq!(redis_ping(port), "PONG", "nothing was removed");
    drop(impostor);
    std::fs::copy(dir.join("original_host_key"), sshd_dir.join("host_key")).unwrap();
    let _sshd = Sshd::start(&sshd_dir, Some(ssh_port));
    let wf = latest_workflow(&dir);
    ok(cli(&dir, &["resume", &wf], &[]));
    assert_eq!(redis_ping(port), "");
    assert!(processes_with(&hostroot.display().to_string()).is_empty());
}

fn latest_workflow(dir: &Path) -> String {
    let out = ok(cli(dir, &["status", "--json"], &[]));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list[0]["id"].as_str().unwrap().to_string()
}

/// `kill -9` right after redis was installed and before the step was recorded: `resume`
/// runs the install again, which finds redis running with the same config and starts nothing.
fn kill_after_an_install_then_resume_starts_it_once() {
    let dir = scratch("ssh-crash");
    let sshd = Sshd::start(&dir.join("sshd"), None);
    let hostroot = dir.join("hostroot");
    sshd.write_config(&dir.join("config.toml"), &hostroot);
    let port = free_port();
    let config = one_redis(&dir, "crash", port);
    // Fault points: 1 workflow started, then 4 per step (before-checkpoint, before-effect,
    // after-effect, after-checkpoint): 8 is after redis's install, before its checkpoint.
    let out = cli(
        &dir,
        &["apply", &config, "--yes"],
        &[("PROVISIONING_FAULT_KILL_AT", "8")],
    );
    assert_eq!(out.status.signal(), Some(9), "{}", text(&out));
    let starts = hostroot.join("crash/cache-1/redis/starts");
    assert_eq!(
        redis_ping(port),
        "PONG",
        "the install finished before the kill"
    );
    let wf = latest_workflow(&dir);
    let resumed = ok(cli(&dir, &["resume", &wf], &[]));
    assert!(text(&resumed).contains("succeeded"), "{}", text(&resumed));
    let count = std::fs::read_to_string(&starts).unwrap().lines().count();
    assert_eq!(count, 1, "redis was started {count} times");
    ok(cli(&dir, &["destroy", &config, "--yes"], &[]));
    assert!(processes_with(&hostroot.display().to_string()).is_empty());
}

/// Every script, assembled as the runner sends it, parses (`sh -n`) and passes shellcheck.
fn every_script_passes_sh_n_and_shellcheck() {
    let dir = scratch("ssh-scripts");
    let lib = knowledge::taskserv_lib();
    for name in knowledge::script_taskservs() {
        let scripts = knowledge::taskserv_scripts(name).unwrap().unwrap();
        for (what, body) in [
            ("install", scripts.install),
            ("health", scripts.health),
            ("remove", scripts.remove),
        ] {
            let text = format!(
                "set -eu\nexport PROV_WORKSPACE='w' PROV_SERVER='s' PROV_TASKSERV='{name}' \
                 PROV_VERSION='1' PROV_BIND='127.0.0.1' PROV_ROOT='/tmp/r'\n\
                 export PROV_DIR=\"$PROV_ROOT/w/s/{name}\"\n{lib}\nprov_health() (\n{}\n)\n{body}\n",
                scripts.health
            );
            let path = dir.join(format!("{name}-{what}.sh"));
            std::fs::write(&path, text).unwrap();
            let n = Command::new("sh").arg("-n").arg(&path).output().unwrap();
            assert!(n.status.success(), "{name}/{what}.sh: {n:?}");
            let sc = Command::new("shellcheck")
                .args(["-s", "sh", "-S", "warning"])
                .arg(&path)
                .output()
                .expect("shellcheck (Debian package shellcheck; scripts/test installs it)");
            assert!(
                sc.status.success(),
                "{name}/{what}.sh:\n{}",
                String::from_utf8_lossy(&sc.stdout)
            );
        }
    }
}

/// Two network namespaces on a bridge, each a "host" with its own address; removed on drop.
struct Network {
    bridge: String,
    namespaces: Vec<String>,
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {} (these trials need root and iproute2 for network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces `pv<id>a`, `pv<id>b`... at `10.<net>.0.2`, `.3`... on bridge `pv<id>br` (10.<net>.0.1).
fn network(hosts: usize) -> (Network, Vec<String>) {
    let id = std::process::id() % 10_000;
    let net = 200 + (id % 50);
    let bridge = format!("pv{id}br");
    let mut network = Network {
        bridge: bridge.clone(),
        namespaces: Vec::new(),
    };
    ip(&["link", "add", &bridge, "type", "bridge"]);
    ip(&["addr", "add", &format!("10.{net}.0.1/24"), "dev", &bridge]);
    ip(&["link", "set", &bridge, "up"]);
    let mut addresses = Vec::new();
    for i in 0..hosts {
        let ns = format!("pv{id}{}", (b'a' + i as u8) as char);
        let (outside, inside) = (format!("{ns}o"), format!("{ns}i"));
        ip(&["netns", "add", &ns]);
        network.namespaces.push(ns.clone());
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        ip(&["link", "set", &inside, "netns", &ns]);
        ip(&["link", "set", &outside, "master", &bridge, "up"]);
        let address = format!("10.{net}.0.{}", i + 2);
        ip(&[
            "netns",
            "exec",
            &ns,
            "ip",
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            &inside,
        ]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", &inside, "up"]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        addresses.push(address);
    }
    (network, addresses)
}

/// Two hosts, each a network namespace with its own sshd and address: nginx on `front` (host A)
/// proxies to nginx on `back` (host B) at the address and port `back` reported, passed through
/// `{{back/nginx.address}}:{{back/nginx.port}}`. A request to A's address is answered by B.
fn two_hosts_pass_facts_across_namespaces() {
    let dir = scratch("ssh-two-hosts");
    let (network, addresses) = network(2);
    let a = Sshd::start_in(
        &dir.join("sshd-a"),
        Some(&network.namespaces[0]),
        &addresses[0],
        22,
    );
    let b = Sshd::start_in(
        &dir.join("sshd-b"),
        Some(&network.namespaces[1]),
        &addresses[1],
        22,
    );
    let config = format!(
        "{}\n{}",
        a.inventory_entry("host-a", &addresses[0], &dir.join("root-a")),
        b.inventory_entry("host-b", &addresses[1], &dir.join("root-b"))
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let ncl = dir.join("two-hosts.ncl");
    std::fs::write(
        &ncl,
        r#"{
  workspace = { name = "two-hosts", environment = "dev" },
  servers = [
    { name = "back", provider = "ssh", plan = "existing", zone = "inventory", host = "host-b",
      taskservs = [{ name = "nginx", version = "1.22", config = { port = 28080, bind = "0.0.0.0" } }] },
    { name = "front", provider = "ssh", plan = "existing", zone = "inventory", host = "host-a",
      taskservs = [{ name = "nginx", version = "1.22", depends_on = ["back/nginx"],
                    config = { port = 28080, bind = "0.0.0.0", upstream = "{{back/nginx.address}}:{{back/nginx.port}}" } }] },
  ],
}
"#,
    )
    .unwrap();
    let ncl = ncl.display().to_string();
    ok(cli(&dir, &["apply", &ncl, "--yes"], &[]));
    // Through A to B: the page names the back server.
    let front = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://{}:28080/", addresses[0]))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&front.stdout),
        "nginx for two-hosts/back\n",
        "{front:?}"
    );
    // The fact that flowed is B's address, not the wildcard it binds to.
    let state = ok(cli(&dir, &["state", "--json"], &[]));
    let state: Value = serde_json::from_slice(&state.stdout).unwrap();
    let back = state
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "taskserv/back/nginx")
        .unwrap();
    assert_eq!(back["observed"]["address"], addresses[1].as_str(), "{back}");
    assert_eq!(back["observed"]["port"], 28080, "{back}");
    ok(cli(&dir, &["destroy", &ncl, "--yes"], &[]));
    for root in ["root-a", "root-b"] {
        assert!(processes_with(&dir.join(root).display().to_string()).is_empty());
    }
    drop((a, b));
    drop(network);
}

/// This machine's OS as the scripts name it (`debian-12`).
pub(crate) fn this_os() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let version = field("VERSION_ID");
    format!(
        "{}-{}",
        field("ID"),
        version.split('.').next().unwrap_or("")
    )
}

/// Every taskserv whose `taskserv.toml` says `tested = true` is installed through its scripts
/// (the version this OS packages, a free port), passes its health check (drift finds nothing),
/// and is removed leaving no process and no folder: the flag is a claim this trial holds.
fn every_tested_taskserv_installs_answers_and_goes() {
    let dir = scratch("ssh-tested");
    let sshd = Sshd::start(&dir.join("sshd"), None);
    let hostroot = dir.join("hostroot");
    sshd.write_config(&dir.join("config.toml"), &hostroot);
    let os = this_os();
    let mut servers = Vec::new();
    let mut tested = Vec::new();
    for name in knowledge::script_taskservs() {
        let meta = knowledge::taskserv_scripts(name).unwrap().unwrap().meta;
        if !meta.tested {
            continue;
        }
        let version = meta
            .packaged
            .get(&os)
            .unwrap_or_else(|| panic!("{name} is marked tested but has no version for {os}"));
        // Every port the taskserv listens on, moved to a free one.
        let mut config: Vec<String> = meta
            .ports
            .keys()
            .map(|key| format!("{key} = {}", free_port()))
            .collect();
        let mut depends = String::new();
        if name == "pgbouncer" {
            // In front of the postgres of this trial, with its generated password: a secret
            // fact, whose value only pgbouncer's install is given.
            config.extend([
                "db_address = \"{{t-postgres/postgres.address}}\"".to_string(),
                "db_port = \"{{t-postgres/postgres.port}}\"".to_string(),
                "db_password = \"{{t-postgres/postgres.password}}\"".to_string(),
            ]);
            depends = "depends_on = [\"t-postgres/postgres\"], ".into();
        }
        servers.push(format!(
            "{{ name = \"t-{name}\", provider = \"ssh\", plan = \"existing\", zone = \"inventory\", \
             host = \"loopback\", taskservs = [{{ name = \"{name}\", version = \"{version}\", \
             {depends}config = {{ {} }} }}] }}",
            config.join(", ")
        ));
        tested.push(name);
    }
    assert!(tested.len() >= 10, "tested taskservs: {tested:?}");
    let ncl = dir.join("tested.ncl");
    std::fs::write(
        &ncl,
        format!(
            "{{ workspace = {{ name = \"tested\", environment = \"dev\" }},\n  servers = [\n    {}\n  ],\n}}\n",
            servers.join(",\n    ")
        ),
    )
    .unwrap();
    let ncl = ncl.display().to_string();
    let out = ok(cli(&dir, &["apply", &ncl, "--yes"], &[]));
    assert!(text(&out).contains("succeeded"), "{}", text(&out));
    // What the scripts printed is in the workflow's log, as it happened: the apply's progress
    // (standard error) shows it.
    let shown = String::from_utf8_lossy(&out.stderr).into_owned();
    for line in [
        "| PROV_OUTPUT port=",
        "| PROV_SECRET password=(kept as a secret)",
    ] {
        assert!(shown.contains(line), "no `{line}` in\n{shown}");
    }
    // pgbouncer passed its health check above (a query through it reached postgres): it was
    // given postgres's generated password. State records only a reference to it.
    let password = std::fs::read_to_string(hostroot.join("tested/t-postgres/postgres/password"))
        .unwrap()
        .trim()
        .to_string();
    assert!(password.len() >= 32, "{password}");
    let state = ok(cli(&dir, &["state", "--json"], &[]));
    let state: Value = serde_json::from_slice(&state.stdout).unwrap();
    let pg = state
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "taskserv/t-postgres/postgres")
        .unwrap();
    assert_eq!(
        pg["observed"]["password"],
        serde_json::json!({ "secret": "tested/t-postgres/postgres/password" }),
        "{pg}"
    );
    let kept = dir.join("data/ssh/secrets/tested/t-postgres/postgres/password");
    assert_eq!(std::fs::read_to_string(&kept).unwrap().trim(), password);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", kept.display());
    }
    let workflow = latest_workflow(&dir);
    let status = ok(cli(&dir, &["status", &workflow, "--json"], &[]));
    let audit = ok(cli(&dir, &["audit", "export"], &[]));
    for (what, output) in [("apply", &out), ("status", &status), ("audit", &audit)] {
        assert!(
            !text(output).contains(&password),
            "the password is in the {what} output"
        );
    }
    let logs = dir.join("data/ssh/logs");
    for entry in tests::walk(&logs) {
        let body = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !body.contains(&password),
            "the password is in {}",
            entry.display()
        );
    }
    let drift = ok(cli(&dir, &["drift", "--workspace", "tested"], &[]));
    assert!(
        String::from_utf8_lossy(&drift.stdout).contains("no drift"),
        "{}",
        text(&drift)
    );
    // postgres and mariadb keep their data outside the host root when run as root.
    let data_dirs: Vec<String> = tested
        .iter()
        .filter_map(|name| {
            std::fs::read_to_string(hostroot.join(format!("tested/t-{name}/{name}/datadir"))).ok()
        })
        .map(|d| d.trim().to_string())
        .collect();
    ok(cli(&dir, &["destroy", &ncl, "--yes"], &[]));
    let left: Vec<_> = std::fs::read_dir(&hostroot)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "left on the host after removing {tested:?}: {left:?}"
    );
    let procs = processes_with(&hostroot.display().to_string());
    assert!(procs.is_empty(), "still running: {procs:?}");
    assert!(!kept.exists(), "the kept password outlived its taskserv");
    for d in &data_dirs {
        assert!(!Path::new(d).exists(), "{d} is left");
        assert!(processes_with(d).is_empty(), "a database still runs on {d}");
    }
}

/// redis 7.4 is a catalog version, but not what this OS packages: its install fails at once,
/// permanently (one attempt), saying which version to use, and the workflow's rollback removes
/// the nginx installed before it through nginx's remove script.
fn an_unpackaged_version_fails_at_once_and_rolls_back() {
    let dir = scratch("ssh-rollback");
    let sshd = Sshd::start(&dir.join("sshd"), None);
    let hostroot = dir.join("hostroot");
    sshd.write_config(&dir.join("config.toml"), &hostroot);
    let (web, cache) = (free_port(), free_port());
    let ncl = dir.join("rollback.ncl");
    std::fs::write(
        &ncl,
        format!(
            r#"{{
  workspace = {{ name = "rollback", environment = "dev" }},
  servers = [
    {{ name = "web-1", provider = "ssh", plan = "existing", zone = "inventory", host = "loopback",
      taskservs = [{{ name = "nginx", version = "1.22", config = {{ port = {web} }} }}] }},
    {{ name = "cache-1", provider = "ssh", plan = "existing", zone = "inventory", host = "loopback",
      taskservs = [{{ name = "redis", version = "7.4", depends_on = ["web-1/nginx"], config = {{ port = {cache} }} }}] }},
  ],
  workflow = {{ on_failure = "rollback" }},
}}
"#
        ),
    )
    .unwrap();
    let out = cli(&dir, &["apply", &ncl.display().to_string(), "--yes"], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("not what debian-12 packages") || said.contains("not what ubuntu-"),
        "{said}"
    );
    assert!(said.contains("use version 7.0"), "{said}");
    assert!(
        !said.contains("attempt 2"),
        "a permanent failure is not retried: {said}"
    );
    assert!(said.contains("rolled back"), "{said}");
    assert_eq!(http_get(web, "/"), "", "nginx was removed by the rollback");
    assert!(!hostroot.join("rollback/web-1/nginx").exists());
    assert!(processes_with(&hostroot.display().to_string()).is_empty());
}
