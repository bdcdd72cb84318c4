//! Runs a shell script on a host over the system's OpenSSH client, one connection per script:
//! `ssh ... -- sh -s` with the script on standard input.
//!
//! Why OpenSSH rather than an SSH crate: it is the client every operator already trusts and
//! configures keys for, it does host-key pinning (`StrictHostKeyChecking=accept-new` against a
//! known-hosts file of our own: the key is recorded on first contact and a changed key refuses
//! the connection), and it keeps the whole SSH protocol out of this process. What it needs from
//! us is kept narrow: no user or system `ssh_config` (`-F /dev/null`), no agent, no password
//! prompts, an empty environment, and the private key written for the duration of one call to a
//! file only we can read, resolved from its secret reference at that moment.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::SshHost;
use crate::provider::{ProviderError, ProviderResult, output};
use crate::secrets::{Secret, Secrets};

/// What is kept of each of a script's output streams (the tail).
const OUTPUT_CAP: usize = 256 * 1024;

/// Exit code of a script that does not support this host (OS, version): a permanent failure.
pub const EXIT_UNSUPPORTED: i32 = 3;
/// Exit code of a script failure worth retrying (`EX_TEMPFAIL`).
pub const EXIT_TRANSIENT: i32 = 75;

/// How scripts reach hosts.
#[derive(Debug, Clone)]
pub struct Runner {
    /// The OpenSSH client (`ssh`).
    pub program: PathBuf,
    /// Our known-hosts file: host keys recorded on first contact.
    pub known_hosts: PathBuf,
    /// A folder only this account can read, for the key of the call in progress.
    pub private_dir: PathBuf,
    pub connect_timeout: Duration,
    pub secrets: Secrets,
}

/// What a finished script said.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub status: i32,
    /// Standard output, with each `PROV_SECRET` line's value taken out (see [`Output::secrets`]).
    pub stdout: String,
    pub stderr: String,
    /// `PROV_SECRET key=value` lines: values a script generated (a password), which the
    /// provider keeps as secrets; they appear nowhere else.
    pub secrets: Vec<(String, Secret)>,
}

/// The prefix of a line that carries a secret.
const SECRET_PREFIX: &str = "PROV_SECRET ";

/// A `PROV_SECRET key=value` line as it may be shown: the key, never the value.
fn masked_secret_line(line: &str) -> Option<String> {
    let rest = line.strip_prefix(SECRET_PREFIX)?;
    let key = rest.split_once('=').map_or(rest, |(k, _)| k).trim();
    Some(format!("PROV_SECRET {key}=(kept as a secret)"))
}

/// Takes the `PROV_SECRET` values out of `stdout`.
fn split_secrets(stdout: &str) -> (String, Vec<(String, Secret)>) {
    let mut secrets = Vec::new();
    let mut text = String::with_capacity(stdout.len());
    for line in stdout.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if let Some(rest) = bare.strip_prefix(SECRET_PREFIX) {
            if let Some((k, v)) = rest.split_once('=') {
                secrets.push((k.trim().to_string(), Secret::new(v.trim().to_string())));
            }
            text.push_str(&masked_secret_line(bare).unwrap_or_default());
            text.push('\n');
        } else {
            text.push_str(line);
        }
    }
    (text, secrets)
}

impl Output {
    /// `PROV_OUTPUT key=value` lines of standard output.
    pub fn facts(&self) -> Vec<(String, String)> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("PROV_OUTPUT "))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    /// The last non-empty line of standard error (else of standard output).
    pub fn last_words(&self) -> String {
        let last = |s: &str| {
            s.lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        };
        last(&self.stderr)
            .or_else(|| last(&self.stdout))
            .unwrap_or_else(|| "no output".into())
    }

    /// The last `n` lines of both streams, for an error message.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self
            .stdout
            .lines()
            .chain(self.stderr.lines())
            .filter(|l| !l.trim().is_empty())
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// The alias a host's key is recorded under: the inventory name, so an address change in the
/// inventory still checks the key recorded for that machine.
pub fn key_alias(host: &SshHost) -> String {
    format!("provisioning-{}", host.name)
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

/// The private key of one call, deleted when dropped.
struct KeyFile(PathBuf);

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Runner {
    /// Runs `script` on `host` (through `sh -s`), giving up after `timeout`. Appends what it
    /// printed to `log` when given. Connection failures are transient; a changed host key,
    /// refused credentials and a script's own failure are permanent (exit 75 from a script is
    /// transient).
    pub async fn run(
        &self,
        host: &SshHost,
        script: &str,
        timeout: Duration,
        log: Option<&Path>,
    ) -> ProviderResult<Output> {
        let key = self.key_file(host)?;
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(["-F", "/dev/null", "-T", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=accept-new"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .arg("-o")
            .arg(format!("HostKeyAlias={}", key_alias(host)))
            .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
            .args(["-o", "PasswordAuthentication=no"])
            .args(["-o", "KbdInteractiveAuthentication=no"])
            .arg("-o")
            .arg(format!(
                "ConnectTimeout={}",
                self.connect_timeout.as_secs().max(1)
            ))
            .args([
                "-o",
                "ServerAliveInterval=10",
                "-o",
                "ServerAliveCountMax=3",
            ])
            .args(["-o", "LogLevel=ERROR"])
            .arg("-p")
            .arg(host.port.to_string())
            .arg("-l")
            .arg(&host.user);
        if let Some(key) = &key {
            command.arg("-i").arg(&key.0);
        }
        command
            .arg("--")
            .arg(&host.address)
            .arg("sh -s")
            // Nothing of the server's environment goes to ssh or through it.
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.private_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            ProviderError::Permanent(format!(
                "cannot start the SSH client `{}`: {e} (Debian package `openssh-client`)",
                self.program.display()
            ))
        })?;
        let mut stdin = child.stdin.take();
        let script = script.as_bytes().to_vec();
        let feed = async move {
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(&script).await;
                let _ = stdin.shutdown().await;
            }
        };
        let out = read_tail(child.stdout.take(), output::Stream::Stdout);
        let err = read_tail(child.stderr.take(), output::Stream::Stderr);
        let finished = tokio::time::timeout(timeout, async {
            let (_, out, err, status) = tokio::join!(feed, out, err, child.wait());
            (out, err, status)
        })
        .await;
        drop(key);
        let Ok((stdout, stderr, status)) = finished else {
            return Err(ProviderError::Transient(format!(
                "the script on `{}` did not finish within {} s",
                host.name,
                timeout.as_secs()
            )));
        };
        let status = status.map_err(|e| {
            ProviderError::Transient(format!("lost the SSH client for `{}`: {e}", host.name))
        })?;
        let (stdout, secrets) = split_secrets(&stdout);
        let output = Output {
            status: status.code().unwrap_or(-1),
            stdout,
            stderr,
            secrets,
        };
        if let Some(log) = log {
            append_log(log, &output);
        }
        if output.status == 255 {
            return Err(self.connection_error(host, &output));
        }
        Ok(output)
    }

    fn key_file(&self, host: &SshHost) -> ProviderResult<Option<KeyFile>> {
        let Some(reference) = &host.key else {
            return Ok(None);
        };
        let secret = self.secrets.resolve(reference).map_err(|e| {
            ProviderError::Permanent(format!(
                "the SSH key of host `{}` ({}) cannot be read: {e}",
                host.name,
                reference.describe()
            ))
        })?;
        create_private_dir(&self.private_dir).map_err(|e| {
            ProviderError::Permanent(format!(
                "cannot prepare {}: {e}",
                self.private_dir.display()
            ))
        })?;
        let path = self.private_dir.join(format!(
            "key-{}-{}",
            std::process::id(),
            NEXT_KEY.fetch_add(1, Ordering::Relaxed)
        ));
        let file = KeyFile(path);
        write_private(&file.0, secret.expose()).map_err(|e| {
            ProviderError::Permanent(format!("cannot write {}: {e}", file.0.display()))
        })?;
        Ok(Some(file))
    }

    fn connection_error(&self, host: &SshHost, out: &Output) -> ProviderError {
        let text = &out.stderr;
        let at = format!("{}@{}:{}", host.user, host.address, host.port);
        if text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || text.contains("Host key verification failed")
        {
            return ProviderError::Permanent(format!(
                "the host key of `{}` ({at}) is not the one recorded at first contact (in {}): \
                 refusing to connect. If the machine was reinstalled, remove the old key with \
                 `ssh-keygen -R {} -f {}` and apply again",
                host.name,
                self.known_hosts.display(),
                key_alias(host),
                self.known_hosts.display()
            ));
        }
        if text.contains("Permission denied") || text.contains("Too many authentication") {
            let key = host
                .key
                .as_ref()
                .map_or("no key configured".to_string(), |k| k.describe());
            return ProviderError::Permanent(format!(
                "host `{}` ({at}) refused the key ({key}): check `{}` in the operator's config \
                 and the account's authorized_keys",
                host.name, host.configured_in
            ));
        }
        ProviderError::Transient(format!(
            "cannot reach host `{}` ({at}): {}",
            host.name,
            out.last_words()
        ))
    }
}

/// Reads a stream to its end, keeping its last [`OUTPUT_CAP`] bytes, and reports each line to
/// the step's output capture as it arrives (see [`crate::provider::output`]).
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>, stream: output::Stream) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let live = output::capturing();
    let mut kept: Vec<u8> = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * OUTPUT_CAP {
                    kept.drain(..kept.len() - OUTPUT_CAP);
                }
                if live {
                    partial.extend_from_slice(&buf[..n]);
                    while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=end).collect();
                        report(stream, &line);
                    }
                    if partial.len() > 4 * output::MAX_LINE_CHARS {
                        // A line without end: report what there is and go on.
                        report(stream, &partial);
                        partial.clear();
                    }
                }
            }
        }
    }
    if live && !partial.is_empty() {
        report(stream, &partial);
    }
    if kept.len() > OUTPUT_CAP {
        kept.drain(..kept.len() - OUTPUT_CAP);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn report(stream: output::Stream, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    match masked_secret_line(text.trim_end()) {
        Some(masked) => output::line(stream, &masked),
        None => output::line(stream, &text),
    }
}

fn append_log(path: &Path, out: &Output) {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(
            f,
            "--- exit {} ---\n{}{}",
            out.status, out.stdout, out.stderr
        );
    }
}

pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

pub(super) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    // OpenSSH wants the key's last line ended; secret values lose their trailing line break.
    f.write_all(b"\n")
}

/// `text` as one single-quoted shell word: nothing in it is expanded.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_every_byte_literal() {
        for text in [
            "plain",
            "it's",
            "$(reboot)",
            "`id`",
            "a\nb",
            "'; rm -rf / #",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(text)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), text);
        }
    }

    #[test]
    fn secret_lines_keep_their_value_out_of_the_text() {
        let (text, secrets) =
            split_secrets("one\nPROV_SECRET password=s3cr3t-v4lue\nPROV_OUTPUT port=1\n");
        assert_eq!(
            text,
            "one\nPROV_SECRET password=(kept as a secret)\nPROV_OUTPUT port=1\n"
        );
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0].0, "password");
        assert_eq!(secrets[0].1.expose(), "s3cr3t-v4lue");
        assert!(!format!("{secrets:?}").contains("s3cr3t"));
    }

    #[test]
    fn facts_and_last_words() {
        let out = Output {
            status: 0,
            stdout: "hello\nPROV_OUTPUT port=6379\nPROV_OUTPUT address = 10.0.0.2\n".into(),
            stderr: "warning\nprovisioning: done\n\n".into(),
            secrets: Vec::new(),
        };
        assert_eq!(
            out.facts(),
            vec![
                ("port".to_string(), "6379".to_string()),
                ("address".to_string(), "10.0.0.2".to_string())
            ]
        );
        assert_eq!(out.last_words(), "provisioning: done");
    }
}
