//! A virtual My Number card for development and tests.
//!
//! - [`applet`]: the JPKI application as the chip answers it (SELECT, READ BINARY of the
//!   user-authentication certificate, VERIFY with a 3-try counter, COMPUTE DIGITAL SIGNATURE),
//!   and an "unknown card" that has no JPKI application. The card-info application (the one
//!   that holds the 12-digit My Number) does not exist on this card at all.
//! - [`issue`]: a card's files (RSA-2048 key, certificate issued by the dev PKI's test J-LIS CA,
//!   PIN, PIN counter state).
//! - [`vpcd`]: the vsmartcard-vpcd socket protocol, which puts the card "on" a pcscd reader.
//!
//! **Which insured person a card belongs to**: the certificate's subject `serialNumber` is
//! `HOLDER-<n>`, where `n` is the index of the person in onshi-sim's population (the order of
//! `onshi-sim population`). Like a real user-authentication certificate, it names nobody; the
//! national side (onshi-sim) maps the certificate to the person. The 12-digit My Number is never
//! involved.

pub mod applet;
pub mod issue;
pub mod vpcd;

/// The ATR of a My Number card (domain doc §6).
pub const MY_NUMBER_ATR: [u8; 9] = [0x3B, 0xE0, 0x00, 0xFF, 0x81, 0x31, 0xFE, 0x45, 0x14];
/// The ATR the "unknown card" answers with (a contactless storage card, as PC/SC part 3 builds
/// them).
pub const UNKNOWN_ATR: [u8; 20] = [
    0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x03, 0x06, 0x03, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x6A,
];
/// Default vpcd ports of Debian's vsmartcard-vpcd: reader 0 and reader 1.
pub const VPCD_PORTS: [u16; 2] = [35963, 35964];
/// The subject `serialNumber` prefix that names the card holder's population index.
pub const HOLDER_PREFIX: &str = "HOLDER-";
