//! The live tier: each cloud provider against its real API, run only when that cloud's
//! credentials are in the environment (and reported as ignored otherwise), so a user with an
//! account can check the provider end to end:
//!
//! - UpCloud: `UPCLOUD_USERNAME` + `UPCLOUD_PASSWORD` (or `UPCLOUD_TOKEN`); one `1xCPU-1GB`
//!   server in `PROVISIONING_LIVE_UPCLOUD_ZONE` (default `fi-hel1`) with nginx installed over
//!   SSH (a key pair made for the run) and reached from here on port 80 through its firewall;
//! - Hetzner: `HCLOUD_TOKEN`; one server of `PROVISIONING_LIVE_HETZNER_PLAN` (default `cx22`) in
//!   `PROVISIONING_LIVE_HETZNER_ZONE` (default `hel1`), its firewall and private network, and
//!   nginx on port 80 reached from here through the firewall;
//! - AWS: `AWS_ACCESS_KEY_ID` or `AWS_PROFILE` (the SDK's credential chain), without
//!   `AWS_ENDPOINT_URL`; one `PROVISIONING_LIVE_AWS_PLAN` (default `t3.micro`) instance in
//!   `PROVISIONING_LIVE_AWS_ZONE` (default `eu-central-1`), with its key pair and security group,
//!   and nginx on port 8080 (as `admin`, no privileged port) reached from here through the group.
//!
//! Each applies, re-plans (no changes), checks drift (none) and destroys; the destroy also runs
//! when a step in between fails, so a failed run leaves no server billing (check the console if
//! the process itself was killed). Real servers cost a few cents for the minutes they exist.

use std::path::Path;
use std::process::{Command, Output};

use libtest_mimic::Trial;
use serde_json::Value;
use tests::scratch;

use crate::check;
use crate::ssh::{ok, text};

pub fn trials() -> Vec<Trial> {
    let has = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let upcloud = (has("UPCLOUD_USERNAME") && has("UPCLOUD_PASSWORD")) || has("UPCLOUD_TOKEN");
    vec![
        Trial::test("live::upcloud_server_with_nginx", || {
            check(upcloud_server_with_nginx)
        })
        .with_ignored_flag(!upcloud),
        Trial::test("live::hetzner_server", || check(hetzner_server))
            .with_ignored_flag(!has("HCLOUD_TOKEN")),
        Trial::test("live::aws_instance", || check(aws_instance)).with_ignored_flag(
            !(has("AWS_ACCESS_KEY_ID") || has("AWS_PROFILE")) || has("AWS_ENDPOINT_URL"),
        ),
    ]
}

fn cli(dir: &Path, args: &[&str]) -> Output {
    crate::ssh::cli(dir, args, &[])
}

/// Destroys the config when dropped: a failed assertion still takes the servers down.
struct Teardown<'a> {
    dir: &'a Path,
    config: String,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let out = cli(self.dir, &["destroy", &self.config, "--yes"]);
        if !out.status.success() {
            eprintln!(
                "LIVE TIER: destroy failed, check the provider's console for servers labelled \
                 managed-by=provisioning:\n{}",
                text(&out)
            );
        }
    }
}

fn var_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// A workspace name of this run (servers of two runs never meet).
fn workspace(prefix: &str) -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{prefix}-{}", stamp % 1_000_000)
}

/// Apply, re-plan, drift, `during` (with the applied state), destroy (by the guard); returns
/// the applied state.
fn round_trip(dir: &Path, ncl: &str, workspace: &str, during: &dyn Fn(&Value)) -> Value {
    let _teardown = Teardown {
        dir,
        config: ncl.to_string(),
    };
    let applied = cli(dir, &["apply", ncl, "--yes"]);
    assert!(applied.status.success(), "{}", text(&applied));
    let replan = ok(cli(dir, &["plan", ncl]));
    assert!(
        String::from_utf8_lossy(&replan.stdout).contains("No changes"),
        "{}",
        text(&replan)
    );
    let drift = ok(cli(dir, &["drift", "--workspace", workspace]));
    assert!(
        String::from_utf8_lossy(&drift.stdout).contains("no drift"),
        "{}",
        text(&drift)
    );
    let state = ok(cli(dir, &["state", "--json"]));
    let state = serde_json::from_slice(&state.stdout).unwrap();
    during(&state);
    state
}

/// What nginx on `server` answers at `port` of its public address, asked from here (through
/// the cloud's firewall).
fn nginx_answers(state: &Value, workspace: &str, port: u16) {
    let server = state
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "server/web-1")
        .unwrap_or_else(|| panic!("{state}"));
    let address = server["observed"]["address"].as_str().unwrap();
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "--retry", "6", "--retry-all-errors"])
        .arg(format!("http://{address}:{port}/"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("nginx for {workspace}/web-1\n"),
        "nginx at {address}:{port}"
    );
}

fn upcloud_server_with_nginx() {
    let dir = scratch("live-upcloud");
    tests::sshd::keygen(&dir.join("key"));
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[upcloud]\nssh_public_key = \"file:{}\"\nssh_key = \"file:{}\"\n",
            dir.join("key.pub").display(),
            dir.join("key").display()
        ),
    )
    .unwrap();
    let ws = workspace("live-uc");
    let zone = var_or("PROVISIONING_LIVE_UPCLOUD_ZONE", "fi-hel1");
    let ncl = dir.join("live.ncl");
    std::fs::write(
        &ncl,
        format!(
            "{{ workspace = {{ name = \"{ws}\", environment = \"dev\" }}, servers = [{{ name = \
             \"web-1\", provider = \"upcloud\", plan = \"1xCPU-1GB\", zone = \"{zone}\", \
             taskservs = [{{ name = \"nginx\", version = \"1.22\", config = {{ bind = \"0.0.0.0\" }} }}] }}] \
             }}"
        ),
    )
    .unwrap();
    let state = round_trip(&dir, &ncl.display().to_string(), &ws, &|state| {
        nginx_answers(state, &ws, 80)
    });
    let server = state
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "server/web-1")
        .unwrap_or_else(|| panic!("{state}"));
    assert!(server["observed"]["address"].is_string(), "{server}");
    assert_eq!(server["observed"]["os"], "debian-12", "{server}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Deletes the run's own SSH key from the Hetzner project when dropped (the provider keeps keys:
/// servers share them), after the servers are gone.
struct HetznerKeyCleanup<'a> {
    dir: &'a Path,
}

impl Drop for HetznerKeyCleanup<'_> {
    fn drop(&mut self) {
        let dir = self.dir;
        let endpoint = var_or("HCLOUD_ENDPOINT", "https://api.hetzner.cloud/v1");
        // The token goes to curl in a file only we can read, not on its command line. (No
        // unwrap here: this runs while a failed assertion unwinds.)
        let auth_file = dir.join("auth-header");
        let written = {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&auth_file)
                .and_then(|mut f| {
                    let token = std::env::var("HCLOUD_TOKEN").unwrap_or_default();
                    writeln!(f, "Authorization: Bearer {token}")
                })
        };
        let (Ok(()), Ok(public)) = (written, std::fs::read_to_string(dir.join("key.pub"))) else {
            return;
        };
        let auth = format!("@{}", auth_file.display());
        let Ok(listed) = Command::new("curl")
            .args(["-s", "-H", &auth])
            .arg(format!("{endpoint}/ssh_keys?per_page=50"))
            .output()
        else {
            return;
        };
        let listed: Value = serde_json::from_slice(&listed.stdout).unwrap_or(Value::Null);
        for key in listed["ssh_keys"].as_array().into_iter().flatten() {
            let bare = key["public_key"].as_str().unwrap_or_default().trim();
            if !bare.is_empty() && public.starts_with(bare) {
                let _ = Command::new("curl")
                    .args(["-s", "-X", "DELETE", "-H", &auth])
                    .arg(format!("{endpoint}/ssh_keys/{}", key["id"]))
                    .output();
            }
        }
    }
}

fn hetzner_server() {
    let dir = scratch("live-hetzner");
    tests::sshd::keygen(&dir.join("key"));
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[hetzner]\nssh_public_key = \"file:{}\"\nssh_key = \"file:{}\"\n",
            dir.join("key.pub").display(),
            dir.join("key").display()
        ),
    )
    .unwrap();
    let ws = workspace("live-hz");
    let plan = var_or("PROVISIONING_LIVE_HETZNER_PLAN", "cx22");
    let zone = var_or("PROVISIONING_LIVE_HETZNER_ZONE", "hel1");
    let ncl = dir.join("live.ncl");
    std::fs::write(
        &ncl,
        format!(
            "{{ workspace = {{ name = \"{ws}\", environment = \"dev\" }}, servers = [{{ name = \
             \"web-1\", provider = \"hetzner\", plan = \"{plan}\", zone = \"{zone}\", image = \
             \"debian-12\", taskservs = [{{ name = \"nginx\", version = \"1.22\", config = {{ bind = \"0.0.0.0\" }} }}] \
             }}] }}"
        ),
    )
    .unwrap();
    let _key = HetznerKeyCleanup { dir: &dir };
    let state = round_trip(&dir, &ncl.display().to_string(), &ws, &|state| {
        nginx_answers(state, &ws, 80)
    });
    let server = state
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "server/web-1")
        .unwrap_or_else(|| panic!("{state}"));
    assert!(server["observed"]["address"].is_string(), "{server}");
    assert_eq!(server["observed"]["image"], "debian-12", "{server}");
    assert!(
        server["observed"]["private_address"].is_string(),
        "{server}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn aws_instance() {
    let dir = scratch("live-aws");
    tests::sshd::keygen(&dir.join("key"));
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[aws]\nssh_public_key = \"file:{}\"\nssh_key = \"file:{}\"\n",
            dir.join("key.pub").display(),
            dir.join("key").display()
        ),
    )
    .unwrap();
    let ws = workspace("live-aws");
    let plan = var_or("PROVISIONING_LIVE_AWS_PLAN", "t3.micro");
    let zone = var_or("PROVISIONING_LIVE_AWS_ZONE", "eu-central-1");
    let ncl = dir.join("live.ncl");
    std::fs::write(
        &ncl,
        format!(
            "{{ workspace = {{ name = \"{ws}\", environment = \"dev\" }}, servers = [{{ name = \
             \"web-1\", provider = \"aws\", plan = \"{plan}\", zone = \"{zone}\", image = \
             \"debian-12\", taskservs = [{{ name = \"nginx\", version = \"1.22\", config = {{ bind = \
             \"0.0.0.0\", port = 8080 }} }}] }}] }}"
        ),
    )
    .unwrap();
    let state = round_trip(&dir, &ncl.display().to_string(), &ws, &|state| {
        nginx_answers(state, &ws, 8080)
    });
    let server = state
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "server/web-1")
        .unwrap_or_else(|| panic!("{state}"));
    assert!(
        server["provider_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("i-")),
        "{server}"
    );
    assert_eq!(server["observed"]["image"], "debian-12", "{server}");
    assert_eq!(server["observed"]["zone"], zone.as_str(), "{server}");
    let _ = std::fs::remove_dir_all(&dir);
}
