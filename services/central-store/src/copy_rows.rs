//! Rows in PostgreSQL's binary `COPY` format, encoded before the transaction that sends them.
//!
//! `tokio_postgres::binary_copy::BinaryCopyInWriter` encodes while it sends, so PostgreSQL sits
//! in the middle of a `COPY` (holding its transaction open) for as long as central takes to
//! serialise each event, and for every wake-up of central's task on a busy runtime. Ingest
//! encodes each batch's rows in the session that received it (`BatchWrite::new`), and a group
//! sends its batches' rows as one message: PostgreSQL no longer waits on the encoding. The
//! format is the one `BinaryCopyInWriter` writes (PostgreSQL's documentation,
//! "COPY", "Binary Format").

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type};

use super::StoreError;

/// What a binary `COPY` stream begins with: the signature, no flags, no header extension.
pub(crate) const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// What a binary `COPY` stream ends with: a row of -1 columns.
pub(crate) const TRAILER: &[u8] = &[0xff, 0xff];

/// Appends one row to `buf`: `values[i]` encoded as `types[i]`.
pub(crate) fn put_row(
    buf: &mut BytesMut,
    values: &[&(dyn ToSql + Sync)],
    types: &[Type],
) -> Result<(), StoreError> {
    assert_eq!(values.len(), types.len(), "one type for each column");
    buf.put_i16(i16::try_from(values.len()).expect("a row has fewer than 32,768 columns"));
    for (value, ty) in values.iter().zip(types) {
        let at = buf.len();
        buf.put_i32(0);
        let length = match value
            .to_sql_checked(ty, buf)
            .map_err(|error| StoreError::Encode(error.to_string()))?
        {
            IsNull::Yes => -1,
            IsNull::No => i32::try_from(buf.len() - at - 4)
                .map_err(|_| StoreError::Encode(format!("a {ty} value over 2 GiB")))?,
        };
        buf[at..at + 4].copy_from_slice(&length.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_its_column_count_then_each_value_with_its_length() {
        let mut buf = BytesMut::new();
        let text = "ab";
        let none: Option<i64> = None;
        put_row(
            &mut buf,
            &[&7i64, &text, &none],
            &[Type::INT8, Type::TEXT, Type::INT8],
        )
        .unwrap();
        let expected: Vec<u8> = [
            &3i16.to_be_bytes()[..],
            &8i32.to_be_bytes(),
            &7i64.to_be_bytes(),
            &2i32.to_be_bytes(),
            b"ab",
            &(-1i32).to_be_bytes(),
        ]
        .concat();
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error_not_a_row() {
        let mut buf = BytesMut::new();
        let error = put_row(&mut buf, &[&7i64], &[Type::TEXT]).unwrap_err();
        assert!(matches!(error, StoreError::Encode(_)), "{error}");
    }

    #[test]
    fn the_stream_is_framed_by_signature_and_end_marker() {
        assert_eq!(&HEADER[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&HEADER[11..], &[0u8; 8]);
        assert_eq!(TRAILER, &(-1i16).to_be_bytes());
    }
}
