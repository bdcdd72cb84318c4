//! `provisioning doctor`: checks what the product depends on, each with what to do when it is
//! missing. Nothing is changed (the state store is opened only when it exists; the evaluator's
//! empty working folder in the cache may be created by the sandbox probe). Exit 1 when a check fails (the product cannot do its job),
//! 0 when there are only warnings (a part runs degraded, e.g. keyword-only docs search).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use crate::Settings;
use crate::cli::DoctorArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One check's answer.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about it (empty when nothing is needed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

fn check(name: &'static str, status: Status, detail: String, fix: &str) -> Check {
    Check {
        name,
        status,
        detail,
        fix: fix.to_string(),
    }
}

pub fn run(settings: &Settings, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let checks = all(settings, args);
    if args.json {
        for c in &checks {
            println!("{}", serde_json::to_string(c)?);
        }
    } else {
        for c in &checks {
            let label = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{label}  {:<16} {}", c.name, c.detail);
            if !c.fix.is_empty() {
                println!("      {:<16} fix: {}", "", c.fix);
            }
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if !args.json {
        let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
        println!(
            "\n{} checks: {failed} failed, {warned} with warnings",
            checks.len()
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn all(settings: &Settings, args: &DoctorArgs) -> Vec<Check> {
    vec![
        config(settings),
        tokens(settings),
        policies(settings),
        sandbox(settings),
        state(settings),
        model(settings, args),
        package(
            "redis",
            &["redis-server"],
            "the local provider's redis taskserv",
            "apt-get install redis-server",
        ),
        package(
            "nginx",
            &["nginx"],
            "the local provider's nginx taskserv",
            "apt-get install nginx",
        ),
        package(
            "postgres",
            &["initdb"],
            "the local provider's postgres taskserv",
            "apt-get install postgresql",
        ),
    ]
}

fn config(settings: &Settings) -> Check {
    match &settings.config_file {
        Some(path) => check(
            "config",
            Status::Ok,
            format!("{} (read)", path.display()),
            "",
        ),
        None => check(
            "config",
            Status::Warn,
            format!(
                "no config file at {}: built-in defaults (default policies, no users, no tokens)",
                crate::settings::default_config_path().display()
            ),
            "`provisioning init` writes one with a token for you",
        ),
    }
}

fn tokens(settings: &Settings) -> Check {
    let n = settings.token_principals().len();
    if n == 0 {
        check(
            "tokens",
            Status::Warn,
            "no API tokens: `serve --http` answers 401 to every request (stdio and the local server need none)".into(),
            "`provisioning token create NAME --role operator` (or `provisioning init`)",
        )
    } else {
        check(
            "tokens",
            Status::Ok,
            format!("{n} token(s) for serve --http"),
            "",
        )
    }
}

fn policies(settings: &Settings) -> Check {
    match super::engine_setup::authorizer(settings) {
        Ok(authz) => {
            let set = authz.policies.current();
            let listed = set.policies();
            let gates = listed.iter().filter(|p| p.gate).count();
            check(
                "policies",
                Status::Ok,
                format!("{} policies load ({gates} approval gates)", listed.len()),
                "",
            )
        }
        Err(e) => check(
            "policies",
            Status::Fail,
            format!("{e:#}"),
            "`provisioning policy validate DIR` names the policy and line; fix it or point [policies] dir elsewhere",
        ),
    }
}

fn sandbox(settings: &Settings) -> Check {
    let validator = match super::server_validator(settings) {
        Ok(v) => v,
        Err(e) => {
            return check(
                "sandbox",
                Status::Fail,
                format!("the config evaluator cannot be set up: {e:#}"),
                "check that the cache folder is writable (--cache-dir)",
            );
        }
    };
    match validator.confinement() {
        Ok(Some(how)) => check(
            "sandbox",
            Status::Ok,
            format!("configs are evaluated in a child process confined by {how}"),
            "",
        ),
        Ok(None) => check(
            "sandbox",
            Status::Warn,
            "the kernel offers no Landlock: evaluated configs run in a child with an empty environment, an empty folder and limits, and `import` is refused before evaluation, but the kernel does not confine them".into(),
            "a Linux kernel 5.13 or later with Landlock enabled (lsm=landlock)",
        ),
        Err(e) => check(
            "sandbox",
            Status::Fail,
            format!("the config evaluator does not start: {e}"),
            "reinstall the `provisioning` binary; the evaluator is the binary itself",
        ),
    }
}

fn state(settings: &Settings) -> Check {
    if let Some(url) = &settings.state
        && url.starts_with("ws")
    {
        return check(
            "state",
            Status::Ok,
            format!("a SurrealDB server at {url} (not contacted by doctor)"),
            "",
        );
    }
    let socket = super::daemon::default_socket(settings);
    let folder = settings.data_dir.join("state");
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return check(
            "state",
            Status::Ok,
            format!(
                "{} (held by the local server on {})",
                folder.display(),
                socket.display()
            ),
            "",
        );
    }
    if settings.state.is_none() && !folder.exists() {
        // Opening would create it, and the doctor changes nothing.
        return check(
            "state",
            Status::Ok,
            format!(
                "{} does not exist yet; the first plan or apply creates it",
                folder.display()
            ),
            "",
        );
    }
    match super::engine_setup::runtime()
        .and_then(|rt| rt.block_on(super::engine_setup::open_engine(settings)))
    {
        Ok(_) => check(
            "state",
            Status::Ok,
            format!("{} opens", folder.display()),
            "",
        ),
        Err(e) => check(
            "state",
            Status::Fail,
            format!("{e:#}"),
            "use a data directory of your own (--data-dir), or reach the installation's local server (--server unix:SOCKET)",
        ),
    }
}

fn model(settings: &Settings, args: &DoctorArgs) -> Check {
    let dir = super::docs::models_dir(settings, &args.docs);
    let files = rag::ModelFiles::in_dir(
        &dir,
        crate::settings::var_os("ORT_DYLIB_PATH").map(Into::into),
    );
    let missing = files.missing();
    if missing.is_empty() {
        check(
            "embedding model",
            Status::Ok,
            format!("{} (hybrid docs search)", dir.display()),
            "",
        )
    } else {
        check(
            "embedding model",
            Status::Warn,
            format!(
                "not in {} ({} file(s) missing, e.g. {}): docs search is keyword-only",
                dir.display(),
                missing.len(),
                missing[0].display()
            ),
            &format!("scripts/fetch-models {}", dir.display()),
        )
    }
}

/// The first of `programs` found on PATH or in the usual system folders.
fn find_program(programs: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = crate::settings::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            dirs.push(e.path().join("bin"));
        }
    }
    programs
        .iter()
        .flat_map(|p| dirs.iter().map(move |d| d.join(p)))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn package(name: &'static str, programs: &[&str], for_what: &str, fix: &str) -> Check {
    match find_program(programs) {
        Some(path) => check(name, Status::Ok, format!("{}", path.display()), ""),
        None => check(
            name,
            Status::Warn,
            format!("{} not found: {for_what} cannot run", programs.join(" or ")),
            fix,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{Status, find_program, package};

    #[test]
    fn a_missing_program_is_a_warning_with_its_fix() {
        let c = package(
            "nope",
            &["no-such-program-xyz"],
            "nothing",
            "apt-get install nope",
        );
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail.contains("no-such-program-xyz not found"),
            "{}",
            c.detail
        );
        assert_eq!(c.fix, "apt-get install nope");
        assert!(find_program(&["sh"]).is_some());
        assert_eq!(package("sh", &["sh"], "", "").status, Status::Ok);
    }
}
