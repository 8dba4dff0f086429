//! central's OpenAPI document (`services/central-http/openapi.json`) against the real API: every route
//! of the route table (`central_http::routes::table`) is documented and every documented operation
//! is a route; with data seeded
//! through the real paths (ingest, inventories, the maintenance passes, the API's own PUT and
//! POST) against real PostgreSQL, every documented operation is called through the router (as
//! an operator's certificate, as the mTLS listener hands it over, or with an account's API
//! token), and each answer (successes and every kind of refusal) must match the response
//! documented for its status, media type and body schema. Documented fields are required and undocumented ones refused, so a field that
//! disappears, changes type or appears without documentation fails here.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use central_store::{AlertThresholds, CertificateAlertDays, Store};
use e2e::TestDb;
use e2e::openapi::{self, find_response, validate_at};
use fleet_tls::listen::PeerCertificates;
use onshi_domain::events::{
    CardCheck, CardCheckResult, CertificateInfo, CertificateInventory, Consent, ConsentChoice,
    EventBody, FleetEvent, InfoCategory, InfoView, Inventory, LineType, LinkChange, LinkState,
    LinkTarget, OutboxPressure, PressureLevel, ReaderChange, ReaderState, StreamId,
};
use onshi_domain::patient::PatientRef;
use onshi_domain::site::{SiteCode, TerminalId};
use serde_json::{Value, json};
use time::OffsetDateTime;
// tower's `Service` (tonic re-exports it): the router is called in process, as the listener does.
use tonic::codegen::Service;
use uuid::Uuid;

const DOCUMENT: &str = include_str!("../../../central-http/openapi.json");

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
}

// ------------------------------------------------------------------------------- routes

/// Every `(METHOD, path)` of the JSON API in central's one route table (`central_http::routes`),
/// the table that also builds the router and decides each route's permission.
fn api_routes() -> BTreeSet<(String, String)> {
    central_http::routes::table()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/"))
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect()
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_a_route() {
    let routes = api_routes();
    let documented: BTreeSet<(String, String)> =
        openapi::operations(&document()).into_iter().collect();
    let undocumented: Vec<String> = routes
        .difference(&documented)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    let unrouted: Vec<String> = documented
        .difference(&routes)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes in central_http::routes::table() without an operation in services/central-http/openapi.json:\n  {}\n\
         operations in openapi.json that the route table does not have:\n  {}",
        undocumented.join("\n  "),
        unrouted.join("\n  ")
    );
}

// ------------------------------------------------------------------------------- the document

/// Every `$ref` in `value` (with its pointer), for the consistency check.
fn references<'v>(value: &'v Value, at: String, out: &mut Vec<(String, &'v str)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref" {
                    if let Some(target) = child.as_str() {
                        out.push((at.clone(), target));
                    }
                } else {
                    references(child, format!("{at}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                references(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_is_consistent() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut refs = Vec::new();
    references(&doc, String::new(), &mut refs);
    let dangling: Vec<String> = refs
        .iter()
        .filter(|(_, target)| {
            target
                .strip_prefix('#')
                .and_then(|t| doc.pointer(t))
                .is_none()
        })
        .map(|(at, target)| format!("{at} → {target}"))
        .collect();
    assert!(dangling.is_empty(), "dangling $refs: {dangling:?}");

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["operatorCertificate"]["type"], "mutualTLS");
    assert_eq!(schemes["apiToken"]["type"], "http");
    assert_eq!(schemes["apiToken"]["scheme"], "bearer");
    assert_eq!(schemes["session"]["type"], "apiKey");
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["session"]["name"], "onshi_session");
    assert_eq!(
        doc["security"],
        json!([{"operatorCertificate": []}, {"apiToken": []}, {"session": []}]),
        "the three schemes are alternatives"
    );

    let mut ids = BTreeSet::new();
    for (method, template) in openapi::operations(&doc) {
        let operation = &doc["paths"][&template][method.to_ascii_lowercase()];
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(
            ids.insert(id.to_string()),
            "{method} {template}: operationId {id:?} again"
        );
        // Every `{name}` of the template is a documented path parameter.
        let parameters: Vec<Value> = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|p| match p["$ref"].as_str() {
                Some(r) => doc.pointer(&r[1..]).cloned().unwrap_or(Value::Null),
                None => p,
            })
            .collect();
        for name in template
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            assert!(
                parameters
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                "{method} {template}: path parameter {name} is not documented"
            );
        }
        let responses = operation["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {template} documents no success"
        );
        for status in ["401", "403", "500", "503"] {
            assert!(
                responses.contains_key(status),
                "{method} {template} does not document {status}"
            );
        }
    }
}

// ------------------------------------------------------------------------------- calling the API

/// One answer of the router.
#[derive(Debug)]
struct Answer {
    status: u16,
    media_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The router with the document beside it: every call is checked against the document and
/// what does not match is kept, so one run lists every mismatch.
struct Api {
    router: axum::Router,
    doc: Value,
    operator: Caller,
    mismatches: Vec<String>,
    /// (METHOD, template, status) of every checked answer.
    answered: BTreeSet<(String, String, u16)>,
}

/// A request a caller makes and how central must refuse it: status and error `code`.
type AsCaller = (
    Caller,
    &'static str,
    String,
    Option<Value>,
    u16,
    &'static str,
);

/// Fails unless `answer` is the refusal `status` with `code`.
fn assert_refused(answer: &Answer, method: &str, path: &str, status: u16, code: &str) {
    let got = if answer.media_type == "text/plain" {
        "text/plain".to_string()
    } else {
        answer.json()["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        (answer.status, got.as_str()),
        (status, code),
        "{method} {path}: {}",
        answer.text()
    );
}

fn certificates(path: &std::path::Path) -> PeerCertificates {
    PeerCertificates(Arc::new(
        fleet_tls::config::load_certificates(path).expect("a certificate of the dev PKI"),
    ))
}

/// Who calls.
#[derive(Debug, Clone)]
enum Caller {
    /// A client certificate, as the mTLS listener hands it over (an operator's, an agent's).
    Certificate(PeerCertificates),
    /// `Authorization: Bearer`, as on the web listener (no client certificate).
    Token(String),
    /// A signed-in browser: the session cookie's token and the session's CSRF token.
    Session(String, String),
    /// No credential at all.
    Nobody,
}

impl Api {
    /// Calls the router as the operator and checks the answer.
    async fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let operator = self.operator.clone();
        self.call_json_as(operator, method, path, body).await
    }

    async fn call_json_as(
        &mut self,
        caller: Caller,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        self.call_as(caller, method, path, body).await
    }

    async fn call_as(
        &mut self,
        caller: Caller,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let answer = self.send(caller, method, path, body).await;
        self.check(method, path, &answer);
        answer
    }

    /// Calls the router, checking nothing.
    async fn send(
        &self,
        caller: Caller,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if body.is_some() || !matches!(method, "GET" | "HEAD") {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Caller::Token(token) = &caller {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Caller::Session(token, csrf) = &caller {
            request = request
                .header(header::COOKIE, format!("onshi_session={token}"))
                .header("x-csrf-token", csrf);
        }
        let mut request = request
            .body(body.map_or_else(Body::empty, Body::from))
            .unwrap();
        if let Caller::Certificate(peer) = caller {
            request.extensions_mut().insert(peer);
        }
        let mut service = self.router.clone();
        std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut service, cx))
            .await
            .unwrap();
        let response = service.call(request).await.unwrap();
        let status = response.status().as_u16();
        let media_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            media_type,
            body,
        }
    }

    /// Calls as the operator and insists on `status` (the seeding depends on it).
    async fn expect(
        &mut self,
        status: u16,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let operator = self.operator.clone();
        self.expect_as(operator, status, method, path, body).await
    }

    async fn expect_as(
        &mut self,
        caller: Caller,
        status: u16,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let answer = self.call_json_as(caller, method, path, body).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.text());
        answer.json()
    }

    fn check(&mut self, method: &str, path: &str, answer: &Answer) {
        let what = format!("{method} {path} → {} {}", answer.status, answer.media_type);
        let found = match find_response(&self.doc, method, path, answer.status) {
            Ok(found) => found,
            Err(error) => {
                return self
                    .mismatches
                    .push(format!("{what}: {error}; body: {}", answer.text()));
            }
        };
        self.answered
            .insert((found.method.clone(), found.template.clone(), answer.status));
        if answer.body.is_empty() && found.media_types().is_empty() {
            return;
        }
        let pointer = match found.schema_pointer(&answer.media_type) {
            Ok(pointer) => pointer,
            Err(error) => {
                return self
                    .mismatches
                    .push(format!("{what}: {error}; body: {}", answer.text()));
            }
        };
        let instance = if answer.media_type == "application/json" {
            match serde_json::from_slice(&answer.body) {
                Ok(value) => value,
                Err(error) => {
                    return self
                        .mismatches
                        .push(format!("{what}: the body is not JSON ({error})"));
                }
            }
        } else {
            Value::String(answer.text())
        };
        if let Err(violations) = validate_at(&self.doc, &pointer, &instance) {
            self.mismatches.push(format!(
                "{what} does not match #{pointer}:\n    {}",
                openapi::report(&violations).replace('\n', "\n    ")
            ));
        }
    }

    /// Fails only with mismatches (for tests that call a few operations).
    fn finish_quietly(self) {
        assert!(
            self.mismatches.is_empty(),
            "answers that do not match openapi.json:\n  {}",
            self.mismatches.join("\n  ")
        );
    }

    /// Fails with every mismatch, and with every documented operation no call answered with a
    /// success.
    fn finish(self) {
        let succeeded: BTreeSet<(String, String)> = self
            .answered
            .iter()
            .filter(|(_, _, status)| (200..300).contains(status))
            .map(|(m, t, _)| (m.clone(), t.clone()))
            .collect();
        let untried: Vec<String> = openapi::operations(&self.doc)
            .into_iter()
            .filter(|op| !succeeded.contains(op))
            .map(|(m, t)| format!("{m} {t}"))
            .collect();
        let mut problems = Vec::new();
        if !self.mismatches.is_empty() {
            problems.push(format!(
                "{} answers do not match services/central-http/openapi.json:\n  {}",
                self.mismatches.len(),
                self.mismatches.join("\n  ")
            ));
        }
        if !untried.is_empty() {
            problems.push(format!(
                "documented operations this test never saw succeed (call them here):\n  {}",
                untried.join("\n  ")
            ));
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

// ------------------------------------------------------------------------------- seeding

fn patient(n: u8) -> PatientRef {
    PatientRef::parse(&format!("{n:02x}").repeat(32)).unwrap()
}

fn event(site: &SiteCode, sequence: u64, body: Option<EventBody>) -> FleetEvent {
    let mut event =
        FleetEvent::try_from(e2e::uplink::lookup_event(site.as_str(), sequence)).unwrap();
    match body {
        Some(body) => event.body = body,
        None => {
            if let EventBody::Lookup(lookup) = &mut event.body {
                lookup.patient_ref = Some(patient(1));
                lookup.staff_id = Some("C1".into());
            }
        }
    }
    event
}

fn terminal_certificate(now: OffsetDateTime) -> CertificateInfo {
    CertificateInfo {
        role: "terminal".into(),
        subject: "CN=T01".into(),
        issuer: "CN=onshi test CA".into(),
        serial_hex: "0a1b".into(),
        sha256_fingerprint: "cd".repeat(32),
        not_before: now - time::Duration::days(345),
        not_after: now + time::Duration::days(20),
        key_type: "EC".into(),
        key_bits: 256,
        source: "/etc/onshi/terminal.pem".into(),
    }
}

fn reader(state: ReaderState) -> ReaderChange {
    ReaderChange {
        reader_name: "Virtual PCD 00 00".into(),
        state,
        detail: None,
        cards_read: 3,
        errors: 0,
        last_error: None,
    }
}

/// One event of every kind, sequences 1..=9.
fn every_kind(site: &SiteCode, now: OffsetDateTime) -> Vec<FleetEvent> {
    let bodies = [
        None,
        Some(EventBody::Consent(Consent {
            patient_ref: patient(1),
            consented_at: now,
            available_until: now + time::Duration::hours(24),
            limit_info: ConsentChoice::Given,
            drug: ConsentChoice::Given,
            checkup: ConsentChoice::None,
            diagnosis: ConsentChoice::HardToObtain,
            surgery: ConsentChoice::Expired,
        })),
        Some(EventBody::InfoView(InfoView {
            patient_ref: patient(1),
            category: InfoCategory::Drug,
            allowed: true,
            refusal_reason: None,
            staff_id: Some("D1".into()),
            staff_role: Some("doctor".into()),
            policy_version: Some("jp-2020-11".into()),
            disaster_window_id: None,
            source: None,
        })),
        Some(EventBody::ReaderChange(reader(ReaderState::CardPresent))),
        Some(EventBody::LinkChange(LinkChange {
            target: LinkTarget::Onshi,
            state: LinkState::Up,
            detail: None,
            rtt_ms: Some(12),
            line_type: Some(LineType::IpVpn),
        })),
        Some(EventBody::CertificateInventory(CertificateInventory {
            certificates: vec![terminal_certificate(now)],
            full_snapshot: true,
        })),
        Some(EventBody::CardCheck(CardCheck {
            reader_name: "Virtual PCD 00 00".into(),
            result: CardCheckResult::WrongPin,
            pin_tries_left: Some(2),
            detail: None,
        })),
        Some(EventBody::OutboxPressure(OutboxPressure {
            level: PressureLevel::Warning,
            used_bytes: 80,
            budget_bytes: 100,
        })),
        Some(EventBody::Loss(onshi_domain::events::Loss {
            first_sequence: 9,
            last_sequence: 9,
            reason: "damaged record quarantined".into(),
        })),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| event(site, i as u64 + 1, body))
        .collect()
}

fn day(at: OffsetDateTime) -> String {
    at.to_offset(time::macros::offset!(+9)).date().to_string()
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// `code` with its check digit changed.
fn wrong_check_digit(code: &str) -> String {
    let last = code.as_bytes()[9] - b'0';
    format!("{}{}", &code[..9], (last + 1) % 10)
}

struct Chain {
    _db: TestDb,
    _pki: e2e::Pki,
    store: Store,
    api: Api,
    /// Tokyo: a stream with one event of every kind, a session, an inventory.
    tokyo: SiteCode,
    /// Osaka: a stream with a gap and events still at the site; never connected.
    osaka: SiteCode,
    agent: PeerCertificates,
}

/// A chain of two sites, seeded through the store as ingest and the maintenance tasks do.
async fn chain() -> Chain {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let now = OffsetDateTime::now_utc();
    store
        .ensure_partitions(now - time::Duration::days(1), 1)
        .await
        .unwrap();
    let tokyo = SiteCode::parse(&e2e::site_code("131000101")).unwrap();
    let osaka = SiteCode::parse(&e2e::site_code("274000102")).unwrap();
    let pki = e2e::Pki::new(&[tokyo.as_str(), osaka.as_str()]).unwrap();
    let operator = certificates(&pki.paths.operator("e2e").0);
    let agent = certificates(&pki.paths.agent(tokyo.as_str()).0);

    let stream = StreamId(Uuid::now_v7());
    store
        .open_stream(&tokyo, stream, "0.1.0", "cfg-1", 9)
        .await
        .unwrap();
    store
        .ingest_batch(&tokyo, stream, &every_kind(&tokyo, now))
        .await
        .unwrap();
    store
        .session_opened(&tokyo, stream, Uuid::now_v7())
        .await
        .unwrap();
    store
        .record_inventory(
            &tokyo,
            stream,
            &Inventory {
                taken_at: now,
                readers: vec![reader(ReaderState::PresentEmpty)],
                certificates: vec![terminal_certificate(now)],
                terminal_ids: vec![TerminalId::parse("T01").unwrap()],
            },
        )
        .await
        .unwrap();

    let gap = StreamId(Uuid::now_v7());
    store
        .open_stream(&osaka, gap, "0.1.0", "cfg-1", 5)
        .await
        .unwrap();
    let events: Vec<FleetEvent> = [1, 2, 4].iter().map(|&s| event(&osaka, s, None)).collect();
    store.ingest_batch(&osaka, gap, &events).await.unwrap();

    let api = Api {
        // With a notification key, so webhooks can be made.
        router: central_http::routes::router_with(central_http::state::ApiState {
            store: store.clone(),
            patient_key: None,
            deny: fleet_tls::deny::DenyList::default(),
            limiter: central_core::auth::rate_limit::SignInLimiter::default(),
            notification_key: Some(Arc::new(
                central_core::notify::key::NotificationKey::from_hex(&"42".repeat(32)).unwrap(),
            )),
        }),
        doc: document(),
        operator: Caller::Certificate(operator),
        mismatches: Vec::new(),
        answered: BTreeSet::new(),
    };
    Chain {
        _db: db,
        _pki: pki,
        store,
        api,
        tokyo,
        osaka,
        agent,
    }
}

impl Chain {
    /// The maintenance passes: availability, alerts (twice: a condition is recorded, then
    /// opened), certificate projection and expiry alerts, the rollout controller.
    async fn maintain(&self) {
        let now = OffsetDateTime::now_utc();
        self.store
            .check_availability(now, Duration::from_secs(90))
            .await
            .unwrap();
        let zero = AlertThresholds {
            gap: Duration::ZERO,
            divergence: Duration::ZERO,
            unavailable: Duration::ZERO,
        };
        for _ in 0..2 {
            self.store.check_alerts(zero).await.unwrap();
        }
        self.store
            .check_certificates(now, CertificateAlertDays::default())
            .await
            .unwrap();
        self.store.step_rollouts(now).await.unwrap();
    }
}

// ------------------------------------------------------------------------------- the test

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let mut chain = chain().await;
    let (tokyo, osaka) = (chain.tokyo.to_string(), chain.osaka.to_string());
    let now = OffsetDateTime::now_utc();
    let today = day(now);
    let api = &mut chain.api;

    // Changes through the API first: the chain is open around the clock, so Osaka (never
    // connected) alerts.
    let always: Value = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| (d.to_string(), json!(["00:00-24:00"])))
        .collect::<serde_json::Map<_, _>>()
        .into();
    api.expect(
        200,
        "PUT",
        "/api/v1/opening-hours",
        Some(json!({"weekly": always, "closed_on_national_holidays": false})),
    )
    .await;
    let site = format!("/api/v1/sites/{tokyo}");
    api.expect(200, "GET", &format!("{site}/opening-hours"), None)
        .await;
    let own = api
        .expect(
            200,
            "PUT",
            &format!("{site}/opening-hours"),
            Some(
                json!({"weekly": {"Mon": ["14:00-18:00", "09:00-12:30"], "sat": ["09:00-13:00"]},
                        "closed_on_national_holidays": true}),
            ),
        )
        .await;
    assert_eq!(own["source"], "site");
    api.expect(
        200,
        "PUT",
        &format!("{site}/opening-hours"),
        Some(json!({"weekly": always, "closed_on_national_holidays": false})),
    )
    .await;
    let rollout = api
        .expect(
            201,
            "POST",
            "/api/v1/rollouts",
            Some(
                json!({"target_version": "0.2.0", "waves": [{"share": 50}, {"share": 100}],
                        "gates": {"max_backlog": 50}, "window": "any", "soak_secs": 0}),
            ),
        )
        .await;
    let id = rollout["id"].as_i64().expect("a rollout id");
    let unplanned = api
        .expect(200, "GET", &format!("/api/v1/sites/{osaka}/adoption"), None)
        .await;
    assert_eq!(unplanned, Value::Null, "no planned start yet");
    let start = day(now + time::Duration::days(90));
    api.expect(
        200,
        "PUT",
        &format!("{site}/adoption"),
        Some(json!({"planned_start": start})),
    )
    .await;
    api.expect(
        200,
        "PUT",
        &format!("{site}/adoption/steps/usage_application"),
        Some(json!({"done_on": today, "evidence": "application no. 123"})),
    )
    .await;
    let grace = format!("{site}/grace-notifications");
    api.expect(
        201,
        "POST",
        &grace,
        Some(json!({"category": 2, "filed_on": "2023-03-01", "line_available_on": "2023-08-31"})),
    )
    .await;
    let review = day(now + time::Duration::days(30));
    api.expect(
        201,
        "POST",
        &grace,
        Some(
            json!({"category": "special_difficulty", "filed_on": today, "review_on": review,
                    "evidence": "bureau consultation memo"}),
        ),
    )
    .await;
    let ended = api
        .expect(
            201,
            "POST",
            &grace,
            Some(
                json!({"category": "1", "filed_on": "2023-02-01", "contracted_on": "2023-02-20",
                        "evidence": "vendor contract 2023-0042.pdf"}),
            ),
        )
        .await;
    let ended_id = ended["id"].as_i64().unwrap();
    api.expect(
        200,
        "PUT",
        &format!("{grace}/{ended_id}/end"),
        Some(json!({"ended_on": "2023-06-30"})),
    )
    .await;
    api.expect(
        200,
        "PUT",
        &format!("{site}/staff"),
        Some(json!([{"id": "D1", "role": "doctor"}, {"id": "C1", "role": "clerk"}])),
    )
    .await;
    api.expect(
        200,
        "POST",
        "/api/v1/disaster-windows",
        Some(json!({"id": "kanto-2026", "prefectures": ["13", "14"],
                    "starts_at": rfc3339(now - time::Duration::hours(1)),
                    "ends_at": rfc3339(now + time::Duration::hours(48))})),
    )
    .await;
    api.expect(
        200,
        "POST",
        "/api/v1/revocations",
        Some(json!({"sha256_fingerprint": "ab".repeat(32), "reason": "laptop stolen"})),
    )
    .await;
    api.expect(
        200,
        "POST",
        &format!("{site}/revocation"),
        Some(json!({"reason": "agent key stolen", "issued_before": rfc3339(now - time::Duration::days(400))})),
    )
    .await;

    // The maintenance passes, as central's task runs them.
    chain.maintain().await;
    let api = &mut chain.api;

    // Every GET, with what it can show.
    let sites = api.expect(200, "GET", "/api/v1/sites", None).await;
    assert_eq!(sites.as_array().map(Vec::len), Some(2), "{sites}");
    let events = api
        .expect(200, "GET", &format!("{site}/events"), None)
        .await;
    assert_eq!(
        events.as_array().map(Vec::len),
        Some(9),
        "one of every kind"
    );
    api.expect(200, "GET", &format!("{site}/events?limit=2"), None)
        .await;
    api.expect(200, "GET", &format!("{site}/inventory"), None)
        .await;
    let verdict = api
        .expect(200, "GET", &format!("{site}/verification"), None)
        .await;
    assert!(
        !verdict["streams"][0]["findings"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    api.expect(
        200,
        "GET",
        &format!("/api/v1/sites/{osaka}/verification"),
        None,
    )
    .await;
    api.expect(200, "GET", "/api/v1/agents", None).await;
    let alerts = api.expect(200, "GET", "/api/v1/alerts", None).await;
    let kinds: BTreeSet<&str> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert!(
        kinds.contains("sequence_gap") && kinds.contains("site_unavailable"),
        "{alerts}"
    );
    api.expect(200, "GET", "/api/v1/alerts?all=true&limit=5", None)
        .await;
    let first = alerts[0]["id"].as_i64().unwrap();
    let acknowledged = api
        .expect(
            200,
            "POST",
            &format!("/api/v1/alerts/{first}/acknowledge"),
            None,
        )
        .await;
    assert_eq!(acknowledged["acknowledged_by"], "e2e", "{acknowledged}");
    api.expect(
        400,
        "POST",
        &format!("/api/v1/alerts/{first}/acknowledge"),
        None,
    )
    .await;
    api.expect(404, "POST", "/api/v1/alerts/999999/acknowledge", None)
        .await;
    let rollouts = api.expect(200, "GET", "/api/v1/rollouts", None).await;
    assert!(
        !rollouts[0]["sites"].as_array().unwrap().is_empty(),
        "the controller put the sites in waves: {rollouts}"
    );
    api.expect(200, "GET", &format!("/api/v1/rollouts/{id}"), None)
        .await;
    for action in ["pause", "resume", "rollback"] {
        api.expect(
            200,
            "POST",
            &format!("/api/v1/rollouts/{id}/{action}"),
            None,
        )
        .await;
    }
    let availability = api.expect(200, "GET", "/api/v1/availability", None).await;
    assert_eq!(
        availability.as_array().map(Vec::len),
        Some(2),
        "{availability}"
    );
    api.expect(200, "GET", &format!("{site}/availability"), None)
        .await;
    let certificates = api.expect(200, "GET", "/api/v1/certificates", None).await;
    assert_eq!(
        certificates.as_array().map(Vec::len),
        Some(1),
        "{certificates}"
    );
    api.expect(
        200,
        "GET",
        &format!("/api/v1/certificates?expiring_within_days=30&site={tokyo}"),
        None,
    )
    .await;
    let expiring = api
        .expect(200, "GET", "/api/v1/certificates/alerts", None)
        .await;
    assert_eq!(expiring.as_array().map(Vec::len), Some(1), "{expiring}");
    api.expect(200, "GET", "/api/v1/certificates/alerts?limit=1", None)
        .await;
    api.expect(200, "GET", "/api/v1/schema", None).await;
    let policy = api
        .expect(
            200,
            "PUT",
            "/api/v1/audit/retention",
            Some(serde_json::json!({ "kind": "link_change", "months": 24 })),
        )
        .await;
    assert!(
        policy
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "link_change" && r["months"] == 24),
        "{policy}"
    );
    api.expect(200, "GET", "/api/v1/audit/retention", None)
        .await;
    let listed = api
        .expect(200, "GET", "/api/v1/sites/search?page=1", None)
        .await;
    assert!(listed["matches"].as_i64().unwrap() >= 1, "{listed}");
    api.expect(400, "GET", "/api/v1/sites/search?prefecture=99", None)
        .await;
    api.expect(400, "GET", "/api/v1/sites/search?colour=blue", None)
        .await;
    api.expect(
        400,
        "PUT",
        "/api/v1/audit/retention",
        Some(serde_json::json!({ "kind": "lookups", "months": 24 })),
    )
    .await;
    let served = api.expect(200, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(
        served["openapi"],
        document()["openapi"],
        "central serves the document this test checks"
    );
    let trail = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/audit/events?site={tokyo}"),
            None,
        )
        .await;
    assert_eq!(trail.as_array().map(Vec::len), Some(4), "{trail}");
    let from = rfc3339(now - time::Duration::hours(1)).replace('+', "%2B");
    api.expect(
        200,
        "GET",
        &format!(
            "/api/v1/audit/events?from={from}&kind=lookup,info_view&staff=D1&result=allowed&limit=10"
        ),
        None,
    )
    .await;
    let csv = api
        .call(
            "GET",
            &format!("/api/v1/audit/events?site={tokyo}&format=csv"),
            None,
        )
        .await;
    assert_eq!((csv.status, csv.media_type.as_str()), (200, "text/csv"));
    let month = &today[..7];
    let report = api
        .call("GET", &format!("/api/v1/audit/report?month={month}"), None)
        .await;
    assert_eq!(
        (report.status, report.media_type.as_str()),
        (200, "text/html")
    );
    let rules = api
        .expect(200, "GET", &format!("{site}/access-rules"), None)
        .await;
    assert_eq!(rules["staff"].as_array().map(Vec::len), Some(2), "{rules}");
    let none = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/sites/{osaka}/access-rules"),
            None,
        )
        .await;
    assert_eq!(none, Value::Null, "Osaka has neither roster nor window");
    let adoption = api
        .expect(200, "GET", &format!("{site}/adoption"), None)
        .await;
    assert_eq!(
        adoption["grace_notifications"].as_array().map(Vec::len),
        Some(1)
    );
    api.expect(
        200,
        "GET",
        "/api/v1/adoption/subsidy?facility=hospital&readers=2&cost=3000000&reader_applied_on=2021-03-01",
        None,
    )
    .await;
    api.expect(
        200,
        "GET",
        "/api/v1/adoption/subsidy?facility=clinic_or_pharmacy&cost=500000&reader_applied_on=2022-01-10",
        None,
    )
    .await;
    api.expect(200, "GET", "/api/v1/adoption/prefectures", None)
        .await;
    let filed = api.expect(200, "GET", &grace, None).await;
    let statuses: BTreeSet<&str> = filed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["status"].as_str())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["active", "ended", "overdue"]),
        "{filed}"
    );
    for query in ["", "?status=active", "?status=overdue", "?status=ended"] {
        api.expect(
            200,
            "GET",
            &format!("/api/v1/grace-notifications{query}"),
            None,
        )
        .await;
    }
    api.expect(200, "GET", "/api/v1/revocations", None).await;

    // Every kind of refusal, each a JSON error with its code (a value the extractors cannot
    // decode at all too); only a body over the framework's limit is plain text.
    let plain = "text/plain";
    let refusals: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        // Site codes and limits the handlers check.
        (
            "GET",
            format!("/api/v1/sites/{}/events", wrong_check_digit(&tokyo)),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("{site}/events?limit=0"),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("{site}/events?limit=many"),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/alerts?all=yes".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/alerts?limit=1001".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/rollouts/first".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/rollouts/999999".into(),
            None,
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/v1/rollouts/999999/pause".into(),
            None,
            404,
            "not_found",
        ),
        (
            "POST",
            format!("/api/v1/rollouts/{id}/resume"),
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            format!("/api/v1/rollouts/{id}/explode"),
            None,
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/v1/rollouts".into(),
            Some(json!({"target_version": "0.3.0"})),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/rollouts".into(),
            Some(json!({"target_version": "0.3.0", "waves": [{"share": 100}], "colour": "red"})),
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("/api/v1/sites/{}/availability", e2e::site_code("011000103")),
            None,
            404,
            "not_found",
        ),
        (
            "PUT",
            "/api/v1/opening-hours".into(),
            Some(json!({"weekly": {"mon": ["9-18"]}})),
            400,
            "bad_request",
        ),
        (
            "PUT",
            format!("{site}/opening-hours"),
            Some(json!({"weekly": {}, "open": true})),
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/certificates?expiring_within_days=-1".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/certificates?expiring_within_days=soon".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/certificates?site=13".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/certificates/alerts?limit=0".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/audit/events?colour=red".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/audit/events?consent=everything".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/audit/events?month=2026-13".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/audit/events?format=xml".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/audit/events?insurer=06139156&number=1234".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/audit/report?from=yesterday".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "PUT",
            format!("{site}/staff"),
            Some(json!([{"id": "N1", "role": "nurse"}])),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/disaster-windows".into(),
            Some(json!({"id": "x", "prefectures": ["99"]})),
            400,
            "bad_request",
        ),
        (
            "PUT",
            format!("{site}/adoption"),
            Some(json!({"planned_start": "April"})),
            400,
            "bad_request",
        ),
        (
            "PUT",
            format!("{site}/adoption/steps/coffee"),
            Some(json!({"done_on": today, "evidence": "x"})),
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/adoption/subsidy?facility=hospital&cost=1&reader_applied_on=2021-03-01".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/adoption/subsidy?facility=hospital".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            grace.clone(),
            Some(json!({"category": 7, "filed_on": today})),
            400,
            "bad_request",
        ),
        (
            "PUT",
            format!("{grace}/{ended_id}/end"),
            Some(json!({"ended_on": "2023-07-01"})),
            400,
            "bad_request",
        ),
        (
            "PUT",
            format!("{grace}/latest/end"),
            Some(json!({"ended_on": "2023-07-01"})),
            400,
            "bad_request",
        ),
        (
            "PUT",
            format!("/api/v1/sites/{osaka}/grace-notifications/{ended_id}/end"),
            Some(json!({"ended_on": "2023-07-01"})),
            404,
            "not_found",
        ),
        (
            "PUT",
            format!("{grace}/999999/end"),
            Some(json!({"ended_on": "2023-07-01"})),
            404,
            "not_found",
        ),
        (
            "GET",
            "/api/v1/grace-notifications?status=late".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/grace-notifications?site=1".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/revocations".into(),
            Some(json!({"sha256_fingerprint": "abc", "reason": "x"})),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/revocations".into(),
            Some(json!({"sha256_fingerprint": "ab".repeat(32), "reason": " "})),
            400,
            "bad_request",
        ),
    ];
    for (method, path, body, status, code) in refusals {
        let answer = api.call(method, &path, body).await;
        assert_refused(&answer, method, &path, status, code);
    }
    // A body that is not JSON at all, and one over the framework's 2 MB limit.
    let operator = api.operator.clone();
    let broken = api
        .call_as(
            operator.clone(),
            "POST",
            "/api/v1/rollouts",
            Some(b"{\"target_version\": ".to_vec()),
        )
        .await;
    assert_eq!(broken.status, 400, "{}", broken.text());
    let huge = api
        .call_as(
            operator,
            "PUT",
            &format!("{site}/staff"),
            Some(vec![b' '; 3 << 20]),
        )
        .await;
    assert_eq!(
        (huge.status, huge.media_type.as_str()),
        (413, plain),
        "{}",
        huge.text()
    );

    // Accounts and their API tokens: the operator makes accounts and names the site; a token
    // (issued as `central account token` does) acts as its account.
    api.expect(
        201,
        "POST",
        "/api/v1/accounts",
        Some(
            json!({"login": "IT-Nightly", "display_name": "Nightly export", "role": "viewer",
                    "password": "correct horse battery"}),
        ),
    )
    .await;
    api.expect(
        201,
        "POST",
        "/api/v1/accounts",
        Some(
            json!({"login": "kansai", "display_name": "関西エリア", "role": "area_manager",
                    "prefectures": ["27"], "password": "correct horse battery"}),
        ),
    )
    .await;
    let accounts = api.expect(200, "GET", "/api/v1/accounts", None).await;
    assert_eq!(accounts.as_array().map(Vec::len), Some(2), "{accounts}");

    // Notification endpoints: a webhook (its secret shown once) and a mail address, a change,
    // a test delivery, the delivery log; mistakes are 400 and unknown endpoints 404.
    let hook = api
        .expect(
            201,
            "POST",
            "/api/v1/notifications/endpoints",
            Some(json!({"name": "chain IT", "channel": "webhook",
                        "target": "https://hooks.example.jp/onshi", "kinds": ["chain_break"]})),
        )
        .await;
    assert!(
        hook["secret"].as_str().unwrap().starts_with("whsec_"),
        "{hook}"
    );
    let mail = api
        .expect(
            201,
            "POST",
            "/api/v1/notifications/endpoints",
            Some(
                json!({"name": "関西", "channel": "mail", "target": "kansai@example.jp",
                        "prefectures": ["27"], "quiet_hours": false}),
            ),
        )
        .await;
    assert_eq!(mail["secret"], Value::Null);
    let mail_id = mail["endpoint"]["id"].as_i64().unwrap();
    let changed = api
        .expect(
            200,
            "PUT",
            &format!("/api/v1/notifications/endpoints/{mail_id}"),
            Some(
                json!({"name": "関西", "channel": "mail", "target": "kansai@example.jp",
                        "prefectures": ["27", "26"], "enabled": false}),
            ),
        )
        .await;
    assert_eq!(changed["enabled"], false, "{changed}");
    api.expect(
        202,
        "POST",
        &format!("/api/v1/notifications/endpoints/{mail_id}/test"),
        None,
    )
    .await;
    let endpoints = api
        .expect(200, "GET", "/api/v1/notifications/endpoints", None)
        .await;
    assert_eq!(endpoints.as_array().map(Vec::len), Some(2), "{endpoints}");
    let log = api
        .expect(
            200,
            "GET",
            &format!("/api/v1/notifications/deliveries?endpoint={mail_id}&limit=10"),
            None,
        )
        .await;
    assert_eq!(log[0]["event"], "test", "{log}");
    api.expect(
        400,
        "POST",
        "/api/v1/notifications/endpoints",
        Some(json!({"name": "x", "channel": "pager", "target": "x"})),
    )
    .await;
    api.expect(
        400,
        "PUT",
        &format!("/api/v1/notifications/endpoints/{mail_id}"),
        Some(json!({"name": "x", "channel": "webhook", "target": "https://x.example/"})),
    )
    .await;
    api.expect(
        404,
        "POST",
        "/api/v1/notifications/endpoints/999999/test",
        None,
    )
    .await;
    api.expect(400, "GET", "/api/v1/notifications/deliveries?limit=0", None)
        .await;
    api.expect(
        200,
        "PATCH",
        "/api/v1/accounts/kansai",
        Some(json!({"role": "area_manager", "prefectures": ["２７"]})),
    )
    .await;
    api.expect(
        200,
        "PUT",
        &site,
        Some(json!({"name": " さくら薬局 新宿店 "})),
    )
    .await;
    let me = api.expect(200, "GET", "/api/v1/me", None).await;
    assert_eq!(me["credential"], "certificate");
    let token = |login: &'static str| {
        let store = chain.store.clone();
        async move {
            let (_, token) =
                central_core::auth::accounts::issue_token(&store, login, "openapi test", 1, "test")
                    .await
                    .unwrap();
            Caller::Token(token)
        }
    };
    let (viewer, kansai) = (token("it-nightly").await, token("kansai").await);
    // Tokens are made by a signed-in person: the viewer's browser session.
    let viewer_session = {
        let secret = "openapi-test-session";
        chain
            .store
            .create_session(
                "it-nightly",
                &central_core::auth::secret::digest(secret),
                "openapi-csrf",
                OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();
        Caller::Session(secret.into(), "openapi-csrf".into())
    };
    let api = &mut chain.api;
    let me = api
        .expect_as(viewer.clone(), 200, "GET", "/api/v1/me", None)
        .await;
    assert_eq!(
        (&me["role"], &me["scope"]),
        (&json!("viewer"), &Value::Null)
    );
    let scoped = api
        .expect_as(kansai.clone(), 200, "GET", "/api/v1/me", None)
        .await;
    assert_eq!(scoped["scope"]["prefectures"], json!(["27"]), "{scoped}");
    let issued = api
        .expect_as(
            viewer_session.clone(),
            201,
            "POST",
            "/api/v1/tokens",
            Some(json!({"label": "spreadsheet", "days": 7})),
        )
        .await;
    let tokens = api
        .expect_as(viewer.clone(), 200, "GET", "/api/v1/tokens", None)
        .await;
    assert_eq!(tokens.as_array().map(Vec::len), Some(2), "{tokens}");
    let revoke = format!("/api/v1/tokens/{}", issued["id"]);
    let gone = api
        .call_json_as(viewer.clone(), "DELETE", &revoke, None)
        .await;
    assert_eq!((gone.status, gone.body.len()), (204, 0), "{}", gone.text());
    let operator = chain.api.operator.clone();
    let callers: Vec<AsCaller> = vec![
        (
            viewer.clone(),
            "DELETE",
            revoke.clone(),
            None,
            400,
            "bad_request",
        ),
        (
            viewer.clone(),
            "DELETE",
            "/api/v1/tokens/latest".into(),
            None,
            400,
            "bad_request",
        ),
        (
            viewer_session.clone(),
            "POST",
            "/api/v1/tokens".into(),
            Some(json!({"label": " "})),
            400,
            "bad_request",
        ),
        (
            viewer_session.clone(),
            "POST",
            "/api/v1/tokens".into(),
            Some(json!({"label": "x", "days": 400})),
            400,
            "bad_request",
        ),
        (
            viewer.clone(),
            "POST",
            "/api/v1/tokens".into(),
            Some(json!({"label": "minted by a token", "days": 7})),
            403,
            "forbidden",
        ),
        (
            operator.clone(),
            "GET",
            "/api/v1/tokens".into(),
            None,
            400,
            "bad_request",
        ),
        (
            operator.clone(),
            "POST",
            "/api/v1/accounts".into(),
            Some(
                json!({"login": "it-nightly", "display_name": "again", "role": "viewer", "password": "correct horse battery"}),
            ),
            400,
            "bad_request",
        ),
        (
            operator.clone(),
            "POST",
            "/api/v1/accounts".into(),
            Some(
                json!({"login": "short", "display_name": "x", "role": "viewer", "password": "short"}),
            ),
            400,
            "bad_request",
        ),
        (
            operator.clone(),
            "PUT",
            format!("/api/v1/sites/{osaka}"),
            Some(json!({"name": ""})),
            400,
            "bad_request",
        ),
        // What a role may not do, a site outside a scope, and no or a wrong credential.
        (
            viewer.clone(),
            "PUT",
            format!("{site}/opening-hours"),
            Some(json!({"weekly": {}})),
            403,
            "forbidden",
        ),
        (
            viewer.clone(),
            "GET",
            "/api/v1/accounts".into(),
            None,
            403,
            "forbidden",
        ),
        (
            viewer.clone(),
            "GET",
            "/api/v1/audit/events".into(),
            None,
            403,
            "forbidden",
        ),
        (
            kansai.clone(),
            "GET",
            format!("{site}/events"),
            None,
            403,
            "out_of_scope",
        ),
        (
            Caller::Certificate(chain.agent.clone()),
            "GET",
            "/api/v1/sites".into(),
            None,
            403,
            "forbidden",
        ),
        (
            Caller::Token("not-a-token".into()),
            "GET",
            "/api/v1/sites".into(),
            None,
            401,
            "unauthenticated",
        ),
        (
            Caller::Nobody,
            "GET",
            "/api/v1/alerts".into(),
            None,
            401,
            "unauthenticated",
        ),
        (
            Caller::Certificate(PeerCertificates(Arc::new(Vec::new()))),
            "GET",
            "/api/v1/me".into(),
            None,
            401,
            "unauthenticated",
        ),
    ];
    let api = &mut chain.api;
    for (caller, method, path, body, status, code) in callers {
        let answer = api.call_json_as(caller, method, &path, body).await;
        assert_refused(&answer, method, &path, status, code);
    }
    // What the document says of what it does not list: an unknown path is 404, a known path
    // with another method 405, both without a body.
    for (method, path, status) in [
        ("GET", "/api/v1/nothing", 404),
        ("DELETE", "/api/v1/sites", 405),
    ] {
        let answer = api.send(operator.clone(), method, path, None).await;
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (status, ""),
            "{method} {path}"
        );
    }
    // The area manager sees only its own prefecture's sites.
    let sites = api
        .expect_as(kansai, 200, "GET", "/api/v1/sites", None)
        .await;
    assert_eq!(sites.as_array().map(Vec::len), Some(1), "{sites}");

    chain.api.finish();
}

/// The check has teeth on real answers: a documented field that is missing, or has another
/// type, or a field the document does not know, fails with its pointer and rule.
#[tokio::test]
async fn a_real_answer_missing_a_field_or_of_another_type_fails() {
    let mut chain = chain().await;
    chain.maintain().await;
    let api = &mut chain.api;
    let agents = api.expect(200, "GET", "/api/v1/agents", None).await;
    let pointer = openapi::response_schema(&api.doc, "GET", "/api/v1/agents", 200).unwrap();
    assert_eq!(validate_at(&api.doc, &pointer, &agents), Ok(()));

    let mut missing = agents.clone();
    missing[0].as_object_mut().unwrap().remove("contiguous");
    let mut retyped = agents.clone();
    retyped[1]["last_seen_at"] = json!(1_700_000_000);
    let mut extra = agents.clone();
    extra[0]["acknowledged_by"] = json!("ops");
    let rule = |value: &Value| {
        validate_at(&api.doc, &pointer, value)
            .unwrap_err()
            .into_iter()
            .map(|v| (v.pointer, v.rule))
            .collect::<Vec<_>>()
    };
    assert_eq!(rule(&missing), vec![("/0".to_string(), "required")]);
    assert_eq!(
        rule(&retyped),
        vec![("/1/last_seen_at".to_string(), "type")]
    );
    assert_eq!(
        rule(&extra),
        vec![("/0/acknowledged_by".to_string(), "additionalProperties")]
    );

    // Nested, through references and a oneOf: an event's body.
    let tokyo = chain.tokyo.to_string();
    let path = format!("/api/v1/sites/{tokyo}/events");
    let events = api.expect(200, "GET", &path, None).await;
    let pointer = openapi::response_schema(&api.doc, "GET", &path, 200).unwrap();
    let consent = events
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["kind"] == "consent")
        .unwrap();
    let mut wrong = events.clone();
    wrong[consent]["body"]["drug"] = json!(true);
    let errors = validate_at(&api.doc, &pointer, &wrong).unwrap_err();
    assert_eq!(errors.len(), 1, "{}", openapi::report(&errors));
    assert_eq!(
        (errors[0].pointer.as_str(), errors[0].rule),
        (format!("/{consent}/body").as_str(), "oneOf")
    );
    assert!(
        errors[0].message.contains("/drug: enum"),
        "the branch of its kind says what: {}",
        errors[0].message
    );
    chain.api.finish_quietly();
}
