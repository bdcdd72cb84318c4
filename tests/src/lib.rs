//! The test kit: finds the `provisioning` binary cargo built and runs it, and locates the
//! project's example and fixture folders.

// The test kit reads its own knobs (`PROVISIONING_BIN`, ...) from the environment.
#![allow(clippy::disallowed_methods)]

pub mod sshd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root. Cargo runs tests and benches from the package folder (`tests/`), so it
/// is found at run time; the compile-time path is the fallback. (With a shared target directory
/// a binary built from another clone would otherwise read that clone's files.)
pub fn root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir()
        && cwd.join("suite").is_dir()
        && cwd.join("../ARCHITECTURE.md").is_file()
        && let Some(parent) = cwd.parent()
    {
        return parent.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// The `provisioning` binary: `$PROVISIONING_BIN`, else the one next to the running test or
/// bench executable (`target/<profile>/provisioning`, built by `cargo build` or `cargo test
/// --workspace`).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PROVISIONING_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    profile_dir.join("provisioning")
}

/// Runs the binary with `args` in `dir`, feeding `stdin`.
pub fn run(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(dir)
        .env_remove("PROVISIONING_LIMITS_MAX_INPUT_BYTES")
        .env_remove("PROVISIONING_LIMITS_EVAL_TIMEOUT_MS")
        .env_remove("PROVISIONING_LIMITS_EVAL_MEMORY_MB")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Output {
                status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
                stdout: Vec::new(),
                stderr: format!(
                    "cannot run {}: {e} (build it with `cargo build -p server`)",
                    binary().display()
                )
                .into_bytes(),
            };
        }
    };
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        let _ = pipe.write_all(text.as_bytes());
    }
    child.wait_with_output().unwrap_or_else(|e| Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
        stdout: Vec::new(),
        stderr: e.to_string().into_bytes(),
    })
}

/// `*.ncl` files of a folder, sorted.
pub fn ncl_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "ncl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A config of `n` servers on the `sim` provider, for benchmarks: every server has two
/// taskservs, one with a dependency, spread over both zones and all plans.
pub fn generated_config(n: usize) -> String {
    let plans = ["small", "medium", "large"];
    let mut s = String::from(
        "{\n  workspace = { name = \"bench\", environment = \"staging\", owner = \"bench@example.com\" },\n  servers = [\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "    {{ name = \"srv-{i}\", provider = \"sim\", plan = \"{}\", zone = \"sim-{}\", labels = {{ index = \"{i}\" }},\n      taskservs = [\"redis\", {{ name = \"nginx\", version = \"1.26\", depends_on = [\"redis\"] }}] }},\n",
            plans[i % 3],
            1 + i % 2
        ));
    }
    s.push_str("  ],\n  workflow = { parallel_limit = 8 },\n}\n");
    s
}

/// Runs the binary with extra environment variables, no stdin.
pub fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Hermetic: no config file of the person running the tests applies.
        .env("XDG_CONFIG_HOME", "/nonexistent/provisioning-tests")
        .env_remove("PROVISIONING_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
        stdout: Vec::new(),
        stderr: format!("cannot run {}: {e}", binary().display()).into_bytes(),
    })
}

/// Every file and folder under `dir`, at any depth.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path());
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// A fresh, empty directory under the system temp dir, unique to this process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("provisioning-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Copies a directory tree.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// `provisioning serve --http 127.0.0.1:0 EXTRA...` on `dir` (`dir/data`, `dir/config.toml`, no
/// embedding model, no personal config), and the base URL it printed (`http://127.0.0.1:PORT`).
/// The caller owns the child: kill it when done.
pub fn serve_http(dir: &Path, extra: &[&str]) -> Result<(std::process::Child, String), String> {
    serve_http_with(dir, extra, &[], Stdio::null())
}

/// [`serve_http`] with extra environment variables and the server's standard error (its log)
/// sent to `stderr`.
pub fn serve_http_with(
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
    stderr: Stdio,
) -> Result<(std::process::Child, String), String> {
    use std::io::BufRead;
    let mut child = Command::new(binary())
        .args(["serve", "--http", "127.0.0.1:0"])
        .args(extra)
        .current_dir(root())
        .env("PROVISIONING_PATHS_DATA_DIR", dir.join("data"))
        .env("PROVISIONING_CONFIG", dir.join("config.toml"))
        .env("PROVISIONING_PATHS_MODELS_DIR", dir.join("no-models"))
        .env("XDG_CONFIG_HOME", "/nonexistent/provisioning-tests")
        .env_remove("PROVISIONING_DRAFTER_OPENAI_BASE_URL")
        .env_remove("PROVISIONING_DRAFTER_OPENAI_MODEL")
        .env_remove("PROVISIONING_DRAFTER_OPENAI_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary().display()))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let Some(url) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "`provisioning serve --http` printed no address: {line:?}"
        ));
    };
    Ok((child, url.trim_end_matches("/mcp").to_string()))
}
