//! A minimal indenting writer for element-only documents.

use std::fmt::Write as _;

use time::{Date, PrimitiveDateTime};

use super::XmlEncoding;
use super::charset;
use super::tree::is_xml_char;

pub(crate) struct Out {
    buf: String,
    depth: usize,
    encoding: XmlEncoding,
}

impl Out {
    pub(crate) fn new(encoding: XmlEncoding) -> Out {
        let mut buf = String::with_capacity(4096);
        buf.push_str("<?xml version=\"1.0\" encoding=\"");
        buf.push_str(charset::label(encoding));
        buf.push_str("\"?>\n");
        Out {
            buf,
            depth: 0,
            encoding,
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.buf.push_str("  ");
        }
    }

    pub(crate) fn open(&mut self, name: &str) {
        self.indent();
        let _ = writeln!(self.buf, "<{name}>");
        self.depth += 1;
    }

    pub(crate) fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        let _ = writeln!(self.buf, "</{name}>");
    }

    pub(crate) fn leaf(&mut self, name: &str, value: &str) {
        self.indent();
        let _ = write!(self.buf, "<{name}>");
        escape_into(&mut self.buf, value);
        let _ = writeln!(self.buf, "</{name}>");
    }

    pub(crate) fn opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.leaf(name, v);
        }
    }

    pub(crate) fn date(&mut self, name: &str, value: Date) {
        self.leaf(name, &format_date(value));
    }

    pub(crate) fn opt_date(&mut self, name: &str, value: Option<Date>) {
        if let Some(v) = value {
            self.date(name, v);
        }
    }

    pub(crate) fn datetime(&mut self, name: &str, value: PrimitiveDateTime) {
        self.leaf(name, &format_timestamp(value));
    }

    pub(crate) fn opt_datetime(&mut self, name: &str, value: Option<PrimitiveDateTime>) {
        if let Some(v) = value {
            self.datetime(name, v);
        }
    }

    pub(crate) fn flag(&mut self, name: &str, value: bool) {
        self.leaf(name, if value { "1" } else { "0" });
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        charset::encode(&self.buf, self.encoding)
    }
}

/// Escapes text content. `\r` is written as a reference so that it survives line-end
/// normalization; characters XML 1.0 cannot carry become U+FFFD.
fn escape_into(buf: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => buf.push_str("&amp;"),
            '<' => buf.push_str("&lt;"),
            '>' => buf.push_str("&gt;"),
            '\r' => buf.push_str("&#13;"),
            c if !is_xml_char(c) => buf.push('\u{FFFD}'),
            c => buf.push(c),
        }
    }
}

/// `yyyyMMdd`. Years outside 0–9999 cannot be written in this form; they are clamped to the
/// nearest representable year's digits, which never happens for dates read from files.
pub(crate) fn format_date(d: Date) -> String {
    let year = d.year().clamp(0, 9999);
    format!("{year:04}{:02}{:02}", u8::from(d.month()), d.day())
}

/// `yyyyMMddHHmmss` (JST wall clock, as the national system writes it).
pub(crate) fn format_timestamp(t: PrimitiveDateTime) -> String {
    format!(
        "{}{:02}{:02}{:02}",
        format_date(t.date()),
        t.hour(),
        t.minute(),
        t.second()
    )
}
