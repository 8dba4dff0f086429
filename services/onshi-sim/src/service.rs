//! The business logic: an eligibility request in, a result out. Pure: no I/O, no clock (the
//! caller passes `now`), so every rule is unit-tested without a server.
//!
//! Rules (see `shared/domain/onshi.md` §3):
//! - the institution in the request must be the institution of the terminal certificate, or
//!   the whole file ends abnormally (`SegmentOfResult` 9, `SIM-E0102`);
//! - [`MAINTENANCE_INSURER`] answers `ProcessingResultStatus` 2 (`SIM-E0201`), for tests of
//!   the error path;
//! - otherwise the person is looked up by insurer number and insured number, then filtered by
//!   symbol and branch when the request gives them, then by birth date: one match answers
//!   `QualificationValidity` 1 (valid) or 2 (lost, with `DisqualificationDate`) and the full
//!   `ResultOfQualificationConfirmation`; several (twins on a card typed without a branch)
//!   answer 5 and list them; none answers 4 with an empty list.
//!
//! - a medical-aid recipient (`InsuredCardClassification` A1) answers with the medical-aid
//!   block: `PublicExpenseNumber`, `BeneficiaryNumber`, `WelfareOfficeName` and, when
//!   registered, `NumberOfMedicalTickets` and one medical ticket (医療券) for the month asked
//!   about, plus a dispensing ticket (調剤券) for some, both designating the asking
//!   institution; an unregistered recipient answers `QualificationValidity` 6 without
//!   tickets. The ticket codes (`TicketType` 1 medical / 2 dispensing, the status fields) are
//!   the simulator's own, since the real tables are not public;
//! - `LimitApplicationCertificateChanged` is 1 for about a fifth of the people whose copay
//!   limit certificate is shown, else 0 (derived from the card's issue day, no randomness).
//!
//! Whether a person is valid does not depend on the request's `QualificationConfirmationDate`
//! (every generated qualification starts and ends before [`crate::population::EPOCH`]); what
//! depends on the day (copay ratio, elderly and copay-limit certificate periods, card expiry)
//! is computed for that date.

use std::sync::Arc;

use onshi_domain::codes::{
    CharacterCodeIdentifier, InsuredCardClassification, ProcessingResultStatus,
    QualificationValidity, ReferenceClassification, SegmentOfResult,
};
use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::xml::{
    ElderlyRecipientCertificateInfo, LimitApplicationCertificateRelatedInfo, MedicalAid,
    MedicalTicketInfo, QualificationConfirmSearchInfo, QualificationConfirmationRequest,
    QualificationConfirmationResult, ResultBody, ResultHeader, ResultOfQualificationConfirmation,
    XmlEncoding,
};
use time::{Date, Duration, Month, PrimitiveDateTime};

use crate::errors::SimErrorCode;
use crate::population::{InsuranceKind, MedicalAidRecord, Person, Population};

/// The insurer number that is always "under maintenance": law code 06 (健康保険組合), Tokyo
/// (13), insurer 999, check digit 2. Valid, and never given to a generated person (their
/// insurer part is 100–899).
pub const MAINTENANCE_INSURER: &str = "06139992";

/// The simulator's answer: the result file and, when it reports an error, which one (the HTTP
/// layer takes its status from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub result: QualificationConfirmationResult,
    pub error: Option<SimErrorCode>,
}

impl Answer {
    pub fn http_status(&self) -> u16 {
        self.error.map_or(200, SimErrorCode::http_status)
    }
}

/// What could still be read from the header of a request that could not be parsed, to echo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEcho {
    pub qualification_confirmation_date: Option<Date>,
    pub arbitrary_file_identifier: Option<String>,
}

/// The eligibility service over one population.
#[derive(Debug, Clone)]
pub struct Service {
    population: Arc<Population>,
}

pub fn character_code(encoding: XmlEncoding) -> CharacterCodeIdentifier {
    match encoding {
        XmlEncoding::Utf8 => CharacterCodeIdentifier::Utf8,
        XmlEncoding::ShiftJis => CharacterCodeIdentifier::ShiftJis,
    }
}

/// A result file that ends abnormally (`SegmentOfResult` 9) with `error`, and no body.
///
/// `institution` is the request's when it could be read, else the terminal certificate's;
/// `echo` what could be read of the request's header; the confirmation date defaults to the
/// day of `now`.
pub fn refusal(
    institution: &MedicalInstitutionCode,
    echo: &HeaderEcho,
    error: SimErrorCode,
    detail: Option<&str>,
    now: PrimitiveDateTime,
    encoding: XmlEncoding,
) -> Answer {
    Answer {
        result: QualificationConfirmationResult {
            header: ResultHeader {
                process_execution_time: now,
                qualification_confirmation_date: echo
                    .qualification_confirmation_date
                    .unwrap_or(now.date()),
                medical_institution_code: institution.clone(),
                arbitrary_file_identifier: echo.arbitrary_file_identifier.clone(),
                reference_classification: ReferenceClassification::InsuranceCard,
                segment_of_result: SegmentOfResult::AbnormalEnd,
                error_code: Some(error.code().to_string()),
                error_message: Some(error.message_with(detail)),
                character_code_identifier: character_code(encoding),
            },
            body: ResultBody::default(),
        },
        error: Some(error),
    }
}

impl Service {
    pub fn new(population: Arc<Population>) -> Self {
        Self { population }
    }

    pub fn population(&self) -> &Arc<Population> {
        &self.population
    }

    /// Answers `request`, sent by a terminal of `terminal_institution`, at `now` (JST), in a
    /// file to be written with `encoding`.
    pub fn confirm(
        &self,
        terminal_institution: &MedicalInstitutionCode,
        request: &QualificationConfirmationRequest,
        now: PrimitiveDateTime,
        encoding: XmlEncoding,
    ) -> Answer {
        let header = &request.header;
        if &header.medical_institution_code != terminal_institution {
            let detail = format!(
                "certificate {}, request {}",
                terminal_institution, header.medical_institution_code
            );
            return refusal(
                &header.medical_institution_code,
                &HeaderEcho {
                    qualification_confirmation_date: Some(header.qualification_confirmation_date),
                    arbitrary_file_identifier: header.arbitrary_file_identifier.clone(),
                },
                SimErrorCode::InstitutionMismatch,
                Some(&detail),
                now,
                encoding,
            );
        }

        let result_header = ResultHeader {
            process_execution_time: now,
            qualification_confirmation_date: header.qualification_confirmation_date,
            medical_institution_code: header.medical_institution_code.clone(),
            arbitrary_file_identifier: header.arbitrary_file_identifier.clone(),
            reference_classification: ReferenceClassification::InsuranceCard,
            segment_of_result: SegmentOfResult::Normal,
            error_code: None,
            error_message: None,
            character_code_identifier: character_code(encoding),
        };
        let search = &request.search;

        if search.insurer_number.as_str() == MAINTENANCE_INSURER {
            let error = SimErrorCode::InsurerUnderMaintenance;
            return Answer {
                result: QualificationConfirmationResult {
                    header: result_header,
                    body: ResultBody {
                        processing_result_status: Some(ProcessingResultStatus::Error),
                        processing_result_code: Some(error.code().to_string()),
                        processing_result_message: Some(error.message_ja().to_string()),
                        qualification_validity: None,
                        search_info: Some(search.clone()),
                        prescription_issue_select: None,
                        results: Vec::new(),
                    },
                },
                error: Some(error),
            };
        }

        let matches = self.matches(search);
        let validity = match matches.as_slice() {
            [] => QualificationValidity::NoMatch,
            [one] => one.validity(),
            _ => QualificationValidity::MultipleMatches,
        };
        let day = header.qualification_confirmation_date;
        let results = matches
            .iter()
            .map(|p| result_for(p, day, search, now, &header.medical_institution_code))
            .collect();
        Answer {
            result: QualificationConfirmationResult {
                header: result_header,
                body: ResultBody {
                    processing_result_status: Some(ProcessingResultStatus::Normal),
                    processing_result_code: None,
                    processing_result_message: None,
                    qualification_validity: Some(validity),
                    search_info: Some(search.clone()),
                    prescription_issue_select: None,
                    results,
                },
            },
            error: None,
        }
    }

    /// The people the search designates: same insurer and number, same symbol and branch when
    /// given, same birth date.
    fn matches(&self, search: &QualificationConfirmSearchInfo) -> Vec<&Person> {
        self.population
            .find(
                &search.insurer_number,
                &search.insured_identification_number,
            )
            .filter(|p| {
                search
                    .insured_card_symbol
                    .as_ref()
                    .is_none_or(|s| p.symbol.as_ref() == Some(s))
            })
            .filter(|p| {
                search
                    .insured_branch_number
                    .as_ref()
                    .is_none_or(|b| p.branch.as_ref() == Some(b))
            })
            .filter(|p| p.birthdate == search.birthdate)
            .collect()
    }
}

/// The first day of the month after `birthday`, or `birthday` itself when it is the 1st: when
/// an age-based rule (70: 高齢受給者) starts applying.
fn month_after(birthday: Date) -> Date {
    if birthday.day() == 1 {
        return birthday;
    }
    let (year, month) = match birthday.month() {
        Month::December => (birthday.year() + 1, Month::January),
        m => (birthday.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).unwrap_or(birthday)
}

fn calendar(year: i32, month: Month, day: u8) -> Date {
    Date::from_calendar_date(year, month, day)
        .or_else(|_| Date::from_calendar_date(year, month, 28))
        .unwrap_or(Date::MIN)
}

/// The certificate year containing `day`: August 1 to July 31 (elderly and copay-limit
/// certificates, late-stage cards).
fn certificate_year(day: Date) -> (Date, Date) {
    let start_year = if u8::from(day.month()) >= 8 {
        day.year()
    } else {
        day.year() - 1
    };
    (
        calendar(start_year, Month::August, 1),
        calendar(start_year + 1, Month::July, 31),
    )
}

fn birthday_at(p: &Person, age: i32) -> Date {
    let born = p.birthdate.date();
    calendar(born.year() + age, born.month(), born.day())
}

/// 限度額適用認定証 brackets by rank: under 70 (A) and from 70 (B); the last two of each are
/// low-income brackets with a 限度額適用・標準負担額減額認定証 (kind 02).
const UNDER_70: [&str; 5] = ["A01", "A02", "A03", "A04", "A05"];
const FROM_70: [&str; 5] = ["B01", "B02", "B03", "B05", "B06"];

fn limit_info(p: &Person, rank: u8, day: Date) -> LimitApplicationCertificateRelatedInfo {
    let elderly = p.kind == InsuranceKind::LateStageElderly || p.age_on(day) >= 70;
    let brackets = if elderly { FROM_70 } else { UNDER_70 };
    let rank = usize::from(rank).min(brackets.len() - 1);
    let bracket = brackets[rank];
    let kind = if matches!(bracket, "A05" | "B05" | "B06") {
        "02"
    } else {
        "01"
    };
    let (start, end) = certificate_year(day);
    LimitApplicationCertificateRelatedInfo {
        classification: Some(kind.to_string()),
        classification_flag: Some(bracket.to_string()),
        date: Some(start),
        valid_start_date: Some(start),
        valid_end_date: Some(end),
        long_term_date: None,
    }
}

/// The first and last day of the month of `day`.
fn month_of(day: Date) -> (Date, Date) {
    let first = calendar(day.year(), day.month(), 1);
    let last = calendar(day.year(), day.month(), day.month().length(day.year()));
    (first, last)
}

/// The medical-aid block of a recipient, as of `day`, the tickets designating `institution`.
fn medical_aid_for(
    p: &Person,
    aid: &MedicalAidRecord,
    day: Date,
    institution: &MedicalInstitutionCode,
) -> MedicalAid {
    let (first, last) = month_of(day);
    let month = format!("{:04}{:02}", day.year(), u8::from(day.month()));
    let ticket = |ticket_type: &str, serial: u32| MedicalTicketInfo {
        ticket_type: Some(ticket_type.to_string()),
        valid_date: Some(first.max(p.qualification_date)),
        expiration_date: Some(last),
        // 発行番号: the month and the recipient's number, so it is stable for a month.
        issue_number: Some(format!("{month}{}{serial}", p.number.as_str())),
        medical_treatment_month: Some(month.clone()),
        designated_medical_institution_code: Some(institution.as_str().to_string()),
        designated_medical_institution_flag: Some("1".to_string()),
        prescription_issuer_medical_institution_code: (ticket_type == "2")
            .then(|| institution.as_str().to_string()),
        injury_name1: aid.injuries.first().map(|s| s.to_string()),
        injury_name2: aid.injuries.get(1).map(|s| s.to_string()),
        medical_treatment_type: Some("1".to_string()),
        self_pay_amount: Some(aid.self_pay.to_string()),
        district_contact_name: Some(aid.district_contact.clone()),
        handling_contact_name: Some(aid.handling_contact.clone()),
        single_or_combined_use: Some("1".to_string()),
        status_of_social_insurance: Some("0".to_string()),
        consistency_flag: Some("1".to_string()),
        status_of_infection: Some("0".to_string()),
        status_of_elderly_medical_care: Some("0".to_string()),
        status_of_prefectural_expenses: Some("0".to_string()),
        remarks1: (aid.self_pay > 0).then(|| "本人支払額あり".to_string()),
        ..MedicalTicketInfo::default()
    };
    let mut tickets = Vec::new();
    if !aid.unregistered {
        tickets.push(ticket("1", 1));
        if aid.dispensing {
            tickets.push(ticket("2", 2));
        }
    }
    MedicalAid {
        public_expense_number: Some(p.insurer_number.as_str().to_string()),
        beneficiary_number: Some(p.number.as_str().to_string()),
        welfare_office_name: Some(aid.welfare_office_name.clone()),
        number_of_medical_tickets: Some(tickets.len() as u32),
        medical_tickets: tickets,
    }
}

/// Everything the national system says about one qualification, as of `day`; medical-aid
/// tickets designate `institution`.
fn result_for(
    p: &Person,
    day: Date,
    search: &QualificationConfirmSearchInfo,
    now: PrimitiveDateTime,
    institution: &MedicalInstitutionCode,
) -> ResultOfQualificationConfirmation {
    if let Some(aid) = &p.medical_aid {
        return ResultOfQualificationConfirmation {
            insured_card_classification: Some(InsuredCardClassification::MedicalAid),
            insurer_number: Some(p.insurer_number.clone()),
            insured_identification_number: Some(p.number.clone()),
            personal_family_classification: Some(p.family),
            name: Some(p.name.clone()),
            name_kana: Some(p.name_kana.clone()),
            sex1: Some(p.sex),
            birthdate: Some(p.birthdate.clone()),
            address: Some(p.address.clone()),
            post_number: Some(p.post_number.clone()),
            qualification_date: Some(p.qualification_date),
            insurer_name: Some(p.insurer_name.clone()),
            medical_aid: Some(medical_aid_for(p, aid, day, institution)),
            ..ResultOfQualificationConfirmation::default()
        };
    }
    let late_stage = p.kind == InsuranceKind::LateStageElderly;
    let age = p.age_on(day);
    let elderly_recipient = (!late_stage && (70..75).contains(&age)).then(|| {
        let start = month_after(birthday_at(p, 70));
        let (_, year_end) = certificate_year(day);
        let before_75 = birthday_at(p, 75) - Duration::days(1);
        ElderlyRecipientCertificateInfo {
            certificate_date: Some(start),
            valid_start_date: Some(start),
            valid_end_date: Some(year_end.min(before_75)),
            contribution_ratio: Some("020".to_string()),
        }
    });
    let consent = search.limit_application_certificate_related_cons_flg;
    let valid = p.loss.is_none();
    ResultOfQualificationConfirmation {
        insured_card_classification: Some(InsuredCardClassification::General),
        insurer_number: Some(p.insurer_number.clone()),
        insured_card_symbol: p.symbol.clone(),
        insured_identification_number: Some(p.number.clone()),
        insured_branch_number: p.branch.clone(),
        personal_family_classification: Some(p.family),
        insured_name: Some(p.insured_name.clone()),
        name: Some(p.name.clone()),
        name_of_other: None,
        name_kana: Some(p.name_kana.clone()),
        name_of_other_kana: None,
        sex1: Some(p.sex),
        sex2: None,
        birthdate: Some(p.birthdate.clone()),
        address: Some(p.address.clone()),
        post_number: Some(p.post_number.clone()),
        qualification_date: Some(p.qualification_date),
        disqualification_date: p.loss.as_ref().map(|l| l.date),
        insured_certificate_issuance_date: Some(p.card_issued),
        insured_card_valid_date: Some(p.qualification_date),
        insured_card_expiration_date: (late_stage && valid).then(|| certificate_year(day).1),
        insured_partial_contribution_ratio: Some(p.copay_ratio_on(day).to_string()),
        // Code values of PreschoolClassification are UNCONFIRMED; the ratio says it.
        preschool_classification: None,
        reason_of_loss: p.loss.as_ref().map(|l| l.reason),
        insurer_name: Some(p.insurer_name.clone()),
        elderly_recipient_certificate_info: elderly_recipient,
        limit_application_certificate_related_cons_flg: Some(consent),
        limit_application_certificate_related_cons_time: consent.then_some(now),
        limit_application_certificate_related_info: match p.limit_rank {
            Some(rank) if consent && valid => Some(limit_info(p, rank, day)),
            _ => None,
        },
        limit_application_certificate_changed: match p.limit_rank {
            Some(_) if consent && valid => Some(p.card_issued.day().is_multiple_of(5)),
            _ => None,
        },
        ..ResultOfQualificationConfirmation::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_domain::check_digit;
    use onshi_domain::ids::{
        BirthDate, InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber,
        InsurerNumber,
    };
    use onshi_domain::xml::RequestHeader;
    use time::macros::{date, datetime};

    const NOW: PrimitiveDateTime = datetime!(2026-04-01 10:15:30);
    const TODAY: Date = date!(2026 - 04 - 01);

    fn institution() -> MedicalInstitutionCode {
        MedicalInstitutionCode::parse("3410712362").unwrap()
    }

    fn service() -> Service {
        Service::new(Arc::new(Population::generate(42, 1000)))
    }

    fn request_for(p: &Person) -> QualificationConfirmationRequest {
        QualificationConfirmationRequest {
            header: RequestHeader {
                qualification_confirmation_date: TODAY,
                medical_institution_code: institution(),
                arbitrary_file_identifier: Some("202604010001".into()),
            },
            search: QualificationConfirmSearchInfo {
                insurer_number: p.insurer_number.clone(),
                insured_card_symbol: p.symbol.clone(),
                insured_identification_number: p.number.clone(),
                insured_branch_number: p.branch.clone(),
                birthdate: p.birthdate.clone(),
                limit_application_certificate_related_cons_flg: false,
                arbitrary_identifier: Some("patient-7".into()),
            },
        }
    }

    fn ask(s: &Service, r: &QualificationConfirmationRequest) -> Answer {
        s.confirm(&institution(), r, NOW, XmlEncoding::Utf8)
    }

    fn person(s: &Service, f: impl Fn(&Person) -> bool) -> Person {
        s.population()
            .people()
            .iter()
            .find(|p| f(p))
            .expect("the population has such a person")
            .clone()
    }

    #[test]
    fn medical_aid_recipients_get_the_block_and_their_tickets() {
        let s = service();
        let p = person(&s, |p| {
            p.medical_aid
                .as_ref()
                .is_some_and(|a| !a.unregistered && a.dispensing)
        });
        let answer = ask(&s, &request_for(&p));
        let r = &answer.result;
        assert_eq!(
            r.body.qualification_validity,
            Some(QualificationValidity::Valid)
        );
        let one = &r.body.results[0];
        assert_eq!(
            one.insured_card_classification,
            Some(InsuredCardClassification::MedicalAid)
        );
        let aid = one.medical_aid.as_ref().expect("the medical-aid block");
        assert_eq!(
            aid.public_expense_number.as_deref(),
            Some(p.insurer_number.as_str())
        );
        assert_eq!(aid.beneficiary_number.as_deref(), Some(p.number.as_str()));
        assert!(
            aid.welfare_office_name
                .as_deref()
                .unwrap()
                .ends_with("福祉事務所")
        );
        assert_eq!(aid.number_of_medical_tickets, Some(2));
        let [medical, dispensing] = aid.medical_tickets.as_slice() else {
            panic!("two tickets expected: {:?}", aid.medical_tickets);
        };
        assert_eq!(medical.ticket_type.as_deref(), Some("1"));
        assert_eq!(dispensing.ticket_type.as_deref(), Some("2"));
        assert_eq!(medical.medical_treatment_month.as_deref(), Some("202604"));
        assert_eq!(medical.expiration_date, Some(date!(2026 - 04 - 30)));
        assert_eq!(
            medical.designated_medical_institution_code.as_deref(),
            Some(institution().as_str())
        );
        assert!(medical.injury_name1.is_some());
        assert_eq!(one.insured_partial_contribution_ratio, None);
        let xml = r.to_xml(XmlEncoding::Utf8);
        assert_eq!(&QualificationConfirmationResult::from_xml(&xml).unwrap(), r);

        let q = person(&s, |p| {
            p.medical_aid.as_ref().is_some_and(|a| a.unregistered)
        });
        let answer = ask(&s, &request_for(&q));
        assert_eq!(
            answer.result.body.qualification_validity,
            Some(QualificationValidity::ValidUnregistered)
        );
        let aid = answer.result.body.results[0].medical_aid.as_ref().unwrap();
        assert_eq!(aid.number_of_medical_tickets, Some(0));
        assert!(aid.medical_tickets.is_empty());
    }

    /// Header and body elements of a file, as paths (values and deeper levels aside), and
    /// where the results sit.
    fn placement(bytes: &[u8]) -> std::collections::BTreeSet<String> {
        onshi_domain::xml::element_paths(bytes)
            .unwrap()
            .into_iter()
            .filter(|p| {
                p.matches('/').count() <= 2 || p.ends_with("/ResultOfQualificationConfirmation")
            })
            .collect()
    }

    #[test]
    fn results_place_their_elements_as_the_corpus() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/onshi-corpus/OQSsiquc01res_insurance_card.xml");
        let corpus = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "the conformance corpus file {} cannot be read: {e}",
                path.display()
            )
        });
        let s = service();
        let p = person(&s, |p| p.loss.is_none() && p.limit_rank.is_some());
        let mut request = request_for(&p);
        request
            .search
            .limit_application_certificate_related_cons_flg = true;
        let ours = placement(&ask(&s, &request).result.to_xml(XmlEncoding::Utf8));
        let theirs = placement(&corpus);
        // The corpus's result has a body-level PrescriptionIssueSelect, which we do not
        // simulate; everything we write sits where the corpus puts it.
        let missing: Vec<_> = theirs.difference(&ours).collect();
        assert_eq!(missing, ["XmlMsg/MessageBody/PrescriptionIssueSelect"]);
        assert!(ours.is_subset(&theirs), "{:?}", ours.difference(&theirs));
    }

    #[test]
    fn maintenance_insurer_is_valid() {
        assert!(check_digit::is_valid(MAINTENANCE_INSURER));
        assert!(InsurerNumber::parse(MAINTENANCE_INSURER).is_ok());
    }

    #[test]
    fn valid_person() {
        let s = service();
        let p = person(&s, |p| p.loss.is_none());
        let request = request_for(&p);
        let answer = ask(&s, &request);
        assert_eq!(answer.error, None);
        assert_eq!(answer.http_status(), 200);
        let r = &answer.result;
        assert_eq!(r.header.segment_of_result, SegmentOfResult::Normal);
        assert_eq!(r.header.process_execution_time, NOW);
        assert_eq!(r.header.qualification_confirmation_date, TODAY);
        assert_eq!(r.header.medical_institution_code, institution());
        assert_eq!(
            r.header.arbitrary_file_identifier.as_deref(),
            Some("202604010001")
        );
        assert_eq!(
            r.header.reference_classification,
            ReferenceClassification::InsuranceCard
        );
        assert_eq!(
            r.header.character_code_identifier,
            CharacterCodeIdentifier::Utf8
        );
        assert_eq!(
            r.body.processing_result_status,
            Some(ProcessingResultStatus::Normal)
        );
        assert_eq!(
            r.body.qualification_validity,
            Some(QualificationValidity::Valid)
        );
        assert_eq!(r.body.search_info.as_ref(), Some(&request.search));
        let [one] = r.body.results.as_slice() else {
            panic!("one result expected: {:?}", r.body.results);
        };
        assert_eq!(one.name.as_deref(), Some(p.name.as_str()));
        assert_eq!(one.name_kana.as_deref(), Some(p.name_kana.as_str()));
        assert_eq!(one.insurer_number.as_ref(), Some(&p.insurer_number));
        assert_eq!(one.birthdate.as_ref(), Some(&p.birthdate));
        assert_eq!(one.disqualification_date, None);
        assert_eq!(one.reason_of_loss, None);
        assert_eq!(
            one.insured_partial_contribution_ratio.as_deref(),
            Some(p.copay_ratio_on(TODAY))
        );
        assert_eq!(
            one.limit_application_certificate_related_cons_flg,
            Some(false)
        );
        assert_eq!(one.limit_application_certificate_related_info, None);
        // The result survives the codec both ways.
        let xml = r.to_xml(XmlEncoding::Utf8);
        assert_eq!(&QualificationConfirmationResult::from_xml(&xml).unwrap(), r);
    }

    #[test]
    fn symbol_and_branch_may_be_left_out() {
        let s = service();
        let p = person(&s, |p| p.loss.is_none() && p.symbol.is_some());
        let mut request = request_for(&p);
        request.search.insured_card_symbol = None;
        request.search.insured_branch_number = None;
        let answer = ask(&s, &request);
        // Twins would make this 5; nobody else in the household shares the birth date here.
        let twins = s
            .population()
            .find(&p.insurer_number, &p.number)
            .filter(|o| o.birthdate == p.birthdate)
            .count();
        let expected = if twins == 1 {
            QualificationValidity::Valid
        } else {
            QualificationValidity::MultipleMatches
        };
        assert_eq!(answer.result.body.qualification_validity, Some(expected));
        assert_eq!(answer.result.body.results.len(), twins);
    }

    #[test]
    fn disqualified_person() {
        let s = service();
        let p = person(&s, |p| p.loss.is_some());
        let answer = ask(&s, &request_for(&p));
        let body = &answer.result.body;
        assert_eq!(answer.error, None);
        assert_eq!(
            answer.result.header.segment_of_result,
            SegmentOfResult::Normal
        );
        assert_eq!(
            body.qualification_validity,
            Some(QualificationValidity::Invalid)
        );
        let loss = p.loss.as_ref().unwrap();
        assert_eq!(body.results[0].disqualification_date, Some(loss.date));
        assert_eq!(body.results[0].reason_of_loss, Some(loss.reason));
    }

    #[test]
    fn wrong_birthdate_branch_or_symbol_is_no_match() {
        let s = service();
        let p = person(&s, |p| {
            p.loss.is_none() && p.symbol.is_some() && p.branch.is_some()
        });
        let no_match = |r: &QualificationConfirmationRequest| {
            let answer = ask(&s, r);
            assert_eq!(answer.error, None);
            assert_eq!(
                answer.result.body.processing_result_status,
                Some(ProcessingResultStatus::Normal)
            );
            assert_eq!(
                answer.result.body.qualification_validity,
                Some(QualificationValidity::NoMatch)
            );
            assert!(answer.result.body.results.is_empty());
        };

        let mut wrong_birthdate = request_for(&p);
        wrong_birthdate.search.birthdate =
            BirthDate::from_date(p.birthdate.date() - Duration::days(1)).unwrap();
        no_match(&wrong_birthdate);

        let mut wrong_branch = request_for(&p);
        wrong_branch.search.insured_branch_number = Some(InsuredBranchNumber::parse("99").unwrap());
        no_match(&wrong_branch);

        let mut wrong_symbol = request_for(&p);
        wrong_symbol.search.insured_card_symbol =
            Some(InsuredCardSymbol::parse("存在しない記号").unwrap());
        no_match(&wrong_symbol);

        let mut unknown_number = request_for(&p);
        unknown_number.search.insured_identification_number =
            InsuredIdentificationNumber::parse("NOBODY").unwrap();
        no_match(&unknown_number);
    }

    #[test]
    fn maintenance_insurer_answers_a_per_person_error() {
        let s = service();
        let p = person(&s, |_| true);
        let mut request = request_for(&p);
        request.search.insurer_number = InsurerNumber::parse(MAINTENANCE_INSURER).unwrap();
        let answer = ask(&s, &request);
        assert_eq!(answer.error, Some(SimErrorCode::InsurerUnderMaintenance));
        assert_eq!(answer.http_status(), 200);
        let r = &answer.result;
        assert_eq!(r.header.segment_of_result, SegmentOfResult::Normal);
        assert_eq!(
            r.body.processing_result_status,
            Some(ProcessingResultStatus::Error)
        );
        assert_eq!(r.body.processing_result_code.as_deref(), Some("SIM-E0201"));
        assert_eq!(r.body.qualification_validity, None);
        assert!(r.body.results.is_empty());
    }

    #[test]
    fn another_institution_is_refused() {
        let s = service();
        let p = person(&s, |p| p.loss.is_none());
        let mut request = request_for(&p);
        let other = MedicalInstitutionCode::with_check_digit("131012345").unwrap();
        request.header.medical_institution_code = other.clone();
        let other = other.to_string();
        let answer = s.confirm(&institution(), &request, NOW, XmlEncoding::ShiftJis);
        assert_eq!(answer.error, Some(SimErrorCode::InstitutionMismatch));
        assert_eq!(answer.http_status(), 403);
        let h = &answer.result.header;
        assert_eq!(h.segment_of_result, SegmentOfResult::AbnormalEnd);
        assert_eq!(h.error_code.as_deref(), Some("SIM-E0102"));
        let message = h.error_message.as_deref().unwrap();
        assert!(
            message.contains("3410712362") && message.contains(&other),
            "{message}"
        );
        assert_eq!(h.arbitrary_file_identifier.as_deref(), Some("202604010001"));
        assert_eq!(
            h.character_code_identifier,
            CharacterCodeIdentifier::ShiftJis
        );
        assert_eq!(answer.result.body, ResultBody::default());
        // Nothing about the person leaks into a refusal.
        let xml = answer.result.to_xml(XmlEncoding::Utf8);
        let text = String::from_utf8(xml).unwrap();
        assert!(!text.contains(p.number.as_str()), "{text}");
    }

    #[test]
    fn limit_consent_adds_flag_time_and_certificate() {
        let s = service();
        let p = person(&s, |p| p.loss.is_none() && p.limit_rank.is_some());
        let mut request = request_for(&p);
        request
            .search
            .limit_application_certificate_related_cons_flg = true;
        let answer = ask(&s, &request);
        let one = &answer.result.body.results[0];
        assert_eq!(
            one.limit_application_certificate_related_cons_flg,
            Some(true)
        );
        assert_eq!(
            one.limit_application_certificate_related_cons_time,
            Some(NOW)
        );
        let info = one
            .limit_application_certificate_related_info
            .as_ref()
            .unwrap();
        let bracket = info.classification_flag.as_deref().unwrap();
        assert!(UNDER_70.contains(&bracket) || FROM_70.contains(&bracket));
        assert_eq!(info.valid_start_date, Some(date!(2025 - 08 - 01)));
        assert_eq!(info.valid_end_date, Some(date!(2026 - 07 - 31)));

        let q = person(&s, |p| p.loss.is_none() && p.limit_rank.is_none());
        let mut request = request_for(&q);
        request
            .search
            .limit_application_certificate_related_cons_flg = true;
        let answer = ask(&s, &request);
        let one = &answer.result.body.results[0];
        assert_eq!(
            one.limit_application_certificate_related_cons_flg,
            Some(true)
        );
        assert_eq!(one.limit_application_certificate_related_info, None);
    }

    #[test]
    fn elderly_people_get_their_certificates() {
        let s = service();
        let late = person(&s, |p| {
            p.kind == InsuranceKind::LateStageElderly && p.loss.is_none()
        });
        let one = &ask(&s, &request_for(&late)).result.body.results[0];
        assert_eq!(
            one.insured_partial_contribution_ratio.as_deref(),
            Some("010")
        );
        assert_eq!(one.insured_branch_number, None);
        assert_eq!(
            one.insured_card_expiration_date,
            Some(date!(2026 - 07 - 31))
        );
        assert_eq!(one.elderly_recipient_certificate_info, None);

        let seventies = person(&s, |p| {
            p.kind != InsuranceKind::LateStageElderly && (70..75).contains(&p.age_on(TODAY))
        });
        let one = &ask(&s, &request_for(&seventies)).result.body.results[0];
        assert_eq!(
            one.insured_partial_contribution_ratio.as_deref(),
            Some("020")
        );
        let elderly = one.elderly_recipient_certificate_info.as_ref().unwrap();
        assert_eq!(elderly.contribution_ratio.as_deref(), Some("020"));
        assert!(elderly.valid_start_date.unwrap() <= TODAY);
        assert!(elderly.valid_end_date.unwrap() >= TODAY);
    }

    #[test]
    fn refusal_defaults_to_today_and_keeps_the_echo() {
        let answer = refusal(
            &institution(),
            &HeaderEcho::default(),
            SimErrorCode::RequestUnreadable,
            Some("not well-formed XML at byte 3"),
            NOW,
            XmlEncoding::Utf8,
        );
        let h = &answer.result.header;
        assert_eq!(h.qualification_confirmation_date, TODAY);
        assert_eq!(h.segment_of_result, SegmentOfResult::AbnormalEnd);
        assert!(h.error_message.as_deref().unwrap().contains("byte 3"));
        assert_eq!(answer.http_status(), 400);
        let xml = answer.result.to_xml(XmlEncoding::Utf8);
        assert_eq!(
            QualificationConfirmationResult::from_xml(&xml).unwrap(),
            answer.result
        );
    }

    #[test]
    fn month_after_birthday() {
        assert_eq!(month_after(date!(1955 - 06 - 15)), date!(1955 - 07 - 01));
        assert_eq!(month_after(date!(1955 - 06 - 01)), date!(1955 - 06 - 01));
        assert_eq!(month_after(date!(1955 - 12 - 31)), date!(1956 - 01 - 01));
        assert_eq!(
            certificate_year(date!(2026 - 08 - 01)),
            (date!(2026 - 08 - 01), date!(2027 - 07 - 31))
        );
        assert_eq!(
            certificate_year(date!(2026 - 07 - 31)),
            (date!(2025 - 08 - 01), date!(2026 - 07 - 31))
        );
    }
}
