//! Token buckets keyed by principal (requests with a valid token) or by client address
//! (requests without one). The time is a parameter, so tests need no sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One bucket per key: `rate` requests per second, up to `burst` at once; at most `capacity`
/// keys are remembered (full buckets are forgotten first, so a flood of new addresses cannot
/// grow the table without bound).
#[derive(Debug)]
pub struct Buckets {
    rate: f64,
    burst: f64,
    capacity: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
    }
}

impl Buckets {
    pub fn new(rate: f64, burst: f64, capacity: usize) -> Buckets {
        Buckets {
            rate: rate.max(0.0),
            burst: burst.max(1.0),
            capacity: capacity.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Takes one request from `key`'s bucket at `now`; when it is empty, how long until it
    /// holds one again (whole seconds, at least one, for `Retry-After`).
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !buckets.contains_key(key) && buckets.len() >= self.capacity {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.refill(now, rate, burst);
                b.tokens < burst
            });
            if buckets.len() >= self.capacity {
                return Err(Duration::from_secs(1));
            }
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        bucket.refill(now, self.rate, self.burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = if self.rate > 0.0 {
            ((1.0 - bucket.tokens) / self.rate).ceil()
        } else {
            3600.0
        };
        Err(Duration::from_secs(wait.clamp(1.0, 3600.0) as u64))
    }
}

/// The key a client address is limited under: the address itself for IPv4, its /64 network
/// for IPv6 (one host usually holds a whole /64).
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let b = Buckets::new(2.0, 4.0, 10);
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(b.take("k", t0), Ok(()));
        }
        assert_eq!(b.take("k", t0), Err(Duration::from_secs(1)));
        // Another key has its own bucket.
        assert_eq!(b.take("other", t0), Ok(()));
        // Half a second at 2/s refills one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(b.take("k", t1), Ok(()));
        assert!(b.take("k", t1).is_err());
    }

    #[test]
    fn retry_after_follows_the_rate() {
        let b = Buckets::new(0.1, 1.0, 10);
        let t0 = Instant::now();
        assert_eq!(b.take("k", t0), Ok(()));
        assert_eq!(b.take("k", t0), Err(Duration::from_secs(10)));
        let b = Buckets::new(0.0, 1.0, 10);
        assert_eq!(b.take("k", t0), Ok(()));
        assert_eq!(b.take("k", t0), Err(Duration::from_secs(3600)));
    }

    #[test]
    fn the_rate_is_as_given_never_negative() {
        assert_eq!(Buckets::new(2.5, 4.0, 10).rate(), 2.5);
        assert_eq!(Buckets::new(-3.0, 4.0, 10).rate(), 0.0);
    }

    #[test]
    fn a_known_key_is_served_when_the_table_is_full() {
        let b = Buckets::new(1.0, 2.0, 2);
        let t0 = Instant::now();
        assert_eq!(b.take("a", t0), Ok(()));
        assert_eq!(b.take("b", t0), Ok(()));
        // The table is full of half-used buckets: `a` still has one left.
        assert_eq!(b.take("a", t0), Ok(()));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_full_buckets_first() {
        let b = Buckets::new(1.0, 2.0, 2);
        let t0 = Instant::now();
        assert_eq!(b.take("a", t0), Ok(()));
        assert_eq!(b.take("b", t0), Ok(()));
        // Full table, nobody refilled yet: a new key waits.
        assert!(b.take("c", t0).is_err());
        // A second later `a` and `b` are full again and forgotten.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.take("c", t1), Ok(()));
    }

    #[test]
    fn ipv6_clients_are_limited_per_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        let c: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(c), "192.0.2.7");
    }
}
