//! Request rate per key (per address when the service runs open): a token bucket each, refilled
//! continuously. Excess gets 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `BUDGET_RATE_LIMIT`: `N/s` (burst 2N) or `N/s,burst=B`; `off` for none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    /// Generous: far above what one client of the benchmark sends.
    fn default() -> Self {
        RateLimit { per_second: 50_000.0, burst: 100_000.0 }
    }
}

impl RateLimit {
    pub const OFF: RateLimit = RateLimit { per_second: f64::INFINITY, burst: f64::INFINITY };

    pub fn parse(s: &str) -> Result<RateLimit, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(RateLimit::OFF);
        }
        let bad = || "use N/s (requests per second per key), optionally `,burst=B`, or off".to_string();
        let (rate, burst) = match s.split_once(',') {
            Some((r, b)) => (r, Some(b.trim().strip_prefix("burst=").ok_or_else(bad)?)),
            None => (s, None),
        };
        let per_second: f64 = rate.trim().strip_suffix("/s").ok_or_else(bad)?.trim().parse().map_err(|_| bad())?;
        let burst: f64 = match burst {
            Some(b) => b.trim().parse().map_err(|_| bad())?,
            None => per_second * 2.0,
        };
        if per_second < 1.0 || burst < 1.0 {
            return Err(bad());
        }
        Ok(RateLimit { per_second, burst })
    }
}

/// The buckets, by caller.
#[derive(Debug)]
pub struct Buckets {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Buckets {
    pub fn new(limit: RateLimit) -> Self {
        Buckets { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `who`, or says how long until one is there.
    pub fn take(&self, who: &str) -> Result<(), Duration> {
        if self.limit.per_second.is_infinite() {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate buckets");
        if buckets.len() > 100_000 {
            // Addresses come and go; forget the full ones rather than grow without bound.
            let full = self.limit.burst;
            buckets.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * self.limit.per_second < full);
        }
        let (tokens, at) = buckets.entry(who.to_string()).or_insert((self.limit.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.limit.per_second).min(self.limit.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.limit.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_buckets_refuse_past_the_burst() {
        assert_eq!(RateLimit::parse("10/s").unwrap(), RateLimit { per_second: 10.0, burst: 20.0 });
        assert_eq!(RateLimit::parse("5/s,burst=5").unwrap(), RateLimit { per_second: 5.0, burst: 5.0 });
        assert!(RateLimit::parse("fast").is_err() && RateLimit::parse("0/s").is_err());
        let b = Buckets::new(RateLimit { per_second: 1.0, burst: 3.0 });
        assert!((0..3).all(|_| b.take("k").is_ok()));
        let wait = b.take("k").unwrap_err();
        assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(b.take("other").is_ok(), "each caller has its own bucket");
    }
}
