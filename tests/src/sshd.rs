//! A real OpenSSH server (Debian `openssh-server`) on a loopback port, or in a network
//! namespace, with its own host key and a client key it authorizes: the `ssh` provider's
//! trials and benchmark run against it.

// A test fixture: a failure to set up is the trial's failure, with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `sshd` on 127.0.0.1 with keys of its own.
pub struct Sshd {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn keygen(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (Debian package openssh-client)");
    assert!(out.status.success(), "{out:?}");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sshd {
    /// Starts sshd in `dir` (host key `host_key`, made when missing; the client key `client`,
    /// authorized). `port`: reuse a port (a restarted host), else a free one.
    pub fn start(dir: &Path, port: Option<u16>) -> Sshd {
        Sshd::start_in(dir, None, "127.0.0.1", port.unwrap_or_else(free_port))
    }

    /// [`Sshd::start`] inside network namespace `netns` (when given), listening on `address`.
    pub fn start_in(dir: &Path, netns: Option<&str>, address: &str, port: u16) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd is missing: install Debian's openssh-server (scripts/test does)"
        );
        std::fs::create_dir_all(dir).unwrap();
        // Privilege separation needs this folder when sshd runs as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        if !dir.join("host_key").exists() {
            keygen(&dir.join("host_key"));
        }
        if !dir.join("client").exists() {
            keygen(&dir.join("client"));
            std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
        }
        let config = format!(
            "Port {port}\nListenAddress {address}\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
             PidFile {d}/sshd.pid\nStrictModes no\n",
            d = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(sshd);
                c
            }
            None => Command::new(sshd),
        };
        let child = command
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect((address, port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not listen on {port}: {}",
                std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd {
            child,
            dir: dir.to_path_buf(),
            port,
        }
    }

    /// The operator's config: this sshd as inventory host `loopback`, the key as a `file:`
    /// reference, the host's folders under `hostroot`.
    pub fn write_config(&self, at: &Path, hostroot: &Path) {
        std::fs::write(at, self.inventory_entry("loopback", "127.0.0.1", hostroot)).unwrap();
    }

    /// `[ssh.hosts.NAME]` for this sshd at `address`.
    pub fn inventory_entry(&self, name: &str, address: &str, hostroot: &Path) -> String {
        format!(
            "[ssh.hosts.{name}]\naddress = \"{address}\"\nport = {}\nuser = \"{}\"\n\
             key = \"file:{}\"\nroot = \"{}\"\nworkspaces = [\"*\"]\n",
            self.port,
            whoami(),
            self.dir.join("client").display(),
            hostroot.display()
        )
    }
}

pub fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
