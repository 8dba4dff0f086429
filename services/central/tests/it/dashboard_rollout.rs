//! The dashboard's certificate, rollout and audit pages against real PostgreSQL, through the
//! real router on a loopback port: signing in with POST /login, the session cookie and the
//! CSRF token read from the rendered forms, every request through the authentication, role
//! and scope layers.

// The test reads and seeds as the database owner through the store's pool, beside central
// (clippy.toml keeps raw pooled clients out of central's own code).
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;

use central_core::auth::accounts::{AccountSpec, create_account};
use central_http::state::ApiState;
use central_store::{self as store, DatabaseUrl, Store, migrate};
use e2e::TestDb;
use onshi_domain::events::{
    CertificateInfo, CertificateInventory, EventBody, EventId, FleetEvent, StreamId,
};
use onshi_domain::ids::{InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber};
use onshi_domain::patient::{PatientHashKey, PatientRef};
use onshi_domain::site::{SiteCode, TerminalId};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const PASSWORD: &str = "a long enough password";
/// The insured person's number: it must never be stored or exported in clear.
const INSURED_NUMBER: &str = "98765432";
const INSURER: &str = "06139158";
const SYMBOL: &str = "4321";

// ------------------------------------------------------------------------------- HTTP

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn unchunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_text = std::str::from_utf8(&body[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// One person at a browser: HTTP/1.1 over loopback, the session cookie kept.
struct Browser {
    addr: std::net::SocketAddr,
    cookie: Option<String>,
}

impl Browser {
    async fn send(&self, method: &str, path: &str, form: Option<&str>) -> Answer {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(cookie) = &self.cookie {
            request.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        let body = form.unwrap_or("");
        if form.is_some() {
            request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a header block");
        let head = std::str::from_utf8(&raw[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut answer = Answer {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        };
        if answer
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            answer.body = unchunk(&answer.body);
        }
        answer
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    /// A form posted with the session's CSRF token (read from `page`'s forms).
    async fn post(&self, path: &str, fields: &[(&str, &str)], page: &str) -> Answer {
        let mut body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        body.push(format!("_csrf={}", encode(&csrf_of(page))));
        self.send("POST", path, Some(&body.join("&"))).await
    }
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The CSRF token a rendered page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page
        .find(r#"name="_csrf" value=""#)
        .expect("a form with the CSRF field");
    let rest = &page[at + r#"name="_csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The `<tag id="id" ...>...</tag>` element's text (the first `</tag>` after it: no nesting of
/// the same tag inside, which holds for the tables here).
fn element<'a>(page: &'a str, tag: &str, id: &str) -> &'a str {
    let start = page
        .find(&format!(r#"<{tag} id="{id}""#))
        .unwrap_or_else(|| panic!("no {tag}#{id} in the page:\n{page}"));
    let end = page[start..]
        .find(&format!("</{tag}>"))
        .map(|e| start + e)
        .expect("the element closes");
    &page[start..end]
}

// ------------------------------------------------------------------------------- the chain

struct Site {
    code: SiteCode,
    stream: StreamId,
    next: u64,
}

struct Fixture {
    _db: TestDb,
    store: Store,
    key: Arc<PatientHashKey>,
    addr: std::net::SocketAddr,
    /// Two sites in Tokyo (13), one in Osaka (27).
    tokyo_planned: Site,
    tokyo_busy: Site,
    osaka_planned: Site,
}

impl Fixture {
    async fn new() -> Fixture {
        let db = TestDb::create().await.unwrap();
        let pool = store::connect(&DatabaseUrl::new(&db.url), 8).unwrap();
        migrate::migrate(&pool).await.unwrap();
        let store = Store::new(pool);
        store
            .ensure_partitions(OffsetDateTime::now_utc() - Duration::days(1), 1)
            .await
            .unwrap();
        let key = Arc::new(PatientHashKey::from_bytes(&[42; 32]).unwrap());
        let state = ApiState {
            store: store.clone(),
            patient_key: Some(key.clone()),
            deny: fleet_tls::deny::DenyList::default(),
            limiter: central_core::auth::rate_limit::SignInLimiter::default(),
            notification_key: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = central_http::routes::router_with(state);
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let mut fixture = Fixture {
            tokyo_planned: Site::open(&store, "131000021").await,
            tokyo_busy: Site::open(&store, "131000022").await,
            osaka_planned: Site::open(&store, "271000031").await,
            _db: db,
            store,
            key,
            addr,
        };
        fixture.seed().await;
        fixture
    }

    async fn seed(&mut self) {
        let now = OffsetDateTime::now_utc();
        let store = self.store.clone();
        self.tokyo_planned
            .certificates(
                &store,
                vec![
                    cert("terminal", "tokyo-terminal", now + Duration::days(10)),
                    cert("agent", "tokyo-agent", now + Duration::days(25)),
                    cert("terminal", "tokyo-later", now + Duration::days(200)),
                ],
            )
            .await;
        self.osaka_planned
            .certificates(
                &store,
                vec![cert("terminal", "osaka-terminal", now + Duration::days(5))],
            )
            .await;
        store.project_certificates().await.unwrap();
        // Both planned sites start in three weeks: early steps are long overdue.
        let start = (now + Duration::days(21)).date();
        for site in [&self.tokyo_planned, &self.osaka_planned] {
            store
                .set_adoption_plan(&site.code, start, false, "test")
                .await
                .unwrap();
        }
        let patient = self.patient();
        self.tokyo_busy.lookups(&store, &patient, 3).await;
        for (login, role, prefectures) in [
            ("admin", "chain_admin", vec![]),
            ("viewer", "viewer", vec![]),
            ("tokyo.manager", "area_manager", vec!["13".to_string()]),
            ("auditor", "auditor", vec![]),
        ] {
            create_account(
                &store,
                &AccountSpec {
                    login: login.into(),
                    display_name: login.into(),
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
    }

    fn patient(&self) -> PatientRef {
        PatientRef::for_insurance_card(
            &self.key,
            &InsurerNumber::parse(INSURER).unwrap(),
            Some(&InsuredCardSymbol::parse(SYMBOL).unwrap()),
            &InsuredIdentificationNumber::parse(INSURED_NUMBER).unwrap(),
            None,
        )
    }

    /// Signs in through the sign-in form: the browser then holds the session cookie.
    async fn sign_in(&self, login: &str) -> Browser {
        let mut browser = Browser {
            addr: self.addr,
            cookie: None,
        };
        let answer = browser
            .send(
                "POST",
                "/login",
                Some(&format!(
                    "login={login}&password={}&next=%2F",
                    encode(PASSWORD)
                )),
            )
            .await;
        assert_eq!(answer.status, 303, "{login}: {}", answer.text());
        let cookie = answer.header("set-cookie").expect("a session cookie");
        browser.cookie = Some(cookie.split(';').next().unwrap().to_string());
        browser
    }

    async fn exports(&self) -> Vec<String> {
        self.store
            .pool()
            .get()
            .await
            .unwrap()
            .query(
                "SELECT detail FROM security_events WHERE kind = 'audit_export' ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

fn cert(role: &str, name: &str, not_after: OffsetDateTime) -> CertificateInfo {
    CertificateInfo {
        role: role.into(),
        subject: format!("CN={name}"),
        issuer: "CN=test CA".into(),
        serial_hex: "01".into(),
        sha256_fingerprint: fingerprint(name),
        not_before: not_after - Duration::days(1000),
        not_after,
        key_type: "EC".into(),
        key_bits: 256,
        source: format!("/etc/{name}.pem"),
    }
}

fn fingerprint(name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0>64}")
}

impl Site {
    async fn open(store: &Store, first_nine: &str) -> Site {
        let code = SiteCode::parse(&e2e::site_code(first_nine)).unwrap();
        let stream = StreamId(Uuid::now_v7());
        store
            .open_stream(&code, stream, "0.1.0", "0", 0)
            .await
            .unwrap();
        Site {
            code,
            stream,
            next: 1,
        }
    }

    async fn store_events(&mut self, store: &Store, bodies: Vec<EventBody>) {
        let now = OffsetDateTime::now_utc();
        let events: Vec<FleetEvent> = bodies
            .into_iter()
            .map(|body| {
                let event = FleetEvent {
                    id: EventId::from_uuid(Uuid::now_v7()).unwrap(),
                    site: self.code.clone(),
                    terminal: TerminalId::parse("T01").unwrap(),
                    occurred_at: now - Duration::minutes(10) + Duration::seconds(self.next as i64),
                    sequence: self.next,
                    chain_hash: None,
                    body,
                };
                self.next += 1;
                event
            })
            .collect();
        store
            .ingest_batch(&self.code, self.stream, &events)
            .await
            .unwrap();
    }

    async fn certificates(&mut self, store: &Store, certificates: Vec<CertificateInfo>) {
        self.store_events(
            store,
            vec![EventBody::CertificateInventory(CertificateInventory {
                certificates,
                full_snapshot: true,
            })],
        )
        .await;
    }

    /// `count` lookups of `patient` by staff member P1.
    async fn lookups(&mut self, store: &Store, patient: &PatientRef, count: u64) {
        let bodies = (0..count)
            .map(|_| {
                let event =
                    FleetEvent::try_from(e2e::uplink::lookup_event(self.code.as_str(), 1)).unwrap();
                let EventBody::Lookup(mut lookup) = event.body else {
                    unreachable!("a lookup event")
                };
                lookup.patient_ref = Some(patient.clone());
                lookup.staff_id = Some("P1".into());
                EventBody::Lookup(lookup)
            })
            .collect();
        self.store_events(store, bodies).await;
    }
}

// ------------------------------------------------------------------------------- tests

#[tokio::test]
async fn certificates_are_listed_soonest_first_and_their_csv_is_audited() {
    let chain = Fixture::new().await;
    let admin = chain.sign_in("admin").await;

    let page = admin.get("/certificates").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let table = element(&html, "table", "certificates");
    let order: Vec<usize> = ["osaka-terminal", "tokyo-terminal", "tokyo-agent"]
        .iter()
        .map(|name| {
            table
                .find(&format!(r#"data-fingerprint="{}""#, fingerprint(name)))
                .unwrap_or_else(|| panic!("{name} listed:\n{table}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "soonest first: {order:?}"
    );
    assert!(
        !table.contains(&fingerprint("tokyo-later")),
        "within 30 days by default"
    );
    assert!(
        html.contains(r#"id="expiry-chart""#),
        "the timeline is drawn"
    );
    assert!(html.contains("令和"), "expiry dates carry their era");
    let all = admin
        .get("/certificates?within=all&kind=terminal")
        .await
        .text();
    let table = element(&all, "table", "certificates");
    assert!(table.contains(&fingerprint("tokyo-later")), "{table}");
    assert!(
        !table.contains(&fingerprint("tokyo-agent")),
        "terminal only"
    );
    assert_eq!(admin.get("/certificates?within=soon").await.status, 400);

    // The export link carries the same filters; the CSV has the rows and is audited.
    assert!(
        html.contains(r#"id="export-csv" href="/certificates.csv?within=30""#),
        "{html}"
    );
    let csv = admin.get("/certificates.csv?within=30").await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    let today = OffsetDateTime::now_utc()
        .to_offset(time::macros::offset!(+9))
        .date();
    assert_eq!(
        csv.header("content-disposition"),
        Some(
            format!(
                "attachment; filename=\"certificates-{:04}{:02}{:02}.csv\"",
                today.year(),
                u8::from(today.month()),
                today.day()
            )
            .as_str()
        )
    );
    assert!(
        csv.body.starts_with("\u{feff}".as_bytes()),
        "a BOM for Excel"
    );
    let text = csv.text();
    assert!(
        text.contains("有効期限（日本時間） / not_after_jst"),
        "{text}"
    );
    for name in ["osaka-terminal", "tokyo-terminal", "tokyo-agent"] {
        assert!(text.contains(&fingerprint(name)), "{name} in the CSV");
    }
    assert_eq!(
        text.trim_end().lines().count(),
        4,
        "header and three rows:\n{text}"
    );
    let exports = chain.exports().await;
    assert_eq!(exports.len(), 1, "{exports:?}");
    assert!(
        exports[0].starts_with(
            "certificates CSV (expiring within 30 days; 3 rows) exported by account admin"
        ),
        "{exports:?}"
    );
}

#[tokio::test]
async fn a_rollout_started_from_the_form_can_be_paused_and_a_viewer_may_not_start_one() {
    let chain = Fixture::new().await;
    let admin = chain.sign_in("admin").await;
    let page = admin.get("/rollout").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(html.contains(r#"id="start-rollout""#), "{html}");
    for id in ["prefectures", "at-risk", "rollouts"] {
        element(&html, "table", id);
    }
    assert!(html.contains(r#"id="funnel""#), "the funnel is drawn");

    // A plan that does not reach every site is refused with the form shown again.
    let refused = admin
        .post(
            "/rollouts",
            &[
                ("target_version", "0.2.0"),
                ("waves", "50,25"),
                ("window", "any"),
                ("on_gate_failure", "pause"),
            ],
            &html,
        )
        .await;
    assert_eq!(refused.status, 400);
    let text = refused.text();
    assert!(text.contains(r#"id="start-error""#), "{text}");
    assert!(text.contains("shares grow"), "{text}");
    assert!(
        text.contains(r#"value="50,25""#),
        "what was typed is kept: {text}"
    );

    let started = admin
        .post(
            "/rollouts",
            &[
                ("target_version", "0.2.0"),
                ("waves", "5,25,100"),
                ("window", "any"),
                ("on_gate_failure", "pause"),
            ],
            &html,
        )
        .await;
    assert_eq!(started.status, 303, "{}", started.text());
    let location = started.header("location").unwrap().to_string();
    let id: i64 = location
        .strip_prefix("/rollouts/")
        .unwrap()
        .parse()
        .unwrap();
    let view = chain
        .store
        .rollouts(Some(id), &central_store::scope::SiteScope::All)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (view.state.as_str(), view.target_version.as_str()),
        ("running", "0.2.0")
    );
    assert_eq!(view.created_by, "account admin");

    let detail = admin.get(&location).await.text();
    assert!(detail.contains(r#"data-state="running""#), "{detail}");
    assert!(detail.contains(r#"id="pause""#), "{detail}");
    assert!(!detail.contains(r#"id="resume""#), "{detail}");
    let listed = admin.get("/rollout").await.text();
    assert!(
        element(&listed, "table", "rollouts").contains(&format!(r#"data-rollout="{id}""#)),
        "{listed}"
    );

    let paused = admin
        .post(&format!("/rollouts/{id}/pause"), &[], &detail)
        .await;
    assert_eq!(paused.status, 303, "{}", paused.text());
    assert_eq!(paused.header("location"), Some(location.as_str()));
    let detail = admin.get(&location).await.text();
    assert!(detail.contains(r#"data-state="paused""#), "{detail}");
    assert!(detail.contains(r#"id="resume""#) && detail.contains(r#"id="rollback""#));
    assert!(!detail.contains(r#"id="pause""#), "{detail}");
    assert!(
        element(&detail, "table", "transitions").contains("account admin"),
        "{detail}"
    );
    assert_eq!(
        chain
            .store
            .rollouts(Some(id), &central_store::scope::SiteScope::All)
            .await
            .unwrap()[0]
            .state,
        "paused"
    );
    // Pausing twice does not apply.
    let again = admin
        .post(&format!("/rollouts/{id}/pause"), &[], &detail)
        .await;
    assert_eq!(again.status, 400, "{}", again.text());

    // A viewer sees the page without the form, and may not start a rollout.
    let viewer = chain.sign_in("viewer").await;
    let page = viewer.get("/rollout").await.text();
    assert!(!page.contains(r#"id="start-rollout""#), "{page}");
    let forbidden = viewer
        .post(
            "/rollouts",
            &[("target_version", "0.3.0"), ("waves", "100")],
            &page,
        )
        .await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.text());
    let forbidden = viewer
        .post(&format!("/rollouts/{id}/resume"), &[], &page)
        .await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.text());
    assert_eq!(
        chain
            .store
            .rollouts(None, &central_store::scope::SiteScope::All)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn an_area_manager_sees_only_their_prefecture() {
    let chain = Fixture::new().await;
    let manager = chain.sign_in("tokyo.manager").await;
    let page = manager.get("/certificates?within=all").await.text();
    let table = element(&page, "table", "certificates");
    assert!(table.contains(&fingerprint("tokyo-terminal")), "{table}");
    assert!(!table.contains(&fingerprint("osaka-terminal")), "{table}");
    assert!(!page.contains("271000031"), "nothing of Osaka: {page}");

    let page = manager.get("/rollout").await.text();
    let at_risk = element(&page, "table", "at-risk");
    let tokyo = format!(r#"data-site="{}""#, chain.tokyo_planned.code);
    let osaka = format!(r#"data-site="{}""#, chain.osaka_planned.code);
    assert!(at_risk.contains(&tokyo), "{at_risk}");
    assert!(at_risk.contains(r#"data-status="overdue""#), "{at_risk}");
    assert!(!at_risk.contains(&osaka), "{at_risk}");
    let prefectures = element(&page, "table", "prefectures");
    assert!(
        prefectures.contains(r#"data-prefecture="13""#),
        "{prefectures}"
    );
    assert!(
        !prefectures.contains(r#"data-prefecture="27""#),
        "{prefectures}"
    );

    // The chain administrator sees both.
    let admin = chain.sign_in("admin").await;
    let page = admin.get("/rollout").await.text();
    let at_risk = element(&page, "table", "at-risk");
    assert!(
        at_risk.contains(&tokyo) && at_risk.contains(&osaka),
        "{at_risk}"
    );
}

#[tokio::test]
async fn the_audit_search_finds_lookups_and_its_exports_are_audited_without_clear_numbers() {
    let chain = Fixture::new().await;
    let auditor = chain.sign_in("auditor").await;
    let busy = chain.tokyo_busy.code.to_string();
    let patient = chain.patient();

    let page = auditor.get(&format!("/audit?site={busy}")).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let results = element(&html, "table", "audit-results");
    assert_eq!(
        results
            .matches(&format!(r#"data-site="{busy}" data-kind="lookup""#))
            .count(),
        3,
        "{results}"
    );
    assert!(
        results.contains(&patient.as_str()[..16]),
        "the keyed hash: {results}"
    );
    let verification = element(&html, "table", "verification");
    assert!(
        verification.contains(&format!(r#"data-site="{busy}""#)),
        "{verification}"
    );
    assert!(html.contains(&format!(
        r#"id="audit-csv" href="/audit/export.csv?site={busy}""#
    )));
    assert!(html.contains(&format!(
        r#"id="audit-report" href="/audit/report?site={busy}""#
    )));
    let other = auditor
        .get(&format!("/audit?site={}", chain.osaka_planned.code))
        .await
        .text();
    assert!(!element(&other, "table", "audit-results").contains("data-kind=\"lookup\""));

    // By insurance card details: hashed, and the search goes on by the hash alone.
    let by_card = auditor
        .get(&format!(
            "/audit?insurer={INSURER}&symbol={SYMBOL}&number={INSURED_NUMBER}&branch="
        ))
        .await;
    assert_eq!(by_card.status, 303, "{}", by_card.text());
    let location = by_card.header("location").unwrap().to_string();
    assert!(
        location.contains(&format!("patient_ref={}", patient.as_str())),
        "{location}"
    );
    assert!(!location.contains(INSURED_NUMBER), "{location}");
    let found = auditor.get(&location).await.text();
    assert_eq!(
        element(&found, "table", "audit-results")
            .matches("data-kind=\"lookup\"")
            .count(),
        3
    );
    assert!(
        !found.contains(INSURED_NUMBER),
        "the page never shows the number"
    );

    // Both exports are audited, naming the auditor and the search.
    let csv = auditor.get(&format!("/audit/export.csv?site={busy}")).await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(csv.body.starts_with("\u{feff}".as_bytes()));
    let csv_text = csv.text();
    assert_eq!(csv_text.trim_end().lines().count(), 4, "{csv_text}");
    assert!(csv_text.contains(patient.as_str()), "{csv_text}");
    let report = auditor
        .get(&format!(
            "/audit/report?site={busy}&patient_ref={}",
            patient.as_str()
        ))
        .await;
    assert_eq!(report.status, 200, "{}", report.text());
    let report_text = report.text();
    assert!(report_text.contains("監査報告"), "{report_text}");
    let exports = chain.exports().await;
    assert_eq!(exports.len(), 2, "{exports:?}");
    assert!(
        exports[0].starts_with(&format!("audit search CSV (site {busy})"))
            && exports[0].ends_with("exported by account auditor"),
        "{exports:?}"
    );
    assert!(exports[1].starts_with("audit report ("), "{exports:?}");
    assert!(exports[1].contains(patient.as_str()), "{exports:?}");

    // No stored or exported field holds the insured number in clear.
    for (what, text) in [("CSV", &csv_text), ("report", &report_text)] {
        assert!(!text.contains(INSURED_NUMBER), "{what}: {text}");
    }
    let client = chain.store.pool().get().await.unwrap();
    for sql in [
        "SELECT coalesce(string_agg(body::text, ' '), '') FROM events",
        "SELECT coalesce(string_agg(detail, ' '), '') FROM security_events",
    ] {
        let stored: String = client.query_one(sql, &[]).await.unwrap().get(0);
        assert!(!stored.contains(INSURED_NUMBER), "{sql}: {stored}");
    }

    // An auditor has no fleet pages, and a viewer no audit pages.
    assert_eq!(auditor.get("/certificates").await.status, 403);
    let viewer = chain.sign_in("viewer").await;
    assert_eq!(viewer.get("/audit").await.status, 403);
    assert_eq!(
        viewer
            .get(&format!("/audit/export.csv?site={busy}"))
            .await
            .status,
        403
    );
    assert_eq!(
        chain.exports().await.len(),
        2,
        "refused exports record nothing"
    );
}

/// Issue 16: the JSON API and the dashboard search the audit trail through one service, so the
/// same query string gives the same rows in the same order (a date is a whole Tokyo day, an
/// RFC 3339 time is that instant, on both), and what one refuses the other refuses.
#[tokio::test]
async fn the_api_and_the_page_give_the_same_audit_rows_for_the_same_query() {
    let chain = Fixture::new().await;
    let auditor = chain.sign_in("auditor").await;
    let busy = chain.tokyo_busy.code.to_string();
    let patient = chain.patient();
    let now = OffsetDateTime::now_utc();
    let today = now.to_offset(time::macros::offset!(+9)).date().to_string();
    let an_hour_ago = encode(
        &(now - Duration::hours(1))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
    );
    let ids_in_page = |html: &str| -> Vec<String> {
        element(html, "table", "audit-results")
            .split(r#"data-event=""#)
            .skip(1)
            .map(|rest| rest[..rest.find('"').unwrap()].to_string())
            .collect()
    };
    for (query, some) in [
        (format!("site={busy}"), true),
        (format!("patient_ref={}", patient.as_str()), true),
        (format!("from={an_hour_ago}&kind=lookup"), true),
        (
            format!("site={busy}&from={today}&to={today}&staff=P1"),
            false,
        ),
        (format!("month={}", &today[..7]), false),
        (format!("site={}", chain.osaka_planned.code), false),
    ] {
        let api = auditor.get(&format!("/api/v1/audit/events?{query}")).await;
        assert_eq!(api.status, 200, "{query}: {}", api.text());
        let api: Vec<String> = serde_json::from_slice::<Vec<serde_json::Value>>(&api.body)
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect();
        let page = auditor.get(&format!("/audit?{query}")).await;
        assert_eq!(page.status, 200, "{query}: {}", page.text());
        assert_eq!(api, ids_in_page(&page.text()), "{query}");
        if some {
            assert_eq!(api.len(), 3, "{query}: the busy site's three lookups");
        }
    }
    for query in [
        "kind=reader_change",
        "from=yesterday",
        "disaster_window=maybe",
        "month=2026-12&from=2026-12-01",
    ] {
        let api = auditor.get(&format!("/api/v1/audit/events?{query}")).await;
        let page = auditor.get(&format!("/audit?{query}")).await;
        assert_eq!((api.status, page.status), (400, 400), "{query}");
    }
}

/// Issue 16: an audit CSV is the whole search, however large, streamed as PostgreSQL returns
/// the rows (never cut at a page size), and a failure midway breaks the download where the
/// reader sees it (no terminating chunk) instead of ending a short file that looks whole.
#[tokio::test(flavor = "multi_thread")]
async fn an_audit_export_larger_than_any_page_is_whole_and_a_failure_midway_is_visible() {
    // More than every page size there is (the dashboard's 200, a JSON page's 1,000, the 100,000
    // the dashboard's export used to refuse), and more bytes than the sockets between
    // PostgreSQL, central and the reader can hold, so the export is still running when cut.
    const ROWS: i64 = 200_000;
    let chain = Fixture::new().await;
    let busy = chain.tokyo_busy.code.to_string();
    let owner = chain.store.pool().get().await.unwrap();
    owner
        .execute(
            "INSERT INTO events (event_id, site_code, stream_id, sequence, terminal_id,
                                 occurred_at, kind, body)
             SELECT gen_random_uuid(), $1, $2, 1000 + g, 'T01',
                    now() - interval '1 hour' + g * interval '1 millisecond', 'lookup',
                    jsonb_build_object('outcome', 'valid', 'staff_id', 'S' || (g % 50),
                                       'staff_role', 'clerk')
             FROM generate_series(1, $3::bigint) g",
            &[&busy, &chain.tokyo_busy.stream.0, &ROWS],
        )
        .await
        .unwrap();
    let auditor = chain.sign_in("auditor").await;
    let expected = ROWS as usize + 3 + 1; // the generated rows, the seeded lookups, the header
    for path in [
        format!("/audit/export.csv?site={busy}"),
        format!("/api/v1/audit/events?site={busy}&format=csv"),
    ] {
        let csv = auditor.get(&path).await;
        assert_eq!(csv.status, 200, "{path}");
        let text = csv.text();
        assert_eq!(
            text.lines().count(),
            expected,
            "{path}: every row, nothing cut"
        );
        assert!(
            text.trim_end().ends_with(|c: char| c.is_ascii_hexdigit()),
            "{path}"
        );
    }

    // Cut midway: the reader has the first rows when PostgreSQL ends central's connection.
    let mut stream = tokio::net::TcpStream::connect(chain.addr).await.unwrap();
    let request = format!(
        "GET /audit/export.csv?site={busy} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Cookie: {}\r\n\r\n",
        chain.addr,
        auditor.cookie.as_deref().unwrap()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = vec![0u8; 64 * 1024];
    stream.read_exact(&mut raw).await.unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw[..200])
    );
    let cut: bool = owner
        .query_one(
            "SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
             WHERE state = 'active' AND pid <> pg_backend_pid()
               AND query LIKE 'SELECT event_id, site_code, stream_id, sequence, terminal_id%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        cut,
        "the export had finished before it could be cut: it must be larger than the buffers"
    );
    tokio::time::timeout(e2e::patience(), stream.read_to_end(&mut raw))
        .await
        .expect("central ends the broken download")
        .ok();
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..head_end]).to_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(
        !raw.ends_with(b"\r\n0\r\n\r\n"),
        "a broken export must not end like a whole one"
    );
    let rows = raw[head_end..].windows(5).filter(|w| w == b" JST,").count();
    assert!(rows < ROWS as usize, "cut midway, yet {rows} rows arrived");
}

/// Issue 15, item 8: the JSON API of rollouts is scoped like the rollout page. An area manager
/// sees a chain-wide rollout with their own sites only, and the deny list of revoked
/// certificates (every site's) is for chain administrators.
#[tokio::test]
async fn the_rollouts_api_is_scoped_and_revocations_are_for_administrators() {
    let chain = Fixture::new().await;
    let admin = chain.sign_in("admin").await;
    let html = admin.get("/rollout").await.text();
    let started = admin
        .post(
            "/rollouts",
            &[
                ("target_version", "0.2.0"),
                ("waves", "5,25,100"),
                ("window", "any"),
                ("on_gate_failure", "pause"),
            ],
            &html,
        )
        .await;
    assert_eq!(started.status, 303, "{}", started.text());
    let id = started
        .header("location")
        .unwrap()
        .strip_prefix("/rollouts/")
        .unwrap()
        .to_string();
    // The controller's pass assigns the agents' sites to the waves.
    chain
        .store
        .step_rollouts(OffsetDateTime::now_utc())
        .await
        .unwrap();
    let osaka = chain.osaka_planned.code.to_string();
    let tokyo = chain.tokyo_planned.code.to_string();

    let everyone = admin.get("/api/v1/rollouts").await.text();
    assert!(
        everyone.contains(&osaka) && everyone.contains(&tokyo),
        "{everyone}"
    );

    let manager = chain.sign_in("tokyo.manager").await;
    for path in [
        "/api/v1/rollouts".to_string(),
        format!("/api/v1/rollouts/{id}"),
    ] {
        let answer = manager.get(&path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        let text = answer.text();
        assert!(text.contains(&tokyo), "{path}: {text}");
        assert!(!text.contains(&osaka), "{path} shows Osaka: {text}");
    }

    for login in ["tokyo.manager", "viewer", "auditor"] {
        let answer = chain.sign_in(login).await.get("/api/v1/revocations").await;
        assert_eq!(answer.status, 403, "{login}: {}", answer.text());
    }
    assert_eq!(admin.get("/api/v1/revocations").await.status, 200);
}
