//! The per-site summaries ingest keeps (migration 0022, `store::summaries`) against real
//! PostgreSQL: after a run through the group-commit writers with resends, gaps filled late,
//! agent restarts (the same stream resending from its resume point, and a reinstalled agent on
//! a new stream), a reused event id and concurrent groups touching the same sites, every
//! summary equals a recount from `events`; and the migration's backfill computes the same.

use std::collections::BTreeMap;

use central_ingest::writer::{Writer, WriterConfig};
use central_store::{BatchWrite, Store};
use e2e::TestDb;
use onshi_domain::events::{
    EventBody, EventId, FleetEvent, LinkChange, LinkState, LinkTarget, LookupOutcome, ReaderChange,
    ReaderState, StreamId,
};
use onshi_domain::site::SiteCode;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

async fn store(db: &TestDb) -> Store {
    crate::support::migrated_store(db).await
}

/// The event at `sequence` of a stream: its kind, time and content follow from the sequence
/// alone, so a resend is the same event (same id, same time) and a recount knows nothing the
/// summaries could miss. Times spread over the last 30 hours, not in sequence order.
struct Stream {
    site: String,
    id: StreamId,
    ids: BTreeMap<u64, EventId>,
    base: OffsetDateTime,
}

impl Stream {
    fn new(site: &str, base: OffsetDateTime) -> Self {
        Self {
            site: site.to_string(),
            id: StreamId(Uuid::now_v7()),
            ids: BTreeMap::new(),
            base,
        }
    }

    fn event(&mut self, sequence: u64) -> FleetEvent {
        let id = *self
            .ids
            .entry(sequence)
            .or_insert_with(|| EventId::from_uuid(Uuid::now_v7()).unwrap());
        let mut event =
            FleetEvent::try_from(e2e::uplink::lookup_event(&self.site, sequence)).unwrap();
        event.id = id;
        // Whole seconds (PostgreSQL keeps microseconds), scattered over 30 hours.
        event.occurred_at = self.base - Duration::minutes(((sequence * 7919) % (30 * 60)) as i64);
        event.body = match sequence % 10 {
            3 => EventBody::LinkChange(LinkChange {
                target: [LinkTarget::Onshi, LinkTarget::Central, LinkTarget::Terminal]
                    [(sequence / 10 % 3) as usize],
                state: [LinkState::Up, LinkState::Degraded, LinkState::Down]
                    [(sequence / 30 % 3) as usize],
                detail: None,
                rtt_ms: Some(9),
                line_type: None,
            }),
            7 => EventBody::ReaderChange(ReaderChange {
                reader_name: format!("reader {}", sequence % 4),
                state: [ReaderState::Removed, ReaderState::PresentEmpty]
                    [(sequence / 10 % 2) as usize],
                detail: None,
                cards_read: 0,
                errors: 0,
                last_error: None,
            }),
            _ => {
                let EventBody::Lookup(mut lookup) = event.body else {
                    unreachable!("the harness makes lookups")
                };
                lookup.outcome = [
                    LookupOutcome::Valid,
                    LookupOutcome::Invalid,
                    LookupOutcome::NotFound,
                    LookupOutcome::Error,
                ][(sequence % 4) as usize];
                EventBody::Lookup(lookup)
            }
        };
        event
    }

    fn batch(&mut self, sequences: impl IntoIterator<Item = u64>) -> BatchWrite {
        BatchWrite::new(
            SiteCode::parse(&self.site).unwrap(),
            self.id,
            sequences.into_iter().map(|s| self.event(s)).collect(),
        )
        .unwrap()
    }
}

/// Each summary table next to its recount from `events`, as comparable text rows.
async fn summaries_and_recount(db: &TestDb) -> Vec<(String, Vec<String>, Vec<String>)> {
    let client = db.client().await.unwrap();
    let pairs = [
        (
            "site_summaries",
            "SELECT site_code, last_event_at, last_event_id, last_lookup_at, last_lookup_id,
                    last_lookup_outcome, first_reader_at, first_national_up_at,
                    first_valid_lookup_at
             FROM site_summaries ORDER BY 1",
            "SELECT site_code, e.occurred_at, e.event_id, l.occurred_at, l.event_id, l.outcome,
                    (SELECT min(occurred_at) FROM events r WHERE r.site_code = s.site_code
                       AND r.kind = 'reader_change'
                       AND r.body->>'state' IN ('present_empty', 'card_present')),
                    (SELECT min(occurred_at) FROM events n WHERE n.site_code = s.site_code
                       AND n.kind = 'link_change' AND n.body->>'target' IN ('onshi', 'terminal')
                       AND n.body->>'state' = 'up'),
                    (SELECT min(occurred_at) FROM events v WHERE v.site_code = s.site_code
                       AND v.kind = 'lookup' AND v.body->>'outcome' = 'valid')
             FROM (SELECT DISTINCT site_code FROM events) s
             CROSS JOIN LATERAL (SELECT occurred_at, event_id FROM events x
                                 WHERE x.site_code = s.site_code
                                 ORDER BY occurred_at DESC, event_id DESC LIMIT 1) e
             LEFT JOIN LATERAL (SELECT occurred_at, event_id, body->>'outcome' AS outcome
                                FROM events x
                                WHERE x.site_code = s.site_code AND x.kind = 'lookup'
                                ORDER BY occurred_at DESC, event_id DESC LIMIT 1) l ON true
             ORDER BY 1",
        ),
        (
            "site_summaries.first_reader_name",
            "SELECT site_code, first_reader_name FROM site_summaries
             WHERE first_reader_at IS NOT NULL ORDER BY 1",
            "SELECT DISTINCT ON (site_code) site_code, body->>'reader_name' FROM events
             WHERE kind = 'reader_change' AND body->>'state' IN ('present_empty', 'card_present')
             ORDER BY site_code, occurred_at",
        ),
        (
            "site_links",
            "SELECT site_code, target, state, occurred_at, event_id FROM site_links
             ORDER BY 1, 2",
            "SELECT DISTINCT ON (site_code, body->>'target') site_code, body->>'target',
                    body->>'state', occurred_at, event_id
             FROM events WHERE kind = 'link_change'
             ORDER BY site_code, body->>'target', occurred_at DESC, event_id DESC",
        ),
        (
            "site_lookup_hours",
            "SELECT hour, site_code, outcome, lookups FROM site_lookup_hours ORDER BY 1, 2, 3",
            "SELECT date_trunc('hour', occurred_at, 'UTC'), site_code, body->>'outcome',
                    count(*)
             FROM events WHERE kind = 'lookup' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        ),
    ];
    let mut out = Vec::new();
    for (name, kept, recount) in pairs {
        let text = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            // Every column as PostgreSQL prints it.
                            r.try_get::<_, Option<String>>(i)
                                .ok()
                                .flatten()
                                .unwrap_or_else(|| "NULL".into())
                        })
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .collect()
        };
        let kept = format!("SELECT t::text FROM ({kept}) t");
        let recount = format!("SELECT t::text FROM ({recount}) t");
        out.push((
            name.to_string(),
            text(client.query(&kept, &[]).await.unwrap()),
            text(client.query(&recount, &[]).await.unwrap()),
        ));
    }
    out
}

fn assert_agree(tables: &[(String, Vec<String>, Vec<String>)]) {
    for (name, kept, recount) in tables {
        assert!(
            !recount.is_empty(),
            "{name}: the run stored nothing to count"
        );
        assert_eq!(kept, recount, "{name}: the summaries differ from a recount");
    }
}

#[tokio::test]
async fn summaries_agree_with_a_recount_after_resends_late_gaps_and_restarts() {
    let db = TestDb::create().await.unwrap();
    let store = store(&db).await;
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let codes = [
        e2e::site_code("131000001"),
        e2e::site_code("271000002"),
        e2e::site_code("401000003"),
    ];
    let mut streams: Vec<Stream> = codes.iter().map(|c| Stream::new(c, now)).collect();
    // A reinstalled agent at the first site: a second stream of the same site.
    streams.push(Stream::new(
        &codes[0],
        now - Duration::seconds(17 * 60 + 30),
    ));
    for stream in &streams {
        store
            .open_stream(
                &SiteCode::parse(&stream.site).unwrap(),
                stream.id,
                "test",
                "0",
                0,
            )
            .await
            .unwrap();
    }
    // Two writers, small groups: concurrent transactions touching the same sites.
    let writer = Writer::spawn(
        store.clone(),
        WriterConfig {
            writers: 2,
            queue: 16,
            max_group_events: 120,
        },
    );
    let write_all = |batches: Vec<BatchWrite>| {
        let writer = writer.clone();
        async move {
            let results =
                futures_util::future::join_all(batches.into_iter().map(|b| writer.write(b))).await;
            for result in results {
                result.expect("every batch is written");
            }
        }
    };

    // Round 1: every stream sends 1..=100 in batches of 20, the two streams of site 0 at once.
    let mut round = Vec::new();
    for stream in streams.iter_mut() {
        for start in (1..=100).step_by(20) {
            round.push(stream.batch(start..start + 20));
        }
    }
    write_all(round).await;

    // Round 2: site 1 sends 141..=200, leaving a gap (101..=140) it fills later; site 0's first
    // agent restarts and resends from its resume point with an overlap (81..=160); site 2
    // resends batches whose acks were lost, and new ones.
    write_all(vec![
        streams[1].batch(141..=170),
        streams[1].batch(171..=200),
        streams[0].batch(81..=120),
        streams[0].batch(121..=160),
        streams[2].batch(41..=60),
        streams[2].batch(61..=80),
        streams[2].batch(101..=130),
    ])
    .await;

    // Round 3: the gap is filled late (times older than what follows it), and resent once
    // more in the same round; the restarted agent resends everything once again.
    write_all(vec![
        streams[1].batch(101..=140),
        streams[1].batch(101..=120),
        streams[0].batch(1..=160),
        streams[3].batch(101..=150),
    ])
    .await;

    // A broken agent reusing an event id at a new position: stored once, the group not failed.
    let mut reused = vec![streams[2].event(131), streams[2].event(132)];
    reused[1].id = streams[2].ids[&5];
    reused[1].occurred_at = streams[2].event(5).occurred_at;
    let site = SiteCode::parse(&streams[2].site).unwrap();
    write_all(vec![BatchWrite::new(site, streams[2].id, reused).unwrap()]).await;

    let tables = summaries_and_recount(&db).await;
    assert_agree(&tables);
    let hours = &tables
        .iter()
        .find(|t| t.0 == "site_lookup_hours")
        .unwrap()
        .1;
    assert!(
        hours.len() > 30,
        "the run spreads lookups over many hours: {hours:?}"
    );

    // The migration's backfill computes the same from the events alone.
    let client = db.client().await.unwrap();
    client
        .batch_execute(
            "DELETE FROM site_summaries; DELETE FROM site_links; DELETE FROM site_lookup_hours;",
        )
        .await
        .unwrap();
    let migration = include_str!("../../../central-store/migrations/0022_site_summaries.sql");
    let backfill = &migration[migration.find("-- Backfill").unwrap()
        ..migration.find("-- Ingest writes all three").unwrap()];
    client.batch_execute(backfill).await.unwrap();
    assert_agree(&summaries_and_recount(&db).await);
}
