//! `fleet-bench pages`: every dashboard page against a chain of 3,000 sites at two sizes of
//! history in one run, timed as chain IT's browser would see them (HTTPS to central's
//! dashboard listener, a signed-in session, connections reused), with the baseline of the same
//! run: `GET /api/v1/me`, the full request path (TLS, session lookup, routing, permission)
//! without any page's query. At each size central is started afresh and each page's first
//! request after the start is reported (cold), then p50 / p95 / max; the report gives each
//! page's p95 at both sizes and their ratio, against the budget (300 ms, growth < 25 %).
//!
//! The data is seeded set-wise in SQL (generate_series), shaped like the agents' own rows; the
//! last two days at a store's real rate at both sizes, the history behind them at a lower rate
//! over 30 and 360 days by default; the summaries ingest keeps are computed from the seeded
//! events by their definitions (`seed_events`).

use std::time::{Duration, Instant};

use anyhow::Context;
use central_store::{self as store, DatabaseUrl, Store, migrate};
use e2e::http::WebSession;
use e2e::{Pki, TestDb};
use time::OffsetDateTime;

pub struct Options {
    pub sites: usize,
    /// Days of history at the smaller and at the larger size.
    pub history_days: (u32, u32),
    /// Events per site and day of history (older than the last two days).
    pub per_site_day: u32,
    /// Events per site in the last two days (a store's real rate: 60 lookups a day, 1.5
    /// events each).
    pub recent_per_site: u32,
    pub requests: usize,
}

/// The last two days, the pages' recent window (the overview's 24 hours and more), at the real
/// rate at both sizes: what grows between the sizes is the history behind it.
const RECENT: time::Duration = time::Duration::days(2);

const ADMIN: (&str, &str) = ("bench-admin", "bench admin passphrase");
const MANAGER: (&str, &str) = ("bench-tokyo", "bench tokyo passphrase");
/// Each page's budget.
const BUDGET_P95: Duration = Duration::from_millis(300);
/// A page's p95 at the larger size over the smaller's must stay below this.
const MAX_GROWTH: f64 = 1.25;

/// Site codes across eight prefectures, medical (1) and pharmacy (4) fee tables alternating.
fn site_codes(count: usize) -> Vec<String> {
    const PREFECTURES: [&str; 8] = ["01", "04", "13", "14", "23", "27", "34", "40"];
    (0..count)
        .map(|i| {
            let prefecture = PREFECTURES[i % PREFECTURES.len()];
            let table = if i % 2 == 0 { '1' } else { '4' };
            e2e::site_code(&format!("{prefecture}{table}{:06}", i + 1))
        })
        .collect()
}

/// The JSON bodies the store writes for a lookup, a link change and a reader change, from the
/// domain types themselves (so central rebuilds them to their canonical bytes, as the chain
/// verifier does for real events).
fn templates() -> anyhow::Result<[serde_json::Value; 3]> {
    use onshi_domain::events::{
        EventBody, LinkChange, LinkState, LinkTarget, ReaderChange, ReaderState,
    };
    let event = e2e::uplink::lookup_event(&e2e::site_code("131000001"), 1);
    let lookup = onshi_domain::events::FleetEvent::try_from(event)
        .map_err(|e| anyhow::anyhow!("the harness's lookup event: {e:?}"))?
        .body;
    let link = EventBody::LinkChange(LinkChange {
        target: LinkTarget::Onshi,
        state: LinkState::Up,
        detail: None,
        rtt_ms: Some(12),
        line_type: None,
    });
    let reader = EventBody::ReaderChange(ReaderChange {
        reader_name: "SONY RC-S380".into(),
        state: ReaderState::PresentEmpty,
        detail: None,
        cards_read: 0,
        errors: 0,
        last_error: None,
    });
    Ok([
        serde_json::to_value(&lookup)?,
        serde_json::to_value(&link)?,
        serde_json::to_value(&reader)?,
    ])
}

/// The fleet without its events: sites named in the directory, one agent stream each,
/// three certificates, an availability state and an adoption plan per site.
async fn seed_fleet(db: &TestDb, options: &Options) -> anyhow::Result<Vec<String>> {
    let codes = site_codes(options.sites);
    let client = db.client().await?;
    let last = i64::from(history_events(options, options.history_days.1))
        + i64::from(options.recent_per_site);
    client
        .execute(
            "INSERT INTO agent_streams (site_code, stream_id, agent_version, config_hash,
                 last_produced_sequence, highest_received_sequence, contiguous_sequence,
                 first_seen_at, last_seen_at)
             SELECT code, md5(code)::uuid, CASE WHEN n % 10 = 0 THEN '0.1.0' ELSE '0.2.0' END,
                    '0', $2 + (n % 3), $2, $2, now() - interval '400 days',
                    now() - (n % 120) * interval '1 minute'
             FROM unnest($1::text[]) WITH ORDINALITY AS s(code, n)",
            &[&codes, &last],
        )
        .await?;
    // The chain verifier has walked every stream already (the seeded events carry no chain
    // links): in steady state it has nothing to do, and it must not read the history in the
    // background while pages are timed.
    client
        .execute(
            "INSERT INTO chain_verification (site_code, stream_id, walk, events)
             SELECT site_code, stream_id,
                    jsonb_build_object('through', $1::bigint, 'head', NULL, 'chained', false),
                    $1::bigint
             FROM agent_streams",
            &[&last],
        )
        .await?;
    client
        .execute(
            "INSERT INTO sites (site_code, name)
             SELECT code, CASE WHEN substr(code, 3, 1) = '4' THEN 'さくら薬局 ' ELSE 'みどりクリニック ' END
                          || n || '号店'
             FROM unnest($1::text[]) WITH ORDINALITY AS s(code, n)",
            &[&codes],
        )
        .await?;
    client
        .batch_execute(
            "INSERT INTO certificates (site_code, terminal_id, sha256_fingerprint, role, subject,
                 issuer, serial_hex, not_before, not_after, key_type, key_bits, source,
                 first_seen_at, last_seen_at)
             SELECT site_code, 'T0' || t, md5(site_code || t) || md5(t || site_code),
                    CASE WHEN t = 1 THEN 'agent' ELSE 'terminal' END, 'CN=' || site_code || '-' || t,
                    'CN=chain CA', to_hex(t), now() - interval '300 days',
                    now() + ((hashtext(site_code || t) & 1023) % 400) * interval '1 day',
                    'EC', 256, '/etc/onshi/t' || t || '.pem', now() - interval '300 days', now()
             FROM agent_streams, generate_series(1, 3) AS t;
             INSERT INTO site_availability (site_code, stream_id, state, underlying, alerting,
                 open_now, since, checked_at, detail)
             SELECT site_code, stream_id,
                    (ARRAY['online','online','online','online','closed','agent_down',
                           'link_down','reader_unplugged'])[1 + (hashtext(site_code) & 7)],
                    'online', false, true, now() - interval '1 hour', now(), ''
             FROM agent_streams;
             INSERT INTO site_adoption (site_code, planned_start, new_site, updated_by)
             SELECT site_code, (now() + ((hashtext(site_code) & 255) - 128) * interval '1 day')::date,
                    false, 'bench'
             FROM agent_streams;",
        )
        .await?;
    Ok(codes)
}

/// Events per site older than [`RECENT`] in `days` of history.
fn history_events(options: &Options, days: u32) -> u32 {
    options.per_site_day * days.saturating_sub(RECENT.whole_days() as u32)
}

/// Events of the whole fleet at `days` of history.
fn fleet_events(options: &Options, days: u32) -> u64 {
    (u64::from(history_events(options, days)) + u64::from(options.recent_per_site))
        * options.sites as u64
}

/// Each site's events with sequences `from..=to`, set-wise in one statement, shaped like the
/// agents' own rows: a lookup body is the JSON the store writes for a real `Lookup`, with the
/// outcome and patient hash varied; every 500th a link report (every 1000th "down"), every
/// 499th a reader report. A sequence's time is fixed by `now` and the sizes (history at
/// `per_site_day`, the last two days at `recent_per_site`), so the larger size only adds
/// older events below the smaller one's. Event ids are UUIDv7 of their time, as the agents
/// make them. The events' indexes are dropped first and built again after (a bulk load, much
/// faster than maintaining them row by row); the summaries are then computed from the events.
async fn seed_events(
    db: &TestDb,
    options: &Options,
    now: OffsetDateTime,
    (from, to): (i64, i64),
) -> anyhow::Result<()> {
    let client = db.client().await?;
    let [lookup, link, reader] = templates()?;
    let history = i64::from(history_events(options, options.history_days.1));
    let history_step = 86_400.0 / f64::from(options.per_site_day.max(1));
    let recent_step = RECENT.as_seconds_f64() / (f64::from(options.recent_per_site) + 1.0);
    let started = Instant::now();
    let indexes: Vec<(String, Option<String>, String)> = client
        .query(
            "SELECT i.indexrelid::regclass::text, c.conname::text,
                    coalesce(pg_get_constraintdef(c.oid), pg_get_indexdef(i.indexrelid))
             FROM pg_index i
             LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid
                                      AND c.conrelid = 'events'::regclass
             WHERE i.indrelid = 'events'::regclass",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for (index, constraint, _) in &indexes {
        match constraint {
            Some(name) => {
                client
                    .batch_execute(&format!("ALTER TABLE events DROP CONSTRAINT {name}"))
                    .await?
            }
            None => client.batch_execute(&format!("DROP INDEX {index}")).await?,
        }
    }
    let inserted = client
        .execute(
            "INSERT INTO events (event_id, site_code, stream_id, sequence, terminal_id,
                                 occurred_at, received_at, kind, body)
             SELECT (lpad(to_hex(floor(extract(epoch FROM x.t) * 1000)::bigint), 12, '0')
                     || '7' || substr(x.h, 1, 3) || '8' || substr(x.h, 4, 15))::uuid,
                    s.code, md5(s.code)::uuid, i, 'T0' || (1 + i % 3), x.t, x.t,
                    CASE WHEN i % 500 = 0 THEN 'link_change'
                         WHEN i % 499 = 0 THEN 'reader_change' ELSE 'lookup' END,
                    CASE WHEN i % 500 = 0 THEN $6::jsonb || jsonb_build_object(
                             'state', CASE WHEN i % 1000 = 0 THEN 'down' ELSE 'up' END)
                         WHEN i % 499 = 0 THEN $7::jsonb
                         ELSE $5::jsonb || jsonb_build_object(
                             'outcome', (ARRAY['valid','valid','valid','valid','valid',
                                               'invalid','not_found','error'])[1 + i % 8],
                             'patient_ref', x.h || md5(x.h)) END
             FROM unnest($1::text[]) AS s(code),
                  generate_series($2::bigint, $3::bigint) AS i,
                  LATERAL (SELECT CASE WHEN i <= $8::bigint
                             THEN $4::timestamptz - interval '2 days'
                                  - ($8::bigint - i + 1) * $9::float8 * interval '1 second'
                             ELSE $4::timestamptz - interval '2 days'
                                  + (i - $8::bigint) * $10::float8 * interval '1 second'
                             END AS t,
                             md5(s.code || ':' || i) AS h) AS x",
            &[
                &site_codes(options.sites),
                &from,
                &to,
                &now,
                &lookup,
                &link,
                &reader,
                &history,
                &history_step,
                &recent_step,
            ],
        )
        .await?;
    eprintln!(
        "  {inserted} events inserted in {:.0} s; building the indexes again...",
        started.elapsed().as_secs_f64()
    );
    client
        .batch_execute("SET maintenance_work_mem = '256MB'")
        .await?;
    for (_, constraint, definition) in &indexes {
        match constraint {
            Some(name) => {
                client
                    .batch_execute(&format!(
                        "ALTER TABLE events ADD CONSTRAINT {name} {definition}"
                    ))
                    .await?
            }
            // `pg_get_indexdef` names a partitioned index `ON ONLY events`, which would build
            // it on the parent alone: built on every partition here.
            None => {
                client
                    .batch_execute(&definition.replacen(" ON ONLY ", " ON ", 1))
                    .await?
            }
        }
    }
    eprintln!(
        "  indexes built at {:.0} s; computing the summaries...",
        started.elapsed().as_secs_f64()
    );
    // The summaries are read through the events' indexes: statistics first. VACUUM too: a
    // chain's history is vacuumed as it accumulates, while rows bulk-loaded here would have
    // autovacuum (and the first readers' hint-bit writes) go through millions of them while the
    // pages are timed, which is the seeding's cost, not the pages'.
    client.batch_execute("VACUUM (ANALYZE) events").await?;
    summaries_from_events(&client, now).await?;
    client.batch_execute("VACUUM (ANALYZE)").await?;
    eprintln!("  seeded in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The summaries ingest keeps (migration 0022) computed from the seeded events, by their
/// definitions, each site's through its indexes.
async fn summaries_from_events(
    client: &tokio_postgres::Client,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let window = now - central_store::summaries::LOOKUP_HOURS_KEPT;
    client
        .batch_execute("TRUNCATE site_summaries, site_links, site_lookup_hours")
        .await?;
    client
        .batch_execute(
            "INSERT INTO site_summaries (site_code, last_event_at, last_event_id, last_lookup_at,
                 last_lookup_id, last_lookup_outcome, first_reader_at, first_reader_name,
                 first_national_up_at, first_valid_lookup_at)
             SELECT s.site_code, e.occurred_at, e.event_id, l.occurred_at, l.event_id,
                    l.outcome, r.occurred_at, r.reader, n.occurred_at, v.occurred_at
             FROM agent_streams s
             CROSS JOIN LATERAL (SELECT occurred_at, event_id FROM events x
                 WHERE x.site_code = s.site_code
                 ORDER BY occurred_at DESC, event_id DESC LIMIT 1) e
             LEFT JOIN LATERAL (SELECT occurred_at, event_id, body->>'outcome' AS outcome
                 FROM events x WHERE x.site_code = s.site_code AND x.kind = 'lookup'
                 ORDER BY occurred_at DESC, event_id DESC LIMIT 1) l ON true
             LEFT JOIN LATERAL (SELECT occurred_at, body->>'reader_name' AS reader
                 FROM events x WHERE x.site_code = s.site_code AND x.kind = 'reader_change'
                   AND x.body->>'state' IN ('present_empty', 'card_present')
                 ORDER BY occurred_at, event_id LIMIT 1) r ON true
             LEFT JOIN LATERAL (SELECT occurred_at FROM events x
                 WHERE x.site_code = s.site_code AND x.kind = 'link_change'
                   AND x.body->>'target' IN ('onshi', 'terminal') AND x.body->>'state' = 'up'
                 ORDER BY occurred_at LIMIT 1) n ON true
             LEFT JOIN LATERAL (SELECT occurred_at FROM events x
                 WHERE x.site_code = s.site_code AND x.kind = 'lookup'
                   AND x.body->>'outcome' = 'valid'
                 ORDER BY occurred_at LIMIT 1) v ON true;
             INSERT INTO site_links (site_code, target, state, occurred_at, event_id)
             SELECT s.site_code, t.target, l.state, l.occurred_at, l.event_id
             FROM agent_streams s
             CROSS JOIN (VALUES ('onshi'), ('central'), ('terminal')) t (target)
             CROSS JOIN LATERAL (SELECT body->>'state' AS state, occurred_at, event_id
                 FROM events x WHERE x.site_code = s.site_code AND x.kind = 'link_change'
                   AND x.body->>'target' = t.target
                 ORDER BY occurred_at DESC, event_id DESC LIMIT 1) l;",
        )
        .await?;
    client
        .execute(
            "INSERT INTO site_lookup_hours (hour, site_code, outcome, lookups)
             SELECT date_trunc('hour', occurred_at, 'UTC'), site_code, body->>'outcome', count(*)
             FROM events WHERE kind = 'lookup' AND occurred_at >= $1
             GROUP BY 1, 2, 3",
            &[&window],
        )
        .await?;
    Ok(())
}

struct Timing {
    page: String,
    p50: Duration,
    p95: Duration,
    max: Duration,
    /// Timed requests that found their connection closed and were sent again.
    reconnects: usize,
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// GET `path`, once more if the connection was found closed when sending (the client then
/// connects again); returns the answer, its time (of the attempt that answered) and whether it
/// had to reconnect. A page that answers with an error is not retried.
async fn get_timed(
    session: &WebSession,
    path: &str,
) -> anyhow::Result<((u16, String, Vec<u8>), Duration, bool)> {
    let start = Instant::now();
    match session.get(path).await {
        Ok(answer) => Ok((answer, start.elapsed(), false)),
        Err(error) => {
            eprintln!("  GET {path}: {error:#}; connecting again");
            let start = Instant::now();
            let answer = session
                .get(path)
                .await
                .with_context(|| format!("GET {path}, after connecting again"))?;
            Ok((answer, start.elapsed(), true))
        }
    }
}

/// `requests` GETs of `path` one after another (after two warm-ups), each checked for 200.
async fn time_page(
    session: &WebSession,
    label: &str,
    path: &str,
    requests: usize,
) -> anyhow::Result<Timing> {
    for _ in 0..2 {
        get_timed(session, path).await?;
    }
    let mut times = Vec::with_capacity(requests);
    let mut reconnects = 0;
    for _ in 0..requests {
        let ((status, _, body), took, reconnected) = get_timed(session, path).await?;
        times.push(took);
        reconnects += usize::from(reconnected);
        anyhow::ensure!(
            status == 200,
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    times.sort();
    Ok(Timing {
        page: label.to_string(),
        p50: percentile(&times, 0.5),
        p95: percentile(&times, 0.95),
        max: *times.last().expect("at least one request"),
        reconnects,
    })
}

/// The pages timed, each as `(label, path)`, for a chain whose first Tokyo site is `site`
/// and one of whose patients is `patient`.
fn pages(site: &str, patient: &str) -> Vec<(String, String)> {
    let today = OffsetDateTime::now_utc().date();
    let month = format!("{}-{:02}", today.year(), u8::from(today.month()));
    [
        ("overview /", "/".to_string()),
        ("sites /sites", "/sites".into()),
        (
            "sites filtered",
            "/sites?prefecture=13&kind=pharmacy&q=さくら".into(),
        ),
        ("site page", format!("/sites/{site}")),
        ("certificates (30 d)", "/certificates".into()),
        ("certificates (all)", "/certificates?within=all".into()),
        ("certificates CSV", "/certificates.csv?within=all".into()),
        ("rollout", "/rollout".into()),
        ("alerts", "/alerts".into()),
        ("audit (empty form)", "/audit".into()),
        (
            "audit: a site's month",
            format!("/audit?site={site}&month={month}"),
        ),
        ("audit: the chain's month", format!("/audit?month={month}")),
        (
            "audit: a patient, all time",
            format!("/audit?patient_ref={patient}&from=2020-01-01"),
        ),
        ("api: sites", "/api/v1/sites".into()),
    ]
    .into_iter()
    .map(|(label, path)| (label.to_string(), path))
    .collect()
}

/// The pages an area manager's session times (their scope: Tokyo).
const MANAGER_PAGES: [(&str, &str); 3] = [
    ("area manager: overview", "/"),
    ("area manager: rollout", "/rollout"),
    ("area manager: sites", "/sites"),
];

/// One size's figures: per page (the baseline first) the first request after central
/// started, and the timed requests after it.
struct SizeRun {
    events: u64,
    cold: Vec<Duration>,
    timings: Vec<Timing>,
}

/// Starts central on the seeded database, signs in, and times every page: its first request
/// after the start (cold: nothing of central's in memory yet), then `requests` more.
async fn time_size(
    db: &TestDb,
    pki: &Pki,
    codes: &[String],
    options: &Options,
    events: u64,
) -> anyhow::Result<SizeRun> {
    let central = crate::start_central(pki, db, &["--web-listen", "127.0.0.1:0"]).await?;
    let web = central.field("web");
    let ca = pki.paths.chain_ca();
    let admin = WebSession::sign_in(&ca, &web, ADMIN.0, ADMIN.1)
        .await
        .context("signing in as the bench administrator")?;
    let manager = WebSession::sign_in(&ca, &web, MANAGER.0, MANAGER.1).await?;
    let tokyo_site = codes
        .iter()
        .find(|c| c.starts_with("13"))
        .context("a Tokyo site")?;
    let patient: String = db
        .client()
        .await?
        .query_one(
            "SELECT body->>'patient_ref' FROM events WHERE kind = 'lookup' AND site_code = $1
             LIMIT 1",
            &[tokyo_site],
        )
        .await?
        .get(0);
    let mut all: Vec<(&WebSession, String, String)> =
        vec![(&admin, "baseline /api/v1/me".into(), "/api/v1/me".into())];
    for (label, path) in pages(tokyo_site, &patient) {
        all.push((&admin, label, path));
    }
    for (label, path) in MANAGER_PAGES {
        all.push((&manager, label.into(), path.into()));
    }
    let mut cold = Vec::with_capacity(all.len());
    for (session, _, path) in &all {
        let ((status, _, _), took, _) = get_timed(session, path).await?;
        cold.push(took);
        anyhow::ensure!(status == 200, "{path} answered {status}");
    }
    eprintln!(
        "timing {} pages, {} requests each...",
        all.len(),
        options.requests
    );
    let mut timings = Vec::with_capacity(all.len());
    for (session, label, path) in &all {
        timings.push(time_page(session, label, path, options.requests).await?);
    }
    central.kill().await?;
    Ok(SizeRun {
        events,
        cold,
        timings,
    })
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let pool = store::connect(&DatabaseUrl::new(&db.url), 4)?;
    migrate::migrate(&pool).await?;
    let store = Store::new(pool);
    let now = OffsetDateTime::now_utc();
    let (small_days, large_days) = options.history_days;
    anyhow::ensure!(
        small_days > 2 && large_days > small_days,
        "the history sizes must be more than the 2 recent days and grow: {small_days}, {large_days}"
    );
    // Monthly partitions for the larger history, and ahead.
    for back in 0..=(large_days / 28 + 1) {
        store
            .ensure_partitions(now - time::Duration::days(28 * i64::from(back)), 1)
            .await?;
    }
    let codes = seed_fleet(&db, &options).await?;
    for ((login, password), role, prefectures) in [
        (ADMIN, "chain_admin", vec![]),
        (MANAGER, "area_manager", vec!["13".to_string()]),
    ] {
        central_core::auth::accounts::create_account(
            &store,
            &central_core::auth::accounts::AccountSpec {
                login: login.into(),
                display_name: login.into(),
                role: role.into(),
                prefectures,
                sites: vec![],
                password: password.into(),
            },
            "fleet-bench",
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating {login}: {e}"))?;
    }
    let pki = Pki::new(&[codes[0].as_str()])?;

    // The smaller history is the newest part of the larger one: the larger size adds older
    // events below it (lower sequences, earlier times), as a chain's history grows.
    let large_history = i64::from(history_events(&options, large_days));
    let small_history = i64::from(history_events(&options, small_days));
    let last = large_history + i64::from(options.recent_per_site);
    let mut runs = Vec::new();
    for (days, sequences) in [
        (small_days, (large_history - small_history + 1, last)),
        (large_days, (1, large_history - small_history)),
    ] {
        let events = fleet_events(&options, days);
        eprintln!(
            "seeding {days} days of history: {events} events over {} sites...",
            codes.len()
        );
        seed_events(&db, &options, now, sequences).await?;
        runs.push(time_size(&db, &pki, &codes, &options, events).await?);
    }
    report(&options, &runs)
}

/// Prints each page's first request after a start and p95 at both sizes, the growth, and
/// which pages miss the budget, as a table and as one JSON line.
fn report(options: &Options, runs: &[SizeRun]) -> anyhow::Result<()> {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let [small, large] = runs else {
        anyhow::bail!("two sizes expected");
    };
    println!(
        "pages: {} sites, {} and {} events ({} and {} days of history), {} requests per page \
         (HTTPS, signed in, connection reused)",
        options.sites,
        small.events,
        large.events,
        options.history_days.0,
        options.history_days.1,
        options.requests
    );
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "page", "cold S", "p50 S", "p95 S", "cold L", "p95 L", "L/S p95"
    );
    let mut over = Vec::new();
    let mut grew = Vec::new();
    let mut rows = Vec::new();
    for (i, (s, l)) in small.timings.iter().zip(&large.timings).enumerate() {
        let growth = ms(l.p95) / ms(s.p95).max(0.001);
        println!(
            "{:<28} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8.2}",
            s.page,
            ms(small.cold[i]),
            ms(s.p50),
            ms(s.p95),
            ms(large.cold[i]),
            ms(l.p95),
            growth
        );
        if l.p95 > BUDGET_P95 || large.cold[i] > BUDGET_P95 || small.cold[i] > BUDGET_P95 {
            over.push(s.page.clone());
        }
        if growth >= MAX_GROWTH {
            grew.push(s.page.clone());
        }
        rows.push(serde_json::json!({
            "page": s.page,
            "small": {"cold_ms": ms(small.cold[i]), "p50_ms": ms(s.p50), "p95_ms": ms(s.p95),
                      "max_ms": ms(s.max)},
            "large": {"cold_ms": ms(large.cold[i]), "p50_ms": ms(l.p50), "p95_ms": ms(l.p95),
                      "max_ms": ms(l.max)},
            "growth_p95": growth,
            "reconnects": [s.reconnects, l.reconnects],
        }));
    }
    println!(
        "{}",
        serde_json::json!({
            "mode": "pages",
            "sites": options.sites,
            "events": [small.events, large.events],
            "history_days": [options.history_days.0, options.history_days.1],
            "pages": rows,
            "over_budget": over,
            "grew_25_percent_or_more": grew,
        })
    );
    if over.is_empty() {
        println!(
            "every page within {} ms, p95 and first request after a start",
            BUDGET_P95.as_millis()
        );
    } else {
        println!("OVER the {} ms budget: {over:?}", BUDGET_P95.as_millis());
    }
    if grew.is_empty() {
        println!(
            "no page's p95 grew by {:.0} % or more",
            (MAX_GROWTH - 1.0) * 100.0
        );
    } else {
        println!(
            "p95 grew by {:.0} % or more: {grew:?}",
            (MAX_GROWTH - 1.0) * 100.0
        );
    }
    Ok(())
}
