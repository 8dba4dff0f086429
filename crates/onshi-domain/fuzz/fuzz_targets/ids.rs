//! Any text given to the identifier parsers (the counter's form fields, the codec's identifier
//! elements, the uplink's site and terminal ids): no panic, errors render in English and
//! Japanese, and every accepted value parses again from its own string to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onshi_domain::ids::{
    BirthDate, InsuranceCardQuery, InsuredBranchNumber, InsuredCardSymbol,
    InsuredIdentificationNumber, InsurerNumber, MedicalInstitutionCode, Prefecture,
};
use onshi_domain::patient::PatientRef;
use onshi_domain::site::{SiteCode, TerminalId};
use time::macros::date;

/// Accepted: the canonical string reads back as the same value. Refused: both messages render.
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

/// As [`round_trip`] for the ids whose errors have one message.
macro_rules! round_trip_en {
    ($t:ty, $s:expr) => {
        match <$t>::parse($s) {
            Ok(v) => assert_eq!(<$t>::parse(v.as_str()).as_ref(), Ok(&v)),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    };
}

const TODAY: time::Date = date!(2024 - 04 - 01);

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
    round_trip!(SiteCode, s);
    round_trip_en!(TerminalId, s);
    round_trip_en!(PatientRef, s);
    match BirthDate::parse_checked(s, TODAY) {
        // A date accepted with today's checks is a date the plain parser accepts too.
        Ok(d) => assert_eq!(BirthDate::parse(d.as_str()).as_ref(), Ok(&d)),
        Err(e) => {
            let _ = (e.to_string(), e.message_ja());
        }
    }
    let fields: Vec<&str> = s.splitn(5, '|').collect();
    if let [insurer, symbol, number, branch, birthdate] = fields[..] {
        match InsuranceCardQuery::parse(insurer, symbol, number, branch, birthdate, TODAY) {
            Ok(query) => {
                // The query's parts are the fields' own canonical values.
                assert_eq!(
                    InsurerNumber::parse(insurer).as_ref(),
                    Ok(&query.insurer_number)
                );
                assert!(BirthDate::parse_checked(birthdate, TODAY).is_ok());
            }
            Err(errors) => {
                assert!(
                    !errors.is_empty(),
                    "a refused query names at least one problem"
                );
                for e in errors {
                    let _ = (e.to_string(), e.message_ja());
                }
            }
        }
    }
});
