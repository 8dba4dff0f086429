//! Any bytes given to the drug and checkup readers (requests and results): no panic, and
//! whatever parses can be written and read again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onshi_domain::xml::{
    CheckupInfoRequest, CheckupInfoResult, DrugInfoRequest, DrugInfoResult, XmlEncoding,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = DrugInfoResult::from_xml(data) {
        let again = DrugInfoResult::from_xml(&r.to_xml(XmlEncoding::Utf8))
            .expect("a written drug result must read back");
        assert_eq!(again, r);
    }
    if let Ok(r) = CheckupInfoResult::from_xml(data) {
        let again = CheckupInfoResult::from_xml(&r.to_xml(XmlEncoding::ShiftJis))
            .expect("a written checkup result must read back");
        assert_eq!(again, r);
    }
    if let Ok(r) = DrugInfoRequest::from_xml(data) {
        assert_eq!(DrugInfoRequest::from_xml(&r.to_xml(XmlEncoding::Utf8)).ok(), Some(r));
    }
    if let Ok(r) = CheckupInfoRequest::from_xml(data) {
        assert_eq!(CheckupInfoRequest::from_xml(&r.to_xml(XmlEncoding::Utf8)).ok(), Some(r));
    }
});
