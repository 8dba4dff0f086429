//! The conformance suite against the in-process fake readers, with the virtual card's applet as
//! the card. (The same suite runs against pcscd + vpcd in `tests/tests/cards.rs`.)

use std::sync::{Arc, Mutex};

use card_reader::CardReaders;
use card_reader::conformance::{self, Bench, TestCard};
use card_reader::fake::{FakeCard, FakeReaders};
use virtual_card::applet::{Applet, CardSecrets, Kind};
use virtual_card::issue::{CardDir, IssueSpec, cached_key, issue};

struct FakeBench {
    readers: FakeReaders,
    secrets: CardSecrets,
    _dir: tempfile::TempDir,
}

const NAMES: [&str; 2] = ["Fake Reader 00 00", "Fake Reader 00 01"];

impl FakeBench {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = fleet_tls::devpki::init(&dir.path().join("pki"), &Default::default()).unwrap();
        let key = cached_key(&std::env::temp_dir().join("onshi-fleet-test-card-key.pem")).unwrap();
        let spec = IssueSpec {
            pki: pki.root().to_path_buf(),
            holder: 0,
            pin: "1234".into(),
            expired: false,
        };
        let card: CardDir = issue(&dir.path().join("card"), &spec, &key).unwrap();
        Self {
            readers: FakeReaders::new(&NAMES),
            secrets: card.secrets().unwrap(),
            _dir: dir,
        }
    }
}

fn fake_card(applet: Applet, pull_after: Option<usize>) -> FakeCard {
    let atr = applet.atr();
    let applet = Arc::new(Mutex::new(applet));
    let mut count = 0usize;
    FakeCard {
        atr,
        answer: Box::new(move |apdu| {
            count += 1;
            if pull_after.is_some_and(|n| count >= n) {
                return None;
            }
            Some(applet.lock().unwrap().process(apdu))
        }),
    }
}

impl Bench for FakeBench {
    fn readers(&self) -> &dyn CardReaders {
        &self.readers
    }
    fn reader_names(&self) -> [String; 2] {
        NAMES.map(String::from)
    }
    fn insert(&mut self, reader: usize, card: TestCard) {
        let my_number = || Applet::new(Kind::MyNumber(Box::new(self.secrets.clone())), None);
        let card = match card {
            TestCard::MyNumber => fake_card(my_number(), None),
            TestCard::Unknown => fake_card(Applet::new(Kind::Unknown, None), None),
            TestCard::PulledAfter(n) => fake_card(my_number(), Some(n)),
        };
        self.readers.insert(NAMES[reader], card);
    }
    fn remove(&mut self, reader: usize) {
        self.readers.remove(NAMES[reader]);
    }
    fn pin(&self) -> String {
        "1234".into()
    }
    fn certificate(&self) -> Vec<u8> {
        self.secrets.certificate_der.clone()
    }
}

#[test]
fn fake_readers_pass_the_conformance_suite() {
    conformance::run_all(&mut FakeBench::new());
}

#[test]
fn fake_readers_follow_plug_and_service_loss() {
    let readers = FakeReaders::new(&NAMES);
    let mut watch = readers.watch().unwrap();
    let first = watch.next_change(None).unwrap();
    assert!(matches!(first, card_reader::WatchEvent::Changed(ref r) if r.len() == 2));
    readers.unplug(NAMES[1]);
    let after = watch
        .next_change(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    assert!(matches!(after, card_reader::WatchEvent::Changed(ref r) if r.len() == 1));
    readers.set_service_down(true);
    assert_eq!(
        watch.next_change(Some(std::time::Duration::from_secs(5))),
        Err(card_reader::CardError::NoService)
    );
    assert_eq!(
        readers.connect(NAMES[0]).map(|_| ()),
        Err(card_reader::CardError::NoService)
    );
    readers.set_service_down(false);
    readers.plug(NAMES[1]);
    let back = watch
        .next_change(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    assert!(matches!(back, card_reader::WatchEvent::Changed(ref r) if r.len() == 2));
}
