//! Zipped result files: the national system may answer a batch's results (`OQSmuquc02res`)
//! as a zip archive holding the result XML (domain notes §3, "Results may arrive zipped"). What
//! the real archive holds is not public (UNCONFIRMED); this reads what any zip writer makes of
//! one file: a single-disk archive, its entry stored or deflated, no encryption, no zip64.
//!
//! [`read_xml_entry`] reads bytes from outside (the terminal's `res` folder), so it trusts
//! nothing: every offset and length is checked against the archive, the declared size against
//! a limit before anything is inflated, the inflated size and CRC-32 against the directory.
//! [`single_entry`] writes such an archive (the simulator's zipped results, tests).

use std::borrow::Cow;

/// A local file header's signature: how a zip archive begins.
pub const LOCAL_HEADER: &[u8; 4] = b"PK\x03\x04";
const CENTRAL_HEADER: &[u8; 4] = b"PK\x01\x02";
const END_OF_DIRECTORY: &[u8; 4] = b"PK\x05\x06";
const END_LEN: usize = 22;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;

/// Why an archive cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    #[error("not a whole zip archive: no end-of-central-directory record")]
    NoEnd,
    #[error("the zip archive is cut short or inconsistent: {0}")]
    Corrupt(&'static str),
    #[error("the zip archive holds no file")]
    Empty,
    #[error("the zip archive uses what this reader does not support: {0}")]
    Unsupported(&'static str),
    #[error("the zipped file is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the zipped file does not match its CRC-32")]
    Crc,
}

/// How [`single_entry`] stores the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Stored,
    Deflated,
}

impl Method {
    fn code(self) -> u16 {
        match self {
            Method::Stored => 0,
            Method::Deflated => 8,
        }
    }
}

/// Whether `bytes` is (the beginning of) a zip archive.
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(LOCAL_HEADER)
}

/// The result document in `bytes`: the bytes themselves, or the XML file of a zip archive
/// ([`read_xml_entry`]), at most `limit` bytes once inflated.
pub fn unzipped(bytes: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, ZipError> {
    if is_zip(bytes) {
        read_xml_entry(bytes, limit).map(|(_, data)| Cow::Owned(data))
    } else {
        Ok(Cow::Borrowed(bytes))
    }
}

/// The archive's first file whose name ends in `.xml` (any case), else its first file: its
/// name and contents (at most `limit` bytes).
pub fn read_xml_entry(bytes: &[u8], limit: usize) -> Result<(String, Vec<u8>), ZipError> {
    let end = end_of_directory(bytes)?;
    if end.entries == 0 {
        return Err(ZipError::Empty);
    }
    let directory = slice(bytes, end.offset, end.size, "central directory")?;
    let mut chosen: Option<Central> = None;
    let mut at = 0usize;
    for _ in 0..end.entries {
        let entry = central(directory, at)?;
        at = entry.next;
        let is_xml = entry.name.to_ascii_lowercase().ends_with(b".xml");
        if chosen.is_none() || is_xml {
            let xml_already = chosen
                .as_ref()
                .is_some_and(|c| c.name.to_ascii_lowercase().ends_with(b".xml"));
            if !xml_already {
                chosen = Some(entry);
            }
        }
    }
    let entry = chosen.ok_or(ZipError::Empty)?;
    let data = contents(bytes, &entry, limit)?;
    Ok((String::from_utf8_lossy(&entry.name).into_owned(), data))
}

/// A zip archive of one file, `name` holding `data`, stored or deflated.
pub fn single_entry(name: &str, data: &[u8], method: Method) -> Vec<u8> {
    let packed: Cow<'_, [u8]> = match method {
        Method::Stored => Cow::Borrowed(data),
        Method::Deflated => Cow::Owned(miniz_oxide::deflate::compress_to_vec(data, 6)),
    };
    let crc = crc32(data);
    let name = name.as_bytes();
    let sizes = |out: &mut Vec<u8>| {
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&u32_of(packed.len()).to_le_bytes());
        out.extend_from_slice(&u32_of(data.len()).to_le_bytes());
        out.extend_from_slice(&u16_of(name.len()).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra field
    };
    // Version 2.0, no flags, the method, 1980-01-01 00:00 (DOS time and date).
    let common = [20u16, 0, method.code(), 0, 0x21];
    let mut out = Vec::with_capacity(packed.len() + 2 * name.len() + 100);
    out.extend_from_slice(LOCAL_HEADER);
    for v in common {
        out.extend_from_slice(&v.to_le_bytes());
    }
    sizes(&mut out);
    out.extend_from_slice(name);
    out.extend_from_slice(&packed);
    let directory_at = out.len();
    out.extend_from_slice(CENTRAL_HEADER);
    out.extend_from_slice(&20u16.to_le_bytes()); // made by
    for v in common {
        out.extend_from_slice(&v.to_le_bytes());
    }
    sizes(&mut out);
    // Comment length, disk, internal and external attributes, the local header's offset.
    out.extend_from_slice(&[0u8; 2 + 2 + 2 + 4 + 4]);
    out.extend_from_slice(name);
    let directory_len = out.len() - directory_at;
    out.extend_from_slice(END_OF_DIRECTORY);
    out.extend_from_slice(&[0u8; 4]); // this disk, the directory's disk
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&u32_of(directory_len).to_le_bytes());
    out.extend_from_slice(&u32_of(directory_at).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment
    out
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn u16_of(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

struct End {
    entries: u16,
    size: usize,
    offset: usize,
}

/// The end-of-central-directory record: the last one whose comment reaches the end exactly.
fn end_of_directory(bytes: &[u8]) -> Result<End, ZipError> {
    if bytes.len() < END_LEN {
        return Err(ZipError::NoEnd);
    }
    let earliest = bytes.len().saturating_sub(END_LEN + usize::from(u16::MAX));
    let mut at = bytes.len() - END_LEN;
    loop {
        if &bytes[at..at + 4] == END_OF_DIRECTORY {
            let comment = usize::from(le16(bytes, at + 20));
            if at + END_LEN + comment == bytes.len() {
                let disk = le16(bytes, at + 4);
                let directory_disk = le16(bytes, at + 6);
                let on_disk = le16(bytes, at + 8);
                let entries = le16(bytes, at + 10);
                let size = le32(bytes, at + 12);
                let offset = le32(bytes, at + 16);
                if disk != 0 || directory_disk != 0 || on_disk != entries {
                    return Err(ZipError::Unsupported("an archive on several disks"));
                }
                if entries == u16::MAX || size == u32::MAX || offset == u32::MAX {
                    return Err(ZipError::Unsupported("zip64"));
                }
                return Ok(End {
                    entries,
                    size: size as usize,
                    offset: offset as usize,
                });
            }
        }
        if at == earliest {
            return Err(ZipError::NoEnd);
        }
        at -= 1;
    }
}

struct Central {
    flags: u16,
    method: u16,
    crc: u32,
    packed: usize,
    size: usize,
    name: Vec<u8>,
    local: usize,
    /// Where the next directory entry starts.
    next: usize,
}

fn central(directory: &[u8], at: usize) -> Result<Central, ZipError> {
    let fixed = slice(directory, at, CENTRAL_LEN, "central directory entry")?;
    if &fixed[..4] != CENTRAL_HEADER {
        return Err(ZipError::Corrupt("central directory entry signature"));
    }
    let name_len = usize::from(le16(fixed, 28));
    let extra_len = usize::from(le16(fixed, 30));
    let comment_len = usize::from(le16(fixed, 32));
    let name = slice(directory, at + CENTRAL_LEN, name_len, "file name")?.to_vec();
    let next = at + CENTRAL_LEN + name_len + extra_len + comment_len;
    if next > directory.len() {
        return Err(ZipError::Corrupt("central directory entry length"));
    }
    Ok(Central {
        flags: le16(fixed, 8),
        method: le16(fixed, 10),
        crc: le32(fixed, 16),
        packed: le32(fixed, 20) as usize,
        size: le32(fixed, 24) as usize,
        name,
        local: le32(fixed, 42) as usize,
        next,
    })
}

/// The entry's contents, inflated and checked.
fn contents(bytes: &[u8], entry: &Central, limit: usize) -> Result<Vec<u8>, ZipError> {
    if entry.flags & 0x0001 != 0 {
        return Err(ZipError::Unsupported("encryption"));
    }
    if entry.packed == u32::MAX as usize || entry.size == u32::MAX as usize {
        return Err(ZipError::Unsupported("zip64"));
    }
    if entry.size > limit {
        return Err(ZipError::TooLarge { limit });
    }
    let local = slice(bytes, entry.local, LOCAL_LEN, "local file header")?;
    if &local[..4] != LOCAL_HEADER {
        return Err(ZipError::Corrupt("local file header signature"));
    }
    let start =
        entry.local + LOCAL_LEN + usize::from(le16(local, 26)) + usize::from(le16(local, 28));
    let packed = slice(bytes, start, entry.packed, "file data")?;
    let data = match entry.method {
        0 => packed.to_vec(),
        8 => miniz_oxide::inflate::decompress_to_vec_with_limit(packed, limit).map_err(
            |e| match e.status {
                miniz_oxide::inflate::TINFLStatus::HasMoreOutput => ZipError::TooLarge { limit },
                _ => ZipError::Corrupt("deflated data"),
            },
        )?,
        _ => {
            return Err(ZipError::Unsupported(
                "a compression method other than stored or deflate",
            ));
        }
    };
    if data.len() != entry.size {
        return Err(ZipError::Corrupt("file size"));
    }
    if crc32(&data) != entry.crc {
        return Err(ZipError::Crc);
    }
    Ok(data)
}

/// `len` bytes of `bytes` from `at`, or why not.
fn slice<'a>(
    bytes: &'a [u8],
    at: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], ZipError> {
    at.checked_add(len)
        .and_then(|end| bytes.get(at..end))
        .ok_or(ZipError::Corrupt(what))
}

fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// CRC-32 (IEEE 802.3, reflected, the zip format's), bit by bit through a table built once.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (n, slot) in table.iter_mut().enumerate() {
            let mut c = n as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        table
    });
    !data.iter().fold(!0u32, |crc, b| {
        table[((crc ^ u32::from(*b)) & 0xFF) as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const XML: &[u8] = b"<?xml version=\"1.0\"?><XmlMsg><MessageHeader/></XmlMsg>";

    #[test]
    fn crc32_matches_the_published_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn stored_and_deflated_archives_read_back() {
        for method in [Method::Stored, Method::Deflated] {
            let zip = single_entry("OQSmuquc02res_1.xml", XML, method);
            assert!(is_zip(&zip));
            let (name, data) = read_xml_entry(&zip, 1 << 20).unwrap();
            assert_eq!(name, "OQSmuquc02res_1.xml");
            assert_eq!(data, XML);
            assert_eq!(unzipped(&zip, 1 << 20).unwrap().as_ref(), XML);
        }
        assert_eq!(
            unzipped(XML, 10).unwrap().as_ref(),
            XML,
            "not a zip: as it is"
        );
    }

    /// An archive as Info-ZIP's `zip` 3.0 writes it (deflated, with a data descriptor: sizes and
    /// CRC after the data, zeros in the local header): `zip -X -9 -fd z.zip a.xml` of
    /// `<a>` + `<b>onshi</b>` × 12 + `</a>`.
    #[test]
    fn an_archive_written_by_another_tool_reads() {
        let zip: &[u8] = &[
            0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x08, 0x00, 0x08, 0x00, 0x59, 0xb2, 0x85, 0x5d,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x97, 0x00, 0x00, 0x00, 0x05, 0x00,
            0x00, 0x00, 0x61, 0x2e, 0x78, 0x6d, 0x6c, 0xb3, 0x49, 0xb4, 0xb3, 0x49, 0xb2, 0xcb,
            0xcf, 0x2b, 0xce, 0xc8, 0xb4, 0xd1, 0x4f, 0x1a, 0x1c, 0x6c, 0xfd, 0x44, 0x3b, 0x00,
            0x50, 0x4b, 0x07, 0x08, 0x26, 0xe2, 0x37, 0xfb, 0x15, 0x00, 0x00, 0x00, 0x97, 0x00,
            0x00, 0x00, 0x50, 0x4b, 0x01, 0x02, 0x1e, 0x03, 0x14, 0x00, 0x08, 0x00, 0x08, 0x00,
            0x59, 0xb2, 0x85, 0x5d, 0x26, 0xe2, 0x37, 0xfb, 0x15, 0x00, 0x00, 0x00, 0x97, 0x00,
            0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
            0xa4, 0x81, 0x00, 0x00, 0x00, 0x00, 0x61, 0x2e, 0x78, 0x6d, 0x6c, 0x50, 0x4b, 0x05,
            0x06, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x33, 0x00, 0x00, 0x00, 0x48,
            0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let (name, data) = read_xml_entry(zip, 1000).unwrap();
        assert_eq!(name, "a.xml");
        let expected = format!("<a>{}</a>", "<b>onshi</b>".repeat(12));
        assert_eq!(data, expected.as_bytes());
    }

    #[test]
    fn what_cannot_be_read_says_why() {
        let zip = single_entry("r.xml", XML, Method::Deflated);
        assert_eq!(
            read_xml_entry(&zip, 10),
            Err(ZipError::TooLarge { limit: 10 })
        );
        assert_eq!(
            read_xml_entry(&zip[..zip.len() - 1], 1 << 20),
            Err(ZipError::NoEnd)
        );
        let mut flipped = single_entry("r.xml", XML, Method::Stored);
        flipped[40] ^= 0x01;
        assert_eq!(read_xml_entry(&flipped, 1 << 20), Err(ZipError::Crc));
        let mut encrypted = single_entry("r.xml", XML, Method::Stored);
        let directory = encrypted.len() - 22 - 46 - 5;
        encrypted[directory + 8] |= 1;
        assert_eq!(
            read_xml_entry(&encrypted, 1 << 20),
            Err(ZipError::Unsupported("encryption"))
        );
        assert_eq!(read_xml_entry(b"PK\x03\x04", 10), Err(ZipError::NoEnd));
    }

    proptest! {
        /// Whatever the file and the method, the archive reads back as written.
        #[test]
        fn archives_round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096), deflate in any::<bool>()) {
            let method = if deflate { Method::Deflated } else { Method::Stored };
            let zip = single_entry("x.xml", &data, method);
            prop_assert_eq!(read_xml_entry(&zip, 1 << 20).unwrap().1, data);
        }

        /// Bytes from outside never panic the reader, and never read past the limit.
        #[test]
        fn any_bytes_get_an_answer_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut zip = LOCAL_HEADER.to_vec();
            zip.extend_from_slice(&bytes);
            if let Ok((_, data)) = read_xml_entry(&zip, 64) {
                prop_assert!(data.len() <= 64);
            }
            let _ = read_xml_entry(&bytes, 64);
        }

        /// A real archive with any byte changed or cut anywhere is read right or refused.
        #[test]
        fn damaged_archives_are_refused_or_read_right(at in any::<prop::sample::Index>(), flip in 1u8.., cut in any::<bool>()) {
            let zip = single_entry("r.xml", XML, Method::Deflated);
            let i = at.index(zip.len());
            let damaged = if cut { zip[..i].to_vec() } else {
                let mut z = zip.clone();
                z[i] ^= flip;
                z
            };
            if let Ok((_, data)) = read_xml_entry(&damaged, 1 << 20) {
                prop_assert_eq!(data, XML);
            }
        }
    }
}
