//! Time, randomness, fault injection and account names, handed to the engine so tests can
//! control them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

/// Wall-clock time and sleeping.
#[async_trait]
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    async fn sleep(&self, duration: Duration);
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A clock that only moves when slept on: sleeping advances it instantly. For tests of retry
/// and backoff without waiting.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
    slept: Mutex<Vec<Duration>>,
}

impl ManualClock {
    pub fn starting_at(ms: u64) -> Self {
        ManualClock {
            now: AtomicU64::new(ms),
            slept: Mutex::new(Vec::new()),
        }
    }

    /// Moves time forward without anyone sleeping.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every sleep requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.slept.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    async fn sleep(&self, duration: Duration) {
        if let Ok(mut slept) = self.slept.lock() {
            slept.push(duration);
        }
        self.now
            .fetch_add(duration.as_millis() as u64, Ordering::SeqCst);
        tokio::task::yield_now().await;
    }
}

/// A source of randomness (jitter, ids). Seeded in tests.
pub trait Rng: Send + Sync {
    fn next_u64(&self) -> u64;

    /// A float in [0, 1).
    fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64: small, fast, good enough for jitter and ids; not for secrets.
#[derive(Debug)]
pub struct SeededRng(AtomicU64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng(AtomicU64::new(seed))
    }

    /// Seeded from the clock and the process id: different in every run.
    pub fn from_entropy() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        SeededRng::new(nanos ^ (u64::from(std::process::id()) << 32))
    }
}

impl Rng for SeededRng {
    fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Named points in the executor where a test may crash the process. The default does nothing.
pub trait Faults: Send + Sync {
    fn point(&self, name: &str);
}

#[derive(Debug, Default, Clone, Copy)]
pub struct NoFaults;

impl Faults for NoFaults {
    fn point(&self, _name: &str) {}
}

/// Kills this process with SIGKILL at the n-th fault point passed (1-based), like `kill -9`
/// from outside would, leaving no chance to clean up. Used by the crash tests through
/// `PROVISIONING_FAULT_KILL_AT`.
#[derive(Debug)]
pub struct KillAt {
    at: u64,
    passed: AtomicU64,
}

impl KillAt {
    pub fn new(at: u64) -> Self {
        KillAt {
            at,
            passed: AtomicU64::new(0),
        }
    }
}

impl Faults for KillAt {
    fn point(&self, name: &str) {
        let n = self.passed.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.at {
            tracing::error!("fault injection: SIGKILL at point {n} ({name})");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            // SIGKILL cannot be caught; nothing after this line runs.
        }
    }
}

/// A short random id with a prefix, for workflows, plans and locks: `wf-0f3a9c2e71b4`.
pub fn new_id(prefix: &str, clock: &dyn Clock, rng: &dyn Rng) -> String {
    let mixed = clock.now_ms().rotate_left(24) ^ rng.next_u64();
    format!("{prefix}-{:012x}", mixed & 0xFFFF_FFFF_FFFF)
}

/// `2026-11-22 14:03 UTC` for milliseconds since the epoch.
pub fn utc(ms: u64) -> String {
    let (y, m, d, hh, mm, _) = civil(ms);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC")
}

/// `2026-11-22T14:03:07.250Z` (RFC 3339, as MCP's task timestamps) for milliseconds since the
/// epoch.
pub fn rfc3339(ms: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(ms);
    format!(
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z",
        ms % 1000
    )
}

/// Year, month, day, hour, minute, second (days to civil date after Howard Hinnant's
/// algorithm).
fn civil(ms: u64) -> (i64, i64, i64, u64, u64, u64) {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (hh, mm, ss) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, hh, mm, ss)
}

/// The account name of `uid`, else `uid-N`.
pub fn account_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid-{uid}"))
}

#[cfg(test)]
mod utc_tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(super::utc(1_795_443_626_831), "2026-11-23 14:20 UTC");
        assert_eq!(
            super::rfc3339(1_795_443_626_831),
            "2026-11-23T14:20:26.831Z"
        );
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}
