//! Identifiers typed at the counter or read from Onshi files, parsed once at the boundary.
//!
//! Parse, don't validate: each type below can only be built by `parse`, so code holding an
//! [`InsurerNumber`] knows its check digit and prefecture are right, and code holding an
//! [`InsuredCardSymbol`] knows it is normalized. Every type serializes as its canonical string
//! and deserializes through `parse`, so a stored or transmitted value is checked again on the
//! way in.
//!
//! Errors ([`IdError`]) are written for the clerk at the counter: they name the field, repeat
//! the offending value (and nothing else, so a message never leaks another field of the
//! patient) and say what to fix, in English ([`std::fmt::Display`]) and Japanese
//! ([`IdError::message_ja`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, Month};

use crate::check_digit;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Which input field an [`IdError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// 保険者番号.
    InsurerNumber,
    /// 被保険者証記号.
    InsuredCardSymbol,
    /// 被保険者証番号.
    InsuredIdentificationNumber,
    /// 被保険者証枝番.
    InsuredBranchNumber,
    /// 生年月日.
    Birthdate,
    /// 医療機関コード.
    MedicalInstitutionCode,
    /// 都道府県番号.
    Prefecture,
}

impl Field {
    /// The field's name in English messages.
    pub fn name_en(self) -> &'static str {
        match self {
            Field::InsurerNumber => "insurer number",
            Field::InsuredCardSymbol => "insurance card symbol",
            Field::InsuredIdentificationNumber => "insured person's number",
            Field::InsuredBranchNumber => "branch number",
            Field::Birthdate => "date of birth",
            Field::MedicalInstitutionCode => "medical institution code",
            Field::Prefecture => "prefecture code",
        }
    }

    /// The field's name as printed on cards and in the national guides.
    pub fn name_ja(self) -> &'static str {
        match self {
            Field::InsurerNumber => "保険者番号",
            Field::InsuredCardSymbol => "被保険者証記号",
            Field::InsuredIdentificationNumber => "被保険者証番号",
            Field::InsuredBranchNumber => "枝番",
            Field::Birthdate => "生年月日",
            Field::MedicalInstitutionCode => "医療機関コード",
            Field::Prefecture => "都道府県番号",
        }
    }

    fn hint_en(self) -> &'static str {
        match self {
            Field::InsurerNumber
            | Field::InsuredCardSymbol
            | Field::InsuredIdentificationNumber
            | Field::InsuredBranchNumber => "check the number on the card",
            Field::Birthdate => "check the date of birth on the card",
            Field::MedicalInstitutionCode => "check the medical institution code in the settings",
            Field::Prefecture => "use a two-digit code from 01 to 47",
        }
    }

    fn hint_ja(self) -> &'static str {
        match self {
            Field::InsurerNumber
            | Field::InsuredCardSymbol
            | Field::InsuredIdentificationNumber
            | Field::InsuredBranchNumber => "保険証の番号をご確認ください。",
            Field::Birthdate => "生年月日をご確認ください。",
            Field::MedicalInstitutionCode => "医療機関コードの設定をご確認ください。",
            Field::Prefecture => "都道府県番号（01〜47）をご確認ください。",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name_en())
    }
}

/// The lengths named in [`Problem::WrongLength`].
mod expected {
    pub const INSURER: &str = "6 or 8 digits";
    pub const INSTITUTION: &str = "10 digits";
    pub const INSTITUTION_BODY: &str = "9 digits (without the check digit)";
    pub const BRANCH: &str = "1 or 2 digits";
    pub const DATE: &str = "8 digits (yyyyMMdd)";
    pub const PREFECTURE: &str = "2 digits";

    pub fn ja(expected: &str) -> &str {
        match expected {
            INSURER => "6桁または8桁",
            INSTITUTION => "10桁",
            INSTITUTION_BODY => "検証番号を除く9桁",
            BRANCH => "1桁または2桁",
            DATE => "西暦8桁（例：19800401）",
            PREFECTURE => "2桁",
            other => other,
        }
    }
}

/// What exactly is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Nothing was entered (after trimming spaces).
    Empty,
    /// More characters than the field allows.
    TooLong { max: usize, got: usize },
    /// Something other than the digits 0–9 (full-width digits are accepted and converted).
    NotDigits,
    /// The right kind of characters, but not as many as the field needs.
    WrongLength { expected: &'static str, got: usize },
    /// The last digit is not the check digit of the others: almost always a typing error.
    CheckDigit { expected: u8, got: u8 },
    /// A medical institution code (or a new site's reception number, 受付番号, which has the
    /// same form) whose check digit is wrong under its prefecture's rule: the rule is named
    /// because two rules exist and a code from another prefecture's list does not help.
    InstitutionCheckDigit {
        expected: u8,
        got: u8,
        prefecture: Prefecture,
    },
    /// The prefecture part (shown) is not 01–47.
    UnknownPrefecture(String),
    /// The fee-table digit of a medical institution code is not 1, 3, 4 or 6.
    UnknownFeeTable(char),
    /// Eight digits that are not a real calendar date.
    NotADate,
    /// A date of birth after today.
    InFuture,
    /// A date of birth before 1900-01-01.
    TooOld,
    /// A control or invisible formatting character, which would make the same card hash
    /// differently and cannot be written to an XML file.
    ControlCharacter,
    /// A branch number was given for late-stage elderly insurance (law code 39), which has none.
    BranchNotUsedByLateStageElderly,
    /// A late-stage elderly insured number (law code 39) that is not exactly 8 digits.
    LateStageElderlyNumberFormat,
}

impl fmt::Display for Problem {
    /// The reason alone, without field or value; used inside other messages (e.g. XML errors).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => f.write_str("it is empty"),
            Problem::TooLong { max, got } => {
                write!(f, "it is {got} characters long; at most {max} are allowed")
            }
            Problem::NotDigits => f.write_str("it may contain only the digits 0-9"),
            Problem::WrongLength { expected, got } => {
                write!(f, "it has {got} characters; it needs {expected}")
            }
            Problem::CheckDigit { expected, got } => {
                write!(f, "the check digit should be {expected}, not {got}")
            }
            Problem::InstitutionCheckDigit {
                expected,
                got,
                prefecture,
            } => write!(
                f,
                "the check digit should be {expected}, not {got} (for {} codes the check digit covers {})",
                prefecture.name_en(),
                InstitutionCheckRule::of(*prefecture).covers_en()
            ),
            Problem::UnknownPrefecture(p) => {
                write!(f, "{p} is not a prefecture code (01-47)")
            }
            Problem::UnknownFeeTable(c) => write!(
                f,
                "fee table digit {c} is not 1 (medical), 3 (dental), 4 (pharmacy) or 6 (home nursing)"
            ),
            Problem::NotADate => {
                f.write_str("it is not a real date written as yyyyMMdd (e.g. 19800401)")
            }
            Problem::InFuture => f.write_str("it is in the future"),
            Problem::TooOld => f.write_str("it is before 1900-01-01"),
            Problem::ControlCharacter => {
                f.write_str("it contains a control or invisible formatting character")
            }
            Problem::BranchNotUsedByLateStageElderly => f.write_str(
                "late-stage elderly insurance (insurer numbers starting with 39) has no branch number",
            ),
            Problem::LateStageElderlyNumberFormat => f.write_str(
                "late-stage elderly insurance (insurer numbers starting with 39) uses exactly 8 digits",
            ),
        }
    }
}

/// A value that could not be accepted, with what to fix.
///
/// `value` is the offending input as entered (surrounding spaces removed, control characters
/// escaped, cut to 32 characters), so the message never carries another field of the patient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message_en())]
pub struct IdError {
    pub field: Field,
    pub problem: Problem,
    pub value: String,
}

impl IdError {
    fn new(field: Field, problem: Problem, raw: &str) -> Self {
        IdError {
            field,
            problem,
            value: shown(raw),
        }
    }

    fn message_en(&self) -> String {
        let field = self.field.name_en();
        let hint = self.field.hint_en();
        match &self.problem {
            Problem::Empty => format!("{field} is missing — enter it as printed on the card"),
            Problem::BranchNotUsedByLateStageElderly => format!(
                "{field} {}: {} — leave the branch number empty",
                self.value, self.problem
            ),
            problem if self.value.is_empty() => format!("{field}: {problem} — {hint}"),
            problem => format!("{field} {}: {problem} — {hint}", self.value),
        }
    }

    /// The message for the counter, in Japanese.
    pub fn message_ja(&self) -> String {
        let field = self.field.name_ja();
        let hint = self.field.hint_ja();
        let v = &self.value;
        match &self.problem {
            Problem::Empty => format!("{field}が入力されていません。{hint}"),
            Problem::TooLong { max, got } => {
                format!("{field}が長すぎます（{got}文字、最大{max}文字）。{hint}")
            }
            Problem::NotDigits => {
                format!("{field}は数字のみで入力してください（{v}）。{hint}")
            }
            Problem::WrongLength { expected, got } => format!(
                "{field}の桁数が正しくありません（{v}、{got}桁）。{}で入力してください。",
                expected::ja(expected)
            ),
            Problem::CheckDigit { .. } => {
                format!("{field}の検証番号が一致しません（{v}）。{hint}")
            }
            Problem::InstitutionCheckDigit { prefecture, .. } => format!(
                "{field}の検証番号が一致しません（{v}）。{}のコードの検証番号は{}から計算します。{hint}",
                prefecture.name_ja(),
                InstitutionCheckRule::of(*prefecture).covers_ja()
            ),
            Problem::UnknownPrefecture(p) => {
                format!("{field}の都道府県番号「{p}」が正しくありません（{v}）。{hint}")
            }
            Problem::UnknownFeeTable(c) => format!(
                "{field}の点数表番号「{c}」が正しくありません（{v}）。1（医科）、3（歯科）、4（調剤）、6（訪問看護）のいずれかです。"
            ),
            Problem::NotADate => format!(
                "{field}が正しい日付ではありません（{v}）。西暦8桁（例：19800401）で入力してください。"
            ),
            Problem::InFuture => format!("{field}が未来の日付です（{v}）。{hint}"),
            Problem::TooOld => format!("{field}が1900年1月1日より前です（{v}）。{hint}"),
            Problem::ControlCharacter => {
                format!("{field}に使用できない文字が含まれています（{v}）。{hint}")
            }
            Problem::BranchNotUsedByLateStageElderly => format!(
                "後期高齢者医療の保険証には枝番がありません（{v}）。枝番は空欄にしてください。"
            ),
            Problem::LateStageElderlyNumberFormat => {
                format!("後期高齢者医療の被保険者番号は8桁の数字です（{v}）。{hint}")
            }
        }
    }
}

/// The value as shown in messages: control characters escaped, at most 32 characters.
fn shown(raw: &str) -> String {
    let mut out = String::new();
    for (i, c) in raw.chars().enumerate() {
        if i == 32 {
            out.push('…');
            break;
        }
        if c.is_control() || is_invisible_format(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Normalization helpers
// ---------------------------------------------------------------------------------------------

/// Spaces a clerk or a receipt computer may put around a value: ASCII whitespace and the
/// ideographic (full-width) space U+3000.
fn is_pad(c: char) -> bool {
    c.is_ascii_whitespace() || c == '\u{3000}'
}

fn trim_pad(s: &str) -> &str {
    s.trim_matches(is_pad)
}

/// Zero-width and direction-control characters: invisible, so two inputs that look the same
/// would differ. Rejected like control characters.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{FEFF}'
    )
}

/// Converts full-width ASCII (U+FF01–U+FF5E: digits, letters, punctuation) to half-width and
/// the ideographic space to an ASCII space.
///
/// Why: an IME often produces "０１２３" or "ＡＢ" where the card shows 0123 or AB. The same
/// card must give the same value, or the same patient gets two [`crate::patient::PatientRef`]s
/// and two files at the national side never match. Letter case and half-width katakana are
/// left as typed.
fn to_half_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        other => other,
    }
}

/// Trims, converts full-width digits, and checks that only ASCII digits remain.
fn digits(field: Field, raw: &str) -> Result<String, IdError> {
    let t = trim_pad(raw);
    if t.is_empty() {
        return Err(IdError::new(field, Problem::Empty, t));
    }
    let s: String = t.chars().map(to_half_width).collect();
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::new(field, Problem::NotDigits, t));
    }
    Ok(s)
}

fn check(field: Field, all: &str) -> Result<(), IdError> {
    let (body, last) = all.split_at(all.len() - 1);
    let got = last.as_bytes()[0] - b'0';
    match check_digit::compute(body) {
        Some(expected) if expected == got => Ok(()),
        Some(expected) => Err(IdError::new(
            field,
            Problem::CheckDigit { expected, got },
            all,
        )),
        None => Err(IdError::new(field, Problem::NotDigits, all)),
    }
}

/// The check digit of an institution code whose first nine digits (all ASCII digits) are
/// `first_nine`, under `prefecture`'s rule.
fn institution_check_digit(prefecture: Prefecture, first_nine: &str) -> u8 {
    check_digit::compute(InstitutionCheckRule::of(prefecture).body(first_nine))
        .expect("nine ASCII digits checked by the caller")
}

fn prefecture_part(field: Field, part: &str, all: &str) -> Result<Prefecture, IdError> {
    Prefecture::from_digits(part)
        .ok_or_else(|| IdError::new(field, Problem::UnknownPrefecture(part.to_owned()), all))
}

/// Display, `TryFrom<String>`, `From<T> for String`: the plumbing serde's
/// `try_from`/`into` needs, so every identifier (de)serializes as its canonical string.
macro_rules! string_plumbing {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $t {
            type Error = IdError;

            fn try_from(s: String) -> Result<Self, IdError> {
                <$t>::parse(&s)
            }
        }

        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.as_str().to_owned()
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Prefecture
// ---------------------------------------------------------------------------------------------

/// (code, Japanese name, English name) for JIS X 0401.
const PREFECTURES: [(&str, &str, &str); 47] = [
    ("01", "北海道", "Hokkaido"),
    ("02", "青森県", "Aomori"),
    ("03", "岩手県", "Iwate"),
    ("04", "宮城県", "Miyagi"),
    ("05", "秋田県", "Akita"),
    ("06", "山形県", "Yamagata"),
    ("07", "福島県", "Fukushima"),
    ("08", "茨城県", "Ibaraki"),
    ("09", "栃木県", "Tochigi"),
    ("10", "群馬県", "Gunma"),
    ("11", "埼玉県", "Saitama"),
    ("12", "千葉県", "Chiba"),
    ("13", "東京都", "Tokyo"),
    ("14", "神奈川県", "Kanagawa"),
    ("15", "新潟県", "Niigata"),
    ("16", "富山県", "Toyama"),
    ("17", "石川県", "Ishikawa"),
    ("18", "福井県", "Fukui"),
    ("19", "山梨県", "Yamanashi"),
    ("20", "長野県", "Nagano"),
    ("21", "岐阜県", "Gifu"),
    ("22", "静岡県", "Shizuoka"),
    ("23", "愛知県", "Aichi"),
    ("24", "三重県", "Mie"),
    ("25", "滋賀県", "Shiga"),
    ("26", "京都府", "Kyoto"),
    ("27", "大阪府", "Osaka"),
    ("28", "兵庫県", "Hyogo"),
    ("29", "奈良県", "Nara"),
    ("30", "和歌山県", "Wakayama"),
    ("31", "鳥取県", "Tottori"),
    ("32", "島根県", "Shimane"),
    ("33", "岡山県", "Okayama"),
    ("34", "広島県", "Hiroshima"),
    ("35", "山口県", "Yamaguchi"),
    ("36", "徳島県", "Tokushima"),
    ("37", "香川県", "Kagawa"),
    ("38", "愛媛県", "Ehime"),
    ("39", "高知県", "Kochi"),
    ("40", "福岡県", "Fukuoka"),
    ("41", "佐賀県", "Saga"),
    ("42", "長崎県", "Nagasaki"),
    ("43", "熊本県", "Kumamoto"),
    ("44", "大分県", "Oita"),
    ("45", "宮崎県", "Miyazaki"),
    ("46", "鹿児島県", "Kagoshima"),
    ("47", "沖縄県", "Okinawa"),
];

/// A prefecture (都道府県), JIS X 0401 code 01–47.
///
/// Insurer numbers and medical institution codes embed it; a number whose prefecture part is
/// outside 01–47 cannot be real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefecture(u8);

impl Prefecture {
    /// Parses the two-digit code "01"–"47".
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let d = digits(Field::Prefecture, s)?;
        if d.len() != 2 {
            return Err(IdError::new(
                Field::Prefecture,
                Problem::WrongLength {
                    expected: expected::PREFECTURE,
                    got: d.chars().count(),
                },
                trim_pad(s),
            ));
        }
        Self::from_digits(&d).ok_or_else(|| {
            IdError::new(Field::Prefecture, Problem::UnknownPrefecture(d.clone()), &d)
        })
    }

    /// The prefecture with numeric code `code`, if it is 1–47.
    pub fn from_code(code: u8) -> Option<Self> {
        (1..=47).contains(&code).then_some(Prefecture(code))
    }

    fn from_digits(two: &str) -> Option<Self> {
        if two.len() != 2 || !two.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        two.parse::<u8>().ok().and_then(Self::from_code)
    }

    fn entry(self) -> (&'static str, &'static str, &'static str) {
        PREFECTURES[usize::from(self.0 - 1)]
    }

    /// The numeric code, 1–47.
    pub fn code(self) -> u8 {
        self.0
    }

    /// The zero-padded code, "01"–"47".
    pub fn code_str(self) -> String {
        self.as_str().to_owned()
    }

    /// The zero-padded code, "01"–"47".
    pub fn as_str(&self) -> &'static str {
        self.entry().0
    }

    /// The official name, e.g. "東京都".
    pub fn name_ja(self) -> &'static str {
        self.entry().1
    }

    /// The romanized name without suffix, e.g. "Tokyo".
    pub fn name_en(self) -> &'static str {
        self.entry().2
    }
}

string_plumbing!(Prefecture);

// ---------------------------------------------------------------------------------------------
// InsurerNumber
// ---------------------------------------------------------------------------------------------

/// 保険者番号: 8 digits (law code 2 + prefecture 2 + insurer 3 + check 1), or 6 digits for
/// national health insurance (prefecture 2 + insurer 3 + check 1).
///
/// Accepted input: surrounding spaces (ASCII or full-width) are removed and full-width digits
/// converted, so the space-padded file form "  138156" parses. An 8-digit input starting with
/// "00" is read as a zero-padded 6-digit national health insurance number: no law code 00
/// exists, files are seen padded with zeros, and the check digit is the same either way
/// (leading zeros do not change it), so only the prefecture position differs and the 6-digit
/// reading is the one that can be right.
///
/// The canonical form ([`InsurerNumber::as_str`]) has no padding; [`InsurerNumber::to_file_field`]
/// gives the 8-character space-padded form the files use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InsurerNumber(String);

impl InsurerNumber {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const F: Field = Field::InsurerNumber;
        let d = digits(F, s)?;
        let canonical = match d.len() {
            6 => d,
            8 if d.starts_with("00") => d[2..].to_owned(),
            8 => d,
            n => {
                return Err(IdError::new(
                    F,
                    Problem::WrongLength {
                        expected: expected::INSURER,
                        got: n,
                    },
                    trim_pad(s),
                ));
            }
        };
        let pref = if canonical.len() == 6 {
            &canonical[0..2]
        } else {
            &canonical[2..4]
        };
        prefecture_part(F, pref, &canonical)?;
        check(F, &canonical)?;
        Ok(InsurerNumber(canonical))
    }

    /// The canonical digits: 6 for national health insurance, otherwise 8.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefecture that issued the number.
    pub fn prefecture(&self) -> Prefecture {
        let part = if self.is_national_health_insurance() {
            &self.0[0..2]
        } else {
            &self.0[2..4]
        };
        // Checked by `parse`; the fallback is unreachable but keeps this free of panics.
        Prefecture::from_digits(part).unwrap_or(Prefecture(13))
    }

    /// True for 6-digit numbers (municipal national health insurance and NHI associations).
    pub fn is_national_health_insurance(&self) -> bool {
        self.0.len() == 6
    }

    /// The 2-digit law code (法別番号) of an 8-digit number, e.g. "06" for a health insurance
    /// society, "39" for late-stage elderly insurance; `None` for national health insurance.
    pub fn law_code(&self) -> Option<&str> {
        (!self.is_national_health_insurance()).then(|| &self.0[0..2])
    }

    /// True for late-stage elderly insurance (後期高齢者医療, law code 39), whose cards have no
    /// branch number and an 8-digit insured number.
    pub fn is_late_stage_elderly(&self) -> bool {
        self.law_code() == Some("39")
    }

    /// The 8-character form for Onshi files: 6-digit numbers left-padded with spaces.
    pub fn to_file_field(&self) -> String {
        format!("{:>8}", self.0)
    }
}

string_plumbing!(InsurerNumber);

// ---------------------------------------------------------------------------------------------
// MedicalInstitutionCode
// ---------------------------------------------------------------------------------------------

/// The fee table (点数表) digit of a medical institution code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeeTable {
    /// 1: medical (医科).
    Medical,
    /// 3: dental (歯科).
    Dental,
    /// 4: pharmacy (調剤).
    Pharmacy,
    /// 6: home-visit nursing (訪問看護).
    HomeNursing,
}

impl FeeTable {
    /// The digit as it appears in the code.
    pub fn digit(self) -> char {
        match self {
            FeeTable::Medical => '1',
            FeeTable::Dental => '3',
            FeeTable::Pharmacy => '4',
            FeeTable::HomeNursing => '6',
        }
    }

    /// The fee table for `digit`, if it is one of 1, 3, 4, 6.
    pub fn from_digit(digit: char) -> Option<Self> {
        match digit {
            '1' => Some(FeeTable::Medical),
            '3' => Some(FeeTable::Dental),
            '4' => Some(FeeTable::Pharmacy),
            '6' => Some(FeeTable::HomeNursing),
            _ => None,
        }
    }

    /// 医科, 歯科, 調剤, 訪問看護.
    pub fn label_ja(self) -> &'static str {
        match self {
            FeeTable::Medical => "医科",
            FeeTable::Dental => "歯科",
            FeeTable::Pharmacy => "調剤",
            FeeTable::HomeNursing => "訪問看護",
        }
    }
}

/// Which digits of a medical institution code its check digit is computed over.
///
/// Two rules exist (domain notes §5, checked against the national list of August 2025: 96,461
/// of 96,488 codes follow them, all 28,875 codes of prefectures 11–14 included). The 27 legacy
/// codes that follow neither (prefectures 04 and 27–30) are refused: a site with one would be
/// told which rule its code fails, and the rule can be widened here if such a site appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstitutionCheckRule {
    /// Prefectures 11 Saitama, 12 Chiba, 13 Tokyo and 14 Kanagawa: over the six digits of the
    /// seven-digit code only (district and institution, positions 4–9), e.g. 1310110049.
    SevenDigitCode,
    /// Every other prefecture: over the first nine digits (prefecture, fee table, the six),
    /// e.g. 3410712362.
    FirstNineDigits,
}

impl InstitutionCheckRule {
    /// The rule used for codes of `prefecture`.
    pub fn of(prefecture: Prefecture) -> Self {
        match prefecture.code() {
            11..=14 => InstitutionCheckRule::SevenDigitCode,
            _ => InstitutionCheckRule::FirstNineDigits,
        }
    }

    /// The digits the check digit is computed over, out of the nine digits before it.
    fn body(self, first_nine: &str) -> &str {
        match self {
            InstitutionCheckRule::SevenDigitCode => &first_nine[3..9],
            InstitutionCheckRule::FirstNineDigits => &first_nine[0..9],
        }
    }

    fn covers_en(self) -> &'static str {
        match self {
            InstitutionCheckRule::SevenDigitCode => {
                "only the six digits before it (the district and institution number)"
            }
            InstitutionCheckRule::FirstNineDigits => "all nine digits before it",
        }
    }

    fn covers_ja(self) -> &'static str {
        match self {
            InstitutionCheckRule::SevenDigitCode => "直前の6桁（郡市区番号と医療機関番号）のみ",
            InstitutionCheckRule::FirstNineDigits => "先頭の9桁すべて",
        }
    }
}

/// 医療機関等コード: 10 digits = prefecture (2) + fee table (1) + district (2) + institution (4)
/// + check digit (1), computed under the prefecture's [`InstitutionCheckRule`].
///
/// A new site's reception number (受付番号) has the same form (it is the code the site will be
/// given) and is parsed by the same function.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MedicalInstitutionCode(String);

impl MedicalInstitutionCode {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const F: Field = Field::MedicalInstitutionCode;
        let d = digits(F, s)?;
        if d.len() != 10 {
            return Err(IdError::new(
                F,
                Problem::WrongLength {
                    expected: expected::INSTITUTION,
                    got: d.len(),
                },
                trim_pad(s),
            ));
        }
        let prefecture = prefecture_part(F, &d[0..2], &d)?;
        let fee = char::from(d.as_bytes()[2]);
        if FeeTable::from_digit(fee).is_none() {
            return Err(IdError::new(F, Problem::UnknownFeeTable(fee), &d));
        }
        let expected = institution_check_digit(prefecture, &d[0..9]);
        let got = d.as_bytes()[9] - b'0';
        if expected != got {
            return Err(IdError::new(
                F,
                Problem::InstitutionCheckDigit {
                    expected,
                    got,
                    prefecture,
                },
                &d,
            ));
        }
        Ok(MedicalInstitutionCode(d))
    }

    /// The code whose first nine digits are `first_nine`, with the check digit its
    /// prefecture's rule gives: for the simulator's population, fixtures and tests that make
    /// codes, so that none of them computes the rule again.
    pub fn with_check_digit(first_nine: &str) -> Result<Self, IdError> {
        const F: Field = Field::MedicalInstitutionCode;
        let d = digits(F, first_nine)?;
        if d.len() != 9 {
            return Err(IdError::new(
                F,
                Problem::WrongLength {
                    expected: expected::INSTITUTION_BODY,
                    got: d.len(),
                },
                trim_pad(first_nine),
            ));
        }
        let prefecture = prefecture_part(F, &d[0..2], &d)?;
        let check = institution_check_digit(prefecture, &d);
        Self::parse(&format!("{d}{check}"))
    }

    /// The check-digit rule this code follows.
    pub fn check_rule(&self) -> InstitutionCheckRule {
        InstitutionCheckRule::of(self.prefecture())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn prefecture(&self) -> Prefecture {
        Prefecture::from_digits(&self.0[0..2]).unwrap_or(Prefecture(13))
    }

    pub fn fee_table(&self) -> FeeTable {
        FeeTable::from_digit(char::from(self.0.as_bytes()[2])).unwrap_or(FeeTable::Medical)
    }
}

string_plumbing!(MedicalInstitutionCode);

// ---------------------------------------------------------------------------------------------
// Symbol and number
// ---------------------------------------------------------------------------------------------

/// Maximum length, in characters, of a symbol or number (§5 of the domain notes).
pub const MAX_CARD_TEXT_CHARS: usize = 20;

/// Shared rules of 記号 and 番号: trimmed, full-width ASCII converted to half-width,
/// 1–20 characters, no control or invisible characters.
fn card_text(field: Field, raw: &str) -> Result<String, IdError> {
    let t = trim_pad(raw);
    if t.is_empty() {
        return Err(IdError::new(field, Problem::Empty, t));
    }
    if t.chars().any(|c| c.is_control() || is_invisible_format(c)) {
        return Err(IdError::new(field, Problem::ControlCharacter, t));
    }
    let s: String = t.chars().map(to_half_width).collect();
    let got = s.chars().count();
    if got > MAX_CARD_TEXT_CHARS {
        return Err(IdError::new(
            field,
            Problem::TooLong {
                max: MAX_CARD_TEXT_CHARS,
                got,
            },
            t,
        ));
    }
    Ok(s)
}

/// 被保険者証記号: the symbol on the card. Kanji, kana, digits and letters occur.
///
/// Stored normalized (see the module's normalization rules: surrounding spaces removed,
/// full-width ASCII converted), because the same card typed two ways must compare and hash
/// the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InsuredCardSymbol(String);

impl InsuredCardSymbol {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        card_text(Field::InsuredCardSymbol, s).map(InsuredCardSymbol)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_plumbing!(InsuredCardSymbol);

/// 被保険者証番号: the insured person's number on the card. Same rules as
/// [`InsuredCardSymbol`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InsuredIdentificationNumber(String);

impl InsuredIdentificationNumber {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        card_text(Field::InsuredIdentificationNumber, s).map(InsuredIdentificationNumber)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_plumbing!(InsuredIdentificationNumber);

// ---------------------------------------------------------------------------------------------
// Branch number
// ---------------------------------------------------------------------------------------------

/// 被保険者証枝番: the 2-digit branch that tells family members on one card apart.
///
/// A single digit is accepted and zero-padded ("1" → "01"), because clerks drop the leading
/// zero and the national system compares the 2-digit form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InsuredBranchNumber(String);

impl InsuredBranchNumber {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const F: Field = Field::InsuredBranchNumber;
        let d = digits(F, s)?;
        match d.len() {
            1 => Ok(InsuredBranchNumber(format!("0{d}"))),
            2 => Ok(InsuredBranchNumber(d)),
            got => Err(IdError::new(
                F,
                Problem::WrongLength {
                    expected: expected::BRANCH,
                    got,
                },
                trim_pad(s),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_plumbing!(InsuredBranchNumber);

// ---------------------------------------------------------------------------------------------
// Birth date
// ---------------------------------------------------------------------------------------------

/// A date of birth, written `yyyyMMdd` in files and on the wire.
///
/// Surrounding spaces are removed and full-width digits converted, like the other fields.
/// [`BirthDate::parse`] accepts any real calendar date (results from the national system are
/// taken as they are); [`BirthDate::parse_checked`] is for what a clerk typed and also rejects
/// dates after today and before 1900-01-01. Today is passed in: this crate reads no clock.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BirthDate {
    date: Date,
    text: String,
}

impl BirthDate {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const F: Field = Field::Birthdate;
        let d = digits(F, s)?;
        if d.len() != 8 {
            return Err(IdError::new(
                F,
                Problem::WrongLength {
                    expected: expected::DATE,
                    got: d.len(),
                },
                trim_pad(s),
            ));
        }
        let date = parse_yyyymmdd(&d).ok_or_else(|| IdError::new(F, Problem::NotADate, &d))?;
        Ok(BirthDate { date, text: d })
    }

    /// Like [`BirthDate::parse`], and rejects dates after `today` or before 1900-01-01.
    pub fn parse_checked(s: &str, today: Date) -> Result<Self, IdError> {
        let b = Self::parse(s)?;
        if b.date > today {
            return Err(IdError::new(Field::Birthdate, Problem::InFuture, &b.text));
        }
        if b.date.year() < 1900 {
            return Err(IdError::new(Field::Birthdate, Problem::TooOld, &b.text));
        }
        Ok(b)
    }

    /// Wraps a date; fails only for years outside 0–9999, which `yyyyMMdd` cannot write.
    pub fn from_date(date: Date) -> Result<Self, IdError> {
        match format_yyyymmdd(date) {
            Some(text) => Ok(BirthDate { date, text }),
            None => Err(IdError::new(
                Field::Birthdate,
                Problem::NotADate,
                &date.to_string(),
            )),
        }
    }

    pub fn date(&self) -> Date {
        self.date
    }

    pub fn to_yyyymmdd(&self) -> String {
        self.text.clone()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

string_plumbing!(BirthDate);

/// Parses exactly 8 ASCII digits as a calendar date; `None` for anything else.
pub(crate) fn parse_yyyymmdd(s: &str) -> Option<Date> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = s[0..4].parse().ok()?;
    let month: u8 = s[4..6].parse().ok()?;
    let day: u8 = s[6..8].parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// `yyyyMMdd`, or `None` for years outside 0–9999.
pub(crate) fn format_yyyymmdd(date: Date) -> Option<String> {
    let year = date.year();
    (0..=9999)
        .contains(&year)
        .then(|| format!("{year:04}{:02}{:02}", u8::from(date.month()), date.day()))
}

// ---------------------------------------------------------------------------------------------
// InsuranceCardQuery
// ---------------------------------------------------------------------------------------------

/// What a clerk typed from an insurance card (or 資格確認書), checked as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InsuranceCardQuery {
    pub insurer_number: InsurerNumber,
    pub symbol: Option<InsuredCardSymbol>,
    pub number: InsuredIdentificationNumber,
    pub branch: Option<InsuredBranchNumber>,
    pub birthdate: BirthDate,
}

impl InsuranceCardQuery {
    /// Parses every field and returns all problems at once, so the clerk fixes the form in one
    /// go. An empty (or all-space) symbol or branch means "not on the card".
    ///
    /// For late-stage elderly insurance (law code 39) the branch must be empty and the insured
    /// number exactly 8 digits, as on those cards.
    pub fn parse(
        insurer: &str,
        symbol: &str,
        number: &str,
        branch: &str,
        birthdate: &str,
        today: Date,
    ) -> Result<Self, Vec<IdError>> {
        fn keep<T>(errors: &mut Vec<IdError>, r: Result<T, IdError>) -> Option<T> {
            r.map_err(|e| errors.push(e)).ok()
        }
        let mut errors = Vec::new();
        let insurer_number = keep(&mut errors, InsurerNumber::parse(insurer));
        let symbol = if trim_pad(symbol).is_empty() {
            Some(None)
        } else {
            keep(&mut errors, InsuredCardSymbol::parse(symbol)).map(Some)
        };
        let number_v = keep(&mut errors, InsuredIdentificationNumber::parse(number));
        let branch_v = if trim_pad(branch).is_empty() {
            Some(None)
        } else {
            keep(&mut errors, InsuredBranchNumber::parse(branch)).map(Some)
        };
        let birthdate = keep(&mut errors, BirthDate::parse_checked(birthdate, today));

        if insurer_number
            .as_ref()
            .is_some_and(InsurerNumber::is_late_stage_elderly)
        {
            if !trim_pad(branch).is_empty() {
                errors.push(IdError::new(
                    Field::InsuredBranchNumber,
                    Problem::BranchNotUsedByLateStageElderly,
                    trim_pad(branch),
                ));
            }
            if let Some(n) = &number_v {
                let s = n.as_str();
                if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
                    errors.push(IdError::new(
                        Field::InsuredIdentificationNumber,
                        Problem::LateStageElderlyNumberFormat,
                        s,
                    ));
                }
            }
        }

        match (insurer_number, symbol, number_v, branch_v, birthdate) {
            (Some(insurer_number), Some(symbol), Some(number), Some(branch), Some(birthdate))
                if errors.is_empty() =>
            {
                Ok(InsuranceCardQuery {
                    insurer_number,
                    symbol,
                    number,
                    branch,
                    birthdate,
                })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::date;

    const TODAY: Date = date!(2024 - 04 - 01);

    fn err(r: Result<impl fmt::Debug, IdError>) -> IdError {
        r.expect_err("should be rejected")
    }

    #[test]
    fn prefecture() {
        let p = Prefecture::parse("13").unwrap();
        assert_eq!(p.code(), 13);
        assert_eq!(p.code_str(), "13");
        assert_eq!(p.name_ja(), "東京都");
        assert_eq!(p.name_en(), "Tokyo");
        assert_eq!(Prefecture::parse("01").unwrap().name_ja(), "北海道");
        assert_eq!(Prefecture::parse("47").unwrap().name_ja(), "沖縄県");
        assert_eq!(Prefecture::parse("26").unwrap().name_ja(), "京都府");
        assert_eq!(Prefecture::parse("27").unwrap().name_ja(), "大阪府");
        assert_eq!(
            err(Prefecture::parse("48")).problem,
            Problem::UnknownPrefecture("48".into())
        );
        assert_eq!(
            err(Prefecture::parse("00")).problem,
            Problem::UnknownPrefecture("00".into())
        );
        assert!(matches!(
            err(Prefecture::parse("1")).problem,
            Problem::WrongLength { got: 1, .. }
        ));
        assert_eq!(err(Prefecture::parse("")).problem, Problem::Empty);
        for (i, (code, ja, en)) in PREFECTURES.iter().enumerate() {
            let p = Prefecture::parse(code).unwrap();
            assert_eq!(usize::from(p.code()), i + 1);
            assert!(ja.ends_with(['都', '道', '府', '県']), "{ja}");
            assert!(!en.is_empty());
        }
    }

    #[test]
    fn insurer_number_eight_digits() {
        let n = InsurerNumber::parse("06139158").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.law_code(), Some("06"));
        assert_eq!(n.prefecture().name_ja(), "東京都");
        assert!(!n.is_national_health_insurance());
        assert_eq!(n.to_file_field(), "06139158");
        assert!(
            InsurerNumber::parse("39131156")
                .unwrap()
                .is_late_stage_elderly()
        );
        for ok in ["63132286", "31130685", "39131131", "39131040", "41139155"] {
            InsurerNumber::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn insurer_number_six_digits_and_padding() {
        let n = InsurerNumber::parse("138156").unwrap();
        assert!(n.is_national_health_insurance());
        assert_eq!(n.law_code(), None);
        assert_eq!(n.prefecture().code(), 13);
        assert_eq!(n.to_file_field(), "  138156");
        assert_eq!(InsurerNumber::parse("  138156").unwrap(), n);
        assert_eq!(InsurerNumber::parse("00138156").unwrap(), n);
        assert_eq!(InsurerNumber::parse("１３８１５６").unwrap(), n);
        assert_eq!(n.as_str(), "138156");
    }

    #[test]
    fn insurer_number_errors() {
        let e = err(InsurerNumber::parse("06139154"));
        assert_eq!(
            e.problem,
            Problem::CheckDigit {
                expected: 8,
                got: 4
            }
        );
        assert_eq!(
            e.to_string(),
            "insurer number 06139154: the check digit should be 8, not 4 — check the number on the card"
        );
        assert_eq!(
            e.message_ja(),
            "保険者番号の検証番号が一致しません（06139154）。保険証の番号をご確認ください。"
        );
        assert_eq!(
            err(InsurerNumber::parse("138157")).field,
            Field::InsurerNumber
        );
        assert_eq!(err(InsurerNumber::parse(" ")).problem, Problem::Empty);
        assert_eq!(
            err(InsurerNumber::parse("13815a")).problem,
            Problem::NotDigits
        );
        assert_eq!(
            err(InsurerNumber::parse("1381563")).problem,
            Problem::WrongLength {
                expected: "6 or 8 digits",
                got: 7
            }
        );
        // Prefecture 52 does not exist (check digit made right).
        let body = "06529";
        let n = format!(
            "{body}15{}",
            check_digit::compute(&format!("{body}15")).unwrap()
        );
        assert_eq!(
            err(InsurerNumber::parse(&n)).problem,
            Problem::UnknownPrefecture("52".into())
        );
        // The "00" rule: 00 + six digits is a padded NHI number, so its prefecture is
        // the first two of the six.
        assert_eq!(
            err(InsurerNumber::parse("00998156")).problem,
            Problem::UnknownPrefecture("99".into())
        );
    }

    #[test]
    fn institution_code() {
        let c = MedicalInstitutionCode::parse("3410712362").unwrap();
        assert_eq!(c.prefecture().name_ja(), "広島県");
        assert_eq!(c.fee_table(), FeeTable::Medical);
        let hiroshima = Prefecture::from_code(34).unwrap();
        assert_eq!(
            err(MedicalInstitutionCode::parse("3410712363")).problem,
            Problem::InstitutionCheckDigit {
                expected: 2,
                got: 3,
                prefecture: hiroshima
            }
        );
        let e = err(MedicalInstitutionCode::parse("3420712362"));
        assert_eq!(e.problem, Problem::UnknownFeeTable('2'));
        assert!(
            e.message_ja().contains("点数表番号「2」"),
            "{}",
            e.message_ja()
        );
        assert!(matches!(
            err(MedicalInstitutionCode::parse("341071236")).problem,
            Problem::WrongLength { got: 9, .. }
        ));
        assert_eq!(
            err(MedicalInstitutionCode::parse("9910712362")).problem,
            Problem::UnknownPrefecture("99".into())
        );
        for (digit, fee) in [
            ('1', FeeTable::Medical),
            ('3', FeeTable::Dental),
            ('4', FeeTable::Pharmacy),
            ('6', FeeTable::HomeNursing),
        ] {
            let parsed =
                MedicalInstitutionCode::with_check_digit(&format!("13{digit}012345")).unwrap();
            assert_eq!(parsed.fee_table(), fee);
            assert_eq!(fee.digit(), digit);
        }
    }

    /// The two rules of the domain notes §5, on the real codes of the corpus and the notes.
    #[test]
    fn institution_check_digit_rule_depends_on_the_prefecture() {
        // Tokyo: over the six digits before the check digit only.
        let tokyo = MedicalInstitutionCode::parse("1310110049").unwrap();
        assert_eq!(tokyo.check_rule(), InstitutionCheckRule::SevenDigitCode);
        // Hokkaido and Hiroshima: over the first nine digits.
        for code in ["0110112489", "3410712362"] {
            let c = MedicalInstitutionCode::parse(code).unwrap();
            assert_eq!(c.check_rule(), InstitutionCheckRule::FirstNineDigits);
        }
        for p in 1..=47u8 {
            let expected = if (11..=14).contains(&p) {
                InstitutionCheckRule::SevenDigitCode
            } else {
                InstitutionCheckRule::FirstNineDigits
            };
            assert_eq!(
                InstitutionCheckRule::of(Prefecture::from_code(p).unwrap()),
                expected
            );
        }
    }

    /// A wrong check digit names the prefecture and its rule, in both languages.
    #[test]
    fn institution_check_digit_error_names_the_rule() {
        // Valid under the nine-digit rule only: refused in Tokyo, with the Tokyo rule named.
        let e = err(MedicalInstitutionCode::parse("1310000011"));
        assert_eq!(
            e.problem,
            Problem::InstitutionCheckDigit {
                expected: 8,
                got: 1,
                prefecture: Prefecture::from_code(13).unwrap()
            }
        );
        let en = e.to_string();
        assert!(
            en.contains("for Tokyo codes the check digit covers only the six digits before it"),
            "{en}"
        );
        let ja = e.message_ja();
        assert!(ja.contains("東京都のコードの検証番号は直前の6桁"), "{ja}");
        // Valid under the six-digit rule only: refused in Hokkaido, with the nine-digit rule.
        let e = err(MedicalInstitutionCode::parse("0110112480"));
        let en = e.to_string();
        assert!(
            en.contains("for Hokkaido codes the check digit covers all nine digits before it"),
            "{en}"
        );
        assert!(
            e.message_ja()
                .contains("北海道のコードの検証番号は先頭の9桁すべて")
        );
    }

    #[test]
    fn with_check_digit_completes_under_each_rule() {
        assert_eq!(
            MedicalInstitutionCode::with_check_digit("131011004")
                .unwrap()
                .as_str(),
            "1310110049"
        );
        assert_eq!(
            MedicalInstitutionCode::with_check_digit("011011248")
                .unwrap()
                .as_str(),
            "0110112489"
        );
        assert!(matches!(
            err(MedicalInstitutionCode::with_check_digit("13101100")).problem,
            Problem::WrongLength { got: 8, .. }
        ));
    }

    #[test]
    fn symbol_and_number_normalization() {
        let a = InsuredCardSymbol::parse("１２－３４").unwrap();
        let b = InsuredCardSymbol::parse(" 12-34\u{3000}").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "12-34");
        assert_eq!(InsuredCardSymbol::parse("ＡＢＣ").unwrap().as_str(), "ABC");
        assert_eq!(
            InsuredCardSymbol::parse("東京あ１").unwrap().as_str(),
            "東京あ1"
        );
        let twenty = "あ".repeat(20);
        assert!(InsuredIdentificationNumber::parse(&twenty).is_ok());
        let e = err(InsuredIdentificationNumber::parse(&"あ".repeat(21)));
        assert_eq!(e.problem, Problem::TooLong { max: 20, got: 21 });
        let e = err(InsuredIdentificationNumber::parse(&"あ".repeat(40)));
        assert_eq!(
            e.value.chars().count(),
            33,
            "cut to 32 characters and an ellipsis"
        );
        assert!(e.value.ends_with('…'));
        assert_eq!(
            err(InsuredIdentificationNumber::parse("12\u{0}3")).problem,
            Problem::ControlCharacter
        );
        assert_eq!(
            err(InsuredIdentificationNumber::parse("12\u{200B}3")).problem,
            Problem::ControlCharacter
        );
        let e = err(InsuredCardSymbol::parse("\u{3000} "));
        assert_eq!(e.problem, Problem::Empty);
        assert_eq!(
            e.to_string(),
            "insurance card symbol is missing — enter it as printed on the card"
        );
    }

    #[test]
    fn branch() {
        assert_eq!(InsuredBranchNumber::parse("1").unwrap().as_str(), "01");
        assert_eq!(InsuredBranchNumber::parse("00").unwrap().as_str(), "00");
        assert_eq!(InsuredBranchNumber::parse("９９").unwrap().as_str(), "99");
        assert!(matches!(
            err(InsuredBranchNumber::parse("001")).problem,
            Problem::WrongLength { got: 3, .. }
        ));
        assert_eq!(
            err(InsuredBranchNumber::parse("a")).problem,
            Problem::NotDigits
        );
    }

    #[test]
    fn birthdate() {
        let b = BirthDate::parse("19800401").unwrap();
        assert_eq!(b.date(), date!(1980 - 04 - 01));
        assert_eq!(b.to_yyyymmdd(), "19800401");
        assert_eq!(BirthDate::parse("20000229").unwrap().as_str(), "20000229");
        assert_eq!(err(BirthDate::parse("19000229")).problem, Problem::NotADate);
        assert_eq!(err(BirthDate::parse("19801301")).problem, Problem::NotADate);
        assert_eq!(err(BirthDate::parse("19800400")).problem, Problem::NotADate);
        assert!(matches!(
            err(BirthDate::parse("1980-04-01")).problem,
            Problem::NotDigits
        ));
        assert!(matches!(
            err(BirthDate::parse("800401")).problem,
            Problem::WrongLength { got: 6, .. }
        ));
        assert!(BirthDate::parse_checked("20240401", TODAY).is_ok());
        assert_eq!(
            err(BirthDate::parse_checked("20240402", TODAY)).problem,
            Problem::InFuture
        );
        assert!(BirthDate::parse_checked("19000101", TODAY).is_ok());
        let e = err(BirthDate::parse_checked("18991231", TODAY));
        assert_eq!(e.problem, Problem::TooOld);
        assert_eq!(
            e.message_ja(),
            "生年月日が1900年1月1日より前です（18991231）。生年月日をご確認ください。"
        );
        assert_eq!(
            BirthDate::from_date(date!(1980 - 04 - 01)).unwrap(),
            BirthDate::parse("19800401").unwrap()
        );
        assert!(
            BirthDate::from_date(Date::from_calendar_date(-1, Month::January, 1).unwrap()).is_err()
        );
    }

    #[test]
    fn query_collects_every_problem() {
        let q = InsuranceCardQuery::parse("06139158", "", "1234", "1", "19800401", TODAY).unwrap();
        assert_eq!(q.symbol, None);
        assert_eq!(q.branch.unwrap().as_str(), "01");

        let errors =
            InsuranceCardQuery::parse("06139154", "", "", "abc", "19801301", TODAY).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                Field::InsurerNumber,
                Field::InsuredIdentificationNumber,
                Field::InsuredBranchNumber,
                Field::Birthdate
            ]
        );
    }

    #[test]
    fn late_stage_elderly_rules() {
        assert!(
            InsuranceCardQuery::parse("39131156", "", "12345678", "", "19400401", TODAY).is_ok()
        );
        let errors = InsuranceCardQuery::parse("39131156", "", "1234567", "01", "19400401", TODAY)
            .unwrap_err();
        let problems: Vec<_> = errors.iter().map(|e| e.problem.clone()).collect();
        assert_eq!(
            problems,
            [
                Problem::BranchNotUsedByLateStageElderly,
                Problem::LateStageElderlyNumberFormat
            ]
        );
        assert_eq!(
            errors[0].message_ja(),
            "後期高齢者医療の保険証には枝番がありません（01）。枝番は空欄にしてください。"
        );
        assert_eq!(
            errors[1].to_string(),
            "insured person's number 1234567: late-stage elderly insurance (insurer numbers starting with 39) uses exactly 8 digits — check the number on the card"
        );
    }

    #[test]
    fn messages_carry_only_the_field_value() {
        let errors = InsuranceCardQuery::parse(
            "06139154",
            "記号X",
            "ＳＥＣＲＥＴ\u{1}",
            "1",
            "29991231",
            TODAY,
        )
        .unwrap_err();
        for e in &errors {
            let all = format!("{e} {}", e.message_ja());
            for other in ["記号X", "2999", "06139154", "SECRET"] {
                if !e.value.contains(other) {
                    assert!(!all.contains(other), "{all} leaks {other}");
                }
            }
            assert!(!all.contains('\u{1}'));
        }
    }

    #[test]
    fn serde_goes_through_parse() {
        let n = InsurerNumber::parse("  138156").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"138156\"");
        assert_eq!(
            serde_json::from_str::<InsurerNumber>("\"00138156\"").unwrap(),
            n
        );
        assert!(serde_json::from_str::<InsurerNumber>("\"138157\"").is_err());
        let b = BirthDate::parse("19800401").unwrap();
        assert_eq!(serde_json::to_string(&b).unwrap(), "\"19800401\"");
        assert!(serde_json::from_str::<BirthDate>("\"19800431\"").is_err());
        let p = Prefecture::parse("13").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"13\"");
        let q =
            InsuranceCardQuery::parse("06139158", "記号", "1234", "1", "19800401", TODAY).unwrap();
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(
            serde_json::from_str::<InsuranceCardQuery>(&json).unwrap(),
            q
        );
    }

    fn with_check(body: String) -> String {
        let c = check_digit::compute(&body).unwrap();
        format!("{body}{c}")
    }

    pub(crate) fn insurer_strategy() -> impl Strategy<Value = InsurerNumber> {
        let nhi = (1u8..=47, "[0-9]{3}").prop_map(|(p, rest)| with_check(format!("{p:02}{rest}")));
        let law = ("0[1-9]|[1-9][0-9]", 1u8..=47, "[0-9]{3}")
            .prop_map(|(law, p, rest)| with_check(format!("{law}{p:02}{rest}")));
        prop_oneof![nhi, law].prop_map(|s| InsurerNumber::parse(&s).unwrap())
    }

    proptest! {
        #[test]
        fn insurer_round_trips(n in insurer_strategy()) {
            prop_assert_eq!(InsurerNumber::parse(&n.to_string()).unwrap(), n.clone());
            prop_assert_eq!(InsurerNumber::parse(&n.to_file_field()).unwrap(), n.clone());
            prop_assert_eq!(n.to_file_field().chars().count(), 8);
        }

        #[test]
        fn institution_round_trips(p in 1u8..=47, fee in "[1346]", rest in "[0-9]{6}") {
            let c = MedicalInstitutionCode::with_check_digit(&format!("{p:02}{fee}{rest}")).unwrap();
            prop_assert_eq!(MedicalInstitutionCode::parse(&c.to_string()).unwrap(), c.clone());
            // Any other last digit is refused, naming the prefecture's rule.
            let s = c.as_str();
            let wrong = (s.as_bytes()[9] - b'0' + 1) % 10;
            let e = MedicalInstitutionCode::parse(&format!("{}{wrong}", &s[..9])).unwrap_err();
            let is_rule_error = matches!(e.problem, Problem::InstitutionCheckDigit { .. });
            prop_assert!(is_rule_error);
        }

        #[test]
        fn card_text_round_trips(s in "[0-9A-Za-z０-９あ-ん漢字記号ｱ-ﾝ-]{1,20}") {
            let sym = InsuredCardSymbol::parse(&s).unwrap();
            prop_assert_eq!(InsuredCardSymbol::parse(&sym.to_string()).unwrap(), sym.clone());
            let num = InsuredIdentificationNumber::parse(&s).unwrap();
            prop_assert_eq!(InsuredIdentificationNumber::parse(&num.to_string()).unwrap(), num);
        }

        #[test]
        fn branch_and_date_round_trip(b in 0u8..100, days in 0i32..80_000) {
            let br = InsuredBranchNumber::parse(&b.to_string()).unwrap();
            prop_assert_eq!(InsuredBranchNumber::parse(&br.to_string()).unwrap(), br);
            let d = date!(1900 - 01 - 01) + time::Duration::days(i64::from(days));
            let bd = BirthDate::from_date(d).unwrap();
            prop_assert_eq!(BirthDate::parse(&bd.to_string()).unwrap(), bd);
        }

        #[test]
        fn parse_never_panics(s in "\\PC*|[0-9 ０-９\u{3000}]{0,12}|.*") {
            let _ = Prefecture::parse(&s);
            let _ = InsurerNumber::parse(&s);
            let _ = MedicalInstitutionCode::parse(&s);
            let _ = InsuredCardSymbol::parse(&s);
            let _ = InsuredIdentificationNumber::parse(&s);
            let _ = InsuredBranchNumber::parse(&s);
            let _ = BirthDate::parse(&s);
            let _ = BirthDate::parse_checked(&s, TODAY);
            if let Err(errors) = InsuranceCardQuery::parse(&s, &s, &s, &s, &s, TODAY) {
                for e in errors {
                    let _ = e.to_string();
                    let _ = e.message_ja();
                }
            }
        }
    }
}
