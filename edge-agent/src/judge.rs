//! Reading the national system's answer to an eligibility confirmation: one judgement for every
//! route (insurance card, My Number card, receipt-computer files), so the same answer means the
//! same outcome and the same words at the counter whichever way it was asked.

use onshi_domain::codes::{
    LimitBracket, LimitCertificateKind, ProcessingResultStatus, QualificationValidity,
    SegmentOfResult, SpecificDiseaseCategory,
};
use onshi_domain::events::LookupOutcome;
use onshi_domain::xml::{
    MedicalAid, MedicalTicketInfo, QualificationConfirmationResult, ReadWarning,
    ResultOfQualificationConfirmation,
};
use time::Date;

use crate::onshi::OnshiError;

/// The answer reduced to what the event and the counter need.
#[derive(Debug, Clone)]
pub struct Judged {
    pub outcome: LookupOutcome,
    pub validity: Option<QualificationValidity>,
    pub processing_result_code: Option<String>,
    pub error_code: Option<String>,
    pub message: String,
    /// The first person of the result, when there is one.
    pub first: Option<ResultOfQualificationConfirmation>,
}

impl Judged {
    pub fn person(&self) -> Option<PersonShown> {
        self.first.as_ref().map(person_shown)
    }
}

/// The national system could not be reached: the clerk falls back to the physical card.
pub fn unreachable(error: &OnshiError) -> Judged {
    Judged {
        outcome: LookupOutcome::Unreachable,
        validity: None,
        processing_result_code: None,
        error_code: Some("unreachable".into()),
        message: error.for_clerk(),
        first: None,
    }
}

/// Judges a result file. `not_found` is the sentence for "no matching qualification", which
/// differs by route (a typing mistake at the counter, an unregistered card on the reader).
pub fn judge(body: &[u8], http_status: u16, not_found: &str) -> Judged {
    let failed = |error_code: String, message: String| Judged {
        outcome: LookupOutcome::Error,
        validity: None,
        processing_result_code: None,
        error_code: Some(error_code),
        message,
        first: None,
    };
    let result = match QualificationConfirmationResult::read_xml(body) {
        Ok(read) => {
            log_read_warnings("OQSsiquc01res", &read.warnings);
            read.value
        }
        Err(_) if !(200..300).contains(&http_status) => {
            return failed(
                format!("http_{http_status}"),
                format!(
                    "照会が拒否されました（HTTP {http_status}） / the national system refused the request"
                ),
            );
        }
        Err(error) => {
            return failed(
                "malformed_response".into(),
                format!("応答を読み取れませんでした / the answer could not be read: {error}"),
            );
        }
    };
    let header = &result.header;
    let body = &result.body;
    if header.segment_of_result != SegmentOfResult::Normal
        || body.processing_result_status == Some(ProcessingResultStatus::Error)
    {
        let code = header
            .error_code
            .clone()
            .or_else(|| body.processing_result_code.clone());
        let text = header
            .error_message
            .clone()
            .or_else(|| body.processing_result_message.clone())
            .unwrap_or_default();
        return Judged {
            outcome: LookupOutcome::Error,
            validity: None,
            processing_result_code: body.processing_result_code.clone(),
            error_code: code.clone(),
            message: format!(
                "照会でエラーが返されました（{}）{text} / the national system returned an error",
                code.as_deref().unwrap_or("-")
            ),
            first: None,
        };
    }
    let validity = body.qualification_validity;
    let outcome = match validity {
        Some(v) if v.is_valid() => LookupOutcome::Valid,
        Some(QualificationValidity::Invalid | QualificationValidity::InvalidNewerExists) => {
            LookupOutcome::Invalid
        }
        Some(_) => LookupOutcome::NotFound,
        None => LookupOutcome::Error,
    };
    let message = match outcome {
        LookupOutcome::Valid if validity == Some(QualificationValidity::ValidUnregistered) => {
            "資格有効（医療扶助・オンライン未登録：医療券は福祉事務所に確認） / eligible (medical aid, not yet registered online: ask the welfare office for the ticket)".to_string()
        }
        LookupOutcome::Valid => "資格有効 / eligible".to_string(),
        LookupOutcome::Invalid => "資格無効 / not eligible (qualification lost)".to_string(),
        LookupOutcome::NotFound => not_found.to_string(),
        _ => "応答に資格情報がありません / the answer carried no qualification".to_string(),
    };
    Judged {
        outcome,
        validity,
        processing_result_code: body.processing_result_code.clone(),
        error_code: None,
        message,
        first: body.results.first().cloned(),
    }
}

/// The patient details shown at the counter; they stay at the site.
#[derive(Debug, Clone, Default)]
pub struct PersonShown {
    pub name: String,
    pub name_kana: String,
    pub insurer_name: String,
    pub insured_partial_contribution_ratio: String,
    pub disqualification_date: String,
    /// Copay limit, specific-disease and medical-aid lines ([`details_shown`]).
    pub details: Vec<String>,
}

pub fn person_shown(r: &ResultOfQualificationConfirmation) -> PersonShown {
    PersonShown {
        name: r.name.clone().unwrap_or_default(),
        name_kana: r.name_kana.clone().unwrap_or_default(),
        insurer_name: r.insurer_name.clone().unwrap_or_default(),
        insured_partial_contribution_ratio: r
            .insured_partial_contribution_ratio
            .clone()
            .unwrap_or_default(),
        disqualification_date: r
            .disqualification_date
            .map(|d| format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day()))
            .unwrap_or_default(),
        details: details_shown(r),
    }
}

/// Logs what the reader tolerated in an Onshi file (a national answer, a receipt computer's
/// request): element paths and codes only (a
/// [`ReadWarning`] carries no name or number of the patient).
pub fn log_read_warnings(kind: &'static str, warnings: &[ReadWarning]) {
    for w in warnings {
        tracing::warn!(file = kind, path = %w.path, warning = %w.kind, "Onshi file read with tolerance");
    }
}

/// What else the result carries for the counter, one line each, Japanese then English: the
/// copay limit certificate (and whether it changed), specific-disease certificates, and the
/// medical-aid block with every ticket. Codes whose tables are public are shown with their
/// label; the others as written.
pub fn details_shown(r: &ResultOfQualificationConfirmation) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(l) = &r.limit_application_certificate_related_info {
        let kind = l.classification.as_deref().map(|c| {
            LimitCertificateKind::from_code(c)
                .map_or_else(|| c.to_string(), |k| format!("{} ({c})", k.label_ja()))
        });
        let bracket = l.classification_flag.as_deref().map(|c| {
            LimitBracket::from_code(c)
                .map_or_else(|| c.to_string(), |b| format!("{} ({c})", b.label_ja()))
        });
        lines.push(format!(
            "限度額適用認定証 / copay limit certificate: {}, 適用区分 / bracket {}, {}",
            kind.as_deref().unwrap_or("-"),
            bracket.as_deref().unwrap_or("-"),
            period(l.valid_start_date, l.valid_end_date),
        ));
    }
    if r.limit_application_certificate_changed == Some(true) {
        lines.push(
            "限度額適用認定証の内容が変更されています / the copay limit certificate has changed since it was last confirmed"
                .to_string(),
        );
    }
    for d in &r.specific_diseases_certificate_list {
        let category = d.disease_category.as_deref().map(|c| {
            SpecificDiseaseCategory::from_code(c)
                .map_or_else(|| c.to_string(), |k| format!("{} ({c})", k.label_ja()))
        });
        lines.push(format!(
            "特定疾病療養受療証 / specific disease certificate: {}, {}, 自己負担限度額 / monthly self-pay limit {}",
            category.as_deref().unwrap_or("-"),
            period(d.valid_start_date, d.valid_end_date),
            d.self_pay.as_deref().map_or("-".to_string(), |y| format!("{y}円")),
        ));
    }
    if let Some(aid) = &r.medical_aid {
        medical_aid_lines(aid, &mut lines);
    }
    lines
}

fn medical_aid_lines(aid: &MedicalAid, lines: &mut Vec<String>) {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    let count = aid
        .number_of_medical_tickets
        .map_or(aid.medical_tickets.len(), |n| n as usize);
    lines.push(format!(
        "医療扶助 / medical aid: 福祉事務所 / welfare office {}, 公費負担者番号 / payer {}, 受給者番号 / recipient {}, 医療券 {count} 件 / {count} ticket(s)",
        dash(&aid.welfare_office_name),
        dash(&aid.public_expense_number),
        dash(&aid.beneficiary_number),
    ));
    for (i, t) in aid.medical_tickets.iter().enumerate() {
        lines.push(ticket_line(i + 1, t));
    }
}

fn ticket_line(n: usize, t: &MedicalTicketInfo) -> String {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    let injuries: Vec<&str> = [&t.injury_name1, &t.injury_name2, &t.injury_name3]
        .into_iter()
        .filter_map(|i| i.as_deref())
        .collect();
    let remarks: Vec<&str> = [&t.remarks1, &t.remarks2, &t.remarks3]
        .into_iter()
        .filter_map(|i| i.as_deref())
        .collect();
    let mut line = format!(
        "  医療券 {n} / ticket {n}: 券種 / type {}, {}, 診療年月 / month {}, 指定医療機関 / designated {}{}, 傷病名 / injuries {}, 本人支払額 / self-pay {}",
        dash(&t.ticket_type),
        period(t.valid_date, t.expiration_date),
        dash(&t.medical_treatment_month),
        dash(&t.designated_medical_institution_code),
        t.designated_medical_institution_name
            .as_deref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default(),
        if injuries.is_empty() {
            "-".to_string()
        } else {
            injuries.join("・")
        },
        t.self_pay_amount
            .as_deref()
            .map_or("-".to_string(), |y| format!("{y}円")),
    );
    if let Some(code) = &t.prescription_issuer_medical_institution_code {
        line.push_str(&format!(", 処方元 / prescriber {code}"));
    }
    if !remarks.is_empty() {
        line.push_str(&format!(", 備考 / remarks {}", remarks.join("・")));
    }
    line
}

/// "2026/04/01〜2026/04/30", with "-" for an open end.
fn period(start: Option<Date>, end: Option<Date>) -> String {
    let day = |d: Option<Date>| {
        d.map_or("-".to_string(), |d| {
            format!("{:04}/{:02}/{:02}", d.year(), u8::from(d.month()), d.day())
        })
    };
    format!("{}〜{}", day(start), day(end))
}

#[cfg(test)]
mod tests {
    use onshi_domain::codes::{
        CharacterCodeIdentifier, InsuredCardClassification, ReferenceClassification,
    };
    use onshi_domain::ids::MedicalInstitutionCode;
    use onshi_domain::xml::{
        LimitApplicationCertificateRelatedInfo, ResultBody, ResultHeader,
        SpecificDiseasesCertificateInfo, XmlEncoding,
    };
    use time::macros::{date, datetime};

    use super::*;

    fn medical_aid_person() -> ResultOfQualificationConfirmation {
        ResultOfQualificationConfirmation {
            insured_card_classification: Some(InsuredCardClassification::MedicalAid),
            name: Some("見本\u{3000}花子".into()),
            medical_aid: Some(MedicalAid {
                public_expense_number: Some("12138019".into()),
                beneficiary_number: Some("1234567".into()),
                welfare_office_name: Some("中央市福祉事務所".into()),
                number_of_medical_tickets: Some(1),
                medical_tickets: vec![MedicalTicketInfo {
                    ticket_type: Some("1".into()),
                    valid_date: Some(date!(2026 - 04 - 01)),
                    expiration_date: Some(date!(2026 - 04 - 30)),
                    medical_treatment_month: Some("202604".into()),
                    designated_medical_institution_code: Some("0110112489".into()),
                    injury_name1: Some("高血圧症".into()),
                    injury_name2: Some("腰痛症".into()),
                    self_pay_amount: Some("0".into()),
                    remarks1: Some("通院".into()),
                    ..MedicalTicketInfo::default()
                }],
            }),
            ..ResultOfQualificationConfirmation::default()
        }
    }

    fn result_file(
        validity: QualificationValidity,
        person: ResultOfQualificationConfirmation,
    ) -> Vec<u8> {
        QualificationConfirmationResult {
            header: ResultHeader {
                process_execution_time: datetime!(2026-04-01 10:00:00),
                qualification_confirmation_date: date!(2026 - 04 - 01),
                medical_institution_code: MedicalInstitutionCode::parse("0110112489").unwrap(),
                arbitrary_file_identifier: None,
                reference_classification: ReferenceClassification::InsuranceCard,
                segment_of_result: SegmentOfResult::Normal,
                error_code: None,
                error_message: None,
                character_code_identifier: CharacterCodeIdentifier::Utf8,
            },
            body: ResultBody {
                processing_result_status: Some(ProcessingResultStatus::Normal),
                qualification_validity: Some(validity),
                results: vec![person],
                ..ResultBody::default()
            },
        }
        .to_xml(XmlEncoding::Utf8)
    }

    #[test]
    fn medical_aid_tickets_reach_the_counter() {
        let judged = judge(
            &result_file(QualificationValidity::Valid, medical_aid_person()),
            200,
            "-",
        );
        assert_eq!(judged.outcome, LookupOutcome::Valid);
        let details = judged.person().unwrap().details;
        assert_eq!(details.len(), 2, "{details:?}");
        assert!(
            details[0].starts_with("医療扶助 / medical aid")
                && details[0].contains("中央市福祉事務所")
                && details[0].contains("12138019")
                && details[0].contains("1234567")
                && details[0].contains("医療券 1 件 / 1 ticket(s)"),
            "{}",
            details[0]
        );
        let ticket = &details[1];
        for part in [
            "医療券 1 / ticket 1",
            "2026/04/01〜2026/04/30",
            "202604",
            "0110112489",
            "高血圧症・腰痛症",
            "0円",
            "備考 / remarks 通院",
        ] {
            assert!(ticket.contains(part), "{part} in {ticket}");
        }
    }

    #[test]
    fn unregistered_medical_aid_is_eligible_and_says_so() {
        let mut person = medical_aid_person();
        if let Some(aid) = &mut person.medical_aid {
            aid.medical_tickets.clear();
            aid.number_of_medical_tickets = Some(0);
        }
        let judged = judge(
            &result_file(QualificationValidity::ValidUnregistered, person),
            200,
            "-",
        );
        assert_eq!(judged.outcome, LookupOutcome::Valid);
        assert_eq!(
            judged.validity,
            Some(QualificationValidity::ValidUnregistered)
        );
        assert!(
            judged.message.starts_with("資格有効（医療扶助"),
            "{}",
            judged.message
        );
        assert!(judged.message.contains(" / eligible (medical aid"));
        let details = judged.person().unwrap().details;
        assert_eq!(details.len(), 1);
        assert!(details[0].contains("医療券 0 件"));
    }

    #[test]
    fn limit_changes_and_specific_diseases_are_shown() {
        let person = ResultOfQualificationConfirmation {
            limit_application_certificate_related_info: Some(
                LimitApplicationCertificateRelatedInfo {
                    classification: Some("01".into()),
                    classification_flag: Some("A03".into()),
                    valid_start_date: Some(date!(2025 - 08 - 01)),
                    valid_end_date: Some(date!(2026 - 07 - 31)),
                    ..LimitApplicationCertificateRelatedInfo::default()
                },
            ),
            limit_application_certificate_changed: Some(true),
            specific_diseases_certificate_list: vec![SpecificDiseasesCertificateInfo {
                disease_category: Some("1".into()),
                valid_start_date: Some(date!(2025 - 04 - 01)),
                self_pay: Some("10000".into()),
                ..SpecificDiseasesCertificateInfo::default()
            }],
            ..ResultOfQualificationConfirmation::default()
        };
        let details = details_shown(&person);
        assert_eq!(details.len(), 3, "{details:?}");
        assert!(details[0].contains("限度額適用認定証 (01)") && details[0].contains("ウ (A03)"));
        assert!(details[0].contains("2025/08/01〜2026/07/31"));
        assert!(details[1].starts_with("限度額適用認定証の内容が変更されています / "));
        assert!(details[2].starts_with("特定疾病療養受療証 / specific disease certificate"));
        assert!(details[2].contains("人工透析を必要とする慢性腎不全 (1)"));
        assert!(details[2].contains("2025/04/01〜-"));
        assert!(details[2].contains("10000円"));
        // Nothing to add for a plain result.
        assert!(details_shown(&ResultOfQualificationConfirmation::default()).is_empty());
    }
}
