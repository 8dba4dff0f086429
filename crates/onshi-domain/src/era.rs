//! Japanese era dates (和暦), as staff and the national system's paperwork write them:
//! 令和8年12月2日. The first year of an era is 元年.

use time::Date;
use time::macros::date;

/// The eras a date in this system can fall in, newest first: name and first day.
const ERAS: [(&str, Date); 2] = [
    ("令和", date!(2019 - 05 - 01)),
    ("平成", date!(1989 - 01 - 08)),
];

/// The era name and year of `day`, or `None` before 平成 (no record here is that old).
pub fn era_year(day: Date) -> Option<(&'static str, i32)> {
    ERAS.iter()
        .find(|(_, first)| day >= *first)
        .map(|(name, first)| (*name, day.year() - first.year() + 1))
}

/// `day` in the Japanese era calendar, e.g. 令和8年12月2日 (元年 for the first year); a date
/// before 平成 in the Gregorian form 1988年12月31日.
pub fn wareki(day: Date) -> String {
    let (month, dom) = (u8::from(day.month()), day.day());
    match era_year(day) {
        Some((era, 1)) => format!("{era}元年{month}月{dom}日"),
        Some((era, year)) => format!("{era}{year}年{month}月{dom}日"),
        None => format!("{}年{month}月{dom}日", day.year()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reiwa_heisei_and_the_first_year() {
        assert_eq!(wareki(date!(2026 - 12 - 02)), "令和8年12月2日");
        assert_eq!(wareki(date!(2019 - 05 - 01)), "令和元年5月1日");
        assert_eq!(wareki(date!(2019 - 04 - 30)), "平成31年4月30日");
        assert_eq!(wareki(date!(1989 - 01 - 08)), "平成元年1月8日");
        assert_eq!(wareki(date!(1989 - 01 - 07)), "1989年1月7日");
        assert_eq!(era_year(date!(2024 - 12 - 02)), Some(("令和", 6)));
    }
}
