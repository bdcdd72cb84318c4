//! Processes as seen through `/proc`: liveness that ignores zombies, "is this one of ours", the
//! effective user, and the unprivileged account postgres runs as when we are root.

use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The environment variable every process we start carries (it is inherited by the service and
/// its children, and nginx is told to keep it in its workers); its value is the taskserv dir.
pub(crate) const MARKER_ENV: &str = "PROVISIONING_LOCAL_TSDIR";

fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
}

/// The state letter from `/proc/<pid>/stat` and the process group, or `None` when there is no
/// such process.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`; comm may contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether `pid` is a live (non-zombie) process.
pub(crate) fn alive(pid: u32) -> bool {
    let Some(p) = to_pid(pid) else { return false };
    match kill(p, None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    match stat(pid) {
        Some((state, _)) => state != 'Z' && state != 'X',
        // No /proc (unusual): trust kill(2).
        None => !Path::new("/proc/self").exists(),
    }
}

/// Whether the process carries our marker for `tsdir`, or names one of `paths` on its command
/// line (postgres rewrites its title over its original environment block, so the marker alone
/// is not enough for every process).
pub(crate) fn is_ours(pid: u32, tsdir: &str, paths: &[&str]) -> bool {
    let marker = format!("{MARKER_ENV}={tsdir}");
    if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
        if env
            .split(|b| *b == 0)
            .any(|entry| entry == marker.as_bytes())
        {
            return true;
        }
    }
    if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        return paths
            .iter()
            .chain(std::iter::once(&tsdir))
            .any(|p| args.iter().any(|a| contains(a, p.as_bytes())));
    }
    false
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Live processes that belong to the taskserv in `tsdir`: those carrying its marker (or naming
/// its paths) and, when the group is known to be ours, every member of process group `pgid`.
pub(crate) fn ours(
    tsdir: &str,
    paths: &[&str],
    pgid: Option<u32>,
    group_trusted: bool,
) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut marked = Vec::new();
    let mut grouped = Vec::new();
    let mut group_has_marked = false;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Some((state, pgrp)) = stat(pid) else {
            continue;
        };
        if state == 'Z' || state == 'X' {
            continue;
        }
        let in_group = pgid.is_some_and(|g| g == pgrp);
        if is_ours(pid, tsdir, paths) {
            group_has_marked |= in_group;
            marked.push(pid);
        } else if in_group {
            grouped.push(pid);
        }
    }
    if group_trusted || group_has_marked {
        marked.extend(grouped);
    }
    marked
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
        assert!(alive(std::process::id()));
        assert!(!alive(0));
        assert!(!alive(u32::MAX));
    }

    #[test]
    fn nobody_has_ids() {
        let (uid, gid) = nobody();
        assert!(uid > 0 && gid > 0);
    }
}
