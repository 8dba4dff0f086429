//! Conformance against `shared/onshi-corpus/`: the eligibility and batch files rebuilt from
//! independent clinic software. Each file is read through the codec and every value written in
//! it is checked; each is written back and must place its elements as the corpus does (the
//! sequence of element paths, values ignored), so a writer that moves an element (say
//! `ReceptionNumber` into the header) fails here.
//!
//! The corpus lives beside the repository (`../../../shared/onshi-corpus` from this crate); a
//! missing corpus fails the tests with the path it looked for, it never skips them.

use std::path::PathBuf;

use onshi_domain::codes::{
    CharacterCodeIdentifier, ConsentStatus, InsuredCardClassification,
    PersonalFamilyClassification, PrescriptionIssueSelect, ProcessingResultStatus,
    QualificationValidity, ReferenceClassification, SegmentOfResult, Sex,
};
use onshi_domain::ids::{
    BirthDate, InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber,
    MedicalInstitutionCode,
};
use onshi_domain::xml::{
    BulkInquiryAccepted, BulkInquiryRequest, BulkResult, BulkResultRequest, ConsentGroup,
    QualificationConfirmSearchInfo, QualificationConfirmationRequest,
    QualificationConfirmationResult, RequestHeader, SpecificDiseasesCertificateInfo, Warned,
    XmlEncoding, element_paths,
};
use time::macros::{date, datetime};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/onshi-corpus")
}

/// The bytes of a corpus file; a missing corpus is a failure that says where it looked.
fn corpus(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "the conformance corpus file {} cannot be read ({e}); the corpus is expected at \
             ../../../shared/onshi-corpus from crates/onshi-domain",
            path.display()
        )
    })
}

/// A value read with no warning: every element of the corpus is one we model.
fn clean<T: std::fmt::Debug>(name: &str, read: Warned<T>) -> T {
    assert!(
        read.warnings.is_empty(),
        "{name}: unexpected warnings {:?}",
        read.warnings
    );
    read.value
}

fn hokkaido() -> MedicalInstitutionCode {
    MedicalInstitutionCode::parse("0110112489").unwrap()
}

fn kyokai_search(limit: bool, tag: Option<&str>) -> QualificationConfirmSearchInfo {
    QualificationConfirmSearchInfo {
        insurer_number: InsurerNumber::parse("01130012").unwrap(),
        insured_card_symbol: Some(InsuredCardSymbol::parse("12345").unwrap()),
        insured_identification_number: InsuredIdentificationNumber::parse("678").unwrap(),
        insured_branch_number: None,
        birthdate: BirthDate::parse("19800101").unwrap(),
        limit_application_certificate_related_cons_flg: limit,
        arbitrary_identifier: tag.map(str::to_owned),
    }
}

/// The writer places the elements as the corpus file does: same paths, same order.
fn same_placement(name: &str, written: &[u8]) {
    let expected = element_paths(&corpus(name)).unwrap();
    let got = element_paths(written).unwrap();
    assert_eq!(
        got,
        expected,
        "{name}: the writer's element placement differs from the corpus\n{}",
        String::from_utf8_lossy(written)
    );
}

// --- Single eligibility -----------------------------------------------------------------------

#[test]
fn single_request_written_by_hand() {
    let name = "OQSsiquc01req_single_quotes.xml";
    let r = clean(
        name,
        QualificationConfirmationRequest::read_xml(&corpus(name)).unwrap(),
    );
    assert_eq!(
        r,
        QualificationConfirmationRequest {
            header: RequestHeader {
                qualification_confirmation_date: date!(2026 - 01 - 15),
                medical_institution_code: hokkaido(),
                arbitrary_file_identifier: Some("clinic_11906".into()),
            },
            // The empty InsuredBranchNumber is absent.
            search: kyokai_search(true, None),
        }
    );
    same_placement(name, &r.to_xml(XmlEncoding::Utf8));
}

#[test]
fn insurance_card_result() {
    let name = "OQSsiquc01res_insurance_card.xml";
    let r = clean(
        name,
        QualificationConfirmationResult::read_xml(&corpus(name)).unwrap(),
    );
    let h = &r.header;
    assert_eq!(h.process_execution_time, datetime!(2026-01-15 09:30:12));
    assert_eq!(h.qualification_confirmation_date, date!(2026 - 01 - 15));
    assert_eq!(h.medical_institution_code, hokkaido());
    assert_eq!(h.arbitrary_file_identifier.as_deref(), Some("clinic_11906"));
    assert_eq!(
        h.reference_classification,
        ReferenceClassification::InsuranceCard
    );
    assert_eq!(h.segment_of_result, SegmentOfResult::Normal);
    assert_eq!(h.error_code, None);
    assert_eq!(h.error_message, None);
    assert_eq!(h.character_code_identifier, CharacterCodeIdentifier::Utf8);

    let b = &r.body;
    assert_eq!(
        b.processing_result_status,
        Some(ProcessingResultStatus::Normal)
    );
    assert_eq!(b.processing_result_code, None);
    assert_eq!(b.qualification_validity, Some(QualificationValidity::Valid));
    assert_eq!(b.search_info, Some(kyokai_search(true, None)));
    assert_eq!(
        b.prescription_issue_select,
        Some(PrescriptionIssueSelect::Electronic)
    );
    let [p] = b.results.as_slice() else {
        panic!("one result expected: {:?}", b.results);
    };
    assert_eq!(
        p.insured_card_classification,
        Some(InsuredCardClassification::General)
    );
    assert_eq!(p.insurer_number.as_ref().unwrap().as_str(), "01130012");
    assert_eq!(p.insured_card_symbol.as_ref().unwrap().as_str(), "12345");
    assert_eq!(
        p.insured_identification_number.as_ref().unwrap().as_str(),
        "678"
    );
    assert_eq!(p.insured_branch_number.as_ref().unwrap().as_str(), "00");
    assert_eq!(
        p.personal_family_classification,
        Some(PersonalFamilyClassification::Insured)
    );
    assert_eq!(p.name.as_deref(), Some("見本\u{3000}花子"));
    assert_eq!(p.name_kana.as_deref(), Some("ﾐﾎﾝ ﾊﾅｺ"));
    assert_eq!(p.sex1, Some(Sex::Female));
    assert_eq!(p.birthdate.as_ref().unwrap().as_str(), "19800101");
    assert_eq!(p.address.as_deref(), Some("北海道札幌市"));
    assert_eq!(p.post_number.as_deref(), Some("060-0001"));
    assert_eq!(p.qualification_date, Some(date!(2019 - 04 - 01)));
    assert_eq!(
        p.insured_certificate_issuance_date,
        Some(date!(2019 - 04 - 01))
    );
    assert_eq!(p.insured_card_valid_date, Some(date!(2019 - 04 - 01)));
    assert_eq!(p.insurer_name.as_deref(), Some("全国健康保険協会東京支部"));
    assert_eq!(p.limit_application_certificate_related_cons_flg, Some(true));
    assert_eq!(
        p.limit_application_certificate_related_cons_time,
        Some(datetime!(2026-01-15 09:30:10))
    );
    let limit = p
        .limit_application_certificate_related_info
        .as_ref()
        .unwrap();
    assert_eq!(limit.classification.as_deref(), Some("01"));
    assert_eq!(limit.classification_flag.as_deref(), Some("A03"));
    assert_eq!(limit.date, None);
    assert_eq!(limit.valid_start_date, Some(date!(2025 - 08 - 01)));
    assert_eq!(limit.valid_end_date, Some(date!(2026 - 07 - 31)));
    assert_eq!(limit.long_term_date, None);
    assert_eq!(
        p.specific_diseases_certificate_related_cons_flg,
        Some(ConsentStatus::Given)
    );
    assert_eq!(
        p.specific_diseases_certificate_related_cons_time,
        Some(datetime!(2026-01-15 09:30:10))
    );
    assert_eq!(
        p.specific_diseases_certificate_list,
        [SpecificDiseasesCertificateInfo {
            disease_category: Some("1".into()),
            certificate_date: None,
            valid_start_date: Some(date!(2025 - 04 - 01)),
            valid_end_date: None,
            self_pay: Some("10000".into()),
        }]
    );
    assert_eq!(p.pharmacists_info, None);
    assert_eq!(p.medical_aid, None);
    assert_eq!(p.limit_application_certificate_changed, None);
    // Nothing else was in the file.
    assert_eq!(p.prescription_issue_select, None);
    assert_eq!(p.reference_number, None);

    same_placement(name, &r.to_xml(XmlEncoding::Utf8));
}

#[test]
fn face_result_in_no_schema_order() {
    let name = "OQSsiquc01res_face_unordered.xml";
    let r = clean(
        name,
        QualificationConfirmationResult::read_xml(&corpus(name)).unwrap(),
    );
    let h = &r.header;
    assert_eq!(h.process_execution_time, datetime!(2026-12-01 09:15:02));
    assert_eq!(h.qualification_confirmation_date, date!(2026 - 12 - 01));
    assert_eq!(h.medical_institution_code, hokkaido());
    assert_eq!(
        h.arbitrary_file_identifier.as_deref(),
        Some("c2FtcGxlLWZhY2U=")
    );
    assert_eq!(
        h.reference_classification,
        ReferenceClassification::MyNumberCard
    );
    assert_eq!(h.segment_of_result, SegmentOfResult::Normal);
    assert_eq!(h.character_code_identifier, CharacterCodeIdentifier::Utf8);
    assert_eq!(
        r.body.processing_result_status,
        Some(ProcessingResultStatus::Normal)
    );
    assert_eq!(
        r.body.qualification_validity,
        Some(QualificationValidity::Valid)
    );
    assert_eq!(r.body.search_info, None);
    let [p] = r.body.results.as_slice() else {
        panic!("one result expected");
    };
    assert_eq!(p.address.as_deref(), Some("東京都"));
    assert_eq!(
        p.personal_family_classification,
        Some(PersonalFamilyClassification::Insured)
    );
    assert_eq!(p.sex1, Some(Sex::Female));
    assert_eq!(p.name.as_deref(), Some("見本\u{3000}花子"));
    assert_eq!(p.name_kana.as_deref(), Some("ﾐﾎﾝ ﾊﾅｺ"));
    // Space-padded 6-digit national health insurance number.
    assert_eq!(p.insurer_number.as_ref().unwrap().as_str(), "138156");
    assert_eq!(p.insured_card_symbol.as_ref().unwrap().as_str(), "56-78");
    assert_eq!(
        p.insured_identification_number.as_ref().unwrap().as_str(),
        "7731"
    );
    assert_eq!(p.insured_branch_number.as_ref().unwrap().as_str(), "01");
    assert_eq!(p.birthdate.as_ref().unwrap().as_str(), "19920714");
    assert_eq!(p.insured_card_valid_date, Some(date!(2019 - 10 - 01)));
    assert_eq!(
        p.insured_certificate_issuance_date,
        Some(date!(2019 - 10 - 01))
    );
    assert_eq!(
        p.insured_card_classification,
        Some(InsuredCardClassification::General)
    );
    assert_eq!(p.insurer_name.as_deref(), Some("東京都"));
    assert_eq!(p.post_number.as_deref(), Some("100-0001"));
    assert_eq!(
        p.limit_application_certificate_related_cons_flg,
        Some(false)
    );
    assert_eq!(
        p.specific_diseases_certificate_related_cons_flg,
        Some(ConsentStatus::NotGiven)
    );
    let given = |t| ConsentGroup {
        cons_flg: ConsentStatus::Given,
        cons_time: Some(datetime!(2026-12-01 09:15:02)),
        available_time: Some(t),
    };
    assert_eq!(
        p.specific_health_checkups_info,
        Some(given(datetime!(2026-12-02 09:15:02)))
    );
    assert_eq!(
        p.pharmacists_info,
        Some(given(datetime!(2026-12-02 09:15:02)))
    );
    assert_eq!(
        p.diagnosis_info,
        Some(ConsentGroup {
            cons_flg: ConsentStatus::NotGiven,
            cons_time: None,
            available_time: None,
        })
    );
    assert_eq!(p.operation_info, None);

    // The terminal writes no schema order; ours does. Same elements, order aside.
    let mut expected = element_paths(&corpus(name)).unwrap();
    let mut got = element_paths(&r.to_xml(XmlEncoding::Utf8)).unwrap();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
}

// --- Batch inquiry ----------------------------------------------------------------------------

#[test]
fn batch_request_in_shift_jis() {
    let name = "OQSmuquc01req_batch.xml";
    let bytes = corpus(name);
    assert!(bytes.starts_with(b"<?xml version=\"1.0\" encoding=\"Shift_JIS\""));
    let rows = clean(name, BulkInquiryRequest::read_xml_rows(&bytes).unwrap());
    let expected_header = RequestHeader {
        qualification_confirmation_date: date!(2026 - 01 - 15),
        medical_institution_code: hokkaido(),
        arbitrary_file_identifier: Some("bulk0001".into()),
    };
    assert_eq!(rows.header, expected_header);
    let second = QualificationConfirmSearchInfo {
        insurer_number: InsurerNumber::parse("138156").unwrap(),
        insured_card_symbol: Some(InsuredCardSymbol::parse("ﾀｲ").unwrap()),
        insured_identification_number: InsuredIdentificationNumber::parse("1234").unwrap(),
        insured_branch_number: None,
        birthdate: BirthDate::parse("19551231").unwrap(),
        limit_application_certificate_related_cons_flg: false,
        arbitrary_identifier: Some("P0002".into()),
    };
    let expected = BulkInquiryRequest {
        header: expected_header,
        searches: vec![kyokai_search(false, Some("P0001")), second],
    };
    let request = BulkInquiryRequest::from_xml(&bytes).unwrap();
    assert_eq!(request, expected);
    assert_eq!(
        rows.rows
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap(),
        expected.searches
    );
    same_placement(name, &request.to_xml(XmlEncoding::ShiftJis));
}

#[test]
fn batch_acceptance_carries_the_reception_number_in_the_body() {
    let name = "OQSmuquc01res_reception.xml";
    let accepted = clean(name, BulkInquiryAccepted::read_xml(&corpus(name)).unwrap());
    assert_eq!(
        accepted,
        BulkInquiryAccepted {
            process_execution_time: datetime!(2026-01-15 09:35:00),
            medical_institution_code: hokkaido(),
            arbitrary_file_identifier: Some("bulk0001".into()),
            reception_number: Some("20260115000000000123".into()),
            reception_date_time: Some(datetime!(2026-01-15 09:35:00)),
            segment_of_result: SegmentOfResult::Normal,
            error_code: None,
            error_message: None,
            character_code_identifier: CharacterCodeIdentifier::Utf8,
        }
    );
    same_placement(name, &accepted.to_xml(XmlEncoding::Utf8));
}

#[test]
fn results_request_carries_the_reception_number_in_the_body() {
    let name = "OQSmuquc02req_fetch.xml";
    let bytes = corpus(name);
    let ask = clean(name, BulkResultRequest::read_xml(&bytes).unwrap());
    assert_eq!(
        ask,
        BulkResultRequest {
            medical_institution_code: hokkaido(),
            reception_number: "20260115000000000123".into(),
            arbitrary_file_identifier: None,
        }
    );
    same_placement(name, &ask.to_xml(XmlEncoding::ShiftJis));
}

#[test]
fn batch_results() {
    let name = "OQSmuquc02res_results.xml";
    let result = clean(name, BulkResult::read_xml(&corpus(name)).unwrap());
    let h = &result.header;
    assert_eq!(h.process_execution_time, datetime!(2026-01-15 09:40:00));
    assert_eq!(
        h.qualification_confirmation_date,
        Some(date!(2026 - 01 - 15))
    );
    assert_eq!(h.medical_institution_code, hokkaido());
    assert_eq!(h.arbitrary_file_identifier.as_deref(), Some("bulk0001"));
    assert_eq!(h.reception_number.as_deref(), Some("20260115000000000123"));
    assert_eq!(h.segment_of_result, SegmentOfResult::Normal);
    assert_eq!(h.number_of_processing_result, Some(1));
    assert_eq!(h.number_of_normal_processing, Some(1));
    assert_eq!(h.number_of_error, Some(0));
    assert_eq!(h.character_code_identifier, CharacterCodeIdentifier::Utf8);
    let [unit] = result.units.as_slice() else {
        panic!("one unit expected");
    };
    assert_eq!(unit.search_info, Some(kyokai_search(false, Some("P0001"))));
    assert_eq!(
        unit.processing_result_status,
        ProcessingResultStatus::Normal
    );
    assert_eq!(unit.processing_result_code, None);
    assert_eq!(
        unit.qualification_validity,
        Some(QualificationValidity::Valid)
    );
    assert_eq!(unit.reference_number.as_deref(), Some("0000123"));
    let [p] = unit.results.as_slice() else {
        panic!("one result expected");
    };
    assert_eq!(
        p.insured_card_classification,
        Some(InsuredCardClassification::General)
    );
    assert_eq!(p.insurer_number.as_ref().unwrap().as_str(), "01130012");
    assert_eq!(p.insured_card_symbol.as_ref().unwrap().as_str(), "12345");
    assert_eq!(
        p.insured_identification_number.as_ref().unwrap().as_str(),
        "678"
    );
    assert_eq!(p.name.as_deref(), Some("見本\u{3000}花子"));
    assert_eq!(p.name_kana.as_deref(), Some("ﾐﾎﾝ ﾊﾅｺ"));
    assert_eq!(p.sex1, Some(Sex::Female));
    assert_eq!(p.birthdate.as_ref().unwrap().as_str(), "19800101");
    assert_eq!(p.insurer_name.as_deref(), Some("全国健康保険協会東京支部"));
    assert_eq!(p.limit_application_certificate_changed, Some(false));
    same_placement(name, &result.to_xml(XmlEncoding::Utf8));
}

/// The batch pair's old header placement, once written by this codec, is still read, with a
/// warning naming where the number belongs.
#[test]
fn reception_numbers_in_the_header_are_read_with_a_warning() {
    let text = String::from_utf8(corpus("OQSmuquc01res_reception.xml")).unwrap();
    let moved = text
        .replace(
            "    <ReceptionNumber>20260115000000000123</ReceptionNumber>\n",
            "",
        )
        .replace(
            "<SegmentOfResult>",
            "<ReceptionNumber>20260115000000000123</ReceptionNumber><SegmentOfResult>",
        );
    let read = BulkInquiryAccepted::read_xml(moved.as_bytes()).unwrap();
    assert_eq!(
        read.value.reception_number.as_deref(),
        Some("20260115000000000123")
    );
    assert_eq!(read.warnings.len(), 1, "{:?}", read.warnings);
    assert_eq!(
        read.warnings[0].path,
        "XmlMsg/MessageHeader/ReceptionNumber"
    );
    // Written back, the number is in the body again.
    same_placement(
        "OQSmuquc01res_reception.xml",
        &read.value.to_xml(XmlEncoding::Utf8),
    );

    let fetch = String::from_utf8_lossy(&corpus("OQSmuquc02req_fetch.xml")).into_owned();
    let old = fetch
        .replace(
            "    <ReceptionNumber>20260115000000000123</ReceptionNumber>\n",
            "",
        )
        .replace(
            "</MessageHeader>",
            "<ReceptionNumber>20260115000000000123</ReceptionNumber></MessageHeader>",
        );
    let read = BulkResultRequest::read_xml(old.as_bytes()).unwrap();
    assert_eq!(read.value.reception_number, "20260115000000000123");
    assert_eq!(read.warnings.len(), 1, "{:?}", read.warnings);
}
