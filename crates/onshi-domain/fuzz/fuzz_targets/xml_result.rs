//! Any bytes given to the result reader: no panic, and whatever parses can be written and read
//! again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onshi_domain::xml::{QualificationConfirmationResult, XmlEncoding};

fuzz_target!(|data: &[u8]| {
    if let Ok(result) = QualificationConfirmationResult::from_xml(data) {
        let again = QualificationConfirmationResult::from_xml(&result.to_xml(XmlEncoding::Utf8))
            .expect("a written result must read back");
        assert_eq!(again.header, result.header);
        assert_eq!(again.body.results.len(), result.body.results.len());
    }
});
