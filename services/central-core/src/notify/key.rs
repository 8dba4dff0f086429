//! Webhook secrets at rest: sealed with AES-256-GCM under central's notification key (a file of
//! 64 hex characters given with `--notification-key-file`, e.g. `openssl rand -hex 32`), so a
//! copy of the database signs nothing. Every replica is given the same file; without it,
//! webhook endpoints cannot be made and sealed secrets cannot be used.

use std::path::Path;

use anyhow::Context;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Binds a sealed secret to its use: a sealed value from elsewhere does not open here.
const AAD: &[u8] = b"onshi-fleet notification endpoint secret v1";

/// What a webhook secret starts with, so a leaked one is recognisable in a scan.
pub(crate) const SECRET_PREFIX: &str = "whsec_";

pub struct NotificationKey(LessSafeKey);

impl std::fmt::Debug for NotificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NotificationKey(<redacted>)")
    }
}

impl NotificationKey {
    /// Reads the key file (64 hex characters, surrounding whitespace ignored).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the notification key {}", path.display()))?;
        Self::from_hex(text.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn from_hex(text: &str) -> Result<Self, String> {
        let bytes = onshi_domain::hex::decode(text)
            .filter(|b| b.len() == 32)
            .ok_or("通知鍵は 64 桁の16進数です / the notification key is 64 hex characters (32 bytes, e.g. `openssl rand -hex 32`)")?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "not an AES-256 key")?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// nonce || ciphertext || tag.
    pub fn seal(&self, secret: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the operating system's random source");
        let mut sealed = secret.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut sealed,
            )
            .expect("sealing a short secret");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<String, String> {
        const REFUSED: &str = "the webhook secret does not open with this notification key \
            (another key file, or the row was changed)";
        if sealed.len() < NONCE_LEN {
            return Err(REFUSED.into());
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| REFUSED)?;
        let mut buffer = rest.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(AAD), &mut buffer)
            .map_err(|_| REFUSED)?;
        String::from_utf8(plain.to_vec()).map_err(|_| REFUSED.into())
    }
}

/// A new webhook secret, shown to its maker once.
pub(crate) fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", crate::auth::secret::random_token())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_only() {
        let key = NotificationKey::from_hex(&"11".repeat(32)).unwrap();
        let other = NotificationKey::from_hex(&"22".repeat(32)).unwrap();
        let secret = new_secret();
        let sealed = key.seal(&secret);
        assert!(
            !sealed
                .windows(8)
                .any(|w| secret.as_bytes().windows(8).any(|s| s == w))
        );
        assert_eq!(key.open(&sealed).unwrap(), secret);
        assert!(other.open(&sealed).is_err());
        assert!(NotificationKey::from_hex("abcd").is_err());
    }
}
