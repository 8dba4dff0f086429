//! Lowercase hexadecimal, the one spelling of hashes and keyed references in this project.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes lowercase hex; `None` for an odd length or any other character (uppercase included,
/// so that one value has one spelling).
pub fn decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| DIGITS.iter().position(|d| *d == c).map(|p| p as u8);
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(decode(&encode(&bytes)), Some(bytes));
        }

        #[test]
        fn decoding_never_panics(s in ".{0,40}") {
            let _ = decode(&s);
        }
    }

    #[test]
    fn refuses_uppercase_and_odd_lengths() {
        assert_eq!(decode("AB"), None);
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("0f"), Some(vec![15]));
    }
}
