//! Sign-in rate limiting: each attempt is counted for its login and its address *before* its
//! password is checked, and over the limit further attempts are refused without a check until
//! the oldest ages out. A slot among a few (one per core) is needed to check a password at all:
//! argon2id takes 19 MiB a check, so concurrent attempts cannot add up to the pod's memory
//! (issue 15: sixty at once took 1.1 GiB when attempts were counted only after their hash).
//!
//! Kept in memory: each replica limits on its own, which bounds guessing to replicas × limit
//! per window, and a restart forgets (acceptable: the limit slows guessing, argon2id makes each
//! guess costly, every checked attempt is an audit row, and refused ones are counted per key
//! and window in `sign_in_refusals`).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub window: Duration,
    pub per_login: usize,
    pub per_address: usize,
    /// Passwords checked at once; more concurrent attempts are refused as busy.
    pub concurrent_checks: usize,
    /// Logins and addresses remembered at most (memory stays bounded whoever floods).
    pub max_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: Duration::from_secs(15 * 60),
            per_login: 5,
            per_address: 20,
            concurrent_checks: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_keys: MAX_KEYS,
        }
    }
}

/// Keys are bounded: attempts older than the window are dropped on every touch, and at most
/// this many keys are remembered by default ([`Attempts::make_room`] says which go first).
pub const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Login(String),
    Address(IpAddr),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Login(login) => write!(f, "login:{login}"),
            Key::Address(address) => write!(f, "address:{address}"),
        }
    }
}

#[derive(Debug, Default)]
struct Attempts {
    by_key: HashMap<Key, VecDeque<Instant>>,
}

impl Attempts {
    /// Frees an eighth of `limits.max_keys` when full. Forgetting everyone at once would let a
    /// flood of new logins or addresses lift every lock-out; so keys with nothing left in the
    /// window go first, then the least recently used keys below their limit, and keys at their
    /// limit (a login or address being refused right now) only last, oldest first.
    fn make_room(&mut self, limits: &Limits, now: Instant) {
        for times in self.by_key.values_mut() {
            forget_before(times, now, limits.window);
        }
        self.by_key.retain(|_, times| !times.is_empty());
        let target = limits.max_keys - limits.max_keys / 8 - 2;
        if self.by_key.len() <= target {
            return;
        }
        let locked = |key: &Key, times: &VecDeque<Instant>| {
            times.len()
                >= match key {
                    Key::Login(_) => limits.per_login,
                    Key::Address(_) => limits.per_address,
                }
        };
        let mut order: Vec<(bool, Instant, Key)> = self
            .by_key
            .iter()
            .map(|(key, times)| {
                let last = times.back().copied().unwrap_or(now);
                (locked(key, times), last, key.clone())
            })
            .collect();
        order.sort_unstable_by_key(|a| (a.0, a.1));
        let excess = self.by_key.len() - target;
        for (_, _, key) in order.into_iter().take(excess) {
            self.by_key.remove(&key);
        }
    }
}

/// An attempt counted against its login and address, before its password is checked.
#[derive(Debug)]
pub struct Attempt {
    login: String,
    address: IpAddr,
    at: Instant,
}

/// An attempt refused without a password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Too many attempts for `key` (`login:…` or `address:…`) in the window.
    TooMany { key: String, wait: Duration },
    /// Every password-check slot is taken; try again in a moment.
    Busy { address: IpAddr },
}

#[derive(Debug, Clone)]
pub struct SignInLimiter {
    limits: Limits,
    attempts: Arc<Mutex<Attempts>>,
    checks: Arc<Semaphore>,
}

impl Default for SignInLimiter {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl SignInLimiter {
    pub fn new(limits: Limits) -> Self {
        SignInLimiter {
            limits,
            attempts: Arc::default(),
            checks: Arc::new(Semaphore::new(limits.concurrent_checks.max(1))),
        }
    }

    pub fn window(&self) -> Duration {
        self.limits.window
    }

    /// Counts an attempt for `login` from `address`, or refuses it (uncounted) when either is
    /// at its limit; the refusal names the key that waits longest.
    pub(crate) fn begin(
        &self,
        login: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<Attempt, Refusal> {
        let mut attempts = self.attempts.lock().expect("limiter lock");
        let login = login.to_lowercase();
        let keys = [
            (Key::Login(login.clone()), self.limits.per_login),
            (Key::Address(address), self.limits.per_address),
        ];
        let mut refusal: Option<(Duration, &Key)> = None;
        for (key, limit) in &keys {
            if let Some(times) = attempts.by_key.get_mut(key) {
                forget_before(times, now, self.limits.window);
                if times.len() >= *limit {
                    let oldest = times[times.len() - limit];
                    let wait = self.limits.window.saturating_sub(now - oldest);
                    if refusal.is_none_or(|(longest, _)| wait > longest) {
                        refusal = Some((wait, key));
                    }
                }
            }
        }
        if let Some((wait, key)) = refusal {
            return Err(Refusal::TooMany {
                key: key.to_string(),
                wait: wait.max(Duration::from_secs(1)),
            });
        }
        if attempts.by_key.len() + keys.len() > self.limits.max_keys {
            attempts.make_room(&self.limits, now);
        }
        for (key, _) in keys {
            attempts.by_key.entry(key).or_default().push_back(now);
        }
        Ok(Attempt {
            login,
            address,
            at: now,
        })
    }

    /// A slot to check a password in, held until the check ends (move it into the blocking
    /// task: a client that goes away does not free it early). None: all are taken.
    pub(crate) fn check_slot(&self, attempt: &Attempt) -> Result<OwnedSemaphorePermit, Refusal> {
        self.checks
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy {
                address: attempt.address,
            })
    }

    /// Takes back an attempt whose password was never checked (central was busy), so that a
    /// person does not lose a try to load.
    pub(crate) fn withdraw(&self, attempt: Attempt) {
        let mut attempts = self.attempts.lock().expect("limiter lock");
        for key in [Key::Login(attempt.login), Key::Address(attempt.address)] {
            if let Some(times) = attempts.by_key.get_mut(&key)
                && let Some(at) = times.iter().rposition(|t| *t == attempt.at)
            {
                times.remove(at);
            }
        }
    }

    /// A successful sign-in clears the login's attempts, and takes this one back from the
    /// address (its other attempts stay: one good password must not reset guessing at other
    /// logins from the same place).
    pub fn succeeded(&self, attempt: Attempt) {
        {
            let mut attempts = self.attempts.lock().expect("limiter lock");
            attempts.by_key.remove(&Key::Login(attempt.login.clone()));
        }
        self.withdraw(attempt);
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
            concurrent_checks: 2,
            max_keys: 100,
        })
    }

    #[test]
    fn a_flood_of_new_keys_evicts_the_least_recent_and_keeps_lock_outs() {
        let limiter = limiter();
        let start = Instant::now();
        for _ in 0..3 {
            limiter.begin("victim", HERE, start).unwrap();
        }
        assert!(limiter.begin("victim", HERE, start).is_err(), "locked out");
        // Two hundred logins from two hundred addresses: four hundred keys for a hundred places.
        for i in 0..200u32 {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let at = start + Duration::from_millis(u64::from(i) + 1);
            limiter.begin(&format!("user-{i}"), address, at).unwrap();
        }
        let later = start + Duration::from_secs(1);
        assert!(
            matches!(
                limiter.begin("victim", HERE, later),
                Err(Refusal::TooMany { .. })
            ),
            "the victim's lock-out survives the flood"
        );
        let attempts = limiter.attempts.lock().unwrap();
        assert!(attempts.by_key.len() <= 100, "{}", attempts.by_key.len());
        assert!(
            attempts.by_key.contains_key(&Key::Login("user-199".into())),
            "the newest keys are kept"
        );
        assert!(!attempts.by_key.contains_key(&Key::Login("user-0".into())));
    }

    #[test]
    fn a_login_is_refused_after_its_limit_until_the_oldest_attempt_ages_out() {
        let limiter = limiter();
        let start = Instant::now();
        for i in 0..3 {
            limiter
                .begin("hanako", HERE, start + Duration::from_secs(i))
                .unwrap_or_else(|r| panic!("attempt {i}: {r:?}"));
        }
        let refusal = limiter
            .begin("Hanako", HERE, start + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(
            refusal,
            Refusal::TooMany {
                key: "login:hanako".into(),
                wait: Duration::from_secs(50)
            }
        );
        assert!(
            limiter
                .begin("hanako", HERE, start + Duration::from_secs(60))
                .is_ok()
        );
    }

    #[test]
    fn concurrent_attempts_are_counted_before_any_of_them_is_checked() {
        // Nothing is recorded "after the hash": the fourth of four attempts made at the same
        // moment is refused although none of them has finished.
        let limiter = limiter();
        let now = Instant::now();
        let held: Vec<Attempt> = (0..3)
            .map(|_| limiter.begin("jiro", HERE, now).unwrap())
            .collect();
        assert!(matches!(
            limiter.begin("jiro", HERE, now),
            Err(Refusal::TooMany { .. })
        ));
        assert_eq!(held.len(), 3);
    }

    #[test]
    fn one_address_guessing_many_logins_is_limited_too() {
        let limiter = limiter();
        let now = Instant::now();
        for login in ["a1", "a2", "a3", "a4", "a5"] {
            limiter.begin(login, HERE, now).unwrap();
        }
        assert_eq!(
            limiter.begin("someone-else", HERE, now).unwrap_err(),
            Refusal::TooMany {
                key: "address:127.0.0.1".into(),
                wait: Duration::from_secs(60)
            }
        );
        let elsewhere = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));
        assert!(limiter.begin("someone-else", elsewhere, now).is_ok());
    }

    #[test]
    fn success_clears_the_login_but_not_the_address() {
        let limiter = limiter();
        let now = Instant::now();
        for _ in 0..2 {
            limiter.begin("taro", HERE, now).unwrap();
        }
        let good = limiter.begin("taro", HERE, now).unwrap();
        limiter.succeeded(good);
        assert!(limiter.begin("taro", HERE, now).is_ok());
        // The address holds taro's two failures and the attempt just made, not the success:
        // two more fit under its five.
        limiter.begin("other", HERE, now).unwrap();
        limiter.begin("third", HERE, now).unwrap();
        assert!(limiter.begin("fourth", HERE, now).is_err());
    }

    #[test]
    fn checks_beyond_the_slots_are_refused_as_busy_and_withdrawn() {
        let limiter = limiter();
        let now = Instant::now();
        let first = limiter.begin("a", HERE, now).unwrap();
        let second = limiter.begin("b", HERE, now).unwrap();
        let third = limiter.begin("c", HERE, now).unwrap();
        let slot_1 = limiter.check_slot(&first).unwrap();
        let _slot_2 = limiter.check_slot(&second).unwrap();
        assert_eq!(
            limiter.check_slot(&third).unwrap_err(),
            Refusal::Busy { address: HERE }
        );
        limiter.withdraw(third);
        // The withdrawn attempt does not count: "c" may try three times more.
        for _ in 0..3 {
            limiter
                .begin("c", IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 8)), now)
                .unwrap();
        }
        drop(slot_1);
        assert!(limiter.check_slot(&first).is_ok());
    }
}
