//! A site's opening hours and holiday calendar, in Japan time (Asia/Tokyo, UTC+9 all year).
//!
//! Central alerts on an offline site only while it is open: a pharmacy closed on Sunday whose
//! agent PC is switched off is not an incident. The week is a list of opening spans per day;
//! national holidays are closed unless the site says otherwise; single dates can be closed
//! (年末年始, a stocktaking day) or opened with their own spans (a holiday duty, 休日当番).
//!
//! The JSON form chain IT sends (`PUT /api/v1/opening-hours`, `.../sites/{site}/opening-hours`):
//! ```json
//! {"weekly": {"mon": ["09:00-18:00"], "tue": ["09:00-12:30", "14:00-18:00"], "sat": ["09:00-13:00"]},
//!  "closed_on_national_holidays": true,
//!  "closed_dates": ["2026-12-30", "2026-12-31"],
//!  "open_dates": {"2027-01-03": ["10:00-16:00"]}}
//! ```
//! A day not named in `weekly` is closed. A span ends before midnight ("24:00" is allowed).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, Weekday};

use crate::calendar::{self, OutOfRange};

const TOKYO: time::UtcOffset = time::macros::offset!(+9);

/// Minutes after local midnight, 0..=1440.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    open: u16,
    close: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    #[error("{0:?} is not an opening span; write it as HH:MM-HH:MM, e.g. 09:00-18:00")]
    BadSpan(String),
    #[error("{0:?} opens after it closes; a span that passes midnight is two spans, one per day")]
    Backwards(String),
    #[error("{day}: the spans {first} and {second} overlap")]
    Overlap {
        day: String,
        first: String,
        second: String,
    },
    #[error("{0:?} is not a weekday; use mon, tue, wed, thu, fri, sat, sun")]
    BadWeekday(String),
    #[error("{0:?} is not a date; write it as YYYY-MM-DD")]
    BadDate(String),
    #[error("{0} is both a closed date and an open date")]
    Contradiction(Date),
}

impl Span {
    pub fn parse(text: &str) -> Result<Self, HoursError> {
        let bad = || HoursError::BadSpan(text.to_string());
        let (open, close) = text.trim().split_once('-').ok_or_else(bad)?;
        let minutes = |hhmm: &str| -> Option<u16> {
            let (h, m) = hhmm.trim().split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
        };
        let (open, close) = (
            minutes(open).ok_or_else(bad)?,
            minutes(close).ok_or_else(bad)?,
        );
        if open >= close {
            return Err(HoursError::Backwards(text.to_string()));
        }
        Ok(Self { open, close })
    }

    fn contains(&self, minute: u16) -> bool {
        self.open <= minute && minute < self.close
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hhmm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", hhmm(self.open), hhmm(self.close))
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// When a site is open. Deserializing the JSON form checks every span and date, with a
/// specific error per mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpeningHours {
    /// `mon` .. `sun` → spans, sorted and disjoint.
    weekly: BTreeMap<String, Vec<Span>>,
    closed_on_national_holidays: bool,
    closed_dates: Vec<Date>,
    open_dates: BTreeMap<Date, Vec<Span>>,
}

/// The JSON form, before checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Unchecked {
    #[serde(default)]
    weekly: BTreeMap<String, Vec<String>>,
    #[serde(default = "yes")]
    closed_on_national_holidays: bool,
    #[serde(default)]
    closed_dates: Vec<String>,
    #[serde(default)]
    open_dates: BTreeMap<String, Vec<String>>,
}

fn yes() -> bool {
    true
}

/// Written in the JSON form it is read from: dates as `YYYY-MM-DD`, spans as `HH:MM-HH:MM`
/// (time's own Date serialization is a tuple, which the reader refuses).
impl Serialize for OpeningHours {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let day = |d: &Date| d.to_string();
        let mut out = serializer.serialize_struct("OpeningHours", 4)?;
        out.serialize_field("weekly", &self.weekly)?;
        out.serialize_field(
            "closed_on_national_holidays",
            &self.closed_on_national_holidays,
        )?;
        out.serialize_field(
            "closed_dates",
            &self.closed_dates.iter().map(day).collect::<Vec<_>>(),
        )?;
        out.serialize_field(
            "open_dates",
            &self
                .open_dates
                .iter()
                .map(|(d, spans)| (day(d), spans))
                .collect::<BTreeMap<_, _>>(),
        )?;
        out.end()
    }
}

impl<'de> Deserialize<'de> for OpeningHours {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Unchecked::deserialize(deserializer)?;
        OpeningHours::check(raw).map_err(serde::de::Error::custom)
    }
}

fn date(text: &str) -> Result<Date, HoursError> {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| HoursError::BadDate(text.to_string()))
}

fn spans(day: &str, texts: &[String]) -> Result<Vec<Span>, HoursError> {
    let mut spans = texts
        .iter()
        .map(|t| Span::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    spans.sort();
    for pair in spans.windows(2) {
        if pair[1].open < pair[0].close {
            return Err(HoursError::Overlap {
                day: day.to_string(),
                first: pair[0].to_string(),
                second: pair[1].to_string(),
            });
        }
    }
    Ok(spans)
}

impl OpeningHours {
    fn check(raw: Unchecked) -> Result<Self, HoursError> {
        let mut weekly = BTreeMap::new();
        for (day, texts) in &raw.weekly {
            let key = day.to_ascii_lowercase();
            if !WEEKDAYS.iter().any(|(name, _)| *name == key) {
                return Err(HoursError::BadWeekday(day.clone()));
            }
            weekly.insert(key.clone(), spans(&key, texts)?);
        }
        let mut closed_dates = raw
            .closed_dates
            .iter()
            .map(|d| date(d))
            .collect::<Result<Vec<_>, _>>()?;
        closed_dates.sort();
        closed_dates.dedup();
        let mut open_dates = BTreeMap::new();
        for (day, texts) in &raw.open_dates {
            let on = date(day)?;
            if closed_dates.contains(&on) {
                return Err(HoursError::Contradiction(on));
            }
            open_dates.insert(on, spans(day, texts)?);
        }
        Ok(Self {
            weekly,
            closed_on_national_holidays: raw.closed_on_national_holidays,
            closed_dates,
            open_dates,
        })
    }

    /// The chain default until chain IT sets one: Monday to Friday 09:00–18:00, Saturday
    /// 09:00–13:00, closed on Sundays and national holidays.
    pub fn chain_default() -> Self {
        let weekday = vec![Span {
            open: 9 * 60,
            close: 18 * 60,
        }];
        let mut weekly: BTreeMap<String, Vec<Span>> = ["mon", "tue", "wed", "thu", "fri"]
            .iter()
            .map(|d| (d.to_string(), weekday.clone()))
            .collect();
        weekly.insert(
            "sat".into(),
            vec![Span {
                open: 9 * 60,
                close: 13 * 60,
            }],
        );
        Self {
            weekly,
            closed_on_national_holidays: true,
            closed_dates: Vec::new(),
            open_dates: BTreeMap::new(),
        }
    }

    /// The spans of one local date.
    fn spans_on(&self, day: Date) -> Result<&[Span], OutOfRange> {
        if let Some(spans) = self.open_dates.get(&day) {
            return Ok(spans);
        }
        if self.closed_dates.contains(&day)
            || (self.closed_on_national_holidays && calendar::is_holiday(day)?)
        {
            return Ok(&[]);
        }
        let name = WEEKDAYS
            .iter()
            .find(|(_, w)| *w == day.weekday())
            .map(|(name, _)| *name)
            .unwrap_or("mon");
        Ok(self.weekly.get(name).map_or(&[], Vec::as_slice))
    }

    /// Whether the site is open at `at` (any offset; judged in Japan time).
    pub fn is_open(&self, at: OffsetDateTime) -> Result<bool, OutOfRange> {
        let local = at.to_offset(TOKYO);
        let minute = u16::from(local.hour()) * 60 + u16::from(local.minute());
        Ok(self
            .spans_on(local.date())?
            .iter()
            .any(|s| s.contains(minute)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn parse(json: &str) -> Result<OpeningHours, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    fn hours(json: &str) -> OpeningHours {
        parse(json).unwrap()
    }

    #[test]
    fn open_inside_a_span_closed_outside_it_in_japan_time() {
        let h = OpeningHours::chain_default();
        // Tuesday 2026-12-01 09:00 JST is 00:00 UTC.
        assert!(h.is_open(datetime!(2026-12-01 00:00 UTC)).unwrap());
        assert!(!h.is_open(datetime!(2026-11-30 23:59 UTC)).unwrap());
        assert!(h.is_open(datetime!(2026-12-01 17:59 +9)).unwrap());
        assert!(
            !h.is_open(datetime!(2026-12-01 18:00 +9)).unwrap(),
            "close is exclusive"
        );
        // Saturday mornings only; Sunday closed.
        assert!(h.is_open(datetime!(2026-12-05 12:00 +9)).unwrap());
        assert!(!h.is_open(datetime!(2026-12-05 13:30 +9)).unwrap());
        assert!(!h.is_open(datetime!(2026-12-06 10:00 +9)).unwrap());
    }

    #[test]
    fn national_holidays_are_closed_unless_the_site_opens_them() {
        // 2026-11-23 (Monday) is 勤労感謝の日.
        let holiday = datetime!(2026-11-23 10:00 +9);
        assert!(!OpeningHours::chain_default().is_open(holiday).unwrap());
        let open_anyway =
            hours(r#"{"weekly": {"mon": ["09:00-18:00"]}, "closed_on_national_holidays": false}"#);
        assert!(open_anyway.is_open(holiday).unwrap());
        let duty = hours(r#"{"weekly": {}, "open_dates": {"2026-11-23": ["10:00-16:00"]}}"#);
        assert!(duty.is_open(holiday).unwrap());
        assert!(!duty.is_open(datetime!(2026-11-23 16:00 +9)).unwrap());
    }

    #[test]
    fn closed_dates_and_split_days() {
        let h = hours(
            r#"{"weekly": {"Tue": ["14:00-18:00", "09:00-12:30"]}, "closed_dates": ["2026-12-08"]}"#,
        );
        assert!(h.is_open(datetime!(2026-12-01 12:29 +9)).unwrap());
        assert!(
            !h.is_open(datetime!(2026-12-01 13:00 +9)).unwrap(),
            "lunch break"
        );
        assert!(h.is_open(datetime!(2026-12-01 14:00 +9)).unwrap());
        assert!(
            !h.is_open(datetime!(2026-12-08 10:00 +9)).unwrap(),
            "closed date"
        );
        // What chain IT sent comes back sorted and in the same form.
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(
            json["weekly"]["tue"],
            serde_json::json!(["09:00-12:30", "14:00-18:00"])
        );
    }

    #[test]
    fn dates_are_written_as_they_are_read_and_read_back() {
        let h = parse(
            r#"{"closed_dates": ["2026-12-31", "2026-12-30"],
                "open_dates": {"2027-01-03": ["10:00-16:00"]}}"#,
        )
        .unwrap();
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(
            json["closed_dates"],
            serde_json::json!(["2026-12-30", "2026-12-31"])
        );
        assert_eq!(
            json["open_dates"],
            serde_json::json!({"2027-01-03": ["10:00-16:00"]})
        );
        let again: OpeningHours = serde_json::from_value(json).unwrap();
        assert_eq!(again, h);
    }

    #[test]
    fn mistakes_are_named() {
        let error = |json: &str| parse(json).unwrap_err();
        assert!(error(r#"{"weekly": {"mon": ["9-18"]}}"#).contains("HH:MM-HH:MM"));
        assert!(error(r#"{"weekly": {"mon": ["22:00-02:00"]}}"#).contains("midnight"));
        assert!(
            error(r#"{"weekly": {"mon": ["09:00-13:00", "12:00-18:00"]}}"#).contains("overlap")
        );
        assert!(error(r#"{"weekly": {"monday": ["09:00-18:00"]}}"#).contains("mon, tue"));
        assert!(error(r#"{"closed_dates": ["2026/12/30"]}"#).contains("YYYY-MM-DD"));
        assert!(
            error(
                r#"{"closed_dates": ["2026-12-30"], "open_dates": {"2026-12-30": ["09:00-10:00"]}}"#
            )
            .contains("both")
        );
        assert!(error(r#"{"weekly": {}, "hours": 1}"#).contains("unknown field"));
        assert!(parse(r#"{"weekly": {"fri": ["00:00-24:00"]}}"#).is_ok());
    }
}
