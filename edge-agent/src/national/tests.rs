//! The terminal transport and the face watch against real folders, with an in-test responder
//! playing the terminal software (a task answering request files in a temporary folder).

use crate::national::test_site::{SITE, SiteFolders};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onshi_domain::events::{EventBody, FleetEvent, LookupOutcome, LookupSource};
use onshi_domain::patient::PatientHashKey;
use onshi_domain::site::{SiteCode, TerminalId};
use onshi_domain::xml::QualificationConfirmationRequest;
use tokio::sync::Notify;

use super::journal::Journal;
use super::settings::TerminalSettings;
use super::terminal::{Terminal, result_name};
use super::{National, Recovery, Transport};
use crate::lookup::{Lookups, Provenance};
use crate::observed::face::FaceWatch;
use crate::outbox::Outbox;
use crate::recorder::Recorder;

const FACE: &[u8] = include_bytes!("testdata/OQSsiquc01res_face_unordered.xml");

const REQUEST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<XmlMsg><MessageHeader><QualificationConfirmationDate>20261201</QualificationConfirmationDate><MedicalInstitutionCode>0110112489</MedicalInstitutionCode><ArbitraryFileIdentifier>t-1</ArbitraryFileIdentifier></MessageHeader><MessageBody><QualificationConfirmSearchInfo><InsurerNumber>01130012</InsurerNumber><InsuredCardSymbol>12345</InsuredCardSymbol><InsuredIdentificationNumber>678</InsuredIdentificationNumber><Birthdate>19800101</Birthdate><LimitApplicationCertificateRelatedConsFlg>0</LimitApplicationCertificateRelatedConsFlg></QualificationConfirmSearchInfo></MessageBody></XmlMsg>"#;

/// One agent's folders, kept across its (re)starts.
struct Site {
    folders: SiteFolders,
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
        s.rescan = Duration::from_millis(200);
        s.settle = Duration::from_millis(20);
        s.slow = Duration::from_millis(timeout_ms / 2);
        s
    }

    /// Opens everything as a (re)started agent does.
    fn open(&self, timeout_ms: u64) -> Agent {
        self.open_with_budget(timeout_ms, 256 * 1024 * 1024)
    }

    /// [`Site::open`] with an outbox of `budget_bytes`.
    fn open_with_budget(&self, timeout_ms: u64, budget_bytes: u64) -> Agent {
        let data = self.folders.data();
        let outbox = self.folders.outbox(budget_bytes);
        let journal = Journal::open(
            &data.join("terminal.sqlite3"),
            outbox.stream_id().0.to_string(),
        )
        .unwrap();
        let settings = self.settings(timeout_ms);
        let terminal = Terminal::start(settings.clone(), journal.clone(), None).unwrap();
        let wake = Arc::new(Notify::new());
        let recorder = Recorder::new(SiteCode::parse(SITE).unwrap(), outbox.clone(), wake.clone());
        let lookups = Arc::new(Lookups::new(
            TerminalId::parse("T01").unwrap(),
            National::Terminal(terminal.clone()),
            recorder.clone(),
            key(),
        ));
        let face = FaceWatch::new(
            &settings,
            journal.clone(),
            recorder,
            key(),
            TerminalId::parse("T01").unwrap(),
        );
        Agent {
            outbox,
            terminal,
            lookups,
            face: Some(face),
            wake,
        }
    }
}

fn key() -> PatientHashKey {
    PatientHashKey::from_hex(&"ab".repeat(32)).unwrap()
}

struct Agent {
    outbox: Outbox,
    terminal: Arc<Terminal>,
    lookups: Arc<Lookups>,
    face: Option<FaceWatch>,
    wake: Arc<Notify>,
}

impl Agent {
    /// The terminal's start-up recovery, recording through the agent's own lookups: how many
    /// exchanges it finished.
    async fn recover(&self) -> usize {
        let resume = crate::resume::Resume::new(self.lookups.clone());
        self.terminal.recover(&resume, &self.outbox).await.unwrap()
    }

    async fn events(&self) -> Vec<FleetEvent> {
        let pending = self.outbox.pending(0, 100_000, usize::MAX).await.unwrap();
        pending
            .into_iter()
            .map(|p| FleetEvent::try_from(p.event).unwrap())
            .collect()
    }

    /// Lets work the aborted task had handed to blocking threads finish (as if the process had
    /// died after it), so the next "run" starts from what is on disk.
    async fn quiesce(&self) {
        self.outbox.status().await.unwrap();
        self.terminal.journal().watched_names("face").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.outbox.status().await.unwrap();
    }

    /// Waits (on the recorder's notification) until the outbox holds `n` events.
    async fn until(&self, what: &str, n: u64) -> Vec<FleetEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let notified = self.wake.notified();
            if self.outbox.status().await.unwrap().last_sequence >= n {
                return self.events().await;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
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

fn provenance() -> Provenance {
    Provenance {
        source: LookupSource::Counter,
        batch_id: None,
        terminal: TerminalId::parse("T01").unwrap(),
    }
}

fn request() -> QualificationConfirmationRequest {
    QualificationConfirmationRequest::from_xml(REQUEST.as_bytes()).unwrap()
}

/// What the responder saw.
#[derive(Default)]
struct Seen {
    requests: Vec<String>,
    bad: Vec<String>,
    /// Answers written whole.
    answered: usize,
}

/// Plays the terminal software: answers every `*req_*.xml` in `req` with `answer` under the
/// result name in `res` (written in two halves, `pause` apart, to test the stability check),
/// and takes the request away. Never treats another name as a request.
fn responder(
    oqs: PathBuf,
    answer: Vec<u8>,
    pause: Duration,
) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    responder_echoing(oqs, answer, pause, true)
}

/// [`responder`], echoing the request's `ArbitraryFileIdentifier` in the answer (as the terminal
/// does) or not.
fn responder_echoing(
    oqs: PathBuf,
    answer: Vec<u8>,
    pause: Duration,
    echo: bool,
) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let (req, res) = (oqs.join("req"), oqs.join("res"));
        loop {
            let mut names: Vec<String> = std::fs::read_dir(&req)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                if !(name.contains("req_") && name.ends_with(".xml")) || name.starts_with('.') {
                    continue;
                }
                let bytes = std::fs::read(req.join(&name)).unwrap();
                // Whole when it appears: a temp file is never seen under a request name.
                if QualificationConfirmationRequest::from_xml(&bytes).is_err() {
                    record.lock().unwrap().bad.push(name.clone());
                }
                std::fs::remove_file(req.join(&name)).unwrap();
                record.lock().unwrap().requests.push(name.clone());
                let id = crate::filex::scan_echo(&bytes).arbitrary_file_identifier;
                let answer = match (echo, id) {
                    (true, Some(id)) => String::from_utf8(answer.clone())
                        .unwrap()
                        .replace("c2FtcGxlLWZhY2U=", &id)
                        .into_bytes(),
                    _ => answer.clone(),
                };
                let out = res.join(result_name(&name));
                // Cut inside a tag, so the first half cannot pass for a whole file.
                let half = answer
                    .windows(6)
                    .position(|w| w == b"<Name>")
                    .map_or(answer.len() / 2, |i| i + 3);
                std::fs::write(&out, &answer[..half]).unwrap();
                tokio::time::sleep(pause).await;
                let mut file = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
                std::io::Write::write_all(&mut file, &answer[half..]).unwrap();
                drop(file);
                record.lock().unwrap().answered += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (seen, task)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_lookup_goes_through_the_terminal_folder_once_and_is_recorded() {
    let site = Site::new();
    let agent = site.open(5_000);
    let (seen, task) = responder(site.oqs(), FACE.to_vec(), Duration::from_millis(60));
    let confirmed = agent
        .lookups
        .confirm(&request(), provenance())
        .await
        .unwrap();
    task.abort();
    assert_eq!(confirmed.answer.outcome, LookupOutcome::Valid);
    let raw = String::from_utf8(confirmed.raw_result.clone().unwrap()).unwrap();
    assert!(
        raw.contains("<ArbitraryFileIdentifier>t-1<"),
        "the result echoes the request"
    );
    let (requests, bad) = {
        let seen = seen.lock().unwrap();
        (seen.requests.clone(), seen.bad.clone())
    };
    assert_eq!(requests.len(), 1, "written once");
    assert!(bad.is_empty(), "never seen half-written");
    let name = &requests[0];
    // OQSsiquc01req_<yyyyMMdd><nnnn>_ofa<8 hex>.xml
    let suffix = name
        .strip_prefix("OQSsiquc01req_")
        .and_then(|s| s.strip_suffix(".xml"))
        .unwrap();
    assert_eq!(suffix.len(), 12 + 4 + 8, "{name}");
    assert!(suffix[..12].bytes().all(|b| b.is_ascii_digit()));
    assert!(suffix[12..].starts_with("_ofa"));
    // The result was taken away, nothing is left in the journal, the lookup is recorded once.
    assert!(names_in(&site.oqs().join("res")).is_empty());
    assert!(names_in(&site.oqs().join("req")).is_empty());
    assert!(
        agent
            .terminal
            .journal()
            .open_entries()
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(lookups(&agent.events().await).len(), 1);
    assert_eq!(
        agent
            .terminal
            .health()
            .assess(std::time::Instant::now())
            .state,
        super::health::TerminalState::Answered
    );
}

#[tokio::test]
async fn many_lookups_at_once_each_get_their_own_result() {
    let site = Site::new();
    let agent = site.open(10_000);
    let (seen, task) = responder(site.oqs(), FACE.to_vec(), Duration::ZERO);
    let mut calls = Vec::new();
    for _ in 0..40 {
        let lookups = agent.lookups.clone();
        calls.push(tokio::spawn(async move {
            lookups.confirm(&request(), provenance()).await.unwrap()
        }));
    }
    for call in calls {
        assert_eq!(call.await.unwrap().answer.outcome, LookupOutcome::Valid);
    }
    task.abort();
    let names: HashSet<String> = seen.lock().unwrap().requests.iter().cloned().collect();
    assert_eq!(names.len(), 40);
    assert_eq!(lookups(&agent.events().await).len(), 40);
}

#[tokio::test]
async fn a_silent_terminal_is_unreachable_with_guidance_and_the_request_is_withdrawn() {
    let site = Site::new();
    let agent = site.open(300);
    let confirmed = agent
        .lookups
        .confirm(&request(), provenance())
        .await
        .unwrap();
    assert_eq!(confirmed.answer.outcome, LookupOutcome::Unreachable);
    let message = &confirmed.answer.message;
    assert!(
        message.starts_with("資格確認端末が応答しません"),
        "{message}"
    );
    assert!(
        message.contains("check that the terminal software is running"),
        "{message}"
    );
    // Never answered unrecorded later: the request left the terminal's folder.
    assert!(names_in(&site.oqs().join("req")).is_empty());
    assert!(
        agent
            .terminal
            .journal()
            .open_entries()
            .await
            .unwrap()
            .is_empty()
    );
    let events = agent.events().await;
    assert_eq!(lookups(&events)[0].outcome, LookupOutcome::Unreachable);
    assert_eq!(
        agent
            .terminal
            .health()
            .assess(std::time::Instant::now())
            .state,
        super::health::TerminalState::Silent
    );
    // It recovers when the terminal answers again.
    let (_, task) = responder(site.oqs(), FACE.to_vec(), Duration::ZERO);
    let again = agent
        .lookups
        .confirm(&request(), provenance())
        .await
        .unwrap();
    task.abort();
    assert_eq!(again.answer.outcome, LookupOutcome::Valid);
    assert_eq!(
        agent
            .terminal
            .health()
            .assess(std::time::Instant::now())
            .state,
        super::health::TerminalState::Answered
    );
}

#[tokio::test]
async fn a_result_that_lands_while_the_agent_is_down_is_recorded_once_at_start() {
    let site = Site::new();
    {
        let agent = site.open(30_000);
        let lookups = agent.lookups.clone();
        let call = tokio::spawn(async move { lookups.confirm(&request(), provenance()).await });
        // The request appears; the agent "dies" (the call is dropped mid-wait).
        let req = site.oqs().join("req");
        while names_in(&req).iter().all(|n| n.starts_with('.')) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        call.abort();
        let _ = call.await;
        agent.quiesce().await;
        agent.terminal.stop_watching();
        assert!(lookups_count(&agent).await == 0);
    }
    // The terminal answers while the agent is down.
    let req = site.oqs().join("req");
    let name = names_in(&req).pop().unwrap();
    std::fs::remove_file(req.join(&name)).unwrap();
    std::fs::write(site.oqs().join("res").join(result_name(&name)), FACE).unwrap();
    // Restart: the journal is reopened and the result recorded, once; nothing is written again.
    let agent = site.open(30_000);
    assert_eq!(agent.recover().await, 1);
    let events = agent.events().await;
    assert_eq!(lookups(&events).len(), 1);
    assert_eq!(lookups(&events)[0].outcome, LookupOutcome::Valid);
    assert!(
        names_in(&req).is_empty(),
        "the request is never written twice"
    );
    assert!(names_in(&site.oqs().join("res")).is_empty());
    assert_eq!(agent.recover().await, 0);
    assert_eq!(lookups(&agent.events().await).len(), 1);
}

#[tokio::test]
async fn a_late_result_is_removed_and_never_recorded() {
    let site = Site::new();
    // The terminal takes the request (within the agent's 1 s, even on a loaded machine: a
    // request still in `req` at the timeout is withdrawn and never answered) and finishes its
    // answer 1.5 s later: after the agent gave up, and before the half-written file has been
    // left alone for the 2 s after which the agent removes it anyway.
    let agent = site.open(1_000);
    let (seen, task) = responder(site.oqs(), FACE.to_vec(), Duration::from_millis(1_500));
    let confirmed = agent
        .lookups
        .confirm(&request(), provenance())
        .await
        .unwrap();
    assert_eq!(confirmed.answer.outcome, LookupOutcome::Unreachable);
    let res = site.oqs().join("res");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Wait for the late answer to be complete, then for the agent to take it away.
    while !names_in(&res).is_empty() || seen.lock().unwrap().answered == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the late result stays in res"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    assert_eq!(lookups_count(&agent).await, 1);
}

#[tokio::test]
async fn a_result_that_names_another_request_is_not_taken_for_this_one() {
    let site = Site::new();
    let agent = site.open(5_000);
    let (_, task) = responder_echoing(site.oqs(), FACE.to_vec(), Duration::ZERO, false);
    let confirmed = agent
        .lookups
        .confirm(&request(), provenance())
        .await
        .unwrap();
    task.abort();
    assert_eq!(confirmed.answer.outcome, LookupOutcome::Unreachable);
    assert!(
        confirmed.answer.message.contains("ArbitraryFileIdentifier"),
        "{}",
        confirmed.answer.message
    );
}

async fn lookups_count(agent: &Agent) -> usize {
    lookups(&agent.events().await).len()
}

#[tokio::test]
async fn a_noted_event_is_not_recorded_again_and_an_uncommitted_one_is() {
    let site = Site::new();
    let agent = site.open(30_000);
    let journal = agent.terminal.journal().clone();
    let recovery = Recovery::lookup(&provenance());
    // Recorded and noted, but the agent died before closing the entry.
    let (committed, _) = journal
        .begin(
            "OQSsiquc01",
            REQUEST.as_bytes().to_vec(),
            &recovery,
            "20261201".into(),
            0,
        )
        .await
        .unwrap();
    journal
        .store_result(committed, FACE.to_vec())
        .await
        .unwrap();
    let ticket = super::Ticket::journaled(journal.clone(), committed, None);
    agent
        .lookups
        .record_asked(
            &request(),
            crate::lookup::Asked {
                answer: Ok(super::OnshiAnswer {
                    http_status: 200,
                    body: FACE.to_vec(),
                }),
                latency_ms: 1,
            },
            provenance(),
            move |e| ticket.note(e),
        )
        .await
        .unwrap();
    // Answered, noted with an event that never committed (a sequence the outbox never reached).
    let (rolled_back, _) = journal
        .begin(
            "OQSsiquc01",
            REQUEST.as_bytes().to_vec(),
            &recovery,
            "20261201".into(),
            0,
        )
        .await
        .unwrap();
    journal
        .store_result(rolled_back, FACE.to_vec())
        .await
        .unwrap();
    let mut phantom = agent.events().await.remove(0);
    phantom.sequence = 99;
    journal.note_blocking(rolled_back, &phantom).unwrap();
    assert_eq!(lookups_count(&agent).await, 1);
    agent.recover().await;
    assert_eq!(
        lookups_count(&agent).await,
        2,
        "only the uncommitted one is recorded"
    );
    assert!(journal.open_entries().await.unwrap().is_empty());
}

#[tokio::test]
async fn exchanges_whose_caller_is_gone_are_withdrawn_at_start() {
    let site = Site::new();
    {
        let agent = site.open(30_000);
        let terminal = agent.terminal.clone();
        let call = tokio::spawn(async move {
            terminal
                .exchange_journaled("YZKsiquc01", b"<XmlMsg/>".to_vec(), Recovery::HandOver)
                .await
        });
        let req = site.oqs().join("req");
        while names_in(&req).iter().all(|n| n.starts_with('.')) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        call.abort();
        let _ = call.await;
        agent.quiesce().await;
    }
    let agent = site.open(30_000);
    agent.recover().await;
    assert!(names_in(&site.oqs().join("req")).is_empty());
    assert!(
        agent
            .terminal
            .journal()
            .open_entries()
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(lookups_count(&agent).await, 0);
}

fn corpus(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/onshi-corpus")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("the shared corpus's {name}: {e}"))
}

fn info_views(events: &[FleetEvent]) -> Vec<&onshi_domain::events::InfoView> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::InfoView(v) => Some(v),
            _ => None,
        })
        .collect()
}

/// A drug view the policy allowed: its request went out, the agent died, and the terminal's
/// answer landed in `res` while it was down. At start it is recorded once, as the view the
/// journal kept (staff, role, policy), allowed by the answer; the result is taken away.
#[tokio::test]
async fn a_view_answered_while_the_agent_is_down_is_recorded_once_at_start() {
    let site = Site::new();
    let pending = onshi_domain::events::InfoView {
        patient_ref: onshi_domain::patient::PatientRef::for_insurance_card(
            &key(),
            &onshi_domain::ids::InsurerNumber::parse("01130012").unwrap(),
            None,
            &onshi_domain::ids::InsuredIdentificationNumber::parse("678").unwrap(),
            None,
        ),
        category: onshi_domain::events::InfoCategory::Drug,
        allowed: false,
        refusal_reason: None,
        staff_id: Some("D1".into()),
        staff_role: Some("doctor".into()),
        policy_version: Some("2024-12".into()),
        disaster_window_id: None,
        source: None,
    };
    let name = {
        let agent = site.open(30_000);
        let (_, name) = agent
            .terminal
            .journal()
            .begin(
                "YZKsiquc01",
                corpus("YZKsiquc01req_02261201093012340.xml"),
                &Recovery::View(super::StoredView {
                    terminal: "T01".into(),
                    view: pending.clone(),
                }),
                "20261201".into(),
                0,
            )
            .await
            .unwrap();
        name
    };
    let res = site.oqs().join("res");
    std::fs::write(
        res.join(result_name(&name)),
        corpus("YZKsiquc01res_drug.xml"),
    )
    .unwrap();
    let agent = site.open(30_000);
    assert_eq!(agent.recover().await, 1);
    let events = agent.events().await;
    let views = info_views(&events);
    assert_eq!(views.len(), 1, "{events:?}");
    assert_eq!(
        *views[0],
        onshi_domain::events::InfoView {
            allowed: true,
            ..pending
        }
    );
    assert!(names_in(&res).is_empty(), "the result is taken away");
    assert_eq!(agent.recover().await, 0);
    assert_eq!(info_views(&agent.events().await).len(), 1);
}

/// A national batch whose results were read before the agent died: at start its rows are
/// recorded once each (one transaction, with the batch's id), its entries closed; a second
/// start records nothing.
#[tokio::test]
async fn a_batch_read_before_the_agent_died_is_recorded_once_at_start() {
    let site = Site::new();
    {
        let agent = site.open(30_000);
        let journal = agent.terminal.journal();
        let stored = Recovery::Batch(super::StoredBatch {
            batch_id: "B-1".into(),
            terminal: "T01".into(),
        });
        let (accept, _) = journal
            .begin(
                "OQSmuquc01",
                corpus("OQSmuquc01req_batch.xml"),
                &stored,
                "20261201".into(),
                0,
            )
            .await
            .unwrap();
        journal
            .store_result(accept, corpus("OQSmuquc01res_reception.xml"))
            .await
            .unwrap();
        let (poll, _) = journal
            .begin(
                "OQSmuquc02",
                corpus("OQSmuquc02req_fetch.xml"),
                &stored,
                "20261201".into(),
                0,
            )
            .await
            .unwrap();
        journal
            .store_result(poll, corpus("OQSmuquc02res_results.xml"))
            .await
            .unwrap();
    }
    let agent = site.open(30_000);
    assert_eq!(agent.recover().await, 2);
    let events = agent.until("the batch's two rows", 2).await;
    let rows = lookups(&events);
    assert_eq!(rows.len(), 2, "{events:?}");
    assert!(rows.iter().all(|l| l.batch_id.as_deref() == Some("B-1")));
    assert!(rows.iter().all(|l| l.source == LookupSource::Batch));
    let journal = agent.terminal.journal().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !journal.open_entries().await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch's entries stay open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let agent = site.open(30_000);
    assert_eq!(agent.recover().await, 0);
    assert_eq!(lookups_count(&agent).await, 2, "each row recorded once");
}

#[test]
fn the_corpus_face_result_reads() {
    let result = onshi_domain::xml::QualificationConfirmationResult::from_xml(FACE).unwrap();
    assert_eq!(result.body.results.len(), 1);
    let sjis = shift_jis(FACE);
    onshi_domain::xml::QualificationConfirmationResult::from_xml(&sjis).unwrap();
}

fn shift_jis(utf8: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(utf8)
        .unwrap()
        .replacen("encoding=\"UTF-8\"", "encoding=\"Shift_JIS\"", 1)
        .replacen(
            "<CharacterCodeIdentifier>0<",
            "<CharacterCodeIdentifier>1<",
            1,
        );
    encoding_rs::SHIFT_JIS.encode(&text).0.into_owned()
}

/// Writes face file `i` as the terminal does (whole, under its final name).
fn write_face(dir: &Path, i: usize) {
    let bytes = if i.is_multiple_of(2) {
        FACE.to_vec()
    } else {
        shift_jis(FACE)
    };
    let name = format!("OQSsiquc01res_face_{i:05}_20261201091502.xml");
    let temp = dir.join(format!(".{name}.part"));
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(temp, dir.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_face_results_is_recorded_once_each_across_a_restart() {
    const N: usize = 1_000;
    let site = Site::new();
    let face_dir = site.oqs().join("face");
    for i in 0..N {
        write_face(&face_dir, i);
    }
    let before: Vec<(String, Vec<u8>)> = names_in(&face_dir)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(face_dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect();
    // First run: stopped abruptly (the task dropped mid-step) part-way through the burst.
    {
        let mut agent = site.open(5_000);
        let face = agent.face.take().unwrap();
        face.recover(&agent.outbox).await.unwrap();
        let run = tokio::spawn(face.run(std::future::pending()));
        agent
            .until("a third of the burst", (2 * N / 3) as u64)
            .await;
        run.abort();
        let _ = run.await;
        agent.quiesce().await;
        let recorded = agent.outbox.status().await.unwrap().last_sequence;
        assert!(
            recorded < (2 * N) as u64,
            "stopped part-way ({recorded} events)"
        );
    }
    // Restart: unfinished steps are finished, the rest read; each file recorded once.
    let mut agent = site.open(5_000);
    let face = agent.face.take().unwrap();
    face.recover(&agent.outbox).await.unwrap();
    let run = tokio::spawn(face.run(std::future::pending()));
    let events = agent
        .until("every face result and its consent", (2 * N) as u64)
        .await;
    // Then a little more time: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(600)).await;
    run.abort();
    let events_after = agent.events().await;
    assert_eq!(events_after.len(), events.len(), "nothing recorded twice");
    let looked: Vec<_> = lookups(&events_after);
    assert_eq!(looked.len(), N);
    assert!(looked.iter().all(|l| l.outcome == LookupOutcome::Valid
        && l.route == onshi_domain::events::LookupRoute::MyNumberCard
        && l.identity_verification == onshi_domain::events::IdentityVerification::Face));
    let consents: Vec<_> = events_after
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Consent(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(consents.len(), N);
    assert_eq!(consents[0].drug, onshi_domain::events::ConsentChoice::Given);
    assert_eq!(
        consents[0].checkup,
        onshi_domain::events::ConsentChoice::Given
    );
    // The files are the terminal's: untouched.
    let after: Vec<(String, Vec<u8>)> = names_in(&face_dir)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(face_dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect();
    assert_eq!(before, after);
}

#[tokio::test]
async fn face_rows_of_files_cleared_away_are_forgotten_once_old_enough() {
    let site = Site::new();
    let agent = site.open(5_000);
    let journal = agent.terminal.journal().clone();
    for name in ["gone_old", "kept_old", "gone_new"] {
        journal
            .watched_begin("face", name.into(), 1, Vec::new(), 0)
            .await
            .unwrap();
    }
    // Another watcher's row of the same name is its own.
    journal
        .watched_begin("tap", "gone_old".into(), 1, Vec::new(), 0)
        .await
        .unwrap();
    let present = HashSet::from(["kept_old".to_string()]);
    assert_eq!(journal.watched_prune("face", present, 1).await.unwrap(), 2);
    let left = journal.watched_names("face").await.unwrap();
    assert_eq!(left, HashSet::from(["kept_old".to_string()]));
    assert_eq!(
        journal.watched_names("tap").await.unwrap(),
        HashSet::from(["gone_old".to_string()])
    );
}

/// A journal written before tap mode kept face files in `face_files` with steps: opened now,
/// its rows are watched files that finish as they would have.
#[tokio::test]
async fn a_journal_from_before_tap_mode_keeps_what_its_face_rows_knew() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("terminal.sqlite3");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE face_files (
                 name TEXT PRIMARY KEY, size INTEGER NOT NULL, step INTEGER NOT NULL,
                 consent TEXT, note_sequence INTEGER, note_event_id TEXT, note_stream TEXT,
                 handled_at_ms INTEGER NOT NULL);
             INSERT INTO face_files VALUES ('done', 1, 2, NULL, NULL, NULL, NULL, 5);
             INSERT INTO face_files VALUES ('lookup_in_flight', 1, 0, NULL, 3, 'e', 's', 5);",
        )
        .unwrap();
    }
    let journal = Journal::open(&path, "s".into()).unwrap();
    let names = journal.watched_names("face").await.unwrap();
    assert_eq!(
        names,
        HashSet::from(["done".to_string(), "lookup_in_flight".to_string()])
    );
    let unfinished = journal.watched_unfinished("face").await.unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].name, "lookup_in_flight");
    assert_eq!(unfinished[0].events, vec![None]);
    assert_eq!(unfinished[0].note.as_ref().map(|n| n.sequence), Some(3));
    // Opened again: nothing left to move.
    drop(journal);
    let journal = Journal::open(&path, "s".into()).unwrap();
    assert_eq!(journal.watched_names("face").await.unwrap().len(), 2);
}

/// Terminal mode, issue 14 item 6: the card is the terminal's. A card lookup asked of the agent
/// is refused with the clerk's message before the reader is touched: no APDU reaches the card,
/// so no PIN try is spent and the terminal's software keeps the reader.
#[tokio::test]
async fn a_card_lookup_in_terminal_mode_is_refused_before_the_card_is_touched() {
    use card_reader::fake::{FakeCard, FakeReaders};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let site = Site::new();
    let agent = site.open(2_000);
    let readers = FakeReaders::new(&["Face Reader 00"]);
    let apdus = Arc::new(AtomicUsize::new(0));
    let seen = apdus.clone();
    readers.insert(
        "Face Reader 00",
        FakeCard {
            atr: vec![0x3B, 0xE0, 0x00, 0xFF, 0x81, 0x31, 0xFE, 0x45, 0x14],
            answer: Box::new(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
                Some(vec![0x90, 0x00])
            }),
        },
    );
    let cards = crate::cards::Cards::new(
        toml::from_str("[[readers]]\nname = \"Face Reader 00\"\nface_recognition = true\n")
            .unwrap(),
        Arc::new(readers),
        agent.lookups.recorder().clone(),
        National::Terminal(agent.terminal.clone()),
        key(),
        TerminalId::parse("T01").unwrap(),
    );
    let refused = cards
        .lookup(crate::cards::CardRequest {
            reader: "Face Reader 00".into(),
            pin: Some(card_reader::Pin::parse("1234").unwrap()),
            face_verified: false,
            terminal: None,
            limit_consent: false,
            consent: Vec::new(),
        })
        .await;
    match refused {
        Err(crate::cards::CardRequestError::Invalid(message)) => {
            assert!(message.starts_with("資格確認端末モードでは"), "{message}");
            assert!(message.contains("face-recognition reader"), "{message}");
        }
        other => panic!("{:?}", other.map(|_| "answered")),
    }
    assert_eq!(apdus.load(Ordering::SeqCst), 0, "the card was spoken to");
    assert!(agent.events().await.is_empty(), "nothing is recorded");
}

#[tokio::test]
async fn a_full_outbox_refuses_a_lookup_before_anything_reaches_the_terminal() {
    let site = Site::new();
    // A budget the empty outbox already uses up.
    let agent = site.open_with_budget(5_000, 1);
    let refused = agent.lookups.confirm(&request(), provenance()).await;
    assert!(
        matches!(refused, Err(crate::outbox::OutboxError::Full { .. })),
        "{refused:?}"
    );
    let written: Vec<_> = std::fs::read_dir(site.oqs().join("req")).unwrap().collect();
    assert!(written.is_empty(), "nothing was written for the terminal");
    assert!(
        agent
            .terminal
            .journal()
            .open_entries()
            .await
            .unwrap()
            .is_empty(),
        "nothing was journaled as sent"
    );
}
