//! Japanese business days: weekends and national holidays (国民の祝日) excluded.
//!
//! Holidays are computed from the Act on National Holidays as amended up to 2020: fixed dates,
//! the "Happy Monday" days, the equinoxes (by the standard approximation, valid 1980–2099),
//! substitute holidays (振替休日: a holiday on a Sunday moves to the next non-holiday) and
//! citizens' holidays (国民の休日: a weekday between two holidays). The one-off moves of 2020 and
//! 2021 (Olympics) are included. Supported years: 2020–2099; outside them the calendar refuses
//! rather than guess.

use time::{Date, Duration, Month, OffsetDateTime, UtcOffset, Weekday};

/// Japan Standard Time (Asia/Tokyo): +09:00 all year, no daylight saving time. The national
/// system's dates and times, and every date a Japanese form or report shows, are JST wall clock.
pub const JST: UtcOffset = match UtcOffset::from_hms(9, 0, 0) {
    Ok(offset) => offset,
    Err(_) => panic!("+09:00 is a valid offset"),
};

/// Today's date in Japan.
pub fn today_jst() -> Date {
    OffsetDateTime::now_utc().to_offset(JST).date()
}

pub const FIRST_YEAR: i32 = 2020;
pub const LAST_YEAR: i32 = 2099;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the holiday calendar covers {FIRST_YEAR}–{LAST_YEAR}; {0} is outside it")]
pub struct OutOfRange(pub i32);

fn check(year: i32) -> Result<(), OutOfRange> {
    if (FIRST_YEAR..=LAST_YEAR).contains(&year) {
        Ok(())
    } else {
        Err(OutOfRange(year))
    }
}

fn date(year: i32, month: Month, day: u8) -> Date {
    Date::from_calendar_date(year, month, day).expect("a valid holiday date")
}

/// The `n`th Monday (1-based) of a month.
fn nth_monday(year: i32, month: Month, n: u8) -> Date {
    let first = date(year, month, 1);
    let offset = (7 + 1 - first.weekday().number_from_monday() as i64) % 7;
    first + Duration::days(offset + 7 * (i64::from(n) - 1))
}

fn equinox(year: i32, base: f64, month: Month) -> Date {
    let y = f64::from(year - 1980);
    let day = (base + 0.242194 * y - (y / 4.0).floor()).floor() as u8;
    date(year, month, day)
}

/// The named holidays of a year, before substitute and citizens' holidays.
fn named_holidays(year: i32) -> Vec<Date> {
    use Month::*;
    let mut days = vec![
        date(year, January, 1),
        nth_monday(year, January, 2),
        date(year, February, 11),
        date(year, February, 23),
        equinox(year, 20.8431, March),
        date(year, April, 29),
        date(year, May, 3),
        date(year, May, 4),
        date(year, May, 5),
        nth_monday(year, September, 3),
        equinox(year, 23.2488, September),
        date(year, November, 3),
        date(year, November, 23),
    ];
    // Marine Day, Mountain Day and Sports Day moved for the Tokyo Olympics in 2020 and 2021.
    match year {
        2020 => days.extend([
            date(2020, July, 23),
            date(2020, July, 24),
            date(2020, August, 10),
        ]),
        2021 => days.extend([
            date(2021, July, 22),
            date(2021, July, 23),
            date(2021, August, 8),
        ]),
        _ => days.extend([
            nth_monday(year, July, 3),
            date(year, August, 11),
            nth_monday(year, October, 2),
        ]),
    }
    days.sort();
    days
}

/// Every national holiday of `year`, in order.
pub fn holidays(year: i32) -> Result<Vec<Date>, OutOfRange> {
    check(year)?;
    let named = named_holidays(year);
    let mut all = named.clone();
    // Substitute holidays: a named holiday on a Sunday makes the next day that is not itself a
    // holiday a holiday.
    for day in &named {
        if day.weekday() == Weekday::Sunday {
            let mut next = *day + Duration::days(1);
            while all.contains(&next) {
                next += Duration::days(1);
            }
            all.push(next);
        }
    }
    // Citizens' holidays: a day that is not a holiday or a Sunday, between two named holidays.
    for pair in named.windows(2) {
        let between = pair[0] + Duration::days(1);
        if pair[1] - pair[0] == Duration::days(2)
            && between.weekday() != Weekday::Sunday
            && !all.contains(&between)
        {
            all.push(between);
        }
    }
    all.sort();
    all.dedup();
    Ok(all)
}

pub fn is_holiday(day: Date) -> Result<bool, OutOfRange> {
    Ok(holidays(day.year())?.contains(&day))
}

pub fn is_business_day(day: Date) -> Result<bool, OutOfRange> {
    Ok(!matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) && !is_holiday(day)?)
}

/// The business day `n` business days before `day` (n = 0: `day` itself if it is one, else the
/// business day before it). Deadlines "at least n business days before" use this.
pub fn business_days_before(day: Date, n: u32) -> Result<Date, OutOfRange> {
    let mut current = day;
    while !is_business_day(current)? {
        current -= Duration::days(1);
    }
    for _ in 0..n {
        current -= Duration::days(1);
        while !is_business_day(current)? {
            current -= Duration::days(1);
        }
    }
    Ok(current)
}

/// The business day `n` business days after `day`.
pub fn business_days_after(day: Date, n: u32) -> Result<Date, OutOfRange> {
    let mut current = day;
    for _ in 0..n {
        current += Duration::days(1);
        while !is_business_day(current)? {
            current += Duration::days(1);
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn the_2026_holidays_match_the_cabinet_office_list() {
        assert_eq!(
            holidays(2026).unwrap(),
            vec![
                date!(2026 - 01 - 01),
                date!(2026 - 01 - 12),
                date!(2026 - 02 - 11),
                date!(2026 - 02 - 23),
                date!(2026 - 03 - 20),
                date!(2026 - 04 - 29),
                date!(2026 - 05 - 03),
                date!(2026 - 05 - 04),
                date!(2026 - 05 - 05),
                date!(2026 - 05 - 06), // substitute for Sunday 3 May
                date!(2026 - 07 - 20),
                date!(2026 - 08 - 11),
                date!(2026 - 09 - 21),
                date!(2026 - 09 - 22), // citizens' holiday between 敬老の日 and 秋分の日
                date!(2026 - 09 - 23),
                date!(2026 - 10 - 12),
                date!(2026 - 11 - 03),
                date!(2026 - 11 - 23),
            ]
        );
    }

    #[test]
    fn the_2025_substitute_holidays_are_there() {
        let days = holidays(2025).unwrap();
        for substitute in [
            date!(2025 - 02 - 24),
            date!(2025 - 05 - 06),
            date!(2025 - 11 - 24),
        ] {
            assert!(days.contains(&substitute), "{substitute}");
        }
        assert_eq!(days.len(), 19);
    }

    #[test]
    fn the_olympic_years_moved_their_summer_holidays() {
        assert!(is_holiday(date!(2021 - 07 - 23)).unwrap());
        assert!(!is_holiday(date!(2021 - 10 - 11)).unwrap());
        assert!(is_holiday(date!(2022 - 10 - 10)).unwrap());
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        // Friday 2 May 2025 → five business days earlier, skipping 昭和の日 (29 April).
        assert_eq!(
            business_days_before(date!(2025 - 05 - 02), 5).unwrap(),
            date!(2025 - 04 - 24)
        );
        // Across Golden Week 2026: from Thursday 7 May, 3 business days back skips 3–6 May.
        assert_eq!(
            business_days_before(date!(2026 - 05 - 07), 3).unwrap(),
            date!(2026 - 04 - 28)
        );
        assert_eq!(
            business_days_after(date!(2026 - 04 - 30), 1).unwrap(),
            date!(2026 - 05 - 01)
        );
        assert_eq!(
            business_days_after(date!(2026 - 05 - 01), 1).unwrap(),
            date!(2026 - 05 - 07)
        );
        // A deadline on a holiday falls back to the business day before.
        assert_eq!(
            business_days_before(date!(2026 - 05 - 05), 0).unwrap(),
            date!(2026 - 05 - 01)
        );
    }

    #[test]
    fn years_outside_the_supported_range_are_refused() {
        assert_eq!(holidays(2019), Err(OutOfRange(2019)));
        assert_eq!(holidays(2100), Err(OutOfRange(2100)));
    }
}
