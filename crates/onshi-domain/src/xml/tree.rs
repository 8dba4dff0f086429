//! A small owned element tree, built from quick-xml events under hard limits.
//!
//! Onshi messages are element-only (no attributes, no mixed content), so an element keeps its
//! name, its children and the text directly inside it. Attributes, comments and processing
//! instructions are ignored; a DTD is refused outright, which also rules out external entities
//! and entity expansion.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::{XmlError, XmlLimits, shown};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    /// Local name (any namespace prefix removed).
    pub(crate) name: String,
    /// Text directly inside the element, entities resolved, line ends normalized.
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

/// Parses `text` (already decoded) into its root element. `offset` is added to reported
/// positions (bytes skipped before `text`, e.g. a byte order mark).
pub(crate) fn parse(text: &str, limits: &XmlLimits, offset: u64) -> Result<Element, XmlError> {
    if let Some((i, c)) = text.char_indices().find(|(_, c)| !is_xml_char(*c)) {
        return Err(XmlError::Malformed {
            position: offset + i as u64,
            detail: format!("character U+{:04X} is not allowed in XML", u32::from(c)),
        });
    }

    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;

    loop {
        // Where the event starts, for messages about it.
        let position = offset + reader.buffer_position();
        let event = reader.read_event().map_err(|e| XmlError::Malformed {
            position: offset + reader.error_position(),
            detail: e.to_string(),
        })?;
        match event {
            Event::Start(start) => {
                let el = open(&start, &stack, &root, &mut count, limits, position)?;
                stack.push(el);
            }
            Event::Empty(start) => {
                let el = open(&start, &stack, &root, &mut count, limits, position)?;
                close(el, &mut stack, &mut root);
            }
            Event::End(_) => {
                // quick-xml has checked that the name matches the open element.
                if let Some(el) = stack.pop() {
                    close(el, &mut stack, &mut root);
                }
            }
            Event::Text(t) => push_text(&mut stack, &t.xml10_content(), position)?,
            Event::CData(t) => push_text(&mut stack, &t.xml10_content(), position)?,
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) if is_xml_char(c) => c,
                        _ => {
                            return Err(XmlError::Malformed {
                                position,
                                detail: format!(
                                    "&{}; is not a valid character reference",
                                    shown(&r)
                                ),
                            });
                        }
                    }
                } else {
                    match &*r {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(XmlError::Malformed {
                                position,
                                detail: format!(
                                    "unknown entity &{};: only &lt; &gt; &amp; &apos; &quot; and character references are allowed",
                                    shown(other)
                                ),
                            });
                        }
                    }
                };
                push_text(&mut stack, c.encode_utf8(&mut [0; 4]), position)?;
            }
            Event::DocType(_) => return Err(XmlError::DoctypeNotAllowed),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }

    if let Some(open) = stack.last() {
        return Err(XmlError::Malformed {
            position: offset + text.len() as u64,
            detail: format!(
                "the file ends inside <{}>; it may have been read while still being written",
                shown(&open.name)
            ),
        });
    }
    root.ok_or(XmlError::Malformed {
        position: offset,
        detail: "the file contains no element".into(),
    })
}

fn open(
    start: &BytesStart<'_>,
    stack: &[Element],
    root: &Option<Element>,
    count: &mut usize,
    limits: &XmlLimits,
    position: u64,
) -> Result<Element, XmlError> {
    let local = start.local_name();
    let name: &str = local.as_ref();
    if stack.is_empty() && root.is_some() {
        return Err(XmlError::Malformed {
            position,
            detail: format!(
                "a second root element <{}> after the first one ended",
                shown(name)
            ),
        });
    }
    *count += 1;
    if *count > limits.max_elements {
        return Err(XmlError::TooManyElements);
    }
    if stack.len() + 1 > limits.max_depth {
        return Err(XmlError::TooDeep);
    }
    Ok(Element {
        name: name.to_owned(),
        text: String::new(),
        children: Vec::new(),
    })
}

fn close(el: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

fn push_text(stack: &mut [Element], text: &str, position: u64) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(text);
            Ok(())
        }
        None if text.chars().all(|c| c.is_ascii_whitespace()) => Ok(()),
        None => Err(XmlError::Malformed {
            position,
            detail: "text outside the root element".into(),
        }),
    }
}

/// XML 1.0 `Char`: no C0 controls except tab, line feed and carriage return; no U+FFFE/U+FFFF.
pub(crate) fn is_xml_char(c: char) -> bool {
    !matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Element, XmlError> {
        parse(s, &XmlLimits::DEFAULT, 0)
    }

    #[test]
    fn builds_the_tree() {
        let root = p("<?xml version=\"1.0\"?>\n<!-- c --><a x=\"1\">\n <b>1 &amp; 2&#x41;&#66;</b><c/><ns:d>x</ns:d><e><![CDATA[<y>]]></e></a>\n")
            .unwrap();
        assert_eq!(root.name, "a");
        let names: Vec<_> = root.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["b", "c", "d", "e"]);
        assert_eq!(root.children[0].text, "1 & 2AB");
        assert_eq!(root.children[1].text, "");
        assert_eq!(root.children[3].text, "<y>");
    }

    #[test]
    fn line_ends_are_normalized_but_references_kept() {
        let root = p("<a>x\r\ny&#13;</a>").unwrap();
        assert_eq!(root.text, "x\ny\r");
    }

    #[test]
    fn refusals() {
        assert_eq!(
            p("<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>"),
            Err(XmlError::DoctypeNotAllowed)
        );
        assert!(
            matches!(p("<a>&x;</a>"), Err(XmlError::Malformed { detail, .. }) if detail.contains("unknown entity"))
        );
        assert!(matches!(p("<a>&#1;</a>"), Err(XmlError::Malformed { .. })));
        assert!(matches!(
            p("<a>\u{1}</a>"),
            Err(XmlError::Malformed { position: 3, .. })
        ));
        assert!(matches!(p("<a><b></a>"), Err(XmlError::Malformed { .. })));
        assert!(
            matches!(p("<a>"), Err(XmlError::Malformed { detail, .. }) if detail.contains("ends inside <a>"))
        );
        assert!(
            matches!(p("<a/><b/>"), Err(XmlError::Malformed { detail, .. }) if detail.contains("second root"))
        );
        assert!(matches!(p("x<a/>"), Err(XmlError::Malformed { .. })));
        assert!(matches!(p(""), Err(XmlError::Malformed { .. })));
        assert!(matches!(p("<a>&</a>"), Err(XmlError::Malformed { .. })));
    }

    #[test]
    fn limits() {
        let deep = "<a>".repeat(33) + &"</a>".repeat(33);
        assert_eq!(p(&deep), Err(XmlError::TooDeep));
        let ok = "<a>".repeat(32) + &"</a>".repeat(32);
        assert!(p(&ok).is_ok());
        let many = format!("<a>{}</a>", "<b/>".repeat(10_000));
        assert_eq!(p(&many), Err(XmlError::TooManyElements));
        let limits = XmlLimits {
            max_elements: 3,
            ..XmlLimits::DEFAULT
        };
        assert!(parse("<a><b/><b/></a>", &limits, 0).is_ok());
        assert_eq!(
            parse("<a><b/><b/><b/></a>", &limits, 0),
            Err(XmlError::TooManyElements)
        );
    }
}
