//! One conformance suite for every [`CardReaders`] implementation: the in-process fake runs it
//! in this crate's unit tests, pcsc-lite (pcscd + vpcd + the virtual card) in the end-to-end
//! tests (`tests/tests/cards.rs`). A [`Bench`] puts cards on two readers; the suite drives the
//! readers and the JPKI operations and panics with a message on the first difference.

use std::time::{Duration, Instant};

use crate::jpki::{CARD_INFO_AID, JpkiCard, sha256_digest_info};
use crate::{CardError, CardPresence, CardReaders, Pin, ReaderSnapshot, WatchEvent};

/// What to put on a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestCard {
    /// A fresh My Number card (3 PIN tries) whose PIN is [`Bench::pin`].
    MyNumber,
    /// A card without the JPKI application.
    Unknown,
    /// A My Number card that leaves the reader while answering its `n`-th command (1-based).
    PulledAfter(usize),
}

/// Two readers and a way to put cards on them.
pub trait Bench {
    fn readers(&self) -> &dyn CardReaders;
    fn reader_names(&self) -> [String; 2];
    fn insert(&mut self, reader: usize, card: TestCard);
    fn remove(&mut self, reader: usize);
    /// The right PIN of [`TestCard::MyNumber`] cards.
    fn pin(&self) -> String;
    /// The user-authentication certificate (DER) of [`TestCard::MyNumber`] cards.
    fn certificate(&self) -> Vec<u8>;
    /// How long a card change may take to show (pcscd polls serial drivers).
    fn patience(&self) -> Duration {
        Duration::from_secs(10)
    }
}

/// Runs every case in turn; the readers start and end empty.
pub fn run_all(bench: &mut dyn Bench) {
    lists_both_readers_empty(bench);
    sees_cards_come_and_go(bench);
    reads_the_certificate_and_signs_after_the_pin(bench);
    wrong_pin_reports_tries_left_and_right_pin_resets(bench);
    three_wrong_pins_lock_the_card(bench);
    an_unknown_card_is_unsupported(bench);
    a_card_pulled_mid_read_is_removed_and_the_reader_released(bench);
    an_empty_reader_has_no_card(bench);
    cancel_wakes_a_blocked_watch(bench);
}

/// Waits (through a watch, never polling) until the readers satisfy `done`.
pub fn wait_for(
    readers: &dyn CardReaders,
    patience: Duration,
    what: &str,
    done: impl Fn(&[ReaderSnapshot]) -> bool,
) -> Vec<ReaderSnapshot> {
    let deadline = Instant::now() + patience;
    let mut watch = readers.watch().expect("a reader watch");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match watch.next_change(Some(left.max(Duration::from_millis(1)))) {
            Ok(WatchEvent::Changed(now)) if done(&now) => return now,
            Ok(WatchEvent::Changed(_)) => {}
            Ok(WatchEvent::TimedOut) => panic!("gave up after {patience:?} waiting for {what}"),
            Ok(WatchEvent::Cancelled) => panic!("watch cancelled while waiting for {what}"),
            Err(e) => panic!("watch failed while waiting for {what}: {e}"),
        }
        if Instant::now() > deadline {
            panic!("gave up after {patience:?} waiting for {what}");
        }
    }
}

fn card_on(readers: &[ReaderSnapshot], name: &str) -> Option<CardPresence> {
    readers
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.card.clone())
}

fn put(bench: &mut dyn Bench, reader: usize, card: TestCard) -> String {
    let name = bench.reader_names()[reader].clone();
    bench.insert(reader, card);
    let patience = bench.patience();
    wait_for(bench.readers(), patience, "the card on the reader", |r| {
        matches!(card_on(r, &name), Some(CardPresence::Present { .. }))
    });
    name
}

fn take(bench: &mut dyn Bench, reader: usize) {
    let name = bench.reader_names()[reader].clone();
    bench.remove(reader);
    let patience = bench.patience();
    wait_for(bench.readers(), patience, "the reader to be empty", |r| {
        card_on(r, &name) == Some(CardPresence::Empty)
    });
}

fn open(bench: &dyn Bench, name: &str) -> JpkiCard {
    let channel = bench.readers().connect(name).expect("connect to the card");
    JpkiCard::open(channel).expect("the JPKI application selects")
}

fn assert_no_card_info(card: &JpkiCard) {
    for apdu in card.apdu_log() {
        assert!(
            !apdu
                .windows(CARD_INFO_AID.len())
                .any(|w| w == CARD_INFO_AID),
            "the card-info application must never be selected: {apdu:02X?}"
        );
        if apdu.get(1) == Some(&0x20) {
            assert!(apdu.len() <= 4, "VERIFY must be logged without the PIN");
        }
    }
}

pub fn lists_both_readers_empty(bench: &mut dyn Bench) {
    let names = bench.reader_names();
    let readers = bench.readers().readers().expect("list readers");
    for name in &names {
        assert_eq!(
            card_on(&readers, name),
            Some(CardPresence::Empty),
            "{name} listed and empty in {readers:?}"
        );
    }
}

pub fn sees_cards_come_and_go(bench: &mut dyn Bench) {
    let name = put(bench, 0, TestCard::MyNumber);
    let listed = bench.readers().readers().expect("list readers");
    assert!(matches!(
        card_on(&listed, &name),
        Some(CardPresence::Present { .. })
    ));
    take(bench, 0);
}

pub fn reads_the_certificate_and_signs_after_the_pin(bench: &mut dyn Bench) {
    let name = put(bench, 0, TestCard::MyNumber);
    let mut card = open(bench, &name);
    assert_eq!(
        card.read_auth_certificate().expect("certificate"),
        bench.certificate()
    );
    let digest_info = sha256_digest_info(&[0x42; 32]);
    assert_eq!(card.sign(&digest_info), Err(CardError::PinRequired));
    assert_eq!(card.pin_tries_left(), Ok(3));
    let pin = Pin::parse(&bench.pin()).expect("a 4-digit PIN");
    card.verify_pin(&pin).expect("the right PIN");
    let signature = card.sign(&digest_info).expect("signature");
    assert_eq!(signature.len(), 256, "RSA-2048");
    assert_no_card_info(&card);
    drop(card);
    take(bench, 0);
}

fn wrong_pin(bench: &dyn Bench) -> Pin {
    let right: u16 = bench.pin().parse().expect("digits");
    Pin::parse(&format!("{:04}", (right + 1) % 10_000)).expect("4 digits")
}

pub fn wrong_pin_reports_tries_left_and_right_pin_resets(bench: &mut dyn Bench) {
    let name = put(bench, 0, TestCard::MyNumber);
    let mut card = open(bench, &name);
    assert_eq!(
        card.verify_pin(&wrong_pin(bench)),
        Err(CardError::WrongPin { tries_left: 2 })
    );
    assert_eq!(card.pin_tries_left(), Ok(2), "asking does not use a try");
    assert_eq!(card.pin_tries_left(), Ok(2));
    let pin = Pin::parse(&bench.pin()).expect("PIN");
    card.verify_pin(&pin).expect("the right PIN");
    drop(card);
    let mut card = open(bench, &name);
    assert_eq!(
        card.pin_tries_left(),
        Ok(3),
        "a right PIN resets the counter"
    );
    assert_no_card_info(&card);
    drop(card);
    take(bench, 0);
}

pub fn three_wrong_pins_lock_the_card(bench: &mut dyn Bench) {
    let name = put(bench, 0, TestCard::MyNumber);
    let mut card = open(bench, &name);
    let wrong = wrong_pin(bench);
    assert_eq!(
        card.verify_pin(&wrong),
        Err(CardError::WrongPin { tries_left: 2 })
    );
    assert_eq!(
        card.verify_pin(&wrong),
        Err(CardError::WrongPin { tries_left: 1 })
    );
    assert_eq!(card.verify_pin(&wrong), Err(CardError::PinLocked));
    let pin = Pin::parse(&bench.pin()).expect("PIN");
    assert_eq!(card.verify_pin(&pin), Err(CardError::PinLocked));
    assert_eq!(card.pin_tries_left(), Ok(0));
    drop(card);
    take(bench, 0);
}

pub fn an_unknown_card_is_unsupported(bench: &mut dyn Bench) {
    let name = put(bench, 0, TestCard::Unknown);
    let channel = bench.readers().connect(&name).expect("connect");
    assert_eq!(
        JpkiCard::open(channel).map(|_| ()),
        Err(CardError::UnsupportedCard)
    );
    take(bench, 0);
}

pub fn a_card_pulled_mid_read_is_removed_and_the_reader_released(bench: &mut dyn Bench) {
    // SELECT AID, SELECT EF, then the card leaves during the first READ BINARY.
    let name = put(bench, 0, TestCard::PulledAfter(3));
    let mut card = open(bench, &name);
    let started = Instant::now();
    assert_eq!(card.read_auth_certificate(), Err(CardError::CardRemoved));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a pulled card is reported promptly"
    );
    drop(card);
    let patience = bench.patience();
    wait_for(bench.readers(), patience, "the reader to be empty", |r| {
        card_on(r, &name) == Some(CardPresence::Empty)
    });
    // The reader is free again: the next card reads normally.
    let name = put(bench, 0, TestCard::MyNumber);
    let mut card = open(bench, &name);
    assert_eq!(
        card.read_auth_certificate().expect("certificate"),
        bench.certificate()
    );
    drop(card);
    take(bench, 0);
}

pub fn an_empty_reader_has_no_card(bench: &mut dyn Bench) {
    let name = bench.reader_names()[1].clone();
    assert_eq!(
        bench.readers().connect(&name).map(|_| ()),
        Err(CardError::NoCard)
    );
}

pub fn cancel_wakes_a_blocked_watch(bench: &mut dyn Bench) {
    let mut watch = bench.readers().watch().expect("watch");
    assert!(matches!(
        watch.next_change(Some(Duration::from_secs(1))),
        Ok(WatchEvent::Changed(_))
    ));
    let canceller = watch.canceller();
    let waiter = std::thread::spawn(move || watch.next_change(None));
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    canceller.cancel();
    let outcome = waiter.join().expect("the watch thread");
    assert_eq!(outcome, Ok(WatchEvent::Cancelled));
    assert!(started.elapsed() < Duration::from_secs(2));
}
