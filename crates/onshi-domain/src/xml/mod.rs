//! The Onshi XML codec: request and result files exchanged with the qualification terminal.
//!
//! Reading happens in three steps, each with its own error variants so a vendor or operator
//! knows where a file went wrong:
//!
//! 1. **Bytes to text** (`charset`): the size limit is checked first; the XML declaration's
//!    `encoding` picks UTF-8 or Shift_JIS (Windows-31J; the labels Shift_JIS, SJIS,
//!    Windows-31J, CP932, MS932 are accepted, case-insensitive; no declaration means UTF-8;
//!    a UTF-8 byte order mark is skipped). An invalid byte sequence is an error, never
//!    replacement characters: a garbled name must not reach the counter.
//! 2. **Text to tree** (`tree`): quick-xml events become a small owned element tree, with hard
//!    limits on depth and element count, no DTD (so no entity expansion or external entities)
//!    and only the five predefined entities plus character references.
//! 3. **Tree to types** ([`qualification`], [`bulk`] for the two-step batch inquiry): exact Onshi
//!    element names, order-independent, identifiers parsed with [`crate::ids`]. Elements that
//!    are empty or contain only whitespace are read as absent. The reader is tolerant where a
//!    real file may differ from what we model and strict where a wrong reading would harm
//!    (`read`): unknown elements, unknown codes, unreadable optional values, equal repeated
//!    elements and lists nested or flat are read with a [`ReadWarning`]; the envelope,
//!    identifiers, required elements and conflicting repeats are errors. Every message has
//!    `read_xml` (the value and its warnings, [`Warned`], for programs, which log the
//!    warnings) and `from_xml` (the value alone, for tests and tools).
//!
//! Writing produces `<?xml version="1.0" encoding="UTF-8"?>` or `encoding="Shift_JIS"` files.
//! Characters Shift_JIS cannot hold are written as XML character references (`&#NNNN;`), so no
//! text is lost; characters XML 1.0 cannot carry at all (C0 controls other than tab and line
//! feed) are written as U+FFFD.
//!
//! Dates are `yyyyMMdd` and timestamps `yyyyMMddHHmmss` ([`time::PrimitiveDateTime`], no
//! offset): the national system writes Japan Standard Time wall-clock values and so do we; the
//! caller converts if it needs an instant.

/// The three shorthand readers every message type has beside its `read_xml_with_limits`:
/// `read_xml` (under `$limits`, with what was tolerated), `from_xml` and `from_xml_with_limits`
/// (the value alone, for tests and tools; a program that must say what it tolerated reads with
/// warnings). Expands inside the type's `impl` block.
macro_rules! reading_shorthands {
    ($limits:expr) => {
        /// Reads the file under the default limits for its kind, with what was tolerated.
        pub fn read_xml(bytes: &[u8]) -> Result<Warned<Self>, XmlError> {
            Self::read_xml_with_limits(bytes, &$limits)
        }

        /// [`Self::read_xml`], dropping the warnings (tests and tools).
        pub fn from_xml(bytes: &[u8]) -> Result<Self, XmlError> {
            Self::read_xml(bytes).map(Warned::into_value)
        }

        /// [`Self::read_xml_with_limits`], dropping the warnings (tests and tools).
        pub fn from_xml_with_limits(bytes: &[u8], limits: &XmlLimits) -> Result<Self, XmlError> {
            Self::read_xml_with_limits(bytes, limits).map(Warned::into_value)
        }
    };
}

pub mod bulk;
mod charset;
pub mod checkup;
pub mod drug;
mod info;
pub mod qualification;
mod read;
mod tree;
mod write;

pub use bulk::*;
pub use checkup::*;
pub use drug::*;
pub use info::{
    FileCategory, InfoOutcome, InfoPatient, InfoRequestFlags, InfoRequestHeader, ResultCode,
    YearMonth,
};
pub use qualification::*;
pub use read::{ReadWarning, Warned, WarningKind, element_paths};

/// The encoding a file declares, to answer a file that cannot be read in kind: best effort,
/// UTF-8 when it cannot be told (the readers refuse what this lets through).
pub fn sniffed_encoding(bytes: &[u8]) -> XmlEncoding {
    charset::sniffed(bytes)
}

/// The `ArbitraryFileIdentifier` of a file that may not parse, to echo it or to match a result
/// to its request: best effort, a plain value only (at most 64 characters; no markup, entity,
/// control or undecodable character), `None` otherwise.
pub fn scanned_arbitrary_file_identifier(bytes: &[u8]) -> Option<String> {
    let text = match sniffed_encoding(bytes) {
        XmlEncoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
        XmlEncoding::ShiftJis => encoding_rs::SHIFT_JIS
            .decode_without_bom_handling(bytes)
            .0
            .into_owned(),
    };
    let open = "<ArbitraryFileIdentifier>";
    let start = text.find(open)? + open.len();
    let len = text[start..].find("</ArbitraryFileIdentifier>")?;
    let value = text[start..start + len].trim();
    let plain = !value.is_empty()
        && value.chars().count() <= 64
        && !value.contains(['<', '&', '\u{FFFD}'])
        && !value.chars().any(char::is_control);
    plain.then(|| value.to_string())
}

/// The character encoding of a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XmlEncoding {
    /// UTF-8, declared as `encoding="UTF-8"`.
    Utf8,
    /// Shift_JIS (Windows-31J, as encoding_rs implements it), declared as
    /// `encoding="Shift_JIS"`.
    ShiftJis,
}

/// Limits applied while reading, so a hostile or broken file cannot exhaust the terminal.
///
/// The defaults are far above any eligibility file (a few kilobytes, depth under 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// Maximum input size in bytes, checked before decoding. Default 1 MiB.
    pub max_bytes: usize,
    /// Maximum element nesting depth. Default 32.
    pub max_depth: usize,
    /// Maximum number of elements. Default 10,000.
    pub max_elements: usize,
}

impl XmlLimits {
    pub const DEFAULT: XmlLimits = XmlLimits {
        max_bytes: 1024 * 1024,
        max_depth: 32,
        max_elements: 10_000,
    };
}

impl Default for XmlLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why an Onshi XML file could not be read.
///
/// Values quoted in errors (identifiers included) stay at the site: these errors go to the
/// site's operator and the receipt computer vendor, not to central.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The input exceeds [`XmlLimits::max_bytes`]; nothing was decoded.
    #[error(
        "file larger than {limit} bytes, refused unread (eligibility files are a few kilobytes; is this the right file?)"
    )]
    TooLarge { limit: usize },
    /// Nesting beyond [`XmlLimits::max_depth`].
    #[error("elements nested too deeply: this is not an Onshi message, or it is damaged")]
    TooDeep,
    /// More than [`XmlLimits::max_elements`] elements.
    #[error("too many elements: this is not a single Onshi message, or it is damaged")]
    TooManyElements,
    /// Unsupported declared encoding, or bytes that are not valid in the declared encoding
    /// (the message names the byte offset and the likely cause).
    #[error("character encoding: {0}")]
    Encoding(String),
    /// Not well-formed XML. `position` is a byte offset: into the file for UTF-8 files, into
    /// the text decoded to UTF-8 for Shift_JIS files.
    #[error("not well-formed XML at byte {position}: {detail}")]
    Malformed { position: u64, detail: String },
    /// A `<!DOCTYPE …>`: refused before any entity in it could be expanded or fetched.
    #[error(
        "the file contains a DOCTYPE declaration, which Onshi files never have; refused (entity expansion risk)"
    )]
    DoctypeNotAllowed,
    /// Well-formed XML, but not an Onshi message.
    #[error("the root element is <{found}>, expected <XmlMsg>")]
    UnexpectedRoot { found: String },
    /// A required element is absent (or empty). `path` is like
    /// `XmlMsg/MessageBody/QualificationConfirmSearchInfo/Birthdate`.
    #[error("missing element {path}")]
    MissingElement { path: String },
    /// An element whose content is wrong, or that appears twice where one is expected. For
    /// identifiers `reason` is the [`crate::ids::Problem`] text, e.g. "the check digit should be
    /// 6, not 7". `value` is cut to 64 characters.
    #[error("invalid value {value:?} in {path}: {reason}")]
    InvalidValue {
        path: String,
        value: String,
        reason: String,
    },
    /// An identifier (institution code, insurer number, card symbol and number, branch, date of
    /// birth) that its own rules refuse: the [`crate::ids::IdError`] names the field and the
    /// rule, in English and Japanese, so a request file with a typing error is answered with
    /// what to fix rather than "unreadable".
    #[error("invalid {} in {path}: {error}", error.field)]
    InvalidIdentifier {
        path: String,
        error: crate::ids::IdError,
    },
}

/// A value as quoted in an error: controls escaped, at most 64 characters.
pub(crate) fn shown(raw: &str) -> String {
    let mut out = String::new();
    for (i, c) in raw.chars().enumerate() {
        if i == 64 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}
