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
            check(hetzner_servers_on_cloudalone)
        }),
        Trial::test("clouds::hetzner_labels_rate_limits_and_taskservs", || {
            check(hetzner_labels_rate_limits_and_taskservs)
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

fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(tests::binary())
        .args(args)
        .current_dir(dir)
        .env("PROVISIONING_PATHS_DATA_DIR", dir.join("data"))
        .env("PROVISIONING_CONFIG", dir.join("config.toml"))
        .env("PROVISIONING_PATHS_MODELS_DIR", dir.join("no-models"))
        .env("XDG_CONFIG_HOME", "/nonexistent/provisioning-tests")
        .env("UPCLOUD_USERNAME", USER)
        .env("UPCLOUD_PASSWORD", PASSWORD)
        .envs(env.iter().copied())
        .output()
        .unwrap()
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
    let (web_port, db_port) = (tests::sshd::free_port(), tests::sshd::free_port());
    let ncl = dir.join("stack.ncl");
    std::fs::write(
        &ncl,
        format!(
            "{{ workspace = {{ name = \"upstack\", environment = \"dev\" }},\n  servers = [\n    \
             {{ name = \"web-1\", provider = \"upcloud\", plan = \"1xCPU-1GB\", zone = \"fi-hel1\", \
             taskservs = [{{ name = \"nginx\", version = \"{nginx}\", config = {{ port = {web_port} }} }}] }},\n    \
             {{ name = \"db-1\", provider = \"upcloud\", plan = \"1xCPU-2GB\", zone = \"fi-hel1\", \
             taskservs = [{{ name = \"postgres\", version = \"{postgres}\", config = {{ port = {db_port} }} }}] }},\n  ],\n}}\n"
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

const HCLOUD_TOKEN: &str = "canary-hcloud-token-5b7e21";

/// cloudalone (the stub backend) on a loopback port, with its own database; killed when dropped.
struct Cloudalone {
    child: Child,
    base: String,
}

impl Cloudalone {
    fn start(dir: &Path) -> Cloudalone {
        let venv = std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_default()
            .join(".cache/provisioning-cloudalone");
        let program = venv.join("bin/cloudalone");
        assert!(
            program.exists(),
            "cloudalone is not installed at {}: run scripts/test (it installs it)",
            program.display()
        );
        std::fs::create_dir_all(dir).unwrap();
        let port = tests::sshd::free_port();
        let child = Command::new(&program)
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .current_dir(dir)
            .env("CLOUDALONE_CONFIG", dir.join("none.toml"))
            .env("CLOUDALONE_BACKEND", "stub")
            .env("CLOUDALONE_TOKEN", HCLOUD_TOKEN)
            .env("CLOUDALONE_DB", dir.join("cloudalone.sqlite"))
            .env("CLOUDALONE_HOME", dir.join("home"))
            .stdout(std::fs::File::create(dir.join("serve.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("serve.err")).unwrap())
            .spawn()
            .unwrap();
        let emulator = Cloudalone {
            child,
            base: format!("http://127.0.0.1:{port}/v1"),
        };
        let started = std::time::Instant::now();
        while emulator.api("GET", "locations")["locations"].is_null() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "cloudalone did not answer: {}",
                std::fs::read_to_string(dir.join("serve.err")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        emulator
    }

    /// A call to the emulator's API, as Hetzner's own client would make it.
    fn api(&self, method: &str, path: &str) -> Value {
        let out = Command::new("curl")
            .args(["-s", "-X", method, "-H"])
            .arg(format!("Authorization: Bearer {HCLOUD_TOKEN}"))
            .arg(format!("{}/{path}", self.base))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// The servers whose name starts with `<workspace>-` (cloudalone keeps no labels).
    fn servers(&self, workspace: &str) -> Vec<Value> {
        self.api("GET", "servers?per_page=50")["servers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| {
                s["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("{workspace}-")))
            })
            .collect()
    }
}

impl Drop for Cloudalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config of Hetzner servers `(name, plan, image)` in `hel1` (an empty image: the default).
fn hetzner_config(dir: &Path, workspace: &str, servers: &[(&str, &str, &str)]) -> String {
    let servers: Vec<String> = servers
        .iter()
        .map(|(n, plan, image)| {
            let image = if image.is_empty() {
                String::new()
            } else {
                format!(r#", image = "{image}""#)
            };
            format!(
                r#"{{ name = "{n}", provider = "hetzner", plan = "{plan}", zone = "hel1"{image} }}"#
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

/// Hetzner Cloud servers against cloudalone: applied from an MCP client and from the CLI, one
/// server per config entry as the emulator's own API lists them, a re-plan with no changes, drift
/// when a server is deleted behind our back, `kill -9` + resume leaving exactly one server,
/// destroy leaving none, a wrong token failing at once, and the canary token in no output, state,
/// audit entry or file. cloudalone's server types (`small`, `medium`) and its one location stand
/// for the catalog's through `[hetzner] names`.
fn hetzner_servers_on_cloudalone() {
    let dir = scratch("clouds-hetzner");
    let cloud = Cloudalone::start(&dir.join("cloudalone"));
    tests::sshd::keygen(&dir.join("key"));
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[hetzner]\nendpoint = \"{}\"\nssh_public_key = \"file:{}\"\nstate_wait_secs = 60\n\
             names = {{ cx22 = \"small\", cx32 = \"medium\", hel1 = \"abilian\" }}\n",
            cloud.base,
            dir.join("key.pub").display()
        ),
    )
    .unwrap();
    let env = [("HCLOUD_TOKEN", HCLOUD_TOKEN)];
    let mut seen = String::new();

    // From an MCP client (the official Python SDK over stdio).
    let web = hetzner_config(
        &dir,
        "hz",
        &[
            ("web-1", "cx22", ""),
            ("web-2", "cx22", ""),
            ("db-1", "cx32", "ubuntu-24.04"),
        ],
    );
    let applied = Command::new(crate::mcp::python())
        .arg(root().join("tests/python/cloud_apply.py"))
        .arg(tests::binary())
        .arg(&dir)
        .arg(&web)
        .env("HCLOUD_TOKEN", HCLOUD_TOKEN)
        .output()
        .unwrap();
    let mcp_said = text(&applied);
    assert!(applied.status.success(), "{mcp_said}");
    let result: Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert_eq!(result["status"], "succeeded", "{result}");
    let servers = cloud.servers("hz");
    assert_eq!(servers.len(), 3, "{servers:?}");
    for s in &servers {
        assert_eq!(s["status"], "running", "{s}");
    }
    // The image: the catalog's default (a current Debian) unless the config names one.
    let web1 = servers.iter().find(|s| s["name"] == "hz-web-1").unwrap();
    assert_eq!(web1["image"]["name"], "debian-13", "{web1}");
    let db = servers.iter().find(|s| s["name"] == "hz-db-1").unwrap();
    assert_eq!(db["server_type"]["name"], "medium", "{db}");
    assert_eq!(db["image"]["name"], "ubuntu-24.04", "{db}");
    // The project's SSH key is ours, registered once.
    let keys = cloud.api("GET", "ssh_keys")["ssh_keys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let public = std::fs::read_to_string(dir.join("key.pub")).unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        public.starts_with(keys[0]["public_key"].as_str().unwrap().trim()),
        "{keys:?}"
    );

    let mut run = |args: &[&str], more: &[(&str, &str)]| {
        let mut all: Vec<(&str, &str)> = env.to_vec();
        all.extend_from_slice(more);
        let out = cli(&dir, args, &all);
        seen.push_str(&text(&out));
        out
    };
    let state = ok(run(&["state", "--json"], &[]));
    let state: Value = serde_json::from_slice(&state.stdout).unwrap();
    let db_state = state
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "server/db-1")
        .unwrap_or_else(|| panic!("{state}"));
    assert_eq!(
        db_state["provider_id"],
        db["id"].to_string().as_str(),
        "{db_state}"
    );
    assert_eq!(db_state["observed"]["plan"], "cx32", "{db_state}");
    assert_eq!(db_state["observed"]["zone"], "hel1", "{db_state}");
    assert_eq!(db_state["observed"]["image"], "ubuntu-24.04", "{db_state}");

    let replan = ok(run(&["plan", &web], &[]));
    assert!(
        String::from_utf8_lossy(&replan.stdout).contains("No changes"),
        "{}",
        text(&replan)
    );
    let drift = ok(run(&["drift", "--workspace", "hz"], &[]));
    assert!(
        String::from_utf8_lossy(&drift.stdout).contains("no drift"),
        "{}",
        text(&drift)
    );

    // Deleted behind our back, through the emulator's API.
    let gone = servers.iter().find(|s| s["name"] == "hz-web-2").unwrap()["id"].clone();
    cloud.api("DELETE", &format!("servers/{gone}"));
    let started = std::time::Instant::now();
    while cloud.servers("hz").len() != 2 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let drift = run(&["drift", "--workspace", "hz"], &[]);
    let said = text(&drift);
    assert!(
        said.contains("web-2") && said.to_lowercase().contains("missing"),
        "{said}"
    );

    ok(run(&["destroy", &web, "--yes"], &[]));
    assert!(cloud.servers("hz").is_empty(), "{:?}", cloud.servers("hz"));

    // kill -9 after the create, before it is recorded in state; resume finds the server.
    let crash = hetzner_config(&dir, "hzcrash", &[("db-1", "cx22", "")]);
    let killed = run(
        &["apply", &crash, "--yes"],
        &[("PROVISIONING_FAULT_KILL_AT", "4")],
    );
    assert_eq!(killed.status.signal(), Some(9), "{}", text(&killed));
    assert_eq!(cloud.servers("hzcrash").len(), 1);
    let status = ok(run(&["status", "--json"], &[]));
    let wf = serde_json::from_slice::<Value>(&status.stdout).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resumed = ok(run(&["resume", &wf], &[]));
    assert!(text(&resumed).contains("succeeded"), "{}", text(&resumed));
    assert_eq!(
        cloud.servers("hzcrash").len(),
        1,
        "exactly one server per config entry"
    );
    ok(run(&["destroy", &crash, "--yes"], &[]));
    assert!(cloud.servers("hzcrash").is_empty());

    // A wrong token fails at once, naming where the token was looked for.
    let denied = run(
        &["apply", &crash, "--yes"],
        &[("HCLOUD_TOKEN", "canary-wrong-hcloud-token-9c")],
    );
    assert!(!denied.status.success(), "{}", text(&denied));
    let said = text(&denied);
    assert!(
        said.contains("unauthorized") && said.contains("env:HCLOUD_TOKEN"),
        "{said}"
    );
    assert!(!said.contains("canary-wrong-hcloud-token"), "{said}");
    assert!(cloud.servers("hzcrash").is_empty());

    ok(run(&["audit", "export"], &[]));
    seen.push_str(&mcp_said);
    for entry in tests::walk(&dir.join("data")) {
        if let Ok(bytes) = std::fs::read(&entry) {
            seen.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    assert!(!seen.contains(HCLOUD_TOKEN), "the token leaked");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The FAKE Hetzner API (tests/fakes/hetzner.py) on a loopback port; killed when dropped.
struct FakeHetzner {
    child: Child,
    base: String,
}

impl FakeHetzner {
    fn start(args: &[&str]) -> FakeHetzner {
        let mut child = Command::new("python3")
            .arg(root().join("tests/fakes/hetzner.py"))
            .args(["--token", HCLOUD_TOKEN])
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
        FakeHetzner { child, base }
    }

    /// Our servers of `workspace`, by label, as Hetzner's own client would ask (waiting out the
    /// fake's 429s like it).
    fn servers(&self, workspace: &str) -> Vec<Value> {
        loop {
            let out = Command::new("curl")
                .args(["-s", "-H"])
                .arg(format!("Authorization: Bearer {HCLOUD_TOKEN}"))
                .arg(format!(
                    "{}/servers?label_selector=managed-by%3D%3Dprovisioning,prov-workspace%3D%3D{workspace}",
                    self.base
                ))
                .output()
                .unwrap();
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if v["error"]["code"] == "rate_limit_exceeded" {
                std::thread::sleep(std::time::Duration::from_millis(1100));
                continue;
            }
            return v["servers"].as_array().cloned().unwrap_or_default();
        }
    }
}

impl Drop for FakeHetzner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Against the FAKE Hetzner API: every 4th request is answered `429` (the apply waits them out
/// and succeeds), a server whose record we lost is found again by its labels after `kill -9`
/// (one server, one create), and taskservs go onto Hetzner servers over SSH (a loopback sshd
/// that authorizes only the key registered through the API).
fn hetzner_labels_rate_limits_and_taskservs() {
    let dir = scratch("clouds-hetzner-fake");
    let sshd = tests::sshd::Sshd::start(&dir.join("sshd"), None);
    let authorized = sshd.dir.join("authorized_keys");
    std::fs::write(&authorized, "").unwrap();
    let log = dir.join("fake.log");
    let fake = FakeHetzner::start(&[
        "--rate-limit-every",
        "4",
        "--authorized-keys",
        authorized.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
    ]);
    let client = sshd.dir.join("client");
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[hetzner]\nendpoint = \"{}\"\nssh_public_key = \"file:{}\"\nssh_key = \"file:{}\"\n\
             ssh_user = \"{}\"\nssh_port = {}\nstate_wait_secs = 60\n",
            fake.base,
            client.with_extension("pub").display(),
            client.display(),
            tests::sshd::whoami(),
            sshd.port
        ),
    )
    .unwrap();
    let env = [("HCLOUD_TOKEN", HCLOUD_TOKEN)];
    let os = this_os();
    let nginx = knowledge::taskserv_scripts("nginx")
        .unwrap()
        .unwrap()
        .meta
        .packaged
        .get(&os)
        .cloned()
        .unwrap_or_else(|| panic!("nginx has no packaged version for {os}"));
    let port = tests::sshd::free_port();
    let ncl = dir.join("web.ncl");
    std::fs::write(
        &ncl,
        format!(
            "{{ workspace = {{ name = \"hzweb\", environment = \"dev\" }}, servers = [{{ name = \
             \"web-1\", provider = \"hetzner\", plan = \"cx22\", zone = \"hel1\", taskservs = [{{ \
             name = \"nginx\", version = \"{nginx}\", config = {{ port = {port} }} }}] }}] }}"
        ),
    )
    .unwrap();
    let ncl = ncl.display().to_string();
    let applied = cli(&dir, &["apply", &ncl, "--yes"], &env);
    assert!(applied.status.success(), "{}", text(&applied));
    assert_eq!(http_get(port, "/"), "nginx for hzweb/web-1\n");
    let limited = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""status": 429"#))
        .count();
    assert!(
        limited >= 1,
        "the fake answered no 429: the trial proves nothing"
    );
    let drift = ok(cli(&dir, &["drift", "--workspace", "hzweb"], &env));
    assert!(
        String::from_utf8_lossy(&drift.stdout).contains("no drift"),
        "{}",
        text(&drift)
    );
    ok(cli(&dir, &["destroy", &ncl, "--yes"], &env));
    assert!(fake.servers("hzweb").is_empty());
    assert_eq!(http_get(port, "/"), "");

    // kill -9 after the create; the record of its id is lost too (another machine, a wiped
    // data dir): resume finds the server by its labels, and creates nothing.
    let crash = hetzner_config(&dir, "hzlabel", &[("db-1", "cx22", "")]);
    let killed = cli(
        &dir,
        &["apply", &crash, "--yes"],
        &[
            ("HCLOUD_TOKEN", HCLOUD_TOKEN),
            ("PROVISIONING_FAULT_KILL_AT", "4"),
        ],
    );
    assert_eq!(killed.status.signal(), Some(9), "{}", text(&killed));
    std::fs::remove_dir_all(dir.join("data/hetzner/servers/hzlabel")).unwrap();
    let status = ok(cli(&dir, &["status", "--json"], &env));
    let wf = serde_json::from_slice::<Value>(&status.stdout).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resumed = ok(cli(&dir, &["resume", &wf], &env));
    assert!(text(&resumed).contains("succeeded"), "{}", text(&resumed));
    assert_eq!(fake.servers("hzlabel").len(), 1, "exactly one server");
    let creates = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""method": "POST", "path": "/v1/servers""#))
        .filter(|l| !l.contains(r#""status": 429"#))
        .count();
    // Not even one that meets the taken name (409): the labels found it first.
    assert_eq!(
        creates, 2,
        "one create per server, none tried by the resume"
    );
    ok(cli(&dir, &["destroy", &crash, "--yes"], &env));
    assert!(fake.servers("hzlabel").is_empty());
    drop(sshd);
    let _ = std::fs::remove_dir_all(&dir);
}
