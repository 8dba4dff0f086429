//! Any bytes given as a PKCS#12 file in the certificate inventory (`format = "p12"`): the
//! certificates or an error, never a panic, and never the password in the error. The seeds are
//! the reader's fixtures (every scheme tools write, made by `scripts/pkcs12-fixtures.sh` when
//! the target runs: they hold keys, so they are not committed).
#![no_main]

use edge_agent::certs::pkcs12::certificates;
use libfuzzer_sys::fuzz_target;

const PASSWORD: &str = "テスト-pass";

fuzz_target!(|data: &[u8]| {
    match certificates(data, PASSWORD) {
        Ok(certificates) => assert!(certificates.iter().all(|der| !der.is_empty())),
        Err(error) => assert!(!error.to_string().contains(PASSWORD)),
    }
});
