//! `fleet-bench fleet`: a chain's worth of sites for the demo, in one light process that speaks
//! the real uplink protocol, each site with its own certificate from the dev PKI's chain CA.
//!
//! Each simulated site sends what a real agent would have recorded over the last day (lookups
//! in opening hours with realistic outcomes and routes, its certificates with their expiry, its
//! reader, outages of the national link at some sites), every event linked into the stream's
//! hash chain as the agent's outbox links it, then stays connected with heartbeats and a
//! trickle of live lookups while the site is open. Some sites misbehave as real ones do: an
//! agent that stopped (connected for its history, then gone), a reader unplugged, certificates
//! about to expire, an older agent version. Through the JSON API (the dev PKI's operator
//! certificate) every site gets a name, and a few sites only an adoption plan, one of them
//! late. Where a site stands is kept in `<state>/<site>.json` (stream, sequence, chain head), so
//! a second run continues the same streams instead of sending the day again.
//!
//! Nothing here is a benchmark; it lives beside them because it reuses their uplink client.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use onshi_domain::chain::ChainHash;
use onshi_domain::events::{
    CertificateInfo, CertificateInventory, EventBody, EventId, FleetEvent, IdentityVerification,
    Inventory, LineType, LinkChange, LinkState, LinkTarget, Lookup, LookupOutcome, LookupRoute,
    LookupSource, ReaderChange, ReaderState,
};
use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::site::{SiteCode, TerminalId};
use proto::fleet::v1 as pb;
use proto::fleet::v1::fleet_uplink_client::FleetUplinkClient;
use serde::{Deserialize, Serialize};
use time::{Duration as Span, OffsetDateTime, UtcOffset};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

const TOKYO: UtcOffset = time::macros::offset!(+9);
/// Heartbeats keep a quiet session from looking silent to central (it waits 90 s by default).
const HEARTBEAT: Duration = Duration::from_secs(20);
/// How long a site that stops waits for central to ack what it sent.
const ACKED_WITHIN: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Central's gRPC endpoint, `https://127.0.0.1:7443`.
    pub grpc: String,
    /// Central's HTTPS API address, `127.0.0.1:8443`.
    pub api: String,
    /// The dev PKI's folder (`central pki init --out`): its chain CA issues the sites'
    /// certificates, its operator certificate names them through the API.
    pub pki: PathBuf,
    pub operator: String,
    /// Where each site's stream state is kept between runs.
    pub state: PathBuf,
    pub sites: usize,
    pub seed: u64,
    /// Send the history, then stop (no live phase).
    pub once: bool,
    /// Names for sites that are not simulated (the demo's real agents): `(code, name)`.
    pub names: Vec<(String, String)>,
    /// Set the chain's opening hours to the whole day (the demo: availability and its alerts
    /// show at any hour) and keep the live lookups going around the clock.
    pub always_open: bool,
}

/// How a simulated site behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Steady,
    /// The national link went down for a while today.
    Outage,
    /// The agent stopped after sending its history (agent down while open).
    Stopped,
    /// Its reader was unplugged this afternoon.
    ReaderUnplugged,
    /// Its terminal certificate expires within days.
    ExpiringSoon,
}

#[derive(Debug, Clone)]
struct SimSite {
    code: String,
    name: String,
    pharmacy: bool,
    profile: Profile,
    agent_version: &'static str,
}

/// Prefectures of the chain with their towns (the sites' names) and weight.
const AREAS: [(&str, &[&str], usize); 9] = [
    (
        "13",
        &[
            "新宿",
            "渋谷",
            "池袋",
            "品川",
            "上野",
            "吉祥寺",
            "立川",
            "町田",
        ],
        30,
    ),
    ("27", &["梅田", "難波", "天王寺", "堺", "豊中"], 16),
    ("14", &["横浜", "川崎", "藤沢", "相模原"], 14),
    ("23", &["名古屋", "栄", "豊橋", "岡崎"], 10),
    ("40", &["博多", "天神", "小倉", "久留米"], 9),
    ("01", &["札幌", "旭川", "函館"], 7),
    ("34", &["広島", "福山", "呉"], 6),
    ("04", &["仙台", "石巻"], 4),
    ("12", &["千葉", "船橋", "柏"], 4),
];

/// A small deterministic generator (xorshift64*), so a seed gives the same chain every run.
#[derive(Debug, Clone)]
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn chain(count: usize, seed: u64) -> anyhow::Result<Vec<SimSite>> {
    let mut dice = Dice::new(seed);
    let total: usize = AREAS.iter().map(|(_, _, w)| w).sum();
    let mut sites = Vec::with_capacity(count);
    let mut branch_numbers = std::collections::HashMap::<String, usize>::new();
    for i in 0..count {
        let mut pick = dice.below(total as u64) as usize;
        let (prefecture, towns, _) = AREAS
            .iter()
            .find(|(_, _, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .expect("weights cover the range");
        let pharmacy = dice.chance(70);
        let town = towns[dice.below(towns.len() as u64) as usize];
        let table = if pharmacy { '4' } else { '1' };
        // District and institution number: unique per index, so codes never collide.
        let body = format!("{prefecture}{table}{:06}", 100_000 + i * 37 % 900_000);
        let code = MedicalInstitutionCode::with_check_digit(&body)?;
        let nth = branch_numbers
            .entry(format!("{town}{pharmacy}"))
            .or_default();
        *nth += 1;
        let name = match (pharmacy, *nth) {
            (true, 1) => format!("さくら薬局 {town}店"),
            (true, n) => format!("さくら薬局 {town}{n}号店"),
            (false, 1) => format!("さくら{town}内科クリニック"),
            (false, n) => format!("さくら{town}第{n}クリニック"),
        };
        let profile = match dice.below(100) {
            0..=4 => Profile::Outage,
            5..=6 => Profile::Stopped,
            7..=8 => Profile::ReaderUnplugged,
            9..=11 => Profile::ExpiringSoon,
            _ => Profile::Steady,
        };
        let agent_version = if dice.chance(15) { "1.3.2" } else { "1.4.0" };
        sites.push(SimSite {
            code: code.as_str().to_string(),
            name,
            pharmacy,
            profile,
            agent_version,
        });
    }
    Ok(sites)
}

/// Where one site's stream stands, kept between runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StreamState {
    stream: Uuid,
    sequence: u64,
    head: ChainHash,
}

impl StreamState {
    fn path(dir: &Path, site: &str) -> PathBuf {
        dir.join(format!("{site}.json"))
    }

    fn load(dir: &Path, site: &str) -> Option<Self> {
        let text = std::fs::read_to_string(Self::path(dir, site)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self, dir: &Path, site: &str) -> anyhow::Result<()> {
        let path = Self::path(dir, site);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

/// One site's recorder: numbers events, links them into the chain, keeps the state.
struct Recorder {
    site: SiteCode,
    terminal: TerminalId,
    state: StreamState,
}

impl Recorder {
    fn record(
        &mut self,
        occurred_at: OffsetDateTime,
        body: EventBody,
    ) -> anyhow::Result<pb::Event> {
        self.state.sequence += 1;
        let mut event = FleetEvent {
            id: EventId::from_uuid(Uuid::now_v7()).context("a v7 event id")?,
            site: self.site.clone(),
            terminal: self.terminal.clone(),
            occurred_at,
            sequence: self.state.sequence,
            chain_hash: None,
            body,
        };
        let link = proto::chain::link(&self.state.head, &event);
        event.chain_hash = Some(link);
        self.state.head = link;
        Ok(pb::Event::from(&event))
    }
}

fn lookup(dice: &mut Dice, pharmacy: bool) -> EventBody {
    let by_card = dice.chance(if pharmacy { 65 } else { 75 });
    let outcome = match dice.below(100) {
        0..=91 => LookupOutcome::Valid,
        92..=96 => LookupOutcome::Invalid,
        97..=98 => LookupOutcome::NotFound,
        _ => LookupOutcome::Error,
    };
    let insurers = ["06139156", "01130012", "31130685", "39131156", "138156"];
    let id = Uuid::now_v7();
    EventBody::Lookup(Lookup {
        route: if by_card {
            LookupRoute::MyNumberCard
        } else {
            LookupRoute::InsuranceCard
        },
        outcome,
        // A keyed hash's shape (64 lowercase hex); no patient behind it.
        patient_ref: onshi_domain::patient::PatientRef::parse(&format!(
            "{}{}",
            id.simple(),
            id.simple()
        ))
        .ok(),
        insurer_number: Some(insurers[dice.below(insurers.len() as u64) as usize].into()),
        qualification_validity: (outcome == LookupOutcome::Valid).then(|| "1".into()),
        processing_result_code: None,
        error_code: (outcome == LookupOutcome::Error).then(|| "EQ0100".into()),
        latency_ms: 300 + dice.below(2_200) as u32,
        staff_id: None,
        source: if by_card {
            LookupSource::FaceReader
        } else {
            LookupSource::Counter
        },
        batch_id: None,
        identity_verification: match (by_card, dice.chance(85)) {
            (false, _) => IdentityVerification::None,
            (true, true) => IdentityVerification::Face,
            (true, false) => IdentityVerification::Pin,
        },
    })
}

fn reader(state: ReaderState, cards: u64) -> ReaderChange {
    ReaderChange {
        reader_name: "顔認証付きカードリーダー 00 00".into(),
        state,
        detail: None,
        cards_read: cards,
        errors: 0,
        last_error: None,
    }
}

fn certificates(site: &SimSite, dice: &mut Dice, now: OffsetDateTime) -> Vec<CertificateInfo> {
    let terminal_days = match site.profile {
        Profile::ExpiringSoon => 3 + dice.below(25) as i64,
        _ => 90 + dice.below(900) as i64,
    };
    let fingerprint = |role: &str| {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("{}/{role}", site.code).as_bytes(),
        );
        onshi_domain::hex::encode(digest.as_ref())
    };
    let make = |role: &str, subject: String, issuer: &str, days: i64| CertificateInfo {
        role: role.into(),
        subject,
        issuer: issuer.into(),
        serial_hex: fingerprint(role)[..16].to_string(),
        sha256_fingerprint: fingerprint(role),
        not_before: now - Span::days(365),
        not_after: now + Span::days(days),
        key_type: "rsa".into(),
        key_bits: 2048,
        source: format!("C:\\OQS\\cert\\{role}.p12"),
    };
    vec![
        make(
            "terminal",
            format!("CN=資格確認端末 {} T01", site.code),
            "CN=オンライン資格確認等システム CA",
            terminal_days,
        ),
        make(
            "agent",
            format!("CN=site {}", site.code),
            "CN=onshi-fleet chain CA",
            200 + dice.below(150) as i64,
        ),
    ]
}

/// The day before now: what the site's agent recorded, in order.
fn history(
    site: &SimSite,
    recorder: &mut Recorder,
    dice: &mut Dice,
    now: OffsetDateTime,
) -> anyhow::Result<Vec<pb::Event>> {
    let start = now - Span::hours(24);
    let mut events = vec![
        recorder.record(
            start,
            EventBody::CertificateInventory(CertificateInventory {
                certificates: certificates(site, dice, now),
                full_snapshot: true,
            }),
        )?,
        recorder.record(
            start,
            EventBody::ReaderChange(reader(ReaderState::PresentEmpty, 0)),
        )?,
    ];
    // The hours of the day before now when the site was open (none on a Sunday).
    let open: Vec<i64> = (0..24)
        .filter(|hour| {
            let local = (start + Span::hours(*hour)).to_offset(TOKYO);
            (9..18).contains(&local.hour()) && local.weekday() != time::Weekday::Sunday
        })
        .collect();
    // An outage or an unplugged reader happens in an open hour when the day had one, else at
    // any hour, so that a site's trouble is in its history whatever the day and hour the
    // fleet starts (a Sunday afternoon in Tokyo has only Saturday's last open hours before
    // it). It starts at most 21 hours after `start`, so that it also ended before now.
    let candidates: Vec<i64> = open.iter().copied().filter(|hour| *hour <= 21).collect();
    let trouble_hour = |dice: &mut Dice| match candidates.len() {
        0 => 2 + dice.below(20) as i64,
        n => candidates[dice.below(n as u64) as usize],
    };
    let outage_hour = trouble_hour(dice);
    let unplug_hour = trouble_hour(dice);
    let mut cards = 0;
    for hour in 0..24 {
        let at = start + Span::hours(hour);
        if site.profile == Profile::Outage && hour == outage_hour {
            let link = |state, detail: &str| {
                EventBody::LinkChange(LinkChange {
                    target: LinkTarget::Onshi,
                    state,
                    detail: Some(detail.into()),
                    rtt_ms: None,
                    line_type: Some(LineType::IpVpn),
                })
            };
            let down_at = at + Span::minutes(61);
            events.push(recorder.record(down_at, link(LinkState::Down, "3 probes timed out"))?);
            events.push(recorder.record(
                down_at + Span::minutes(20 + dice.below(40) as i64),
                link(LinkState::Up, "probe answered"),
            )?);
        }
        if site.profile == Profile::ReaderUnplugged && hour == unplug_hour {
            events.push(recorder.record(
                at + Span::minutes(61),
                EventBody::ReaderChange(reader(ReaderState::Removed, cards)),
            )?);
        }
        if !open.contains(&hour) {
            continue;
        }
        let count = if site.pharmacy {
            3 + dice.below(7)
        } else {
            2 + dice.below(5)
        };
        let mut minutes: Vec<i64> = (0..count).map(|_| dice.below(60) as i64).collect();
        minutes.sort_unstable();
        for minute in minutes {
            let body = lookup(dice, site.pharmacy);
            if let EventBody::Lookup(l) = &body
                && l.route == LookupRoute::MyNumberCard
            {
                cards += 1;
            }
            events.push(recorder.record(at + Span::minutes(minute), body)?);
        }
    }
    Ok(events)
}

fn inventory(
    site: &SimSite,
    dice: &mut Dice,
    now: OffsetDateTime,
) -> anyhow::Result<pb::AgentMessage> {
    let state = if site.profile == Profile::ReaderUnplugged {
        ReaderState::Removed
    } else {
        ReaderState::PresentEmpty
    };
    let snapshot = Inventory {
        taken_at: now,
        readers: vec![reader(state, 40)],
        certificates: certificates(site, dice, now),
        terminal_ids: vec![TerminalId::parse("T01")?],
    };
    Ok(pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Inventory(
            pb::InventorySnapshot::from(&snapshot),
        )),
    })
}

fn batch(events: Vec<pb::Event>) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Batch(pb::EventBatch { events })),
    }
}

fn heartbeat(produced: u64) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Heartbeat(pb::Heartbeat {
            sent_at: Some(proto::convert::timestamp(OffsetDateTime::now_utc())),
            last_produced_sequence: produced,
            outbox_depth: 0,
        })),
    }
}

/// One site's agent: hello, history (first run), inventory, then live until the process ends.
async fn run_site(options: Arc<Options>, site: SimSite, seed: u64) -> anyhow::Result<()> {
    let paths = fleet_tls::devpki::DevPki::at(&options.pki);
    let (cert, key) = paths.agent(&site.code);
    if !cert.exists() {
        fleet_tls::devpki::issue_agent(&options.pki, &site.code)?;
    }
    let identity = fleet_tls::config::Identity::from_pem_files(&cert, &key)?;
    let roots = fleet_tls::config::load_certificates(&paths.chain_ca())?;
    let tls =
        fleet_tls::config::client_config(Some(&identity), &roots, &[fleet_tls::config::ALPN_H2])?;
    let mut dice = Dice::new(seed);
    let kept = StreamState::load(&options.state, &site.code);
    let fresh = kept.is_none();
    let mut recorder = Recorder {
        site: SiteCode::parse(&site.code)?,
        terminal: TerminalId::parse("T01")?,
        state: kept.unwrap_or(StreamState {
            stream: Uuid::now_v7(),
            sequence: 0,
            head: ChainHash::GENESIS,
        }),
    };
    let now = OffsetDateTime::now_utc();
    let history = if fresh {
        history(&site, &mut recorder, &mut dice, now)?
    } else {
        Vec::new()
    };
    let channel = fleet_tls::connect::grpc_channel(&options.grpc, tls)?;
    let (to_central, outbound) = mpsc::channel(8);
    to_central
        .send(pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
                site_code: site.code.clone(),
                stream_id: recorder.state.stream.as_bytes().to_vec(),
                agent_version: site.agent_version.into(),
                config_hash: format!("{:064x}", 7),
                last_produced_sequence: recorder.state.sequence,
            })),
        })
        .await?;
    let mut from_central = FleetUplinkClient::new(channel)
        .session(ReceiverStream::new(outbound))
        .await
        .with_context(|| format!("opening {}'s session", site.code))?
        .into_inner();
    // Acks and directives are read; the highest sequence central holds is kept (a real agent
    // would also act on directives).
    let (held_tx, mut held) = watch::channel(0u64);
    let reader_task = tokio::spawn(async move {
        while let Ok(Some(message)) = from_central.message().await {
            match message.kind {
                Some(pb::central_message::Kind::Welcome(welcome)) => {
                    held_tx.send_replace(welcome.resume_after_sequence);
                }
                Some(pb::central_message::Kind::Ack(ack)) => {
                    held_tx.send_replace(ack.up_to_sequence);
                }
                _ => {}
            }
        }
    });
    for chunk in history.chunks(200) {
        to_central.send(batch(chunk.to_vec())).await?;
    }
    to_central.send(inventory(&site, &mut dice, now)?).await?;
    recorder.state.save(&options.state, &site.code)?;
    if options.once || site.profile == Profile::Stopped {
        // The session ends once central holds every event (a stopped agent's last words):
        // batches still unread when it ends would be lost, as this simulator keeps no outbox.
        let last = recorder.state.sequence;
        to_central.send(heartbeat(last)).await?;
        tokio::time::timeout(ACKED_WITHIN, held.wait_for(|held| *held >= last))
            .await
            .with_context(|| {
                format!(
                    "{}: central did not ack sequence {last} within {ACKED_WITHIN:?}",
                    site.code
                )
            })?
            .with_context(|| format!("{}: central ended the session", site.code))?;
        reader_task.abort();
        return Ok(());
    }
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        let now = OffsetDateTime::now_utc();
        let local = now.to_offset(TOKYO);
        // About one lookup a minute while the site is open.
        if (options.always_open || (9..18).contains(&local.hour())) && dice.chance(35) {
            let event = recorder.record(now, lookup(&mut dice, site.pharmacy))?;
            to_central.send(batch(vec![event])).await?;
            recorder.state.save(&options.state, &site.code)?;
        }
        if to_central
            .send(heartbeat(recorder.state.sequence))
            .await
            .is_err()
        {
            anyhow::bail!("{}: central ended the session", site.code);
        }
    }
}

/// Names the sites and plans a few adoptions through the JSON API, as chain IT would.
async fn directory(options: &Options, sites: &[SimSite], seed: u64) -> anyhow::Result<()> {
    let paths = fleet_tls::devpki::DevPki::at(&options.pki);
    let (cert, key) = paths.operator(&options.operator);
    let ca = paths.chain_ca();
    let put = |path: String, body: serde_json::Value| {
        let (ca, cert, key) = (ca.clone(), cert.clone(), key.clone());
        let api = options.api.clone();
        async move {
            let (status, answer) =
                e2e::http::send_json(&ca, &cert, &key, &api, "PUT", &path, &body).await?;
            anyhow::ensure!(status < 300, "PUT {path} answered {status}: {answer}");
            Ok::<_, anyhow::Error>(())
        }
    };
    if options.always_open {
        let all_day = serde_json::json!(["00:00-24:00"]);
        let weekly: serde_json::Map<String, serde_json::Value> =
            ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .iter()
                .map(|day| (day.to_string(), all_day.clone()))
                .collect();
        put(
            "/api/v1/opening-hours".to_string(),
            serde_json::json!({ "weekly": weekly, "closed_on_national_holidays": false }),
        )
        .await?;
    }
    let named = sites
        .iter()
        .map(|s| (s.code.as_str(), s.name.as_str()))
        .chain(options.names.iter().map(|(c, n)| (c.as_str(), n.as_str())));
    for (code, name) in named {
        put(
            format!("/api/v1/sites/{code}"),
            serde_json::json!({ "name": name }),
        )
        .await?;
    }
    // Sites still adopting: three planned ahead, one whose plan is long past (late).
    let today = OffsetDateTime::now_utc().to_offset(TOKYO).date();
    let planned = chain(4, seed ^ 0xad0_0001)?;
    for (i, site) in planned.iter().enumerate() {
        let code = MedicalInstitutionCode::with_check_digit(&format!(
            "{}{:06}",
            &site.code[..3],
            990_000 + i
        ))?;
        let start = if i == 0 {
            today - Span::days(75)
        } else {
            today + Span::days(20 * i as i64)
        };
        put(
            format!("/api/v1/sites/{}", code.as_str()),
            serde_json::json!({ "name": format!("{}（導入準備中）", site.name) }),
        )
        .await?;
        put(
            format!("/api/v1/sites/{}/adoption", code.as_str()),
            serde_json::json!({ "planned_start": start.to_string(), "new_site": false }),
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn run(options: Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.state)?;
    let sites = chain(options.sites, options.seed)?;
    directory(&options, &sites, options.seed).await?;
    let options = Arc::new(options);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, site) in sites.iter().cloned().enumerate() {
        let options = options.clone();
        let seed = options.seed.wrapping_add(i as u64 * 7919);
        tasks.spawn(async move {
            let code = site.code.clone();
            (code, run_site(options, site, seed).await)
        });
        // A chain's agents do not all connect in the same millisecond.
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let profiles = |p: Profile| sites.iter().filter(|s| s.profile == p).count();
    println!(
        "{}",
        serde_json::json!({
            "sites": sites.len(),
            "outage": profiles(Profile::Outage),
            "stopped": profiles(Profile::Stopped),
            "reader_unplugged": profiles(Profile::ReaderUnplugged),
            "expiring_soon": profiles(Profile::ExpiringSoon),
            "adopting": 4,
        })
    );
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        if let Ok((code, Err(error))) = joined {
            failed += 1;
            eprintln!("fleet: site {code}: {error:#}");
        }
    }
    anyhow::ensure!(failed == 0, "{failed} simulated sites failed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A site of `profile`'s history of the day before `now`, as pb events.
    fn history_at(profile: Profile, now: OffsetDateTime) -> Vec<pb::Event> {
        let code = e2e::site_code("131000001");
        let site = SimSite {
            code: code.clone(),
            name: "test".into(),
            pharmacy: true,
            profile,
            agent_version: "1.0.0",
        };
        let mut recorder = Recorder {
            site: SiteCode::parse(&code).unwrap(),
            terminal: TerminalId::parse("T01").unwrap(),
            state: StreamState {
                stream: Uuid::now_v7(),
                sequence: 0,
                head: ChainHash::GENESIS,
            },
        };
        history(&site, &mut recorder, &mut Dice::new(7), now).unwrap()
    }

    fn kinds_before(events: &[pb::Event], now: OffsetDateTime) -> Vec<String> {
        events
            .iter()
            .map(|e| FleetEvent::try_from(e.clone()).unwrap())
            .inspect(|e| assert!(e.occurred_at <= now, "an event after now: {e:?}"))
            .map(|e| match e.body {
                EventBody::LinkChange(l) => format!("link {:?}", l.state),
                EventBody::ReaderChange(r) => format!("reader {:?}", r.state),
                other => other.kind().to_string(),
            })
            .collect()
    }

    /// A Sunday afternoon in Tokyo (Saturday's open hours mostly behind the day before) and
    /// a Monday just after midnight (no open hour at all in the day before): the trouble a
    /// site is said to have is in its history, and wholly in the past.
    #[test]
    fn a_site_s_trouble_is_in_its_history_whatever_the_hour_the_fleet_starts() {
        for now in [
            time::macros::datetime!(2026-12-06 16:10 +9),
            time::macros::datetime!(2026-12-07 00:30 +9),
            time::macros::datetime!(2026-12-08 12:00 +9),
        ] {
            let outage = kinds_before(&history_at(Profile::Outage, now), now);
            assert!(
                outage.contains(&"link Down".to_string()),
                "{now}: {outage:?}"
            );
            assert!(outage.contains(&"link Up".to_string()), "{now}: {outage:?}");
            let unplugged = kinds_before(&history_at(Profile::ReaderUnplugged, now), now);
            assert!(
                unplugged.contains(&"reader Removed".to_string()),
                "{now}: {unplugged:?}"
            );
        }
    }
}
