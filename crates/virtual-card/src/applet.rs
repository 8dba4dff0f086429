//! The card's answers to APDUs.

use std::path::PathBuf;

use rsa::RsaPrivateKey;

use crate::{MY_NUMBER_ATR, UNKNOWN_ATR};

const JPKI_AID: [u8; 10] = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];
const EF_AUTH_CERTIFICATE: u16 = 0x000A;
const EF_AUTH_KEY: u16 = 0x0017;
const EF_AUTH_PIN: u16 = 0x0018;
/// PIN tries of a fresh card.
pub const PIN_TRIES: u8 = 3;

const OK: u16 = 0x9000;
const FILE_NOT_FOUND: u16 = 0x6A82;
const SECURITY_NOT_SATISFIED: u16 = 0x6982;
const AUTH_BLOCKED: u16 = 0x6983;
const WRONG_P1P2: u16 = 0x6B00;
const WRONG_LENGTH: u16 = 0x6700;
const INS_NOT_SUPPORTED: u16 = 0x6D00;
const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;

/// A My Number card's secrets and files.
#[derive(Clone)]
pub struct CardSecrets {
    pub key: RsaPrivateKey,
    pub certificate_der: Vec<u8>,
    pub pin: String,
}

impl std::fmt::Debug for CardSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardSecrets").finish_non_exhaustive()
    }
}

/// What kind of card answers.
#[derive(Debug, Clone)]
pub enum Kind {
    MyNumber(Box<CardSecrets>),
    /// No JPKI application: every SELECT fails with `6A 82`.
    Unknown,
}

/// One card: its files and its PIN counter (kept in `state_file` when given, so the counter
/// survives taking the card off and putting it back, as on a real chip).
#[derive(Debug)]
pub struct Applet {
    kind: Kind,
    tries_left: u8,
    state_file: Option<PathBuf>,
    session: Session,
}

#[derive(Debug, Default)]
struct Session {
    jpki_selected: bool,
    ef: Option<u16>,
    pin_verified: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    pin_tries_left: u8,
}

impl Applet {
    pub fn new(kind: Kind, state_file: Option<PathBuf>) -> Self {
        let tries_left = state_file
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<State>(&b).ok())
            .map_or(PIN_TRIES, |s| s.pin_tries_left.min(PIN_TRIES));
        Self {
            kind,
            tries_left,
            state_file,
            session: Session::default(),
        }
    }

    pub fn atr(&self) -> Vec<u8> {
        match self.kind {
            Kind::MyNumber(_) => MY_NUMBER_ATR.to_vec(),
            Kind::Unknown => UNKNOWN_ATR.to_vec(),
        }
    }

    pub fn tries_left(&self) -> u8 {
        self.tries_left
    }

    /// Power off, power on or reset: the session (selection, verified PIN) is gone; the PIN
    /// counter is not.
    pub fn reset(&mut self) {
        self.session = Session::default();
    }

    /// Answers one command APDU with a response APDU (data and status word).
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        let (data, sw) = self.answer(apdu);
        let mut response = data;
        response.extend_from_slice(&sw.to_be_bytes());
        response
    }

    fn answer(&mut self, apdu: &[u8]) -> (Vec<u8>, u16) {
        let none = |sw| (Vec::new(), sw);
        if apdu.len() < 4 {
            return none(WRONG_LENGTH);
        }
        let (cla, ins, p1, p2) = (apdu[0], apdu[1], apdu[2], apdu[3]);
        let body = &apdu[4..];
        // Short APDU: [Lc data] [Le].
        let (data, le): (&[u8], Option<usize>) = match body.len() {
            0 => (&[], None),
            1 => (
                &[],
                Some(if body[0] == 0 {
                    256
                } else {
                    usize::from(body[0])
                }),
            ),
            _ => {
                let lc = usize::from(body[0]);
                if body.len() < 1 + lc {
                    return none(WRONG_LENGTH);
                }
                let le = body
                    .get(1 + lc)
                    .map(|&b| if b == 0 { 256 } else { usize::from(b) });
                (&body[1..1 + lc], le)
            }
        };
        let Kind::MyNumber(secrets) = &self.kind else {
            return match ins {
                0xA4 => none(FILE_NOT_FOUND),
                _ => none(INS_NOT_SUPPORTED),
            };
        };
        match (cla, ins) {
            (0x00, 0xA4) if p1 == 0x04 => {
                // SELECT by AID: only the JPKI application exists on this card.
                self.session = Session::default();
                if data == JPKI_AID {
                    self.session.jpki_selected = true;
                    none(OK)
                } else {
                    none(FILE_NOT_FOUND)
                }
            }
            (0x00, 0xA4) if p1 == 0x02 => {
                if !self.session.jpki_selected || data.len() != 2 {
                    return none(FILE_NOT_FOUND);
                }
                let fid = u16::from_be_bytes([data[0], data[1]]);
                if [EF_AUTH_CERTIFICATE, EF_AUTH_KEY, EF_AUTH_PIN].contains(&fid) {
                    self.session.ef = Some(fid);
                    none(OK)
                } else {
                    none(FILE_NOT_FOUND)
                }
            }
            (0x00, 0xB0) => {
                if self.session.ef != Some(EF_AUTH_CERTIFICATE) {
                    return none(CONDITIONS_NOT_SATISFIED);
                }
                let offset = usize::from(u16::from_be_bytes([p1 & 0x7F, p2]));
                let file = &secrets.certificate_der;
                if offset >= file.len() {
                    return none(WRONG_P1P2);
                }
                let end = (offset + le.unwrap_or(256)).min(file.len());
                (file[offset..end].to_vec(), OK)
            }
            (0x00, 0x20) => {
                if self.session.ef != Some(EF_AUTH_PIN) || p2 != 0x80 {
                    return none(CONDITIONS_NOT_SATISFIED);
                }
                if self.tries_left == 0 {
                    return none(AUTH_BLOCKED);
                }
                if data.is_empty() {
                    return if self.session.pin_verified {
                        none(OK)
                    } else {
                        none(0x63C0 | u16::from(self.tries_left))
                    };
                }
                if data == secrets.pin.as_bytes() {
                    self.tries_left = PIN_TRIES;
                    self.session.pin_verified = true;
                    self.save();
                    none(OK)
                } else {
                    self.tries_left -= 1;
                    self.session.pin_verified = false;
                    self.save();
                    none(0x63C0 | u16::from(self.tries_left))
                }
            }
            (0x80, 0x2A) if p1 == 0x00 && p2 == 0x80 => {
                if self.session.ef != Some(EF_AUTH_KEY) {
                    return none(CONDITIONS_NOT_SATISFIED);
                }
                if !self.session.pin_verified {
                    return none(SECURITY_NOT_SATISFIED);
                }
                match secrets.key.sign(rsa::Pkcs1v15Sign::new_unprefixed(), data) {
                    Ok(signature) => (signature, OK),
                    Err(_) => none(WRONG_LENGTH),
                }
            }
            _ => none(INS_NOT_SUPPORTED),
        }
    }

    fn save(&self) {
        if let Some(path) = &self.state_file {
            let state = State {
                pin_tries_left: self.tries_left,
            };
            if let Ok(bytes) = serde_json::to_vec(&state) {
                let tmp = path.with_extension("tmp");
                if std::fs::write(&tmp, bytes).is_ok() {
                    let _ = std::fs::rename(&tmp, path);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown() -> Applet {
        Applet::new(Kind::Unknown, None)
    }

    #[test]
    fn an_unknown_card_has_no_jpki() {
        let mut card = unknown();
        let mut select = vec![0x00, 0xA4, 0x04, 0x0C, 0x0A];
        select.extend_from_slice(&JPKI_AID);
        assert_eq!(card.process(&select), vec![0x6A, 0x82]);
        assert_ne!(card.atr(), MY_NUMBER_ATR.to_vec());
        assert_eq!(card.process(&[0x00]), vec![0x67, 0x00]);
    }
}
