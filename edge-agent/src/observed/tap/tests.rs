//! Tap mode against real folders: the test plays the receipt computer and the terminal (writing
//! request and result files), the tap only reads.

use crate::national::test_site::{SITE, SiteFolders};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use onshi_domain::events::{EventBody, FleetEvent, LookupOutcome, LookupSource};
use onshi_domain::site::{SiteCode, TerminalId};
use tokio::sync::Notify;

use super::Tap;
use crate::national::journal::Journal;
use crate::national::settings::{TerminalMode, TerminalSettings};
use crate::outbox::Outbox;
use crate::recorder::Recorder;

fn corpus(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/onshi-corpus")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One agent's folders, kept across its (re)starts.
struct Site {
    folders: SiteFolders,
}

struct Agent {
    outbox: Outbox,
    wake: Arc<Notify>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    tap_health: Arc<crate::national::health::Health>,
}

impl Site {
    fn new() -> Self {
        Self {
            folders: SiteFolders::new(),
        }
    }

    fn oqs(&self) -> PathBuf {
        self.folders.oqs()
    }

    fn settings(&self, timeout_ms: u64) -> TerminalSettings {
        let mut s = TerminalSettings::new(&self.oqs(), Duration::from_millis(timeout_ms));
        s.mode = TerminalMode::Tap;
        s.rescan = Duration::from_millis(100);
        s.settle = Duration::from_millis(20);
        s.incomplete_grace = Duration::from_millis(300);
        s
    }

    /// Starts a tap as a (re)started agent does: recover, then watch.
    async fn start(&self, timeout_ms: u64) -> Agent {
        let data = self.folders.data();
        let outbox = self.folders.outbox(256 * 1024 * 1024);
        let journal = Journal::open(
            &data.join("terminal.sqlite3"),
            outbox.stream_id().0.to_string(),
        )
        .unwrap();
        let wake = Arc::new(Notify::new());
        let recorder = Recorder::new(SiteCode::parse(SITE).unwrap(), outbox.clone(), wake.clone());
        let settings = self.settings(timeout_ms);
        let health = Tap::health_for(&settings);
        let tap = Tap::new(
            &settings,
            journal,
            health.clone(),
            recorder,
            onshi_domain::patient::PatientHashKey::from_hex(&"ab".repeat(32)).unwrap(),
            TerminalId::parse("T01").unwrap(),
        )
        .unwrap();
        tap.recover(&outbox).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tap.run(async move {
            let _ = stopped.await;
        }));
        Agent {
            outbox,
            wake,
            stop,
            task,
            tap_health: health,
        }
    }

    /// Every file under the terminal's folders, by path, with its bytes.
    fn contents(&self) -> BTreeMap<String, Vec<u8>> {
        let mut all = BTreeMap::new();
        for sub in ["req", "res", "face"] {
            for entry in std::fs::read_dir(self.oqs().join(sub)).unwrap() {
                let entry = entry.unwrap();
                all.insert(
                    format!("{sub}/{}", entry.file_name().to_string_lossy()),
                    std::fs::read(entry.path()).unwrap(),
                );
            }
        }
        all
    }

    fn write(&self, sub: &str, name: &str, bytes: &[u8]) {
        // Whole when it appears, as a careful writer does.
        let temp = self.oqs().join(sub).join(format!(".{name}.tmp"));
        std::fs::write(&temp, bytes).unwrap();
        std::fs::rename(&temp, self.oqs().join(sub).join(name)).unwrap();
    }
}

impl Agent {
    async fn events(&self) -> Vec<FleetEvent> {
        let pending = self.outbox.pending(0, 100_000, usize::MAX).await.unwrap();
        pending
            .into_iter()
            .map(|p| FleetEvent::try_from(p.event).unwrap())
            .collect()
    }

    async fn until(&self, what: &str, n: u64) -> Vec<FleetEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let notified = self.wake.notified();
            if self.outbox.status().await.unwrap().last_sequence >= n {
                return self.events().await;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn lookups(events: &[FleetEvent]) -> Vec<&onshi_domain::events::Lookup> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Lookup(l) => Some(l),
            _ => None,
        })
        .collect()
}

/// The corpus result, answering a request of `id`.
fn result_for(id: &str) -> Vec<u8> {
    with_id(corpus("OQSsiquc01res_insurance_card.xml"), id)
}

/// The corpus request (which the corpus result answers), under `id`.
fn request_for(id: &str) -> Vec<u8> {
    with_id(corpus("OQSsiquc01req_single_quotes.xml"), id)
}

fn with_id(bytes: Vec<u8>, id: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("clinic_11906"));
    text.replace("clinic_11906", id).into_bytes()
}

#[tokio::test]
async fn exchanges_are_recorded_once_each_from_what_the_tap_only_read() {
    let site = Site::new();
    let agent = site.start(60_000).await;
    // The receipt computer's request, then (the terminal took it) its result.
    site.write("req", "OQSsiquc01req_202612010001.xml", &request_for("R1"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::remove_file(site.oqs().join("req/OQSsiquc01req_202612010001.xml")).unwrap();
    site.write("res", "OQSsiquc01res_202612010001.xml", &result_for("R1"));
    // A result whose request the tap never saw.
    site.write("res", "OQSsiquc01res_202612010002.xml", &result_for("R2"));
    let events = agent.until("two observed exchanges", 2).await;
    let found = lookups(&events);
    assert_eq!(found.len(), 2);
    for lookup in &found {
        assert_eq!(lookup.source, LookupSource::TerminalTap);
        assert_eq!(lookup.outcome, LookupOutcome::Valid);
        assert!(lookup.patient_ref.is_some());
    }
    // The same patient either way (the result echoes the search).
    assert_eq!(found[0].patient_ref, found[1].patient_ref);
    let before = site.contents();
    agent.stop().await;

    // A restart records nothing again.
    let agent = site.start(60_000).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(agent.events().await.len(), 2);
    assert_eq!(site.contents(), before, "the tap wrote nothing");
    agent.stop().await;
}

#[tokio::test]
async fn an_unanswered_request_is_recorded_after_the_timeout_and_its_late_result_is_not() {
    let site = Site::new();
    let agent = site.start(700).await;
    site.write("req", "OQSsiquc01req_202612010003.xml", &request_for("R3"));
    let events = agent.until("the unanswered request", 1).await;
    let found = lookups(&events);
    assert_eq!(found[0].outcome, LookupOutcome::Unreachable);
    assert!(found[0].latency_ms >= 700, "{found:?}");
    assert!(found[0].patient_ref.is_some());
    assert_eq!(
        agent
            .tap_health
            .assess(std::time::Instant::now())
            .state
            .as_str(),
        "silent"
    );
    // The terminal answers after all: the terminal is back, the exchange is not recorded twice.
    site.write("res", "OQSsiquc01res_202612010003.xml", &result_for("R3"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(agent.events().await.len(), 1);
    assert_eq!(
        agent
            .tap_health
            .assess(std::time::Instant::now())
            .state
            .as_str(),
        "answered"
    );
    agent.stop().await;
}

/// A request seen before a restart is paired with its result after it: the request is kept.
#[tokio::test]
async fn a_request_seen_before_a_restart_is_paired_after_it() {
    let site = Site::new();
    let agent = site.start(60_000).await;
    let request = corpus("YZKsiquc01req_02261201093012340.xml");
    site.write("req", "YZKsiquc01req_02261201093012340.xml", &request);
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.stop().await;
    // While the agent is down the terminal takes the request and answers.
    std::fs::remove_file(site.oqs().join("req/YZKsiquc01req_02261201093012340.xml")).unwrap();
    site.write(
        "res",
        "YZKsiquc01res_02261201093012340.xml",
        &corpus("YZKsiquc01res_drug.xml"),
    );
    let agent = site.start(60_000).await;
    let events = agent.until("the drug view", 1).await;
    let [event] = events.as_slice() else {
        panic!("{events:?}")
    };
    let EventBody::InfoView(view) = &event.body else {
        panic!("{event:?}")
    };
    assert!(view.allowed);
    assert_eq!(view.source, Some(LookupSource::TerminalTap));
    agent.stop().await;
}

/// The terminal takes drug and checkup requests before the tap reads them: each result is
/// recorded from the result alone, once, under a reference of the person it names (the same
/// person in both: the same reference), never the request's card reference; a refusal naming
/// nobody is recorded too.
#[tokio::test]
async fn information_results_whose_request_is_gone_are_recorded_from_the_result() {
    let site = Site::new();
    let agent = site.start(60_000).await;
    // The requests never appear: the terminal took them before the tap looked.
    site.write(
        "res",
        "YZKsiquc01res_02261201093012341.xml",
        &corpus("YZKsiquc01res_drug.xml"),
    );
    site.write(
        "res",
        "TKKsiquc01res_02261201093012342.xml",
        &corpus("TKKsiquc01res_checkup.xml"),
    );
    let events = agent.until("the drug and checkup views", 2).await;
    let views: Vec<&onshi_domain::events::InfoView> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::InfoView(v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(views.len(), 2, "{events:?}");
    let key = onshi_domain::patient::PatientHashKey::from_hex(&"ab".repeat(32)).unwrap();
    let request = onshi_domain::xml::DrugInfoRequest::from_xml(&corpus(
        "YZKsiquc01req_02261201093012340.xml",
    ))
    .unwrap();
    let card = onshi_domain::patient::PatientRef::for_insurance_card(
        &key,
        &request.header.insurer_number,
        request.header.insurance_card_symbol.as_ref(),
        &request.header.insured_person_identification_number,
        request.header.branch_number.as_ref(),
    );
    for view in &views {
        assert_eq!(view.source, Some(LookupSource::TerminalTap));
        assert!(view.allowed, "{view:?}");
        assert_ne!(view.patient_ref, card, "not the card's reference");
    }
    let mut categories: Vec<_> = views.iter().map(|v| v.category).collect();
    categories.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        categories,
        [
            onshi_domain::events::InfoCategory::Checkup,
            onshi_domain::events::InfoCategory::Drug
        ]
    );
    agent.stop().await;
    // A restart records neither again (given the time it takes to record a file, as above).
    let agent = site.start(60_000).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(agent.events().await.len(), 2);
    agent.stop().await;
}

/// Read access is enough: with the folders read-only nothing changes and everything is recorded
/// (as root the mode does not stop writes, so the contents are compared too).
#[cfg(unix)]
#[tokio::test]
async fn read_only_folders_are_enough() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    site.write("req", "OQSsiquc01req_202612010004.xml", &request_for("R4"));
    site.write("res", "OQSsiquc01res_202612010004.xml", &result_for("R4"));
    site.write("req", "OQSsiquc01req_202612010005.xml", &request_for("R5"));
    let before = site.contents();
    for sub in ["req", "res", "face"] {
        let dir = site.oqs().join(sub);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            std::fs::set_permissions(
                entry.unwrap().path(),
                std::fs::Permissions::from_mode(0o444),
            )
            .unwrap();
        }
    }
    let agent = site.start(60_000).await;
    let events = agent.until("the answered exchange", 1).await;
    assert_eq!(lookups(&events)[0].outcome, LookupOutcome::Valid);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(agent.events().await.len(), 1, "R5 waits for its answer");
    assert_eq!(site.contents(), before);
    agent.stop().await;
    for sub in ["req", "res", "face"] {
        std::fs::set_permissions(site.oqs().join(sub), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
}
