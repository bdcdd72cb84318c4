//! Processes as seen through `/proc`: liveness that ignores zombies, identity by (pid, start
//! time), the family of processes that belong to one taskserv, the effective user, and the
//! unprivileged account postgres runs as when we are root.
//!
//! Why not just the environment marker: redis, nginx workers and postgres children rewrite their
//! process title over their original argv and environment block, so `/proc/<pid>/environ` of
//! those shows nothing useful. Families are therefore found from the process group of the
//! process we started, the parent links below it, and the marker where it survived.

use std::collections::BTreeSet;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The environment variable every process we start carries; its value is the taskserv dir.
pub(crate) const MARKER_ENV: &str = "PROVISIONING_LOCAL_TSDIR";

pub(crate) fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
}

/// One line of `/proc/<pid>/stat`, the fields we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proc {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    pub(crate) pgrp: u32,
    pub(crate) state: char,
    /// Clock ticks after boot; with the pid, it identifies a process for good.
    pub(crate) start: u64,
}

impl Proc {
    pub(crate) fn zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

pub(crate) fn read(pid: u32) -> Option<Proc> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
    // stime cutime cstime priority nice threads itrealvalue starttime ...`; comm may hold
    // spaces and parentheses.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Proc {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Every process (zombies included, this process excluded).
pub(crate) fn all() -> Vec<Proc> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(read)
        .collect()
}

/// The start time of `pid`, when it exists.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    read(pid).map(|p| p.start)
}

/// Whether `pid` is a live (non-zombie) process.
pub(crate) fn alive(pid: u32) -> bool {
    let Some(p) = to_pid(pid) else { return false };
    match kill(p, None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    match read(pid) {
        Some(proc_) => !proc_.zombie(),
        // No /proc (unusual): trust kill(2).
        None => !Path::new("/proc/self").exists(),
    }
}

/// Whether `pid` is alive and is the very process that started at `start`.
pub(crate) fn same_process(pid: u32, start: u64) -> bool {
    alive(pid) && start_time(pid) == Some(start)
}

/// Whether the process carries our marker for `tsdir` in its environment.
pub(crate) fn has_marker(pid: u32, tsdir: &str) -> bool {
    let marker = format!("{MARKER_ENV}={tsdir}");
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
        env.split(|b| *b == 0)
            .any(|entry| entry == marker.as_bytes())
    })
}

/// The live processes of one taskserv: the members of process group `pgid` (unless its leader
/// is alive but is not the process that started at `leader_start`, that is the pid was reused),
/// every process carrying the marker for `tsdir`, and all their descendants.
pub(crate) fn family(pgid: Option<u32>, leader_start: Option<u64>, tsdir: &str) -> Vec<Proc> {
    let procs: Vec<Proc> = all().into_iter().filter(|p| !p.zombie()).collect();
    let group = pgid.filter(|g| {
        match (procs.iter().find(|p| p.pid == *g), leader_start) {
            (Some(leader), Some(start)) => leader.start == start,
            (Some(leader), None) => has_marker(leader.pid, tsdir),
            // Its members keep the group id from being reused.
            (None, _) => true,
        }
    });
    let mut set: BTreeSet<u32> = procs
        .iter()
        .filter(|p| group == Some(p.pgrp) || has_marker(p.pid, tsdir))
        .map(|p| p.pid)
        .collect();
    loop {
        let before = set.len();
        for p in &procs {
            if set.contains(&p.ppid) {
                set.insert(p.pid);
            }
        }
        if set.len() == before {
            break;
        }
    }
    procs.into_iter().filter(|p| set.contains(&p.pid)).collect()
}

pub(crate) fn signal(pid: u32, sig: Signal) {
    if let Some(p) = to_pid(pid) {
        let _ = kill(p, sig);
    }
}

pub(crate) fn signal_group(pgid: u32, sig: Signal) {
    if let Some(p) = to_pid(pgid) {
        let _ = killpg(p, sig);
    }
}

/// The effective user id, from `/proc/self/status` (the crate's `nix` build has no `user`).
pub(crate) fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

pub(crate) fn is_root() -> bool {
    euid() == Some(0)
}

/// The uid and gid of the unprivileged account (`nobody`, group `nogroup` when it exists).
pub(crate) fn nobody() -> (u32, u32) {
    let field = |file: &str, name: &str, idx: usize| -> Option<u32> {
        std::fs::read_to_string(file)
            .ok()?
            .lines()
            .find(|l| l.split(':').next() == Some(name))?
            .split(':')
            .nth(idx)?
            .parse()
            .ok()
    };
    let uid = field("/etc/passwd", "nobody", 2).unwrap_or(65534);
    let gid = field("/etc/group", "nogroup", 2)
        .or_else(|| field("/etc/passwd", "nobody", 3))
        .unwrap_or(65534);
    (uid, gid)
}

/// Whether a user other than the owner can reach `path` (every ancestor has `o+x`).
pub(crate) fn reachable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors().all(|p| {
        p.as_os_str().is_empty()
            || std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive_and_bogus_pids_are_not() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(same_process(me, start_time(me).unwrap()));
        assert!(!same_process(me, start_time(me).unwrap() + 1));
        assert!(!alive(0));
        assert!(!alive(u32::MAX));
    }

    #[test]
    fn stat_is_parsed() {
        let me = read(std::process::id()).unwrap();
        assert!(!me.zombie());
        assert!(me.ppid > 0 && me.start > 0);
    }

    #[test]
    fn families_follow_groups_markers_and_children() {
        use std::os::unix::process::CommandExt;
        let tsdir = format!("/nonexistent/family-test-{}", std::process::id());
        // sh (group leader, marked) starts a sleep in a new session: still family by parent.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "setsid sleep 30 & sleep 30; wait"])
            .env(MARKER_ENV, &tsdir)
            .process_group(0)
            .spawn()
            .unwrap();
        let leader = child.id();
        let start = start_time(leader).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let fam = loop {
            let fam = family(Some(leader), Some(start), &tsdir);
            // Forked children run `setsid` a moment later: wait until it has.
            let settled = fam.len() >= 3 && fam.iter().any(|p| p.pgrp != leader);
            if settled || std::time::Instant::now() > deadline {
                break fam;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(fam.len() >= 3, "{fam:?}");
        assert!(
            fam.iter().any(|p| p.pgrp != leader),
            "the setsid one is found too: {fam:?}"
        );
        // A wrong start time means a reused pid: the group alone does not count then, but the
        // marker still does.
        assert!(
            !family(Some(leader), Some(start + 1), "/elsewhere")
                .iter()
                .any(|p| p.pid == leader)
        );
        for p in &fam {
            signal(p.pid, Signal::SIGKILL);
        }
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !family(Some(leader), Some(start), &tsdir).is_empty() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn nobody_has_ids() {
        let (uid, gid) = nobody();
        assert!(uid > 0 && gid > 0);
    }
}
