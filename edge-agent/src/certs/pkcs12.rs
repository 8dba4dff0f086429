//! The certificates of a PKCS#12 file (`.p12`, `.pfx`), as the portal hands out a terminal's
//! electronic certificate and as Windows exports one, for the inventory.
//!
//! Only certificates are read: key bags are skipped, never decrypted. The password proves the
//! file intact (its MAC) and decrypts the bags the certificates are in; a wrong or missing one
//! is [`Pkcs12Error::PasswordUnknown`], and no error ever carries the password or the file's
//! bytes. Read: BER or DER (indefinite lengths, constructed octet strings); password integrity
//! with an HMAC of SHA-1 or SHA-2; certificate bags in plain or encrypted safe contents, nested
//! ones too; encryption as OpenSSL 3 writes by default (PBES2: PBKDF2 with HMAC-SHA-1/SHA-2 and
//! AES-128/192/256-CBC or 3DES-CBC), as Windows exports (pbeWithSHAAnd3-KeyTripleDES-CBC) and as
//! older OpenSSL did (pbeWithSHAAnd40BitRC2-CBC, and its 128-bit variant). A file whose
//! integrity is by public-key signature instead of a password is refused as unsupported.

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockCipherDecrypt, BlockModeDecrypt, KeyInit, KeyIvInit};
use ring::{digest, hmac, pbkdf2};

/// Why the certificates of a PKCS#12 file cannot be read (never its password or bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs12Error {
    #[error(
        "the PKCS#12 file's password is unknown: the configured password (password_file) does not open it"
    )]
    PasswordUnknown,
    #[error("the PKCS#12 file uses {0}, which the agent does not read")]
    Unsupported(String),
    #[error("not a PKCS#12 file ({0})")]
    Malformed(&'static str),
}

use Pkcs12Error::Malformed;

const DATA: &str = "1.2.840.113549.1.7.1";
const ENCRYPTED_DATA: &str = "1.2.840.113549.1.7.6";
const CERT_BAG: &str = "1.2.840.113549.1.12.10.1.3";
const SAFE_CONTENTS_BAG: &str = "1.2.840.113549.1.12.10.1.6";
const X509_CERTIFICATE: &str = "1.2.840.113549.1.9.22.1";
const PBE_SHA1_RC2_128: &str = "1.2.840.113549.1.12.1.5";
const PBE_SHA1_RC2_40: &str = "1.2.840.113549.1.12.1.6";
const PBE_SHA1_3DES: &str = "1.2.840.113549.1.12.1.3";
const PBES2: &str = "1.2.840.113549.1.5.13";
const PBKDF2: &str = "1.2.840.113549.1.5.12";

/// More rounds than any tool writes (OpenSSL: 2048, Windows: 2000): a file asking for more is
/// refused rather than let it hold the agent's thread for minutes.
const MAX_ITERATIONS: u64 = 10_000_000;
/// How deep BER may nest (and safe contents within safe contents).
const MAX_DEPTH: u8 = 24;

/// The DER of every X.509 certificate in the PKCS#12 file `bytes`, opened with `password` (the
/// empty string when none is configured, which many exported files use).
pub fn certificates(bytes: &[u8], password: &str) -> Result<Vec<Vec<u8>>, Pkcs12Error> {
    let pfx = Elem::whole(bytes, TAG_SEQUENCE)?.children()?;
    let [version, auth_safe, rest @ ..] = &pfx[..] else {
        return Err(Malformed("too few parts"));
    };
    if version.integer()? != 3 {
        return Err(Malformed("version is not 3"));
    }
    let (kind, content) = content_info(auth_safe)?;
    if kind != DATA {
        return Err(Pkcs12Error::Unsupported(
            "integrity by public-key signature".into(),
        ));
    }
    let safes = content.ok_or(Malformed("no content"))?.octets()?;
    let password = match rest.first() {
        Some(mac) => verified_password(mac, &safes, password)?,
        // No MAC to check it against: the decryption tells.
        None => Password::new(password, false),
    };
    let mut certificates = Vec::new();
    for safe in Elem::whole(&safes, TAG_SEQUENCE)?.children()? {
        let (kind, content) = content_info(&safe)?;
        let content = content.ok_or(Malformed("safe contents without content"))?;
        match kind.as_str() {
            DATA => bags(&content.octets()?, &mut certificates, MAX_DEPTH)?,
            ENCRYPTED_DATA => {
                let plain = decrypt(&content, &password)?;
                // A wrong password without a MAC most often fails the padding; when it does
                // not, what it decrypted is not safe contents.
                bags(&plain, &mut certificates, MAX_DEPTH)
                    .map_err(|_| Pkcs12Error::PasswordUnknown)?;
            }
            other => {
                return Err(Pkcs12Error::Unsupported(format!(
                    "safe contents of type {other}"
                )));
            }
        }
    }
    Ok(certificates)
}

/// The password in both of PKCS#12's encodings.
struct Password {
    /// BMPString with its two-byte terminator, for the PKCS#12 key derivation.
    bmp: Vec<u8>,
    /// UTF-8, for PBES2.
    utf8: Vec<u8>,
}

impl Password {
    /// `empty_as_nothing`: the empty password as no bytes at all (as some tools write it)
    /// rather than the terminator alone.
    fn new(password: &str, empty_as_nothing: bool) -> Self {
        let mut bmp: Vec<u8> = password.encode_utf16().flat_map(u16::to_be_bytes).collect();
        if !(password.is_empty() && empty_as_nothing) {
            bmp.extend([0, 0]);
        }
        Self {
            bmp,
            utf8: password.as_bytes().to_vec(),
        }
    }
}

/// Checks `MacData` over the authenticated safe; the password that opens it.
fn verified_password(mac: &Elem, safes: &[u8], password: &str) -> Result<Password, Pkcs12Error> {
    let parts = mac.expect(TAG_SEQUENCE)?.children()?;
    let [digest_info, salt, rest @ ..] = &parts[..] else {
        return Err(Malformed("MAC data"));
    };
    let iterations = match rest.first() {
        Some(count) => iterations(count)?,
        None => 1,
    };
    let digest_info = digest_info.expect(TAG_SEQUENCE)?.children()?;
    let [algorithm, expected, ..] = &digest_info[..] else {
        return Err(Malformed("MAC digest"));
    };
    let (hash, mac_algorithm) = match algorithm_oid(algorithm)?.as_str() {
        "1.3.14.3.2.26" => (
            &digest::SHA1_FOR_LEGACY_USE_ONLY,
            hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        ),
        "2.16.840.1.101.3.4.2.1" => (&digest::SHA256, hmac::HMAC_SHA256),
        "2.16.840.1.101.3.4.2.2" => (&digest::SHA384, hmac::HMAC_SHA384),
        "2.16.840.1.101.3.4.2.3" => (&digest::SHA512, hmac::HMAC_SHA512),
        other => return Err(Pkcs12Error::Unsupported(format!("a MAC with {other}"))),
    };
    let expected = expected.octets()?;
    let salt = salt.octets()?;
    let tries: &[bool] = if password.is_empty() {
        &[false, true]
    } else {
        &[false]
    };
    for &empty_as_nothing in tries {
        let candidate = Password::new(password, empty_as_nothing);
        let key = kdf(
            hash,
            3,
            &candidate.bmp,
            &salt,
            iterations,
            hash.output_len(),
        );
        let key = hmac::Key::new(mac_algorithm, &key);
        if hmac::verify(&key, safes, &expected).is_ok() {
            return Ok(candidate);
        }
    }
    Err(Pkcs12Error::PasswordUnknown)
}

/// `EncryptedData` → the plain safe contents.
fn decrypt(encrypted_data: &Elem, password: &Password) -> Result<Vec<u8>, Pkcs12Error> {
    let parts = encrypted_data.expect(TAG_SEQUENCE)?.children()?;
    let info = parts
        .get(1)
        .ok_or(Malformed("encrypted data"))?
        .expect(TAG_SEQUENCE)?
        .children()?;
    let [_, algorithm, encrypted, ..] = &info[..] else {
        return Err(Malformed("encrypted content"));
    };
    // [0] IMPLICIT OCTET STRING, primitive or in pieces.
    if encrypted.tag & 0xdf != 0x80 {
        return Err(Malformed("encrypted content"));
    }
    let mut buffer = encrypted.octets_any()?;
    let algorithm = algorithm.expect(TAG_SEQUENCE)?.children()?;
    let [oid, params, ..] = &algorithm[..] else {
        return Err(Malformed("encryption algorithm"));
    };
    let plain = match oid.oid()?.as_str() {
        PBE_SHA1_3DES => {
            let (key, iv) = pkcs12_pbe(params, password, 24)?;
            cbc_decrypt::<des::TdesEde3>(&key, &iv, &mut buffer)?
        }
        scheme @ (PBE_SHA1_RC2_40 | PBE_SHA1_RC2_128) => {
            let bits = if scheme == PBE_SHA1_RC2_40 { 40 } else { 128 };
            let (key, iv) = pkcs12_pbe(params, password, bits / 8)?;
            let cipher = rc2::Rc2::new_with_eff_key_len(&key, bits);
            cbc::Decryptor::<rc2::Rc2>::inner_iv_slice_init(cipher, &iv)
                .map_err(|_| Malformed("RC2 IV"))?
                .decrypt_padded::<Pkcs7>(&mut buffer)
                .map_err(|_| Pkcs12Error::PasswordUnknown)?
                .len()
        }
        PBES2 => pbes2(params, password, &mut buffer)?,
        other => {
            return Err(Pkcs12Error::Unsupported(format!("encryption {other}")));
        }
    };
    buffer.truncate(plain);
    Ok(buffer)
}

use cbc::cipher::InnerIvInit;

/// Decrypts in place; the plain text's length.
fn cbc_decrypt<C: BlockCipherDecrypt + KeyInit>(
    key: &[u8],
    iv: &[u8],
    buffer: &mut [u8],
) -> Result<usize, Pkcs12Error> {
    Ok(cbc::Decryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| Malformed("cipher key or IV length"))?
        .decrypt_padded::<Pkcs7>(buffer)
        .map_err(|_| Pkcs12Error::PasswordUnknown)?
        .len())
}

/// The PKCS#12 PBE schemes: key and IV from SHA-1 and the BMP password.
fn pkcs12_pbe(
    params: &Elem,
    password: &Password,
    key_len: usize,
) -> Result<(Vec<u8>, Vec<u8>), Pkcs12Error> {
    let parts = params.expect(TAG_SEQUENCE)?.children()?;
    let [salt, count, ..] = &parts[..] else {
        return Err(Malformed("PBE parameters"));
    };
    let (salt, count) = (salt.octets()?, iterations(count)?);
    let sha1 = &digest::SHA1_FOR_LEGACY_USE_ONLY;
    Ok((
        kdf(sha1, 1, &password.bmp, &salt, count, key_len),
        kdf(sha1, 2, &password.bmp, &salt, count, 8),
    ))
}

/// PBES2 (RFC 8018): PBKDF2, then AES-CBC or 3DES-CBC.
fn pbes2(params: &Elem, password: &Password, buffer: &mut [u8]) -> Result<usize, Pkcs12Error> {
    let parts = params.expect(TAG_SEQUENCE)?.children()?;
    let [kdf_algorithm, scheme, ..] = &parts[..] else {
        return Err(Malformed("PBES2 parameters"));
    };
    let kdf_parts = kdf_algorithm.expect(TAG_SEQUENCE)?.children()?;
    let [kdf_oid, kdf_params, ..] = &kdf_parts[..] else {
        return Err(Malformed("PBES2 key derivation"));
    };
    if kdf_oid.oid()? != PBKDF2 {
        return Err(Pkcs12Error::Unsupported(format!(
            "key derivation {}",
            kdf_oid.oid()?
        )));
    }
    let kdf_params = kdf_params.expect(TAG_SEQUENCE)?.children()?;
    let [salt, count, optional @ ..] = &kdf_params[..] else {
        return Err(Malformed("PBKDF2 parameters"));
    };
    let (salt, count) = (salt.octets()?, iterations(count)?);
    let mut prf = pbkdf2::PBKDF2_HMAC_SHA1;
    for part in optional {
        // keyLength (INTEGER) is implied by the cipher; prf (SEQUENCE) picks the HMAC.
        if part.tag == TAG_SEQUENCE {
            prf = match algorithm_oid(part)?.as_str() {
                "1.2.840.113549.2.7" => pbkdf2::PBKDF2_HMAC_SHA1,
                "1.2.840.113549.2.9" => pbkdf2::PBKDF2_HMAC_SHA256,
                "1.2.840.113549.2.10" => pbkdf2::PBKDF2_HMAC_SHA384,
                "1.2.840.113549.2.11" => pbkdf2::PBKDF2_HMAC_SHA512,
                other => return Err(Pkcs12Error::Unsupported(format!("PBKDF2 with {other}"))),
            };
        }
    }
    let scheme = scheme.expect(TAG_SEQUENCE)?.children()?;
    let [cipher, iv, ..] = &scheme[..] else {
        return Err(Malformed("PBES2 encryption scheme"));
    };
    let iv = iv.octets()?;
    let cipher = cipher.oid()?;
    let key_len = match cipher.as_str() {
        "2.16.840.1.101.3.4.1.2" => 16,
        "2.16.840.1.101.3.4.1.22" => 24,
        "2.16.840.1.101.3.4.1.42" => 32,
        "1.2.840.113549.3.7" => 24,
        other => return Err(Pkcs12Error::Unsupported(format!("encryption {other}"))),
    };
    let rounds = std::num::NonZeroU32::new(u32::try_from(count).unwrap_or(u32::MAX))
        .ok_or(Malformed("PBKDF2 iterations"))?;
    let mut key = vec![0u8; key_len];
    pbkdf2::derive(prf, rounds, &salt, &password.utf8, &mut key);
    match cipher.as_str() {
        "2.16.840.1.101.3.4.1.2" => cbc_decrypt::<aes::Aes128>(&key, &iv, buffer),
        "2.16.840.1.101.3.4.1.22" => cbc_decrypt::<aes::Aes192>(&key, &iv, buffer),
        "2.16.840.1.101.3.4.1.42" => cbc_decrypt::<aes::Aes256>(&key, &iv, buffer),
        _ => cbc_decrypt::<des::TdesEde3>(&key, &iv, buffer),
    }
}

/// The PKCS#12 key derivation (RFC 7292, appendix B.2): `id` 1 key, 2 IV, 3 MAC key.
fn kdf(
    hash: &'static digest::Algorithm,
    id: u8,
    password: &[u8],
    salt: &[u8],
    iterations: u64,
    len: usize,
) -> Vec<u8> {
    let v = hash.block_len();
    let repeat = |bytes: &[u8]| -> Vec<u8> {
        if bytes.is_empty() {
            return Vec::new();
        }
        let n = v * bytes.len().div_ceil(v);
        bytes.iter().copied().cycle().take(n).collect()
    };
    let mut i_block = repeat(salt);
    i_block.extend(repeat(password));
    let d = vec![id; v];
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let mut context = digest::Context::new(hash);
        context.update(&d);
        context.update(&i_block);
        let mut a = context.finish().as_ref().to_vec();
        for _ in 1..iterations {
            a = digest::digest(hash, &a).as_ref().to_vec();
        }
        out.extend_from_slice(&a[..a.len().min(len - out.len())]);
        if out.len() >= len {
            break;
        }
        // I_j = (I_j + B + 1) mod 2^(8v), B = A repeated to v bytes.
        let b: Vec<u8> = a.iter().copied().cycle().take(v).collect();
        for chunk in i_block.chunks_mut(v) {
            let mut carry = 1u16;
            for (x, y) in chunk.iter_mut().zip(&b).rev() {
                let sum = u16::from(*x) + u16::from(*y) + carry;
                *x = sum as u8;
                carry = sum >> 8;
            }
        }
    }
    out
}

/// The certificates of `SafeContents` (DER or BER) into `out`; nested safe contents too.
fn bags(safe_contents: &[u8], out: &mut Vec<Vec<u8>>, depth: u8) -> Result<(), Pkcs12Error> {
    if depth == 0 {
        return Err(Malformed("safe contents nested too deep"));
    }
    for bag in Elem::whole(safe_contents, TAG_SEQUENCE)?.children()? {
        let parts = bag.expect(TAG_SEQUENCE)?.children()?;
        let [kind, value, ..] = &parts[..] else {
            return Err(Malformed("safe bag"));
        };
        let value = value.explicit()?;
        match kind.oid()?.as_str() {
            CERT_BAG => {
                let cert_bag = value.expect(TAG_SEQUENCE)?.children()?;
                let [cert_kind, cert_value, ..] = &cert_bag[..] else {
                    return Err(Malformed("certificate bag"));
                };
                // Only X.509 certificates (not SDSI ones) are certificates for the inventory.
                if cert_kind.oid()? == X509_CERTIFICATE {
                    out.push(cert_value.explicit()?.octets()?);
                }
            }
            SAFE_CONTENTS_BAG => bags(value.raw, out, depth - 1)?,
            // Keys (plain or shrouded), CRLs, secrets: not the inventory's, never decrypted.
            _ => {}
        }
    }
    Ok(())
}

fn content_info<'a>(elem: &Elem<'a>) -> Result<(String, Option<Elem<'a>>), Pkcs12Error> {
    let parts = elem.expect(TAG_SEQUENCE)?.children()?;
    let kind = parts.first().ok_or(Malformed("content info"))?.oid()?;
    let content = parts.get(1).map(Elem::explicit).transpose()?;
    Ok((kind, content))
}

fn algorithm_oid(algorithm: &Elem) -> Result<String, Pkcs12Error> {
    algorithm
        .expect(TAG_SEQUENCE)?
        .children()?
        .first()
        .ok_or(Malformed("algorithm"))?
        .oid()
}

fn iterations(count: &Elem) -> Result<u64, Pkcs12Error> {
    let count = count.integer()?;
    if count == 0 || count > MAX_ITERATIONS {
        return Err(Pkcs12Error::Unsupported(format!("{count} iterations")));
    }
    Ok(count)
}

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const CONSTRUCTED: u8 = 0x20;

/// One BER element: its tag (single-byte tags only, as PKCS#12 uses), its content and the whole
/// encoding.
#[derive(Debug, Clone, Copy)]
struct Elem<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

impl<'a> Elem<'a> {
    /// The element `bytes` holds, which must be all of them and tagged `tag`.
    fn whole(bytes: &'a [u8], tag: u8) -> Result<Self, Pkcs12Error> {
        let (elem, rest) = Self::read(bytes, MAX_DEPTH)?;
        if !rest.is_empty() {
            return Err(Malformed("bytes after the end"));
        }
        elem.expect(tag).copied()
    }

    fn read(input: &'a [u8], depth: u8) -> Result<(Self, &'a [u8]), Pkcs12Error> {
        let truncated = Malformed("truncated");
        let (&tag, after_tag) = input.split_first().ok_or(truncated.clone())?;
        if tag & 0x1f == 0x1f {
            return Err(Malformed("multi-byte tag"));
        }
        let (&first, after_len) = after_tag.split_first().ok_or(truncated.clone())?;
        let header = input.len() - after_len.len();
        if first == 0x80 {
            // Indefinite length: the children up to the end-of-contents octets.
            if tag & CONSTRUCTED == 0 || depth == 0 {
                return Err(Malformed("indefinite length"));
            }
            let mut cursor = after_len;
            loop {
                if let Some(rest) = cursor.strip_prefix(&[0, 0]) {
                    let content = &after_len[..after_len.len() - cursor.len()];
                    let raw = &input[..header + content.len() + 2];
                    return Ok((Self { tag, content, raw }, rest));
                }
                cursor = Self::read(cursor, depth - 1)?.1;
            }
        }
        let (len, body) = if first < 0x80 {
            (usize::from(first), after_len)
        } else {
            let count = usize::from(first & 0x7f);
            if count > 4 || after_len.len() < count {
                return Err(Malformed("length"));
            }
            let (digits, body) = after_len.split_at(count);
            let len = digits
                .iter()
                .fold(0usize, |n, d| (n << 8) | usize::from(*d));
            (len, body)
        };
        if body.len() < len {
            return Err(truncated);
        }
        let raw = &input[..header + len];
        Ok((
            Self {
                tag,
                content: &body[..len],
                raw,
            },
            &body[len..],
        ))
    }

    fn expect(&self, tag: u8) -> Result<&Self, Pkcs12Error> {
        if self.tag == tag {
            Ok(self)
        } else {
            Err(Malformed("unexpected element"))
        }
    }

    fn children(&self) -> Result<Vec<Elem<'a>>, Pkcs12Error> {
        if self.tag & CONSTRUCTED == 0 {
            return Err(Malformed("expected a constructed element"));
        }
        let mut out = Vec::new();
        let mut rest = self.content;
        while !rest.is_empty() {
            let (child, next) = Self::read(rest, MAX_DEPTH)?;
            out.push(child);
            rest = next;
        }
        Ok(out)
    }

    /// The one element inside an explicit tag (`[0] EXPLICIT`).
    fn explicit(&self) -> Result<Elem<'a>, Pkcs12Error> {
        if self.tag & 0xe0 != 0xa0 {
            return Err(Malformed("expected an explicit tag"));
        }
        let (inner, _) = Self::read(self.content, MAX_DEPTH)?;
        Ok(inner)
    }

    /// An OCTET STRING's bytes, whole or in constructed pieces.
    fn octets(&self) -> Result<Vec<u8>, Pkcs12Error> {
        if self.tag & !CONSTRUCTED != TAG_OCTET_STRING {
            return Err(Malformed("expected an octet string"));
        }
        self.octets_any()
    }

    /// The bytes of an octet string under any tag (implicit ones included).
    fn octets_any(&self) -> Result<Vec<u8>, Pkcs12Error> {
        if self.tag & CONSTRUCTED == 0 {
            return Ok(self.content.to_vec());
        }
        let mut out = Vec::new();
        for piece in self.children()? {
            out.extend(piece.octets()?);
        }
        Ok(out)
    }

    fn integer(&self) -> Result<u64, Pkcs12Error> {
        self.expect(TAG_INTEGER)?;
        let digits = self.content;
        if digits.is_empty() || digits[0] & 0x80 != 0 {
            return Err(Malformed("integer"));
        }
        let digits = &digits[digits.iter().take_while(|d| **d == 0).count()..];
        if digits.len() > 8 {
            return Err(Malformed("integer too large"));
        }
        Ok(digits.iter().fold(0u64, |n, d| (n << 8) | u64::from(*d)))
    }

    fn oid(&self) -> Result<String, Pkcs12Error> {
        self.expect(TAG_OID)?;
        let (first, rest) = self.content.split_first().ok_or(Malformed("OID"))?;
        let mut arcs = vec![u64::from(first / 40).min(2), 0];
        arcs[1] = u64::from(*first) - arcs[0] * 40;
        let mut value = 0u64;
        for byte in rest {
            if value > u64::MAX >> 7 {
                return Err(Malformed("OID"));
            }
            value = (value << 7) | u64::from(byte & 0x7f);
            if byte & 0x80 == 0 {
                arcs.push(value);
                value = 0;
            }
        }
        Ok(arcs
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."))
    }
}

/// A fixture made with OpenSSL (testdata/README.md): the CA "pkcs12 fixture CA" and its leaf
/// "pkcs12 fixture" with the leaf's key, password "テスト-pass". They hold private keys, so they
/// are made at test time (`scripts/pkcs12-fixtures.sh`, which does nothing when they exist),
/// never committed; under Wine, where OpenSSL cannot run, `scripts/windows.sh` made them first.
#[cfg(test)]
pub(crate) fn fixture_path(name: &str) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("src/certs/testdata");
    #[cfg(unix)]
    {
        let made = std::process::Command::new(root.join("../scripts/pkcs12-fixtures.sh"))
            .arg(&dir)
            .status()
            .expect("running scripts/pkcs12-fixtures.sh");
        assert!(
            made.success(),
            "scripts/pkcs12-fixtures.sh failed (is openssl installed? make deps)"
        );
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: make it with scripts/pkcs12-fixtures.sh {}",
        path.display(),
        dir.display()
    );
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = fixture_path(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    const PASSWORD: &str = "テスト-pass";

    fn subject(der: &[u8]) -> String {
        fleet_tls::identity::CertificateSummary::from_der(der)
            .unwrap()
            .subject
    }

    #[test]
    fn every_scheme_tools_write_yields_the_certificate() {
        for name in [
            "aes256-sha256.p12",
            "legacy-rc2-3des.p12",
            "3des-sha1.p12",
            "plain-certs.p12",
        ] {
            let certificates =
                certificates(&fixture(name), PASSWORD).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(certificates.len(), 2, "{name}: the leaf and its CA");
            assert!(
                certificates
                    .iter()
                    .any(|der| subject(der).contains("pkcs12 fixture")),
                "{name}"
            );
        }
    }

    #[test]
    fn a_wrong_or_missing_password_is_reported_as_unknown() {
        for name in [
            "aes256-sha256.p12",
            "legacy-rc2-3des.p12",
            "plain-certs.p12",
        ] {
            let bytes = fixture(name);
            assert_eq!(
                certificates(&bytes, "wrong"),
                Err(Pkcs12Error::PasswordUnknown),
                "{name}"
            );
            assert_eq!(
                certificates(&bytes, ""),
                Err(Pkcs12Error::PasswordUnknown),
                "{name}"
            );
        }
        // Without a MAC the decryption tells.
        assert_eq!(
            certificates(&fixture("no-mac.p12"), "wrong"),
            Err(Pkcs12Error::PasswordUnknown)
        );
        assert_eq!(
            certificates(&fixture("no-mac.p12"), PASSWORD)
                .unwrap()
                .len(),
            2
        );
        let message = Pkcs12Error::PasswordUnknown.to_string();
        assert!(!message.contains(PASSWORD) && message.contains("password_file"));
    }

    #[test]
    fn an_empty_password_opens_a_file_exported_without_one() {
        assert_eq!(
            certificates(&fixture("empty-password.p12"), "")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn anything_else_is_refused_without_panicking() {
        let good = fixture("aes256-sha256.p12");
        assert!(matches!(
            certificates(b"-----BEGIN CERTIFICATE-----", PASSWORD),
            Err(Malformed(_))
        ));
        for cut in [0, 1, 2, 10, good.len() / 2, good.len() - 1] {
            assert!(
                certificates(&good[..cut], PASSWORD).is_err(),
                "cut at {cut}"
            );
        }
        // Every single-byte change is refused or (outside what the MAC covers) harmless.
        for at in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[at] ^= 0x41;
            let _ = certificates(&bad, PASSWORD);
        }
    }

    proptest::proptest! {
        /// Bytes from anywhere (a damaged or hostile `.p12`): an answer or an error, never a
        /// panic, and never the password in the error.
        #[test]
        fn any_bytes_get_an_answer_or_an_error(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            if let Err(error) = certificates(&bytes, PASSWORD) {
                proptest::prop_assert!(!error.to_string().contains(PASSWORD));
            }
        }
    }

    #[test]
    fn the_key_derivation_matches_a_published_vector() {
        // The PKCS#12 KDF vector BouncyCastle and OpenSSL test with (password "smeg", SHA-1).
        let password = Password::new("smeg", false);
        let salt = [0x0a, 0x58, 0xcf, 0x64, 0x53, 0x0d, 0x82, 0x3f];
        let key = kdf(
            &digest::SHA1_FOR_LEGACY_USE_ONLY,
            1,
            &password.bmp,
            &salt,
            1,
            24,
        );
        assert_eq!(
            key,
            [
                0x8a, 0xaa, 0xe6, 0x29, 0x7b, 0x6c, 0xb0, 0x46, 0x42, 0xab, 0x5b, 0x07, 0x78, 0x51,
                0x28, 0x4e, 0xb7, 0x12, 0x8f, 0x1a, 0x2a, 0x7f, 0xbc, 0xa3
            ]
        );
    }
}
