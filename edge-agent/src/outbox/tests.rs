use super::*;
use onshi_domain::events::{
    IdentityVerification, Lookup, LookupOutcome, LookupRoute, LookupSource,
};

const SITE: &str = "3410712362";
/// A value that must never appear in clear in the outbox file.
const MARKER_INSURER: &str = "06139156";

fn options(dir: &Path, budget_bytes: u64) -> OutboxOptions {
    OutboxOptions {
        key_file: dir.join("outbox.key"),
        budget_bytes,
        site: SiteCode::parse(SITE).unwrap(),
        terminal: TerminalId::parse("T01").unwrap(),
    }
}

fn event(sequence: u64) -> FleetEvent {
    FleetEvent {
        id: EventId::from_uuid(Uuid::now_v7()).unwrap(),
        site: SiteCode::parse(SITE).unwrap(),
        terminal: TerminalId::parse("T01").unwrap(),
        occurred_at: OffsetDateTime::now_utc(),
        sequence,
        chain_hash: None,
        body: EventBody::Lookup(Lookup {
            route: LookupRoute::InsuranceCard,
            outcome: LookupOutcome::Valid,
            patient_ref: None,
            insurer_number: Some(MARKER_INSURER.into()),
            qualification_validity: Some("1".into()),
            processing_result_code: None,
            error_code: None,
            latency_ms: 3,
            staff_id: None,
            source: LookupSource::Counter,
            batch_id: None,
            identity_verification: IdentityVerification::None,
        }),
    }
}

fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

async fn append(outbox: &Outbox) -> FleetEvent {
    outbox.append(event).await.unwrap()
}

#[tokio::test]
async fn events_are_numbered_kept_until_acked_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite3");
    let outbox = Outbox::open(&path, options(dir.path(), 1 << 30)).unwrap();
    let stream = outbox.stream_id();
    for expected in 1..=5 {
        assert_eq!(append(&outbox).await.sequence, expected);
    }
    assert_eq!(outbox.ack(3).await.unwrap(), 3);
    drop(outbox);

    let reopened = Outbox::open(&path, options(dir.path(), 1 << 30)).unwrap();
    assert_eq!(
        reopened.stream_id(),
        stream,
        "the stream survives a restart"
    );
    let status = reopened.status().await.unwrap();
    assert_eq!(
        (status.depth, status.last_sequence, status.last_acked),
        (2, 5, 3)
    );
    assert!(status.last_ack_at.is_some());
    let pending = reopened.pending(3, 100, 1 << 20).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.sequence).collect::<Vec<_>>(),
        vec![4, 5]
    );
    // Sequences continue after the acked ones were deleted.
    assert_eq!(append(&reopened).await.sequence, 6);
}

#[tokio::test]
async fn many_events_append_in_one_transaction_and_continue_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&dir.path().join("o.sqlite3"), options(dir.path(), 1 << 30)).unwrap();
    append(&outbox).await;
    assert_eq!(outbox.append_many(250, event).await.unwrap(), 251);
    assert_eq!(append(&outbox).await.sequence, 252);
    let pending = outbox.pending(0, 1_000, 1 << 30).await.unwrap();
    assert!(pending.iter().map(|p| p.sequence).eq(1..=252));
}

#[tokio::test]
async fn pending_respects_the_byte_budget_but_always_yields_one() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&dir.path().join("o.sqlite3"), options(dir.path(), 1 << 30)).unwrap();
    for _ in 0..3 {
        append(&outbox).await;
    }
    assert_eq!(outbox.pending(0, 100, 1).await.unwrap().len(), 1);
    assert_eq!(outbox.pending(0, 2, 1 << 20).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_copied_database_file_reveals_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite3");
    let outbox = Outbox::open(&path, options(dir.path(), 1 << 30)).unwrap();
    for _ in 0..20 {
        append(&outbox).await;
    }
    drop(outbox); // closing checkpoints the WAL into the file
    let mut bytes = std::fs::read(&path).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("outbox.sqlite3-wal")) {
        bytes.extend(wal);
    }
    assert!(
        !bytes
            .windows(MARKER_INSURER.len())
            .any(|w| w == MARKER_INSURER.as_bytes()),
        "an event field appears in clear in the outbox file"
    );
}

#[tokio::test]
async fn an_outbox_refuses_a_missing_or_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite3");
    let outbox = Outbox::open(&path, options(dir.path(), 1 << 30)).unwrap();
    append(&outbox).await;
    drop(outbox);

    std::fs::rename(dir.path().join("outbox.key"), dir.path().join("saved.key")).unwrap();
    assert!(matches!(
        Outbox::open(&path, options(dir.path(), 1 << 30)),
        Err(OutboxError::KeyMissing { .. })
    ));
    OutboxKey::create(&dir.path().join("outbox.key")).unwrap();
    assert!(matches!(
        Outbox::open(&path, options(dir.path(), 1 << 30)),
        Err(OutboxError::WrongKey { .. })
    ));
    std::fs::rename(dir.path().join("saved.key"), dir.path().join("outbox.key")).unwrap();
    assert!(Outbox::open(&path, options(dir.path(), 1 << 30)).is_ok());
}

#[tokio::test]
async fn a_damaged_record_is_quarantined_and_sent_as_a_loss_in_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite3");
    let outbox = Outbox::open(&path, options(dir.path(), 1 << 30)).unwrap();
    for _ in 0..3 {
        append(&outbox).await;
    }
    raw(&path)
        .execute(
            "UPDATE events SET payload = substr(payload, 1, 20) || x'00' WHERE sequence = 2",
            [],
        )
        .unwrap();

    let report = outbox.verify(false).await.unwrap();
    assert_eq!((report.records, report.intact), (3, 2));
    assert_eq!(report.damaged, vec![2]);
    assert!(!report.repaired, "verify without repair changes nothing");
    assert_eq!(outbox.verify(false).await.unwrap().damaged, vec![2]);

    // Sending does not stall on it: the damaged record goes out as a loss at sequence 2.
    let pending = outbox.pending(0, 100, 1 << 20).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let loss = FleetEvent::try_from(pending[1].event.clone()).unwrap();
    assert!(
        matches!(&loss.body, EventBody::Loss(l) if l.first_sequence == 2 && l.last_sequence == 2),
        "{loss:?}"
    );
    let quarantined: i64 = raw(&path)
        .query_row(
            "SELECT count(*) FROM quarantine WHERE sequence = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(quarantined, 1);
    assert!(outbox.verify(false).await.unwrap().is_clean());
}

#[tokio::test]
async fn a_missing_record_is_reported_and_repaired_with_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite3");
    let outbox = Outbox::open(&path, options(dir.path(), 1 << 30)).unwrap();
    for _ in 0..4 {
        append(&outbox).await;
    }
    outbox.ack(1).await.unwrap();
    raw(&path)
        .execute("DELETE FROM events WHERE sequence = 3", [])
        .unwrap();
    let report = outbox.verify(false).await.unwrap();
    assert_eq!(report.missing, vec![3]);
    let report = outbox.verify(true).await.unwrap();
    assert!(report.repaired);
    let pending = outbox.pending(1, 100, 1 << 20).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.sequence).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert!(outbox.verify(false).await.unwrap().is_clean());
}

#[tokio::test]
async fn a_full_budget_fails_closed_reports_pressure_and_recovers_after_acks() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(
        &dir.path().join("o.sqlite3"),
        options(dir.path(), 96 * 1024),
    )
    .unwrap();
    let mut appended = 0u64;
    let full = loop {
        assert!(appended < 10_000, "the budget never filled up");
        match outbox.append(event).await {
            Ok(_) => appended += 1,
            Err(error) => break error,
        }
    };
    assert!(matches!(full, OutboxError::Full { .. }), "{full}");
    assert!(full.to_string().contains("nothing was recorded"), "{full}");
    assert!(matches!(
        outbox.append(event).await,
        Err(OutboxError::Full { .. })
    ));

    let pressure = |pending: &[Pending]| -> Vec<PressureLevel> {
        pending
            .iter()
            .filter_map(
                |p| match FleetEvent::try_from(p.event.clone()).unwrap().body {
                    EventBody::OutboxPressure(p) => Some(p.level),
                    _ => None,
                },
            )
            .collect()
    };
    let pending = outbox.pending(0, 100_000, 1 << 30).await.unwrap();
    assert_eq!(
        pressure(&pending),
        vec![PressureLevel::Warning, PressureLevel::Full],
        "each level is recorded once, the last one in the reserve"
    );

    let last = outbox.status().await.unwrap().last_sequence;
    outbox.ack(last).await.unwrap();
    let pending = outbox.pending(last, 100, 1 << 30).await.unwrap();
    assert_eq!(pressure(&pending), vec![PressureLevel::Recovered]);
    assert!(outbox.append(event).await.is_ok(), "appends work again");
}

mod model {
    //! The outbox against a model: whatever mix of appends, acks and restarts, what is pending
    //! is exactly what was appended and not yet acked, in order.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append(u8),
        AckSome(u8),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u8..5).prop_map(Op::Append),
            2 => any::<u8>().prop_map(Op::AckSome),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn pending_is_what_was_appended_and_not_acked(ops in proptest::collection::vec(op(), 1..25)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("o.sqlite3");
                let mut outbox = Outbox::open(&path, options(dir.path(), 1 << 30)).unwrap();
                let mut model: Vec<(u64, Uuid)> = Vec::new();
                let mut last = 0u64;
                for op in ops {
                    match op {
                        Op::Append(n) => for _ in 0..n {
                            let e = append(&outbox).await;
                            last += 1;
                            assert_eq!(e.sequence, last);
                            model.push((e.sequence, e.id.as_uuid()));
                        },
                        Op::AckSome(k) => {
                            if let Some(&(up_to, _)) = model.get(usize::from(k) % (model.len() + 1)) {
                                outbox.ack(up_to).await.unwrap();
                                model.retain(|(s, _)| *s > up_to);
                            }
                        }
                        Op::Reopen => {
                            drop(outbox);
                            outbox = Outbox::open(&path, options(dir.path(), 1 << 30)).unwrap();
                        }
                    }
                    let pending = outbox.pending(0, 10_000, 1 << 30).await.unwrap();
                    let got: Vec<(u64, Uuid)> = pending
                        .iter()
                        .map(|p| (p.sequence, Uuid::from_slice(&p.event.event_id).unwrap()))
                        .collect();
                    assert_eq!(got, model);
                }
            });
        }
    }
}

/// Walks `events` (in sequence order) as central's verifier does.
fn chain_findings(events: &[FleetEvent]) -> Vec<onshi_domain::chain::Finding> {
    let mut walk = onshi_domain::chain::ChainWalk::default();
    events
        .iter()
        .flat_map(|e| {
            let canonical = proto::chain::canonical(e);
            walk.step(onshi_domain::chain::ChainStep {
                sequence: e.sequence,
                is_loss: matches!(e.body, EventBody::Loss(_)),
                stored: e.chain_hash.as_ref(),
                canonical: &canonical,
            })
        })
        .collect()
}

#[tokio::test]
async fn events_are_chained_across_reopening_and_a_loss_keeps_the_lost_records_link() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite3");
    let outbox = Outbox::open(&path, options(dir.path(), 1 << 30)).unwrap();
    let first = append(&outbox).await;
    assert_eq!(
        first.chain_hash,
        Some(proto::chain::link(&ChainHash::GENESIS, &first)),
        "the first event links to genesis"
    );
    append(&outbox).await;
    outbox.append_many(2, event).await.unwrap();
    drop(outbox);
    let outbox = Outbox::open(&path, options(dir.path(), 1 << 30)).unwrap();
    append(&outbox).await;
    let sent = |pending: Vec<Pending>| -> Vec<FleetEvent> {
        pending
            .into_iter()
            .map(|p| FleetEvent::try_from(p.event).unwrap())
            .collect()
    };
    let events = sent(outbox.pending(0, 100, 1 << 20).await.unwrap());
    assert_eq!(events.len(), 5);
    assert_eq!(chain_findings(&events), vec![], "one unbroken chain");

    // A damaged record goes out as a loss carrying the lost record's link: the chain goes on.
    raw(&path)
        .execute(
            "UPDATE events SET payload = substr(payload, 1, 20) || x'00' WHERE sequence = 3",
            [],
        )
        .unwrap();
    let events = sent(outbox.pending(0, 100, 1 << 20).await.unwrap());
    assert_eq!(
        chain_findings(&events),
        vec![onshi_domain::chain::Finding::DeclaredLoss { sequence: 3 }]
    );
}
