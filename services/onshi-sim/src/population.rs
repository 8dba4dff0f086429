//! The synthetic insured population the simulator answers for.
//!
//! Generated from a seed with [`SplitMix64`], our own tiny generator, so that the same seed
//! gives the same people on every machine and every version of every dependency (a test or a
//! demo script picks people with `onshi-sim population --seed 42` and looks them up later).
//!
//! Every date is drawn relative to [`EPOCH`], a fixed day, never relative to today: the people
//! of a seed never change. What depends on the day of the query (age, copay ratio, certificate
//! periods) is computed by [`crate::service`] from the request's `QualificationConfirmationDate`.
//!
//! Shape of the population:
//! - households sharing insurer, symbol and number, told apart by branch (`00` the insured
//!   person, `01`–`03` family; late-stage elderly insurance has one person per number, no
//!   branch and an 8-digit number);
//! - insurers of five kinds: 協会けんぽ (law code 01, one per prefecture), 健康保険組合 (06),
//!   共済組合 (31–34), 後期高齢者医療広域連合 (39), and 6-digit 国民健康保険 numbers; every
//!   insurer number has a valid check digit and none is [`crate::service::MAINTENANCE_INSURER`];
//! - about one household in ten has lost its qualification (`DisqualificationDate`,
//!   `ReasonOfLoss`);
//! - about a quarter of the people hold a copay limit certificate (限度額適用認定証);
//! - one person in fifty (none below 50 people) receives medical aid (医療扶助): they come
//!   last, drawn from a generator of their own so that the other people of a seed do not
//!   change with them; they are found by the welfare office's 公費負担者番号 (law code 12) as
//!   insurer number and their 7-digit 受給者番号 as number, without symbol or branch; one in
//!   five is valid but not yet registered online (`QualificationValidity` 6), the others get
//!   medical tickets for the month asked about.
//!
//! Names, addresses and insurer names are made up from small lists; any likeness is chance.

use std::collections::{HashMap, HashSet};

use onshi_domain::check_digit;
use onshi_domain::codes::{PersonalFamilyClassification, QualificationValidity, ReasonOfLoss, Sex};
use onshi_domain::ids::{
    BirthDate, InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber,
    Prefecture,
};
use serde::Serialize;
use time::macros::date;
use time::{Date, Duration, Month};

/// The fixed day every generated date is relative to. Everybody is born, insured and (for some)
/// disqualified on or before it.
pub const EPOCH: Date = date!(2025 - 04 - 01);

/// The day late-stage elderly insurance (後期高齢者医療制度) started.
const LATE_STAGE_START: Date = date!(2008 - 04 - 01);

// ---------------------------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea, Flood 2014): 64 bits of state, good enough statistics for test
/// data, and a definition short enough that its output can never change under us.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0), by multiply-shift (bias below 2^-32 for our ranges).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------------
// People
// ---------------------------------------------------------------------------------------------

/// The kind of public medical insurance, which decides the shape of the numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InsuranceKind {
    /// 全国健康保険協会 (協会けんぽ), law code 01.
    KyokaiKenpo,
    /// 健康保険組合, law code 06.
    HealthInsuranceSociety,
    /// 共済組合, law codes 31–34.
    MutualAid,
    /// 後期高齢者医療, law code 39: no branch, 8-digit numbers, 75 and over.
    LateStageElderly,
    /// 国民健康保険: 6-digit insurer numbers.
    NationalHealthInsurance,
    /// 医療扶助 (medical aid under the Public Assistance Act): the welfare office's
    /// 公費負担者番号 (law code 12) and the recipient's 受給者番号, no symbol, no branch.
    MedicalAid,
}

/// What the welfare office holds about a medical-aid recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MedicalAidRecord {
    pub welfare_office_name: String,
    /// Valid but not yet registered online (`QualificationValidity` 6): no tickets.
    pub unregistered: bool,
    /// A dispensing ticket (調剤券) is issued beside the medical ticket (医療券) each month.
    pub dispensing: bool,
    /// 傷病名 on the tickets, one or two.
    pub injuries: Vec<&'static str>,
    /// 本人支払額 in yen (0 for most).
    pub self_pay: u32,
    /// 地区担当員 and 取扱担当者 of the welfare office.
    pub district_contact: String,
    pub handling_contact: String,
}

/// Why and when a qualification ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub date: Date,
    pub reason: ReasonOfLoss,
}

/// One insured person (or dependent) as the national system holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub kind: InsuranceKind,
    pub insurer_number: InsurerNumber,
    pub insurer_name: String,
    pub symbol: Option<InsuredCardSymbol>,
    pub number: InsuredIdentificationNumber,
    /// `None` for late-stage elderly insurance.
    pub branch: Option<InsuredBranchNumber>,
    pub family: PersonalFamilyClassification,
    /// The insured person (head of the household) this qualification hangs from.
    pub insured_name: String,
    /// Kanji, family and given name separated by an ideographic space.
    pub name: String,
    /// Half-width katakana, separated by a space.
    pub name_kana: String,
    pub sex: Sex,
    pub birthdate: BirthDate,
    pub address: String,
    /// `NNN-NNNN`.
    pub post_number: String,
    pub qualification_date: Date,
    pub card_issued: Date,
    pub loss: Option<Loss>,
    /// Which copay-limit bracket the person's certificate has, if they hold one; the bracket
    /// itself depends on the age on the day of the query (A-brackets under 70, B from 70).
    pub limit_rank: Option<u8>,
    /// Only for [`InsuranceKind::MedicalAid`].
    pub medical_aid: Option<MedicalAidRecord>,
}

impl Person {
    /// What the national system answers for this person (1 valid, 2 invalid, or 6 for a
    /// medical-aid recipient not yet registered online).
    pub fn validity(&self) -> QualificationValidity {
        if self.loss.is_some() {
            QualificationValidity::Invalid
        } else if self.medical_aid.as_ref().is_some_and(|a| a.unregistered) {
            QualificationValidity::ValidUnregistered
        } else {
            QualificationValidity::Valid
        }
    }

    /// Full years of age on `day`.
    pub fn age_on(&self, day: Date) -> i32 {
        let born = self.birthdate.date();
        let mut age = day.year() - born.year();
        if (u8::from(day.month()), day.day()) < (u8::from(born.month()), born.day()) {
            age -= 1;
        }
        age
    }

    /// True until the March 31 that ends the school year in which the child turns 6
    /// (義務教育就学前).
    pub fn is_preschool_on(&self, day: Date) -> bool {
        let born = self.birthdate.date();
        // Legally one's age increases the day before the birthday; a child born on April 1
        // therefore starts school in the year it turns 6, with those born before it.
        let eve = born - Duration::days(1);
        let sixth_eve_year = eve.year() + 6;
        let end_year = if u8::from(eve.month()) < 4 {
            sixth_eve_year
        } else {
            sixth_eve_year + 1
        };
        day <= date_or_clamp(end_year, Month::March, 31)
    }

    /// `InsuredPartialContributionRatio` on `day`: 010 for late-stage elderly insurance, 020
    /// from 70 and before school age, 030 otherwise. (Higher-income elderly brackets are not
    /// modelled.)
    pub fn copay_ratio_on(&self, day: Date) -> &'static str {
        if self.kind == InsuranceKind::LateStageElderly {
            "010"
        } else if self.age_on(day) >= 70 || self.is_preschool_on(day) {
            "020"
        } else {
            "030"
        }
    }

    /// What a clerk would type, plus what the simulator will answer: one line of
    /// `onshi-sim population`.
    pub fn card_view(&self) -> CardView {
        let validity = self.validity();
        CardView {
            insurer_number: self.insurer_number.to_string(),
            symbol: self
                .symbol
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            number: self.number.to_string(),
            branch: self
                .branch
                .as_ref()
                .map(|b| b.to_string())
                .unwrap_or_default(),
            birthdate: self.birthdate.to_string(),
            name: self.name.clone(),
            name_kana: self.name_kana.clone(),
            sex: self.sex.code(),
            family: self.family.code(),
            kind: self.kind,
            insurer_name: self.insurer_name.clone(),
            expected: if validity.is_valid() {
                "valid"
            } else {
                "invalid"
            },
            qualification_validity: validity.code(),
        }
    }
}

/// A person as `onshi-sim population` prints them (one JSON object per line). Absent symbol
/// and branch are empty strings, as the clerk would leave the fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardView {
    pub insurer_number: String,
    pub symbol: String,
    pub number: String,
    pub branch: String,
    /// yyyyMMdd.
    pub birthdate: String,
    pub name: String,
    pub name_kana: String,
    /// Code table 007.
    pub sex: &'static str,
    /// Code table 009 (1 insured, 2 family).
    pub family: &'static str,
    pub kind: InsuranceKind,
    pub insurer_name: String,
    /// `valid` or `invalid`.
    pub expected: &'static str,
    /// Code table 006, what `QualificationValidity` will say.
    pub qualification_validity: &'static str,
}

// ---------------------------------------------------------------------------------------------
// The population
// ---------------------------------------------------------------------------------------------

/// Everybody the simulator knows, indexed by (insurer number, insured number).
#[derive(Debug, Clone)]
pub struct Population {
    seed: u64,
    people: Vec<Person>,
    index: HashMap<(InsurerNumber, InsuredIdentificationNumber), Vec<usize>>,
}

impl Population {
    /// Exactly `count` people, the same for the same seed: insured households, then the
    /// medical-aid recipients ([`medical_aid_count`] of them).
    pub fn generate(seed: u64, count: usize) -> Self {
        let aid = medical_aid_count(count);
        let insured = count - aid;
        let mut generator = Generator::new(seed, count);
        let mut people = Vec::with_capacity(count);
        while people.len() < insured {
            let household = generator.household();
            let room = insured - people.len();
            people.extend(household.into_iter().take(room));
        }
        people.extend(AidGenerator::new(seed).recipients(aid));
        let mut index: HashMap<_, Vec<usize>> = HashMap::new();
        for (i, p) in people.iter().enumerate() {
            index
                .entry((p.insurer_number.clone(), p.number.clone()))
                .or_default()
                .push(i);
        }
        Self {
            seed,
            people,
            index,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn people(&self) -> &[Person] {
        &self.people
    }

    pub fn len(&self) -> usize {
        self.people.len()
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// Everybody under this insurer and number (a household: the insured person and family).
    pub fn find(
        &self,
        insurer: &InsurerNumber,
        number: &InsuredIdentificationNumber,
    ) -> impl Iterator<Item = &Person> {
        self.index
            .get(&(insurer.clone(), number.clone()))
            .into_iter()
            .flatten()
            .map(|&i| &self.people[i])
    }
}

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

/// (kanji, half-width kana).
type Name = (&'static str, &'static str);

const SURNAMES: &[Name] = &[
    ("佐藤", "ｻﾄｳ"),
    ("鈴木", "ｽｽﾞｷ"),
    ("高橋", "ﾀｶﾊｼ"),
    ("田中", "ﾀﾅｶ"),
    ("伊藤", "ｲﾄｳ"),
    ("渡辺", "ﾜﾀﾅﾍﾞ"),
    ("山本", "ﾔﾏﾓﾄ"),
    ("中村", "ﾅｶﾑﾗ"),
    ("小林", "ｺﾊﾞﾔｼ"),
    ("加藤", "ｶﾄｳ"),
    ("吉田", "ﾖｼﾀﾞ"),
    ("山田", "ﾔﾏﾀﾞ"),
    ("佐々木", "ｻｻｷ"),
    ("山口", "ﾔﾏｸﾞﾁ"),
    ("松本", "ﾏﾂﾓﾄ"),
    ("井上", "ｲﾉｳｴ"),
    ("木村", "ｷﾑﾗ"),
    ("林", "ﾊﾔｼ"),
    ("斎藤", "ｻｲﾄｳ"),
    ("清水", "ｼﾐｽﾞ"),
];

const MALE_NAMES: &[Name] = &[
    ("太郎", "ﾀﾛｳ"),
    ("一郎", "ｲﾁﾛｳ"),
    ("健太", "ｹﾝﾀ"),
    ("翔太", "ｼｮｳﾀ"),
    ("大輔", "ﾀﾞｲｽｹ"),
    ("誠", "ﾏｺﾄ"),
    ("浩", "ﾋﾛｼ"),
    ("隆", "ﾀｶｼ"),
    ("蓮", "ﾚﾝ"),
    ("悠真", "ﾕｳﾏ"),
    ("拓也", "ﾀｸﾔ"),
    ("茂", "ｼｹﾞﾙ"),
];

const FEMALE_NAMES: &[Name] = &[
    ("花子", "ﾊﾅｺ"),
    ("陽子", "ﾖｳｺ"),
    ("美咲", "ﾐｻｷ"),
    ("結衣", "ﾕｲ"),
    ("陽菜", "ﾋﾅ"),
    ("恵子", "ｹｲｺ"),
    ("由美", "ﾕﾐ"),
    ("愛", "ｱｲ"),
    ("裕子", "ﾕｳｺ"),
    ("真由美", "ﾏﾕﾐ"),
    ("葵", "ｱｵｲ"),
    ("幸子", "ｻﾁｺ"),
];

const CITIES: &[&str] = &[
    "中央市",
    "青葉市",
    "若葉市",
    "桜川市",
    "緑ヶ丘市",
    "東山市",
    "西浜市",
    "北野市",
    "南台市",
    "朝日市",
];

const TOWNS: &[&str] = &[
    "本町",
    "栄町",
    "幸町",
    "寿町",
    "錦町",
    "花園",
    "新町",
    "元町",
    "八幡町",
    "大手町",
];

const COMPANIES: &[&str] = &[
    "さくら電機",
    "あおば商事",
    "みなと運輸",
    "ひかり製薬",
    "やまと建設",
    "つばさ情報システム",
    "いろは食品",
    "かもめ銀行",
    "はやて自動車",
    "こだま印刷",
];

const MINISTRIES: &[&str] = &["財務省", "厚生労働省", "国土交通省", "法務省", "文部科学省"];

const SOCIETY_SYMBOLS: &[&str] = &["1", "2", "10", "12-34", "本社", "支店"];

const NHI_SYMBOLS: &[&str] = &["北", "南", "中", "東", "西", "01", "12"];

/// An insurer of the generated population.
#[derive(Debug, Clone)]
struct Insurer {
    kind: InsuranceKind,
    number: InsurerNumber,
    name: String,
    prefecture: Prefecture,
    /// The municipality of a national health insurance insurer.
    city: Option<&'static str>,
}

/// How many households of each kind, out of 100.
const KIND_WEIGHTS: &[(InsuranceKind, u64)] = &[
    (InsuranceKind::KyokaiKenpo, 30),
    (InsuranceKind::HealthInsuranceSociety, 22),
    (InsuranceKind::MutualAid, 8),
    (InsuranceKind::LateStageElderly, 15),
    (InsuranceKind::NationalHealthInsurance, 25),
];

struct Generator {
    rng: SplitMix64,
    insurers: Vec<Insurer>,
    /// (insurer, number) pairs already handed out: a number is one household.
    numbers: HashSet<(String, String)>,
}

/// A prefecture name without 都/府/県, as used in branch names (北海道 stays whole).
fn short_prefecture(p: Prefecture) -> &'static str {
    let name = p.name_ja();
    if name == "北海道" {
        return name;
    }
    name.strip_suffix(['都', '府', '県']).unwrap_or(name)
}

fn with_check_digit(body: &str) -> InsurerNumber {
    let check = check_digit::compute(body).expect("insurer number bodies are ASCII digits");
    InsurerNumber::parse(&format!("{body}{check}"))
        .expect("generated insurer numbers have a real prefecture and their check digit")
}

fn date_or_clamp(year: i32, month: Month, day: u8) -> Date {
    Date::from_calendar_date(year, month, day)
        .or_else(|_| Date::from_calendar_date(year, month, 28))
        .expect("the 28th exists in every month")
}

/// `day` plus `years` calendar years (February 29 becomes February 28).
fn add_years(day: Date, years: i32) -> Date {
    date_or_clamp(day.year() + years, day.month(), day.day())
}

impl Generator {
    fn new(seed: u64, count: usize) -> Self {
        let mut rng = SplitMix64::new(seed);
        let per_kind = (count / 200).clamp(2, 40);
        let insurers = Self::insurers(&mut rng, per_kind);
        Self {
            rng,
            insurers,
            numbers: HashSet::new(),
        }
    }

    fn prefecture(rng: &mut SplitMix64) -> Prefecture {
        Prefecture::from_code(rng.between(1, 47) as u8).expect("01–47 are prefectures")
    }

    /// `per_kind` insurers of each kind, with distinct numbers. The 3-digit insurer part is
    /// 100–899, so the maintenance number (insurer part 999) is never among them.
    fn insurers(rng: &mut SplitMix64, per_kind: usize) -> Vec<Insurer> {
        let mut taken = HashSet::new();
        let mut out = Vec::new();
        // 協会けんぽ and 後期高齢者医療広域連合: one per prefecture.
        let mut kyokai_prefectures = HashSet::new();
        let mut late_prefectures = HashSet::new();
        for (kind, _) in KIND_WEIGHTS {
            let mut made = 0;
            while made < per_kind {
                let prefecture = Self::prefecture(rng);
                let pp = prefecture.as_str();
                let short = short_prefecture(prefecture);
                let serial = rng.between(100, 899);
                let (body, name, city) = match kind {
                    InsuranceKind::KyokaiKenpo => {
                        if !kyokai_prefectures.insert(prefecture) {
                            continue;
                        }
                        (
                            format!("01{pp}001"),
                            format!("全国健康保険協会{short}支部"),
                            None,
                        )
                    }
                    InsuranceKind::HealthInsuranceSociety => {
                        let company = COMPANIES[made % COMPANIES.len()];
                        let name = if made < COMPANIES.len() {
                            format!("{company}健康保険組合")
                        } else {
                            format!("{short}{company}健康保険組合")
                        };
                        (format!("06{pp}{serial}"), name, None)
                    }
                    InsuranceKind::MutualAid => {
                        let law = 31 + (made % 4);
                        let name = match law {
                            31 => format!("{}共済組合", rng.pick(MINISTRIES)),
                            32 => format!("地方職員共済組合{short}支部"),
                            33 => format!("警察共済組合{short}支部"),
                            _ => format!("公立学校共済組合{short}支部"),
                        };
                        (format!("{law}{pp}{serial}"), name, None)
                    }
                    InsuranceKind::LateStageElderly => {
                        if !late_prefectures.insert(prefecture) {
                            continue;
                        }
                        (
                            format!("39{pp}{serial}"),
                            format!("{short}後期高齢者医療広域連合"),
                            None,
                        )
                    }
                    // Not in KIND_WEIGHTS: recipients come from `AidGenerator`.
                    InsuranceKind::MedicalAid => break,
                    InsuranceKind::NationalHealthInsurance => {
                        let city = *rng.pick(CITIES);
                        (
                            format!("{pp}{serial}"),
                            format!("{city}国民健康保険"),
                            Some(city),
                        )
                    }
                };
                let number = with_check_digit(&body);
                if !taken.insert(number.clone()) {
                    continue;
                }
                out.push(Insurer {
                    kind: *kind,
                    number,
                    name,
                    prefecture,
                    city,
                });
                made += 1;
            }
        }
        out
    }

    fn kind(&mut self) -> InsuranceKind {
        let mut roll = self.rng.below(100);
        for (kind, weight) in KIND_WEIGHTS {
            if roll < *weight {
                return *kind;
            }
            roll -= weight;
        }
        InsuranceKind::KyokaiKenpo
    }

    /// A birth date making the person exactly `age` on [`EPOCH`].
    fn birthdate(&mut self, age: u64) -> Date {
        let anniversary = add_years(EPOCH, -(age as i32));
        anniversary - Duration::days(self.rng.below(365) as i64)
    }

    /// A date in `from..=to` (or `to` when the range is empty).
    fn date_between(&mut self, from: Date, to: Date) -> Date {
        if from >= to {
            return to;
        }
        let span = (to - from).whole_days() as u64;
        from + Duration::days(self.rng.between(0, span) as i64)
    }

    fn symbol(&mut self, insurer: &Insurer) -> Option<InsuredCardSymbol> {
        let short = short_prefecture(insurer.prefecture);
        let text = match insurer.kind {
            InsuranceKind::KyokaiKenpo => {
                let digits = self.rng.between(7, 8) as u32;
                let n = self
                    .rng
                    .between(10u64.pow(digits - 1), 10u64.pow(digits) - 1);
                n.to_string()
            }
            InsuranceKind::HealthInsuranceSociety => {
                if self.rng.percent(25) {
                    short.to_string()
                } else {
                    self.rng.pick(SOCIETY_SYMBOLS).to_string()
                }
            }
            InsuranceKind::MutualAid => {
                let roll = self.rng.below(3);
                if roll == 0 && insurer.number.law_code() == Some("34") {
                    format!("公立{short}")
                } else if roll == 1 {
                    short.to_string()
                } else {
                    format!("{}-{}", self.rng.between(1, 9), self.rng.between(10, 99))
                }
            }
            InsuranceKind::LateStageElderly | InsuranceKind::MedicalAid => return None,
            InsuranceKind::NationalHealthInsurance => {
                if self.rng.percent(50) {
                    return None;
                }
                self.rng.pick(NHI_SYMBOLS).to_string()
            }
        };
        Some(InsuredCardSymbol::parse(&text).expect("generated symbols are short and printable"))
    }

    /// A number not yet used under this insurer.
    fn number(&mut self, insurer: &Insurer) -> InsuredIdentificationNumber {
        loop {
            let text = match insurer.kind {
                InsuranceKind::LateStageElderly => {
                    self.rng.between(10_000_000, 99_999_999).to_string()
                }
                InsuranceKind::NationalHealthInsurance => {
                    format!("{:07}", self.rng.between(1, 9_999_999))
                }
                _ => self.rng.between(1, 9_999_999).to_string(),
            };
            if self
                .numbers
                .insert((insurer.number.to_string(), text.clone()))
            {
                return InsuredIdentificationNumber::parse(&text)
                    .expect("generated numbers are short digit strings");
            }
        }
    }

    fn given_name(&mut self, sex: Sex) -> Name {
        match sex {
            Sex::Female => *self.rng.pick(FEMALE_NAMES),
            _ => *self.rng.pick(MALE_NAMES),
        }
    }

    fn sex(&mut self) -> Sex {
        if self.rng.percent(50) {
            Sex::Male
        } else {
            Sex::Female
        }
    }

    /// One household: the insured person first, then family by branch.
    fn household(&mut self) -> Vec<Person> {
        let kind = self.kind();
        let candidates: Vec<usize> = (0..self.insurers.len())
            .filter(|&i| self.insurers[i].kind == kind)
            .collect();
        let insurer = self.insurers[*self.rng.pick(&candidates)].clone();

        let surname = *self.rng.pick(SURNAMES);
        let city = insurer.city.unwrap_or_else(|| *self.rng.pick(CITIES));
        let address = format!(
            "{}{city}{}{}丁目{}番{}号",
            insurer.prefecture.name_ja(),
            self.rng.pick(TOWNS),
            self.rng.between(1, 9),
            self.rng.between(1, 30),
            self.rng.between(1, 20),
        );
        let post_number = format!(
            "{:03}-{:04}",
            self.rng.between(100, 999),
            self.rng.below(10_000)
        );
        let symbol = self.symbol(&insurer);
        let number = self.number(&insurer);

        // (sex, age on EPOCH) of each member, the insured person first.
        let mut members: Vec<(Sex, u64)> = Vec::new();
        if kind == InsuranceKind::LateStageElderly {
            members.push((self.sex(), self.rng.between(75, 99)));
        } else {
            let head_age = if self.rng.percent(10) {
                self.rng.between(65, 72)
            } else {
                self.rng.between(20, 64)
            };
            let head_sex = if self.rng.percent(65) {
                Sex::Male
            } else {
                Sex::Female
            };
            members.push((head_sex, head_age));
            if !self.rng.percent(30) {
                if self.rng.percent(70) {
                    let spouse_sex = if head_sex == Sex::Male {
                        Sex::Female
                    } else {
                        Sex::Male
                    };
                    let spouse_age = (head_age + self.rng.below(11))
                        .saturating_sub(5)
                        .clamp(18, 72);
                    members.push((spouse_sex, spouse_age));
                }
                if head_age >= 20 {
                    let children = self.rng.between(1, 2);
                    let oldest = (head_age - 20).min(22);
                    for _ in 0..children {
                        members.push((self.sex(), self.rng.between(0, oldest)));
                    }
                }
            }
        }

        let head_birth = self.birthdate(members[0].1);
        let latest_qualification = EPOCH - Duration::days(30);
        let head_qualification = if kind == InsuranceKind::LateStageElderly {
            add_years(head_birth, 75).max(LATE_STAGE_START)
        } else {
            let earliest = add_years(head_birth, 18).max(add_years(EPOCH, -20));
            self.date_between(earliest, latest_qualification)
        };

        let mut people = Vec::with_capacity(members.len());
        let mut insured_name = String::new();
        for (i, &(sex, age)) in members.iter().enumerate() {
            let birth = if i == 0 {
                head_birth
            } else {
                self.birthdate(age)
            };
            let qualification = if i == 0 {
                head_qualification
            } else {
                head_qualification.max(birth)
            };
            let given = self.given_name(sex);
            let name = format!("{}\u{3000}{}", surname.0, given.0);
            if i == 0 {
                insured_name = name.clone();
            }
            let card_issued = self.date_between(
                qualification,
                (qualification + Duration::days(14)).min(EPOCH),
            );
            let limit_rank = self.rng.percent(25).then(|| self.rng.below(5) as u8);
            people.push(Person {
                kind,
                insurer_number: insurer.number.clone(),
                insurer_name: insurer.name.clone(),
                symbol: symbol.clone(),
                number: number.clone(),
                branch: (kind != InsuranceKind::LateStageElderly).then(|| {
                    InsuredBranchNumber::parse(&format!("{i:02}"))
                        .expect("two digits are a branch number")
                }),
                family: if i == 0 {
                    PersonalFamilyClassification::Insured
                } else {
                    PersonalFamilyClassification::Family
                },
                insured_name: insured_name.clone(),
                name,
                name_kana: format!("{} {}", surname.1, given.1),
                sex,
                birthdate: BirthDate::from_date(birth).expect("birth dates are after 1900"),
                address: address.clone(),
                post_number: post_number.clone(),
                qualification_date: qualification,
                card_issued,
                loss: None,
                limit_rank,
                medical_aid: None,
            });
        }

        // About one household in ten has lost its qualification, all members on the same day.
        let newest = people
            .iter()
            .map(|p| p.qualification_date)
            .max()
            .unwrap_or(EPOCH);
        if self.rng.percent(10) && newest + Duration::days(2) < EPOCH {
            let day = self.date_between(newest + Duration::days(1), EPOCH - Duration::days(1));
            let roll = self.rng.below(100);
            let reason = if kind == InsuranceKind::LateStageElderly {
                if roll < 60 {
                    ReasonOfLoss::Death
                } else {
                    ReasonOfLoss::Other
                }
            } else if roll < 80 {
                ReasonOfLoss::OtherInsuranceAcquired
            } else if roll < 85 {
                ReasonOfLoss::PublicAssistanceStarted
            } else {
                ReasonOfLoss::Other
            };
            for p in &mut people {
                p.loss = Some(Loss { date: day, reason });
            }
        }
        people
    }
}

// ---------------------------------------------------------------------------------------------
// Medical aid
// ---------------------------------------------------------------------------------------------

/// How many of `count` people receive medical aid: one in fifty (about the national rate of
/// public assistance), none in populations under 50.
pub fn medical_aid_count(count: usize) -> usize {
    count / 50
}

/// Mixed into the seed for the medical-aid generator, so its draws never shift the others'.
const AID_SALT: u64 = 0x6d65_6469_6361_6c61; // "medicala"

const INJURIES: &[&str] = &[
    "高血圧症",
    "２型糖尿病",
    "腰痛症",
    "慢性胃炎",
    "変形性膝関節症",
    "気管支喘息",
    "脂質異常症",
    "不眠症",
];

const CONTACT_GIVEN: &[&str] = &["誠", "浩", "恵子", "由美", "隆", "陽子"];

/// Medical-aid recipients, one person per 受給者番号.
struct AidGenerator {
    rng: SplitMix64,
    numbers: HashSet<(String, String)>,
}

impl AidGenerator {
    fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64::new(seed ^ AID_SALT),
            numbers: HashSet::new(),
        }
    }

    fn contact(&mut self) -> String {
        let surname = self.rng.pick(SURNAMES).0;
        format!("{surname}\u{3000}{}", self.rng.pick(CONTACT_GIVEN))
    }

    fn recipients(&mut self, count: usize) -> Vec<Person> {
        (0..count).map(|_| self.recipient()).collect()
    }

    fn recipient(&mut self) -> Person {
        let prefecture = Generator::prefecture(&mut self.rng);
        let city = *self.rng.pick(CITIES);
        // 公費負担者番号: law code 12 (生活保護), prefecture, the office's 3 digits, check digit.
        let office = with_check_digit(&format!(
            "12{}{}",
            prefecture.as_str(),
            self.rng.between(100, 899)
        ));
        let number = loop {
            let body = format!("{:06}", self.rng.between(1, 999_999));
            let check = check_digit::compute(&body).expect("ASCII digits");
            let text = format!("{body}{check}");
            if self.numbers.insert((office.to_string(), text.clone())) {
                break InsuredIdentificationNumber::parse(&text)
                    .expect("7 digits are an insured number");
            }
        };
        let sex = if self.rng.percent(50) {
            Sex::Male
        } else {
            Sex::Female
        };
        let surname = *self.rng.pick(SURNAMES);
        let given = match sex {
            Sex::Female => *self.rng.pick(FEMALE_NAMES),
            _ => *self.rng.pick(MALE_NAMES),
        };
        let age = self.rng.between(20, 90);
        let anniversary = add_years(EPOCH, -(age as i32));
        let birth = anniversary - Duration::days(self.rng.below(365) as i64);
        let started = EPOCH - Duration::days(self.rng.between(30, 3650) as i64);
        let name = format!("{}\u{3000}{}", surname.0, given.0);
        let office_name = format!("{city}福祉事務所");
        let mut injuries = vec![*self.rng.pick(INJURIES)];
        if self.rng.percent(40) {
            let second = *self.rng.pick(INJURIES);
            if second != injuries[0] {
                injuries.push(second);
            }
        }
        let record = MedicalAidRecord {
            welfare_office_name: office_name.clone(),
            unregistered: self.rng.percent(20),
            dispensing: self.rng.percent(60),
            injuries,
            self_pay: if self.rng.percent(15) {
                self.rng.between(1, 20) as u32 * 1000
            } else {
                0
            },
            district_contact: self.contact(),
            handling_contact: self.contact(),
        };
        Person {
            kind: InsuranceKind::MedicalAid,
            insurer_number: office,
            insurer_name: office_name,
            symbol: None,
            number,
            branch: None,
            family: PersonalFamilyClassification::Insured,
            insured_name: name.clone(),
            name,
            name_kana: format!("{} {}", surname.1, given.1),
            sex,
            birthdate: BirthDate::from_date(birth).expect("birth dates are after 1900"),
            address: format!(
                "{}{city}{}{}丁目{}番{}号",
                prefecture.name_ja(),
                self.rng.pick(TOWNS),
                self.rng.between(1, 9),
                self.rng.between(1, 30),
                self.rng.between(1, 20),
            ),
            post_number: format!(
                "{:03}-{:04}",
                self.rng.between(100, 999),
                self.rng.below(10_000)
            ),
            qualification_date: started,
            card_issued: started,
            loss: None,
            limit_rank: None,
            medical_aid: Some(record),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medical_aid_recipients_come_last_and_leave_the_others_unchanged() {
        let small = Population::generate(7, 49);
        assert!(small.people().iter().all(|p| p.medical_aid.is_none()));
        let population = Population::generate(7, 1000);
        let aid: Vec<_> = population
            .people()
            .iter()
            .filter(|p| p.kind == InsuranceKind::MedicalAid)
            .collect();
        assert_eq!(aid.len(), 20);
        assert!(
            population.people()[980..]
                .iter()
                .all(|p| p.kind == InsuranceKind::MedicalAid)
        );
        // A larger population of the same seed (same insurers: count / 200 of each kind)
        // starts with the same insured people: the recipients' draws shift nobody.
        let other = Population::generate(7, 1049);
        assert!(population.people()[..980] == other.people()[..980]);
        let unregistered = aid
            .iter()
            .filter(|p| p.validity() == QualificationValidity::ValidUnregistered)
            .count();
        assert!((1..20).contains(&unregistered), "{unregistered}");
        // Found by the office's number and the recipient's number.
        let p = aid[0];
        assert_eq!(population.find(&p.insurer_number, &p.number).count(), 1);
        assert_eq!(Population::generate(7, 1000).people(), population.people());
    }

    #[test]
    fn splitmix64_matches_the_reference_output() {
        // First outputs for seed 1234567 of the reference implementation (Vigna's
        // splitmix64.c), so the stream can never silently change.
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(rng.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn same_seed_same_people_other_seed_other_people() {
        let a = Population::generate(42, 500);
        let b = Population::generate(42, 500);
        assert_eq!(a.people(), b.people());
        let c = Population::generate(43, 500);
        assert_eq!(c.len(), 500);
        assert_ne!(a.people(), c.people());
        // A smaller population of the same seed is not required to be a prefix, but it must
        // be exactly as large as asked.
        assert_eq!(Population::generate(42, 7).len(), 7);
        assert!(Population::generate(42, 0).is_empty());
    }

    #[test]
    fn every_insurer_number_is_valid_and_none_is_the_maintenance_number() {
        for seed in [1, 42, 2024] {
            let population = Population::generate(seed, 2000);
            for p in population.people() {
                let n = p.insurer_number.as_str();
                assert!(check_digit::is_valid(n), "{n}");
                assert_eq!(InsurerNumber::parse(n).unwrap(), p.insurer_number);
                assert_eq!(
                    InsurerNumber::parse(&p.insurer_number.to_file_field()).unwrap(),
                    p.insurer_number
                );
                assert_ne!(n, crate::service::MAINTENANCE_INSURER);
            }
        }
    }

    #[test]
    fn the_mix_has_every_kind_and_the_rules_of_each() {
        let population = Population::generate(42, 3000);
        let mut kinds = HashSet::new();
        let mut invalid = 0;
        let mut family = 0;
        for p in population.people() {
            kinds.insert(p.kind);
            let n = &p.insurer_number;
            match p.kind {
                InsuranceKind::LateStageElderly => {
                    assert_eq!(n.law_code(), Some("39"));
                    assert!(p.branch.is_none());
                    assert!(p.symbol.is_none());
                    let num = p.number.as_str();
                    assert!(num.len() == 8 && num.bytes().all(|b| b.is_ascii_digit()));
                    assert!(p.age_on(EPOCH) >= 75);
                    assert_eq!(p.copay_ratio_on(EPOCH), "010");
                }
                InsuranceKind::NationalHealthInsurance => {
                    assert!(n.is_national_health_insurance());
                }
                InsuranceKind::KyokaiKenpo => assert_eq!(n.law_code(), Some("01")),
                InsuranceKind::HealthInsuranceSociety => assert_eq!(n.law_code(), Some("06")),
                InsuranceKind::MutualAid => {
                    assert!(matches!(n.law_code(), Some("31" | "32" | "33" | "34")));
                }
                InsuranceKind::MedicalAid => {
                    assert_eq!(n.law_code(), Some("12"));
                    assert!(p.branch.is_none() && p.symbol.is_none());
                    let num = p.number.as_str();
                    assert!(num.len() == 7 && check_digit::is_valid(num), "{num}");
                    let aid = p.medical_aid.as_ref().expect("a medical-aid record");
                    assert!(!aid.injuries.is_empty());
                    assert!(p.validity().is_valid());
                    continue;
                }
            }
            assert!(p.medical_aid.is_none());
            if p.kind != InsuranceKind::LateStageElderly {
                let branch = p.branch.as_ref().unwrap().as_str();
                assert!(["00", "01", "02", "03"].contains(&branch), "{branch}");
                assert_eq!(
                    p.family == PersonalFamilyClassification::Insured,
                    branch == "00"
                );
                assert!(p.age_on(EPOCH) < 75);
            }
            if p.family == PersonalFamilyClassification::Family {
                family += 1;
            }
            assert!(p.birthdate.date() <= EPOCH);
            assert!(p.qualification_date >= p.birthdate.date());
            assert!(p.qualification_date <= EPOCH);
            if let Some(loss) = &p.loss {
                invalid += 1;
                assert!(loss.date > p.qualification_date && loss.date < EPOCH);
                assert_eq!(p.validity(), QualificationValidity::Invalid);
            }
        }
        assert_eq!(kinds.len(), 6, "{kinds:?}");
        let share = invalid * 100 / population.len();
        assert!((4..=18).contains(&share), "{share}% invalid");
        assert!(family > 300, "{family} family members");
    }

    #[test]
    fn households_share_numbers_and_the_index_finds_them() {
        let population = Population::generate(7, 1000);
        for p in population.people() {
            let household: Vec<_> = population.find(&p.insurer_number, &p.number).collect();
            assert!(household.contains(&p));
            for other in &household {
                assert_eq!(other.symbol, p.symbol);
                assert_eq!(other.insured_name, p.insured_name);
                assert_eq!(other.loss.is_some(), p.loss.is_some());
            }
            let branches: HashSet<_> = household.iter().map(|o| o.branch.clone()).collect();
            assert_eq!(branches.len(), household.len(), "branches are distinct");
        }
    }

    #[test]
    fn copay_ratio_follows_age() {
        let population = Population::generate(42, 50);
        let mut p = population.people()[0].clone();
        p.kind = InsuranceKind::KyokaiKenpo;
        p.birthdate = BirthDate::parse("19800401").unwrap();
        assert_eq!(p.copay_ratio_on(date!(2025 - 04 - 01)), "030");
        assert_eq!(p.copay_ratio_on(date!(2050 - 03 - 31)), "030");
        assert_eq!(p.copay_ratio_on(date!(2050 - 04 - 01)), "020");
        p.birthdate = BirthDate::parse("20190401").unwrap();
        // Born on April 1: starts school in April 2025 with the children born before.
        assert!(p.is_preschool_on(date!(2025 - 03 - 31)));
        assert!(!p.is_preschool_on(date!(2025 - 04 - 01)));
        assert_eq!(p.copay_ratio_on(date!(2025 - 03 - 31)), "020");
        p.birthdate = BirthDate::parse("20190402").unwrap();
        assert!(p.is_preschool_on(date!(2026 - 03 - 31)));
        assert!(!p.is_preschool_on(date!(2026 - 04 - 01)));
        p.kind = InsuranceKind::LateStageElderly;
        assert_eq!(p.copay_ratio_on(date!(2026 - 04 - 01)), "010");
    }

    proptest::proptest! {
        #[test]
        fn any_seed_gives_exactly_count_people_with_valid_insurers(
            seed in proptest::prelude::any::<u64>(),
            count in 0usize..80,
        ) {
            let population = Population::generate(seed, count);
            proptest::prop_assert_eq!(population.len(), count);
            for p in population.people() {
                proptest::prop_assert!(check_digit::is_valid(p.insurer_number.as_str()));
                proptest::prop_assert!(p.birthdate.date() <= EPOCH);
                let same_branch = population
                    .find(&p.insurer_number, &p.number)
                    .filter(|o| o.branch == p.branch)
                    .count();
                proptest::prop_assert_eq!(same_branch, 1);
            }
        }
    }

    #[test]
    fn card_view_is_what_a_clerk_types() {
        let population = Population::generate(42, 200);
        let late = population
            .people()
            .iter()
            .find(|p| p.kind == InsuranceKind::LateStageElderly)
            .unwrap();
        let view = late.card_view();
        assert_eq!(view.branch, "");
        assert_eq!(view.symbol, "");
        assert_eq!(view.birthdate.len(), 8);
        let json = serde_json::to_string(&view).unwrap();
        assert!(json.contains("\"kind\":\"late_stage_elderly\""), "{json}");
    }
}
