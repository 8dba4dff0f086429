//! Encryption at rest for outbox records.
//!
//! The outbox holds patient data at the site (keyed hashes, insurer numbers, and whatever later
//! event kinds carry), so every record is sealed with ChaCha20-Poly1305 under a per-site key
//! kept in its own file, outside the database: a copied database file reveals nothing.
//!
//! Record layout: `version (1) || nonce (12) || ciphertext || tag (16)`. The associated data binds
//! a record to its place, `"onshi-fleet/outbox/v1" || stream id (16) || sequence (8, BE)`, so a
//! record moved to another sequence or another outbox fails to open like a damaged one.
//!
//! The key file holds 64 hex characters (32 bytes), is created owner-only (0600) with a new
//! outbox, and is refused when group or others can read it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;

const VERSION: u8 = 1;
const AAD_TAG: &[u8] = b"onshi-fleet/outbox/v1";
const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the outbox key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the outbox key {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the outbox key {path} must hold exactly 64 hex characters")]
    Format { path: PathBuf },
    #[error("the outbox key {path} can be read by other users ({exposure})")]
    Permissions {
        path: PathBuf,
        exposure: crate::owner_only::Exposure,
    },
}

/// The key that seals this site's outbox records. Never printed.
pub struct OutboxKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for OutboxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboxKey(<redacted>)")
    }
}

impl OutboxKey {
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Self {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("32-byte key");
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Loads the key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        check_private(path)?;
        let text = fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let text = text.trim();
        let format = || KeyError::Format {
            path: path.to_path_buf(),
        };
        if text.len() != KEY_BYTES * 2 {
            return Err(format());
        }
        let mut bytes = [0u8; KEY_BYTES];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).map_err(|_| format())?;
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// Creates a new random key file, owner-only. Refuses to overwrite an existing one.
    pub fn create(path: &Path) -> Result<Self, KeyError> {
        let create = |source| KeyError::Create {
            path: path.to_path_buf(),
            source,
        };
        let mut bytes = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| create(std::io::Error::other("no system randomness")))?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(create)?;
        }
        let mut file = crate::owner_only::create(path, true).map_err(create)?;
        file.write_all(format!("{}\n", fleet_tls::identity::hex(&bytes)).as_bytes())
            .map_err(create)?;
        file.sync_all().map_err(create)?;
        Ok(Self::from_bytes(&bytes))
    }

    pub fn seal(&self, stream: Uuid, sequence: u64, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random number generator is available");
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(stream, sequence)),
                &mut in_out,
            )
            .expect("sealing cannot fail for in-memory buffers");
        let mut record = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        record.push(VERSION);
        record.extend_from_slice(&nonce);
        record.extend_from_slice(&in_out);
        record
    }

    /// Opens a sealed record; `None` when it is damaged, was moved, or is under another key.
    pub fn open(&self, stream: Uuid, sequence: u64, record: &[u8]) -> Option<Vec<u8>> {
        if record.len() < 1 + NONCE_LEN || record[0] != VERSION {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&record[1..1 + NONCE_LEN]).ok()?;
        let mut in_out = record[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(stream, sequence)), &mut in_out)
            .ok()?;
        Some(plain.to_vec())
    }
}

fn aad(stream: Uuid, sequence: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_TAG.len() + 24);
    aad.extend_from_slice(AAD_TAG);
    aad.extend_from_slice(stream.as_bytes());
    aad.extend_from_slice(&sequence.to_be_bytes());
    aad
}

fn check_private(path: &Path) -> Result<(), KeyError> {
    match crate::owner_only::exposure(path) {
        Ok(None) => Ok(()),
        Ok(Some(exposure)) => Err(KeyError::Permissions {
            path: path.to_path_buf(),
            exposure,
        }),
        Err(source) => Err(KeyError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_record_opens_only_in_its_place_and_under_its_key() {
        let key = OutboxKey::from_bytes(&[7; 32]);
        let stream = Uuid::now_v7();
        let record = key.seal(stream, 5, b"lookup event");
        assert_eq!(
            key.open(stream, 5, &record).as_deref(),
            Some(&b"lookup event"[..])
        );
        assert!(
            key.open(stream, 6, &record).is_none(),
            "moved to another sequence"
        );
        assert!(
            key.open(Uuid::now_v7(), 5, &record).is_none(),
            "moved to another outbox"
        );
        assert!(
            OutboxKey::from_bytes(&[8; 32])
                .open(stream, 5, &record)
                .is_none()
        );
        let mut flipped = record.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(key.open(stream, 5, &flipped).is_none(), "tampered");
        assert!(
            !record.windows(6).any(|w| w == b"lookup"),
            "the plaintext does not appear in the record"
        );
    }

    #[test]
    fn key_files_are_created_private_and_refused_when_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.key");
        let created = OutboxKey::create(&path).unwrap();
        let loaded = OutboxKey::load(&path).unwrap();
        let stream = Uuid::now_v7();
        assert!(
            loaded
                .open(stream, 1, &created.seal(stream, 1, b"x"))
                .is_some()
        );
        assert!(OutboxKey::create(&path).is_err(), "never overwrites a key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                OutboxKey::load(&path),
                Err(KeyError::Permissions { .. })
            ));
        }
    }
}
