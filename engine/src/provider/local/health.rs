//! Waiting for a taskserv to answer its health check, and the log lines that explain why it did
//! not.

use super::*;

/// The last `n` lines of the taskserv's logs, for error messages.
pub(super) fn log_tail(tsdir: &Path, n: usize) -> String {
    let mut out = String::new();
    for name in [LOG_FILE, "logs/error.log"] {
        let Ok(text) = std::fs::read_to_string(tsdir.join(name)) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(n)..];
        if !tail.is_empty() {
            out.push_str(&format!(
                "\n--- last lines of {} ---\n{}",
                tsdir.join(name).display(),
                tail.join("\n")
            ));
        }
    }
    out
}

/// What the log at `path` gained after its first `from` bytes.
pub(super) fn log_since(path: &Path, from: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

impl LocalProvider {
    /// Polls `check` until it passes, the process we started is gone, or `limit` runs out.
    /// Polls `check` until it passes, the process we started is gone, or `limit` runs out. With
    /// `log_from` (the log's length before the start), it also gives up once the supervisor has
    /// had to restart the service twice: a service that keeps crashing will not get healthy.
    pub(super) async fn wait_healthy(
        &self,
        tsdir: &Path,
        rec: &TaskservRecord,
        check: &Check,
        limit: Duration,
        log_from: Option<u64>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let last = match check.run().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if !self.running(tsdir, rec) {
                return Err(format!("the process exited ({last})"));
            }
            if let Some(from) = log_from {
                let restarts = log_since(&tsdir.join(LOG_FILE), from)
                    .matches(supervise::RESTART_MESSAGE)
                    .count();
                if restarts >= 2 {
                    return Err(format!("it keeps exiting ({restarts} restarts; {last})"));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not healthy after {limit:?}: {last}"));
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }
}
