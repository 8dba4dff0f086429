//! The property every message target checks, in one place: bytes that read as a message write
//! back (in both encodings) to a file that reads as the same value, with no warning when the
//! first reading had none, and writing that value again gives the same bytes. Bytes that do not
//! read give an error whose message renders.

/// `$ty` is a message type with `read_xml` (the value and its warnings) and `to_xml`.
#[allow(unused_macros)] // each target uses the macros its kinds need
macro_rules! check_round_trip {
    ($ty:ty, $data:expr) => {{
        match <$ty>::read_xml($data) {
            Ok(read) => {
                for warning in &read.warnings {
                    let _ = warning.to_string();
                }
                let clean = read.warnings.is_empty();
                let value = read.value;
                for enc in [
                    onshi_domain::xml::XmlEncoding::Utf8,
                    onshi_domain::xml::XmlEncoding::ShiftJis,
                ] {
                    let written = value.to_xml(enc);
                    let again = match <$ty>::read_xml(&written) {
                        Ok(again) => again,
                        Err(error) => panic!(
                            "{} written as {enc:?} does not read back: {error}\n{}",
                            stringify!($ty),
                            String::from_utf8_lossy(&written)
                        ),
                    };
                    if clean {
                        assert_eq!(
                            again.warnings,
                            vec![],
                            "a clean value wrote a file with warnings"
                        );
                    }
                    assert_eq!(
                        again.value,
                        value,
                        "{} changed on the round trip",
                        stringify!($ty)
                    );
                    assert_eq!(again.value.to_xml(enc), written, "writing is not stable");
                }
            }
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }};
}

/// As [`check_round_trip`] for the kinds read without warnings (`from_xml` only).
#[allow(unused_macros)] // each target uses the macros its kinds need
macro_rules! check_round_trip_plain {
    ($ty:ty, $data:expr) => {{
        match <$ty>::from_xml($data) {
            Ok(value) => {
                for enc in [
                    onshi_domain::xml::XmlEncoding::Utf8,
                    onshi_domain::xml::XmlEncoding::ShiftJis,
                ] {
                    let written = value.to_xml(enc);
                    let again = match <$ty>::from_xml(&written) {
                        Ok(again) => again,
                        Err(error) => panic!(
                            "{} written as {enc:?} does not read back: {error}\n{}",
                            stringify!($ty),
                            String::from_utf8_lossy(&written)
                        ),
                    };
                    assert_eq!(
                        again,
                        value,
                        "{} changed on the round trip",
                        stringify!($ty)
                    );
                    assert_eq!(again.to_xml(enc), written, "writing is not stable");
                }
            }
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }};
}
