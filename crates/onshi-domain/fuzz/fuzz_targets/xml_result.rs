//! Any bytes given to the eligibility result reader (`OQSsiquc01res`, the answer to a request
//! and the face reader's unasked result alike): no panic, errors render, and whatever reads
//! writes back to a file that reads as the same value.
#![no_main]

#[macro_use]
mod common;

use libfuzzer_sys::fuzz_target;
use onshi_domain::xml::QualificationConfirmationResult;

fuzz_target!(|data: &[u8]| {
    check_round_trip!(QualificationConfirmationResult, data);
});
