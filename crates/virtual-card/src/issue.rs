//! A virtual card's files in one folder:
//!
//! ```text
//! card.json     holder index and PIN (test data of a virtual card, never of a person)
//! key.pem       the card's RSA-2048 private key (PKCS#8), owner-only
//! cert.der      its user-authentication certificate, issued by the dev PKI's test J-LIS CA
//! state.json    the PIN counter, so taking the card off and back keeps it
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use rsa::RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use time::{Duration, OffsetDateTime};

use crate::HOLDER_PREFIX;
use crate::applet::{Applet, CardSecrets, Kind};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CardInfo {
    /// Index of the holder in onshi-sim's population.
    pub holder: usize,
    pub pin: String,
}

/// Where a card's files are.
#[derive(Debug, Clone)]
pub struct CardDir(pub PathBuf);

impl CardDir {
    pub fn info(&self) -> PathBuf {
        self.0.join("card.json")
    }
    pub fn key(&self) -> PathBuf {
        self.0.join("key.pem")
    }
    pub fn certificate(&self) -> PathBuf {
        self.0.join("cert.der")
    }
    pub fn state(&self) -> PathBuf {
        self.0.join("state.json")
    }

    /// The card as an applet, its PIN counter in `state.json`.
    pub fn load(&self) -> anyhow::Result<Applet> {
        Ok(Applet::new(
            Kind::MyNumber(Box::new(self.secrets()?)),
            Some(self.state()),
        ))
    }

    pub fn secrets(&self) -> anyhow::Result<CardSecrets> {
        let info: CardInfo = serde_json::from_slice(
            &std::fs::read(self.info())
                .with_context(|| format!("reading {}", self.info().display()))?,
        )?;
        let key_pem = std::fs::read_to_string(self.key())
            .with_context(|| format!("reading {}", self.key().display()))?;
        let key = RsaPrivateKey::from_pkcs8_pem(&key_pem).context("the card key")?;
        let certificate_der = std::fs::read(self.certificate())
            .with_context(|| format!("reading {}", self.certificate().display()))?;
        Ok(CardSecrets {
            key,
            certificate_der,
            pin: info.pin,
        })
    }
}

/// A new RSA-2048 key (slow in debug builds: a few seconds).
pub fn generate_key() -> anyhow::Result<RsaPrivateKey> {
    RsaPrivateKey::new(&mut rand::thread_rng(), 2048).context("generating the card's RSA key")
}

/// The key in `path` if it exists, else a new one written there (tests reuse keys: only the
/// certificate, from each test's own PKI, needs to be new).
pub fn cached_key(path: &Path) -> anyhow::Result<RsaPrivateKey> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        return RsaPrivateKey::from_pkcs8_pem(&pem).context("the cached card key");
    }
    let key = generate_key()?;
    write_key(&key, path)?;
    Ok(key)
}

fn write_key(key: &RsaPrivateKey, path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the key")?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct IssueSpec {
    /// The dev PKI folder (holds `jlis-ca.{pem,key}`).
    pub pki: PathBuf,
    pub holder: usize,
    pub pin: String,
    /// An already expired certificate (its validity ended yesterday).
    pub expired: bool,
}

/// Writes a card's files into `dir` with `key`.
pub fn issue(dir: &Path, spec: &IssueSpec, key: &RsaPrivateKey) -> anyhow::Result<CardDir> {
    anyhow::ensure!(
        spec.pin.len() == 4 && spec.pin.bytes().all(|b| b.is_ascii_digit()),
        "the PIN of a card is 4 digits"
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let card = CardDir(dir.to_path_buf());
    let spki = key
        .to_public_key()
        .to_public_key_der()
        .context("encoding the public key")?;
    let now = OffsetDateTime::now_utc();
    let (not_before, not_after) = if spec.expired {
        (now - Duration::days(5 * 365), now - Duration::days(1))
    } else {
        // Valid until the 5th birthday after issue in reality; 5 years here.
        (now - Duration::hours(1), now + Duration::days(5 * 365))
    };
    let der = fleet_tls::devpki::issue_card_certificate(
        &spec.pki,
        spki.as_bytes(),
        &format!("{HOLDER_PREFIX}{}", spec.holder),
        not_before,
        not_after,
    )
    .context("issuing the card certificate with the test J-LIS CA")?;
    std::fs::write(card.certificate(), der)?;
    write_key(key, &card.key())?;
    let info = CardInfo {
        holder: spec.holder,
        pin: spec.pin.clone(),
    };
    std::fs::write(card.info(), serde_json::to_vec_pretty(&info)?)?;
    let _ = std::fs::remove_file(card.state());
    Ok(card)
}
