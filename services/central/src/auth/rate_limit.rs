//! Sign-in rate limiting: after too many failures for one login, or from one address, further
//! attempts are refused without checking the password until the oldest failure ages out.
//!
//! Kept in memory: each replica limits on its own, which bounds guessing to replicas × limit
//! per window, and a restart forgets (acceptable: the limit slows guessing, argon2id makes each
//! guess costly, and every failure is an audit event).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub window: Duration,
    pub per_login: usize,
    pub per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: Duration::from_secs(15 * 60),
            per_login: 5,
            per_address: 20,
        }
    }
}

/// Keys are bounded: failures older than the window are dropped on every touch, and at most
/// this many keys are remembered (the oldest forgotten first).
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Login(String),
    Address(IpAddr),
}

#[derive(Debug, Default)]
struct Failures {
    by_key: HashMap<Key, VecDeque<Instant>>,
}

#[derive(Debug, Clone, Default)]
pub struct SignInLimiter {
    limits: Limits,
    failures: Arc<Mutex<Failures>>,
}

impl SignInLimiter {
    pub fn new(limits: Limits) -> Self {
        SignInLimiter {
            limits,
            failures: Arc::default(),
        }
    }

    /// `Err(wait)` when an attempt for `login` from `address` must be refused now.
    pub fn check(&self, login: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut failures = self.failures.lock().expect("limiter lock");
        let keys = [
            (Key::Login(login.to_lowercase()), self.limits.per_login),
            (Key::Address(address), self.limits.per_address),
        ];
        let mut wait = Duration::ZERO;
        for (key, limit) in keys {
            if let Some(times) = failures.by_key.get_mut(&key) {
                forget_before(times, now, self.limits.window);
                if times.len() >= limit {
                    let oldest = times[times.len() - limit];
                    wait = wait.max(self.limits.window.saturating_sub(now - oldest));
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    pub fn failed(&self, login: &str, address: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().expect("limiter lock");
        if failures.by_key.len() >= MAX_KEYS {
            failures.by_key.clear();
        }
        for key in [Key::Login(login.to_lowercase()), Key::Address(address)] {
            let times = failures.by_key.entry(key).or_default();
            forget_before(times, now, self.limits.window);
            times.push_back(now);
        }
    }

    /// A successful sign-in clears the login's failures (not the address's: one good password
    /// must not reset guessing at other logins from the same place).
    pub fn succeeded(&self, login: &str) {
        let mut failures = self.failures.lock().expect("limiter lock");
        failures.by_key.remove(&Key::Login(login.to_lowercase()));
    }
}

fn forget_before(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|&t| now.duration_since(t) >= window)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn limiter() -> SignInLimiter {
        SignInLimiter::new(Limits {
            window: Duration::from_secs(60),
            per_login: 3,
            per_address: 5,
        })
    }

    #[test]
    fn a_login_is_refused_after_its_limit_until_the_oldest_failure_ages_out() {
        let limiter = limiter();
        let start = Instant::now();
        for i in 0..3 {
            assert!(limiter.check("hanako", HERE, start).is_ok(), "attempt {i}");
            limiter.failed("hanako", HERE, start + Duration::from_secs(i));
        }
        let wait = limiter
            .check("Hanako", HERE, start + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            limiter
                .check("hanako", HERE, start + Duration::from_secs(60))
                .is_ok()
        );
    }

    #[test]
    fn one_address_guessing_many_logins_is_limited_too() {
        let limiter = limiter();
        let now = Instant::now();
        for login in ["a1", "a2", "a3", "a4", "a5"] {
            limiter.failed(login, HERE, now);
        }
        assert!(limiter.check("someone-else", HERE, now).is_err());
        let elsewhere = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));
        assert!(limiter.check("someone-else", elsewhere, now).is_ok());
    }

    #[test]
    fn success_clears_the_login_but_not_the_address() {
        let limiter = limiter();
        let now = Instant::now();
        for _ in 0..3 {
            limiter.failed("taro", HERE, now);
        }
        limiter.succeeded("taro");
        assert!(limiter.check("taro", HERE, now).is_ok());
    }
}
