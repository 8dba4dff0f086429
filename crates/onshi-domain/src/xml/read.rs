//! Typed access to the element tree, with element paths for messages, and the reader's
//! tolerance: what it accepts with a [`ReadWarning`] instead of refusing the file.
//!
//! A reader module reads a file like this:
//!
//! ```text
//! let doc = Doc::read(bytes, limits)?;          // bytes → text → tree, root must be XmlMsg
//! let root = doc.root();
//! let header = root.envelope(HEADER)?;          // strict: exactly one
//! let name = header.opt_string("Name")?;        // tolerant shortcuts
//! let items = body.list("FooList", "FooInfo");  // nested, repeated container or flat
//! let value = Message { … };
//! Ok(doc.finish(value))                         // Warned<Message>: warnings + unread elements
//! ```
//!
//! What is tolerated (each with a warning, in document order):
//! - an element no reader looked at ([`WarningKind::UnknownElement`], reported by
//!   [`Doc::finish`] at the outermost unread element; its text is never quoted);
//! - an unknown code in an optional code field ([`WarningKind::UnknownCode`]: read as absent,
//!   the code quoted, since codes are not personal data);
//! - an optional date, time, flag or ratio that cannot be read ([`WarningKind::Unreadable`]:
//!   read as absent, the value not quoted since it may be personal);
//! - the same element twice with the same content ([`WarningKind::Repeated`]: read once);
//! - an element in a place some sources use but the corpus does not
//!   ([`WarningKind::Misplaced`]).
//!
//! What stays strict (an [`XmlError`]): the envelope (`XmlMsg`, exactly one `MessageHeader`
//! and `MessageBody`, via [`Node::envelope`]), required elements, identifiers (parsed with
//! [`crate::ids`], via [`Node::opt_id`] and [`Leaf::id`]), the [`Leaf`] conversions a reader
//! calls on purpose (`req_text(..)?.code()`), and an element that appears twice with
//! *different* contents: two insurer numbers, or two different names, have no safe reading.
//!
//! A node made with [`Node::root`] has no warning sink: everything tolerated above is then an
//! error, as before tolerance existed. Readers not yet moved to [`Doc`] keep their strictness.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use time::{Date, PrimitiveDateTime, Time};

use super::tree::{self, Element};
use super::{XmlEncoding, XmlError, XmlLimits, charset, shown};
use crate::codes::UnknownCode;
use crate::ids::{IdError, parse_yyyymmdd};

/// The root element every Onshi message has.
const ROOT: &str = "XmlMsg";

// ---------------------------------------------------------------------------------------------
// Warnings
// ---------------------------------------------------------------------------------------------

/// Something the reader accepted but did not read as written. `path` names the element
/// ("XmlMsg/MessageBody/ResultList/ResultOfQualificationConfirmation[1]/Sex1"); a warning
/// never carries a patient's name, number or date, so callers may log it as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadWarning {
    pub path: String,
    pub kind: WarningKind,
}

/// What was tolerated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarningKind {
    /// An element no reader looked at; it and everything inside it were ignored.
    UnknownElement,
    /// A code its table does not know; the field was read as absent.
    UnknownCode {
        /// The code as written, cut to 16 characters.
        code: String,
        /// The table, e.g. "Sex (OQSCD007)".
        table: &'static str,
    },
    /// An optional value that could not be read; the field was read as absent. `expected`
    /// says what form it should have had (the value itself is not kept).
    Unreadable { expected: &'static str },
    /// The element appeared `count` times with the same content; read once.
    Repeated { count: usize },
    /// The element was read where some sources put it, not where the corpus does.
    Misplaced { expected: &'static str },
    /// A count that disagrees with the list it counts; the items read are kept.
    CountMismatch { stated: u32, found: usize },
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarningKind::UnknownElement => f.write_str("unknown element, ignored"),
            WarningKind::UnknownCode { code, table } => {
                write!(f, "{table}: unknown code {code:?}, read as absent")
            }
            WarningKind::Unreadable { expected } => {
                write!(f, "unreadable value (expected {expected}), read as absent")
            }
            WarningKind::Repeated { count } => {
                write!(f, "appears {count} times with the same content, read once")
            }
            WarningKind::Misplaced { expected } => {
                write!(f, "read here, but expected {expected}")
            }
            WarningKind::CountMismatch { stated, found } => {
                write!(
                    f,
                    "states {stated}, but {found} were found; those found are kept"
                )
            }
        }
    }
}

impl fmt::Display for ReadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.kind)
    }
}

/// A value read from a file, and what the reader tolerated to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warned<T> {
    pub value: T,
    /// In the order met; empty for a file read exactly as written.
    pub warnings: Vec<ReadWarning>,
}

impl<T> Warned<T> {
    /// The value, for callers that have logged (or deliberately ignore) the warnings.
    pub fn into_value(self) -> T {
        self.value
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Warned<U> {
        Warned {
            value: f(self.value),
            warnings: self.warnings,
        }
    }
}

/// Where a reader's warnings go, and which elements it looked at.
#[derive(Default)]
pub(crate) struct Sink {
    warnings: RefCell<Vec<ReadWarning>>,
    /// Addresses of the elements a reader asked for (the tree does not move while read).
    visited: RefCell<HashSet<usize>>,
}

impl Sink {
    fn visit(&self, el: &Element) {
        self.visited
            .borrow_mut()
            .insert(el as *const Element as usize);
    }

    fn was_visited(&self, el: &Element) -> bool {
        self.visited
            .borrow()
            .contains(&(el as *const Element as usize))
    }

    fn push(&self, path: String, kind: WarningKind) {
        self.warnings.borrow_mut().push(ReadWarning { path, kind });
    }
}

// ---------------------------------------------------------------------------------------------
// A read document
// ---------------------------------------------------------------------------------------------

/// A decoded, parsed file whose root is `XmlMsg`, with the warning sink its reader fills.
pub(crate) struct Doc {
    root: Element,
    encoding: XmlEncoding,
    sink: Sink,
}

impl Doc {
    /// Bytes → text (size limit first) → tree; the root must be `XmlMsg`.
    pub(crate) fn read(bytes: &[u8], limits: &XmlLimits) -> Result<Doc, XmlError> {
        if bytes.len() > limits.max_bytes {
            return Err(XmlError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        let decoded = charset::decode(bytes)?;
        let root = tree::parse(&decoded.text, limits, decoded.offset)?;
        if root.name != ROOT {
            return Err(XmlError::UnexpectedRoot {
                found: shown(&root.name),
            });
        }
        Ok(Doc {
            root,
            encoding: decoded.encoding,
            sink: Sink::default(),
        })
    }

    /// The encoding the file was decoded with.
    pub(crate) fn encoding(&self) -> XmlEncoding {
        self.encoding
    }

    /// The root `XmlMsg`, reading into this document's sink.
    pub(crate) fn root(&self) -> Node<'_> {
        self.sink.visit(&self.root);
        Node {
            el: &self.root,
            parent: None,
            sink: Some(&self.sink),
        }
    }

    /// The value with every warning, and an [`WarningKind::UnknownElement`] for each outermost
    /// element the reader never looked at.
    pub(crate) fn finish<T>(self, value: T) -> Warned<T> {
        let mut unread = Vec::new();
        unvisited(&self.root, &self.root.name, &self.sink, &mut unread);
        let mut warnings = self.sink.warnings.into_inner();
        warnings.extend(unread.into_iter().map(|path| ReadWarning {
            path,
            kind: WarningKind::UnknownElement,
        }));
        Warned { value, warnings }
    }
}

/// The path of every element of an Onshi file ("XmlMsg/MessageBody/ReceptionNumber"), in
/// document order, without positions: what conformance tests compare to tell whether two
/// files place their elements alike, whatever their values. Empty leaves are left out, since
/// readers take them as absent.
pub fn element_paths(bytes: &[u8]) -> Result<Vec<String>, XmlError> {
    fn walk(el: &Element, path: &str, out: &mut Vec<String>) {
        for child in &el.children {
            if child.children.is_empty() && child.text.trim().is_empty() {
                continue;
            }
            let p = format!("{path}/{}", child.name);
            out.push(p.clone());
            walk(child, &p, out);
        }
    }
    let doc = Doc::read(bytes, &XmlLimits::BULK)?;
    let mut out = vec![doc.root.name.clone()];
    walk(&doc.root, &doc.root.name, &mut out);
    Ok(out)
}

/// One step of a path: the child's name, with its position among same-named siblings when
/// there are several.
fn step(parent: &Element, child: &Element) -> String {
    let mut same = parent.children.iter().filter(|c| c.name == child.name);
    if same.clone().count() < 2 {
        return child.name.clone();
    }
    let n = same.position(|c| std::ptr::eq(c, child)).unwrap_or(0);
    format!("{}[{}]", child.name, n + 1)
}

fn unvisited(el: &Element, path: &str, sink: &Sink, out: &mut Vec<String>) {
    for child in &el.children {
        let child_path = format!("{path}/{}", step(el, child));
        if sink.was_visited(child) {
            unvisited(child, &child_path, sink, out);
        } else {
            out.push(child_path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

/// An element and its path from the root ("XmlMsg/MessageHeader").
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    el: &'a Element,
    parent: Option<&'a Node<'a>>,
    /// `None`: strict, everything tolerated elsewhere is an error.
    sink: Option<&'a Sink>,
}

impl<'a> Node<'a> {
    /// A strict node (no tolerance): see the module documentation.
    pub(crate) fn root(el: &'a Element) -> Node<'a> {
        Node {
            el,
            parent: None,
            sink: None,
        }
    }

    pub(crate) fn name(&self) -> &'a str {
        &self.el.name
    }

    /// "XmlMsg/MessageBody/ResultList/ResultOfQualificationConfirmation[2]/Sex1": a position
    /// only where the element's name repeats among its siblings (as in `Doc::finish`).
    pub(crate) fn path(&self) -> String {
        match self.parent {
            Some(p) => format!("{}/{}", p.path(), step(p.el, self.el)),
            None => self.el.name.clone(),
        }
    }

    fn child_path(&self, name: &str) -> String {
        format!("{}/{name}", self.path())
    }

    /// Records `kind` at `path`, or, for a strict node, turns it into the error `strict`.
    fn tolerate(
        &self,
        path: String,
        kind: WarningKind,
        strict: impl FnOnce() -> XmlError,
    ) -> Result<(), XmlError> {
        match self.sink {
            Some(sink) => {
                sink.push(path, kind);
                Ok(())
            }
            None => Err(strict()),
        }
    }

    fn visit(&self, el: &Element) {
        if let Some(sink) = self.sink {
            sink.visit(el);
        }
    }

    fn wrap<'s>(&'s self, el: &'a Element) -> Node<'s>
    where
        'a: 's,
    {
        self.visit(el);
        Node {
            el,
            parent: Some(self),
            sink: self.sink,
        }
    }

    /// The child called `name`, if present. Copies with the same content are read once (with
    /// a warning); copies that differ are an error: there is no safe way to choose.
    fn single(&self, name: &str) -> Result<Option<&'a Element>, XmlError> {
        let mut found = self.el.children.iter().filter(|c| c.name == name);
        let Some(first) = found.next() else {
            return Ok(None);
        };
        let mut count = 1;
        for other in found {
            self.visit(other);
            if other != first {
                return Err(XmlError::InvalidValue {
                    path: self.child_path(name),
                    value: String::new(),
                    reason: "the element appears more than once, with different contents".into(),
                });
            }
            count += 1;
        }
        if count > 1 {
            self.tolerate(
                self.child_path(name),
                WarningKind::Repeated { count },
                || XmlError::InvalidValue {
                    path: self.child_path(name),
                    value: String::new(),
                    reason: "the element appears more than once".into(),
                },
            )?;
        }
        Ok(Some(first))
    }

    /// The single child called `name`, if present (equal copies tolerated, see `single`).
    pub(crate) fn child<'s>(&'s self, name: &str) -> Result<Option<Node<'s>>, XmlError> {
        Ok(self.single(name)?.map(|el| self.wrap(el)))
    }

    pub(crate) fn req_child<'s>(&'s self, name: &str) -> Result<Node<'s>, XmlError> {
        self.child(name)?.ok_or_else(|| XmlError::MissingElement {
            path: self.child_path(name),
        })
    }

    /// A part of the envelope (`MessageHeader`, `MessageBody`): exactly one, always strict.
    pub(crate) fn envelope<'s>(&'s self, name: &str) -> Result<Node<'s>, XmlError> {
        self.opt_envelope(name)?
            .ok_or_else(|| XmlError::MissingElement {
                path: self.child_path(name),
            })
    }

    /// An envelope part that may be absent (a result body after an abnormal end); never two.
    pub(crate) fn opt_envelope<'s>(&'s self, name: &str) -> Result<Option<Node<'s>>, XmlError> {
        let mut found = self.el.children.iter().filter(|c| c.name == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(XmlError::InvalidValue {
                path: self.child_path(name),
                value: String::new(),
                reason: "the message has this part more than once".into(),
            });
        }
        Ok(first.map(|el| self.wrap(el)))
    }

    /// Every child called `name`, in document order.
    pub(crate) fn children<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Node<'s>> + 's {
        self.el
            .children
            .iter()
            .filter(move |c| c.name == name)
            .map(move |el| self.wrap(el))
    }

    /// The items of a list, whichever shape the file uses: nested in one `container`
    /// (`SpecificDiseasesCertificateList/SpecificDiseasesCertificateInfo`), with the container
    /// repeated, or `item` repeated directly in this node (sources disagree, see the corpus
    /// README). Document order within each shape; nested items first.
    pub(crate) fn list<'s>(&'s self, container: &'s str, item: &'s str) -> Vec<ListItem<'s>> {
        let mut out = Vec::new();
        for list in self.children(container) {
            for el in list.el.children.iter().filter(|c| c.name == item) {
                out.push(ListItem {
                    container: Some(list),
                    el,
                });
            }
        }
        for el in self.el.children.iter().filter(|c| c.name == item) {
            out.push(ListItem {
                container: None,
                el,
            });
        }
        out
    }

    /// The text of child `name`; `None` when it is absent, empty or only whitespace.
    pub(crate) fn text(&self, name: &str) -> Result<Option<Leaf<'a>>, XmlError> {
        Ok(self
            .single(name)?
            .inspect(|el| self.visit(el))
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

    /// Reads an optional leaf with `read`; a value it refuses is tolerated as absent with the
    /// warning `on_fail` (strict nodes: the error).
    fn tolerant<T>(
        &self,
        name: &str,
        read: impl FnOnce(&Leaf<'a>) -> Result<T, XmlError>,
        on_fail: impl FnOnce(&Leaf<'a>) -> WarningKind,
    ) -> Result<Option<T>, XmlError> {
        let Some(leaf) = self.text(name)? else {
            return Ok(None);
        };
        match read(&leaf) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                self.tolerate(leaf.path.clone(), on_fail(&leaf), || e)?;
                Ok(None)
            }
        }
    }

    // Typed shortcuts for optional children.

    pub(crate) fn opt_string(&self, name: &str) -> Result<Option<String>, XmlError> {
        Ok(self.text(name)?.map(|l| l.raw.to_owned()))
    }

    /// Identifiers stay strict: a wrong check digit is an error, never a warning.
    pub(crate) fn opt_id<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Result<T, IdError>,
    ) -> Result<Option<T>, XmlError> {
        self.text(name)?.map(|l| l.id(parse)).transpose()
    }

    /// An optional code: unknown codes are read as absent with a warning.
    pub(crate) fn opt_code<T>(&self, name: &str) -> Result<Option<T>, XmlError>
    where
        T: for<'x> TryFrom<&'x str, Error = UnknownCode>,
    {
        self.tolerant(name, Leaf::code, |leaf| {
            match T::try_from(leaf.trimmed()) {
                Err(e) => WarningKind::UnknownCode {
                    code: e.code,
                    table: e.table,
                },
                // `Leaf::code` failed, so the table refused it.
                Ok(_) => WarningKind::Unreadable {
                    expected: "a known code",
                },
            }
        })
    }

    pub(crate) fn opt_date(&self, name: &str) -> Result<Option<Date>, XmlError> {
        self.tolerant(name, Leaf::date, |_| WarningKind::Unreadable {
            expected: "a date yyyyMMdd",
        })
    }

    pub(crate) fn opt_datetime(&self, name: &str) -> Result<Option<PrimitiveDateTime>, XmlError> {
        self.tolerant(name, Leaf::datetime, |_| WarningKind::Unreadable {
            expected: "a time yyyyMMddHHmmss",
        })
    }

    pub(crate) fn opt_flag(&self, name: &str) -> Result<Option<bool>, XmlError> {
        self.tolerant(name, Leaf::flag, |_| WarningKind::Unreadable {
            expected: "0 or 1",
        })
    }

    /// An optional leaf checked by `check` (e.g. a 3-digit percentage): kept as written
    /// (trimmed) when it passes, else read as absent with a warning naming `expected`.
    pub(crate) fn opt_checked(
        &self,
        name: &str,
        check: impl Fn(&str) -> bool,
        expected: &'static str,
    ) -> Result<Option<String>, XmlError> {
        self.tolerant(
            name,
            |leaf| {
                let v = leaf.trimmed();
                if check(v) {
                    Ok(v.to_owned())
                } else {
                    Err(leaf.invalid(format!("expected {expected}")))
                }
            },
            |_| WarningKind::Unreadable { expected },
        )
    }

    /// Marks this element and everything inside it as read: for a part the reader rejects as
    /// a whole (a bad row answered with its error), whose elements are not "unknown".
    pub(crate) fn skip(&self) {
        fn all(el: &Element, sink: &Sink) {
            sink.visit(el);
            for c in &el.children {
                all(c, sink);
            }
        }
        if let Some(sink) = self.sink {
            all(self.el, sink);
        }
    }

    /// Records that `name` was read here although the corpus puts it at `expected`.
    pub(crate) fn misplaced(&self, name: &str, expected: &'static str) -> Result<(), XmlError> {
        let path = self.child_path(name);
        self.tolerate(path.clone(), WarningKind::Misplaced { expected }, || {
            XmlError::InvalidValue {
                path,
                value: String::new(),
                reason: format!("expected {expected}"),
            }
        })
    }

    /// Records a tolerated problem of this node's own (e.g. a consent time without its flag:
    /// `Unreadable`); strict nodes return `strict` instead.
    pub(crate) fn warn(
        &self,
        name: &str,
        kind: WarningKind,
        strict: impl FnOnce() -> XmlError,
    ) -> Result<(), XmlError> {
        self.tolerate(self.child_path(name), kind, strict)
    }
}

/// One item of a [`Node::list`], made a [`Node`] with [`ListItem::node`] (so its path names
/// its container and position).
pub(crate) struct ListItem<'s> {
    container: Option<Node<'s>>,
    el: &'s Element,
}

impl<'s> ListItem<'s> {
    /// The item as a node whose parent is `parent` (the list's owner, when the item is flat).
    pub(crate) fn node<'p>(&'p self, parent: &'p Node<'s>) -> Node<'p> {
        let parent = self.container.as_ref().unwrap_or(parent);
        parent.wrap(self.el)
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
