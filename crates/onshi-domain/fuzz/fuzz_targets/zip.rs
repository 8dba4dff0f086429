//! Any bytes given to the zip reader (zipped batch results from the terminal's `res` folder):
//! no panic, errors render, never more than the limit, and what reads is what the CRC says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onshi_domain::zip;

const LIMIT: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    match zip::read_xml_entry(data, LIMIT) {
        Ok((_, contents)) => {
            assert!(contents.len() <= LIMIT);
            // What read is the archive's one entry, written again: it reads back the same.
            let again = zip::single_entry("x.xml", &contents, zip::Method::Deflated);
            assert_eq!(zip::read_xml_entry(&again, LIMIT).unwrap().1, contents);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    let _ = zip::unzipped(data, LIMIT);
});
