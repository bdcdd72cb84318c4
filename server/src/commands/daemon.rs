//! `provisioning daemon start|stop|status|run`: the local server. One process per installation
//! owns the embedded state and the engine and serves them on an owner-only Unix socket
//! (`serve --socket`); assistants reach it through `serve --connect`, the CLI with
//! `--server unix:PATH`. Its pid is in a file next to the socket; its log in the data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::Digest as _;

use crate::Settings;
use crate::cli::{DaemonArgs, DaemonWhat};

/// Exit code of `status` when no local server runs.
pub const EXIT_NOT_RUNNING: u8 = 3;

/// The installation's socket: in the user's runtime directory, named after the data directory
/// (so two installations never share one), else in the data directory.
pub fn default_socket(settings: &Settings) -> PathBuf {
    let data = std::fs::canonicalize(&settings.data_dir).unwrap_or(settings.data_dir.clone());
    match crate::settings::var_os("XDG_RUNTIME_DIR") {
        Some(runtime) => {
            let digest = sha2::Sha256::digest(data.as_os_str().as_encoded_bytes());
            let name: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
            PathBuf::from(runtime)
                .join("provisioning")
                .join(format!("{name}.sock"))
        }
        None => data.join("run").join("provisioning.sock"),
    }
}

fn pid_file(socket: &Path) -> PathBuf {
    socket.with_extension("pid")
}

fn answers(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

pub fn run(settings: &Settings, args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| default_socket(settings));
    match args.what {
        DaemonWhat::Run => {
            let control_center = Some(args.control_center.clone()).filter(|a| a != "off");
            let serve = crate::cli::ServeArgs::for_socket(socket, control_center);
            super::serve::run(settings, &serve)
        }
        DaemonWhat::Start => {
            let pid = start_with(settings, &socket, &args.control_center)?;
            match pid {
                Some(pid) => println!("local server started (pid {pid}) on {}", socket.display()),
                None => println!("local server already running on {}", socket.display()),
            }
            if let Some(url) = control_center_url(&socket) {
                println!("Control Center: {url}");
            }
            Ok(ExitCode::SUCCESS)
        }
        DaemonWhat::Stop => {
            if !answers(&socket) {
                println!("no local server runs on {}", socket.display());
                return Ok(ExitCode::SUCCESS);
            }
            let pid: i32 = std::fs::read_to_string(pid_file(&socket))
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .with_context(|| {
                    format!(
                        "a server answers on {} but {} names no pid; stop it where it runs",
                        socket.display(),
                        pid_file(&socket).display()
                    )
                })?;
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            )
            .with_context(|| format!("cannot signal the local server (pid {pid})"))?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while answers(&socket) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            anyhow::ensure!(
                !answers(&socket),
                "the local server (pid {pid}) is still answering after 20 s"
            );
            let _ = std::fs::remove_file(pid_file(&socket));
            println!("local server stopped (pid {pid})");
            Ok(ExitCode::SUCCESS)
        }
        DaemonWhat::Status => {
            if !answers(&socket) {
                println!("not running (socket {})", socket.display());
                return Ok(ExitCode::from(EXIT_NOT_RUNNING));
            }
            let pid = std::fs::read_to_string(pid_file(&socket)).unwrap_or_default();
            let remote = crate::remote::Remote::new(&format!("unix:{}", socket.display()), None)?;
            let who: serde_json::Value = super::engine_setup::runtime()?.block_on(remote.call(
                reqwest::Method::GET,
                "/whoami",
                None,
            ))?;
            println!(
                "running (pid {}) on {}\ndata: {}\nyou are {} with roles {}",
                pid.trim(),
                socket.display(),
                settings.data_dir.display(),
                who["principal"].as_str().unwrap_or("?"),
                who["roles"]
            );
            if let Some(url) = control_center_url(&socket) {
                println!("Control Center: {url}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The Control Center's URL the running local server wrote beside its socket.
pub fn control_center_url(socket: &Path) -> Option<String> {
    std::fs::read_to_string(socket.with_extension("url"))
        .ok()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
}

/// Starts the local server in the background unless one answers on `socket`; waits until it
/// answers. `Some(pid)` when it started one.
pub fn start(settings: &Settings, socket: &Path) -> anyhow::Result<Option<u32>> {
    start_with(settings, socket, "127.0.0.1:0")
}

/// [`start`] with the Control Center on `control_center` (a loopback address, or `off`).
pub fn start_with(
    settings: &Settings,
    socket: &Path,
    control_center: &str,
) -> anyhow::Result<Option<u32>> {
    use std::os::unix::process::CommandExt as _;
    if answers(socket) {
        return Ok(None);
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create {}", settings.data_dir.display()))?;
    let log_path = settings.data_dir.join("local-server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find this program")?;
    let mut child = Command::new(exe)
        .arg("--data-dir")
        .arg(&settings.data_dir)
        .args(["daemon", "run", "--socket"])
        .arg(socket)
        .arg("--control-center")
        .arg(control_center)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.try_clone()?)
        // Its own process group: a Ctrl-C at the terminal that started it does not stop it.
        .process_group(0)
        .spawn()
        .context("cannot start the local server")?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(socket) {
        if let Some(status) = child.try_wait()? {
            let last = std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| format!(": {}", l.trim()))
                .unwrap_or_default();
            anyhow::bail!(
                "the local server stopped at once ({status}){last}\n(its log: {})",
                log_path.display()
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the local server did not answer on {} within 60 s; see {}",
            socket.display(),
            log_path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Some(pid))
}
