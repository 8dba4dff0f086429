//! Typed access to the element tree, with element paths for error messages.

use time::{Date, PrimitiveDateTime, Time};

use super::tree::Element;
use super::{XmlError, shown};
use crate::codes::UnknownCode;
use crate::ids::{IdError, parse_yyyymmdd};

/// An element and its path from the root ("XmlMsg/MessageHeader").
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    el: &'a Element,
    parent: Option<&'a Node<'a>>,
    index: Option<usize>,
}

impl<'a> Node<'a> {
    pub(crate) fn root(el: &'a Element) -> Node<'a> {
        Node {
            el,
            parent: None,
            index: None,
        }
    }

    pub(crate) fn name(&self) -> &'a str {
        &self.el.name
    }

    pub(crate) fn path(&self) -> String {
        let mut s = match self.parent {
            Some(p) => format!("{}/{}", p.path(), self.el.name),
            None => self.el.name.clone(),
        };
        if let Some(i) = self.index {
            s.push_str(&format!("[{}]", i + 1));
        }
        s
    }

    fn child_path(&self, name: &str) -> String {
        format!("{}/{name}", self.path())
    }

    /// The single child called `name`, if present. Two of them are an error: a message with
    /// two insurer numbers has no safe reading.
    pub(crate) fn child<'s>(&'s self, name: &str) -> Result<Option<Node<'s>>, XmlError> {
        let mut found = self.el.children.iter().filter(|c| c.name == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(XmlError::InvalidValue {
                path: self.child_path(name),
                value: String::new(),
                reason: "the element appears more than once".into(),
            });
        }
        Ok(first.map(|el| Node {
            el,
            parent: Some(self),
            index: None,
        }))
    }

    pub(crate) fn req_child<'s>(&'s self, name: &str) -> Result<Node<'s>, XmlError> {
        self.child(name)?.ok_or_else(|| XmlError::MissingElement {
            path: self.child_path(name),
        })
    }

    /// Every child called `name`, in document order.
    pub(crate) fn children<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Node<'s>> + 's {
        self.el
            .children
            .iter()
            .filter(move |c| c.name == name)
            .enumerate()
            .map(move |(i, el)| Node {
                el,
                parent: Some(self),
                index: Some(i),
            })
    }

    /// The text of child `name`; `None` when it is absent, empty or only whitespace.
    pub(crate) fn text(&self, name: &str) -> Result<Option<Leaf<'a>>, XmlError> {
        let mut found = self.el.children.iter().filter(|c| c.name == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(XmlError::InvalidValue {
                path: self.child_path(name),
                value: String::new(),
                reason: "the element appears more than once".into(),
            });
        }
        Ok(first
            .filter(|el| !el.text.trim().is_empty())
            .map(|el| Leaf {
                path: self.child_path(name),
                raw: &el.text,
            }))
    }

    pub(crate) fn req_text(&self, name: &str) -> Result<Leaf<'a>, XmlError> {
        self.text(name)?.ok_or_else(|| XmlError::MissingElement {
            path: self.child_path(name),
        })
    }

    // Typed shortcuts for optional children.

    pub(crate) fn opt_string(&self, name: &str) -> Result<Option<String>, XmlError> {
        Ok(self.text(name)?.map(|l| l.raw.to_owned()))
    }

    pub(crate) fn opt_id<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Result<T, IdError>,
    ) -> Result<Option<T>, XmlError> {
        self.text(name)?.map(|l| l.id(parse)).transpose()
    }

    pub(crate) fn opt_code<T>(&self, name: &str) -> Result<Option<T>, XmlError>
    where
        T: for<'x> TryFrom<&'x str, Error = UnknownCode>,
    {
        self.text(name)?.map(|l| l.code()).transpose()
    }

    pub(crate) fn opt_date(&self, name: &str) -> Result<Option<Date>, XmlError> {
        self.text(name)?.map(|l| l.date()).transpose()
    }

    pub(crate) fn opt_datetime(&self, name: &str) -> Result<Option<PrimitiveDateTime>, XmlError> {
        self.text(name)?.map(|l| l.datetime()).transpose()
    }

    pub(crate) fn opt_flag(&self, name: &str) -> Result<Option<bool>, XmlError> {
        self.text(name)?.map(|l| l.flag()).transpose()
    }
}

/// The text of one leaf element.
pub(crate) struct Leaf<'a> {
    path: String,
    /// Exactly as in the file (entities resolved).
    pub(crate) raw: &'a str,
}

impl Leaf<'_> {
    fn trimmed(&self) -> &str {
        self.raw.trim()
    }

    pub(crate) fn invalid(&self, reason: impl Into<String>) -> XmlError {
        XmlError::InvalidValue {
            path: self.path.clone(),
            value: shown(self.raw),
            reason: reason.into(),
        }
    }

    /// Parses an identifier; the reason is the identifier's own problem text.
    pub(crate) fn id<T>(&self, parse: fn(&str) -> Result<T, IdError>) -> Result<T, XmlError> {
        parse(self.raw).map_err(|e| self.invalid(e.problem.to_string()))
    }

    pub(crate) fn code<T>(&self) -> Result<T, XmlError>
    where
        T: for<'x> TryFrom<&'x str, Error = UnknownCode>,
    {
        T::try_from(self.trimmed())
            .map_err(|e| self.invalid(format!("unknown code; expected {}", e.expected)))
    }

    pub(crate) fn date(&self) -> Result<Date, XmlError> {
        parse_yyyymmdd(self.trimmed())
            .ok_or_else(|| self.invalid("expected a real date written yyyyMMdd"))
    }

    pub(crate) fn datetime(&self) -> Result<PrimitiveDateTime, XmlError> {
        parse_timestamp(self.trimmed())
            .ok_or_else(|| self.invalid("expected a real time written yyyyMMddHHmmss"))
    }

    pub(crate) fn flag(&self) -> Result<bool, XmlError> {
        match self.trimmed() {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(self.invalid("expected 0 or 1")),
        }
    }
}

/// `yyyyMMddHHmmss`, 14 ASCII digits, a real date and time.
pub(crate) fn parse_timestamp(s: &str) -> Option<PrimitiveDateTime> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = parse_yyyymmdd(&s[0..8])?;
    let h: u8 = s[8..10].parse().ok()?;
    let m: u8 = s[10..12].parse().ok()?;
    let sec: u8 = s[12..14].parse().ok()?;
    Some(PrimitiveDateTime::new(
        date,
        Time::from_hms(h, m, sec).ok()?,
    ))
}
