//! Any bytes given to the eligibility request reader (`OQSsiquc01req`): no panic, errors render,
//! and whatever reads writes back (UTF-8 and Shift_JIS) to a file that reads as the same value.
#![no_main]

#[macro_use]
mod common;

use libfuzzer_sys::fuzz_target;
use onshi_domain::xml::QualificationConfirmationRequest;

fuzz_target!(|data: &[u8]| {
    check_round_trip!(QualificationConfirmationRequest, data);
});
