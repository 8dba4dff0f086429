//! Any bytes given to the request reader: no panic, and whatever parses writes back to the
//! same value in both encodings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onshi_domain::xml::{QualificationConfirmationRequest, XmlEncoding};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = QualificationConfirmationRequest::from_xml(data) {
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            let again = QualificationConfirmationRequest::from_xml(&request.to_xml(enc))
                .expect("a written request must read back");
            assert_eq!(again.header, request.header);
            assert_eq!(again.search.insurer_number, request.search.insurer_number);
        }
    }
});
