//! Any bytes given to the information-view readers, drug (`YZKsiquc01req`/`res`) and checkup
//! (`TKKsiquc01req`/`res`): no panic, errors render, and whatever reads writes back (UTF-8 and
//! Shift_JIS) to a file that reads as the same value.
#![no_main]

#[macro_use]
mod common;

use libfuzzer_sys::fuzz_target;
use onshi_domain::xml::{CheckupInfoRequest, CheckupInfoResult, DrugInfoRequest, DrugInfoResult};

fuzz_target!(|data: &[u8]| {
    check_round_trip!(DrugInfoResult, data);
    check_round_trip!(CheckupInfoResult, data);
    check_round_trip_plain!(DrugInfoRequest, data);
    check_round_trip_plain!(CheckupInfoRequest, data);
});
