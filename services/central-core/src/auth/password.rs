//! Passwords: argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane), stored
//! as PHC strings, which carry their own parameters so they can be raised later without
//! invalidating existing hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};

/// Shorter passwords are refused when an account is made or its password set.
pub(crate) const MIN_LENGTH: usize = 12;
/// Longer ones too: hashing is deliberately costly, and a megabyte "password" is an attack.
pub(crate) const MAX_LENGTH: usize = 1024;

fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP's argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Why a new password is refused, for the person choosing it.
pub(crate) fn check_new(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(format!(
            "a password needs at least {MIN_LENGTH} characters (パスワードは{MIN_LENGTH}文字以上)"
        ));
    }
    if password.len() > MAX_LENGTH {
        return Err(format!("a password may have at most {MAX_LENGTH} bytes"));
    }
    Ok(())
}

/// The PHC string for `password` under a fresh random salt.
pub fn hash(password: &str) -> String {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .expect("the operating system's random source");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id hashing with valid parameters")
        .to_string()
}

/// Whether `password` matches the stored PHC string. A string that is not argon2id never
/// matches.
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_LENGTH {
        return false;
    }
    match PasswordHash::new(stored) {
        Ok(parsed) if parsed.algorithm == Algorithm::Argon2id.ident() => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        _ => false,
    }
}

/// A hash to verify against when the login does not exist, so a wrong login costs as long as a
/// wrong password and timing does not tell which logins exist.
pub(crate) fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("a password nobody has, for timing only"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_salted_and_verifies_only_its_password() {
        let stored = hash("correct horse battery");
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert_ne!(stored, hash("correct horse battery"), "salted");
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("correct horse battery", "not a hash"));
    }

    #[test]
    fn short_passwords_are_refused_with_the_rule() {
        let error = check_new("short").unwrap_err();
        assert!(error.contains("12"), "{error}");
        assert!(check_new("long enough passphrase").is_ok());
    }
}
