//! The check digit used by insurer numbers (保険者番号) and medical institution codes
//! (医療機関等コード).
//!
//! Algorithm (see `shared/domain/onshi.md` §5): take every digit but the check digit; starting
//! from the rightmost of them, multiply alternately by 2, 1, 2, 1, …; replace each two-digit
//! product by the sum of its digits; add everything up; the check digit is
//! `(10 − sum mod 10) mod 10`.
//!
//! The weights are anchored at the right, so leading zeros never change the check digit: a
//! 6-digit national health insurance number keeps the same check digit when it is written
//! zero-padded to 8 characters. [`crate::ids::InsurerNumber`] relies on this.

/// Computes the check digit for `body` (all digits except the check digit).
///
/// Returns `None` when `body` is empty or contains anything but ASCII digits, because a check
/// digit of such a string would mean nothing.
pub fn compute(body: &str) -> Option<u8> {
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            let weight = if i % 2 == 0 { 2 } else { 1 };
            let product = d * weight;
            product / 10 + product % 10
        })
        .sum();
    // `sum % 10` is below 10, so the result fits in a u8.
    Some(((10 - sum % 10) % 10) as u8)
}

/// True when `full` is all ASCII digits, at least two of them, and its last digit is the check
/// digit of the others.
pub fn is_valid(full: &str) -> bool {
    if full.len() < 2 || !full.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let (body, last) = full.split_at(full.len() - 1);
    compute(body) == Some(last.as_bytes()[0] - b'0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The valid examples of `shared/domain/onshi.md` §5.
    const VALID: &[&str] = &[
        "138156",
        "6138093",
        "6110852",
        "63132286",
        "31130685",
        "39131156",
        "39131131",
        "39131040",
        "80137151",
        "41139155",
        "81137150",
        // The example medical institution code.
        "3410712362",
    ];

    /// The invalid examples of `shared/domain/onshi.md` §5.
    const INVALID: &[&str] = &["138157", "6138092", "6110854", "63132280", "31130683"];

    #[test]
    fn documented_valid_examples_are_valid() {
        for n in VALID {
            assert!(is_valid(n), "{n} should be valid");
            let (body, last) = n.split_at(n.len() - 1);
            assert_eq!(compute(body), last.parse::<u8>().ok(), "{n}");
        }
    }

    #[test]
    fn documented_invalid_examples_are_invalid() {
        for n in INVALID {
            assert!(!is_valid(n), "{n} should be invalid");
        }
    }

    #[test]
    fn worked_example() {
        // 13815: 5×2=10→1, 1×1=1, 8×2=16→7, 3×1=3, 1×2=2; sum 14; (10−4) mod 10 = 6.
        assert_eq!(compute("13815"), Some(6));
        // A sum that is a multiple of 10 gives 0, not 10.
        // 19: 9×2=18→9, 1×1=1; sum 10.
        assert_eq!(compute("19"), Some(0));
        assert_eq!(compute("5"), Some(9));
    }

    #[test]
    fn non_digits_are_rejected() {
        assert_eq!(compute(""), None);
        assert_eq!(compute("12a4"), None);
        assert_eq!(compute("１２３"), None);
        assert_eq!(compute(" 123"), None);
        assert!(!is_valid(""));
        assert!(!is_valid("0"));
        assert!(!is_valid("13815x"));
        assert!(!is_valid("１３８１５６"));
    }

    #[test]
    fn leading_zeros_do_not_change_the_check_digit() {
        assert_eq!(compute("13815"), compute("0013815"));
        assert!(is_valid("00138156"));
    }

    proptest! {
        #[test]
        fn appending_the_check_digit_gives_a_valid_number(body in "[0-9]{1,20}") {
            let check = compute(&body).expect("digits only");
            prop_assert!(check <= 9);
            let full = format!("{body}{check}");
            prop_assert!(is_valid(&full), "{} should be valid", full);
        }

        #[test]
        fn changing_any_single_digit_makes_it_invalid(
            body in "[0-9]{1,20}",
            position in any::<prop::sample::Index>(),
            delta in 1u8..=9,
        ) {
            let check = compute(&body).expect("digits only");
            let full = format!("{body}{check}");
            let mut bytes = full.into_bytes();
            let i = position.index(bytes.len());
            bytes[i] = b'0' + (bytes[i] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).expect("ascii");
            prop_assert!(!is_valid(&changed), "{changed} should be invalid");
        }

        #[test]
        fn never_panics(s in ".*") {
            let _ = compute(&s);
            let _ = is_valid(&s);
        }
    }
}
