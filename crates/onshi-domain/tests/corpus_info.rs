//! Conformance of the drug (`YZKsiquc01`) and checkup (`TKKsiquc01`) codec with the corpus of
//! real shapes (`shared/onshi-corpus/`, rebuilt from what independent clinic software reads
//! and writes; all four files in Shift_JIS).
//!
//! Each file is read through the codec and every value written in it is asserted; then the
//! codec writes what it read and the element paths (in document order) must be the corpus's:
//! our writer places every element where real software expects it. Reading the corpus gives
//! no warning: every element in it is modelled.

use std::path::PathBuf;

use onshi_domain::xml::{
    CheckupInfoRequest, CheckupInfoResult, DrugInfoRequest, DrugInfoResult, FileCategory,
    ResultCode, XmlEncoding, element_paths,
};
use time::macros::date;

/// The corpus beside the workspace (`../shared/onshi-corpus` from the repository root).
fn corpus(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/onshi-corpus");
    let path = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "the Onshi corpus file {} cannot be read ({e}): this test needs shared/onshi-corpus/ \
             beside the repository checkout",
            path.display()
        )
    })
}

fn declares_shift_jis(bytes: &[u8]) -> bool {
    bytes.starts_with(b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"")
}

/// The element paths of `written` are those of the corpus file `bytes`, in order.
fn same_placement(corpus_bytes: &[u8], written: &[u8], what: &str) {
    let expected = element_paths(corpus_bytes).unwrap();
    let got = element_paths(written).unwrap();
    assert_eq!(
        got,
        expected,
        "{what}: the writer places elements differently from the corpus:\n{}",
        String::from_utf8_lossy(written)
    );
}

#[test]
fn drug_request() {
    let bytes = corpus("YZKsiquc01req_02261201093012340.xml");
    assert!(declares_shift_jis(&bytes));
    let r = DrugInfoRequest::from_xml(&bytes).unwrap();
    assert_eq!(r.header.medical_institution_code.as_str(), "0110112489");
    assert_eq!(r.header.insurer_number.as_str(), "01130012");
    assert_eq!(
        r.header.insurance_card_symbol.as_ref().map(|s| s.as_str()),
        Some("12345")
    );
    assert_eq!(
        r.header.insured_person_identification_number.as_str(),
        "678"
    );
    assert_eq!(
        r.header.branch_number.as_ref().map(|b| b.as_str()),
        Some("00")
    );
    assert_eq!(r.header.arbitrary_file_identifier.as_deref(), Some("12340"));
    assert_eq!(r.start_month.to_string(), "202501");
    assert_eq!(r.end_month.to_string(), "202601");
    assert_eq!(r.file_category, FileCategory::XML);
    assert!(r.file_category.is_xml());
    assert_eq!(r.flags.pr_di_inf_classification.as_deref(), Some("1"));
    assert_eq!(r.flags.medical_treatment_flag.as_deref(), Some("1"));
    for enc in [XmlEncoding::ShiftJis, XmlEncoding::Utf8] {
        same_placement(&bytes, &r.to_xml(enc), "drug request");
    }
    // What real clients send by default, 4, reads too.
    let text = String::from_utf8(r.to_xml(XmlEncoding::Utf8)).unwrap();
    let four = text.replace("<FileCategory>2<", "<FileCategory>4<");
    let four = DrugInfoRequest::from_xml(four.as_bytes()).unwrap();
    assert_eq!(four.file_category, FileCategory::FULL_XML);
    assert!(four.file_category.is_xml());
}

#[test]
fn drug_result() {
    let bytes = corpus("YZKsiquc01res_drug.xml");
    assert!(declares_shift_jis(&bytes));
    let read = DrugInfoResult::read_xml(&bytes).unwrap();
    assert_eq!(read.warnings, [], "every element of the corpus is modelled");
    let r = read.value;
    assert_eq!(r.outcome.result_code, ResultCode::Success);
    assert_eq!(r.outcome.message_contents, None);
    let p = r.patient.as_ref().expect("QuaInf");
    assert_eq!(p.name.as_deref(), Some("見本　花子"));
    assert_eq!(p.kana_name.as_deref(), Some("ﾐﾎﾝ ﾊﾅｺ"));
    assert_eq!(p.birth, Some(date!(1980 - 01 - 01)));
    assert_eq!(p.gender_code.as_deref(), Some("1"));

    assert_eq!(r.months.len(), 1);
    let m = &r.months[0];
    assert_eq!(m.organization.as_deref(), Some("1"));
    assert_eq!(m.institution_code.as_deref(), Some("0110112489"));
    assert_eq!(m.institution_name.as_deref(), Some("愛全病院"));
    assert_eq!(m.month.map(|m| m.to_string()).as_deref(), Some("202512"));
    assert_eq!(m.in_out.as_deref(), Some("1"));
    assert!(m.drugs.is_empty() && m.treatments.is_empty());
    assert_eq!(m.days.len(), 1);
    let d = &m.days[0];
    assert_eq!(d.date, Some(date!(2025 - 12 - 03)));
    assert_eq!(d.prescription_date, None);
    assert_eq!(d.drugs.len(), 1);
    let x = &d.drugs[0];
    assert_eq!(x.drug_code.as_deref(), Some("620000001"));
    assert_eq!(x.drug_name.as_deref(), Some("アムロジピン錠５ｍｇ"));
    assert_eq!(x.ingredient_name.as_deref(), Some("アムロジピンベシル酸塩"));
    assert_eq!(x.quantity.as_deref(), Some("1"));
    assert_eq!(x.unit.as_deref(), Some("錠"));
    assert_eq!(x.usage.as_deref(), Some("１日１回朝食後"));
    assert_eq!(x.special_instruction, None);
    assert_eq!(x.times.as_deref(), Some("28"));
    assert_eq!(x.treatment_class.as_deref(), Some("1"));

    assert_eq!(r.dispensing.len(), 1);
    let c = &r.dispensing[0];
    assert_eq!(c.organization.as_deref(), Some("1"));
    assert_eq!(c.month.map(|m| m.to_string()).as_deref(), Some("202512"));
    assert_eq!(c.institution_code, None);
    assert_eq!(c.days.len(), 1);
    assert_eq!(c.days[0].date, Some(date!(2025 - 12 - 03)));
    assert_eq!(c.days[0].drugs.len(), 1);
    let cx = &c.days[0].drugs[0];
    assert_eq!(cx.drug_name.as_deref(), Some("アムロジピン錠５ｍｇ"));
    assert_eq!(cx.quantity.as_deref(), Some("1"));
    assert_eq!(cx.unit.as_deref(), Some("錠"));
    assert_eq!(cx.times.as_deref(), Some("28"));
    assert_eq!(cx.drug_code, None);
    assert!(r.prescriptions.is_empty());

    for enc in [XmlEncoding::ShiftJis, XmlEncoding::Utf8] {
        same_placement(&bytes, &r.to_xml(enc), "drug result");
    }
}

#[test]
fn checkup_request() {
    let bytes = corpus("TKKsiquc01req_02261201093012340.xml");
    assert!(declares_shift_jis(&bytes));
    let r = CheckupInfoRequest::from_xml(&bytes).unwrap();
    assert_eq!(r.header.medical_institution_code.as_str(), "0110112489");
    assert_eq!(r.header.insurer_number.as_str(), "01130012");
    assert_eq!(
        r.header.insurance_card_symbol.as_ref().map(|s| s.as_str()),
        Some("12345")
    );
    assert_eq!(
        r.header.insured_person_identification_number.as_str(),
        "678"
    );
    assert_eq!(
        r.header.branch_number.as_ref().map(|b| b.as_str()),
        Some("00")
    );
    assert_eq!(r.header.arbitrary_file_identifier.as_deref(), Some("12340"));
    assert_eq!((r.start_month, r.end_month), (None, None));
    assert_eq!(r.file_category, FileCategory::XML);
    assert_eq!(r.flags.pr_di_inf_classification.as_deref(), Some("1"));
    assert_eq!(r.flags.medical_treatment_flag.as_deref(), Some("1"));
    for enc in [XmlEncoding::ShiftJis, XmlEncoding::Utf8] {
        same_placement(&bytes, &r.to_xml(enc), "checkup request");
    }
}

#[test]
fn checkup_result() {
    let bytes = corpus("TKKsiquc01res_checkup.xml");
    assert!(declares_shift_jis(&bytes));
    let read = CheckupInfoResult::read_xml(&bytes).unwrap();
    assert_eq!(read.warnings, [], "every element of the corpus is modelled");
    let r = read.value;
    assert_eq!(r.outcome.result_code, ResultCode::Success);
    assert_eq!(r.outcome.message_contents, None);
    let p = r.patient.as_ref().expect("QualificationsInfo");
    assert_eq!(p.name.as_deref(), Some("見本　花子"));
    assert_eq!(p.kana_name.as_deref(), Some("ﾐﾎﾝ ﾊﾅｺ"));
    assert_eq!(p.birth, Some(date!(1980 - 01 - 01)));
    assert_eq!(p.gender_code.as_deref(), Some("1"));
    assert_eq!(r.checkups.len(), 1);
    let c = &r.checkups[0];
    assert_eq!(c.effective_time.as_deref(), Some("20250610"));
    assert_eq!(c.date(), Some(date!(2025 - 06 - 10)));
    assert_eq!(c.items.len(), 1);
    let i = &c.items[0];
    assert_eq!(i.item_code.as_deref(), Some("9N001000000000001"));
    assert_eq!(i.item_name.as_deref(), Some("身長"));
    assert_eq!(i.data_type.as_deref(), Some("PQ"));
    assert_eq!(i.data_value.as_deref(), Some("170.0"));
    assert_eq!(i.unit.as_deref(), Some("cm"));
    assert_eq!(i.oid.as_deref(), Some("1.2.392.200119.6.1005"));
    assert_eq!(i.data_value_name, None);
    for enc in [XmlEncoding::ShiftJis, XmlEncoding::Utf8] {
        same_placement(&bytes, &r.to_xml(enc), "checkup result");
    }
}

/// A failure's `ResultCode` and `MessageContents` are found wherever they sit, and written
/// first in the header, where the corpus has `ResultCode`.
#[test]
fn failures_are_read_wherever_result_code_sits() {
    let bytes = corpus("YZKsiquc01res_drug.xml");
    let r = DrugInfoResult::from_xml(&bytes).unwrap();
    let refused = DrugInfoResult::refused(onshi_domain::xml::InfoOutcome {
        result_code: ResultCode::Other("2".into()),
        message_contents: Some("同意がありません / no consent".into()),
    });
    let written = refused.to_xml(XmlEncoding::ShiftJis);
    let paths = element_paths(&written).unwrap();
    assert_eq!(paths[2], "XmlMsg/MessageHeader/ResultCode");
    assert_eq!(paths[3], "XmlMsg/MessageHeader/MessageContents");
    let corpus_paths = element_paths(&bytes).unwrap();
    assert_eq!(corpus_paths[2], "XmlMsg/MessageHeader/ResultCode");
    // The same values moved to the body or the root still read.
    let text = String::from_utf8(refused.to_xml(XmlEncoding::Utf8)).unwrap();
    let block = "<ResultCode>2</ResultCode>\n    <MessageContents>同意がありません / no consent</MessageContents>\n";
    assert!(text.contains(block), "{text}");
    for moved in [
        text.replace(block, "")
            .replace("<MessageBody>", &format!("<MessageBody>{block}")),
        text.replace(block, "")
            .replace("</XmlMsg>", &format!("{block}</XmlMsg>")),
    ] {
        let again = DrugInfoResult::from_xml(moved.as_bytes()).unwrap();
        assert_eq!(again.outcome, refused.outcome, "{moved}");
    }
    assert!(r.outcome.result_code.is_success());
}
