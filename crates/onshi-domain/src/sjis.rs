//! Shift_JIS (Windows-31J) output, the one encoder every Shift_JIS writer uses (the XML codec,
//! the agent's answer files, the batch CSV results).
//!
//! encoding_rs decodes Windows-31J's user-defined area (外字, lead bytes F0–F9, which receipt
//! computers use for rare name characters) to the private-use characters U+E000–U+E757 but,
//! following the WHATWG encoder, does not encode them back: a file read as Shift_JIS and
//! written again would turn a 外字 into `&#57344;`. Here those characters go back to the bytes
//! they were read from, so what reads as Shift_JIS writes back to the same text (found by the
//! batch CSV fuzz target: a patient id with a 外字 came back changed in the results file).
//!
//! The other way round, the WHATWG encoder writes ¥ (U+00A5) as 0x5C and ‾ (U+203E) as 0x7E,
//! which every decoder (ours included) reads as `\` and `~`: the text would change on the way.
//! Those two are written as character references, like any character Shift_JIS cannot hold
//! (found by the xml_request fuzz target: an `ArbitraryFileIdentifier` with ¥ came back with
//! `\`). Text read from Shift_JIS never holds them, so files written back in kind are unchanged.

use encoding_rs::SHIFT_JIS;

/// The user-defined area as encoding_rs decodes it: 1,880 characters (10 lead bytes × 188).
const USER_DEFINED: std::ops::RangeInclusive<char> = '\u{E000}'..='\u{E757}';

/// Encodes `text` as Shift_JIS. Characters Shift_JIS cannot hold, and ¥ and ‾, become decimal
/// character references (`&#NNNN;`, encoding_rs's behaviour: right for XML, visible in a CSV);
/// the user-defined area becomes its F040–F9FC bytes.
pub fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(|c: char| USER_DEFINED.contains(&c) || c == '¥' || c == '‾') {
        out.extend_from_slice(&SHIFT_JIS.encode(&rest[..at]).0);
        let c = rest[at..]
            .chars()
            .next()
            .expect("found at a character boundary");
        if USER_DEFINED.contains(&c) {
            out.extend_from_slice(&user_defined_bytes(c));
        } else {
            out.extend_from_slice(format!("&#{};", u32::from(c)).as_bytes());
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.extend_from_slice(&SHIFT_JIS.encode(rest).0);
    out
}

/// The inverse of the WHATWG Shift_JIS decoder for the user-defined area: code point
/// U+E000 + n is index pointer 8836 + n; the lead byte is pointer / 188 (+0xC1 past 0x1F),
/// the trail pointer % 188 (+0x40 below 0x3F, else +0x41, skipping 0x7F).
fn user_defined_bytes(c: char) -> [u8; 2] {
    let pointer = u32::from(c) - 0xE000 + 8836;
    let lead = pointer / 188;
    let trail = pointer % 188;
    let lead = lead + if lead < 0x1F { 0x81 } else { 0xC1 };
    let trail = trail + if trail < 0x3F { 0x40 } else { 0x41 };
    [lead as u8, trail as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_defined_character_writes_back_to_the_bytes_it_was_read_from() {
        for lead in 0xF0u8..=0xF9 {
            for trail in (0x40u8..=0xFC).filter(|t| *t != 0x7F) {
                let bytes = [b'a', lead, trail, b'z'];
                let (text, had_errors) = SHIFT_JIS.decode_without_bom_handling(&bytes);
                assert!(!had_errors, "{lead:02X}{trail:02X}");
                assert_eq!(encode(&text), bytes, "{lead:02X}{trail:02X}");
            }
        }
    }

    #[test]
    fn other_text_is_encoding_rs_shift_jis() {
        let text = "患者ＩＤ,ｼﾝﾘｮｳ,abc\r\n①";
        assert_eq!(encode(text), SHIFT_JIS.encode(text).0.into_owned());
        // Not in Shift_JIS at all: a character reference, as before.
        assert_eq!(encode("a😀"), b"a&#128512;".to_vec());
    }

    /// Fuzz regression (xml_request): ¥ was written as 0x5C and read back as `\`.
    #[test]
    fn yen_and_overline_are_references_not_backslash_and_tilde() {
        assert_eq!(encode("¥100‾\\~"), b"&#165;100&#8254;\\~".to_vec());
    }
}
