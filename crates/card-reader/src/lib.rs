//! Card readers over PC/SC and the JPKI operations the eligibility check needs on a My Number
//! card.
//!
//! - [`CardReaders`]: enumerate readers, watch them (readers added/removed, cards
//!   inserted/removed) and open a channel to the card on a reader. Two implementations run the
//!   same [`conformance`] suite: [`pcsc_readers::PcscReaders`] (pcsc-lite, the real stack; this is
//!   the only crate of the workspace that links `pcsc`) and [`fake::FakeReaders`] (in process,
//!   for unit tests).
//! - [`jpki::JpkiCard`]: SELECT of the JPKI application, READ BINARY of the user-authentication
//!   certificate, VERIFY of the authentication PIN and COMPUTE DIGITAL SIGNATURE with the
//!   authentication key, over any [`CardChannel`].
//!
//! Every call here blocks (PC/SC is a blocking API): async callers run them on a blocking
//! thread (`tokio::task::spawn_blocking` or a dedicated `std::thread`). Waiting for a reader
//! change blocks inside `SCardGetStatusChange` (no polling) and is woken by
//! [`Canceller::cancel`] (`SCardCancel`).
//!
//! # Invariants
//!
//! - **The card-info application is never selected.** The card's 券面事項入力補助 application
//!   (AID `D3 92 10 00 31 00 01 01 04 08`) holds the 12-digit individual number (My Number) and
//!   the face-side text. No code here sends a SELECT for it, or for anything but the JPKI
//!   application and its authentication files (`000A`, `0017`, `0018`); the conformance suite
//!   checks the APDU log for it.
//! - **The PIN is a secret.** [`Pin`] never prints (its `Debug` is redacted), is wiped from memory
//!   when dropped, is never logged (the APDU log keeps only the header of VERIFY) and is never
//!   retried here: one [`jpki::JpkiCard::verify_pin`] call is one try on the card.

pub mod conformance;
pub mod fake;
pub mod jpki;
pub mod pcsc_readers;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

pub use jpki::JpkiCard;

/// What went wrong with a reader or a card. Each variant has a message for the clerk
/// ([`CardError::for_clerk`], Japanese then English).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("the card was taken off the reader (or reset) during the operation")]
    CardRemoved,
    #[error("no card is on the reader")]
    NoCard,
    #[error("the card is not a My Number card (the JPKI application cannot be selected)")]
    UnsupportedCard,
    #[error("wrong PIN: {tries_left} tries left")]
    WrongPin { tries_left: u8 },
    #[error("the PIN is locked")]
    PinLocked,
    #[error("the PIN must be verified first")]
    PinRequired,
    #[error("the reader is gone (unplugged or unknown)")]
    ReaderGone,
    #[error("the PC/SC service (pcscd) is not running")]
    NoService,
    #[error("the reader or card did not answer in time")]
    Timeout,
    #[error("the card answered something unexpected: {0}")]
    Card(String),
    #[error("reader error: {0}")]
    Reader(String),
}

impl CardError {
    /// The message for the counter: Japanese first, then English.
    pub fn for_clerk(&self) -> String {
        let ja = match self {
            CardError::CardRemoved => {
                "読み取り中にカードが離されました。カードを置き直してもう一度お試しください"
            }
            CardError::NoCard => "カードリーダーにカードが置かれていません",
            CardError::UnsupportedCard => {
                "マイナンバーカードではないカードです。マイナンバーカードを置いてください"
            }
            CardError::WrongPin { .. } => "暗証番号が違います",
            CardError::PinLocked => {
                "暗証番号がロックされています。市区町村の窓口でロック解除が必要です。顔認証または保険証で確認してください"
            }
            CardError::PinRequired => "暗証番号の確認が必要です",
            CardError::ReaderGone => {
                "カードリーダーが見つかりません。接続を確認してください。保険証で確認してください"
            }
            CardError::NoService => {
                "カードリーダーのサービス（pcscd）が動いていません。管理者に連絡してください"
            }
            CardError::Timeout => "カードリーダーが応答しません。カードを置き直してください",
            CardError::Card(_) => "カードを読み取れませんでした。カードを置き直してください",
            CardError::Reader(_) => "カードリーダーでエラーが発生しました",
        };
        match self {
            CardError::WrongPin { tries_left } => {
                format!("{ja}（残り{tries_left}回） / {self}")
            }
            _ => format!("{ja} / {self}"),
        }
    }
}

/// A card PIN: 4 digits. Never printed, wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(Zeroizing<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("暗証番号は数字4桁です / the PIN is 4 digits")]
pub struct PinFormatError;

impl Pin {
    /// The user-authentication PIN of a My Number card is exactly 4 digits.
    pub fn parse(text: &str) -> Result<Self, PinFormatError> {
        let text = Zeroizing::new(text.trim().to_string());
        if text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(text))
        } else {
            Err(PinFormatError)
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

/// Whether a card is on a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardPresence {
    Empty,
    /// A card is on the reader and powered; its ATR.
    Present {
        atr: Vec<u8>,
    },
    /// A card is on the reader but does not answer.
    Mute,
}

/// One reader as seen at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderSnapshot {
    pub name: String,
    pub card: CardPresence,
    /// Insertions and removals seen on this reader (pcsc-lite's event counter): a card swapped
    /// between two looks still shows as a change.
    pub card_events: u32,
}

/// What waiting on the readers ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The readers now look like this (every present reader, sorted by name).
    Changed(Vec<ReaderSnapshot>),
    TimedOut,
    /// [`Canceller::cancel`] was called.
    Cancelled,
}

/// Wakes a blocked [`ReaderWatch::next_change`] (from any thread) and makes later calls return
/// [`WatchEvent::Cancelled`] at once.
#[derive(Clone)]
pub struct Canceller(Arc<dyn Fn() + Send + Sync>);

impl Canceller {
    pub fn new(cancel: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Arc::new(cancel))
    }

    pub fn cancel(&self) {
        (self.0)()
    }
}

impl fmt::Debug for Canceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Canceller")
    }
}

/// Follows the readers. The first call answers the current state at once; each later call
/// blocks until something differs from what it last answered.
pub trait ReaderWatch: Send + fmt::Debug {
    fn next_change(&mut self, timeout: Option<Duration>) -> Result<WatchEvent, CardError>;
    fn canceller(&self) -> Canceller;
}

/// An open channel to the card on one reader. Dropping it releases the reader.
pub trait CardChannel: Send + fmt::Debug {
    fn atr(&self) -> &[u8];
    /// Sends one command APDU and returns the response APDU (data and status word).
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError>;
}

/// The card readers of a machine.
pub trait CardReaders: Send + Sync + fmt::Debug {
    /// The readers present now, sorted by name.
    fn readers(&self) -> Result<Vec<ReaderSnapshot>, CardError>;
    fn watch(&self) -> Result<Box<dyn ReaderWatch>, CardError>;
    /// Opens the card on `reader` (shared mode).
    fn connect(&self, reader: &str) -> Result<Box<dyn CardChannel>, CardError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_four_digits_and_never_print() {
        let pin = Pin::parse("1234").unwrap();
        assert_eq!(format!("{pin:?}"), "Pin(****)");
        assert!(Pin::parse("123").is_err());
        assert!(Pin::parse("12345").is_err());
        assert!(Pin::parse("12a4").is_err());
        assert_eq!(Pin::parse(" 4321\n").unwrap().as_bytes(), b"4321");
    }

    #[test]
    fn clerk_messages_are_japanese_then_english() {
        let all = [
            CardError::CardRemoved,
            CardError::NoCard,
            CardError::UnsupportedCard,
            CardError::WrongPin { tries_left: 2 },
            CardError::PinLocked,
            CardError::PinRequired,
            CardError::ReaderGone,
            CardError::NoService,
            CardError::Timeout,
            CardError::Card("x".into()),
            CardError::Reader("y".into()),
        ];
        for e in all {
            let m = e.for_clerk();
            let (ja, en) = m.split_once(" / ").expect("two halves");
            assert!(!ja.is_ascii(), "{m}");
            assert_eq!(en, e.to_string());
        }
        assert!(
            CardError::WrongPin { tries_left: 2 }
                .for_clerk()
                .contains("残り2回")
        );
    }
}
