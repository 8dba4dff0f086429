//! How the dashboard writes times, dates and numbers: Asia/Tokyo, with the Japanese era beside
//! dates where staff expect it.

use time::macros::format_description;
use time::{Date, OffsetDateTime};

use onshi_domain::calendar::JST;

/// `2026-12-02 14:05` in Tokyo time.
pub fn tokyo(at: OffsetDateTime) -> String {
    at.to_offset(JST)
        .format(format_description!("[year]-[month]-[day] [hour]:[minute]"))
        .unwrap_or_else(|_| at.to_string())
}

/// Like [`tokyo`], or an em dash for "never".
pub(crate) fn tokyo_or_dash(at: Option<OffsetDateTime>) -> String {
    at.map_or_else(|| "—".to_string(), tokyo)
}

/// `2026-12-02（令和8年12月2日）`.
pub(crate) fn date_with_era(day: Date) -> String {
    format!(
        "{}（{}）",
        day.format(format_description!("[year]-[month]-[day]"))
            .unwrap_or_else(|_| day.to_string()),
        onshi_domain::era::wareki(day)
    )
}

/// The Tokyo calendar day of an instant.
pub fn tokyo_day(at: OffsetDateTime) -> Date {
    at.to_offset(JST).date()
}

/// `12,345`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn times_are_written_in_tokyo_and_dates_with_their_era() {
        assert_eq!(tokyo(datetime!(2026-12-01 15:30 UTC)), "2026-12-02 00:30");
        assert_eq!(tokyo_or_dash(None), "—");
        assert_eq!(
            date_with_era(date!(2026 - 12 - 02)),
            "2026-12-02（令和8年12月2日）"
        );
        assert_eq!(
            tokyo_day(datetime!(2026-12-01 15:30 UTC)),
            date!(2026 - 12 - 02)
        );
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(-1234567), "-1,234,567");
    }
}
