//! The events-per-second limit per site: a token bucket per site code that throttles.
//!
//! Throttling, not refusal: a batch that finds too few tokens is delayed until the bucket has
//! earned them, and only then written and acked. Meanwhile the session reads nothing more from
//! that agent, so HTTP/2 flow control and the agent's window of unacknowledged batches slow it to
//! the limit. An agent draining a large backlog after an outage therefore goes at the limit rate
//! instead of being refused, reconnecting and resending in a loop; nothing is ever refused for
//! rate alone. The bucket may go into debt by one batch, so a batch larger than the burst is
//! still accepted, just delayed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    /// Events per second per site; 0 turns the limit off.
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(events_per_second: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(events_per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `events` tokens from `site`'s bucket; returns how long to wait before writing them.
    pub fn acquire(&self, site: &str, events: usize) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(site.to_string()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let earned = now.duration_since(bucket.updated).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + earned).min(self.burst) - events as f64;
        bucket.updated = now;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_site_gets_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(100, 200);
        assert_eq!(
            limiter.acquire("a", 200),
            Duration::ZERO,
            "the burst is free"
        );
        assert_eq!(limiter.acquire("a", 50), Duration::from_millis(500));
        // Another site has a bucket of its own.
        assert_eq!(limiter.acquire("b", 200), Duration::ZERO);
        tokio::time::advance(Duration::from_millis(500)).await;
        // The debt is paid off; 100 more events take a second.
        assert_eq!(limiter.acquire("a", 100), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(10)).await;
        // Earned tokens never exceed the burst.
        assert_eq!(limiter.acquire("a", 200), Duration::ZERO);
        assert!(limiter.acquire("a", 1) > Duration::ZERO);
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limiter = RateLimiter::new(0, 1);
        assert_eq!(limiter.acquire("a", 1_000_000), Duration::ZERO);
    }
}
