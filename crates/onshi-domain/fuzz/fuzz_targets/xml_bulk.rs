//! Any bytes given to the batch inquiry readers (`OQSmuquc01req`, its acceptance
//! `OQSmuquc01res`, `OQSmuquc02req` and the batch result `OQSmuquc02res`): no panic, errors
//! render, whatever reads writes back to the same value, and the strict batch reader accepts a
//! file exactly when every row of the per-row reader is sound.
#![no_main]

#[macro_use]
mod common;

use libfuzzer_sys::fuzz_target;
use onshi_domain::xml::{
    BulkInquiryAccepted, BulkInquiryRequest, BulkResult, BulkResultRequest, XmlEncoding,
};

fuzz_target!(|data: &[u8]| {
    check_round_trip!(BulkResult, data);
    check_round_trip!(BulkInquiryAccepted, data);
    check_round_trip!(BulkResultRequest, data);
    match BulkInquiryRequest::from_xml_rows(data) {
        Ok(rows) => {
            let strict = BulkInquiryRequest::from_xml(data);
            assert_eq!(strict.is_ok(), rows.rows.iter().all(Result::is_ok));
            for row in rows.rows.iter().filter_map(|r| r.as_ref().err()) {
                let _ = row.to_string();
            }
            if let Ok(request) = strict {
                for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
                    let written = request.to_xml(enc);
                    let again = BulkInquiryRequest::from_xml(&written)
                        .expect("a written batch inquiry must read back");
                    assert_eq!(again, request);
                    assert_eq!(again.to_xml(enc), written, "writing is not stable");
                }
            }
        }
        Err(error) => {
            let _ = error.to_string();
            assert!(BulkInquiryRequest::from_xml(data).is_err());
        }
    }
});
