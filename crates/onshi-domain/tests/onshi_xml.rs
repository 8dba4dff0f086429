//! The Onshi XML codec against realistic files: fixtures, both encodings, every error variant,
//! and properties (no panics on any input; generated messages round-trip).

use encoding_rs::SHIFT_JIS;
use onshi_domain::check_digit;
use onshi_domain::codes::{
    CharacterCodeIdentifier, ConsentStatus, InsuredCardClassification,
    PersonalFamilyClassification, PrescriptionIssueSelect, ProcessingResultStatus,
    QualificationValidity, ReasonOfLoss, ReferenceClassification, SegmentOfResult, Sex,
};
use onshi_domain::ids::{
    BirthDate, InsuranceCardQuery, InsuredBranchNumber, InsuredCardSymbol,
    InsuredIdentificationNumber, InsurerNumber, MedicalInstitutionCode,
};
use onshi_domain::xml::{
    ConsentGroup, ElderlyRecipientCertificateInfo, LimitApplicationCertificateRelatedInfo,
    MedicalAid, MedicalTicketInfo, QualificationConfirmSearchInfo,
    QualificationConfirmationRequest, QualificationConfirmationResult, ReadWarning, RequestHeader,
    ResultBody, ResultHeader, ResultOfQualificationConfirmation, SpecificDiseasesCertificateInfo,
    WarningKind, XmlEncoding, XmlError, XmlLimits,
};
use proptest::prelude::*;
use time::macros::{date, datetime};
use time::{Date, PrimitiveDateTime};

const REQUEST: &str = include_str!("fixtures/OQSsiquc01req_202404010001.xml");
const RESULT: &str = include_str!("fixtures/OQSsiquc01res_202404010001.xml");
const ABNORMAL: &str = include_str!("fixtures/OQSsiquc01res_202404010002.xml");

/// The fixture as a Shift_JIS file: same text, declaration changed, bytes encoded.
fn to_shift_jis(utf8_text: &str) -> Vec<u8> {
    let text = utf8_text.replacen("encoding=\"UTF-8\"", "encoding=\"Shift_JIS\"", 1);
    let (bytes, _, unmappable) = SHIFT_JIS.encode(&text);
    assert!(
        !unmappable,
        "fixture text must be representable in Shift_JIS"
    );
    bytes.into_owned()
}

fn expected_search() -> QualificationConfirmSearchInfo {
    QualificationConfirmSearchInfo {
        insurer_number: InsurerNumber::parse("138156").unwrap(),
        insured_card_symbol: Some(InsuredCardSymbol::parse("12-34").unwrap()),
        insured_identification_number: InsuredIdentificationNumber::parse("4260").unwrap(),
        insured_branch_number: Some(InsuredBranchNumber::parse("01").unwrap()),
        birthdate: BirthDate::parse("19800401").unwrap(),
        limit_application_certificate_related_cons_flg: true,
        arbitrary_identifier: Some("PT000123_1".into()),
    }
}

fn expected_request() -> QualificationConfirmationRequest {
    QualificationConfirmationRequest {
        header: RequestHeader {
            qualification_confirmation_date: date!(2024 - 04 - 01),
            medical_institution_code: MedicalInstitutionCode::parse("1310123455").unwrap(),
            arbitrary_file_identifier: Some("202404010001".into()),
        },
        search: expected_search(),
    }
}

fn round_trip_request(r: &QualificationConfirmationRequest) {
    for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
        let bytes = r.to_xml(enc);
        let back = QualificationConfirmationRequest::from_xml(&bytes)
            .unwrap_or_else(|e| panic!("{enc:?}: {e}\n{}", String::from_utf8_lossy(&bytes)));
        assert_eq!(&back, r, "{enc:?}");
    }
}

fn round_trip_result(r: &QualificationConfirmationResult) {
    for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
        let bytes = r.to_xml(enc);
        let back = QualificationConfirmationResult::from_xml(&bytes)
            .unwrap_or_else(|e| panic!("{enc:?}: {e}"));
        assert_eq!(&back, r, "{enc:?}");
    }
}

#[test]
fn request_fixture_parses_and_round_trips() {
    let r = QualificationConfirmationRequest::from_xml(REQUEST.as_bytes()).unwrap();
    assert_eq!(r, expected_request());
    round_trip_request(&r);
}

#[test]
fn request_written_as_expected() {
    let text = String::from_utf8(expected_request().to_xml(XmlEncoding::Utf8)).unwrap();
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<XmlMsg>\n"));
    // 6-digit national health insurance numbers are space-padded to 8 in files.
    assert!(
        text.contains("<InsurerNumber>  138156</InsurerNumber>"),
        "{text}"
    );
    assert!(text.contains("<LimitApplicationCertificateRelatedConsFlg>1<"));
    let sjis = expected_request().to_xml(XmlEncoding::ShiftJis);
    assert!(sjis.starts_with(b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?>"));
}

#[test]
fn request_from_a_typed_query() {
    let q = InsuranceCardQuery::parse(
        "138156",
        "１２－３４",
        "4260",
        "1",
        "19800401",
        date!(2024 - 04 - 01),
    )
    .unwrap();
    let mut search = QualificationConfirmSearchInfo::from_query(&q, true);
    search.arbitrary_identifier = Some("PT000123_1".into());
    assert_eq!(search, expected_search());
}

#[test]
fn zero_padded_insurer_numbers_are_accepted() {
    let zeros = REQUEST.replace("  138156", "00138156");
    let r = QualificationConfirmationRequest::from_xml(zeros.as_bytes()).unwrap();
    assert_eq!(r, expected_request());
}

fn check_result_fixture(r: &QualificationConfirmationResult) {
    let h = &r.header;
    assert_eq!(h.process_execution_time, datetime!(2024-04-01 09:30:15));
    assert_eq!(
        h.reference_classification,
        ReferenceClassification::InsuranceCard
    );
    assert_eq!(h.segment_of_result, SegmentOfResult::Normal);
    assert_eq!(h.character_code_identifier, CharacterCodeIdentifier::Utf8);
    assert_eq!(h.error_code, None);
    let b = &r.body;
    assert_eq!(
        b.processing_result_status,
        Some(ProcessingResultStatus::Normal)
    );
    assert_eq!(b.qualification_validity, Some(QualificationValidity::Valid));
    assert_eq!(b.search_info.as_ref(), Some(&expected_search()));
    assert_eq!(b.results.len(), 1);
    let p = &b.results[0];
    assert_eq!(
        p.insured_card_classification,
        Some(InsuredCardClassification::General)
    );
    assert_eq!(p.insurer_number.as_ref().unwrap().as_str(), "138156");
    assert_eq!(
        p.personal_family_classification,
        Some(PersonalFamilyClassification::Insured)
    );
    assert_eq!(p.name.as_deref(), Some("診療　太郎"));
    assert_eq!(p.name_kana.as_deref(), Some("ｼﾝﾘｮｳ ﾀﾛｳ"));
    assert_eq!(p.name_of_other.as_deref(), Some("髙橋　太郎"));
    assert_eq!(p.address.as_deref(), Some("東京都千代田区霞が関１－２－２"));
    assert_eq!(p.sex1, Some(Sex::Male));
    assert_eq!(p.sex2, None);
    assert_eq!(
        p.disqualification_date, None,
        "empty element reads as absent"
    );
    assert_eq!(p.insured_card_expiration_date, Some(date!(2025 - 07 - 31)));
    assert_eq!(p.insured_partial_contribution_ratio.as_deref(), Some("030"));
    assert_eq!(p.insurer_name.as_deref(), Some("千代田区"));
    let limit = p
        .limit_application_certificate_related_info
        .as_ref()
        .unwrap();
    assert_eq!(limit.classification_flag.as_deref(), Some("A03"));
    assert_eq!(limit.long_term_date, None);
    assert_eq!(p.specific_diseases_certificate_list.len(), 1);
    assert_eq!(
        p.specific_diseases_certificate_related_cons_flg,
        Some(ConsentStatus::Given)
    );
    assert_eq!(
        p.pharmacists_info,
        Some(ConsentGroup {
            cons_flg: ConsentStatus::Given,
            cons_time: Some(datetime!(2024-04-01 09:29:54)),
            available_time: Some(datetime!(2024-04-02 09:29:54)),
        })
    );
    assert_eq!(
        p.diagnosis_info.map(|g| g.cons_flg),
        Some(ConsentStatus::NotGiven)
    );
    assert_eq!(p.reference_number.as_deref(), Some("R202404010001"));
    // Body-level PrescriptionIssueSelect stays at body level.
    assert_eq!(
        b.prescription_issue_select,
        Some(PrescriptionIssueSelect::Electronic)
    );
    assert_eq!(p.prescription_issue_select, None);
}

#[test]
fn result_fixture_parses_and_round_trips() {
    let r = QualificationConfirmationResult::from_xml(RESULT.as_bytes()).unwrap();
    check_result_fixture(&r);
    round_trip_result(&r);
}

#[test]
fn shift_jis_fixture_with_kanji_and_half_width_kana() {
    let bytes = to_shift_jis(RESULT);
    // Really Shift_JIS: 診 is 0x90 0x66, half-width ｼ is the single byte 0xBC.
    assert!(bytes.windows(2).any(|w| w == [0x90, 0x66]));
    assert!(bytes.contains(&0xBC));
    assert!(std::str::from_utf8(&bytes).is_err());
    let r = QualificationConfirmationResult::from_xml(&bytes).unwrap();
    check_result_fixture(&r);
    assert_eq!(
        r,
        QualificationConfirmationResult::from_xml(RESULT.as_bytes()).unwrap()
    );
    let request = QualificationConfirmationRequest::from_xml(&to_shift_jis(REQUEST)).unwrap();
    assert_eq!(request, expected_request());
}

#[test]
fn shift_jis_labels_are_case_insensitive() {
    for label in ["SJIS", "shift_jis", "Windows-31J", "cp932"] {
        let text = RESULT.replacen("encoding=\"UTF-8\"", &format!("encoding=\"{label}\""), 1);
        let bytes = SHIFT_JIS.encode(&text).0.into_owned();
        QualificationConfirmationResult::from_xml(&bytes)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
    }
}

#[test]
fn abnormal_end_result_has_an_empty_body() {
    let r = QualificationConfirmationResult::from_xml(ABNORMAL.as_bytes()).unwrap();
    assert_eq!(r.header.segment_of_result, SegmentOfResult::AbnormalEnd);
    assert_eq!(r.header.error_code.as_deref(), Some("SIM-E0001"));
    assert_eq!(
        r.header.error_message.as_deref(),
        Some("要求ファイルの形式に誤りがあります。")
    );
    assert_eq!(r.body, ResultBody::default());
    round_trip_result(&r);
}

#[test]
fn missing_character_code_identifier_follows_the_file_encoding() {
    let text = RESULT.replace("<CharacterCodeIdentifier>0</CharacterCodeIdentifier>", "");
    let r = QualificationConfirmationResult::from_xml(&to_shift_jis(&text)).unwrap();
    assert_eq!(
        r.header.character_code_identifier,
        CharacterCodeIdentifier::ShiftJis
    );
}

#[test]
fn text_is_escaped_and_restored() {
    let mut r = QualificationConfirmationResult::from_xml(RESULT.as_bytes()).unwrap();
    r.body.results[0].insurer_name = Some("A&B <組合> \"x\" 'y'\r\n😀".into());
    let bytes = r.to_xml(XmlEncoding::Utf8);
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("<InsurerName>A&amp;B &lt;組合&gt; \"x\" 'y'&#13;\n😀</InsurerName>"));
    round_trip_result(&r);
    // Shift_JIS cannot hold the emoji: it is written as a character reference.
    let sjis = r.to_xml(XmlEncoding::ShiftJis);
    assert!(sjis.windows(9).any(|w| w == b"&#128512;"));
}

// --- Every XmlError variant -------------------------------------------------------------------

fn request_err(bytes: &[u8]) -> XmlError {
    QualificationConfirmationRequest::from_xml(bytes).unwrap_err()
}

#[test]
fn error_too_large() {
    let big = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(request_err(&big), XmlError::TooLarge { limit: 1024 * 1024 });
    let small = XmlLimits {
        max_bytes: 100,
        ..XmlLimits::default()
    };
    let e = QualificationConfirmationRequest::from_xml_with_limits(REQUEST.as_bytes(), &small)
        .unwrap_err();
    assert_eq!(e, XmlError::TooLarge { limit: 100 });
    assert!(e.to_string().contains("100 bytes"));
}

#[test]
fn error_too_deep() {
    let deep = format!("<XmlMsg>{}{}</XmlMsg>", "<a>".repeat(40), "</a>".repeat(40));
    assert_eq!(request_err(deep.as_bytes()), XmlError::TooDeep);
}

#[test]
fn error_too_many_elements() {
    let many = format!("<XmlMsg>{}</XmlMsg>", "<a/>".repeat(10_001));
    assert_eq!(request_err(many.as_bytes()), XmlError::TooManyElements);
}

#[test]
fn error_encoding() {
    // A Shift_JIS file whose declaration says UTF-8: the common vendor mistake.
    let wrong = SHIFT_JIS.encode(RESULT).0.into_owned();
    let e = QualificationConfirmationResult::from_xml(&wrong).unwrap_err();
    assert!(
        matches!(&e, XmlError::Encoding(m) if m.contains("may be Shift_JIS")),
        "{e}"
    );
    let euc = REQUEST.replacen("UTF-8", "EUC-JP", 1);
    assert!(matches!(request_err(euc.as_bytes()), XmlError::Encoding(_)));
}

#[test]
fn error_malformed() {
    // Read while the receipt computer was still writing it.
    let cut = REQUEST.replace("</XmlMsg>", "");
    let e = request_err(cut.as_bytes());
    assert!(
        matches!(&e, XmlError::Malformed { detail, .. } if detail.contains("still being written")),
        "{e}"
    );
    let mismatched = REQUEST.replace("</Birthdate>", "</Birth>");
    let e = request_err(mismatched.as_bytes());
    let XmlError::Malformed { position, .. } = e else {
        panic!("{e}")
    };
    assert!(position > 0);
    let in_a_tag = &REQUEST[..REQUEST.len() - 5];
    assert!(matches!(
        request_err(in_a_tag.as_bytes()),
        XmlError::Malformed { .. }
    ));
    let entity = REQUEST.replace("PT000123_1", "&bogus;");
    assert!(matches!(
        request_err(entity.as_bytes()),
        XmlError::Malformed { .. }
    ));
}

#[test]
fn error_doctype_not_allowed() {
    let xxe = REQUEST.replacen(
        "<XmlMsg>",
        "<!DOCTYPE XmlMsg [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<XmlMsg>",
        1,
    );
    assert_eq!(request_err(xxe.as_bytes()), XmlError::DoctypeNotAllowed);
    let bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><XmlMsg>&lol2;</XmlMsg>";
    assert_eq!(request_err(bomb.as_bytes()), XmlError::DoctypeNotAllowed);
}

#[test]
fn error_unexpected_root() {
    let e = request_err(b"<html><body/></html>");
    assert_eq!(
        e,
        XmlError::UnexpectedRoot {
            found: "html".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "the root element is <html>, expected <XmlMsg>"
    );
}

#[test]
fn error_missing_element() {
    let no_number = REQUEST.replace(
        "<InsuredIdentificationNumber>4260</InsuredIdentificationNumber>",
        "",
    );
    assert_eq!(
        request_err(no_number.as_bytes()),
        XmlError::MissingElement {
            path: "XmlMsg/MessageBody/QualificationConfirmSearchInfo/InsuredIdentificationNumber"
                .into()
        }
    );
    // A result file is not a request.
    assert!(matches!(
        request_err(ABNORMAL.as_bytes()),
        XmlError::MissingElement { .. }
    ));
}

#[test]
fn error_invalid_value() {
    let bad_check = REQUEST.replace("  138156", "  138157");
    let e = request_err(bad_check.as_bytes());
    // An identifier names its field and rule (for the clerk, in both languages).
    match e {
        XmlError::InvalidIdentifier { path, error } => {
            assert_eq!(
                path,
                "XmlMsg/MessageBody/QualificationConfirmSearchInfo/InsurerNumber"
            );
            assert_eq!(
                error.problem,
                onshi_domain::ids::Problem::CheckDigit {
                    expected: 6,
                    got: 7
                }
            );
            assert_eq!(error.value, "138157");
            assert!(
                error
                    .message_ja()
                    .contains("保険者番号の検証番号が一致しません")
            );
        }
        other => panic!("{other:?}"),
    }
    let bad_date = REQUEST.replace(
        "<QualificationConfirmationDate>20240401",
        "<QualificationConfirmationDate>20240431",
    );
    assert!(matches!(
        request_err(bad_date.as_bytes()),
        XmlError::InvalidValue { path, .. } if path == "XmlMsg/MessageHeader/QualificationConfirmationDate"
    ));
    // An element twice with different values has no safe reading.
    let twice = REQUEST.replace(
        "<Birthdate>19800401</Birthdate>",
        "<Birthdate>19800401</Birthdate><Birthdate>19800402</Birthdate>",
    );
    assert!(matches!(
        request_err(twice.as_bytes()),
        XmlError::InvalidValue { reason, .. } if reason.contains("more than once")
    ));
    // Identifiers in a result stay strict.
    let bad_insurer = RESULT.replacen(
        "<InsurerNumber>  138156</InsurerNumber>\n        <InsuredCardSymbol>",
        "<InsurerNumber>  138157</InsurerNumber>\n        <InsuredCardSymbol>",
        1,
    );
    assert_ne!(bad_insurer, RESULT);
    assert!(matches!(
        QualificationConfirmationResult::from_xml(bad_insurer.as_bytes()),
        Err(XmlError::InvalidIdentifier { error, .. }) if error.to_string().contains("check digit")
    ));
    // The envelope too: a second MessageHeader, or an unknown SegmentOfResult.
    let two_headers = RESULT.replacen("</MessageHeader>", "</MessageHeader><MessageHeader/>", 1);
    assert!(matches!(
        QualificationConfirmationResult::from_xml(two_headers.as_bytes()),
        Err(XmlError::InvalidValue { path, .. }) if path == "XmlMsg/MessageHeader"
    ));
    let segment = RESULT.replace("<SegmentOfResult>1<", "<SegmentOfResult>7<");
    assert!(matches!(
        QualificationConfirmationResult::from_xml(segment.as_bytes()),
        Err(XmlError::InvalidValue { path, .. }) if path == "XmlMsg/MessageHeader/SegmentOfResult"
    ));
}

// --- Tolerance --------------------------------------------------------------------------------

const PERSON: &str = "XmlMsg/MessageBody/ResultList/ResultOfQualificationConfirmation";

/// The element the result fixture carries on purpose, which no reader knows.
const FIXTURE_UNKNOWN: &str =
    "XmlMsg/MessageBody/ResultList/ResultOfQualificationConfirmation/SomeFutureElement";

/// Reads `text`; the warnings, but the one every variant of the fixture has.
fn tolerated(text: &str) -> (QualificationConfirmationResult, Vec<(String, WarningKind)>) {
    let read = QualificationConfirmationResult::read_xml(text.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let warnings = read
        .warnings
        .into_iter()
        .filter(|w| w.path != FIXTURE_UNKNOWN)
        .map(|w| (w.path, w.kind))
        .collect();
    (read.value, warnings)
}

#[test]
fn the_fixture_reads_with_its_one_unknown_element_warned() {
    let read = QualificationConfirmationResult::read_xml(RESULT.as_bytes()).unwrap();
    assert_eq!(
        read.warnings,
        [ReadWarning {
            path: FIXTURE_UNKNOWN.into(),
            kind: WarningKind::UnknownElement
        }]
    );
}

#[test]
fn unknown_codes_are_read_as_absent_with_a_warning() {
    let (r, warnings) = tolerated(&RESULT.replace("<Sex1>1</Sex1>", "<Sex1>x</Sex1>"));
    assert_eq!(r.body.results[0].sex1, None);
    assert_eq!(
        warnings,
        [(
            format!("{PERSON}/Sex1"),
            WarningKind::UnknownCode {
                code: "x".into(),
                table: "Sex (OQSCD007)"
            }
        )]
    );
    // The warning names the path and the code, never a value of the patient.
    let shown = ReadWarning {
        path: warnings[0].0.clone(),
        kind: warnings[0].1.clone(),
    }
    .to_string();
    assert!(shown.contains("Sex1") && shown.contains("\"x\""), "{shown}");
}

#[test]
fn unreadable_optional_values_are_read_as_absent_with_a_warning() {
    let (r, warnings) = tolerated(&RESULT.replace(">030<", ">30<"));
    assert_eq!(r.body.results[0].insured_partial_contribution_ratio, None);
    assert_eq!(warnings.len(), 1);
    assert_eq!(
        warnings[0].0,
        format!("{PERSON}/InsuredPartialContributionRatio")
    );
    assert!(matches!(warnings[0].1, WarningKind::Unreadable { .. }));

    // "99999999" as an open end date (seen in the field) is not a date: absent, warned.
    let (r, warnings) = tolerated(&RESULT.replace(
        "<InsuredCardExpirationDate>20250731<",
        "<InsuredCardExpirationDate>99999999<",
    ));
    assert_eq!(r.body.results[0].insured_card_expiration_date, None);
    assert_eq!(warnings[0].0, format!("{PERSON}/InsuredCardExpirationDate"));
}

#[test]
fn a_consent_time_without_its_flag_is_no_consent() {
    let no_flag = RESULT.replace("<PharmacistsInfoConsFlg>1</PharmacistsInfoConsFlg>", "");
    let (r, warnings) = tolerated(&no_flag);
    assert_eq!(r.body.results[0].pharmacists_info, None);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].0, format!("{PERSON}/PharmacistsInfoConsFlg"));
}

#[test]
fn unknown_elements_are_ignored_with_a_warning() {
    let text = RESULT
        .replace(
            "<InsurerName>",
            "<FutureElement><Inner>個人情報</Inner></FutureElement><InsurerName>",
        )
        .replace(
            "</MessageHeader>",
            "<NewHeaderPart>1</NewHeaderPart></MessageHeader>",
        );
    let (r, warnings) = tolerated(&text);
    assert_eq!(
        r,
        QualificationConfirmationResult::from_xml(RESULT.as_bytes()).unwrap()
    );
    assert_eq!(
        warnings,
        [
            (
                "XmlMsg/MessageHeader/NewHeaderPart".to_string(),
                WarningKind::UnknownElement
            ),
            (
                format!("{PERSON}/FutureElement"),
                WarningKind::UnknownElement
            ),
        ]
    );
}

#[test]
fn equal_repeats_are_read_once_with_a_warning() {
    let text = RESULT.replace(
        "<InsurerName>千代田区</InsurerName>",
        "<InsurerName>千代田区</InsurerName><InsurerName>千代田区</InsurerName>",
    );
    let (r, warnings) = tolerated(&text);
    assert_eq!(r.body.results[0].insurer_name.as_deref(), Some("千代田区"));
    assert_eq!(
        warnings,
        [(
            format!("{PERSON}/InsurerName"),
            WarningKind::Repeated { count: 2 }
        )]
    );
}

#[test]
fn lists_read_nested_repeated_or_flat() {
    let base = QualificationConfirmationResult::from_xml(RESULT.as_bytes()).unwrap();
    let disease = base.body.results[0].specific_diseases_certificate_list[0].clone();
    let text = String::from_utf8(base.to_xml(XmlEncoding::Utf8)).unwrap();
    let start = text.find("<SpecificDiseasesCertificateList>").unwrap();
    let end = text.find("</SpecificDiseasesCertificateList>").unwrap()
        + "</SpecificDiseasesCertificateList>".len();
    let list = &text[start..end];
    let inner = list
        .trim_start_matches("<SpecificDiseasesCertificateList>")
        .trim_end_matches("</SpecificDiseasesCertificateList>");
    let shapes = [
        // The container twice.
        format!("{list}{list}"),
        // Two items in one container.
        format!(
            "<SpecificDiseasesCertificateList>{inner}{inner}</SpecificDiseasesCertificateList>"
        ),
        // Flat: the items directly in the result.
        format!("{inner}{inner}"),
    ];
    for shape in shapes {
        let (r, warnings) = tolerated(&text.replace(list, &shape));
        assert_eq!(warnings, [], "{shape}");
        assert_eq!(
            r.body.results[0].specific_diseases_certificate_list,
            [disease.clone(), disease.clone()],
            "{shape}"
        );
    }
    // Results flat in the body, without ResultList.
    let flat = text
        .replace("<ResultList>", "")
        .replace("</ResultList>", "");
    let (r, warnings) = tolerated(&flat);
    assert_eq!(warnings, []);
    assert_eq!(r, base);
}

// --- Properties -------------------------------------------------------------------------------

fn with_check(body: String) -> String {
    let c = check_digit::compute(&body).unwrap();
    format!("{body}{c}")
}

fn insurer() -> impl Strategy<Value = InsurerNumber> {
    let nhi = (1u8..=47, "[0-9]{3}").prop_map(|(p, r)| with_check(format!("{p:02}{r}")));
    let law = ("0[1-9]|[1-9][0-9]", 1u8..=47, "[0-9]{3}")
        .prop_map(|(l, p, r)| with_check(format!("{l}{p:02}{r}")));
    prop_oneof![nhi, law].prop_map(|s| InsurerNumber::parse(&s).unwrap())
}

fn institution() -> impl Strategy<Value = MedicalInstitutionCode> {
    (1u8..=47, "[1346][0-9]{6}")
        .prop_map(|(p, r)| MedicalInstitutionCode::with_check_digit(&format!("{p:02}{r}")).unwrap())
}

/// Text that Shift_JIS can carry or that becomes a character reference, including markup
/// characters, and never only whitespace.
const TEXT: &str = "[A-Za-z0-9&<>\"'漢字東京都診療太郎髙ｱｲｳｼﾝﾘｮ😀][A-Za-z0-9 　&<>漢字ｱｲｳ-]{0,18}[A-Za-z0-9漢字ｱｲｳ]";

fn card_text() -> impl Strategy<Value = String> {
    "[0-9A-Za-z記号あいう東京-]{1,20}"
}

fn a_date() -> impl Strategy<Value = Date> {
    (0i64..73_000).prop_map(|d| date!(1900 - 01 - 01) + time::Duration::days(d))
}

fn a_time() -> impl Strategy<Value = PrimitiveDateTime> {
    (a_date(), 0u8..24, 0u8..60, 0u8..60)
        .prop_map(|(d, h, m, s)| PrimitiveDateTime::new(d, time::Time::from_hms(h, m, s).unwrap()))
}

fn search_info() -> impl Strategy<Value = QualificationConfirmSearchInfo> {
    (
        insurer(),
        proptest::option::of(card_text()),
        card_text(),
        proptest::option::of(0u8..100),
        a_date(),
        any::<bool>(),
        proptest::option::of(TEXT),
    )
        .prop_map(
            |(ins, sym, num, br, bd, flag, arb)| QualificationConfirmSearchInfo {
                insurer_number: ins,
                insured_card_symbol: sym.map(|s| InsuredCardSymbol::parse(&s).unwrap()),
                insured_identification_number: InsuredIdentificationNumber::parse(&num).unwrap(),
                insured_branch_number: br
                    .map(|b| InsuredBranchNumber::parse(&format!("{b:02}")).unwrap()),
                birthdate: BirthDate::from_date(bd).unwrap(),
                limit_application_certificate_related_cons_flg: flag,
                arbitrary_identifier: arb,
            },
        )
}

fn request() -> impl Strategy<Value = QualificationConfirmationRequest> {
    (
        a_date(),
        institution(),
        proptest::option::of(TEXT),
        search_info(),
    )
        .prop_map(
            |(d, code, file_id, search)| QualificationConfirmationRequest {
                header: RequestHeader {
                    qualification_confirmation_date: d,
                    medical_institution_code: code,
                    arbitrary_file_identifier: file_id,
                },
                search,
            },
        )
}

fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn consent() -> impl Strategy<Value = Option<ConsentGroup>> {
    proptest::option::of(
        (
            pick(ConsentStatus::ALL),
            proptest::option::of(a_time()),
            proptest::option::of(a_time()),
        )
            .prop_map(|(cons_flg, cons_time, available_time)| ConsentGroup {
                cons_flg,
                cons_time,
                available_time,
            }),
    )
}

fn ticket() -> impl Strategy<Value = MedicalTicketInfo> {
    let text = || proptest::option::of(TEXT);
    (
        (
            text(),
            proptest::option::of(a_date()),
            proptest::option::of(a_date()),
        ),
        (text(), text(), text(), text(), text(), text(), text()),
        (text(), text(), text(), text(), text(), text()),
        (text(), text(), text(), text(), text(), text()),
        (text(), text(), text(), text()),
    )
        .prop_map(|(a, b, c, d, e)| MedicalTicketInfo {
            ticket_type: a.0,
            valid_date: a.1,
            expiration_date: a.2,
            issue_number: b.0,
            medical_treatment_month: b.1,
            designated_medical_institution_code: b.2,
            designated_medical_institution_flag: b.3,
            designated_medical_institution_name: b.4,
            prescription_issuer_medical_institution_code: b.5,
            prescription_issuer_medical_institution_name: b.6,
            injury_name1: c.0,
            injury_name2: c.1,
            injury_name3: c.2,
            medical_treatment_type: c.3,
            self_pay_amount: c.4,
            district_contact_name: c.5,
            handling_contact_name: d.0,
            single_or_combined_use: d.1,
            status_of_social_insurance: d.2,
            consistency_flag: d.3,
            status_of_infection: d.4,
            status_of_elderly_medical_care: d.5,
            status_of_prefectural_expenses: e.0,
            remarks1: e.1,
            remarks2: e.2,
            remarks3: e.3,
        })
}

/// A medical-aid block whose ticket count agrees with its tickets (a disagreeing count is
/// read with a warning, tested on its own).
fn medical_aid() -> impl Strategy<Value = Option<MedicalAid>> {
    proptest::option::of(
        (
            proptest::option::of("[0-9]{8}"),
            proptest::option::of("[0-9]{7}"),
            proptest::option::of(TEXT),
            any::<bool>(),
            proptest::collection::vec(ticket(), 1..3),
        )
            .prop_map(|(payer, recipient, office, counted, tickets)| MedicalAid {
                public_expense_number: payer,
                beneficiary_number: recipient,
                welfare_office_name: office,
                number_of_medical_tickets: counted.then_some(tickets.len() as u32),
                medical_tickets: tickets,
            }),
    )
}

fn person() -> impl Strategy<Value = ResultOfQualificationConfirmation> {
    let ids = (
        proptest::option::of(pick(InsuredCardClassification::ALL)),
        proptest::option::of(insurer()),
        proptest::option::of(card_text()),
        proptest::option::of(card_text()),
        proptest::option::of(0u8..100),
        proptest::option::of(pick(PersonalFamilyClassification::ALL)),
        proptest::option::of(a_date()),
    );
    let names = (
        proptest::option::of(TEXT),
        proptest::option::of(TEXT),
        proptest::option::of(TEXT),
        proptest::option::of("[ｱ-ﾝ ]{0,10}[ｱ-ﾝ]"),
        proptest::option::of(pick(Sex::ALL)),
        proptest::option::of(pick(Sex::ALL)),
        proptest::option::of("[0-9]{3}"),
        proptest::option::of(pick(ReasonOfLoss::ALL)),
    );
    let dates = (
        proptest::option::of(a_date()),
        proptest::option::of(a_date()),
        proptest::option::of(a_date()),
        proptest::option::of(a_date()),
        proptest::option::of(a_date()),
        proptest::option::of(a_time()),
        proptest::option::of(pick(PrescriptionIssueSelect::ALL)),
    );
    let consents = (consent(), consent(), consent(), consent(), any::<bool>());
    let more = (
        medical_aid(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(TEXT),
    );
    (ids, names, dates, consents, more).prop_map(|(ids, names, dates, consents, more)| {
        let (medical_aid, changed, tag) = more;
        let (class, ins, sym, num, br, fam, bd) = ids;
        let (name, address, insurer_name, kana, sex1, sex2, ratio, loss) = names;
        let (qd, dqd, issued, valid, expires, cons_time, prescription) = dates;
        let (checkups, pharmacists, diagnosis, operation, extras) = consents;
        ResultOfQualificationConfirmation {
            insured_card_classification: class,
            insurer_number: ins,
            insured_card_symbol: sym.map(|s| InsuredCardSymbol::parse(&s).unwrap()),
            insured_identification_number: num
                .map(|s| InsuredIdentificationNumber::parse(&s).unwrap()),
            insured_branch_number: br
                .map(|b| InsuredBranchNumber::parse(&format!("{b:02}")).unwrap()),
            personal_family_classification: fam,
            insured_name: name.clone(),
            name,
            name_kana: kana,
            sex1,
            sex2,
            birthdate: bd.map(|d| BirthDate::from_date(d).unwrap()),
            address,
            post_number: extras.then(|| "100-8916".to_owned()),
            qualification_date: qd,
            disqualification_date: dqd,
            insured_certificate_issuance_date: issued,
            insured_card_valid_date: valid,
            insured_card_expiration_date: expires,
            insured_partial_contribution_ratio: ratio,
            reason_of_loss: loss,
            insurer_name,
            elderly_recipient_certificate_info: extras.then(|| ElderlyRecipientCertificateInfo {
                certificate_date: qd,
                valid_start_date: valid,
                valid_end_date: None,
                contribution_ratio: Some("020".into()),
            }),
            limit_application_certificate_related_cons_flg: Some(extras),
            limit_application_certificate_related_cons_time: cons_time,
            limit_application_certificate_related_info: extras.then(|| {
                LimitApplicationCertificateRelatedInfo {
                    classification: Some("01".into()),
                    classification_flag: Some("B04".into()),
                    date: issued,
                    valid_start_date: valid,
                    valid_end_date: expires,
                    long_term_date: None,
                }
            }),
            specific_diseases_certificate_related_cons_flg: checkups.map(|c| c.cons_flg),
            specific_diseases_certificate_related_cons_time: cons_time,
            specific_diseases_certificate_list: if extras {
                vec![SpecificDiseasesCertificateInfo {
                    disease_category: Some("1".into()),
                    certificate_date: issued,
                    valid_start_date: valid,
                    valid_end_date: expires,
                    self_pay: Some("10000".into()),
                }]
            } else {
                Vec::new()
            },
            specific_health_checkups_info: checkups,
            pharmacists_info: pharmacists,
            diagnosis_info: diagnosis,
            operation_info: operation,
            reference_number: extras.then(|| "R1".to_owned()),
            prescription_issue_select: prescription,
            medical_aid,
            limit_application_certificate_changed: changed,
            arbitrary_identifier: tag,
            ..Default::default()
        }
    })
}

fn result() -> impl Strategy<Value = QualificationConfirmationResult> {
    let header = (
        a_time(),
        a_date(),
        institution(),
        proptest::option::of(TEXT),
        pick(ReferenceClassification::ALL),
        pick(SegmentOfResult::ALL),
        proptest::option::of(TEXT),
        pick(CharacterCodeIdentifier::ALL),
    )
        .prop_map(|(t, d, code, file_id, refc, seg, err, cci)| ResultHeader {
            process_execution_time: t,
            qualification_confirmation_date: d,
            medical_institution_code: code,
            arbitrary_file_identifier: file_id,
            reference_classification: refc,
            segment_of_result: seg,
            error_code: err.clone(),
            error_message: err,
            character_code_identifier: cci,
        });
    let body = (
        proptest::option::of(pick(ProcessingResultStatus::ALL)),
        proptest::option::of(TEXT),
        proptest::option::of(pick(QualificationValidity::ALL)),
        proptest::option::of(search_info()),
        proptest::option::of(pick(PrescriptionIssueSelect::ALL)),
        proptest::collection::vec(person(), 0..3),
    )
        .prop_map(
            |(status, message, validity, search, prescription, results)| ResultBody {
                processing_result_status: status,
                processing_result_code: message.clone(),
                processing_result_message: message,
                qualification_validity: validity,
                search_info: search,
                prescription_issue_select: prescription,
                results,
            },
        );
    (header, body).prop_map(|(header, body)| QualificationConfirmationResult { header, body })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = QualificationConfirmationRequest::from_xml(&bytes);
        let _ = QualificationConfirmationResult::from_xml(&bytes);
    }

    #[test]
    fn damaged_files_never_panic(cut in 0usize..4000, at in 0usize..4000, byte in any::<u8>()) {
        for fixture in [REQUEST.as_bytes().to_vec(), RESULT.as_bytes().to_vec(), to_shift_jis(RESULT)] {
            let mut bytes = fixture;
            let i = at % bytes.len();
            bytes[i] = byte;
            bytes.truncate(cut.max(1).min(bytes.len()));
            if let Err(e) = QualificationConfirmationResult::from_xml(&bytes) {
                let _ = e.to_string();
            }
            let _ = QualificationConfirmationRequest::from_xml(&bytes);
        }
    }

    #[test]
    fn xml_like_text_never_panics(s in "(<[A-Za-z]{1,3}>|</[A-Za-z]{1,3}>|<[A-Za-z]/>|&[a-z#0-9x]{0,5};?|<!\\[CDATA\\[|\\]\\]>|<!--|-->|<\\?xml |<!DOCTYPE|[a-z\"'= ]){0,40}") {
        let _ = QualificationConfirmationRequest::from_xml(s.as_bytes());
        let _ = QualificationConfirmationResult::from_xml(format!("<XmlMsg>{s}</XmlMsg>").as_bytes());
    }

    #[test]
    fn generated_requests_round_trip(r in request()) {
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            let back = QualificationConfirmationRequest::from_xml(&r.to_xml(enc));
            prop_assert_eq!(back.as_ref(), Ok(&r), "{:?}", enc);
        }
    }

    #[test]
    fn generated_results_round_trip(r in result()) {
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            // Read back equal, and with nothing tolerated: the writer writes only what the
            // reader knows, where it expects it.
            let back = QualificationConfirmationResult::read_xml(&r.to_xml(enc));
            prop_assert_eq!(back.as_ref().map(|w| &w.value), Ok(&r), "{:?}", enc);
            prop_assert_eq!(back.map(|w| w.warnings).unwrap_or_default(), vec![]);
        }
    }
}

// --- The medical-aid block ----------------------------------------------------------------------

const AID: &str = "<PublicExpenseNumber>12138019</PublicExpenseNumber>\
    <BeneficiaryNumber>1234567</BeneficiaryNumber>\
    <WelfareOfficeName>中央市福祉事務所</WelfareOfficeName>\
    <NumberOfMedicalTickets>2</NumberOfMedicalTickets>\
    <PublicExpenseResultList><MedicalTicketInfo><TicketType>1</TicketType>\
    <MedicalTicketValidDate>20260401</MedicalTicketValidDate>\
    <MedicalTicketExpirationDate>20260430</MedicalTicketExpirationDate>\
    <StatusOfInfecton>0</StatusOfInfecton><Remarks3>備考</Remarks3>\
    </MedicalTicketInfo></PublicExpenseResultList>";

fn with_aid(aid: &str) -> String {
    RESULT.replace("<InsurerName>", &format!("{aid}<InsurerName>"))
}

#[test]
fn medical_aid_block_is_read_and_its_count_checked() {
    // One ticket, though the file says two: the ticket is kept, the count warned about.
    let (r, warnings) = tolerated(&with_aid(AID));
    let aid = r.body.results[0].medical_aid.as_ref().unwrap();
    assert_eq!(aid.public_expense_number.as_deref(), Some("12138019"));
    assert_eq!(aid.beneficiary_number.as_deref(), Some("1234567"));
    assert_eq!(aid.welfare_office_name.as_deref(), Some("中央市福祉事務所"));
    assert_eq!(aid.number_of_medical_tickets, Some(2));
    let [ticket] = aid.medical_tickets.as_slice() else {
        panic!("one ticket expected");
    };
    assert_eq!(ticket.ticket_type.as_deref(), Some("1"));
    assert_eq!(ticket.valid_date, Some(date!(2026 - 04 - 01)));
    assert_eq!(ticket.expiration_date, Some(date!(2026 - 04 - 30)));
    assert_eq!(ticket.status_of_infection.as_deref(), Some("0"));
    assert_eq!(ticket.remarks3.as_deref(), Some("備考"));
    assert_eq!(
        warnings,
        [(
            format!("{PERSON}/NumberOfMedicalTickets"),
            WarningKind::CountMismatch {
                stated: 2,
                found: 1
            }
        )]
    );
    // Flat tickets (no PublicExpenseResultList) read the same.
    let flat = AID
        .replace("<PublicExpenseResultList>", "")
        .replace("</PublicExpenseResultList>", "")
        .replace(">2</NumberOfMedicalTickets>", ">1</NumberOfMedicalTickets>");
    let (r, warnings) = tolerated(&with_aid(&flat));
    assert_eq!(warnings, []);
    assert_eq!(
        r.body.results[0]
            .medical_aid
            .as_ref()
            .unwrap()
            .medical_tickets
            .len(),
        1
    );
}

#[test]
fn medical_aid_numbers_are_identifiers_and_stay_strict() {
    let bad = with_aid(&AID.replace(">1234567<", ">12345<"));
    assert!(matches!(
        QualificationConfirmationResult::from_xml(bad.as_bytes()),
        Err(XmlError::InvalidValue { path, .. }) if path == format!("{PERSON}/BeneficiaryNumber")
    ));
    let bad = with_aid(&AID.replace(">12138019<", ">1213801X<"));
    assert!(matches!(
        QualificationConfirmationResult::from_xml(bad.as_bytes()),
        Err(XmlError::InvalidValue { path, .. }) if path == format!("{PERSON}/PublicExpenseNumber")
    ));
}

#[test]
fn an_unknown_per_person_status_is_refused() {
    let bad = RESULT.replace("<ProcessingResultStatus>1<", "<ProcessingResultStatus>7<");
    assert!(matches!(
        QualificationConfirmationResult::from_xml(bad.as_bytes()),
        Err(XmlError::InvalidValue { path, .. }) if path == "XmlMsg/MessageBody/ProcessingResultStatus"
    ));
}

/// Fuzz regression (xml_request): a request whose `ArbitraryFileIdentifier` held ¥ came back
/// from a Shift_JIS file with `\` (the encoder wrote 0x5C); 外字 came back as references.
/// Every text survives a Shift_JIS file now.
#[test]
fn yen_overline_and_user_defined_characters_survive_a_shift_jis_file() {
    let mut request = expected_request();
    request.header.arbitrary_file_identifier = Some("ID¥1‾2\\3~4\u{E000}".into());
    let written = request.to_xml(XmlEncoding::ShiftJis);
    assert_eq!(
        QualificationConfirmationRequest::from_xml(&written).unwrap(),
        request,
        "{}",
        String::from_utf8_lossy(&written)
    );
}
