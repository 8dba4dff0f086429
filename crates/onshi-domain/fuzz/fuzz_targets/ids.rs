//! Any text given to the identifier parsers: no panic, messages render, and every accepted
//! value parses again from its own string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onshi_domain::ids::{
    BirthDate, InsuranceCardQuery, InsuredBranchNumber, InsuredCardSymbol,
    InsuredIdentificationNumber, InsurerNumber, MedicalInstitutionCode, Prefecture,
};
use time::macros::date;

macro_rules! round_trip {
    ($t:ty, $s:expr) => {
        match <$t>::parse($s) {
            Ok(v) => assert_eq!(<$t>::parse(v.as_str()).as_ref(), Ok(&v)),
            Err(e) => {
                let _ = (e.to_string(), e.message_ja());
            }
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    round_trip!(Prefecture, s);
    round_trip!(InsurerNumber, s);
    round_trip!(MedicalInstitutionCode, s);
    round_trip!(InsuredCardSymbol, s);
    round_trip!(InsuredIdentificationNumber, s);
    round_trip!(InsuredBranchNumber, s);
    round_trip!(BirthDate, s);
    let fields: Vec<&str> = s.splitn(5, '|').collect();
    if let [insurer, symbol, number, branch, birthdate] = fields[..] {
        let _ = InsuranceCardQuery::parse(
            insurer,
            symbol,
            number,
            branch,
            birthdate,
            date!(2024 - 04 - 01),
        );
    }
});
