//! Cloud providers against stand-ins of their APIs, started and stopped by each trial.
//!
//! Hetzner Cloud: cloudalone (PyPI, a third-party emulator of the Hetzner Cloud API) with its
//! `stub` backend, installed by scripts/test. Its servers run no machine and have no IPv4, so
//! nothing is installed on them over SSH; it stores no labels (so finding a server again rests on
//! the id recorded at create, checked by name) and has no firewalls, networks or rate limits.
//!
//! What cloudalone lacks (labels, IPv4 for SSH, rate limits) is tried against
//! `tests/fakes/hetzner.py`, a stateful FAKE following Hetzner's published API.
//!
//! AWS EC2: moto (PyPI, a third-party emulator of AWS's APIs), installed by scripts/test; its
//! instances run no machine, so nothing is installed on them over SSH here (the live tier does).
//!
//! UpCloud: no emulator exists in any registry, so `tests/fakes/upcloud.py` is a stateful FAKE
//! that follows UpCloud's published API (see its header). What is checked is what a user sees
//! and what the cloud's own API reports: servers created with our labels, a re-plan with no
//! changes, drift when a server is deleted behind our back, `kill -9` + resume leaving exactly
//! one server per config entry, destroy leaving none, bad credentials failing at once, and a
//! canary credential in no output, state, audit entry or log.

use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use libtest_mimic::Trial;
use serde_json::Value;
use tests::{root, scratch};

mod aws;
mod hetzner;

use crate::check;
use crate::ssh::{http_get, ok, processes_with, text, this_os};

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "clouds::upcloud_servers_apply_drift_resume_and_destroy",
            || check(upcloud_servers_apply_drift_resume_and_destroy),
        ),
        Trial::test("clouds::upcloud_taskservs_install_over_ssh", || {
            check(upcloud_taskservs_install_over_ssh)
        }),
        Trial::test("clouds::hetzner_servers_on_cloudalone", || {
            check(hetzner::servers_on_cloudalone)
        }),
        Trial::test("clouds::hetzner_labels_rate_limits_and_taskservs", || {
            check(hetzner::labels_rate_limits_and_taskservs)
        }),
        Trial::test("clouds::aws_servers_on_moto", || {
            check(aws::servers_on_moto)
        }),
    ]
}

const USER: &str = "canary-upcloud-user";
const PASSWORD: &str = "canary-upcloud-password-7f3a9c";

/// The fake UpCloud API on a loopback port; killed when dropped.
struct FakeUpCloud {
    child: Child,
    base: String,
}

impl FakeUpCloud {
    fn start(log: &Path) -> FakeUpCloud {
        FakeUpCloud::start_with(log, &[])
    }

    fn start_with(log: &Path, args: &[&str]) -> FakeUpCloud {
        let mut child = Command::new("python3")
            .arg(root().join("tests/fakes/upcloud.py"))
            .args(["--username", USER, "--password", PASSWORD])
            .args(["--boot-seconds", "1", "--stop-seconds", "1"])
            .arg("--log")
            .arg(log)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        FakeUpCloud { child, base }
    }

    /// A call to the fake's API, as the cloud's own client would make it.
    fn api(&self, method: &str, path: &str) -> Value {
        let out = Command::new("curl")
            .args(["-s", "-u", &format!("{USER}:{PASSWORD}"), "-X", method])
            .arg(format!("{}/1.3/{path}", self.base))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Our servers of `workspace`, by their labels.
    fn servers(&self, workspace: &str) -> Vec<Value> {
        let listed = self.api(
            "GET",
            &format!("server/?label=managed-by%3Dprovisioning&label=prov-workspace%3D{workspace}"),
        );
        listed["servers"]["server"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for FakeUpCloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`crate::ssh::cli`] with the fake's UpCloud credentials (`env` comes after, so it can
/// replace them).
fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec![("UPCLOUD_USERNAME", USER), ("UPCLOUD_PASSWORD", PASSWORD)];
    all.extend_from_slice(env);
    crate::ssh::cli(dir, args, &all)
}

/// A config of `provider` servers `(name, plan, zone, image)` (an empty image: the default).
/// The image of `provider`'s catalog whose OS is this machine's: the fakes' servers are this
/// machine over SSH, and validation holds the taskservs' versions to what that OS packages.
pub(super) fn this_image(provider: &str) -> String {
    let os = this_os();
    let catalog = knowledge::Catalog::embedded().unwrap();
    catalog.providers[provider]
        .images
        .iter()
        .find(|(_, i)| i.os == os)
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| panic!("`{provider}` has no image of {os}, this machine's OS"))
}

fn cloud_config(
    dir: &Path,
    workspace: &str,
    provider: &str,
    servers: &[(&str, &str, &str, &str)],
) -> String {
    let servers: Vec<String> = servers
        .iter()
        .map(|(n, plan, zone, image)| {
            let image = if image.is_empty() {
                String::new()
            } else {
                format!(r#", image = "{image}""#)
            };
            format!(
                r#"{{ name = "{n}", provider = "{provider}", plan = "{plan}", zone = "{zone}"{image} }}"#
            )
        })
        .collect();
    let path = dir.join(format!("{workspace}.ncl"));
    std::fs::write(
        &path,
        format!(
            "{{ workspace = {{ name = \"{workspace}\", environment = \"dev\" }}, servers = [{}] }}",
            servers.join(", ")
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn config(dir: &Path, workspace: &str, names: &[&str]) -> String {
    let servers: Vec<String> = names
        .iter()
        .map(|n| {
            format!(
                r#"{{ name = "{n}", provider = "upcloud", plan = "1xCPU-1GB", zone = "fi-hel1" }}"#
            )
        })
        .collect();
    let path = dir.join(format!("{workspace}.ncl"));
    std::fs::write(
        &path,
        format!(
            "{{ workspace = {{ name = \"{workspace}\", environment = \"dev\" }}, servers = [{}] }}",
            servers.join(", ")
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn upcloud_servers_apply_drift_resume_and_destroy() {
    let dir = scratch("clouds-upcloud");
    let fake = FakeUpCloud::start(&dir.join("fake.log"));
    std::fs::write(
        dir.join("config.toml"),
        format!("[upcloud]\nendpoint = \"{}\"\n", fake.base),
    )
    .unwrap();
    let mut seen = String::new();
    let mut run = |args: &[&str], env: &[(&str, &str)]| {
        let out = cli(&dir, args, env);
        seen.push_str(&text(&out));
        out
    };

    // Apply: two servers, made with our labels, started, recorded with their addresses.
    let web = config(&dir, "cloudy", &["web-1", "web-2"]);
    let applied = run(&["apply", &web, "--yes"], &[]);
    assert!(applied.status.success(), "{}", text(&applied));
    let servers = fake.servers("cloudy");
    assert_eq!(servers.len(), 2, "{servers:?}");
    for s in &servers {
        assert_eq!(s["state"], "started", "{s}");
        assert_eq!(s["zone"], "fi-hel1", "{s}");
        assert_eq!(s["plan"], "1xCPU-1GB", "{s}");
    }
    let state = ok(run(&["state", "--json"], &[]));
    let state: Value = serde_json::from_slice(&state.stdout).unwrap();
    let recorded: Vec<&Value> = state.as_array().unwrap().iter().collect();
    assert_eq!(recorded.len(), 2, "{state}");
    let uuids: Vec<&str> = servers
        .iter()
        .map(|s| s["uuid"].as_str().unwrap())
        .collect();
    for r in &recorded {
        assert!(
            uuids.contains(&r["provider_id"].as_str().unwrap_or_default()),
            "{r}"
        );
        assert_eq!(r["observed"]["address"], "127.0.0.1", "{r}");
    }

    // A re-plan shows no changes.
    let replan = ok(run(&["plan", &web], &[]));
    assert!(
        String::from_utf8_lossy(&replan.stdout).contains("No changes"),
        "{}",
        text(&replan)
    );

    // Deleted behind our back (through the cloud's own API): drift says so.
    let gone = servers
        .iter()
        .find(|s| {
            s["labels"]["label"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["value"] == "web-2")
        })
        .unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    fake.api("POST", &format!("server/{gone}/stop"));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    fake.api("DELETE", &format!("server/{gone}"));
    assert_eq!(fake.servers("cloudy").len(), 1);
    let drift = run(&["drift", "--workspace", "cloudy"], &[]);
    let said = text(&drift);
    assert!(
        said.contains("web-2") && said.to_lowercase().contains("missing"),
        "{said}"
    );

    // Destroy leaves nothing of ours.
    ok(run(&["destroy", &web, "--yes"], &[]));
    assert!(fake.servers("cloudy").is_empty());

    // kill -9 right after the create, before it was recorded; resume finds the server by its
    // labels instead of creating a second one.
    let crash = config(&dir, "crashy", &["db-1"]);
    // Fault points: 1 workflow started, then per step before-checkpoint, before-effect,
    // after-effect (4: the create is done, nothing recorded), after-checkpoint.
    let killed = run(
        &["apply", &crash, "--yes"],
        &[("PROVISIONING_FAULT_KILL_AT", "4")],
    );
    assert_eq!(killed.status.signal(), Some(9), "{}", text(&killed));
    assert_eq!(
        fake.servers("crashy").len(),
        1,
        "the create happened before the kill"
    );
    let status = ok(run(&["status", "--json"], &[]));
    let wf = serde_json::from_slice::<Value>(&status.stdout).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resumed = ok(run(&["resume", &wf], &[]));
    assert!(text(&resumed).contains("succeeded"), "{}", text(&resumed));
    let after = fake.servers("crashy");
    assert_eq!(
        after.len(),
        1,
        "exactly one server per config entry: {after:?}"
    );
    let creates = std::fs::read_to_string(dir.join("fake.log"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""method": "POST", "path": "/1.3/server""#))
        .count();
    assert_eq!(
        creates,
        2 + 1,
        "one create per server, none repeated by the resume"
    );

    // Wrong credentials: the step fails at once (no retry), naming where they came from.
    let other = config(&dir, "denied", &["x-1"]);
    let denied = run(
        &["apply", &other, "--yes"],
        &[("UPCLOUD_PASSWORD", "canary-wrong-password-0d1e")],
    );
    assert!(!denied.status.success(), "{}", text(&denied));
    let said = text(&denied);
    assert!(said.contains("AUTHENTICATION_FAILED"), "{said}");
    assert!(said.contains("env:UPCLOUD_PASSWORD"), "{said}");
    assert!(!said.contains("canary-wrong-password"), "{said}");
    assert!(fake.servers("denied").is_empty());

    // The credentials appear nowhere: outputs, state, the audit log, the server's logs.
    ok(run(&["destroy", &crash, "--yes"], &[]));
    // (`run` keeps every command's output in `seen`.)
    ok(run(&["audit", "export"], &[]));
    ok(run(&["status", "--json"], &[]));
    ok(run(&["state", "--json"], &[]));
    for entry in tests::walk(&dir.join("data")) {
        if let Ok(bytes) = std::fs::read(&entry) {
            seen.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    assert!(!seen.contains(PASSWORD), "the password leaked");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The whole path on UpCloud, applied from an MCP client: servers through the API (the FAKE),
/// then taskservs (nginx and postgres, Debian packages) over SSH at the address the API reports — a real OpenSSH server on
/// loopback, which accepts exactly the public key the provider put in the servers' login block
/// (the fake hands it to that sshd's authorized_keys, as cloud-init would). The services answer,
/// drift finds nothing, a re-plan has nothing to do, destroy leaves no server, process, folder or
/// recorded host key, and the private key is in no output or file of ours.
fn upcloud_taskservs_install_over_ssh() {
    let dir = scratch("clouds-upcloud-ssh");
    let sshd = tests::sshd::Sshd::start(&dir.join("sshd"), None);
    // Only what the API is given may open the door.
    let authorized = sshd.dir.join("authorized_keys");
    std::fs::write(&authorized, "").unwrap();
    let fake = FakeUpCloud::start_with(
        &dir.join("fake.log"),
        &["--authorized-keys", authorized.to_str().unwrap()],
    );
    let client = sshd.dir.join("client");
    let user = tests::sshd::whoami();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[upcloud]\nendpoint = \"{}\"\nssh_public_key = \"file:{}\"\nssh_key = \"file:{}\"\n\
             ssh_user = \"{user}\"\nssh_port = {}\nstate_wait_secs = 60\n",
            fake.base,
            client.with_extension("pub").display(),
            client.display(),
            sshd.port
        ),
    )
    .unwrap();
    let mut seen = String::new();
    let mut run = |args: &[&str]| {
        let out = cli(&dir, args, &[]);
        seen.push_str(&text(&out));
        out
    };
    let os = this_os();
    let postgres = knowledge::taskserv_scripts("postgres")
        .unwrap()
        .unwrap()
        .meta
        .packaged
        .get(&os)
        .cloned()
        .unwrap_or_else(|| panic!("postgres has no packaged version for {os}"));
    let nginx = knowledge::taskserv_scripts("nginx")
        .unwrap()
        .unwrap()
        .meta
        .packaged
        .get(&os)
        .cloned()
        .unwrap_or_else(|| panic!("nginx has no packaged version for {os}"));
    let image = this_image("upcloud");
    let (web_port, db_port) = (tests::sshd::free_port(), tests::sshd::free_port());
    let ncl = dir.join("stack.ncl");
    std::fs::write(
        &ncl,
        format!(
            "{{ workspace = {{ name = \"upstack\", environment = \"dev\" }},\n  servers = [\n    \
             {{ name = \"web-1\", provider = \"upcloud\", plan = \"1xCPU-1GB\", zone = \"fi-hel1\", \
             image = \"{image}\", taskservs = [{{ name = \"nginx\", version = \"{nginx}\", config = {{ port = {web_port} }} }}] }},\n    \
             {{ name = \"db-1\", provider = \"upcloud\", plan = \"1xCPU-2GB\", zone = \"fi-hel1\", \
             image = \"{image}\", taskservs = [{{ name = \"postgres\", version = \"{postgres}\", config = {{ port = {db_port}, max_connections = 40, shared_buffers = \"16MB\" }} }}] }},\n  ],\n}}\n"
        ),
    )
    .unwrap();
    let ncl = ncl.display().to_string();

    // Applied from an MCP client: the official Python SDK over stdio (tests/python/cloud_apply.py).
    let applied = Command::new(crate::mcp::python())
        .arg(root().join("tests/python/cloud_apply.py"))
        .arg(tests::binary())
        .arg(&dir)
        .arg(&ncl)
        .env("UPCLOUD_USERNAME", USER)
        .env("UPCLOUD_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let mcp_said = text(&applied);
    assert!(applied.status.success(), "{mcp_said}");
    let result: Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(fake.servers("upstack").len(), 2);
    assert_eq!(http_get(web_port, "/"), "nginx for upstack/web-1\n");
    let pg = Command::new("pg_isready")
        .args(["-h", "127.0.0.1", "-p", &db_port.to_string()])
        .output()
        .unwrap();
    assert!(pg.status.success(), "{pg:?}");
    // The server settings of the config reach the server's command line.
    let pg_procs = processes_with(&format!("-p {db_port}"));
    assert!(
        pg_procs
            .iter()
            .any(|p| p.contains("max_connections=40") && p.contains("shared_buffers=16MB")),
        "{pg_procs:?}"
    );
    // Each server's firewall is on: SSH, the public port of its taskservs (nginx's, not
    // postgres's: that one is for the workspace, over the utility network), the replies to its
    // own connections (UpCloud's firewall is stateless), then everything else dropped.
    let firewall = |name: &str| -> (Value, Vec<Value>) {
        let servers = fake.servers("upstack");
        let uuid = servers
            .iter()
            .find(|s| s["title"] == format!("upstack-{name}").as_str())
            .and_then(|s| s["uuid"].as_str())
            .unwrap_or_else(|| panic!("{servers:?}"))
            .to_string();
        let rules = fake.api("GET", &format!("server/{uuid}/firewall_rule"));
        (
            fake.api("GET", &format!("server/{uuid}"))["server"]["firewall"].clone(),
            rules["firewall_rules"]["firewall_rule"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        )
    };
    let tcp_in = |rules: &[Value]| -> Vec<String> {
        let mut ports: Vec<String> = rules
            .iter()
            .filter(|r| r["direction"] == "in" && r["action"] == "accept" && r["protocol"] == "tcp")
            .map(|r| r["destination_port_start"].as_str().unwrap().to_string())
            .collect();
        ports.dedup();
        ports
    };
    let (on, web_rules) = firewall("web-1");
    assert_eq!(on, "on");
    assert_eq!(
        tcp_in(&web_rules),
        [
            sshd.port.to_string(),
            web_port.to_string(),
            "32768".to_string()
        ],
        "{web_rules:?}"
    );
    let last_in = web_rules.iter().rev().find(|r| r["direction"] == "in");
    assert_eq!(last_in.unwrap()["action"], "drop", "{web_rules:?}");
    let (on, db_rules) = firewall("db-1");
    assert_eq!(on, "on");
    assert_eq!(
        tcp_in(&db_rules),
        [sshd.port.to_string(), "32768".to_string()],
        "{db_rules:?}"
    );
    assert!(
        db_rules
            .iter()
            .any(|r| r["source_address_start"] == "10.0.0.0"
                && r["source_address_end"] == "10.255.255.255"
                && r["action"] == "accept"),
        "the utility network reaches postgres: {db_rules:?}"
    );
    // The key went through the API: the login block the fake received is what let us in.
    let public = std::fs::read_to_string(client.with_extension("pub")).unwrap();
    assert!(
        std::fs::read_to_string(&authorized)
            .unwrap()
            .contains(public.trim()),
        "the public key reached the server through its login block"
    );
    // State: the server as the API sees it, plus what SSH read on the machine.
    let state = ok(run(&["state", "--json"]));
    let state: Value = serde_json::from_slice(&state.stdout).unwrap();
    let server = state
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "server/web-1")
        .unwrap_or_else(|| panic!("{state}"));
    assert_eq!(server["observed"]["address"], "127.0.0.1", "{server}");
    assert_eq!(server["observed"]["plan"], "1xCPU-1GB", "{server}");
    assert_eq!(server["observed"]["os"], os.as_str(), "{server}");
    assert!(
        server["observed"]["host_key"]
            .as_str()
            .unwrap_or_default()
            .starts_with("SHA256:"),
        "{server}"
    );
    let known = std::fs::read_to_string(dir.join("data/upcloud/known_hosts")).unwrap();
    let uuid = server["provider_id"].as_str().unwrap();
    assert!(
        known.contains(&format!("provisioning-upcloud-{uuid}")),
        "{known}"
    );

    let drift = ok(run(&["drift", "--workspace", "upstack"]));
    assert!(
        String::from_utf8_lossy(&drift.stdout).contains("no drift"),
        "{}",
        text(&drift)
    );
    let replan = ok(run(&["plan", &ncl]));
    assert!(
        String::from_utf8_lossy(&replan.stdout).contains("No changes"),
        "{}",
        text(&replan)
    );

    // Destroy: the taskservs' remove scripts, then the servers; nothing of ours is left.
    let home = Command::new("sh")
        .args(["-c", "getent passwd \"$(id -un)\" | cut -d: -f6"])
        .output()
        .unwrap();
    let folders =
        Path::new(String::from_utf8_lossy(&home.stdout).trim()).join(".provisioning/upstack");
    assert!(
        folders.join("web-1/nginx").is_dir(),
        "{}",
        folders.display()
    );
    ok(run(&["destroy", &ncl, "--yes"]));
    assert!(fake.servers("upstack").is_empty());
    assert_eq!(http_get(web_port, "/"), "");
    // The taskservs' remove scripts ran; the servers' own folders would go with their disks
    // (the fake destroys no disk: the loopback machine outlives its "servers").
    for left in ["web-1/nginx", "db-1/postgres"] {
        assert!(!folders.join(left).exists(), "{left} is left");
    }
    let _ = std::fs::remove_dir_all(&folders);
    let procs = processes_with(&folders.display().to_string());
    assert!(procs.is_empty(), "still running: {procs:?}");
    let known = std::fs::read_to_string(dir.join("data/upcloud/known_hosts")).unwrap_or_default();
    assert!(
        !known.contains(uuid),
        "the host key of a deleted server is kept: {known}"
    );

    // Without the private key configured, a taskserv on UpCloud fails at once, saying what to set.
    std::fs::write(
        dir.join("config.toml"),
        format!("[upcloud]\nendpoint = \"{}\"\n", fake.base),
    )
    .unwrap();
    let nokey = run(&["apply", &ncl, "--yes"]);
    assert!(!nokey.status.success(), "{}", text(&nokey));
    assert!(text(&nokey).contains("ssh_key"), "{}", text(&nokey));
    ok(run(&["destroy", &ncl, "--yes"]));
    assert!(fake.servers("upstack").is_empty());

    // The private key is in no output and no file of ours.
    ok(run(&["audit", "export"]));
    seen.push_str(&mcp_said);
    for entry in tests::walk(&dir.join("data")) {
        if let Ok(bytes) = std::fs::read(&entry) {
            seen.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    let private = std::fs::read_to_string(&client).unwrap();
    let body = private.lines().nth(1).unwrap();
    assert!(!seen.contains(body), "the private key leaked");
    assert!(!seen.contains(PASSWORD), "the API password leaked");
    drop(sshd);
    let _ = std::fs::remove_dir_all(&dir);
}
