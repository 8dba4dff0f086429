//! The JPKI application of a My Number card: what the eligibility check does on the chip.
//!
//! Authentication follows the card's order: SELECT the JPKI application → SELECT EF `0018` →
//! VERIFY the PIN → SELECT EF `0017` → COMPUTE DIGITAL SIGNATURE. The user-authentication
//! certificate (EF `000A`) is readable without the PIN. See `shared/domain/onshi.md` §6.

use crate::{CardChannel, CardError, Pin};

/// `D3 92 F0 00 26 01 00 00 00 01`: the JPKI application (公的個人認証 AP).
pub const JPKI_AID: [u8; 10] = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];
/// `D3 92 10 00 31 00 01 01 04 08`: the card-info application (券面事項入力補助 AP), which holds
/// the 12-digit individual number. Listed here only so tests can check that it is **never**
/// sent; nothing in this crate selects it.
pub const CARD_INFO_AID: [u8; 10] = [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08];
/// EF of the user-authentication certificate.
pub const EF_AUTH_CERTIFICATE: [u8; 2] = [0x00, 0x0A];
/// EF of the user-authentication private key.
pub const EF_AUTH_KEY: [u8; 2] = [0x00, 0x17];
/// EF of the user-authentication PIN.
pub const EF_AUTH_PIN: [u8; 2] = [0x00, 0x18];
/// The largest certificate read (real ones are about 1.5 KiB).
pub const MAX_CERTIFICATE_BYTES: usize = 8 * 1024;

/// `DigestInfo` prefix of a SHA-256 digest (PKCS#1 v1.5, RFC 8017 §9.2 note 1).
pub const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The `DigestInfo` the card signs for a SHA-256 digest.
pub fn sha256_digest_info(digest: &[u8; 32]) -> Vec<u8> {
    let mut info = SHA256_DIGEST_INFO_PREFIX.to_vec();
    info.extend_from_slice(digest);
    info
}

/// A My Number card whose JPKI application is selected.
#[derive(Debug)]
pub struct JpkiCard {
    channel: Box<dyn CardChannel>,
    /// Every command sent, VERIFY without its data (the PIN).
    log: Vec<Vec<u8>>,
}

impl JpkiCard {
    /// Selects the JPKI application; a card without it is [`CardError::UnsupportedCard`].
    pub fn open(channel: Box<dyn CardChannel>) -> Result<Self, CardError> {
        let mut card = Self {
            channel,
            log: Vec::new(),
        };
        let mut select = vec![0x00, 0xA4, 0x04, 0x0C, JPKI_AID.len() as u8];
        select.extend_from_slice(&JPKI_AID);
        let (_, sw) = card.command(&select)?;
        match sw {
            0x9000 => Ok(card),
            _ => Err(CardError::UnsupportedCard),
        }
    }

    pub fn atr(&self) -> &[u8] {
        self.channel.atr()
    }

    /// The commands sent so far; VERIFY appears without its data.
    pub fn apdu_log(&self) -> &[Vec<u8>] {
        &self.log
    }

    /// Reads the user-authentication certificate (DER), in chunks, as long as its DER header says.
    pub fn read_auth_certificate(&mut self) -> Result<Vec<u8>, CardError> {
        self.select_ef(EF_AUTH_CERTIFICATE)?;
        let mut der = Vec::new();
        let mut total: Option<usize> = None;
        loop {
            let want = match total {
                // The header first: tag, and up to 4 length bytes.
                None => 8,
                Some(total) => (total - der.len()).min(256),
            };
            if want == 0 {
                break;
            }
            let offset = der.len();
            if offset > 0x7FFF {
                return Err(CardError::Card(
                    "certificate beyond the readable offset".into(),
                ));
            }
            let apdu = [
                0x00,
                0xB0,
                (offset >> 8) as u8,
                offset as u8,
                if want == 256 { 0 } else { want as u8 },
            ];
            let (data, sw) = self.command(&apdu)?;
            match sw {
                0x9000 | 0x6282 if !data.is_empty() => der.extend_from_slice(&data),
                other => {
                    return Err(CardError::Card(format!(
                        "READ BINARY at {offset} answered {other:04X}"
                    )));
                }
            }
            if total.is_none() {
                let length = der_total_length(&der)?;
                if length > MAX_CERTIFICATE_BYTES {
                    return Err(CardError::Card(format!(
                        "a certificate of {length} bytes is not plausible"
                    )));
                }
                total = Some(length);
            }
            if let Some(total) = total
                && der.len() >= total
            {
                der.truncate(total);
                break;
            }
        }
        Ok(der)
    }

    /// How many PIN tries are left, without using one (VERIFY with no data).
    pub fn pin_tries_left(&mut self) -> Result<u8, CardError> {
        self.select_ef(EF_AUTH_PIN)?;
        let (_, sw) = self.command(&[0x00, 0x20, 0x00, 0x80])?;
        match sw {
            0x63C0 | 0x6983 => Ok(0),
            sw if sw & 0xFFF0 == 0x63C0 => Ok((sw & 0x000F) as u8),
            // Already verified in this session.
            0x9000 => Ok(3),
            other => Err(CardError::Card(format!(
                "VERIFY (status) answered {other:04X}"
            ))),
        }
    }

    /// One try of the authentication PIN. Never retried here.
    pub fn verify_pin(&mut self, pin: &Pin) -> Result<(), CardError> {
        self.select_ef(EF_AUTH_PIN)?;
        let mut apdu = vec![0x00, 0x20, 0x00, 0x80, pin.as_bytes().len() as u8];
        apdu.extend_from_slice(pin.as_bytes());
        let result = self.command(&apdu);
        apdu.iter_mut().for_each(|b| *b = 0);
        let (_, sw) = result?;
        match sw {
            0x9000 => Ok(()),
            0x63C0 | 0x6983 => Err(CardError::PinLocked),
            sw if sw & 0xFFF0 == 0x63C0 => Err(CardError::WrongPin {
                tries_left: (sw & 0x000F) as u8,
            }),
            other => Err(CardError::Card(format!("VERIFY answered {other:04X}"))),
        }
    }

    /// Signs a `DigestInfo` with the authentication key (PKCS#1 v1.5 padding done by the card).
    /// The PIN must have been verified in this session.
    pub fn sign(&mut self, digest_info: &[u8]) -> Result<Vec<u8>, CardError> {
        if digest_info.is_empty() || digest_info.len() > 255 {
            return Err(CardError::Card("a DigestInfo is 1 to 255 bytes".into()));
        }
        self.select_ef(EF_AUTH_KEY)?;
        let mut apdu = vec![0x80, 0x2A, 0x00, 0x80, digest_info.len() as u8];
        apdu.extend_from_slice(digest_info);
        apdu.push(0x00);
        let (signature, sw) = self.command(&apdu)?;
        match sw {
            0x9000 if !signature.is_empty() => Ok(signature),
            0x6982 => Err(CardError::PinRequired),
            other => Err(CardError::Card(format!(
                "COMPUTE DIGITAL SIGNATURE answered {other:04X}"
            ))),
        }
    }

    fn select_ef(&mut self, fid: [u8; 2]) -> Result<(), CardError> {
        let (_, sw) = self.command(&[0x00, 0xA4, 0x02, 0x0C, 0x02, fid[0], fid[1]])?;
        match sw {
            0x9000 => Ok(()),
            other => Err(CardError::Card(format!(
                "SELECT {:02X}{:02X} answered {other:04X}",
                fid[0], fid[1]
            ))),
        }
    }

    fn command(&mut self, apdu: &[u8]) -> Result<(Vec<u8>, u16), CardError> {
        let logged = if apdu.get(1) == Some(&0x20) {
            apdu[..apdu.len().min(4)].to_vec()
        } else {
            apdu.to_vec()
        };
        self.log.push(logged);
        let mut response = self.channel.transmit(apdu)?;
        if response.len() < 2 {
            return Err(CardError::Card(format!(
                "a response of {} bytes has no status word",
                response.len()
            )));
        }
        let sw2 = response.pop().unwrap_or_default();
        let sw1 = response.pop().unwrap_or_default();
        Ok((response, u16::from_be_bytes([sw1, sw2])))
    }
}

/// The length of a DER TLV (header included) from its first bytes.
pub fn der_total_length(bytes: &[u8]) -> Result<usize, CardError> {
    let bad = || CardError::Card("the certificate does not start with a DER SEQUENCE".into());
    if bytes.len() < 2 || bytes[0] != 0x30 {
        return Err(bad());
    }
    let first = bytes[1];
    if first < 0x80 {
        return Ok(2 + usize::from(first));
    }
    let count = usize::from(first & 0x7F);
    if count == 0 || count > 3 || bytes.len() < 2 + count {
        return Err(bad());
    }
    let length = bytes[2..2 + count]
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Ok(2 + count + length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(der_total_length(&[0x30, 0x05]).unwrap(), 7);
        assert_eq!(der_total_length(&[0x30, 0x81, 0x90]).unwrap(), 3 + 0x90);
        assert_eq!(
            der_total_length(&[0x30, 0x82, 0x05, 0xA0]).unwrap(),
            4 + 0x5A0
        );
        assert!(der_total_length(&[0x31, 0x05]).is_err());
        assert!(der_total_length(&[0x30, 0x80]).is_err());
        assert!(der_total_length(&[0x30, 0x82, 0x05]).is_err());
    }

    #[test]
    fn digest_info_is_prefix_and_digest() {
        let info = sha256_digest_info(&[7; 32]);
        assert_eq!(info.len(), 51);
        assert_eq!(&info[..19], &SHA256_DIGEST_INFO_PREFIX);
    }
}
