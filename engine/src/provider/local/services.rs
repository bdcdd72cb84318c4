//! The taskservs `local` can run: where their binaries are, how they are configured and started,
//! and their health checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The taskservs the `local` provider can run, in port-offset order.
pub const LOCAL_TASKSERVS: [&str; 3] = ["redis", "nginx", "postgres"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Redis,
    Nginx,
    Postgres,
}

impl Kind {
    pub(crate) fn parse(name: &str) -> Option<Kind> {
        match name {
            "redis" => Some(Kind::Redis),
            "nginx" => Some(Kind::Nginx),
            "postgres" => Some(Kind::Postgres),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Nginx => "nginx",
            Kind::Postgres => "postgres",
        }
    }

    /// Which port of the server's block the taskserv listens on.
    pub(crate) fn port_offset(self) -> u16 {
        match self {
            Kind::Redis => 0,
            Kind::Nginx => 1,
            Kind::Postgres => 2,
        }
    }

    /// What the supervisor sends to stop it (postgres: SIGINT is its "fast" shutdown).
    pub(crate) fn stop_signal(self) -> Signal {
        match self {
            Kind::Postgres => Signal::SIGINT,
            Kind::Redis | Kind::Nginx => Signal::SIGTERM,
        }
    }

    fn package_hint(self) -> &'static str {
        match self {
            Kind::Redis => "`redis-server` not found on PATH (Debian package `redis-server`)",
            Kind::Nginx => "`nginx` not found on PATH or in /usr/sbin (Debian package `nginx`)",
            Kind::Postgres => {
                "`postgres` and `initdb` not found on PATH or in /usr/lib/postgresql/*/bin \
                 (Debian package `postgresql`)"
            }
        }
    }
}

/// Which of the taskservs `local` can run have their binaries installed on this machine.
pub fn local_taskservs_available() -> Vec<(&'static str, bool)> {
    LOCAL_TASKSERVS
        .iter()
        .map(|name| {
            let ok = Kind::parse(name).is_some_and(|k| Binaries::resolve(k, "").is_ok());
            (*name, ok)
        })
        .collect()
}

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `name` on PATH, then in the sbin directories (nginx lives in /usr/sbin, which is not on every
/// user's PATH).
// PATH is read here as `exec` reads it: it is how this process finds programs, not a setting.
#[allow(clippy::disallowed_methods)]
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/local/sbin", "/usr/sbin", "/sbin"]
                .into_iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// The binaries one taskserv needs.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) main: PathBuf,
    pub(crate) initdb: Option<PathBuf>,
    pub(crate) psql: Option<PathBuf>,
}

impl Binaries {
    /// Finds them; for postgres, prefers `/usr/lib/postgresql/<version>/bin`, then the directory
    /// of `postgres` on PATH, then the newest `/usr/lib/postgresql/*/bin`.
    pub(crate) fn resolve(kind: Kind, version: &str) -> Result<Binaries, String> {
        let simple = |name: &str| {
            which(name)
                .map(|main| Binaries {
                    main,
                    initdb: None,
                    psql: None,
                })
                .ok_or_else(|| kind.package_hint().to_string())
        };
        match kind {
            Kind::Redis => simple("redis-server"),
            Kind::Nginx => simple("nginx"),
            Kind::Postgres => {
                let mut dirs = Vec::new();
                if !version.is_empty() && !version.contains('/') {
                    dirs.push(PathBuf::from(format!("/usr/lib/postgresql/{version}/bin")));
                }
                if let Some(p) = which("postgres") {
                    if let Some(d) = std::fs::canonicalize(&p)
                        .ok()
                        .and_then(|c| c.parent().map(Path::to_path_buf))
                    {
                        dirs.push(d);
                    }
                    if let Some(d) = p.parent() {
                        dirs.push(d.to_path_buf());
                    }
                }
                let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| {
                        let major = e.file_name().to_str()?.parse::<u32>().ok()?;
                        Some((major, e.path().join("bin")))
                    })
                    .collect();
                versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
                dirs.extend(versioned.into_iter().map(|(_, d)| d));
                for dir in dirs {
                    let (main, initdb) = (dir.join("postgres"), dir.join("initdb"));
                    if executable(&main) && executable(&initdb) {
                        let psql = Some(dir.join("psql"))
                            .filter(|p| executable(p))
                            .or_else(|| which("psql"));
                        return Ok(Binaries {
                            main,
                            initdb: Some(initdb),
                            psql,
                        });
                    }
                }
                Err(kind.package_hint().to_string())
            }
        }
    }

    /// The installed version, from `--version` (`-v` for nginx); empty when unknown.
    pub(crate) async fn version(&self, kind: Kind) -> String {
        let flag = if kind == Kind::Nginx {
            "-v"
        } else {
            "--version"
        };
        let mut cmd = tokio::process::Command::new(&self.main);
        cmd.arg(flag)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let Ok(Ok(out)) = tokio::time::timeout(Duration::from_secs(5), cmd.output()).await else {
            return String::new();
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        parse_version(&text)
    }
}

/// The first dotted number in a `--version` banner.
pub(crate) fn parse_version(text: &str) -> String {
    let tokens: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|t| t.trim_matches('.'))
        .filter(|t| t.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    tokens
        .iter()
        .find(|t| t.contains('.'))
        .or_else(|| tokens.first())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The `config` keys each taskserv accepts, turned into what it understands.
pub(crate) fn supported_config(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Redis => &["maxmemory", "maxmemory-policy", "appendonly", "databases"],
        Kind::Nginx => &["index_html", "worker_processes"],
        Kind::Postgres => &["max_connections", "shared_buffers"],
    }
}

fn scalar(kind: Kind, key: &str, value: &Value) -> Result<String, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => match (kind, b) {
            (Kind::Redis, true) => "yes".into(),
            (Kind::Redis, false) => "no".into(),
            (_, true) => "on".into(),
            (_, false) => "off".into(),
        },
        _ => {
            return Err(format!(
                "config `{key}` must be a string, number or boolean"
            ));
        }
    };
    if key != "index_html"
        && text
            .chars()
            .any(|c| c.is_control() || matches!(c, ';' | '{' | '}' | '"' | '\''))
    {
        return Err(format!(
            "config `{key}` has characters that are not allowed: {text:?}"
        ));
    }
    Ok(text)
}

/// Checks the taskserv's `config` and returns its entries as strings.
pub(crate) fn check_config(
    kind: Kind,
    config: &serde_json::Map<String, Value>,
) -> Result<Vec<(String, String)>, String> {
    let supported = supported_config(kind);
    config
        .iter()
        .map(|(key, value)| {
            if !supported.contains(&key.as_str()) {
                return Err(format!(
                    "the local {} taskserv does not understand config `{key}` (it accepts: {})",
                    kind.name(),
                    supported.join(", ")
                ));
            }
            Ok((key.clone(), scalar(kind, key, value)?))
        })
        .collect()
}

/// How to start the service: the command line, its working directory and how to stop it.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) argv: Vec<String>,
    pub(crate) cwd: PathBuf,
    pub(crate) stop_signal: Signal,
}

/// Where a postgres taskserv keeps its data and socket, and as whom it runs.
#[derive(Debug, Clone)]
pub(crate) struct PgLayout {
    pub(crate) data: PathBuf,
    pub(crate) socket: PathBuf,
    /// `setpriv ...` when we are root (postgres refuses to run as root).
    pub(crate) run_as: Vec<String>,
}

fn path_str(p: &Path) -> Result<String, String> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("path {} is not valid UTF-8", p.display()))
}

pub(crate) fn redis_launch(
    bin: &Binaries,
    dir: &Path,
    port: u16,
    config: &[(String, String)],
) -> Result<Launch, String> {
    let mut argv = vec![
        path_str(&bin.main)?,
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--dir".into(),
        path_str(dir)?,
        "--daemonize".into(),
        "no".into(),
        "--logfile".into(),
        String::new(),
        "--protected-mode".into(),
        "yes".into(),
    ];
    for (key, value) in config {
        argv.push(format!("--{key}"));
        argv.push(value.clone());
    }
    Ok(Launch {
        argv,
        cwd: dir.to_path_buf(),
        stop_signal: Kind::Redis.stop_signal(),
    })
}

fn nginx_quote(p: &Path) -> Result<String, String> {
    let s = path_str(p)?;
    if s.chars()
        .any(|c| c.is_control() || matches!(c, '"' | '\\' | '$'))
    {
        return Err(format!("nginx cannot use the path {s:?}"));
    }
    Ok(format!("\"{s}\""))
}

/// Writes `nginx.conf`, `html/index.html` and the log and temp directories.
pub(crate) fn nginx_prepare(
    bin: &Binaries,
    dir: &Path,
    port: u16,
    config: &[(String, String)],
    as_root: bool,
) -> Result<Launch, String> {
    let get = |k: &str| {
        config
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let index = get("index_html").unwrap_or_else(|| {
        format!(
            "<!doctype html>\n<html><head><title>provisioning local nginx</title></head>\n\
             <body><h1>nginx on 127.0.0.1:{port}</h1><p>Started by the provisioning \
             <code>local</code> provider.</p></body></html>\n"
        )
    });
    let workers = get("worker_processes").unwrap_or_else(|| "1".into());
    let io = |e: std::io::Error| e.to_string();
    for sub in ["html", "logs", "temp"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(io)?;
    }
    std::fs::write(dir.join("html/index.html"), index).map_err(io)?;
    let q = |sub: &str| nginx_quote(&dir.join(sub));
    // When the master runs as root, workers would switch to `nobody`, who may not be able to
    // reach a data dir under /root; they stay root instead (they only serve loopback).
    let user = if as_root { "user root root;\n" } else { "" };
    let conf = format!(
        "# Generated by the provisioning `local` provider; rewritten on every install.\n\
         daemon off;\n\
         master_process on;\n\
         worker_processes {workers};\n\
         {user}\
         pid {pid};\n\
         error_log {error_log} notice;\n\
         env {marker};\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         \x20   access_log {access_log};\n\
         \x20   client_body_temp_path {t_body};\n\
         \x20   proxy_temp_path {t_proxy};\n\
         \x20   fastcgi_temp_path {t_fastcgi};\n\
         \x20   uwsgi_temp_path {t_uwsgi};\n\
         \x20   scgi_temp_path {t_scgi};\n\
         \x20   types {{ text/html html; text/plain txt; }}\n\
         \x20   default_type application/octet-stream;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       server_name localhost;\n\
         \x20       root {root};\n\
         \x20       index index.html;\n\
         \x20   }}\n\
         }}\n",
        pid = q("nginx.pid")?,
        error_log = q("logs/error.log")?,
        marker = super::procs::MARKER_ENV,
        access_log = q("logs/access.log")?,
        t_body = q("temp/client_body")?,
        t_proxy = q("temp/proxy")?,
        t_fastcgi = q("temp/fastcgi")?,
        t_uwsgi = q("temp/uwsgi")?,
        t_scgi = q("temp/scgi")?,
        root = q("html")?,
    );
    std::fs::write(dir.join("nginx.conf"), conf).map_err(io)?;
    let argv = vec![
        path_str(&bin.main)?,
        "-p".into(),
        format!("{}/", path_str(dir)?),
        "-c".into(),
        path_str(&dir.join("nginx.conf"))?,
        "-e".into(),
        path_str(&dir.join("logs/error.log"))?,
    ];
    Ok(Launch {
        argv,
        cwd: dir.to_path_buf(),
        stop_signal: Kind::Nginx.stop_signal(),
    })
}

pub(crate) fn postgres_launch(
    bin: &Binaries,
    layout: &PgLayout,
    port: u16,
    config: &[(String, String)],
) -> Result<Launch, String> {
    let mut argv = layout.run_as.clone();
    argv.extend([
        path_str(&bin.main)?,
        "-D".into(),
        path_str(&layout.data)?,
        "-k".into(),
        path_str(&layout.socket)?,
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ]);
    for (key, value) in config {
        argv.push("-c".into());
        argv.push(format!("{key}={value}"));
    }
    Ok(Launch {
        argv,
        cwd: layout.data.clone(),
        stop_signal: Kind::Postgres.stop_signal(),
    })
}

/// The check that decides whether a running taskserv is healthy.
#[derive(Debug, Clone)]
pub(crate) enum Check {
    RedisPing { port: u16 },
    HttpGet { port: u16 },
    Psql { psql: PathBuf, port: u16 },
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

impl Check {
    pub(crate) fn for_kind(kind: Kind, port: u16, bin: &Binaries) -> Result<Check, String> {
        Ok(match kind {
            Kind::Redis => Check::RedisPing { port },
            Kind::Nginx => Check::HttpGet { port },
            Kind::Postgres => Check::Psql {
                psql: bin.psql.clone().ok_or_else(|| {
                    "`psql` not found (Debian package `postgresql-client`); it is needed for \
                     the postgres health check"
                        .to_string()
                })?,
                port,
            },
        })
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Check::RedisPing { port } => format!("redis PING on 127.0.0.1:{port} answers +PONG"),
            Check::HttpGet { port } => format!("HTTP GET / on 127.0.0.1:{port} answers 200"),
            Check::Psql { port, .. } => {
                format!("psql -h 127.0.0.1 -p {port} -U postgres -c 'SELECT 1' answers 1")
            }
        }
    }

    /// Runs the check once: `Err(reason)` when it fails.
    pub(crate) async fn run(&self) -> Result<(), String> {
        match tokio::time::timeout(CHECK_TIMEOUT, self.run_inner()).await {
            Ok(result) => result,
            Err(_) => Err(format!("health check timed out after {CHECK_TIMEOUT:?}")),
        }
    }

    async fn run_inner(&self) -> Result<(), String> {
        match self {
            Check::RedisPing { port } => {
                let reply = exchange(*port, b"PING\r\n").await?;
                if reply.starts_with("+PONG") {
                    Ok(())
                } else {
                    Err(format!("redis answered {:?} to PING", first_line(&reply)))
                }
            }
            Check::HttpGet { port } => {
                let reply = exchange(*port, b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await?;
                let status = first_line(&reply);
                let code = status.split_whitespace().nth(1);
                if status.starts_with("HTTP/") && code == Some("200") {
                    Ok(())
                } else {
                    Err(format!("GET / answered {status:?}"))
                }
            }
            Check::Psql { psql, port } => {
                let mut cmd = tokio::process::Command::new(psql);
                cmd.args(["-X", "-w", "-h", "127.0.0.1", "-p"])
                    .arg(port.to_string())
                    .args(["-U", "postgres", "-d", "postgres", "-tAc", "SELECT 1"])
                    .env("PGCONNECT_TIMEOUT", "3")
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true);
                let out = cmd
                    .output()
                    .await
                    .map_err(|e| format!("cannot run psql: {e}"))?;
                let stdout = String::from_utf8_lossy(&out.stdout);
                if out.status.success() && stdout.trim() == "1" {
                    Ok(())
                } else {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let detail = match first_line(stderr.trim()) {
                        "" => stdout.trim().to_string(),
                        line => line.to_string(),
                    };
                    Err(format!("psql failed ({}): {detail}", out.status))
                }
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Connects to 127.0.0.1:`port`, writes `request` and reads what comes back (up to 4 KiB or
/// end of stream).
async fn exchange(port: u16, request: &[u8]) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("cannot write to 127.0.0.1:{port}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    // Read until we have a full first line or the peer closes.
    while len < buf.len() {
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|e| format!("cannot read from 127.0.0.1:{port}: {e}"))?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].contains(&b'\n') {
            break;
        }
    }
    if len == 0 {
        return Err(format!(
            "127.0.0.1:{port} closed the connection without answering"
        ));
    }
    Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_are_read_from_banners() {
        assert_eq!(
            parse_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"),
            "7.0.15"
        );
        assert_eq!(parse_version("nginx version: nginx/1.22.1\n"), "1.22.1");
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            "15.18"
        );
        assert_eq!(parse_version("nothing"), "");
    }

    #[test]
    fn config_keys_are_checked() {
        let ok = json!({"maxmemory": "64mb", "appendonly": true, "databases": 4});
        let got = check_config(Kind::Redis, ok.as_object().unwrap()).unwrap();
        assert!(got.contains(&("appendonly".into(), "yes".into())));
        assert!(got.contains(&("databases".into(), "4".into())));
        let bad = json!({"requirepass": "x"});
        let err = check_config(Kind::Redis, bad.as_object().unwrap()).unwrap_err();
        assert!(
            err.contains("local redis taskserv") && err.contains("maxmemory"),
            "{err}"
        );
        let nested = json!({"max_connections": {"a": 1}});
        assert!(check_config(Kind::Postgres, nested.as_object().unwrap()).is_err());
        let inject = json!({"worker_processes": "1; user root"});
        assert!(check_config(Kind::Nginx, inject.as_object().unwrap()).is_err());
    }

    #[tokio::test]
    async fn http_check_wants_200() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 404 Not Found\r\n\r\n",
                "HTTP/1.1 200 OK\r\n\r\nhi",
            ] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let check = Check::HttpGet { port };
        assert!(check.run().await.unwrap_err().contains("404"));
        check.run().await.unwrap();
    }

    #[tokio::test]
    async fn checks_fail_on_closed_ports() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = Check::RedisPing { port }.run().await.unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
    }
}
