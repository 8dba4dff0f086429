//! Bytes ⇄ text: detecting and applying the file's declared character encoding.

use encoding_rs::{DecoderResult, SHIFT_JIS};

use super::{XmlEncoding, XmlError, shown};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A decoded document.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) text: String,
    /// The encoding the file declared (and was decoded with).
    pub(crate) encoding: XmlEncoding,
    /// Bytes skipped before `text` (a byte order mark), added to error positions so that for
    /// UTF-8 files they are offsets into the file itself.
    pub(crate) offset: u64,
}

/// Decodes `bytes` with the encoding of its XML declaration.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, XmlError> {
    if bytes.starts_with(b"\xFE\xFF") || bytes.starts_with(b"\xFF\xFE") {
        return Err(XmlError::Encoding(
            "the file is UTF-16 (byte order mark); Onshi files are UTF-8 or Shift_JIS".into(),
        ));
    }
    let (rest, bom) = match bytes.strip_prefix(UTF8_BOM) {
        Some(rest) => (rest, true),
        None => (bytes, false),
    };
    let encoding = match declared_encoding(rest)? {
        None => XmlEncoding::Utf8,
        Some(label) => encoding_for_label(&label).ok_or_else(|| {
            XmlError::Encoding(format!(
                "the file declares encoding {:?}; only UTF-8 and Shift_JIS are supported",
                shown(&label)
            ))
        })?,
    };
    if bom && encoding != XmlEncoding::Utf8 {
        return Err(XmlError::Encoding(
            "the file starts with a UTF-8 byte order mark but declares Shift_JIS".into(),
        ));
    }
    let offset = if bom { UTF8_BOM.len() as u64 } else { 0 };
    let text = match encoding {
        XmlEncoding::Utf8 => match std::str::from_utf8(rest) {
            Ok(s) => s.to_owned(),
            Err(e) => {
                return Err(XmlError::Encoding(format!(
                    "the file declares UTF-8 but byte {} is not valid UTF-8; \
                     it may be Shift_JIS with a wrong or missing declaration",
                    offset + e.valid_up_to() as u64
                )));
            }
        },
        XmlEncoding::ShiftJis => decode_shift_jis(rest)?,
    };
    Ok(Decoded {
        text,
        encoding,
        offset,
    })
}

fn decode_shift_jis(bytes: &[u8]) -> Result<String, XmlError> {
    let mut decoder = SHIFT_JIS.new_decoder_without_bom_handling();
    let capacity = decoder
        .max_utf8_buffer_length_without_replacement(bytes.len())
        .unwrap_or(bytes.len().saturating_mul(3));
    let mut out = String::with_capacity(capacity);
    let (result, read) = decoder.decode_to_string_without_replacement(bytes, &mut out, true);
    match result {
        DecoderResult::InputEmpty => Ok(out),
        DecoderResult::Malformed(bad, after) => {
            let at = read.saturating_sub(usize::from(after) + usize::from(bad));
            Err(XmlError::Encoding(format!(
                "the file declares Shift_JIS but byte {at} is not valid Shift_JIS; \
                 it may be UTF-8 with a wrong declaration"
            )))
        }
        DecoderResult::OutputFull => Err(XmlError::Encoding(
            "the Shift_JIS text could not be decoded".into(),
        )),
    }
}

/// The encoding `bytes` declare, best effort: UTF-8 when they declare none, one not supported,
/// or a declaration that cannot be read.
pub(crate) fn sniffed(bytes: &[u8]) -> XmlEncoding {
    let rest = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    match declared_encoding(rest) {
        Ok(Some(label)) => encoding_for_label(&label).unwrap_or(XmlEncoding::Utf8),
        _ => XmlEncoding::Utf8,
    }
}

/// Maps an `encoding` label to what we support (case-insensitive).
fn encoding_for_label(label: &str) -> Option<XmlEncoding> {
    let l = label.trim().to_ascii_lowercase();
    match l.as_str() {
        "utf-8" | "utf8" => Some(XmlEncoding::Utf8),
        "shift_jis" | "shift-jis" | "sjis" | "s-jis" | "x-sjis" | "windows-31j" | "cp932"
        | "ms932" | "x-ms-cp932" | "ms_kanji" | "csshiftjis" | "cswindows31j" => {
            Some(XmlEncoding::ShiftJis)
        }
        _ => None,
    }
}

/// The `encoding` pseudo-attribute of a leading `<?xml …?>` declaration, if any.
///
/// Works on bytes because the declaration is ASCII in both supported encodings and has to be
/// read before the rest can be decoded.
fn declared_encoding(bytes: &[u8]) -> Result<Option<String>, XmlError> {
    let Some(after) = bytes.strip_prefix(b"<?xml") else {
        return Ok(None);
    };
    if !after.first().is_some_and(u8::is_ascii_whitespace) {
        // `<?xml-stylesheet …?>` or similar: not a declaration.
        return Ok(None);
    }
    let window = &after[..after.len().min(512)];
    let Some(end) = window.windows(2).position(|w| w == b"?>") else {
        return Err(XmlError::Malformed {
            position: 0,
            detail: "the XML declaration <?xml … is not closed by ?>".into(),
        });
    };
    let decl = &window[..end];
    let Some(at) = decl.windows(8).position(|w| w == b"encoding") else {
        return Ok(None);
    };
    let mut rest = &decl[at + 8..];
    rest = trim_start(rest);
    let Some(r) = rest.strip_prefix(b"=") else {
        return Err(bad_decl());
    };
    rest = trim_start(r);
    let quote = match rest.first() {
        Some(q @ (b'"' | b'\'')) => *q,
        _ => return Err(bad_decl()),
    };
    let value = &rest[1..];
    let Some(close) = value.iter().position(|b| *b == quote) else {
        return Err(bad_decl());
    };
    let label = &value[..close];
    if !label.is_ascii() {
        return Err(bad_decl());
    }
    Ok(Some(String::from_utf8_lossy(label).into_owned()))
}

fn trim_start(mut b: &[u8]) -> &[u8] {
    while let Some((first, rest)) = b.split_first() {
        if !first.is_ascii_whitespace() {
            break;
        }
        b = rest;
    }
    b
}

fn bad_decl() -> XmlError {
    XmlError::Malformed {
        position: 0,
        detail: "the encoding in the XML declaration is not written as encoding=\"…\"".into(),
    }
}

/// Encodes the written document. Shift_JIS output writes unmappable characters as decimal
/// character references, which is exactly what XML needs to keep them, and 外字 as the bytes
/// they were read from ([`crate::sjis`]).
pub(crate) fn encode(text: &str, encoding: XmlEncoding) -> Vec<u8> {
    match encoding {
        XmlEncoding::Utf8 => text.as_bytes().to_vec(),
        XmlEncoding::ShiftJis => crate::sjis::encode(text),
    }
}

/// The label written in the declaration.
pub(crate) fn label(encoding: XmlEncoding) -> &'static str {
    match encoding {
        XmlEncoding::Utf8 => "UTF-8",
        XmlEncoding::ShiftJis => "Shift_JIS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for l in [
            "Shift_JIS",
            "SJIS",
            "windows-31j",
            "CP932",
            "MS932",
            " shift_jis ",
        ] {
            assert_eq!(encoding_for_label(l), Some(XmlEncoding::ShiftJis), "{l}");
        }
        for l in ["UTF-8", "utf-8", "utf8"] {
            assert_eq!(encoding_for_label(l), Some(XmlEncoding::Utf8), "{l}");
        }
        assert_eq!(encoding_for_label("EUC-JP"), None);
    }

    #[test]
    fn declaration_forms() {
        assert_eq!(declared_encoding(b"<a/>").unwrap(), None);
        assert_eq!(
            declared_encoding(b"<?xml version=\"1.0\"?><a/>").unwrap(),
            None
        );
        assert_eq!(
            declared_encoding(b"<?xml version='1.0' encoding = 'sjis' ?><a/>").unwrap(),
            Some("sjis".into())
        );
        assert!(declared_encoding(b"<?xml version=\"1.0\" encoding=sjis?>").is_err());
        assert!(declared_encoding(b"<?xml version=\"1.0\" encoding=\"sjis").is_err());
    }

    #[test]
    fn decode_rules() {
        let d = decode("\u{FEFF}<a>é</a>".as_bytes()).unwrap();
        assert_eq!(d.text, "<a>é</a>");
        assert_eq!(d.offset, 3);
        let sjis =
            SHIFT_JIS.encode("<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><a>東京ｼﾝﾘｮｳ</a>");
        let d = decode(&sjis.0).unwrap();
        assert!(d.text.ends_with("<a>東京ｼﾝﾘｮｳ</a>"));
        assert_eq!(d.encoding, XmlEncoding::ShiftJis);
        // Shift_JIS bytes declared (by default) as UTF-8.
        let no_decl = SHIFT_JIS.encode("<a>東京</a>");
        let e = decode(&no_decl.0).unwrap_err();
        assert!(
            matches!(&e, XmlError::Encoding(m) if m.contains("byte 3")),
            "{e}"
        );
        // A lone lead byte in Shift_JIS.
        let mut bad = b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><a>".to_vec();
        let at = bad.len();
        bad.extend_from_slice(b"\x81</a>");
        let e = decode(&bad).unwrap_err();
        assert!(
            matches!(&e, XmlError::Encoding(m) if m.contains(&format!("byte {at}"))),
            "{e}"
        );
        assert!(decode(b"\xFF\xFE<\0a\0").is_err());
        assert!(decode(b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"SJIS\"?><a/>").is_err());
    }

    #[test]
    fn unmappable_characters_become_references() {
        let bytes = encode("<a>😀髙</a>", XmlEncoding::ShiftJis);
        let back = decode_shift_jis(&bytes).unwrap();
        assert_eq!(back, "<a>&#128512;髙</a>");
    }
}
