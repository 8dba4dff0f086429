//! Grace notifications (猶予届出, domain doc section 9): the six categories of sites that could
//! not start online eligibility verification by the March 2023 mandate, what each must state,
//! when each grace ends, and where a filed notification stands on a given day.
//!
//! Pure: no clock. Callers pass `today` (central: the Asia/Tokyo date).
//!
//! A deadline here is the **last day the grace covers** (inclusive): on the deadline the
//! notification is still active with 0 days left, the day after it is overdue unless it was
//! ended. Readings of the domain doc that had to be decided are marked ASSUMED:
//!
//! - 1: "until ready, at the latest end of Sep 2023": the expected ready date if given, capped at
//!   [`SYSTEM_NOT_READY_CAP`] (2023-09-30).
//! - 2: "until 6 months after the line is available": `line_available_on` + 6 calendar months,
//!   clamped to the month's end (2023-08-31 → 2024-02-29). ASSUMED: when the carrier has not
//!   given a date yet, the site gives a review date instead and the deadline is that review.
//! - 3: "until the home-visit mode started, April 2024": ASSUMED the grace covers up to the day
//!   before the mode started, [`HOME_VISIT_DEADLINE`] (2024-03-31); from 2024-04-01 the site is
//!   expected to verify.
//! - 4: "until it ends": the end date the site gives (`ends_on`).
//! - 5: "until then, at the latest autumn 2024": `ends_on` capped at [`CLOSURE_CAP`]. ASSUMED
//!   (UNCONFIRMED): "autumn 2024" read as the end of September 2024, the earliest reading, so a
//!   closure plan running past it is flagged rather than missed.
//! - 6: "until resolved": the rules fix no end; ASSUMED the site gives a review date and the
//!   deadline is that review ([`Deadline::is_review`]), so a difficulty nobody looks at again
//!   turns overdue instead of staying active for ever. After a review, end the notification and
//!   file a new one with the next review date.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month};

/// The latest a category 1 grace (vendor contracted, system not ready) runs.
pub const SYSTEM_NOT_READY_CAP: Date = match Date::from_calendar_date(2023, Month::September, 30) {
    Ok(d) => d,
    Err(_) => panic!("a valid date"),
};

/// Category 1 is for sites that signed with their vendor by the end of February 2023.
pub const CONTRACT_BY: Date = match Date::from_calendar_date(2023, Month::February, 28) {
    Ok(d) => d,
    Err(_) => panic!("a valid date"),
};

/// The last day of a category 3 grace (home-visit-only clinics): the home-visit mode started
/// on 2024-04-01 (ASSUMED: the grace covers up to the day before).
pub const HOME_VISIT_DEADLINE: Date = match Date::from_calendar_date(2024, Month::March, 31) {
    Ok(d) => d,
    Err(_) => panic!("a valid date"),
};

/// The latest a category 5 grace (planned closure or suspension) runs: "autumn 2024", read as
/// the end of September 2024 (ASSUMED, UNCONFIRMED).
pub const CLOSURE_CAP: Date = match Date::from_calendar_date(2024, Month::September, 30) {
    Ok(d) => d,
    Err(_) => panic!("a valid date"),
};

/// Months after the line becomes available that a category 2 grace runs.
pub const LINE_GRACE_MONTHS: u8 = 6;

/// The six categories of the grace notification, numbered as on the form.
///
/// Serialized as its snake_case name; read from the name or the number (`2`, `"2"`,
/// `"no_optical_line"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GraceCategory {
    /// 1: vendor contract by end of Feb 2023, system not ready.
    SystemNotReady,
    /// 2: no optical line compatible with the closed network.
    NoOpticalLine,
    /// 3: clinics providing home visits only.
    HomeVisitOnly,
    /// 4: under renovation, or a temporary facility.
    RenovationOrTemporaryFacility,
    /// 5: closure or suspension planned.
    PlannedClosure,
    /// 6: other special difficulty.
    SpecialDifficulty,
}

impl GraceCategory {
    pub const ALL: [GraceCategory; 6] = [
        GraceCategory::SystemNotReady,
        GraceCategory::NoOpticalLine,
        GraceCategory::HomeVisitOnly,
        GraceCategory::RenovationOrTemporaryFacility,
        GraceCategory::PlannedClosure,
        GraceCategory::SpecialDifficulty,
    ];

    /// The number on the form, 1 to 6.
    pub fn number(self) -> u8 {
        match self {
            GraceCategory::SystemNotReady => 1,
            GraceCategory::NoOpticalLine => 2,
            GraceCategory::HomeVisitOnly => 3,
            GraceCategory::RenovationOrTemporaryFacility => 4,
            GraceCategory::PlannedClosure => 5,
            GraceCategory::SpecialDifficulty => 6,
        }
    }

    pub fn from_number(number: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.number() == number)
    }

    /// The snake_case name (as serialized).
    pub fn name(self) -> &'static str {
        match self {
            GraceCategory::SystemNotReady => "system_not_ready",
            GraceCategory::NoOpticalLine => "no_optical_line",
            GraceCategory::HomeVisitOnly => "home_visit_only",
            GraceCategory::RenovationOrTemporaryFacility => "renovation_or_temporary_facility",
            GraceCategory::PlannedClosure => "planned_closure",
            GraceCategory::SpecialDifficulty => "special_difficulty",
        }
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            GraceCategory::SystemNotReady => {
                "令和5年2月末までにベンダーと契約締結済みだがシステム整備が未完了"
            }
            GraceCategory::NoOpticalLine => "オンライン資格確認に接続可能な光回線が未整備",
            GraceCategory::HomeVisitOnly => "訪問診療のみを提供",
            GraceCategory::RenovationOrTemporaryFacility => "改築工事中・臨時施設",
            GraceCategory::PlannedClosure => "廃止・休止の計画あり",
            GraceCategory::SpecialDifficulty => "その他特に困難な事情あり",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            GraceCategory::SystemNotReady => {
                "Vendor contracted by end of Feb 2023, system not ready"
            }
            GraceCategory::NoOpticalLine => "No compatible optical line",
            GraceCategory::HomeVisitOnly => "Home-visit-only clinic",
            GraceCategory::RenovationOrTemporaryFacility => "Renovation or temporary facility",
            GraceCategory::PlannedClosure => "Closure or suspension planned",
            GraceCategory::SpecialDifficulty => "Other special difficulty",
        }
    }
}

impl fmt::Display for GraceCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "category {} ({})", self.number(), self.label_en())
    }
}

impl FromStr for GraceCategory {
    type Err = GraceError;

    /// `"1"`..`"6"` or the snake_case name.
    fn from_str(text: &str) -> Result<Self, GraceError> {
        let text = text.trim();
        let found = match text.parse::<u8>() {
            Ok(n) => Self::from_number(n),
            Err(_) => Self::ALL.into_iter().find(|c| c.name() == text),
        };
        found.ok_or_else(|| GraceError::UnknownCategory(text.to_string()))
    }
}

impl<'de> Deserialize<'de> for GraceCategory {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = GraceCategory;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a grace category: 1 to 6, or its name (e.g. \"no_optical_line\")")
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<GraceCategory, E> {
                u8::try_from(n)
                    .ok()
                    .and_then(GraceCategory::from_number)
                    .ok_or_else(|| E::custom(GraceError::UnknownCategory(n.to_string())))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<GraceCategory, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(GraceError::UnknownCategory(n.to_string())))
                    .and_then(|n| self.visit_u64(n))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<GraceCategory, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// What an operator files for a site. Which end-condition fields a category takes (a field
/// another category's rule uses is refused, so a stored notification says only what counts):
///
/// | category | required | optional |
/// | --- | --- | --- |
/// | 1 | `contracted_on` (by 2023-02-28), `evidence` (the vendor contract copy) | `ends_on` (the expected ready date) |
/// | 2 | `line_available_on`, or `review_on` while the carrier gives no date (not both) | `evidence` |
/// | 3 | — | `evidence` |
/// | 4 | `ends_on` (the end of the works or of the temporary facility) | `evidence` |
/// | 5 | `ends_on` (the planned closure or suspension) | `evidence` |
/// | 6 | `review_on` (when the difficulty is looked at again) | `evidence` |
///
/// The form asks for an attachment only in categories 1 (required) and 6 (may); a reference
/// in the others is kept as a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraceNotification {
    pub category: GraceCategory,
    /// When the notification was filed with the regional bureau.
    pub filed_on: Date,
    /// Category 1: when the vendor contract was signed.
    pub contracted_on: Option<Date>,
    /// Category 2: when the optical line is (or, by the carrier, will be) available.
    pub line_available_on: Option<Date>,
    /// Categories 4 and 5: the date the site gives; category 1: the expected ready date.
    pub ends_on: Option<Date>,
    /// Category 6 (and 2 without a line date): when the notification is reviewed.
    pub review_on: Option<Date>,
    /// A reference to the attached document (category 1: the contract copy).
    pub evidence: Option<String>,
}

/// When a grace ends: a date from the rules or the site, or a review date (categories 6, and 2
/// without a line date) after which someone must look at it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub date: Date,
    pub is_review: bool,
}

/// Why a notification (or its ending) is refused, for the operator filing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraceError {
    #[error(
        "{0:?} is not a grace category: give 1 to 6 or its name (system_not_ready, no_optical_line, home_visit_only, renovation_or_temporary_facility, planned_closure, special_difficulty)"
    )]
    UnknownCategory(String),
    #[error(
        "category 1 needs the vendor contract copy as evidence (a document reference or file name)"
    )]
    MissingContractCopy,
    #[error("{category} needs {field}: {what}")]
    Missing {
        category: GraceCategory,
        field: &'static str,
        what: &'static str,
    },
    #[error("{field} does not apply to {category}; {hint}")]
    NotForCategory {
        category: GraceCategory,
        field: &'static str,
        hint: &'static str,
    },
    #[error(
        "category 2 takes line_available_on or review_on, not both: with a line date the grace ends 6 months after it"
    )]
    LineAndReview,
    #[error(
        "category 1 is for a vendor contract signed by {CONTRACT_BY}; {0} is later (another category may apply, e.g. 6)"
    )]
    ContractTooLate(Date),
    #[error("filed_on {filed_on} is in the future (today is {today})")]
    FiledInFuture { filed_on: Date, today: Date },
    #[error(
        "this grace would end on {deadline}, before the notification was filed on {filed_on}: check the dates (or the category)"
    )]
    EndsBeforeFiling { deadline: Date, filed_on: Date },
    #[error("ended_on {ended_on} is before the notification was filed on {filed_on}")]
    EndedBeforeFiling { ended_on: Date, filed_on: Date },
    #[error("ended_on {ended_on} is in the future (today is {today}): end it on the day it ends")]
    EndedInFuture { ended_on: Date, today: Date },
    #[error("the deadline is beyond the calendar")]
    OutOfRange,
}

/// `day` plus `months` calendar months, clamped to the last day of the month it lands in.
pub fn add_months(day: Date, months: u8) -> Option<Date> {
    let index =
        i64::from(day.year()) * 12 + i64::from(u8::from(day.month()) - 1) + i64::from(months);
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12)).ok()? + 1).ok()?;
    let last = time::util::days_in_month(month, year);
    Date::from_calendar_date(year, month, day.day().min(last)).ok()
}

impl GraceNotification {
    /// A notification of `category` filed on `filed_on` with no end-condition field yet.
    pub fn new(category: GraceCategory, filed_on: Date) -> Self {
        Self {
            category,
            filed_on,
            contracted_on: None,
            line_available_on: None,
            ends_on: None,
            review_on: None,
            evidence: None,
        }
    }

    fn evidence_given(&self) -> bool {
        self.evidence
            .as_deref()
            .is_some_and(|e| !e.trim().is_empty())
    }

    /// Checks the fields the category needs (see the table on [`GraceNotification`]), and that
    /// it was not filed after `today` nor ends before it was filed.
    pub fn validate(&self, today: Date) -> Result<(), GraceError> {
        use GraceCategory::*;
        let category = self.category;
        let refuse = |field, present: bool, hint| {
            if present {
                Err(GraceError::NotForCategory {
                    category,
                    field,
                    hint,
                })
            } else {
                Ok(())
            }
        };
        let require = |field, present: bool, what| {
            if present {
                Ok(())
            } else {
                Err(GraceError::Missing {
                    category,
                    field,
                    what,
                })
            }
        };
        let contract_hint = "contracted_on is for category 1 (vendor contracted, system not ready)";
        let line_hint = "line_available_on is for category 2 (no optical line)";
        let (ends, review) = (self.ends_on.is_some(), self.review_on.is_some());
        match category {
            SystemNotReady => {
                let Some(contracted) = self.contracted_on else {
                    return Err(GraceError::Missing {
                        category,
                        field: "contracted_on",
                        what: "the date the vendor contract was signed (by 2023-02-28)",
                    });
                };
                if contracted > CONTRACT_BY {
                    return Err(GraceError::ContractTooLate(contracted));
                }
                if !self.evidence_given() {
                    return Err(GraceError::MissingContractCopy);
                }
                refuse(
                    "line_available_on",
                    self.line_available_on.is_some(),
                    line_hint,
                )?;
                refuse(
                    "review_on",
                    review,
                    "category 1 ends when the system is ready (ends_on: the expected date), at the latest 2023-09-30",
                )?;
            }
            NoOpticalLine => {
                refuse("contracted_on", self.contracted_on.is_some(), contract_hint)?;
                refuse(
                    "ends_on",
                    ends,
                    "category 2 ends 6 months after line_available_on",
                )?;
                match (self.line_available_on, self.review_on) {
                    (Some(_), Some(_)) => return Err(GraceError::LineAndReview),
                    (None, None) => {
                        return Err(GraceError::Missing {
                            category,
                            field: "line_available_on or review_on",
                            what: "the date the carrier makes the optical line available (the grace ends 6 months later), or, while the carrier gives no date, when to review the notification",
                        });
                    }
                    _ => {}
                }
            }
            HomeVisitOnly => {
                refuse("contracted_on", self.contracted_on.is_some(), contract_hint)?;
                refuse(
                    "line_available_on",
                    self.line_available_on.is_some(),
                    line_hint,
                )?;
                let fixed =
                    "category 3 ends when the home-visit mode started (2024-03-31 is its last day)";
                refuse("ends_on", ends, fixed)?;
                refuse("review_on", review, fixed)?;
            }
            RenovationOrTemporaryFacility | PlannedClosure => {
                refuse("contracted_on", self.contracted_on.is_some(), contract_hint)?;
                refuse(
                    "line_available_on",
                    self.line_available_on.is_some(),
                    line_hint,
                )?;
                refuse(
                    "review_on",
                    review,
                    "categories 4 and 5 end on the date the site gives (ends_on)",
                )?;
                let what = if category == PlannedClosure {
                    "the planned closure or suspension date (the grace ends then, at the latest 2024-09-30)"
                } else {
                    "the date the works or the temporary facility end"
                };
                require("ends_on", ends, what)?;
            }
            SpecialDifficulty => {
                refuse("contracted_on", self.contracted_on.is_some(), contract_hint)?;
                refuse(
                    "line_available_on",
                    self.line_available_on.is_some(),
                    line_hint,
                )?;
                refuse(
                    "ends_on",
                    ends,
                    "category 6 runs until the difficulty is resolved: give review_on, and end it when resolved",
                )?;
                require(
                    "review_on",
                    review,
                    "the date the difficulty is reviewed (category 6 has no fixed end)",
                )?;
            }
        }
        if self.filed_on > today {
            return Err(GraceError::FiledInFuture {
                filed_on: self.filed_on,
                today,
            });
        }
        let deadline = self.deadline()?.date;
        if deadline < self.filed_on {
            return Err(GraceError::EndsBeforeFiling {
                deadline,
                filed_on: self.filed_on,
            });
        }
        Ok(())
    }

    /// The last day the grace covers (see the module documentation for each category).
    /// Assumes the fields [`validate`](Self::validate) requires; a missing one is reported the
    /// same way.
    pub fn deadline(&self) -> Result<Deadline, GraceError> {
        use GraceCategory::*;
        let category = self.category;
        let fixed = |date| Deadline {
            date,
            is_review: false,
        };
        let review = |date| Deadline {
            date,
            is_review: true,
        };
        let missing = |field, what| GraceError::Missing {
            category,
            field,
            what,
        };
        Ok(match category {
            SystemNotReady => fixed(
                self.ends_on
                    .map_or(SYSTEM_NOT_READY_CAP, |d| d.min(SYSTEM_NOT_READY_CAP)),
            ),
            NoOpticalLine => match (self.line_available_on, self.review_on) {
                (Some(line), _) => {
                    fixed(add_months(line, LINE_GRACE_MONTHS).ok_or(GraceError::OutOfRange)?)
                }
                (None, Some(on)) => review(on),
                (None, None) => {
                    return Err(missing(
                        "line_available_on or review_on",
                        "the date the optical line is available",
                    ));
                }
            },
            HomeVisitOnly => fixed(HOME_VISIT_DEADLINE),
            RenovationOrTemporaryFacility => fixed(
                self.ends_on
                    .ok_or_else(|| missing("ends_on", "the date the works end"))?,
            ),
            PlannedClosure => fixed(
                self.ends_on
                    .ok_or_else(|| missing("ends_on", "the planned closure date"))?
                    .min(CLOSURE_CAP),
            ),
            SpecialDifficulty => review(
                self.review_on
                    .ok_or_else(|| missing("review_on", "the review date"))?,
            ),
        })
    }

    /// Where the notification stands on `today`, given when (if ever) it was ended.
    pub fn status(&self, today: Date, ended_on: Option<Date>) -> Result<GraceStatus, GraceError> {
        Ok(GraceStatus::on(self.deadline()?.date, today, ended_on))
    }

    /// Checks an ending on `ended_on` recorded on `today`.
    pub fn check_end(&self, ended_on: Date, today: Date) -> Result<(), GraceError> {
        if ended_on < self.filed_on {
            return Err(GraceError::EndedBeforeFiling {
                ended_on,
                filed_on: self.filed_on,
            });
        }
        if ended_on > today {
            return Err(GraceError::EndedInFuture { ended_on, today });
        }
        Ok(())
    }
}

/// Where a notification stands on a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GraceStatus {
    /// Not ended, the deadline not passed: `days_left` calendar days until it (0 on the day).
    Active { days_left: i64 },
    /// Ended (the system ready, the line used, the works done, the site closed…) on `on`.
    Ended {
        #[serde(serialize_with = "iso_date")]
        on: Date,
    },
    /// Not ended and past its deadline: overdue from `since`, the day after the deadline.
    Overdue {
        #[serde(serialize_with = "iso_date")]
        since: Date,
    },
}

fn iso_date<S: serde::Serializer>(day: &Date, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(day)
}

/// Which of [`GraceStatus`] a listing asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraceState {
    Active,
    Ended,
    Overdue,
}

impl GraceStatus {
    /// The status of a grace whose last day is `deadline`.
    pub fn on(deadline: Date, today: Date, ended_on: Option<Date>) -> Self {
        match ended_on {
            Some(on) => GraceStatus::Ended { on },
            None if today <= deadline => GraceStatus::Active {
                days_left: (deadline - today).whole_days(),
            },
            None => GraceStatus::Overdue {
                since: deadline + Duration::days(1),
            },
        }
    }

    pub fn state(self) -> GraceState {
        match self {
            GraceStatus::Active { .. } => GraceState::Active,
            GraceStatus::Ended { .. } => GraceState::Ended,
            GraceStatus::Overdue { .. } => GraceState::Overdue,
        }
    }
}

impl FromStr for GraceState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "active" => Ok(GraceState::Active),
            "ended" => Ok(GraceState::Ended),
            "overdue" => Ok(GraceState::Overdue),
            other => Err(format!(
                "status {other:?}: expected active, overdue or ended"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2023 - 03 - 15);

    fn filed(category: GraceCategory) -> GraceNotification {
        GraceNotification::new(category, date!(2023 - 03 - 01))
    }

    fn deadline(n: &GraceNotification) -> Date {
        n.validate(TODAY).unwrap();
        n.deadline().unwrap().date
    }

    fn category_1() -> GraceNotification {
        GraceNotification {
            contracted_on: Some(date!(2023 - 02 - 20)),
            evidence: Some("vendor contract 2023-0042.pdf".into()),
            ..filed(GraceCategory::SystemNotReady)
        }
    }

    #[test]
    fn categories_read_from_the_number_or_the_name_and_serialize_as_the_name() {
        for category in GraceCategory::ALL {
            let n = category.number();
            assert_eq!(GraceCategory::from_number(n), Some(category));
            assert_eq!(n.to_string().parse::<GraceCategory>().unwrap(), category);
            assert_eq!(category.name().parse::<GraceCategory>().unwrap(), category);
            let json = serde_json::to_value(category).unwrap();
            assert_eq!(json, category.name());
            assert_eq!(
                serde_json::from_value::<GraceCategory>(json).unwrap(),
                category
            );
            assert_eq!(
                serde_json::from_value::<GraceCategory>(serde_json::json!(n)).unwrap(),
                category
            );
            assert!(!category.label_ja().is_empty() && !category.label_en().is_empty());
        }
        assert_eq!(
            "2".parse::<GraceCategory>().unwrap(),
            GraceCategory::NoOpticalLine
        );
        for wrong in ["0", "7", "optical", ""] {
            assert!(matches!(
                wrong.parse::<GraceCategory>(),
                Err(GraceError::UnknownCategory(_))
            ));
        }
        let error = serde_json::from_value::<GraceCategory>(serde_json::json!(7)).unwrap_err();
        assert!(error.to_string().contains("give 1 to 6"), "{error}");
        assert!(serde_json::from_value::<GraceCategory>(serde_json::json!(-1)).is_err());
    }

    #[test]
    fn category_1_ends_when_ready_at_the_latest_end_of_september_2023() {
        assert_eq!(deadline(&category_1()), date!(2023 - 09 - 30));
        let ready_in_june = GraceNotification {
            ends_on: Some(date!(2023 - 06 - 15)),
            ..category_1()
        };
        assert_eq!(deadline(&ready_in_june), date!(2023 - 06 - 15));
        let ready_too_late = GraceNotification {
            ends_on: Some(date!(2023 - 12 - 01)),
            ..category_1()
        };
        assert_eq!(deadline(&ready_too_late), date!(2023 - 09 - 30));
    }

    #[test]
    fn category_1_needs_the_contract_by_february_and_its_copy() {
        let no_copy = GraceNotification {
            evidence: None,
            ..category_1()
        };
        let error = no_copy.validate(TODAY).unwrap_err();
        assert_eq!(error, GraceError::MissingContractCopy);
        assert!(
            error
                .to_string()
                .contains("category 1 needs the vendor contract copy as evidence")
        );
        let blank = GraceNotification {
            evidence: Some("  ".into()),
            ..category_1()
        };
        assert_eq!(
            blank.validate(TODAY).unwrap_err(),
            GraceError::MissingContractCopy
        );
        let no_contract = GraceNotification {
            contracted_on: None,
            ..category_1()
        };
        assert!(matches!(
            no_contract.validate(TODAY).unwrap_err(),
            GraceError::Missing {
                field: "contracted_on",
                ..
            }
        ));
        let march = GraceNotification {
            contracted_on: Some(date!(2023 - 03 - 01)),
            ..category_1()
        };
        assert_eq!(
            march.validate(TODAY).unwrap_err(),
            GraceError::ContractTooLate(date!(2023 - 03 - 01))
        );
    }

    #[test]
    fn category_2_ends_six_months_after_the_line_clamped_to_the_month_end() {
        let line = |on| GraceNotification {
            line_available_on: Some(on),
            ..filed(GraceCategory::NoOpticalLine)
        };
        assert_eq!(
            deadline(&line(date!(2023 - 04 - 10))),
            date!(2023 - 10 - 10)
        );
        // 31 August + 6 months: February 2024 has 29 days.
        assert_eq!(
            deadline(&line(date!(2023 - 08 - 31))),
            date!(2024 - 02 - 29)
        );
        assert_eq!(
            deadline(&line(date!(2024 - 08 - 31))),
            date!(2025 - 02 - 28)
        );
        // Across the year: July → January.
        assert_eq!(
            deadline(&line(date!(2023 - 07 - 31))),
            date!(2024 - 01 - 31)
        );
        assert!(!line(date!(2023 - 04 - 10)).deadline().unwrap().is_review);
    }

    #[test]
    fn category_2_without_a_line_date_is_reviewed() {
        let review = GraceNotification {
            review_on: Some(date!(2023 - 06 - 30)),
            ..filed(GraceCategory::NoOpticalLine)
        };
        review.validate(TODAY).unwrap();
        assert_eq!(
            review.deadline().unwrap(),
            Deadline {
                date: date!(2023 - 06 - 30),
                is_review: true
            }
        );
        let neither = filed(GraceCategory::NoOpticalLine);
        let error = neither.validate(TODAY).unwrap_err();
        assert!(
            error.to_string().starts_with(
                "category 2 (No compatible optical line) needs line_available_on or review_on"
            ),
            "{error}"
        );
        let both = GraceNotification {
            line_available_on: Some(date!(2023 - 04 - 01)),
            ..review
        };
        assert_eq!(both.validate(TODAY).unwrap_err(), GraceError::LineAndReview);
    }

    #[test]
    fn category_3_ends_before_the_home_visit_mode_of_april_2024() {
        assert_eq!(
            deadline(&filed(GraceCategory::HomeVisitOnly)),
            date!(2024 - 03 - 31)
        );
        let with_end = GraceNotification {
            ends_on: Some(date!(2024 - 06 - 01)),
            ..filed(GraceCategory::HomeVisitOnly)
        };
        assert!(matches!(
            with_end.validate(TODAY).unwrap_err(),
            GraceError::NotForCategory {
                field: "ends_on",
                ..
            }
        ));
    }

    #[test]
    fn category_4_ends_on_the_date_the_site_gives() {
        let works = GraceNotification {
            ends_on: Some(date!(2025 - 01 - 20)),
            ..filed(GraceCategory::RenovationOrTemporaryFacility)
        };
        assert_eq!(deadline(&works), date!(2025 - 01 - 20));
        let error = filed(GraceCategory::RenovationOrTemporaryFacility)
            .validate(TODAY)
            .unwrap_err();
        assert!(error.to_string().contains("needs ends_on"), "{error}");
    }

    #[test]
    fn category_5_ends_at_the_closure_at_the_latest_september_2024() {
        let closing = |on| GraceNotification {
            ends_on: Some(on),
            ..filed(GraceCategory::PlannedClosure)
        };
        assert_eq!(
            deadline(&closing(date!(2023 - 12 - 31))),
            date!(2023 - 12 - 31)
        );
        assert_eq!(
            deadline(&closing(date!(2025 - 03 - 31))),
            date!(2024 - 09 - 30)
        );
        assert!(
            filed(GraceCategory::PlannedClosure)
                .validate(TODAY)
                .is_err()
        );
    }

    #[test]
    fn category_6_needs_a_review_date_and_may_carry_evidence() {
        let difficulty = GraceNotification {
            review_on: Some(date!(2023 - 09 - 01)),
            ..filed(GraceCategory::SpecialDifficulty)
        };
        assert_eq!(deadline(&difficulty), date!(2023 - 09 - 01));
        assert!(difficulty.deadline().unwrap().is_review);
        let with_evidence = GraceNotification {
            evidence: Some("bureau letter 12".into()),
            ..difficulty.clone()
        };
        with_evidence.validate(TODAY).unwrap();
        let error = filed(GraceCategory::SpecialDifficulty)
            .validate(TODAY)
            .unwrap_err();
        assert!(error.to_string().contains("needs review_on"), "{error}");
        let with_end = GraceNotification {
            ends_on: Some(date!(2023 - 09 - 01)),
            ..difficulty
        };
        assert!(matches!(
            with_end.validate(TODAY).unwrap_err(),
            GraceError::NotForCategory {
                field: "ends_on",
                ..
            }
        ));
    }

    #[test]
    fn fields_of_other_categories_and_impossible_dates_are_refused() {
        let line_on_closure = GraceNotification {
            ends_on: Some(date!(2024 - 01 - 31)),
            line_available_on: Some(date!(2023 - 05 - 01)),
            ..filed(GraceCategory::PlannedClosure)
        };
        let error = line_on_closure.validate(TODAY).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("line_available_on does not apply to category 5"),
            "{error}"
        );
        let future = GraceNotification::new(GraceCategory::HomeVisitOnly, date!(2023 - 03 - 16));
        assert!(matches!(
            future.validate(TODAY).unwrap_err(),
            GraceError::FiledInFuture { .. }
        ));
        // Filed after the category 1 cap: its grace had already ended.
        let late = GraceNotification {
            filed_on: date!(2023 - 10 - 02),
            ..category_1()
        };
        assert!(matches!(
            late.validate(date!(2023 - 10 - 02)).unwrap_err(),
            GraceError::EndsBeforeFiling { .. }
        ));
    }

    #[test]
    fn status_is_active_until_the_deadline_then_overdue_unless_ended() {
        let works = GraceNotification {
            ends_on: Some(date!(2023 - 04 - 30)),
            ..filed(GraceCategory::RenovationOrTemporaryFacility)
        };
        assert_eq!(
            works.status(date!(2023 - 04 - 20), None).unwrap(),
            GraceStatus::Active { days_left: 10 }
        );
        assert_eq!(
            works.status(date!(2023 - 04 - 30), None).unwrap(),
            GraceStatus::Active { days_left: 0 }
        );
        let overdue = works.status(date!(2023 - 05 - 01), None).unwrap();
        assert_eq!(
            overdue,
            GraceStatus::Overdue {
                since: date!(2023 - 05 - 01)
            }
        );
        assert_eq!(overdue.state(), GraceState::Overdue);
        // Ended: before or after the deadline, it stays ended.
        for ended in [date!(2023 - 04 - 25), date!(2023 - 05 - 10)] {
            assert_eq!(
                works.status(date!(2023 - 06 - 01), Some(ended)).unwrap(),
                GraceStatus::Ended { on: ended }
            );
        }
        assert_eq!(
            serde_json::to_value(GraceStatus::Overdue {
                since: date!(2023 - 05 - 01)
            })
            .unwrap(),
            serde_json::json!({ "status": "overdue", "since": "2023-05-01" })
        );
        assert_eq!(
            serde_json::to_value(GraceStatus::Active { days_left: 3 }).unwrap(),
            serde_json::json!({ "status": "active", "days_left": 3 })
        );
    }

    #[test]
    fn an_ending_is_between_the_filing_and_today() {
        let n = filed(GraceCategory::HomeVisitOnly);
        n.check_end(date!(2023 - 03 - 01), TODAY).unwrap();
        n.check_end(TODAY, TODAY).unwrap();
        assert!(matches!(
            n.check_end(date!(2023 - 02 - 28), TODAY).unwrap_err(),
            GraceError::EndedBeforeFiling { .. }
        ));
        assert!(matches!(
            n.check_end(date!(2023 - 03 - 16), TODAY).unwrap_err(),
            GraceError::EndedInFuture { .. }
        ));
    }

    #[test]
    fn months_are_added_with_month_end_clamping() {
        assert_eq!(
            add_months(date!(2023 - 08 - 31), 6),
            Some(date!(2024 - 02 - 29))
        );
        assert_eq!(
            add_months(date!(2023 - 01 - 31), 1),
            Some(date!(2023 - 02 - 28))
        );
        assert_eq!(
            add_months(date!(2023 - 12 - 15), 0),
            Some(date!(2023 - 12 - 15))
        );
        assert_eq!(
            add_months(date!(2023 - 12 - 15), 1),
            Some(date!(2024 - 01 - 15))
        );
        assert_eq!(
            add_months(date!(2023 - 03 - 31), 6),
            Some(date!(2023 - 09 - 30))
        );
    }
}
