//! Central's seal signing key (Ed25519): what signs the daily seals (`onshi_domain::seal`).
//!
//! The key file holds the PKCS#8 document as one line of lowercase hex, readable by its owner
//! only; `central seal-key init` writes it and prints the public key, which auditors keep
//! beside the exports they receive. The key is never printed or logged.

use std::path::Path;

use onshi_domain::seal::Seal;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

#[derive(Debug, thiserror::Error)]
pub enum SealKeyError {
    #[error("the seal key {path} cannot be read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the seal key {path} is not an Ed25519 PKCS#8 key in hex")]
    Invalid { path: String },
    #[error(
        "{path} exists; a seal key is never overwritten (seals made with it would no longer verify against a new one)"
    )]
    Exists { path: String },
    #[error("the seal key {path} cannot be written: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The private key that signs seals.
pub struct SealKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey(public {})", self.public_hex())
    }
}

impl SealKey {
    pub fn load(path: &Path) -> Result<Self, SealKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| SealKeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let invalid = || SealKeyError::Invalid {
            path: path.display().to_string(),
        };
        let der = onshi_domain::hex::decode(text.trim()).ok_or_else(invalid)?;
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| invalid())?;
        Ok(Self { pair })
    }

    /// Generates a key into `path` (owner-only), refusing to overwrite one.
    pub fn create(path: &Path) -> Result<Self, SealKeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let write_err = |source| SealKeyError::Write {
            path: path.display().to_string(),
            source,
        };
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .expect("the system's random source works");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => SealKeyError::Exists {
                    path: path.display().to_string(),
                },
                _ => write_err(e),
            })?;
        file.write_all(format!("{}\n", onshi_domain::hex::encode(document.as_ref())).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write_err)?;
        Self::load(path)
    }

    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    pub fn public_hex(&self) -> String {
        onshi_domain::hex::encode(self.public_key())
    }

    pub fn sign(&self, seal: &Seal) -> Vec<u8> {
        self.pair.sign(&seal.message()).as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_loads_signs_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seal.key");
        let key = SealKey::create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
        let loaded = SealKey::load(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert!(matches!(
            SealKey::create(&path),
            Err(SealKeyError::Exists { .. })
        ));
        assert!(
            !format!("{loaded:?}")
                .contains(&std::fs::read_to_string(&path).unwrap().trim().to_string())
        );
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            SealKey::load(&path),
            Err(SealKeyError::Invalid { .. })
        ));
    }
}
