//! The My Number card route through the real stack: pcscd + vpcd + the virtual card + the agent
//! + onshi-sim + central + PostgreSQL. Each test asserts what reached central.
//!
//! These tests share the machine's pcscd and its two vpcd readers: they run one at a time (a
//! file lock in [`Pcsc::acquire`], and a nextest test group of one thread).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use card_reader::CardReaders;
use card_reader::conformance::{self, Bench, TestCard};
use card_reader::pcsc_readers::PcscReaders;
use e2e::pcsc::{
    CardMode, IssuedCard, Pcsc, READERS, VirtualCard, card_key_cache, card_lookup, enable_cards,
    issue_card, readers_of, start_sim_with_cards,
};
use e2e::{
    AgentSite, Pki, Running, SimPerson, TestDb, eventually, https_endpoint, sim_people, site_code,
    start_central,
};
use onshi_domain::ids::{
    InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber,
};
use onshi_domain::patient::{PatientHashKey, PatientRef};
use virtual_card::applet::{Applet, CardSecrets, Kind};
use virtual_card::issue::{IssueSpec, cached_key, issue};

const PIN: &str = "4321";
const WRONG_PIN: &str = "0000";

/// A pharmacy in Osaka.
fn site() -> String {
    site_code("274012345")
}

struct Stack {
    pcsc: Pcsc,
    pki: Pki,
    db: TestDb,
    _central: Running,
    _sim: Running,
    agent_site: AgentSite,
    _agent: Running,
    dir: tempfile::TempDir,
}

/// pcscd (exclusive), PostgreSQL, central, onshi-sim with the card route, and an agent with
/// `[cards]` (`face_readers` are face-recognition readers).
async fn stack(face_readers: &[&str]) -> anyhow::Result<Stack> {
    stack_with(face_readers, "").await
}

/// [`stack`] with `extra` appended to the agent's configuration (e.g. a staff roster).
async fn stack_with(face_readers: &[&str], extra: &str) -> anyhow::Result<Stack> {
    let pcsc = Pcsc::acquire().await?;
    let site = site();
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let sim = start_sim_with_cards(&pki).await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    enable_cards(&agent_site.config, face_readers)?;
    if !extra.is_empty() {
        agent_site.append_config(extra)?;
    }
    let agent = agent_site.start().await?;
    Ok(Stack {
        pcsc,
        pki,
        db,
        _central: central,
        _sim: sim,
        agent_site,
        _agent: agent,
        dir: tempfile::tempdir()?,
    })
}

impl Stack {
    async fn card(&self, holder: usize, expired: bool) -> anyhow::Result<IssuedCard> {
        let dir = self.dir.path().join(format!("card-{holder}-{expired}"));
        issue_card(&self.pki, &dir, holder, PIN, expired).await
    }

    /// The events central holds for the site, in sequence order: (kind, body).
    async fn central_events(&self) -> Vec<(String, serde_json::Value)> {
        let Ok(client) = self.db.client().await else {
            return Vec::new();
        };
        let rows = client
            .query(
                "SELECT kind, body::text FROM events WHERE site_code = $1 ORDER BY sequence",
                &[&self.agent_site.site],
            )
            .await
            .unwrap_or_default();
        rows.iter()
            .map(|r| {
                let body: String = r.get(1);
                (
                    r.get::<_, String>(0),
                    serde_json::from_str(&body).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits until central holds an event of `kind` whose body satisfies `matches`.
    async fn central_has(
        &self,
        what: &str,
        kind: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        eventually(what, || async {
            self.central_events()
                .await
                .into_iter()
                .find(|(k, body)| k == kind && matches(body))
                .map(|(_, body)| body)
        })
        .await
    }

    async fn card_check(&self, result: &str) -> serde_json::Value {
        self.central_has(
            &format!("a card_check {result} at central"),
            "card_check",
            |b| b["result"] == result,
        )
        .await
    }

    fn patient_key(&self) -> PatientHashKey {
        let text = std::fs::read_to_string(self.pki.paths.patient_hash_key()).unwrap();
        let text = text.trim();
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        PatientHashKey::from_bytes(&bytes).unwrap()
    }
}

/// Waits until central holds, after the site's first `reader_change` to `after`, one saying the
/// first reader is present and empty again.
async fn reader_empty_again_after(stack: &Stack, after: &str, what: &str) {
    eventually(what, || async {
        let events = stack.central_events().await;
        let from = events
            .iter()
            .position(|(k, b)| k == "reader_change" && b["state"] == after)?;
        events[from..]
            .iter()
            .any(|(k, b)| {
                k == "reader_change"
                    && b["reader_name"] == READERS[0]
                    && b["state"] == "present_empty"
            })
            .then_some(())
    })
    .await;
}

/// A person of the simulator's population with the expected answer, and their index.
async fn holder(kind: &str) -> anyhow::Result<(usize, SimPerson)> {
    let everyone = sim_people("any", usize::MAX >> 1).await?;
    let wanted = sim_people(kind, 1).await?.remove(0);
    let index = everyone
        .iter()
        .position(|p| {
            p.insurer_number == wanted.insurer_number
                && p.number == wanted.number
                && p.branch == wanted.branch
                && p.birthdate == wanted.birthdate
        })
        .expect("the person is in the population");
    Ok((index, wanted))
}

fn patient_ref(key: &PatientHashKey, p: &SimPerson) -> String {
    let symbol = (!p.symbol.is_empty()).then(|| InsuredCardSymbol::parse(&p.symbol).unwrap());
    let branch = (!p.branch.is_empty()).then(|| InsuredBranchNumber::parse(&p.branch).unwrap());
    PatientRef::for_insurance_card(
        key,
        &InsurerNumber::parse(&p.insurer_number).unwrap(),
        symbol.as_ref(),
        &InsuredIdentificationNumber::parse(&p.number).unwrap(),
        branch.as_ref(),
    )
    .as_str()
    .to_string()
}

// ------------------------------------------------------------------------------- conformance

/// The card-reader conformance suite against pcsc-lite: cards are the virtual card's applet
/// served over the vpcd socket from this process.
struct PcscBench {
    readers: PcscReaders,
    secrets: CardSecrets,
    on_reader: [Option<virtual_card::vpcd::OnReader>; 2],
}

impl PcscBench {
    fn serve(&mut self, reader: usize, applet: Applet, pull_after: Option<usize>) {
        let addr = SocketAddr::from(([127, 0, 0, 1], e2e::pcsc::vpcd_port(reader)));
        let on = virtual_card::vpcd::OnReader::insert(
            addr,
            std::sync::Arc::new(std::sync::Mutex::new(applet)),
            pull_after,
            Duration::from_secs(10),
            |_| {},
        )
        .expect("vpcd listens");
        self.on_reader[reader] = Some(on);
    }

    fn remove_now(&mut self, reader: usize) {
        if let Some(on) = self.on_reader[reader].take() {
            on.remove();
        }
    }
}

impl Bench for PcscBench {
    fn readers(&self) -> &dyn CardReaders {
        &self.readers
    }
    fn reader_names(&self) -> [String; 2] {
        READERS.map(String::from)
    }
    fn insert(&mut self, reader: usize, card: TestCard) {
        self.remove_now(reader);
        let my_number = Applet::new(Kind::MyNumber(Box::new(self.secrets.clone())), None);
        match card {
            TestCard::MyNumber => self.serve(reader, my_number, None),
            TestCard::Unknown => self.serve(reader, Applet::new(Kind::Unknown, None), None),
            TestCard::PulledAfter(n) => self.serve(reader, my_number, Some(n)),
        }
    }
    fn remove(&mut self, reader: usize) {
        self.remove_now(reader);
    }
    fn pin(&self) -> String {
        PIN.into()
    }
    fn certificate(&self) -> Vec<u8> {
        self.secrets.certificate_der.clone()
    }
    fn patience(&self) -> Duration {
        e2e::patience()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pcsc_readers_pass_the_conformance_suite() -> anyhow::Result<()> {
    let _pcsc = Pcsc::acquire().await?;
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(&[])?;
    let key = cached_key(&card_key_cache())?;
    let spec = IssueSpec {
        pki: pki.paths.root().to_path_buf(),
        holder: 0,
        pin: PIN.into(),
        expired: false,
    };
    let card = issue(&dir.path().join("card"), &spec, &key)?;
    let secrets = card.secrets()?;
    tokio::task::spawn_blocking(move || {
        let mut bench = PcscBench {
            readers: PcscReaders::new(),
            secrets,
            on_reader: [None, None],
        };
        conformance::run_all(&mut bench);
    })
    .await?;
    Ok(())
}

// ------------------------------------------------------------------------------- the agent

#[tokio::test(flavor = "multi_thread")]
async fn a_card_lookup_with_the_pin_reaches_central() -> anyhow::Result<()> {
    let stack = stack(&[]).await?;
    let (index, person) = holder("valid").await?;
    let issued = stack.card(index, false).await?;
    let mut card = VirtualCard::start(Some(&issued), CardMode::MyNumber, 0, None).await?;
    card.insert().await?;

    let (status, reply, stderr) =
        card_lookup(&stack.agent_site.config, READERS[0], Some(PIN)).await?;
    assert!(status.success(), "card-lookup failed: {stderr} {reply}");
    assert_eq!(reply["card_check"], "ok", "{reply}");
    assert_eq!(reply["identity_verification"], "pin");
    assert_eq!(reply["lookup"]["outcome"], "valid", "{reply}");
    assert_eq!(reply["lookup"]["name"], person.name.as_str());

    let lookup = stack
        .central_has("the card lookup at central", "lookup", |b| {
            b["route"] == "my_number_card"
        })
        .await;
    assert_eq!(lookup["outcome"], "valid");
    assert_eq!(lookup["identity_verification"], "pin");
    assert_eq!(lookup["source"], "counter");
    // The patient is the keyed hash of the insurance identifiers the answer carried.
    assert_eq!(
        lookup["patient_ref"].as_str(),
        Some(patient_ref(&stack.patient_key(), &person).as_str())
    );
    let all = serde_json::to_string(&stack.central_events().await)?;
    assert!(!all.contains(&person.number), "no insured number in clear");
    assert!(!all.contains(PIN), "no PIN anywhere");
    // The reader's health reached central too.
    stack
        .central_has("the reader with a card at central", "reader_change", |b| {
            b["reader_name"] == READERS[0] && b["state"] == "card_present"
        })
        .await;
    let readers = readers_of(&stack.agent_site.config).await?;
    assert_eq!(readers["enabled"], true);
    // Central's live view of the site (the agent's InventorySnapshot) shows the reader with its
    // card and the card read.
    eventually("the reader in the agent's inventory at central", || async {
        let client = stack.db.client().await.ok()?;
        let row = client
            .query_opt(
                "SELECT inventory::text FROM agent_inventory WHERE site_code = $1",
                &[&stack.agent_site.site],
            )
            .await
            .ok()??;
        let inventory: serde_json::Value = serde_json::from_str(&row.get::<_, String>(0)).ok()?;
        inventory["readers"]
            .as_array()?
            .iter()
            .any(|r| {
                r["reader_name"] == READERS[0]
                    && r["state"] == "card_present"
                    && r["cards_read"].as_u64() >= Some(1)
            })
            .then_some(())
    })
    .await;
    card.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_pin_reports_tries_left_and_the_right_pin_resets_the_counter() -> anyhow::Result<()>
{
    let stack = stack(&[]).await?;
    let (index, _) = holder("valid").await?;
    let issued = stack.card(index, false).await?;
    let mut card = VirtualCard::start(Some(&issued), CardMode::MyNumber, 0, None).await?;
    card.insert().await?;
    let config = &stack.agent_site.config;

    let (status, reply, _) = card_lookup(config, READERS[0], Some(WRONG_PIN)).await?;
    assert_eq!(status.code(), Some(3), "a failed card check: {reply}");
    assert_eq!(reply["card_check"], "wrong_pin");
    assert_eq!(reply["pin_tries_left"], 2);
    assert!(
        reply["message"].as_str().unwrap_or("").contains("残り2回"),
        "{reply}"
    );
    let check = stack.card_check("wrong_pin").await;
    assert_eq!(check["pin_tries_left"], 2);
    assert_eq!(check["reader_name"], READERS[0]);

    let (status, reply, stderr) = card_lookup(config, READERS[0], Some(PIN)).await?;
    assert!(status.success(), "{stderr} {reply}");
    assert_eq!(reply["lookup"]["outcome"], "valid");
    // The right PIN reset the card's counter: a wrong one now leaves 2 again, not 1.
    let (_, reply, _) = card_lookup(config, READERS[0], Some(WRONG_PIN)).await?;
    assert_eq!(reply["pin_tries_left"], 2, "{reply}");
    stack
        .central_has("the PIN lookup at central", "lookup", |b| {
            b["identity_verification"] == "pin" && b["outcome"] == "valid"
        })
        .await;
    eventually("two wrong_pin checks at central", || async {
        let n = stack
            .central_events()
            .await
            .iter()
            .filter(|(k, b)| k == "card_check" && b["result"] == "wrong_pin")
            .count();
        (n == 2).then_some(())
    })
    .await;
    card.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn three_wrong_pins_lock_the_card_even_after_reinsertion() -> anyhow::Result<()> {
    let stack = stack(&[]).await?;
    let (index, _) = holder("valid").await?;
    let issued = stack.card(index, false).await?;
    let mut card = VirtualCard::start(Some(&issued), CardMode::MyNumber, 0, None).await?;
    card.insert().await?;
    let config = &stack.agent_site.config;
    for left in [2, 1] {
        let (_, reply, _) = card_lookup(config, READERS[0], Some(WRONG_PIN)).await?;
        assert_eq!(reply["pin_tries_left"], left, "{reply}");
    }
    let (_, reply, _) = card_lookup(config, READERS[0], Some(WRONG_PIN)).await?;
    assert_eq!(reply["card_check"], "pin_locked", "{reply}");
    assert!(reply["message"].as_str().unwrap_or("").contains("ロック"));
    // Taken off and put back: the chip keeps its counter; the right PIN no longer helps.
    card.remove().await?;
    card.insert().await?;
    let (_, reply, _) = card_lookup(config, READERS[0], Some(PIN)).await?;
    assert_eq!(reply["card_check"], "pin_locked", "{reply}");
    let check = stack.card_check("pin_locked").await;
    assert_eq!(check["pin_tries_left"], 0);
    card.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_pulled_mid_read_gives_a_clear_result_and_frees_the_reader() -> anyhow::Result<()> {
    let stack = stack(&[]).await?;
    let (index, _) = holder("valid").await?;
    let issued = stack.card(index, false).await?;
    // SELECT AID, SELECT EF, then the card leaves on the first READ BINARY.
    let mut pulled = VirtualCard::start(Some(&issued), CardMode::MyNumber, 0, Some(3)).await?;
    pulled.insert().await?;
    let started = Instant::now();
    let (status, reply, _) = card_lookup(&stack.agent_site.config, READERS[0], Some(PIN)).await?;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a pulled card is reported promptly"
    );
    assert_eq!(status.code(), Some(3));
    assert_eq!(reply["card_check"], "card_removed", "{reply}");
    assert!(reply["message"].as_str().unwrap_or("").contains("カード"));
    pulled.expect("removed").await?;
    stack.card_check("card_removed").await;
    drop(pulled);
    e2e::pcsc::wait_card_absent(0).await?;

    // No stuck handle: the next card on the same reader reads normally.
    let mut card = VirtualCard::start(Some(&issued), CardMode::MyNumber, 0, None).await?;
    card.insert().await?;
    let (status, reply, stderr) =
        card_lookup(&stack.agent_site.config, READERS[0], Some(PIN)).await?;
    assert!(status.success(), "{stderr} {reply}");
    assert_eq!(reply["lookup"]["outcome"], "valid");
    // Exactly one card_removed: the agent did not retry on its own.
    let removed = stack
        .central_events()
        .await
        .iter()
        .filter(|(k, b)| k == "card_check" && b["result"] == "card_removed")
        .count();
    assert_eq!(removed, 1);
    card.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_card_and_an_empty_reader_are_answered_clearly() -> anyhow::Result<()> {
    let stack = stack(&[]).await?;
    let mut unknown = VirtualCard::start(None, CardMode::Unknown, 0, None).await?;
    unknown.insert().await?;
    let config = &stack.agent_site.config;
    let (status, reply, _) = card_lookup(config, READERS[0], Some(PIN)).await?;
    assert_eq!(status.code(), Some(3));
    assert_eq!(reply["card_check"], "unsupported_card", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or("")
            .contains("マイナンバーカードではない")
    );
    stack.card_check("unsupported_card").await;

    // The second reader has no card.
    let (status, reply, _) = card_lookup(config, READERS[1], Some(PIN)).await?;
    assert_eq!(status.code(), Some(3));
    assert_eq!(reply["card_check"], "card_removed", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or("")
            .contains("置かれていません")
    );
    let readers = eventually("both readers listed by the agent", || async {
        let r = readers_of(config).await.ok()?;
        (r["readers"].as_array()?.len() == 2).then_some(r)
    })
    .await;
    assert_eq!(readers["readers"][1]["state"], "present_empty", "{readers}");
    unknown.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_certificate_is_refused_before_the_pin() -> anyhow::Result<()> {
    let stack = stack(&[]).await?;
    let (index, _) = holder("valid").await?;
    let issued = stack.card(index, true).await?;
    let mut card = VirtualCard::start(Some(&issued), CardMode::MyNumber, 0, None).await?;
    card.insert().await?;
    let (_, reply, _) = card_lookup(&stack.agent_site.config, READERS[0], Some(WRONG_PIN)).await?;
    assert_eq!(reply["card_check"], "certificate_expired", "{reply}");
    stack.card_check("certificate_expired").await;
    // The PIN was not tried: no try was used.
    let state = std::fs::read_to_string(issued.dir.join("state.json")).unwrap_or_default();
    assert!(!state.contains("\"pin_tries_left\":2"), "{state}");
    card.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_face_route_needs_no_pin_on_a_face_recognition_reader() -> anyhow::Result<()> {
    let stack = stack(&[READERS[1]]).await?;
    let (index, _) = holder("valid").await?;
    let issued = stack.card(index, false).await?;
    let mut card = VirtualCard::start(Some(&issued), CardMode::MyNumber, 1, None).await?;
    card.insert().await?;
    let config = &stack.agent_site.config;
    let (status, reply, stderr) = card_lookup(config, READERS[1], None).await?;
    assert!(status.success(), "{stderr} {reply}");
    assert_eq!(reply["identity_verification"], "face");
    assert_eq!(reply["lookup"]["outcome"], "valid");
    let lookup = stack
        .central_has("the face lookup at central", "lookup", |b| {
            b["route"] == "my_number_card"
        })
        .await;
    assert_eq!(lookup["identity_verification"], "face");
    // A general-purpose reader cannot claim a face match.
    let (status, _, stderr) = card_lookup(config, READERS[0], None).await?;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("face-recognition"), "{stderr}");
    card.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_unplugged_and_replugged_is_reported_to_central() -> anyhow::Result<()> {
    let mut stack = stack(&[]).await?;
    stack
        .central_has("the reader present at central", "reader_change", |b| {
            b["reader_name"] == READERS[0] && b["state"] == "present_empty"
        })
        .await;
    // vpcd readers are static while pcscd runs: stopping pcscd takes every reader away from
    // its clients, as unplugging does; starting it again brings them back.
    stack.pcsc.stop_pcscd()?;
    let removed = stack
        .central_has("the reader removed at central", "reader_change", |b| {
            b["reader_name"] == READERS[0] && b["state"] == "removed"
        })
        .await;
    assert!(removed["errors"].as_u64().unwrap_or(0) >= 1, "{removed}");
    assert!(removed["last_error"].is_string(), "{removed}");
    stack.pcsc.restart_pcscd().await?;
    reader_empty_again_after(&stack, "removed", "the reader back at central").await;
    // And it works again.
    let (index, _) = holder("valid").await?;
    let issued = stack.card(index, false).await?;
    let mut card = VirtualCard::start(Some(&issued), CardMode::MyNumber, 0, None).await?;
    card.insert().await?;
    let (status, reply, stderr) =
        card_lookup(&stack.agent_site.config, READERS[0], Some(PIN)).await?;
    assert!(status.success(), "{stderr} {reply}");
    card.quit().await?;
    Ok(())
}

/// Terminal mode with `[cards]`: card lookups are the terminal's (its face reader's results),
/// but the agent still watches the readers through PC/SC without taking them, so central keeps
/// reader health: the reader's presence and a card put on and taken off reach central, and a
/// card lookup is refused without a single APDU reaching the card (the card would be pulled at
/// the first one).
#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_mode_agent_reports_its_readers_and_never_takes_the_card() -> anyhow::Result<()>
{
    let pcsc = Pcsc::acquire().await?;
    let site = site();
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    // The direct endpoint is never used in terminal mode.
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        "https://127.0.0.1:9",
    )?;
    let folder = agent_site.dir().join("OQS");
    let terminal = e2e::start_sim_terminal(&folder, &["--institution", &site]).await?;
    agent_site.use_terminal(&folder, 10_000)?;
    enable_cards(&agent_site.config, &[])?;
    let agent = agent_site.start().await?;
    let stack = Stack {
        pcsc,
        pki,
        db,
        _central: central,
        _sim: terminal,
        agent_site,
        _agent: agent,
        dir: tempfile::tempdir()?,
    };
    stack
        .central_has("the reader present at central", "reader_change", |b| {
            b["reader_name"] == READERS[0] && b["state"] == "present_empty"
        })
        .await;

    let (index, _) = holder("valid").await?;
    let issued = stack.card(index, false).await?;
    let mut card = VirtualCard::start(Some(&issued), CardMode::MyNumber, 0, Some(1)).await?;
    card.insert().await?;
    stack
        .central_has("the card on the reader at central", "reader_change", |b| {
            b["reader_name"] == READERS[0] && b["state"] == "card_present"
        })
        .await;
    let (status, reply, stderr) =
        card_lookup(&stack.agent_site.config, READERS[0], Some(PIN)).await?;
    assert!(!status.success(), "refused in terminal mode: {reply}");
    assert!(
        format!("{reply}{stderr}").contains("terminal"),
        "the clerk is told the terminal's reader does card lookups: {reply} {stderr}"
    );
    let removed = card.remove_reporting().await?;
    assert_eq!(
        removed["reason"], "command",
        "no APDU reached the card: {removed}"
    );
    reader_empty_again_after(&stack, "card_present", "the card taken off at central").await;
    let kinds: Vec<String> = stack
        .central_events()
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(
        !kinds.iter().any(|k| k == "card_check" || k == "lookup"),
        "the agent recorded no card check or lookup: {kinds:?}"
    );
    card.quit().await?;
    Ok(())
}

// ------------------------------------------------------------------------------- consent and views

/// `edge-agent card-lookup --json --pin-stdin --consent <consent>`.
async fn card_lookup_consenting(
    config: &std::path::Path,
    consent: &str,
) -> anyhow::Result<(std::process::ExitStatus, serde_json::Value, String)> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(e2e::bin("edge-agent"))
        .arg("--config")
        .arg(config)
        .args([
            "card-lookup",
            "--json",
            "--pin-stdin",
            "--reader",
            READERS[0],
        ])
        .args(["--consent", consent])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(format!("{PIN}\n").as_bytes()).await?;
    drop(stdin);
    let output = tokio::time::timeout(e2e::patience(), child.wait_with_output()).await??;
    let value = if output.stdout.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&output.stdout)?
    };
    Ok((
        output.status,
        value,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn consent_on_the_card_allows_drug_views_for_a_day_and_nothing_else() -> anyhow::Result<()> {
    // An Osaka pharmacy whose readers offer drug and checkup consent (the default).
    let stack = stack_with(&[], "[[staff]]\nid = \"P1\"\nrole = \"pharmacist\"\n").await?;
    let (index, person) = holder("valid").await?;
    let issued = stack.card(index, false).await?;
    let mut card = VirtualCard::start(Some(&issued), CardMode::MyNumber, 0, None).await?;
    card.insert().await?;
    let config = &stack.agent_site.config;

    // A category the site's readers do not offer is refused before the card is read.
    let (status, _, stderr) = card_lookup_consenting(config, "drug,surgery").await?;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not offered"), "{stderr}");

    // The patient agrees to share copay-limit and drug information.
    let (status, reply, stderr) = card_lookup_consenting(config, "limit,drug").await?;
    assert!(status.success(), "{stderr} {reply}");
    assert_eq!(reply["lookup"]["outcome"], "valid", "{reply}");
    assert_eq!(reply["consented"], serde_json::json!(["limit", "drug"]));
    let handle = reply["view_handle"].as_str().unwrap().to_string();
    assert_eq!(handle, reply["event_id"].as_str().unwrap());

    let consent = stack
        .central_has("the consent at central", "consent", |_| true)
        .await;
    assert_eq!(consent["drug"], "given");
    assert_eq!(consent["limit_info"], "given");
    assert_eq!(consent["checkup"], "none");
    assert_eq!(
        consent["patient_ref"].as_str(),
        Some(patient_ref(&stack.patient_key(), &person).as_str())
    );
    let at = time::OffsetDateTime::parse(
        consent["consented_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )?;
    let until = time::OffsetDateTime::parse(
        consent["available_until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )?;
    assert_eq!(until - at, time::Duration::hours(24));

    // Within the 24 hours the pharmacist sees the drug history, by the lookup's handle.
    let (code, drug, stderr) = stack
        .agent_site
        .view("drug", "P1", e2e::ViewPatient::Handle(&handle))
        .await?;
    assert_eq!(code, Some(0), "{drug} {stderr}");
    assert_eq!(drug["allowed"], true);
    assert_eq!(drug["basis"], "consent");
    // Checkups were not consented to: refused, and recorded.
    let (code, checkup, _) = stack
        .agent_site
        .view("checkup", "P1", e2e::ViewPatient::Handle(&handle))
        .await?;
    assert_eq!(code, Some(3), "{checkup}");
    assert_eq!(checkup["refusal_reason"], "not_consented");

    // The consent survives an agent restart (by the insurance numbers: handles live in memory).
    e2e::signal(&stack._agent, "KILL").await?;
    let socket = stack.agent_site.dir().join("data").join("agent.sock");
    eventually("the old agent gone", || async {
        (!edge_agent::control::agent_is_running(&socket)).then_some(())
    })
    .await;
    let _restarted = stack.agent_site.start().await?;
    let (code, again, stderr) = stack
        .agent_site
        .view("drug", "P1", e2e::ViewPatient::Card(&person))
        .await?;
    assert_eq!(code, Some(0), "{again} {stderr}");
    assert_eq!(again["basis"], "consent");

    // Every view and refusal reached central, with who looked and under which rule.
    let views = eventually("three info views at central", || async {
        let views: Vec<_> = stack
            .central_events()
            .await
            .into_iter()
            .filter(|(k, _)| k == "info_view")
            .map(|(_, b)| b)
            .collect();
        (views.len() >= 3).then_some(views)
    })
    .await;
    let facts: Vec<_> = views
        .iter()
        .map(|v| {
            (
                v["category"].as_str().unwrap_or(""),
                v["allowed"].as_bool().unwrap_or(false),
                v["refusal_reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        facts,
        [
            ("drug", true, ""),
            ("checkup", false, "not_consented"),
            ("drug", true, ""),
        ]
    );
    for v in &views {
        assert_eq!(v["staff_role"], "pharmacist");
        assert_eq!(v["policy_version"], "jp-2020-11");
        assert_eq!(v["patient_ref"], consent["patient_ref"]);
        assert!(v["disaster_window_id"].is_null(), "{v}");
    }
    let all = serde_json::to_string(&stack.central_events().await)?;
    assert!(!all.contains(&person.number), "no insured number in clear");
    card.quit().await?;
    Ok(())
}
