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
//! JLAC10-style codes for illustration (UNCONFIRMED against the real code list, except
//! 9N001000000000001 height, which the corpus shows). Specific health checkups are for people
//! aged 40–74, and so are these.
//!
//! The shapes are the real ones ([`onshi_domain::xml::drug`]): each visit is a `MeTrMonthInf`
//! entry of the prescribing clinic (its code valid for the site's prefecture, by the rule of
//! `shared/domain/onshi.md` §5, so Saitama, Chiba, Tokyo and Kanagawa codes differ) with the
//! day and its drugs (`DrugC` code, name, ingredient, quantity, unit, directions, days), and
//! the pharmacy's dispensing of the same drugs that day is a `CzDiMonthInf` entry with the
//! corpus's `Cz…` elements. Codes whose meanings are not public (`DiOrg`, `InOut`,
//! `MeTrIdCl`, `CzDiOrg`) carry the corpus's values. Drug codes are illustrative 9-digit
//! codes (the corpus's 620000001 for amlodipine).

use onshi_domain::ids::{MedicalInstitutionCode, Prefecture};
use onshi_domain::xml::{
    Checkup, CheckupItem, DrugEntry, MedicationDay, MedicationMonth, YearMonth,
};
use time::{Date, Month};

use crate::consent::PersonKey;
use crate::population::{Person, SplitMix64};

/// Months of drug history kept.
pub const DRUG_RETENTION_MONTHS: i32 = 36;
/// Years of checkups kept.
pub const CHECKUP_RETENTION_YEARS: i32 = 5;

/// (name, ingredient, quantity per day, unit, directions). Its code is [`drug_code`].
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

/// Clinics that prescribe; each gets a code in the site's prefecture ([`institution_code`]).
const CLINICS: &[&str] = &[
    "さくら内科クリニック",
    "みなと整形外科",
    "市民病院",
    "あおば耳鼻咽喉科",
    "ひまわりファミリークリニック",
];

/// The codes whose meanings are not public, as the corpus writes them.
const ORG: &str = "1";
const IN_OUT: &str = "1";
const TREATMENT_CLASS: &str = "1";

/// The code system of checkup items, as the corpus writes it for height.
const CHECKUP_OID: &str = "1.2.392.200119.6.1005";

/// A drug history: the prescribing clinics' months and the pharmacies' dispensing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DrugHistory {
    /// `MeTrMonthInf`, oldest month first.
    pub months: Vec<MedicationMonth>,
    /// `CzDiInf/CzDiMonthInf`, oldest month first.
    pub dispensing: Vec<MedicationMonth>,
}

/// The histories of one population.
#[derive(Debug, Clone, Copy)]
pub struct Histories {
    seed: u64,
}

/// One person's stable traits: chronic drugs and checkup baselines.
struct Profile {
    chronic: Vec<&'static Drug>,
    /// The clinic (index into [`CLINICS`]) that prescribes the chronic drugs.
    clinic: usize,
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
            clinic: rng.between(0, CLINICS.len() as u64 - 1) as usize,
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

    /// The drugs prescribed and dispensed to `person` in `from..=to`, limited to the
    /// retention period before `today` (and to days before or on `today`), oldest month
    /// first; the clinics are in `prefecture` (the asking site's).
    pub fn drugs(
        &self,
        person: &PersonKey,
        from: YearMonth,
        to: YearMonth,
        today: Date,
        prefecture: Prefecture,
    ) -> DrugHistory {
        let this_month = YearMonth::of(today);
        let first = from.max(this_month.minus_months(DRUG_RETENTION_MONTHS - 1));
        let last = to.min(this_month);
        let profile = self.profile(person);
        let mut history = DrugHistory::default();
        let mut month = first;
        while month <= last {
            let salt = 1000 + (month.year() as u64) * 12 + u64::from(u8::from(month.month()));
            let mut rng = self.rng(person, salt);
            // (clinic index, date, drugs)
            let mut visits: Vec<(usize, Date, Vec<DrugEntry>)> = Vec::new();
            if !profile.chronic.is_empty() && rng.percent(85) {
                let date = day_in(month, rng.between(1, 28) as u8);
                let drugs = profile
                    .chronic
                    .iter()
                    .map(|d| entry(d, if rng.percent(70) { "28" } else { "30" }))
                    .collect();
                visits.push((profile.clinic, date, drugs));
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
                visits.push((
                    rng.between(0, CLINICS.len() as u64 - 1) as usize,
                    date,
                    drugs,
                ));
            }
            visits.retain(|(_, date, _)| *date <= today);
            visits.sort_by_key(|(clinic, date, _)| (*date, *clinic));
            let mut dispensed = Vec::new();
            for (clinic, date, drugs) in visits {
                dispensed.push(MedicationDay {
                    date: Some(date),
                    drugs: drugs.iter().map(dispensing_entry).collect(),
                    ..MedicationDay::default()
                });
                let day = MedicationDay {
                    date: Some(date),
                    drugs,
                    ..MedicationDay::default()
                };
                let code = institution_code(prefecture, clinic);
                let months = &mut history.months;
                match months.iter_mut().find(|m| {
                    m.month == Some(month) && m.institution_code.as_deref() == Some(code.as_str())
                }) {
                    Some(m) => m.days.push(day),
                    None => months.push(MedicationMonth {
                        organization: Some(ORG.into()),
                        institution_code: Some(code),
                        institution_name: Some(CLINICS[clinic].into()),
                        month: Some(month),
                        in_out: Some(IN_OUT.into()),
                        days: vec![day],
                        ..MedicationMonth::default()
                    }),
                }
            }
            if !dispensed.is_empty() {
                history.dispensing.push(MedicationMonth {
                    organization: Some(ORG.into()),
                    month: Some(month),
                    days: dispensed,
                    ..MedicationMonth::default()
                });
            }
            month = month.minus_months(-1);
        }
        history
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
            let mut items: Vec<CheckupItem> = values
                .into_iter()
                .map(|(code, name, value, unit)| CheckupItem {
                    item_code: Some(code.to_string()),
                    item_name: Some(name.to_string()),
                    data_type: Some("PQ".into()),
                    data_value: Some(value),
                    unit: Some(unit.to_string()),
                    oid: Some(CHECKUP_OID.into()),
                    data_value_name: None,
                })
                .collect();
            // One coded result, whose value has a name (urine glucose: − / ± / +).
            let (value, name) = *rng.pick(&[
                ("1", "－"),
                ("1", "－"),
                ("1", "－"),
                ("2", "±"),
                ("3", "＋"),
            ]);
            items.push(CheckupItem {
                item_code: Some("1A020000000190111".into()),
                item_name: Some("尿糖".into()),
                data_type: Some("CD".into()),
                data_value: Some(value.into()),
                unit: None,
                oid: Some(CHECKUP_OID.into()),
                data_value_name: Some(name.into()),
            });
            checkups.push(Checkup {
                effective_time: Some(format!(
                    "{:04}{:02}{:02}",
                    date.year(),
                    u8::from(date.month()),
                    date.day()
                )),
                items,
            });
        }
        checkups
    }
}

fn day_in(month: YearMonth, day: u8) -> Date {
    Date::from_calendar_date(month.year(), month.month(), day.clamp(1, 28)).unwrap_or(Date::MIN)
}

/// An illustrative 9-digit drug code: 6200000NN by the drug's place in the lists (the corpus's
/// amlodipine is 620000001, and so is ours).
fn drug_code(d: &Drug) -> String {
    let index = CHRONIC
        .iter()
        .chain(ACUTE)
        .position(|x| x.0 == d.0)
        .unwrap_or(0);
    format!("{:09}", 620_000_001 + index)
}

fn entry(d: &Drug, days: &str) -> DrugEntry {
    DrugEntry {
        drug_code: Some(drug_code(d)),
        drug_name: Some(d.0.to_string()),
        ingredient_name: Some(d.1.to_string()),
        quantity: Some(d.2.to_string()),
        unit: Some(d.3.to_string()),
        usage: Some(d.4.to_string()),
        special_instruction: None,
        times: Some(days.to_string()),
        treatment_class: Some(TREATMENT_CLASS.into()),
    }
}

/// The pharmacy's line for a prescribed drug: the corpus's `CzDrugInf` elements.
fn dispensing_entry(d: &DrugEntry) -> DrugEntry {
    DrugEntry {
        drug_name: d.drug_name.clone(),
        quantity: d.quantity.clone(),
        unit: d.unit.clone(),
        times: d.times.clone(),
        ..DrugEntry::default()
    }
}

/// The code of clinic `index` in `prefecture` (fee table 1, medical): district 01, institution
/// 1000 + index, and the check digit by the prefecture's rule
/// ([`MedicalInstitutionCode::with_check_digit`]).
pub fn institution_code(prefecture: Prefecture, index: usize) -> String {
    let first_nine = format!("{}101{:04}", prefecture.code_str(), 1000 + index % 9000);
    MedicalInstitutionCode::with_check_digit(&first_nine)
        .map(|c| c.as_str().to_owned())
        // Nine digits of a real prefecture always make a code; kept total all the same.
        .unwrap_or(first_nine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::population::Population;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 04 - 15);

    fn tokyo() -> Prefecture {
        Prefecture::parse("13").unwrap()
    }

    #[test]
    fn drug_histories_are_deterministic_and_kept_3_years() {
        let population = Population::generate(42, 200);
        let histories = Histories::new(42);
        let all = YearMonth::parse("200001").unwrap();
        let now = YearMonth::of(TODAY);
        let mut with_drugs = 0;
        for p in population.people() {
            let key = PersonKey::of(p);
            let a = histories.drugs(&key, all, now, TODAY, tokyo());
            assert_eq!(a, histories.drugs(&key, all, now, TODAY, tokyo()));
            if let Some(first) = a.months.first() {
                with_drugs += 1;
                assert!(first.month >= YearMonth::parse("202305"), "{first:?}");
            }
            for m in &a.months {
                let code = m.institution_code.as_deref().unwrap();
                assert!(code.starts_with("131"), "{code}");
                assert!(CLINICS.contains(&m.institution_name.as_deref().unwrap()));
                for d in &m.days {
                    let date = d.date.unwrap();
                    assert!(date <= TODAY);
                    assert_eq!(Some(YearMonth::of(date)), m.month);
                    assert!(!d.drugs.is_empty());
                    for x in &d.drugs {
                        assert_eq!(x.drug_code.as_ref().map(String::len), Some(9));
                        assert!(x.ingredient_name.is_some() && x.usage.is_some());
                    }
                }
            }
            // Every prescribed day is dispensed the same day, drug for drug.
            let prescribed: usize = a
                .months
                .iter()
                .flat_map(|m| &m.days)
                .map(|d| d.drugs.len())
                .sum();
            let dispensed: usize = a
                .dispensing
                .iter()
                .flat_map(|m| &m.days)
                .map(|d| d.drugs.len())
                .sum();
            assert_eq!(prescribed, dispensed);
            // A window is the same months as the whole history cut to the window.
            let from = YearMonth::parse("202501").unwrap();
            let to = YearMonth::parse("202506").unwrap();
            let window = histories.drugs(&key, from, to, TODAY, tokyo());
            let cut = |ms: &[MedicationMonth]| -> Vec<MedicationMonth> {
                ms.iter()
                    .filter(|m| m.month >= Some(from) && m.month <= Some(to))
                    .cloned()
                    .collect()
            };
            assert_eq!(window.months, cut(&a.months));
            assert_eq!(window.dispensing, cut(&a.dispensing));
        }
        assert!(with_drugs > 150, "most people have drugs: {with_drugs}");
        // Another seed, another history.
        let p = PersonKey::of(&population.people()[0]);
        assert_ne!(
            Histories::new(7).drugs(&p, all, now, TODAY, tokyo()),
            histories.drugs(&p, all, now, TODAY, tokyo())
        );
    }

    #[test]
    fn institution_codes_are_valid_in_every_prefecture() {
        for pref in 1..=47u8 {
            let p = Prefecture::from_code(pref).unwrap();
            for i in 0..CLINICS.len() {
                let code = institution_code(p, i);
                let parsed =
                    MedicalInstitutionCode::parse(&code).unwrap_or_else(|e| panic!("{code}: {e}"));
                assert_eq!(parsed.prefecture(), p);
            }
        }
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
                let date = c.date().unwrap();
                assert!(date <= TODAY && date.year() > TODAY.year() - 5);
                assert!((40..75).contains(&p.age_on(date)));
                assert_eq!(c.items.len(), 15);
                assert_eq!(c.items[0].item_code.as_deref(), Some("9N001000000000001"));
                assert_eq!(c.items[0].data_type.as_deref(), Some("PQ"));
                assert_eq!(c.items[0].oid.as_deref(), Some(CHECKUP_OID));
                let bmi: f64 = c.items[2].data_value.as_deref().unwrap().parse().unwrap();
                assert!((14.0..40.0).contains(&bmi), "{bmi}");
                assert!(c.items[14].data_value_name.is_some());
            }
        }
        assert!(with_checkups > 20, "{with_checkups}");
    }
}
