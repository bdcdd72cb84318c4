//! AWS EC2 against moto (PyPI `moto[server]`, a third-party emulator of AWS's APIs), started on a
//! loopback port by each trial and reached the way AWS's own tools reach another endpoint:
//! `AWS_ENDPOINT_URL`. Its instances run no machine and have no SSH. moto's AMI list is replaced
//! (`MOTO_AMIS_PATH`, tests/fakes/moto-amis.json) by images named as Debian and Canonical publish
//! them, plus one of the same name from another owner that must never be picked. moto does not
//! honour `ClientToken`, so staying at one instance after `kill -9` rests on the tag lookup.
//! What is checked is what EC2's own SDK (boto3, tests/python/ec2.py) reports.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command};

use serde_json::Value;
use tests::{root, scratch};

use crate::ssh::{ok, text};

const KEY_ID: &str = "AKIACANARY7Q2M4XAWS1";
const SECRET: &str = "canary-aws-secret-3f9d1b6e0a";

fn venv() -> std::path::PathBuf {
    std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default()
        .join(".cache/provisioning-moto")
}

/// `moto_server` on a loopback port; killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    /// `auth`: moto checks credentials (it knows none of ours, so every call is refused).
    fn start(dir: &Path, auth: bool) -> Moto {
        let program = venv().join("bin/moto_server");
        assert!(
            program.exists(),
            "moto is not installed at {}: run scripts/test (it installs it)",
            program.display()
        );
        std::fs::create_dir_all(dir).unwrap();
        let port = tests::sshd::free_port();
        let mut command = Command::new(&program);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_AMIS_PATH", root().join("tests/fakes/moto-amis.json"))
            .stdout(std::fs::File::create(dir.join("moto.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("moto.err")).unwrap());
        if auth {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let moto = Moto {
            child: command.spawn().unwrap(),
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "moto did not start: {}",
                std::fs::read_to_string(dir.join("moto.err")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        moto
    }

    fn ec2(&self, region: &str, args: &[&str]) -> Value {
        let out = Command::new(venv().join("bin/python"))
            .arg(root().join("tests/python/ec2.py"))
            .args([self.endpoint.as_str(), region])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The instances of `workspace` in `region` that are not terminated, by our tags.
    fn live(&self, region: &str, workspace: &str) -> Vec<Value> {
        self.ec2(region, &["instances"])
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i["tags"]["prov-workspace"] == workspace && i["state"] != "terminated")
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config of EC2 servers `(name, plan, region, image)` (an empty image: the default).
fn aws_config(dir: &Path, workspace: &str, servers: &[(&str, &str, &str, &str)]) -> String {
    super::cloud_config(dir, workspace, "aws", servers)
}

/// EC2 instances against moto, applied from an MCP client and from the CLI: one tagged instance
/// per config entry with the newest AMI of the right owner and architecture in its region, the
/// workspace's key pair and security group, a re-plan with no changes, drift when an instance is
/// terminated behind our back, destroy leaving no instance, group or key, `kill -9` + resume
/// leaving exactly one instance, clear errors for refused and missing credentials and for an
/// image with no AMI, and the canary keys in no output, state, audit entry or file.
pub(super) fn servers_on_moto() {
    let dir = scratch("clouds-aws");
    let moto = Moto::start(&dir.join("moto"), false);
    tests::sshd::keygen(&dir.join("key"));
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[aws]\nssh_public_key = \"file:{}\"\nssh_from = [\"203.0.113.0/24\"]\nstate_wait_secs = 60\n",
            dir.join("key.pub").display()
        ),
    )
    .unwrap();
    // As AWS's own tools take them; no instance metadata service is asked.
    let env = [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let mut seen = String::new();

    // From an MCP client (the official Python SDK over stdio).
    let web = aws_config(
        &dir,
        "ec",
        &[
            ("web-1", "t3.micro", "eu-central-1", ""),
            ("web-2", "t3.small", "eu-central-1", ""),
            ("db-1", "t4g.micro", "us-west-2", ""),
        ],
    );
    let applied = Command::new(crate::mcp::python())
        .arg(root().join("tests/python/cloud_apply.py"))
        .arg(tests::binary())
        .arg(&dir)
        .arg(&web)
        .envs(env)
        .output()
        .unwrap();
    let mcp_said = text(&applied);
    assert!(applied.status.success(), "{mcp_said}");
    let result: Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert_eq!(result["status"], "succeeded", "{result}");
    let frankfurt = moto.live("eu-central-1", "ec");
    assert_eq!(frankfurt.len(), 2, "{frankfurt:?}");
    for i in &frankfurt {
        assert_eq!(i["state"], "running", "{i}");
        assert_eq!(i["tags"]["managed-by"], "provisioning", "{i}");
        // The newest Debian 13 amd64 AMI of Debian's account, not a newer one of another owner.
        assert_eq!(i["image"], "ami-0d13a0e1f7b1c0a22", "{i}");
        assert_eq!(i["key"], "provisioning-ec", "{i}");
        assert_eq!(i["groups"], serde_json::json!(["provisioning-ec"]), "{i}");
    }
    let web2 = frankfurt
        .iter()
        .find(|i| i["tags"]["prov-server"] == "web-2")
        .unwrap();
    assert_eq!(web2["type"], "t3.small", "{web2}");
    assert_eq!(web2["tags"]["Name"], "ec-web-2", "{web2}");
    let oregon = moto.live("us-west-2", "ec");
    assert_eq!(oregon.len(), 1, "{oregon:?}");
    // A Graviton plan gets the arm64 image.
    assert_eq!(oregon[0]["image"], "ami-0d13a0e1f7b1c0a33", "{}", oregon[0]);
    let extras = moto.ec2("eu-central-1", &["extras"]);
    assert_eq!(
        extras["groups"],
        serde_json::json!([{
            "name": "provisioning-ec", "ssh_from": ["203.0.113.0/24"], "members": true
        }]),
        "{extras}"
    );
    assert_eq!(
        extras["keys"],
        serde_json::json!(["provisioning-ec"]),
        "{extras}"
    );

    let mut run = |args: &[&str], more: &[(&str, &str)]| {
        let mut all: Vec<(&str, &str)> = env.to_vec();
        all.extend_from_slice(more);
        let out = crate::ssh::cli(&dir, args, &all);
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
    assert_eq!(db_state["provider_id"], oregon[0]["id"], "{db_state}");
    assert_eq!(db_state["observed"]["plan"], "t4g.micro", "{db_state}");
    assert_eq!(db_state["observed"]["zone"], "us-west-2", "{db_state}");
    assert_eq!(db_state["observed"]["image"], "debian-13", "{db_state}");

    let replan = ok(run(&["plan", &web], &[]));
    assert!(
        String::from_utf8_lossy(&replan.stdout).contains("No changes"),
        "{}",
        text(&replan)
    );
    let drift = ok(run(&["drift", "--workspace", "ec"], &[]));
    assert!(
        String::from_utf8_lossy(&drift.stdout).contains("no drift"),
        "{}",
        text(&drift)
    );

    // Terminated behind our back, through EC2's own SDK.
    let gone = web2["id"].as_str().unwrap();
    moto.ec2("eu-central-1", &["terminate", gone]);
    let drift = run(&["drift", "--workspace", "ec"], &[]);
    let said = text(&drift);
    assert!(
        said.contains("web-2") && said.to_lowercase().contains("missing"),
        "{said}"
    );

    ok(run(&["destroy", &web, "--yes"], &[]));
    for region in ["eu-central-1", "us-west-2"] {
        assert!(moto.live(region, "ec").is_empty(), "{region}");
        let extras = moto.ec2(region, &["extras"]);
        assert_eq!(
            extras,
            serde_json::json!({ "groups": [], "keys": [] }),
            "{region}: the workspace's security group and key pair go with its last instance"
        );
    }

    // kill -9 after the launch, before it is recorded in state; resume finds the instance.
    let crash = aws_config(&dir, "eccrash", &[("db-1", "t3.micro", "eu-central-1", "")]);
    let killed = run(
        &["apply", &crash, "--yes"],
        &[("PROVISIONING_FAULT_KILL_AT", "4")],
    );
    assert_eq!(killed.status.signal(), Some(9), "{}", text(&killed));
    assert_eq!(moto.live("eu-central-1", "eccrash").len(), 1);
    let status = ok(run(&["status", "--json"], &[]));
    let wf = serde_json::from_slice::<Value>(&status.stdout).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resumed = ok(run(&["resume", &wf], &[]));
    assert!(text(&resumed).contains("succeeded"), "{}", text(&resumed));
    assert_eq!(
        moto.live("eu-central-1", "eccrash").len(),
        1,
        "exactly one instance per config entry"
    );
    ok(run(&["destroy", &crash, "--yes"], &[]));
    assert!(moto.live("eu-central-1", "eccrash").is_empty());

    // An image with no AMI in the region: a clear error, nothing launched.
    let old = aws_config(
        &dir,
        "ecold",
        &[("db-1", "t3.micro", "eu-central-1", "debian-12")],
    );
    let refused = run(&["apply", &old, "--yes"], &[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    let said = text(&refused);
    assert!(
        said.contains("no AMI for image `debian-12`") && said.contains("136693071363"),
        "{said}"
    );
    assert!(moto.live("eu-central-1", "ecold").is_empty());
    // A region the catalog does not know is refused before anything runs.
    let mars = aws_config(&dir, "ecmars", &[("db-1", "t3.micro", "mars-north-1", "")]);
    let refused = run(&["plan", &mars], &[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("mars-north-1"),
        "{}",
        text(&refused)
    );

    // A taskserv without `[aws] ssh_key`: the instance is launched, the taskserv fails at once
    // naming the setting (moto's instances run no machine, so nothing is reached over SSH here;
    // the live tier installs nginx on a real instance).
    let ecweb = dir.join("ecweb.ncl");
    std::fs::write(
        &ecweb,
        "{ workspace = { name = \"ecweb\", environment = \"dev\" }, servers = [{ name = \"web-1\", \
         provider = \"aws\", plan = \"t3.micro\", zone = \"eu-central-1\", image = \"ubuntu-24.04\", \
         taskservs = [{ name = \"nginx\", version = \"1.24\" }] }] }",
    )
    .unwrap();
    let ecweb = ecweb.display().to_string();
    let refused = run(&["apply", &ecweb, "--yes"], &[]);
    let said = text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("taskserv `nginx`") && said.contains("`[aws] ssh_key`"),
        "{said}"
    );
    ok(run(&["destroy", &ecweb, "--yes"], &[]));
    assert!(moto.live("eu-central-1", "ecweb").is_empty());

    // No credentials anywhere: a permanent error that says where they were looked for.
    let bare = Command::new(tests::binary())
        .args(["apply", &crash, "--yes"])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &dir)
        .env("PROVISIONING_PATHS_DATA_DIR", dir.join("data"))
        .env("PROVISIONING_CONFIG", dir.join("config.toml"))
        .env("PROVISIONING_PATHS_MODELS_DIR", dir.join("no-models"))
        .env("XDG_CONFIG_HOME", "/nonexistent/provisioning-tests")
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let said = text(&bare);
    assert!(!bare.status.success(), "{said}");
    assert!(
        said.contains("provider `aws` has no credentials") && said.contains("AWS_ACCESS_KEY_ID"),
        "{said}"
    );
    assert!(moto.live("eu-central-1", "eccrash").is_empty());

    // Credentials EC2 refuses: permanent, naming where they came from, never their value.
    let strict = Moto::start(&dir.join("moto-auth"), true);
    let denied = run(
        &["apply", &crash, "--yes"],
        &[("AWS_ENDPOINT_URL", strict.endpoint.as_str())],
    );
    let said = text(&denied);
    assert!(!denied.status.success(), "{said}");
    assert!(
        said.contains("refused") && said.contains("AWS_ACCESS_KEY_ID"),
        "{said}"
    );
    drop(strict);

    ok(run(&["audit", "export"], &[]));
    seen.push_str(&mcp_said);
    for entry in tests::walk(&dir.join("data")) {
        if let Ok(bytes) = std::fs::read(&entry) {
            seen.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    assert!(!seen.contains(SECRET), "the secret key leaked");
    assert!(!seen.contains(KEY_ID), "the access key id leaked");
    let _ = std::fs::remove_dir_all(&dir);
}
