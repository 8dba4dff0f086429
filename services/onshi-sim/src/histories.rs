//! Drug histories (3 years) and specific health checkup results (5 years) for the synthetic
//! population, deterministic for the seed.
//!
//! Nothing is stored: every month of a person's drug history and every year of their checkups
//! is drawn from a [`SplitMix64`] seeded with the population seed, the person
//! ([`PersonKey::stable_hash`]) and the month or year, so the same question gets the same
//! answer on any day, and a window of months is generated without generating the rest.
//!
//! Retention as the national side applies it (`shared/domain/onshi.md` §1): drugs 3 years,
//! checkups 5 years, counted back from the day of the request. Drugs and checkup items come
//! from small lists of common ones with plausible doses and values; checkup item codes are
//! JLAC10-style codes for illustration (UNCONFIRMED against the real code list). Specific
//! health checkups are for people aged 40–74, and so are these.

use onshi_domain::xml::{Checkup, CheckupItem, DrugDay, DrugEntry, DrugMonth, YearMonth};
use time::{Date, Month};

use crate::consent::PersonKey;
use crate::population::{Person, SplitMix64};

/// Months of drug history kept.
pub const DRUG_RETENTION_MONTHS: i32 = 36;
/// Years of checkups kept.
pub const CHECKUP_RETENTION_YEARS: i32 = 5;

/// (name, ingredient, quantity per day, unit, directions, days).
type Drug = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// Long-term prescriptions (a person on one gets it most months).
const CHRONIC: &[Drug] = &[
    (
        "アムロジピン錠5mg",
        "アムロジピンベシル酸塩",
        "1",
        "錠",
        "1日1回朝食後",
    ),
    (
        "オルメサルタン錠20mg",
        "オルメサルタンメドキソミル",
        "1",
        "錠",
        "1日1回朝食後",
    ),
    (
        "アトルバスタチン錠10mg",
        "アトルバスタチンカルシウム水和物",
        "1",
        "錠",
        "1日1回夕食後",
    ),
    (
        "メトホルミン塩酸塩錠250mg",
        "メトホルミン塩酸塩",
        "2",
        "錠",
        "1日2回朝夕食後",
    ),
    (
        "ランソプラゾールOD錠15mg",
        "ランソプラゾール",
        "1",
        "錠",
        "1日1回朝食後",
    ),
    (
        "モンテルカスト錠10mg",
        "モンテルカストナトリウム",
        "1",
        "錠",
        "1日1回就寝前",
    ),
    (
        "レボチロキシンNa錠50μg",
        "レボチロキシンナトリウム水和物",
        "1",
        "錠",
        "1日1回朝食後",
    ),
];

/// Short courses (colds, pain, stomach).
const ACUTE: &[Drug] = &[
    (
        "ロキソプロフェンNa錠60mg",
        "ロキソプロフェンナトリウム水和物",
        "3",
        "錠",
        "1日3回毎食後",
    ),
    ("レバミピド錠100mg", "レバミピド", "3", "錠", "1日3回毎食後"),
    (
        "カルボシステイン錠500mg",
        "L-カルボシステイン",
        "3",
        "錠",
        "1日3回毎食後",
    ),
    (
        "アセトアミノフェン錠200mg",
        "アセトアミノフェン",
        "2",
        "錠",
        "発熱時・疼痛時",
    ),
    (
        "クラリスロマイシン錠200mg",
        "クラリスロマイシン",
        "2",
        "錠",
        "1日2回朝夕食後",
    ),
    (
        "フェキソフェナジン塩酸塩錠60mg",
        "フェキソフェナジン塩酸塩",
        "2",
        "錠",
        "1日2回朝夕食後",
    ),
];

const PHARMACIES: &[&str] = &[
    "さくら調剤薬局",
    "みどり薬局 駅前店",
    "ひまわり薬局",
    "あおば調剤薬局",
];

const CHECKUP_SITES: &[&str] = &["中央健診センター", "市民病院 健診部", "さくらクリニック"];

/// The histories of one population.
#[derive(Debug, Clone, Copy)]
pub struct Histories {
    seed: u64,
}

/// One person's stable traits: chronic drugs and checkup baselines.
struct Profile {
    chronic: Vec<&'static Drug>,
    height_cm: f64,
    bmi: f64,
    systolic: f64,
    diastolic: f64,
    hba1c: f64,
    glucose: f64,
    ldl: f64,
    hdl: f64,
    tg: f64,
    ast: f64,
    alt: f64,
    ggt: f64,
}

fn uniform(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    lo + (hi - lo) * unit
}

impl Histories {
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    fn rng(&self, person: &PersonKey, salt: u64) -> SplitMix64 {
        SplitMix64::new(
            self.seed
                ^ person.stable_hash()
                ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17),
        )
    }

    fn profile(&self, person: &PersonKey) -> Profile {
        let mut rng = self.rng(person, 1);
        let mut chronic = Vec::new();
        if rng.percent(70) {
            for _ in 0..rng.between(1, 3) {
                let d = rng.pick(CHRONIC);
                if !chronic.contains(&d) {
                    chronic.push(d);
                }
            }
        }
        Profile {
            chronic,
            height_cm: uniform(&mut rng, 148.0, 183.0),
            bmi: uniform(&mut rng, 18.0, 31.0),
            systolic: uniform(&mut rng, 105.0, 158.0),
            diastolic: uniform(&mut rng, 62.0, 98.0),
            hba1c: uniform(&mut rng, 4.9, 7.4),
            glucose: uniform(&mut rng, 82.0, 135.0),
            ldl: uniform(&mut rng, 80.0, 175.0),
            hdl: uniform(&mut rng, 38.0, 85.0),
            tg: uniform(&mut rng, 55.0, 260.0),
            ast: uniform(&mut rng, 14.0, 42.0),
            alt: uniform(&mut rng, 10.0, 48.0),
            ggt: uniform(&mut rng, 12.0, 90.0),
        }
    }

    /// The drugs dispensed to `person` in `from..=to`, limited to the retention period before
    /// `today` (and to days before or on `today`), oldest month first.
    pub fn drugs(
        &self,
        person: &PersonKey,
        from: YearMonth,
        to: YearMonth,
        today: Date,
    ) -> Vec<DrugMonth> {
        let this_month = YearMonth::of(today);
        let first = from.max(this_month.minus_months(DRUG_RETENTION_MONTHS - 1));
        let last = to.min(this_month);
        let profile = self.profile(person);
        let mut months = Vec::new();
        let mut month = first;
        while month <= last {
            let salt = 1000 + (month.year() as u64) * 12 + u64::from(u8::from(month.month()));
            let mut rng = self.rng(person, salt);
            let mut days = Vec::new();
            let pharmacy = *rng.pick(PHARMACIES);
            if !profile.chronic.is_empty() && rng.percent(85) {
                let date = day_in(month, rng.between(1, 28) as u8);
                let drugs = profile
                    .chronic
                    .iter()
                    .map(|d| entry(d, if rng.percent(70) { "28" } else { "30" }))
                    .collect();
                days.push((date, pharmacy, drugs));
            }
            if rng.percent(15) {
                let date = day_in(month, rng.between(1, 28) as u8);
                let mut drugs = vec![entry(rng.pick(ACUTE), "5")];
                if rng.percent(50) {
                    let second = rng.pick(ACUTE);
                    if drugs[0].drug_name.as_deref() != Some(second.0) {
                        drugs.push(entry(second, "5"));
                    }
                }
                days.push((date, *rng.pick(PHARMACIES), drugs));
            }
            days.retain(|(date, _, _)| *date <= today);
            days.sort_by_key(|(date, _, _)| *date);
            if !days.is_empty() {
                months.push(DrugMonth {
                    month,
                    days: days
                        .into_iter()
                        .map(|(date, pharmacy, drugs)| DrugDay {
                            date,
                            institution_name: Some(pharmacy.to_string()),
                            drugs,
                        })
                        .collect(),
                });
            }
            month = month.minus_months(-1);
        }
        months
    }

    /// The specific health checkups of `person` in the retention period before `today`,
    /// oldest first: at most one a year, only at ages 40–74.
    pub fn checkups(&self, person: &PersonKey, who: &Person, today: Date) -> Vec<Checkup> {
        let profile = self.profile(person);
        let mut checkups = Vec::new();
        for years_ago in (0..CHECKUP_RETENTION_YEARS).rev() {
            let year = today.year() - years_ago;
            let mut rng = self.rng(person, 5000 + year as u64);
            if !rng.percent(80) {
                continue;
            }
            let month = Month::try_from(rng.between(5, 12) as u8).unwrap_or(Month::June);
            let Ok(date) = Date::from_calendar_date(year, month, rng.between(1, 28) as u8) else {
                continue;
            };
            if date > today || !(40..75).contains(&who.age_on(date)) {
                continue;
            }
            let drift =
                |rng: &mut SplitMix64, base: f64, spread: f64| base + uniform(rng, -spread, spread);
            let weight = profile.bmi * (profile.height_cm / 100.0).powi(2);
            let weight = drift(&mut rng, weight, 2.5);
            let bmi = weight / (profile.height_cm / 100.0).powi(2);
            let waist = 60.0 + bmi * 1.1 + uniform(&mut rng, -3.0, 3.0);
            let values: [(&str, &str, String, &str); 14] = [
                (
                    "9N001000000000001",
                    "身長",
                    format!("{:.1}", profile.height_cm),
                    "cm",
                ),
                ("9N006000000000001", "体重", format!("{weight:.1}"), "kg"),
                ("9N011000000000001", "BMI", format!("{bmi:.1}"), "kg/m2"),
                (
                    "9N016160100000001",
                    "腹囲（実測）",
                    format!("{waist:.1}"),
                    "cm",
                ),
                (
                    "9A751000000000001",
                    "収縮期血圧",
                    format!("{:.0}", drift(&mut rng, profile.systolic, 8.0)),
                    "mmHg",
                ),
                (
                    "9A761000000000001",
                    "拡張期血圧",
                    format!("{:.0}", drift(&mut rng, profile.diastolic, 6.0)),
                    "mmHg",
                ),
                (
                    "3F015000002327101",
                    "中性脂肪（トリグリセリド）",
                    format!("{:.0}", drift(&mut rng, profile.tg, 30.0)),
                    "mg/dl",
                ),
                (
                    "3F070000002327101",
                    "HDLコレステロール",
                    format!("{:.0}", drift(&mut rng, profile.hdl, 5.0)),
                    "mg/dl",
                ),
                (
                    "3F077000002327101",
                    "LDLコレステロール",
                    format!("{:.0}", drift(&mut rng, profile.ldl, 12.0)),
                    "mg/dl",
                ),
                (
                    "3B035000002327201",
                    "AST（GOT）",
                    format!("{:.0}", drift(&mut rng, profile.ast, 4.0)),
                    "U/L",
                ),
                (
                    "3B045000002327201",
                    "ALT（GPT）",
                    format!("{:.0}", drift(&mut rng, profile.alt, 5.0)),
                    "U/L",
                ),
                (
                    "3B090000002327101",
                    "γ-GT（γ-GTP）",
                    format!("{:.0}", drift(&mut rng, profile.ggt, 8.0)),
                    "U/L",
                ),
                (
                    "3D010000001926101",
                    "空腹時血糖",
                    format!("{:.0}", drift(&mut rng, profile.glucose, 6.0)),
                    "mg/dl",
                ),
                (
                    "3D046000001906202",
                    "HbA1c（NGSP値）",
                    format!("{:.1}", drift(&mut rng, profile.hba1c, 0.2)),
                    "%",
                ),
            ];
            checkups.push(Checkup {
                date,
                institution_name: Some(rng.pick(CHECKUP_SITES).to_string()),
                items: values
                    .into_iter()
                    .map(|(code, name, value, unit)| CheckupItem {
                        item_code: Some(code.to_string()),
                        item_name: Some(name.to_string()),
                        data_value: Some(value),
                        unit: Some(unit.to_string()),
                    })
                    .collect(),
            });
        }
        checkups
    }
}

fn day_in(month: YearMonth, day: u8) -> Date {
    Date::from_calendar_date(month.year(), month.month(), day.clamp(1, 28)).unwrap_or(Date::MIN)
}

fn entry(d: &Drug, days: &str) -> DrugEntry {
    DrugEntry {
        drug_name: Some(d.0.to_string()),
        ingredient_name: Some(d.1.to_string()),
        quantity: Some(d.2.to_string()),
        unit: Some(d.3.to_string()),
        usage: Some(d.4.to_string()),
        times: Some(days.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::population::Population;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 04 - 15);

    #[test]
    fn drug_histories_are_deterministic_and_kept_3_years() {
        let population = Population::generate(42, 200);
        let histories = Histories::new(42);
        let all = YearMonth::parse("200001").unwrap();
        let mut with_drugs = 0;
        for p in population.people() {
            let key = PersonKey::of(p);
            let a = histories.drugs(&key, all, YearMonth::of(TODAY), TODAY);
            assert_eq!(a, histories.drugs(&key, all, YearMonth::of(TODAY), TODAY));
            if let Some(first) = a.first() {
                with_drugs += 1;
                assert!(
                    first.month >= YearMonth::parse("202305").unwrap(),
                    "{first:?}"
                );
            }
            for m in &a {
                for d in &m.days {
                    assert!(d.date <= TODAY);
                    assert_eq!(YearMonth::of(d.date), m.month);
                    assert!(!d.drugs.is_empty());
                }
            }
            // A window is the same months as the whole history cut to the window.
            let from = YearMonth::parse("202501").unwrap();
            let to = YearMonth::parse("202506").unwrap();
            let window = histories.drugs(&key, from, to, TODAY);
            let cut: Vec<_> = a
                .iter()
                .filter(|m| m.month >= from && m.month <= to)
                .cloned()
                .collect();
            assert_eq!(window, cut);
        }
        assert!(with_drugs > 150, "most people have drugs: {with_drugs}");
        // Another seed, another history.
        let p = PersonKey::of(&population.people()[0]);
        assert_ne!(
            Histories::new(7).drugs(&p, all, YearMonth::of(TODAY), TODAY),
            histories.drugs(&p, all, YearMonth::of(TODAY), TODAY)
        );
    }

    #[test]
    fn checkups_are_yearly_for_ages_40_to_74_and_kept_5_years() {
        let population = Population::generate(42, 300);
        let histories = Histories::new(42);
        let mut with_checkups = 0;
        for p in population.people() {
            let key = PersonKey::of(p);
            let checkups = histories.checkups(&key, p, TODAY);
            assert_eq!(checkups, histories.checkups(&key, p, TODAY));
            if !checkups.is_empty() {
                with_checkups += 1;
            }
            for c in &checkups {
                assert!(c.date <= TODAY && c.date.year() > TODAY.year() - 5);
                assert!((40..75).contains(&p.age_on(c.date)));
                assert_eq!(c.items.len(), 14);
                let bmi: f64 = c.items[2].data_value.as_deref().unwrap().parse().unwrap();
                assert!((14.0..40.0).contains(&bmi), "{bmi}");
            }
        }
        assert!(with_checkups > 20, "{with_checkups}");
    }
}
