//! Any bytes given to the batch inquiry readers (`OQSmuquc01req`, its acceptance,
//! `OQSmuquc02req` and the batch result): no panic, and whatever parses can be written and read
//! again (a batch result read back keeps its header, counts included, and its units).
#![no_main]

use libfuzzer_sys::fuzz_target;
use onshi_domain::xml::{
    BulkInquiryAccepted, BulkInquiryRequest, BulkResult, BulkResultRequest, XmlEncoding,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(result) = BulkResult::from_xml(data) {
        let again = BulkResult::from_xml(&result.to_xml(XmlEncoding::Utf8))
            .expect("a written batch result must read back");
        assert_eq!(again.header, result.header);
        assert_eq!(again.units.len(), result.units.len());
    }
    if let Ok(rows) = BulkInquiryRequest::from_xml_rows(data) {
        let strict = BulkInquiryRequest::from_xml(data);
        assert_eq!(strict.is_ok(), rows.rows.iter().all(Result::is_ok));
        if let Ok(request) = strict {
            let again = BulkInquiryRequest::from_xml(&request.to_xml(XmlEncoding::ShiftJis))
                .expect("a written batch inquiry must read back");
            assert_eq!(again.searches.len(), request.searches.len());
        }
    }
    if let Ok(accepted) = BulkInquiryAccepted::from_xml(data) {
        BulkInquiryAccepted::from_xml(&accepted.to_xml(XmlEncoding::Utf8))
            .expect("a written acceptance must read back");
    }
    if let Ok(ask) = BulkResultRequest::from_xml(data) {
        let again = BulkResultRequest::from_xml(&ask.to_xml(XmlEncoding::Utf8))
            .expect("a written result request must read back");
        assert_eq!(again, ask);
    }
});
