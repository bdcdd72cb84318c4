//! Hetzner Cloud: cloudalone (the third-party emulator) and, for what it lacks, the FAKE in
//! `tests/fakes/hetzner.py` (see the parent module's notes).

use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use tests::{root, scratch};

use super::cli;
use crate::ssh::{http_get, ok, text, this_os};

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
    let servers: Vec<(&str, &str, &str, &str)> = servers
        .iter()
        .map(|(n, p, i)| (*n, *p, "hel1", *i))
        .collect();
    super::cloud_config(dir, workspace, "hetzner", &servers)
}

/// Hetzner Cloud servers against cloudalone: applied from an MCP client and from the CLI, one
/// server per config entry as the emulator's own API lists them, a re-plan with no changes, drift
/// when a server is deleted behind our back, `kill -9` + resume leaving exactly one server,
/// destroy leaving none, a wrong token failing at once, and the canary token in no output, state,
/// audit entry or file. cloudalone's server types (`small`, `medium`) and its one location stand
/// for the catalog's through `[hetzner] names`.
pub(super) fn servers_on_cloudalone() {
    let dir = scratch("clouds-hetzner");
    let cloud = Cloudalone::start(&dir.join("cloudalone"));
    tests::sshd::keygen(&dir.join("key"));
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[hetzner]\nendpoint = \"{}\"\nssh_public_key = \"file:{}\"\nstate_wait_secs = 60\n\
             names = {{ cx22 = \"small\", cx32 = \"medium\", hel1 = \"abilian\" }}\n\
             firewall = false\nprivate_network = false\n",
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

    /// Our `kind` (`servers`, `firewalls`, `networks`) of `workspace`, by label, as Hetzner's
    /// own client would ask (waiting out the fake's 429s like it).
    fn listed(&self, kind: &str, workspace: &str) -> Vec<Value> {
        loop {
            let out = Command::new("curl")
                .args(["-s", "-H"])
                .arg(format!("Authorization: Bearer {HCLOUD_TOKEN}"))
                .arg(format!(
                    "{}/{kind}?label_selector=managed-by%3D%3Dprovisioning,prov-workspace%3D%3D{workspace}",
                    self.base
                ))
                .output()
                .unwrap();
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if v["error"]["code"] == "rate_limit_exceeded" {
                std::thread::sleep(std::time::Duration::from_millis(1100));
                continue;
            }
            return v[kind].as_array().cloned().unwrap_or_default();
        }
    }

    fn servers(&self, workspace: &str) -> Vec<Value> {
        self.listed("servers", workspace)
    }

    /// The inbound TCP ports of `name`'s firewall, each with its sources.
    fn open_ports(&self, workspace: &str, name: &str) -> Vec<(String, Vec<String>)> {
        let firewalls = self.listed("firewalls", workspace);
        let firewall = firewalls
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no firewall `{name}`: {firewalls:?}"));
        firewall["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["direction"] == "in" && r["protocol"] == "tcp")
            .map(|r| {
                let from = r["source_ips"].as_array().unwrap().iter();
                (
                    r["port"].as_str().unwrap().to_string(),
                    from.map(|ip| ip.as_str().unwrap().to_string()).collect(),
                )
            })
            .collect()
    }
}

/// The firewall and network of a workspace's server `name`: applied to it, and attached.
fn guarded(fake: &FakeHetzner, workspace: &str, name: &str) {
    let servers = fake.servers(workspace);
    let server = servers
        .iter()
        .find(|s| s["name"] == format!("{workspace}-{name}").as_str())
        .unwrap();
    let firewalls = fake.listed("firewalls", workspace);
    let firewall = firewalls
        .iter()
        .find(|f| f["name"] == server["name"])
        .unwrap_or_else(|| panic!("no firewall for {name}: {firewalls:?}"));
    assert_eq!(
        firewall["applied_to"][0]["server"]["id"], server["id"],
        "{firewall}"
    );
    let networks = fake.listed("networks", workspace);
    assert_eq!(networks.len(), 1, "{networks:?}");
    assert_eq!(
        networks[0]["name"],
        format!("provisioning-{workspace}-eu-central").as_str()
    );
    assert_eq!(
        server["private_net"][0]["network"], networks[0]["id"],
        "{server}"
    );
    // A subnet in the network zone of the server's location (hel1: eu-central).
    let subnet = &networks[0]["subnets"][0];
    assert_eq!(subnet["network_zone"], "eu-central", "{subnet}");
    assert_eq!(subnet["ip_range"], "10.0.1.0/24", "{subnet}");
    let ip = server["private_net"][0]["ip"].as_str().unwrap();
    assert!(ip.starts_with("10.0.1."), "{ip}");
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
pub(super) fn labels_rate_limits_and_taskservs() {
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
    let image = super::this_image("hetzner");
    let port = tests::sshd::free_port();
    let ncl = dir.join("web.ncl");
    std::fs::write(
        &ncl,
        format!(
            "{{ workspace = {{ name = \"hzweb\", environment = \"dev\" }}, servers = [{{ name = \
             \"web-1\", provider = \"hetzner\", plan = \"cx22\", zone = \"hel1\", image = \
             \"{image}\", taskservs = [{{ \
             name = \"nginx\", version = \"{nginx}\", config = {{ port = {port} }} }}] }}] }}"
        ),
    )
    .unwrap();
    let ncl = ncl.display().to_string();
    let applied = cli(&dir, &["apply", &ncl, "--yes"], &env);
    assert!(applied.status.success(), "{}", text(&applied));
    assert_eq!(http_get(port, "/"), "nginx for hzweb/web-1\n");
    // The server's own firewall admits SSH and nginx's port (its public port, as configured),
    // nothing else over TCP; it and the workspace's private network hold the server.
    guarded(&fake, "hzweb", "web-1");
    let everyone = vec!["0.0.0.0/0".to_string(), "::/0".to_string()];
    assert_eq!(
        fake.open_ports("hzweb", "hzweb-web-1"),
        [
            (sshd.port.to_string(), everyone.clone()),
            (port.to_string(), everyone.clone())
        ]
    );
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
    // nginx leaves the config: its port closes with it; SSH stays.
    let bare = dir.join("bare.ncl");
    std::fs::write(
        &bare,
        "{ workspace = { name = \"hzweb\", environment = \"dev\" }, servers = [{ name = \"web-1\", \
         provider = \"hetzner\", plan = \"cx22\", zone = \"hel1\" }] }",
    )
    .unwrap();
    ok(cli(&dir, &["apply", bare.to_str().unwrap(), "--yes"], &env));
    assert_eq!(
        fake.open_ports("hzweb", "hzweb-web-1"),
        [(sshd.port.to_string(), everyone)]
    );
    ok(cli(
        &dir,
        &["destroy", bare.to_str().unwrap(), "--yes"],
        &env,
    ));
    assert!(fake.servers("hzweb").is_empty());
    assert!(
        fake.listed("firewalls", "hzweb").is_empty(),
        "the firewall is left"
    );
    assert!(
        fake.listed("networks", "hzweb").is_empty(),
        "the network is left"
    );
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
    guarded(&fake, "hzlabel", "db-1");
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
    assert!(fake.listed("firewalls", "hzlabel").is_empty());
    assert!(fake.listed("networks", "hzlabel").is_empty());
    drop(sshd);
    let _ = std::fs::remove_dir_all(&dir);
}
