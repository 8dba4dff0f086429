//! The dashboard's fleet pages against real PostgreSQL, through the real router: sign-in with
//! the session cookie, the overview's numbers from seeded data, the site list's filters and
//! an area manager's scope, a site's page, acknowledging alerts with and without the CSRF
//! field, and the auditor's start page.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use central_core::auth::accounts::{AccountSpec, create_account};
use central_store::Store;
use e2e::TestDb;
use onshi_domain::events::{
    EventBody, FleetEvent, Inventory, LinkChange, LinkState, LinkTarget, LookupOutcome,
    ReaderChange, ReaderState, StreamId,
};
use onshi_domain::site::{SiteCode, TerminalId};
use time::{Duration, OffsetDateTime};
use tonic::codegen::Service;
use uuid::Uuid;

const PASSWORD: &str = "a long enough password 42";

/// The seeded chain: four Tokyo sites and two in Osaka.
struct Fleet {
    _db: TestDb,
    db: tokio_postgres::Client,
    store: Store,
    app: axum::Router,
    /// Tokyo pharmacy 新宿店: online, a reader unplugged, national link down, lookups, a
    /// certificate expiring, an open alert, applied in the rollout.
    shinjuku: SiteCode,
    /// Tokyo dental clinic: agent down, its national link degraded since 40 days.
    tokyo_dental: SiteCode,
    /// Osaka pharmacy 梅田店: online, an open alert, targeted in the rollout, 5 events behind.
    umeda: SiteCode,
    /// A Tokyo site only planned (adoption), no agent yet.
    planned: SiteCode,
    /// An Osaka site only named in the directory.
    named: SiteCode,
    /// The open alert of 新宿店 and of 梅田店.
    shinjuku_alert: i64,
    umeda_alert: i64,
}

fn code(nine: &str) -> SiteCode {
    SiteCode::parse(&e2e::site_code(nine)).unwrap()
}

fn lookups(
    site: &SiteCode,
    first: u64,
    outcomes: &[(LookupOutcome, OffsetDateTime)],
) -> Vec<FleetEvent> {
    outcomes
        .iter()
        .enumerate()
        .map(|(i, (outcome, at))| {
            let mut event =
                FleetEvent::try_from(e2e::uplink::lookup_event(site.as_str(), first + i as u64))
                    .unwrap();
            event.occurred_at = *at;
            if let EventBody::Lookup(lookup) = &mut event.body {
                lookup.outcome = *outcome;
            }
            event
        })
        .collect()
}

fn link_change(site: &SiteCode, sequence: u64, state: LinkState, at: OffsetDateTime) -> FleetEvent {
    let mut event =
        FleetEvent::try_from(e2e::uplink::lookup_event(site.as_str(), sequence)).unwrap();
    event.occurred_at = at;
    event.body = EventBody::LinkChange(LinkChange {
        target: LinkTarget::Onshi,
        state,
        detail: Some("probe timed out".into()),
        rtt_ms: None,
        line_type: None,
    });
    event
}

async fn stream(store: &Store, site: &SiteCode, produced: u64) -> StreamId {
    let stream = StreamId(Uuid::now_v7());
    store
        .open_stream(site, stream, "1.4.0", "0", produced)
        .await
        .unwrap();
    stream
}

async fn fleet() -> Fleet {
    let test_db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&test_db).await;
    let now = OffsetDateTime::now_utc();
    store
        .ensure_partitions(now - Duration::days(2), 1)
        .await
        .unwrap();
    let db = test_db.client().await.unwrap();

    let shinjuku = code("134000001");
    let tokyo_dental = code("133000002");
    let umeda = code("274000003");
    let planned = code("131000004");
    let named = code("274000005");

    // 新宿店: 4 lookups in the last hour (3 valid, 1 error), 2 three hours ago (invalid), and
    // the national link going down 20 minutes ago.
    let s1 = stream(&store, &shinjuku, 7).await;
    let mut events = lookups(
        &shinjuku,
        1,
        &[
            (LookupOutcome::Invalid, now - Duration::hours(3)),
            (LookupOutcome::Invalid, now - Duration::hours(3)),
            (LookupOutcome::Valid, now - Duration::minutes(30)),
            (LookupOutcome::Valid, now - Duration::minutes(15)),
            (LookupOutcome::Error, now - Duration::minutes(10)),
            (LookupOutcome::Valid, now - Duration::minutes(5)),
        ],
    );
    events.push(link_change(
        &shinjuku,
        7,
        LinkState::Down,
        now - Duration::minutes(20),
    ));
    store.ingest_batch(&shinjuku, s1, &events).await.unwrap();
    store
        .record_inventory(
            &shinjuku,
            s1,
            &Inventory {
                taken_at: now - Duration::minutes(1),
                readers: vec![
                    ReaderChange {
                        reader_name: "Reader A".into(),
                        state: ReaderState::PresentEmpty,
                        detail: None,
                        cards_read: 12,
                        errors: 0,
                        last_error: None,
                    },
                    ReaderChange {
                        reader_name: "Reader B".into(),
                        state: ReaderState::Removed,
                        detail: None,
                        cards_read: 3,
                        errors: 1,
                        last_error: Some("unplugged".into()),
                    },
                ],
                certificates: vec![],
                terminal_ids: vec![TerminalId::parse("T01").unwrap()],
            },
        )
        .await
        .unwrap();

    // The dental clinic's national link went degraded 40 days ago and has not changed since.
    let s2 = stream(&store, &tokyo_dental, 1).await;
    store
        .ingest_batch(
            &tokyo_dental,
            s2,
            &[link_change(
                &tokyo_dental,
                1,
                LinkState::Degraded,
                now - Duration::days(40),
            )],
        )
        .await
        .unwrap();
    // 梅田店: the agent wrote 6 events, central holds 1.
    let s3 = stream(&store, &umeda, 6).await;
    store
        .ingest_batch(
            &umeda,
            s3,
            &lookups(
                &umeda,
                1,
                &[(LookupOutcome::Valid, now - Duration::minutes(2))],
            ),
        )
        .await
        .unwrap();
    store
        .set_adoption_plan(&planned, now.date() + Duration::days(120), false, "test")
        .await
        .unwrap();
    store
        .set_adoption_plan(&shinjuku, now.date() + Duration::days(90), false, "test")
        .await
        .unwrap();

    db.execute(
        "INSERT INTO sites (site_code, name) VALUES ($1, '新宿店'), ($2, '梅田店'), ($3, '梅田50%_北')",
        &[&shinjuku.as_str(), &umeda.as_str(), &named.as_str()],
    )
    .await
    .unwrap();
    for (site, stream, state) in [
        (&shinjuku, s1, "online"),
        (&tokyo_dental, s2, "agent_down"),
        (&umeda, s3, "online"),
    ] {
        db.execute(
            "INSERT INTO site_availability
                 (site_code, stream_id, state, underlying, alerting, open_now, since, checked_at,
                  detail)
             VALUES ($1, $2, $3, $3, $3 <> 'online', true, now(), now(), 'seeded')",
            &[&site.as_str(), &stream.0, &state],
        )
        .await
        .unwrap();
    }
    let alert = |site: &SiteCode, stream: StreamId| {
        let db = &db;
        let site = site.as_str().to_string();
        async move {
            db.query_one(
                "INSERT INTO alerts (kind, site_code, stream_id, opened_at, detail)
                 VALUES ('site_unavailable', $1, $2, now(), 'the agent stopped')
                 RETURNING id",
                &[&site, &stream.0],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    let shinjuku_alert = alert(&shinjuku, s1).await;
    let umeda_alert = alert(&umeda, s3).await;
    // A terminal certificate of 新宿店 expiring in 10 days, one of 梅田店 in a year.
    db.execute(
        "INSERT INTO certificates (site_code, terminal_id, sha256_fingerprint, role, subject,
             issuer, serial_hex, not_before, not_after, key_type, key_bits, source,
             first_seen_at, last_seen_at)
         VALUES ($1, 'T01', 'aa', 'terminal', 'CN=T01', 'CN=common CA', '01',
                 now() - interval '1 year', now() + interval '10 days', 'rsa', 2048, '/etc/t.pem',
                 now(), now()),
                ($2, 'T01', 'bb', 'terminal', 'CN=T01', 'CN=common CA', '02',
                 now(), now() + interval '1 year', 'rsa', 2048, '/etc/t.pem', now(), now())",
        &[&shinjuku.as_str(), &umeda.as_str()],
    )
    .await
    .unwrap();
    let rollout: i64 = db
        .query_one(
            "INSERT INTO rollouts (target_version, waves, gates, update_window, on_gate_failure,
                 soak_secs, apply_timeout_secs, state, created_by)
             VALUES ('1.5.0', '[]', '{}', 'any', 'pause', 0, 600, 'running', 'test')
             RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    db.execute(
        "INSERT INTO rollout_sites (rollout_id, site_code, wave, previous_version, state)
         VALUES ($1, $2, 0, '1.4.0', 'applied'), ($1, $3, 0, '1.4.0', 'targeted')",
        &[&rollout, &shinjuku.as_str(), &umeda.as_str()],
    )
    .await
    .unwrap();

    for (login, role, prefectures) in [
        ("admin", "chain_admin", vec![]),
        ("tokyo", "area_manager", vec!["13".to_string()]),
        ("viewer", "viewer", vec![]),
        ("auditor", "auditor", vec![]),
    ] {
        create_account(
            &store,
            &AccountSpec {
                login: login.into(),
                display_name: format!("{login} さん"),
                role: role.into(),
                prefectures,
                sites: vec![],
                password: PASSWORD.into(),
            },
            "test",
        )
        .await
        .unwrap();
    }
    let app = central_http::routes::router(store.clone());
    Fleet {
        _db: test_db,
        db,
        store,
        app,
        shinjuku,
        tokyo_dental,
        umeda,
        planned,
        named,
        shinjuku_alert,
        umeda_alert,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A signed-in browser: the session cookie and the CSRF token its pages carry.
struct Browser {
    app: axum::Router,
    cookie: String,
    csrf: String,
}

async fn send(app: &axum::Router, request: Request<Body>) -> Answer {
    let mut service = app.clone();
    std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut service, cx))
        .await
        .unwrap();
    let response = service.call(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// The value of the first `name="…"` attribute after `after` in `html`.
fn attribute_after<'a>(html: &'a str, after: &str, name: &str) -> Option<&'a str> {
    let start = html.find(after)?;
    let rest = &html[start..];
    let key = format!("{name}=\"");
    let at = rest.find(&key)? + key.len();
    let value = &rest[at..];
    Some(&value[..value.find('"')?])
}

/// The number of the overview tile (or inline figure) `data-metric="{name}"`.
fn metric(html: &str, name: &str) -> i64 {
    attribute_after(html, &format!("data-metric=\"{name}\""), "data-value")
        .unwrap_or_else(|| panic!("no metric {name} in {html}"))
        .parse()
        .unwrap()
}

/// The sum of the bars of `#lookups-chart`.
fn chart_total(html: &str) -> i64 {
    let chart = &html[html.find("id=\"lookups-chart\"").expect("the chart")..];
    chart
        .split("data-total=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].parse::<i64>().unwrap())
        .sum()
}

/// The site codes of the rows of `table#sites`, in order.
fn listed_sites(html: &str) -> Vec<String> {
    html.split("<tr data-site=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_string())
        .collect()
}

impl Fleet {
    async fn sign_in(&self, login: &str) -> Browser {
        let answer = send(
            &self.app,
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "login={login}&password={}",
                    central_core::form::encode(PASSWORD)
                )))
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let cookie = answer
            .headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_string();
        let mut browser = Browser {
            app: self.app.clone(),
            cookie,
            csrf: String::new(),
        };
        // Every page's sign-out form carries the session's CSRF token.
        let start = browser.get("/").await;
        browser.csrf = attribute_after(&start.body, "name=\"_csrf\"", "value")
            .unwrap_or_default()
            .to_string();
        browser
    }
}

impl Browser {
    async fn get(&self, path: &str) -> Answer {
        send(
            &self.app,
            Request::get(path)
                .header(header::COOKIE, &self.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// POSTs a form; `with_csrf` adds the session's token as the form's `_csrf` field.
    async fn post_form(&self, path: &str, with_csrf: bool) -> Answer {
        let body = if with_csrf {
            format!("_csrf={}", central_core::form::encode(&self.csrf))
        } else {
            String::new()
        };
        send(
            &self.app,
            Request::post(path)
                .header(header::COOKIE, &self.cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }
}

#[tokio::test]
async fn the_overview_shows_the_fleet_from_its_data() {
    let fleet = fleet().await;
    let admin = fleet.sign_in("admin").await;
    let page = admin.get("/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let html = &page.body;
    assert!(html.contains("id=\"overview\""), "{html}");
    assert_eq!(metric(html, "sites-online"), 2);
    assert_eq!(metric(html, "sites-offline"), 1);
    assert_eq!(metric(html, "readers-down"), 1);
    assert_eq!(metric(html, "links-down"), 2);
    assert_eq!(metric(html, "links-down-only"), 1);
    assert_eq!(metric(html, "links-degraded"), 1);
    // 梅田店 holds 5 events (6 produced, 1 received); 新宿店 none (7 of 7).
    assert_eq!(metric(html, "outbox-lag"), 5);
    assert_eq!(
        attribute_after(html, "id=\"worst-lag\"", "data-site"),
        Some(fleet.umeda.as_str())
    );
    assert_eq!(metric(html, "open-alerts"), 2);
    assert_eq!(metric(html, "unacknowledged-alerts"), 2);
    // Last hour: 新宿店 3 valid + 1 error, 梅田店 1 valid.
    assert_eq!(metric(html, "lookups-hour"), 5);
    assert_eq!(
        attribute_after(html, "data-result=\"valid\"", "data-value"),
        Some("4")
    );
    assert_eq!(
        attribute_after(html, "data-result=\"error\"", "data-value"),
        Some("1")
    );
    assert_eq!(metric(html, "certificates-expiring"), 1);
    assert_eq!(metric(html, "rollout-progress"), 1);
    assert!(
        html.contains("data-applied=\"1\" data-sites=\"2\""),
        "{html}"
    );
    // The chart: 24 hourly bars, all 7 lookups of the last day among them.
    assert!(html.contains("id=\"lookups-chart\""), "{html}");
    let chart = &html[html.find("id=\"lookups-chart\"").unwrap()..];
    assert_eq!(chart.matches("<g class=\"bar\"").count(), 24, "{chart}");
    assert_eq!(chart_total(html), 7);

    // Again, the completed hours from the memo and the current hour read anew.
    let umeda_stream: uuid::Uuid = fleet
        .db
        .query_one(
            "SELECT stream_id FROM agent_streams WHERE site_code = $1",
            &[&fleet.umeda.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    fleet
        .store
        .ingest_batch(
            &fleet.umeda,
            StreamId(umeda_stream),
            &lookups(
                &fleet.umeda,
                2,
                &[(LookupOutcome::Valid, OffsetDateTime::now_utc())],
            ),
        )
        .await
        .unwrap();
    let html = admin.get("/").await.body;
    assert_eq!(metric(&html, "lookups-hour"), 6);
    assert_eq!(chart_total(&html), 8);

    // The area manager of Tokyo sees Tokyo's numbers only.
    let tokyo = fleet.sign_in("tokyo").await;
    let html = tokyo.get("/").await.body;
    assert_eq!(metric(&html, "sites-online"), 1);
    assert_eq!(metric(&html, "open-alerts"), 1);
    assert_eq!(metric(&html, "outbox-lag"), 0);
    assert_eq!(metric(&html, "lookups-hour"), 4);
    assert!(
        html.contains("data-applied=\"1\" data-sites=\"1\""),
        "{html}"
    );
}

#[tokio::test]
async fn the_site_list_filters_and_an_area_manager_sees_only_their_area() {
    let fleet = fleet().await;
    let admin = fleet.sign_in("admin").await;
    let mut all = vec![
        fleet.shinjuku.to_string(),
        fleet.tokyo_dental.to_string(),
        fleet.umeda.to_string(),
        fleet.planned.to_string(),
        fleet.named.to_string(),
    ];
    all.sort();
    let page = admin.get("/sites").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<table id=\"sites\""), "{}", page.body);
    assert_eq!(listed_sites(&page.body), all);
    assert!(
        page.body
            .contains(&format!("href=\"/sites/{}\"", fleet.shinjuku)),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-count=\"5\""), "{}", page.body);

    for (query, expected) in [
        ("prefecture=27", vec![&fleet.umeda, &fleet.named]),
        ("kind=dental", vec![&fleet.tokyo_dental]),
        ("status=agent_down", vec![&fleet.tokyo_dental]),
        ("status=unknown", vec![&fleet.planned, &fleet.named]),
        ("rollout=applied", vec![&fleet.shinjuku]),
        (
            "rollout=none",
            vec![&fleet.planned, &fleet.tokyo_dental, &fleet.named],
        ),
        ("q=%E6%96%B0%E5%AE%BF", vec![&fleet.shinjuku]), // 新宿
        ("q=1340", vec![&fleet.shinjuku]),
        // Wildcards match themselves: only the name with "50%_" in it.
        ("q=50%25_", vec![&fleet.named]),
        ("q=%25", vec![&fleet.named]),
        ("q=_", vec![&fleet.named]),
        (
            "prefecture=13&kind=pharmacy&status=online",
            vec![&fleet.shinjuku],
        ),
    ] {
        let page = admin.get(&format!("/sites?{query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.body);
        let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(listed_sites(&page.body), expected, "{query}");
    }
    for query in [
        "prefecture=99",
        "prefecture=tokyo",
        "kind=zoo",
        "status=x",
        "page=0",
    ] {
        let page = admin.get(&format!("/sites?{query}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            page.body.contains("id=\"filter-error\""),
            "{query}: {}",
            page.body
        );
    }

    // 60 more named sites: two pages, by code.
    for i in 0..60 {
        let extra = code(&format!("134100{i:03}"));
        fleet
            .db
            .execute(
                "INSERT INTO sites (site_code, name) VALUES ($1, $2)",
                &[&extra.as_str(), &format!("追加店 {i}")],
            )
            .await
            .unwrap();
    }
    let first = admin.get("/sites?q=%E8%BF%BD%E5%8A%A0").await; // 追加
    assert!(first.body.contains("data-count=\"60\""), "{}", first.body);
    let first_rows = listed_sites(&first.body);
    assert_eq!(first_rows.len(), 50);
    assert!(first.body.contains("rel=\"next\""), "{}", first.body);
    let second = admin.get("/sites?q=%E8%BF%BD%E5%8A%A0&page=2").await;
    let second_rows = listed_sites(&second.body);
    assert_eq!(second_rows.len(), 10);
    assert!(first_rows.last() < second_rows.first());
    let beyond = admin.get("/sites?q=%E8%BF%BD%E5%8A%A0&page=9").await;
    assert!(listed_sites(&beyond.body).is_empty());
    assert!(beyond.body.contains("data-count=\"60\""), "{}", beyond.body);

    // The area manager of Tokyo: Tokyo's sites only, whatever the filter.
    let tokyo = fleet.sign_in("tokyo").await;
    let page = tokyo.get("/sites").await;
    assert!(page.body.contains("data-count=\"63\""), "{}", page.body);
    let rows = listed_sites(&page.body);
    assert_eq!(rows.len(), 50, "{rows:?}");
    assert!(rows.iter().all(|code| code.starts_with("13")), "{rows:?}");
    let osaka = tokyo.get("/sites?prefecture=27").await;
    assert_eq!(osaka.status, StatusCode::OK);
    assert!(listed_sites(&osaka.body).is_empty());
    let by_name = tokyo.get("/sites?q=%E6%A2%85%E7%94%B0").await; // 梅田
    assert!(listed_sites(&by_name.body).is_empty());
    let other = tokyo.get(&format!("/sites/{}", fleet.umeda)).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "{}", other.body);
    assert!(!other.body.contains("梅田店"), "{}", other.body);
    let own = tokyo.get(&format!("/sites/{}", fleet.shinjuku)).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
}

#[tokio::test]
async fn a_site_page_shows_what_central_knows_about_the_site() {
    let fleet = fleet().await;
    let viewer = fleet.sign_in("viewer").await;
    let page = viewer.get(&format!("/sites/{}", fleet.shinjuku)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let html = &page.body;
    assert!(html.contains("id=\"site\""), "{html}");
    assert!(
        html.contains(&format!("<h1>{} 新宿店</h1>", fleet.shinjuku)),
        "{html}"
    );
    assert!(html.contains("id=\"agent-version\">1.4.0<"), "{html}");
    assert!(html.contains("data-terminal=\"T01\""), "{html}");
    assert!(
        html.contains("data-reader=\"Reader B\" data-state=\"removed\""),
        "{html}"
    );
    // Link history, certificates, events, the adoption checklist with era dates.
    let links = &html[html.find("id=\"links\"").unwrap()..];
    assert!(links.contains("data-kind=\"link_change\""), "{links}");
    assert!(html.contains("data-fingerprint=\"aa\""), "{html}");
    assert!(!html.contains("data-fingerprint=\"bb\""), "{html}");
    let events = &html[html.find("id=\"events\"").unwrap()..];
    assert_eq!(events.matches("<tr data-kind=").count(), 7, "{events}");
    assert!(events.contains("data-field=\"outcome\""), "{events}");
    assert!(!events.contains("06139156"), "no insurer number: {events}");
    assert!(html.contains("id=\"adoption-steps\""), "{html}");
    assert!(html.contains("令和"), "{html}");
    assert!(
        html.contains(&format!("data-alert=\"{}\"", fleet.shinjuku_alert)),
        "{html}"
    );

    // A site that has nothing but a plan, and one central does not know.
    let planned = viewer.get(&format!("/sites/{}", fleet.planned)).await;
    assert_eq!(planned.status, StatusCode::OK, "{}", planned.body);
    let unknown = viewer.get(&format!("/sites/{}", code("134999999"))).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    assert!(
        unknown.body.contains("id=\"not-found\""),
        "{}",
        unknown.body
    );
}

#[tokio::test]
async fn acknowledging_an_alert_needs_the_csrf_field_and_is_audited() {
    let fleet = fleet().await;
    let tokyo = fleet.sign_in("tokyo").await;
    assert!(!tokyo.csrf.is_empty());
    let list = tokyo.get("/alerts").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains("<table id=\"alerts\""), "{}", list.body);
    let row = format!("data-alert=\"{}\"", fleet.shinjuku_alert);
    assert!(list.body.contains(&row), "{}", list.body);
    assert!(
        !list
            .body
            .contains(&format!("data-alert=\"{}\"", fleet.umeda_alert)),
        "another area's alert: {}",
        list.body
    );
    assert!(list.body.contains("class=\"acknowledge\""), "{}", list.body);
    assert!(list.body.contains("name=\"_csrf\""), "{}", list.body);

    let path = format!("/alerts/{}/acknowledge", fleet.shinjuku_alert);
    let refused = tokyo.post_form(&path, false).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let done = tokyo.post_form(&path, true).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/alerts");
    let row_of = |id: i64| {
        let db = &fleet.db;
        async move {
            db.query_one(
                "SELECT acknowledged_by, acknowledged_at IS NOT NULL FROM alerts WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
        }
    };
    let acknowledged = row_of(fleet.shinjuku_alert).await;
    assert_eq!(
        acknowledged.get::<_, Option<String>>(0).as_deref(),
        Some("tokyo")
    );
    let audited: i64 = fleet
        .db
        .query_one(
            "SELECT count(*) FROM security_events WHERE kind = 'admin_action'
               AND peer_site_code = $1 AND detail LIKE $2",
            &[
                &fleet.shinjuku.as_str(),
                &format!(
                    "alert {} % acknowledged by account tokyo",
                    fleet.shinjuku_alert
                ),
            ],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
    let open = tokyo.get("/alerts?state=open").await;
    assert!(!open.body.contains(&row), "{}", open.body);
    let seen = tokyo.get("/alerts?state=acknowledged").await;
    assert!(seen.body.contains(&row), "{}", seen.body);
    assert!(seen.body.contains("tokyo ·"), "{}", seen.body);
    assert_eq!(
        tokyo.get("/alerts?state=closed").await.status,
        StatusCode::BAD_REQUEST
    );

    // Again: nothing changes. Another area's alert: as if it did not exist.
    let again = tokyo.post_form(&path, true).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
    let foreign = tokyo
        .post_form(&format!("/alerts/{}/acknowledge", fleet.umeda_alert), true)
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.body);
    let untouched = row_of(fleet.umeda_alert).await;
    assert!(!untouched.get::<_, bool>(1));

    // A viewer may not; chain IT may, through the JSON twin with the CSRF header.
    let viewer = fleet.sign_in("viewer").await;
    let path = format!("/alerts/{}/acknowledge", fleet.umeda_alert);
    assert_eq!(
        viewer.post_form(&path, true).await.status,
        StatusCode::FORBIDDEN
    );
    let admin = fleet.sign_in("admin").await;
    let answer = send(
        &fleet.app,
        Request::post(format!("/api/v1/alerts/{}/acknowledge", fleet.umeda_alert))
            .header(header::COOKIE, &admin.cookie)
            .header("x-csrf-token", &admin.csrf)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(json["id"], fleet.umeda_alert);
    assert_eq!(json["acknowledged_by"], "admin");
    assert!(json["acknowledged_at"].is_string(), "{json}");
}

#[tokio::test]
async fn an_auditor_is_sent_from_the_overview_to_the_audit_pages() {
    let fleet = fleet().await;
    let auditor = fleet.sign_in("auditor").await;
    let start = auditor.get("/").await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    assert_eq!(start.location(), "/audit");
    assert_eq!(auditor.get("/sites").await.status, StatusCode::FORBIDDEN);
    assert_eq!(auditor.get("/alerts").await.status, StatusCode::FORBIDDEN);
    // Nothing in the store changed by looking.
    assert_eq!(
        fleet
            .store
            .alerts(
                &[central_store::AlertState::Open],
                100,
                &central_core::auth::SiteScope::All
            )
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn the_account_page_shows_who_is_signed_in_and_manages_their_own_tokens() {
    let fleet = fleet().await;
    let tokyo = fleet.sign_in("tokyo").await;
    let account = tokyo.get("/account").await;
    assert_eq!(account.status, StatusCode::OK, "{}", account.body);
    assert!(
        account.body.contains("id=\"account-login\">tokyo<"),
        "{}",
        account.body
    );
    assert!(
        account.body.contains("13"),
        "the area in view: {}",
        account.body
    );
    assert!(
        account.body.contains("id=\"no-tokens\""),
        "{}",
        account.body
    );

    let form = |fields: &str| {
        Request::post("/account/tokens")
            .header(header::COOKIE, &tokyo.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "_csrf={}&{fields}",
                central_core::form::encode(&tokyo.csrf)
            )))
            .unwrap()
    };
    let bad = send(&fleet.app, form("label=nightly&days=999")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    let made = send(&fleet.app, form("label=nightly+export&days=30")).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let (_, rest) = made
        .body
        .split_once("id=\"new-token-value\">")
        .expect("the token is shown once");
    let token = rest.split('<').next().unwrap();
    assert!(token.len() > 20, "{token}");

    let listed = tokyo.get("/account").await;
    assert!(listed.body.contains("nightly export"), "{}", listed.body);
    assert!(!listed.body.contains(token), "never shown again");
    let id = attribute_after(&listed.body, "<tr", "data-token").expect("the token's row");
    let revoked = tokyo
        .post_form(&format!("/account/tokens/{id}/revoke"), true)
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    assert!(tokyo.get("/account").await.body.contains("失効済み"));
}
