//! `fleet-bench pages`: every dashboard page against a chain of 1,000 sites and 10 million
//! events, timed as chain IT's browser would see them (HTTPS to central's dashboard listener,
//! a signed-in session, connections reused), with the baseline of the same run: `GET
//! /api/v1/me`, the full request path (TLS, session lookup, routing, permission) without any
//! page's query. Prints p50 / p95 / max per page and the ratio of each p95 to the baseline's.
//!
//! The data is seeded set-wise in SQL (generate_series), shaped like the agents' own rows: a
//! lookup body is the JSON the store writes for a real `Lookup`, with the outcome and patient
//! hash varied; events spread over the last 180 days, most of them lookups.

use std::time::{Duration, Instant};

use anyhow::Context;
use central::store::{self, DatabaseUrl, Store, migrate};
use e2e::http::WebSession;
use e2e::{Pki, TestDb};
use time::OffsetDateTime;

pub struct Options {
    pub sites: usize,
    pub events: u64,
    pub requests: usize,
}

const ADMIN: (&str, &str) = ("bench-admin", "bench admin passphrase");
const MANAGER: (&str, &str) = ("bench-tokyo", "bench tokyo passphrase");
/// Each page's budget.
const BUDGET_P95: Duration = Duration::from_millis(300);

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

async fn seed(db: &TestDb, store: &Store, options: &Options) -> anyhow::Result<Vec<String>> {
    let now = OffsetDateTime::now_utc();
    // Monthly partitions for the 180 days the events span, and ahead.
    for back in 0..=7 {
        store
            .ensure_partitions(now - time::Duration::days(30 * back), 1)
            .await?;
    }
    let codes = site_codes(options.sites);
    let client = db.client().await?;
    let per_site = (options.events / options.sites as u64).max(1) as i64;
    let [lookup, link, reader] = templates()?;
    let started = Instant::now();
    client
        .execute(
            "INSERT INTO agent_streams (site_code, stream_id, agent_version, config_hash,
                 last_produced_sequence, highest_received_sequence, contiguous_sequence,
                 first_seen_at, last_seen_at)
             SELECT code, md5(code)::uuid, CASE WHEN n % 10 = 0 THEN '0.1.0' ELSE '0.2.0' END,
                    '0', $2 + (n % 3), $2, $2, now() - interval '200 days',
                    now() - (n % 120) * interval '1 minute'
             FROM unnest($1::text[]) WITH ORDINALITY AS s(code, n)",
            &[&codes, &per_site],
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
    eprintln!(
        "seeding {} events over {} sites (180 days)...",
        per_site * codes.len() as i64,
        codes.len()
    );
    // One statement per site keeps each transaction small; the sequence is the row's place in
    // its site's stream and occurred_at grows with it, as an agent's would. Event ids are
    // UUIDv7 of their time, as the agents make them (central reads nothing else as an event).
    for (n, code) in codes.iter().enumerate() {
        client
            .execute(
                "INSERT INTO events (event_id, site_code, stream_id, sequence, terminal_id,
                                     occurred_at, received_at, kind, body)
                 SELECT (lpad(to_hex(floor(extract(epoch FROM x.t) * 1000)::bigint), 12, '0')
                         || '7' || substr(x.h, 1, 3) || '8' || substr(x.h, 4, 15))::uuid,
                        $1, md5($1)::uuid, i, 'T0' || (1 + i % 3), x.t, now(),
                        CASE WHEN i % 500 = 0 THEN 'link_change'
                             WHEN i % 499 = 0 THEN 'reader_change' ELSE 'lookup' END,
                        CASE WHEN i % 500 = 0 THEN $4::jsonb || jsonb_build_object(
                                 'state', CASE WHEN i % 1000 = 0 THEN 'down' ELSE 'up' END)
                             WHEN i % 499 = 0 THEN $5::jsonb
                             ELSE $3::jsonb || jsonb_build_object(
                                 'outcome', (ARRAY['valid','valid','valid','valid','valid',
                                                   'invalid','not_found','error'])[1 + i % 8],
                                 'patient_ref', x.h || md5(x.h)) END
                 FROM generate_series(1, $2::bigint) AS i,
                      LATERAL (SELECT now() - interval '180 days'
                                      + (i::float8 / ($2::bigint + 1)) * interval '180 days' AS t,
                                      md5($1 || ':' || i) AS h) AS x",
                &[code, &per_site, &lookup, &link, &reader],
            )
            .await?;
        if (n + 1) % 100 == 0 {
            eprintln!(
                "  {} sites, {:.0} s",
                n + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
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
             FROM agent_streams;
             ANALYZE;",
        )
        .await?;
    eprintln!("seeded in {:.0} s", started.elapsed().as_secs_f64());
    Ok(codes)
}

struct Timing {
    page: String,
    p50: Duration,
    p95: Duration,
    max: Duration,
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// `requests` GETs of `path` one after another (after two warm-ups), each checked for 200.
async fn time_page(
    session: &WebSession,
    label: &str,
    path: &str,
    requests: usize,
) -> anyhow::Result<Timing> {
    for _ in 0..2 {
        session.get(path).await?;
    }
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        let start = Instant::now();
        let (status, _, body) = session.get(path).await?;
        times.push(start.elapsed());
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
    })
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let pool = store::connect(&DatabaseUrl::new(&db.url), 4)?;
    migrate::migrate(&pool).await?;
    let store = Store::new(pool);
    let codes = seed(&db, &store, &options).await?;
    for ((login, password), role, prefectures) in [
        (ADMIN, "chain_admin", vec![]),
        (MANAGER, "area_manager", vec!["13".to_string()]),
    ] {
        central::auth::accounts::create_account(
            &store,
            &central::auth::accounts::AccountSpec {
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
    let central = crate::start_central(&pki, &db, &["--web-listen", "127.0.0.1:0"]).await?;
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
    let today = OffsetDateTime::now_utc().date();
    let month = format!("{}-{:02}", today.year(), u8::from(today.month()));
    let pages: Vec<(&str, String)> = vec![
        ("overview /", "/".into()),
        ("sites /sites", "/sites".into()),
        (
            "sites filtered",
            "/sites?prefecture=13&kind=pharmacy&q=さくら".into(),
        ),
        ("site page", format!("/sites/{tokyo_site}")),
        ("certificates (30 d)", "/certificates".into()),
        ("certificates (all)", "/certificates?within=all".into()),
        ("certificates CSV", "/certificates.csv?within=all".into()),
        ("rollout", "/rollout".into()),
        ("alerts", "/alerts".into()),
        ("audit (empty form)", "/audit".into()),
        (
            "audit: a site's month",
            format!("/audit?site={tokyo_site}&month={month}"),
        ),
        ("audit: the chain's month", format!("/audit?month={month}")),
        (
            "audit: a patient, all time",
            format!("/audit?patient_ref={patient}&from=2020-01-01"),
        ),
        ("api: sites", "/api/v1/sites".into()),
    ];
    eprintln!(
        "timing {} pages, {} requests each...",
        pages.len(),
        options.requests
    );
    let baseline = time_page(
        &admin,
        "baseline /api/v1/me",
        "/api/v1/me",
        options.requests,
    )
    .await?;
    let mut timings = Vec::new();
    for (label, path) in &pages {
        timings.push(time_page(&admin, label, path, options.requests).await?);
    }
    for (label, path) in [
        ("area manager: overview", "/"),
        ("area manager: rollout", "/rollout"),
        ("area manager: sites", "/sites"),
    ] {
        timings.push(time_page(&manager, label, path, options.requests).await?);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "pages: {} sites, {} events, {} requests per page (HTTPS, signed in, connection reused)",
        options.sites,
        (options.events / options.sites as u64) * options.sites as u64,
        options.requests
    );
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>10}",
        "page", "p50 ms", "p95 ms", "max ms", "p95/base"
    );
    let mut over = Vec::new();
    for t in std::iter::once(&baseline).chain(&timings) {
        println!(
            "{:<28} {:>8.1} {:>8.1} {:>8.1} {:>10.1}",
            t.page,
            ms(t.p50),
            ms(t.p95),
            ms(t.max),
            ms(t.p95) / ms(baseline.p95).max(0.001)
        );
        if t.p95 > BUDGET_P95 {
            over.push(t.page.clone());
        }
    }
    let json = serde_json::json!({
        "mode": "pages",
        "sites": options.sites,
        "events": options.events,
        "baseline_p95_ms": ms(baseline.p95),
        "pages": timings.iter().map(|t| serde_json::json!({
            "page": t.page, "p50_ms": ms(t.p50), "p95_ms": ms(t.p95), "max_ms": ms(t.max),
        })).collect::<Vec<_>>(),
        "over_budget": over,
    });
    println!("{json}");
    if over.is_empty() {
        println!("every page within {} ms p95", BUDGET_P95.as_millis());
    } else {
        println!(
            "OVER the {} ms p95 budget: {over:?}",
            BUDGET_P95.as_millis()
        );
    }
    Ok(())
}
