//! A card that answers anything: the JPKI flow (select, read the authentication certificate,
//! PIN status, one VERIFY, sign) given responses taken from the fuzz input. No panic and no
//! endless loop; a certificate read is a whole DER SEQUENCE within the size limit; the
//! card-information application (the My Number) is never selected; VERIFY is sent once per try
//! and logged without the PIN; every error has a clerk's message.
#![no_main]

use card_reader::jpki::{CARD_INFO_AID, JpkiCard, MAX_CERTIFICATE_BYTES, der_total_length};
use card_reader::{CardChannel, CardError, Pin};
use libfuzzer_sys::fuzz_target;

/// Each response is one length byte then that many bytes (fewer at the end of the input);
/// after the input, the card is gone.
#[derive(Debug)]
struct Scripted {
    input: Vec<u8>,
    at: usize,
    sent: Vec<Vec<u8>>,
}

impl Scripted {
    fn answer(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        self.sent.push(apdu.to_vec());
        assert!(self.sent.len() < 10_000, "the card flow does not end");
        let Some(&len) = self.input.get(self.at) else {
            return Err(CardError::CardRemoved);
        };
        let start = self.at + 1;
        let end = (start + usize::from(len)).min(self.input.len());
        self.at = end;
        Ok(self.input[start..end].to_vec())
    }
}

/// The channel the card owns; the script stays readable here to check the raw commands.
#[derive(Debug, Clone)]
struct Shared(std::sync::Arc<std::sync::Mutex<Scripted>>);

impl CardChannel for Shared {
    fn atr(&self) -> &[u8] {
        &[0x3B, 0x00]
    }

    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        self.0.lock().expect("one thread").answer(apdu)
    }
}

fn clerk(result: Result<(), CardError>) {
    if let Err(error) = result {
        let message = error.for_clerk();
        assert!(message.contains(" / "), "Japanese then English: {message}");
    }
}

fuzz_target!(|data: &[u8]| {
    // A DER header alone: an accepted length covers at least the header.
    if let Ok(total) = der_total_length(data) {
        assert!(total >= 2);
    }
    let shared = Shared(std::sync::Arc::new(std::sync::Mutex::new(Scripted {
        input: data.to_vec(),
        at: 0,
        sent: Vec::new(),
    })));
    let pin = Pin::parse("1234").expect("a 4-digit PIN");
    match JpkiCard::open(Box::new(shared.clone())) {
        Ok(mut card) => {
            clerk(card.read_auth_certificate().map(|der| {
                assert!(der.len() <= MAX_CERTIFICATE_BYTES);
                assert_eq!(der_total_length(&der).ok(), Some(der.len()));
            }));
            clerk(card.pin_tries_left().map(|left| assert!(left <= 15)));
            let before = verifies_with_pin(&shared);
            clerk(card.verify_pin(&pin));
            assert!(
                verifies_with_pin(&shared) - before <= 1,
                "a PIN try is never repeated"
            );
            clerk(
                card.sign(&card_reader::jpki::sha256_digest_info(&[7; 32]))
                    .map(|s| {
                        assert!(!s.is_empty());
                    }),
            );
            for logged in card.apdu_log() {
                if logged.get(1) == Some(&0x20) {
                    assert!(logged.len() <= 4, "VERIFY is logged without the PIN");
                }
            }
        }
        Err(error) => clerk(Err(error)),
    }
    let script = shared.0.lock().expect("one thread");
    for apdu in &script.sent {
        assert!(
            !apdu
                .windows(CARD_INFO_AID.len())
                .any(|w| w == CARD_INFO_AID),
            "the card-information application is never selected"
        );
    }
});

fn verifies_with_pin(shared: &Shared) -> usize {
    let script = shared.0.lock().expect("one thread");
    script
        .sent
        .iter()
        .filter(|apdu| apdu.get(1) == Some(&0x20) && apdu.len() > 4)
        .count()
}
