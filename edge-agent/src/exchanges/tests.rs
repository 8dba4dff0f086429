//! The receipt computer's exchanges as events, on the corpus files.

use std::path::Path;

use super::*;

fn corpus(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/onshi-corpus")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "the conformance corpus file {} cannot be read: {e}",
            path.display()
        )
    })
}

fn key() -> PatientHashKey {
    PatientHashKey::from_hex(&"cd".repeat(32)).unwrap()
}

fn ctx(key: &PatientHashKey) -> Context<'_> {
    Context {
        patient_key: key,
        source: LookupSource::TerminalTap,
        latency_ms: 12,
        today: time::macros::date!(2026 - 01 - 15),
    }
}

fn answer(bytes: Vec<u8>) -> OnshiAnswer {
    OnshiAnswer {
        http_status: 200,
        body: bytes,
    }
}

fn lookups(events: &[EventBody]) -> Vec<&Lookup> {
    events
        .iter()
        .filter_map(|e| match e {
            EventBody::Lookup(l) => Some(l),
            _ => None,
        })
        .collect()
}

#[test]
fn names_mirror_and_kinds_are_read_from_them() {
    assert_eq!(
        Kind::of_request("OQSsiquc01req_202601150001.xml"),
        Some(Kind::Eligibility)
    );
    assert_eq!(
        Kind::of_request("YZKsiquc01req_02261201093012340.XML"),
        Some(Kind::Drug)
    );
    assert_eq!(
        Kind::of_result("OQSmuquc02res_a.xml"),
        Some(Kind::BatchFetch)
    );
    for not_one in [
        ".OQSsiquc01req_x.xml.tmp",
        "OQSsiquc01req_.xml",
        "OQSsiquc01req_x.xml.tmp",
        "OQSsiimm01req_x.xml",
        "OQSsiquc01res_face_1_20261201091502.xml",
        "ＯＱＳ",
    ] {
        assert_eq!(Kind::of_request(not_one), None, "{not_one}");
        assert_eq!(Kind::of_result(not_one), None, "{not_one}");
    }
    assert_eq!(
        result_name("TKKsiquc01req_0226.xml"),
        "TKKsiquc01res_0226.xml"
    );
    assert_eq!(
        request_name("TKKsiquc01res_0226.xml"),
        "TKKsiquc01req_0226.xml"
    );
}

/// A result whose request the agent never saw is recorded from the result's echo of the
/// search: the same patient as from the request.
#[test]
fn an_eligibility_result_alone_names_the_patient_its_request_named() {
    let key = key();
    let request = corpus("OQSsiquc01req_single_quotes.xml");
    let result = answer(corpus("OQSsiquc01res_insurance_card.xml"));
    let both = events(Kind::Eligibility, Some(&request), Ok(&result), ctx(&key));
    let alone = events(Kind::Eligibility, None, Ok(&result), ctx(&key));
    let (both, alone) = (lookups(&both), lookups(&alone));
    assert_eq!(both.len(), 1);
    assert_eq!(alone.len(), 1);
    assert_eq!(both[0].outcome, LookupOutcome::Valid);
    assert!(both[0].patient_ref.is_some());
    assert_eq!(both[0].patient_ref, alone[0].patient_ref);
    assert_eq!(both[0].source, LookupSource::TerminalTap);
    assert_eq!(both[0].latency_ms, 12);
    // Unanswered: unreachable, the request's patient.
    let silent = OnshiError::TerminalSilent {
        waited: std::time::Duration::from_secs(30),
    };
    let unanswered = events(Kind::Eligibility, Some(&request), Err(&silent), ctx(&key));
    let unanswered = lookups(&unanswered);
    assert_eq!(unanswered[0].outcome, LookupOutcome::Unreachable);
    assert_eq!(unanswered[0].patient_ref, both[0].patient_ref);
}

#[test]
fn a_batch_is_recorded_with_its_results_one_lookup_per_unit() {
    let key = key();
    let submit = corpus("OQSmuquc01req_batch.xml");
    let accepted = answer(corpus("OQSmuquc01res_reception.xml"));
    assert!(events(Kind::BatchSubmit, Some(&submit), Ok(&accepted), ctx(&key)).is_empty());
    let fetch = corpus("OQSmuquc02req_fetch.xml");
    let results = answer(corpus("OQSmuquc02res_results.xml"));
    let recorded = events(Kind::BatchFetch, Some(&fetch), Ok(&results), ctx(&key));
    let recorded = lookups(&recorded);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].outcome, LookupOutcome::Valid);
    assert!(recorded[0].patient_ref.is_some());
    assert_eq!(
        recorded[0].batch_id.as_deref(),
        Some("20260115000000000123")
    );
    // A batch the terminal never answered: each of its rows is unreachable.
    let silent = OnshiError::TerminalSilent {
        waited: std::time::Duration::from_secs(30),
    };
    let rows = BulkInquiryRequest::from_xml(&submit)
        .unwrap()
        .searches
        .len();
    let unanswered = events(Kind::BatchSubmit, Some(&submit), Err(&silent), ctx(&key));
    assert_eq!(unanswered.len(), rows);
    assert!(
        lookups(&unanswered)
            .iter()
            .all(|l| l.outcome == LookupOutcome::Unreachable && l.patient_ref.is_some())
    );
    // Still in progress: nothing yet.
    let mut in_progress = BulkResult::from_xml(&results.body).unwrap();
    in_progress.header.segment_of_result = SegmentOfResult::InProgress;
    in_progress.units.clear();
    in_progress.header.number_of_processing_result = None;
    in_progress.header.number_of_normal_processing = None;
    in_progress.header.number_of_error = None;
    BulkResult::from_xml(&in_progress.to_xml(XmlEncoding::Utf8))
        .expect("an in-progress answer reads");
    let polled = answer(in_progress.to_xml(XmlEncoding::Utf8));
    assert!(events(Kind::BatchFetch, Some(&fetch), Ok(&polled), ctx(&key)).is_empty());
    // An unreadable answer to the fetch: one error without a patient, under its number.
    let broken = answer(b"<XmlMsg><Mess".to_vec());
    let failed = events(Kind::BatchFetch, Some(&fetch), Ok(&broken), ctx(&key));
    let failed = lookups(&failed);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].outcome, LookupOutcome::Error);
    assert_eq!(failed[0].error_code.as_deref(), Some("malformed_response"));
    assert!(failed[0].batch_id.is_some());
}

#[test]
fn drug_and_checkup_exchanges_are_views_without_staff_or_policy() {
    let key = key();
    for (kind, request, result, category) in [
        (
            Kind::Drug,
            "YZKsiquc01req_02261201093012340.xml",
            "YZKsiquc01res_drug.xml",
            InfoCategory::Drug,
        ),
        (
            Kind::Checkup,
            "TKKsiquc01req_02261201093012340.xml",
            "TKKsiquc01res_checkup.xml",
            InfoCategory::Checkup,
        ),
    ] {
        let request = corpus(request);
        let result = answer(corpus(result));
        let recorded = events(kind, Some(&request), Ok(&result), ctx(&key));
        let [EventBody::InfoView(view)] = recorded.as_slice() else {
            panic!("one view: {recorded:?}");
        };
        assert_eq!(view.category, category);
        assert!(view.allowed, "{view:?}");
        assert_eq!(view.source, Some(LookupSource::TerminalTap));
        assert_eq!(view.staff_role, None);
        assert_eq!(view.policy_version, None);
        // Without the request the result alone is recorded, under the person it names: not
        // the card's reference.
        let alone = events(kind, None, Ok(&result), ctx(&key));
        let [EventBody::InfoView(from_result)] = alone.as_slice() else {
            panic!("one view from the result alone: {alone:?}");
        };
        assert!(from_result.allowed, "{from_result:?}");
        assert_eq!(from_result.category, category);
        assert_ne!(from_result.patient_ref, view.patient_ref);
        // A refusal keeps the national code.
        let refused = match kind {
            Kind::Drug => DrugInfoResult::refused(InfoOutcome {
                result_code: onshi_domain::xml::ResultCode::Other("SIM-E0401".into()),
                message_contents: None,
            })
            .to_xml(XmlEncoding::Utf8),
            _ => CheckupInfoResult::refused(InfoOutcome {
                result_code: onshi_domain::xml::ResultCode::Other("SIM-E0401".into()),
                message_contents: None,
            })
            .to_xml(XmlEncoding::Utf8),
        };
        let recorded = events(kind, Some(&request), Ok(&answer(refused)), ctx(&key));
        let [EventBody::InfoView(view)] = recorded.as_slice() else {
            panic!("one view: {recorded:?}");
        };
        assert!(!view.allowed);
        assert_eq!(
            view.refusal_reason.as_deref(),
            Some("national_error:SIM-E0401")
        );
    }
}
