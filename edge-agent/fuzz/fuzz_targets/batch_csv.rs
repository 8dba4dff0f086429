//! Any bytes given as a batch inquiry CSV (`edge-agent batch`): no panic; a refusal is one of
//! the reader's errors with its Japanese and English message; rows read keep their order and
//! are numbered from 1; and the results file written for them, read as an input file again,
//! gives the same rows in the same encoding (the clerk can feed it back).
#![no_main]

use edge_agent::batch::{RowResult, RowStatus, parse_csv, write_results};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_csv(data) {
        Ok(input) => {
            assert!(!input.rows.is_empty());
            for (i, row) in input.rows.iter().enumerate() {
                assert_eq!(row.line, i as u64 + 1);
            }
            let results: Vec<RowResult> = input
                .rows
                .iter()
                .enumerate()
                .map(|(i, _)| RowResult {
                    status: [RowStatus::Valid, RowStatus::Invalid, RowStatus::Error][i % 3],
                    message: "詳細 / detail".into(),
                })
                .collect();
            let written = write_results(&input, &results);
            let again = match parse_csv(&written) {
                Ok(again) => again,
                Err(error) => panic!(
                    "the results file does not read as an input: {error}\n{}",
                    String::from_utf8_lossy(&written)
                ),
            };
            assert_eq!(again.encoding, input.encoding);
            assert_eq!(again.rows, input.rows);
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains(" / "), "Japanese then English: {message}");
        }
    }
});
