//! Random bearer secrets (session cookies, CSRF tokens, API tokens) and the digests stored for
//! them: the database holds only SHA-256 of a secret, so a copy of it lets nobody in.

use ring::rand::{SecureRandom, SystemRandom};

/// A token's bytes of entropy.
const TOKEN_BYTES: usize = 32;
/// What an API token starts with, so a leaked one is recognisable in a scan (and never
/// mistaken for a session cookie).
pub(crate) const API_TOKEN_PREFIX: &str = "ofk_";

/// 32 random bytes, lowercase hex.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source");
    fleet_tls::identity::hex(&bytes)
}

/// A new API token as shown to its owner once.
pub(crate) fn new_api_token() -> String {
    format!("{API_TOKEN_PREFIX}{}", random_token())
}

/// What the database keeps of a secret.
pub fn digest(secret: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// Compares two secrets in time independent of where they differ (their length is not secret).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |difference, (x, y)| difference | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_digests_fixed_length() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(new_api_token().starts_with(API_TOKEN_PREFIX));
        assert_eq!(digest(&a).len(), 32);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
    }
}
