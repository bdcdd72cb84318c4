//! Other people on the same machine: an account in the local server's group is another person
//! with the roles the server's config gives them; an account outside it cannot connect.

use super::*;

/// Makes an operating-system account (no home, no shell), in `group` when given; its uid.
pub(super) fn make_account(name: &str, group: Option<&str>) -> String {
    let mut cmd = Command::new("useradd");
    cmd.args(["--no-create-home", "--shell", "/usr/sbin/nologin"]);
    if let Some(g) = group {
        cmd.args(["--groups", g]);
    }
    assert!(cmd.arg(name).status().unwrap().success(), "useradd {name}");
    id_of("passwd", name)
}

/// Runs `args` as the account `uid` with only the group `gid` (setpriv, as root).
fn as_account(uid: &str, gid: &str, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid", uid, "--regid", gid, "--groups", gid])
        .args(args)
        .output()
        .unwrap()
}

fn id_of(flag: &str, name: &str) -> String {
    let out = Command::new("getent").args([flag, name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

/// With `[daemon] group`, a member of the group (an account made here) reaches the local
/// server as themself with the roles the server's config gives them, and their approval of the
/// owner's prod apply is another person's: the apply then runs. Her `$USER` and a
/// `PROVISIONING_CONFIG` of her own change nothing: in her own process the state is not hers to
/// open, and through the socket she keeps her roles. An account outside the group still cannot
/// connect.
pub(super) fn a_group_member_is_another_person() {
    if my_name() != "root" || !Path::new("/usr/sbin/useradd").exists() {
        eprintln!("needs root and useradd to make accounts; not run here");
        return;
    }
    let tag = std::process::id() % 100_000;
    let (group, carol, dave) = (
        format!("provg{tag}"),
        format!("provc{tag}"),
        format!("provd{tag}"),
    );
    struct Accounts(Vec<String>, String);
    impl Drop for Accounts {
        fn drop(&mut self) {
            for u in &self.0 {
                let _ = Command::new("userdel").arg(u).status();
            }
            let _ = Command::new("groupdel").arg(&self.1).status();
        }
    }
    assert!(
        Command::new("groupadd")
            .arg(&group)
            .status()
            .unwrap()
            .success()
    );
    let _accounts = Accounts(vec![carol.clone(), dave.clone()], group.clone());
    make_account(&carol, Some(&group));
    make_account(&dave, None);
    let dir = Dir(scratch("local-group"));
    std::fs::write(
        dir.0.join("config.toml"),
        format!("[daemon]\ngroup = \"{group}\"\n\n[users.{carol}]\nroles = [\"approver\"]\n"),
    )
    .unwrap();
    let (child, socket) = serve_socket(&dir.0);
    let _server = Server(child);
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid().to_string(), id_of("group", &group));
    let folder = std::fs::metadata(socket.parent().unwrap()).unwrap();
    assert_eq!(folder.mode() & 0o777, 0o750);

    // The owner asks for a prod apply through the socket: gated.
    let shop = dir.0.join("shop.ncl");
    std::fs::write(&shop, crate::mcp::PROD).unwrap();
    let server = format!("unix:{}", socket.display());
    let run = |args: &[&str]| {
        Command::new(tests::binary())
            .args(["--server", &server])
            .args(args)
            .current_dir(tests::root())
            .env("PROVISIONING_PATHS_MODELS_DIR", dir.0.join("no-models"))
            .output()
            .unwrap()
    };
    let gated = run(&["apply", shop.to_str().unwrap(), "--yes", "--json"]);
    assert_eq!(gated.status.code(), Some(3), "{}", text(&gated));
    let gated: Value = serde_json::from_slice(&gated.stdout).unwrap();
    let request = gated["request"]["id"].as_str().unwrap().to_string();
    let plan = gated["plan"].as_str().unwrap().to_string();

    // Carol, a member of the group, is herself with the roles the config gives her.
    let (carol_uid, gid) = (id_of("passwd", &carol), id_of("group", &group));

    // Whatever her environment says. She runs the CLI herself (a copy she may execute) as
    // "root" by `$USER`, with a config of her own that gives her every role and replaces the
    // policies with one that permits everything.
    let state_dir = dir.0.join("data").join("state");
    assert_eq!(
        std::fs::metadata(&state_dir).unwrap().mode() & 0o777,
        0o700,
        "the state is nobody else's to read"
    );
    let own = dir.0.join("carol");
    std::fs::create_dir_all(own.join("p")).unwrap();
    std::fs::write(
        own.join("p").join("all.cedar"),
        "@id(\"carol-permits-all\")\n@description(\"everything, for carol\")\npermit(principal, action, resource);\n",
    )
    .unwrap();
    std::fs::write(
        own.join("config.toml"),
        format!(
            "[users.{carol}]\nroles = [\"admin\", \"operator\", \"approver\"]\n\n[policies]\ndir = \"p\"\nmode = \"replace\"\n"
        ),
    )
    .unwrap();
    let exe = own.join("provisioning");
    std::fs::copy(tests::binary(), &exe).unwrap();
    std::os::unix::fs::chown(&own, Some(carol_uid.parse().unwrap()), None).unwrap();
    let carol_cli = |server: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", &carol_uid, "--regid", &gid, "--groups", &gid])
            .arg(&exe)
            .args(server.map(|s| ["--server", s]).into_iter().flatten())
            .args(args)
            .current_dir(&own)
            .env_remove("XDG_RUNTIME_DIR")
            .env("USER", "root")
            .env("LOGNAME", "root")
            .env("HOME", &own)
            .env("PROVISIONING_CONFIG", own.join("config.toml"))
            .env("PROVISIONING_PATHS_DATA_DIR", dir.0.join("data"))
            .env("PROVISIONING_PATHS_CACHE_DIR", own.join("cache"))
            .env("PROVISIONING_PATHS_MODELS_DIR", own.join("no-models"));
        cmd.output().unwrap()
    };
    // In this process, the installation's state is not hers to open.
    let alone = carol_cli(None, &["apply", "--plan", &plan, "--yes", "--json"]);
    assert!(!alone.status.success(), "{}", text(&alone));
    assert!(
        String::from_utf8_lossy(&alone.stderr).contains("belongs to the account root"),
        "{}",
        text(&alone)
    );
    // Through the socket she is carol, an approver, under the server's policies: the prod plan
    // does not run for her (her own policy would allow it), it waits for its approval.
    let applied = carol_cli(
        Some(&server),
        &["apply", "--plan", &plan, "--yes", "--json"],
    );
    assert_eq!(applied.status.code(), Some(3), "{}", text(&applied));
    let applied: Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert_eq!(applied["result"], "needs_approval", "{applied}");
    // (The request is the owner's, still waiting: hers would be the same plan.)
    assert_eq!(applied["request"]["status"], "pending", "{applied}");

    let curl = |uid: &str, gid: &str, method: &str, path: &str, body: Option<&str>| {
        let mut args = vec![
            "curl",
            "-sS",
            "--unix-socket",
            socket.to_str().unwrap(),
            "-X",
            method,
        ];
        if let Some(b) = body {
            args.extend(["-H", "content-type: application/json", "-d", b]);
        }
        let url = format!("http://localhost/api/v1{path}");
        args.push(&url);
        as_account(uid, gid, &args)
    };
    let who = curl(&carol_uid, &gid, "GET", "/whoami", None);
    let who: Value =
        serde_json::from_slice(&who.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&who)));
    assert_eq!(who["principal"], format!("user:{carol}"), "{who}");
    assert_eq!(who["roles"], json!(["approver"]), "{who}");

    let approved = carol_cli(
        Some(&server),
        &[
            "approvals",
            "approve",
            &request,
            "--comment",
            "checked with the owner",
            "--json",
        ],
    );
    assert!(approved.status.success(), "{}", text(&approved));
    let approved: Value = serde_json::from_slice(&approved.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&approved)));
    assert_eq!(
        approved["request"]["approvals"][0]["by"],
        carol.as_str(),
        "{approved}"
    );

    // Her approval is another person's: the owner's apply of that exact plan now runs.
    let applied = run(&["apply", "--plan", &plan, "--yes", "--json"]);
    assert!(applied.status.success(), "{}", text(&applied));
    let applied: Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert_eq!(applied["status"], "succeeded", "{applied}");

    // Dave, outside the group, cannot connect at all.
    let dave_uid = id_of("passwd", &dave);
    let dave_gid = String::from_utf8_lossy(
        &Command::new("id")
            .args(["-g", &dave])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    let refused = curl(&dave_uid, &dave_gid, "GET", "/whoami", None);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("ermission denied")
            || String::from_utf8_lossy(&refused.stderr).contains("Couldn't connect"),
        "{}",
        text(&refused)
    );
}
