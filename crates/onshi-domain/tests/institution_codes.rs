//! Every real institution code of `shared/data/medical-institution-codes.txt` (up to 60 per
//! prefecture, from the national list of August 2025) is accepted, and each one with any other
//! last digit is refused with its prefecture's rule named.

use std::path::PathBuf;

use onshi_domain::ids::{InstitutionCheckRule, MedicalInstitutionCode, Problem};

fn real_codes() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/medical-institution-codes.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the list of real institution codes is needed beside the project at {}: {e}",
            path.display()
        )
    });
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_real_code_is_accepted() {
    let codes = real_codes();
    assert!(codes.len() > 2_000, "only {} codes read", codes.len());
    let refused: Vec<String> = codes
        .iter()
        .filter_map(|c| {
            MedicalInstitutionCode::parse(c)
                .err()
                .map(|e| format!("{c}: {e}"))
        })
        .collect();
    assert!(refused.is_empty(), "real codes refused: {refused:#?}");
}

#[test]
fn the_list_spans_the_country_and_exercises_both_rules() {
    let codes = real_codes();
    let prefectures: std::collections::BTreeSet<&str> = codes.iter().map(|c| &c[..2]).collect();
    // The list has 46 of the 47 prefectures (none from Okinawa, 47).
    assert!(prefectures.len() >= 46, "{prefectures:?}");
    let seven = codes
        .iter()
        .filter(|c| {
            MedicalInstitutionCode::parse(c).unwrap().check_rule()
                == InstitutionCheckRule::SevenDigitCode
        })
        .count();
    assert!(seven >= 4 * 50, "{seven} codes of prefectures 11-14");
}

#[test]
fn a_wrong_last_digit_is_refused_with_the_rule_named() {
    for code in real_codes() {
        let right = code.as_bytes()[9] - b'0';
        for wrong in (0..10u8).filter(|d| *d != right) {
            let typo = format!("{}{wrong}", &code[..9]);
            let e = MedicalInstitutionCode::parse(&typo).unwrap_err();
            assert!(
                matches!(e.problem, Problem::InstitutionCheckDigit { expected, got, .. }
                    if expected == right && got == wrong),
                "{typo}: {:?}",
                e.problem
            );
            let covers = if (11..=14).contains(&code[..2].parse::<u8>().unwrap()) {
                "only the six digits before it"
            } else {
                "all nine digits before it"
            };
            assert!(e.to_string().contains(covers), "{typo}: {e}");
        }
    }
}
