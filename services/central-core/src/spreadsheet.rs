//! The one CSV writer of central's exports (audit search, certificates): UTF-8 with a BOM
//! (spreadsheets in Japan then read it as UTF-8), RFC 4180, and every cell made inert.
//!
//! A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to
//! Excel and LibreOffice, and a staff id or terminal name typed at a site reaches an auditor's
//! spreadsheet through these exports: such a cell is written with a leading `'`, which the
//! spreadsheet shows as text. A plain number (`-3` days to expiry) is left as it is: it cannot
//! be a formula.

use std::borrow::Cow;

/// `text` as a spreadsheet takes it literally.
pub fn cell(text: &str) -> Cow<'_, str> {
    let risky = text
        .chars()
        .next()
        .is_some_and(|c| matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r'));
    if risky && !is_plain_number(text) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// `-12`, `+3`, `-0.5`: a sign, digits, at most one decimal point.
fn is_plain_number(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let mut points = 0;
    !digits.is_empty()
        && digits.chars().all(|c| {
            if c == '.' {
                points += 1;
                points == 1
            } else {
                c.is_ascii_digit()
            }
        })
        && digits.chars().any(|c| c.is_ascii_digit())
}

/// The start of a CSV document: the BOM (spreadsheets in Japan then read UTF-8), then
/// `header`; rows follow with [`write_line`], so an export can be sent as it is read.
pub fn head(header: &[&str]) -> Vec<u8> {
    let mut out = Vec::from("\u{feff}".as_bytes());
    write_line(&mut out, header);
    out
}

/// One record appended to `out`: RFC 4180, every cell through [`cell`].
pub fn write_line<C: AsRef<str>>(out: &mut Vec<u8>, row: impl IntoIterator<Item = C>) {
    let mut writer = csv::Writer::from_writer(out);
    // Writing to a Vec cannot fail.
    let _ = writer.write_record(row.into_iter().map(|c| cell(c.as_ref()).into_owned()));
    let _ = writer.flush();
}

/// A whole CSV document: [`head`], then `rows`.
pub fn csv<R, C>(header: &[&str], rows: impl IntoIterator<Item = R>) -> Vec<u8>
where
    R: IntoIterator<Item = C>,
    C: AsRef<str>,
{
    let mut out = head(header);
    for row in rows {
        write_line(&mut out, row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_made_text_and_numbers_stay_numbers() {
        for risky in [
            "=HYPERLINK(\"http://evil.example\",\"x\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
            "-",
        ] {
            assert_eq!(cell(risky), format!("'{risky}"), "{risky:?}");
        }
        for plain in ["-3", "+4", "-0.5", "12", "S001", "", "田中", "a=b"] {
            assert_eq!(cell(plain), plain, "{plain:?}");
        }
    }

    #[test]
    fn the_document_has_a_bom_and_inert_cells() {
        let out = csv(&["a", "b"], [vec!["=1+1", "-7"]]);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "\u{feff}a,b\n'=1+1,-7\n");
    }
}
