//! Notifications in the store and on the dashboard, against real PostgreSQL as the application
//! role: the triggers queue a row per matching endpoint when an alert opens or resolves and a
//! certificate notice opens or escalates (nothing for a condition that cleared before its
//! threshold, nothing for another prefecture or a disabled endpoint); a claim takes the first
//! undelivered row of each alert only, quiet hours hold what is not urgent; and the page lets a
//! chain administrator add an endpoint (audited) while an area manager may not open it.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use central_core::auth::accounts::{AccountSpec, create_account};
use central_store::AlertThresholds;
use central_store::notifications::{Claim, EndpointSpec};
use e2e::TestDb;
use onshi_domain::events::{FleetEvent, StreamId};
use onshi_domain::hours::OpeningHours;
use onshi_domain::site::SiteCode;
use time::OffsetDateTime;
use tonic::codegen::Service;
use uuid::Uuid;

fn spec(name: &str, prefectures: &[&str], enabled: bool) -> EndpointSpec {
    EndpointSpec {
        name: name.into(),
        channel: "mail".into(),
        target: format!("{name}@example.jp"),
        kinds: Vec::new(),
        prefectures: prefectures.iter().map(|p| p.to_string()).collect(),
        sites: Vec::new(),
        quiet_hours: true,
        enabled,
    }
}

fn events(site: &SiteCode, sequences: &[u64]) -> Vec<FleetEvent> {
    sequences
        .iter()
        .map(|s| FleetEvent::try_from(e2e::uplink::lookup_event(site.as_str(), *s)).unwrap())
        .collect()
}

fn thresholds(gap: u64) -> AlertThresholds {
    AlertThresholds {
        gap: Duration::from_secs(gap),
        divergence: Duration::from_secs(3600),
        unavailable: Duration::from_secs(3600),
    }
}

fn claim(urgent: &'static [&'static str]) -> Claim<'static> {
    Claim {
        limit: 100,
        lease: Duration::from_secs(60),
        hold_recheck: Duration::from_secs(0),
        urgent,
    }
}

#[tokio::test]
async fn triggers_queue_routed_rows_and_claims_keep_order_and_quiet_hours() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::app_store(&db).await;
    let all = store
        .create_notification_endpoint(&spec("all", &[], true), None, "test")
        .await
        .unwrap();
    let osaka_only = store
        .create_notification_endpoint(&spec("kansai", &["27"], true), None, "test")
        .await
        .unwrap();
    store
        .create_notification_endpoint(&spec("off", &[], false), None, "test")
        .await
        .unwrap();
    let tokyo = SiteCode::parse(&e2e::site_code("131000013")).unwrap();
    let stream = StreamId(Uuid::now_v7());
    store
        .open_stream(&tokyo, stream, "test", "0", 0)
        .await
        .unwrap();

    // A gap that fills before its threshold: pending, then forgotten; nobody hears of it.
    store
        .ingest_batch(&tokyo, stream, &events(&tokyo, &[1, 3]))
        .await
        .unwrap();
    store.check_alerts(thresholds(3600)).await.unwrap();
    store
        .ingest_batch(&tokyo, stream, &events(&tokyo, &[2]))
        .await
        .unwrap();
    store.check_alerts(thresholds(3600)).await.unwrap();
    assert!(
        store
            .notification_deliveries(None, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // A gap that opens and resolves: two rows, for the chain-wide endpoint only.
    store
        .ingest_batch(&tokyo, stream, &events(&tokyo, &[5]))
        .await
        .unwrap();
    store.check_alerts(thresholds(0)).await.unwrap();
    store
        .ingest_batch(&tokyo, stream, &events(&tokyo, &[4]))
        .await
        .unwrap();
    store.check_alerts(thresholds(0)).await.unwrap();
    // A certificate crosses two thresholds: opened, then escalated.
    let client = e2e::connect(&db.url).await.unwrap();
    for days in [30, 7] {
        client
            .execute(
                "INSERT INTO certificate_alerts (sha256_fingerprint, threshold_days, site_code,
                     terminal_id, role, subject, not_after, raised_at, detail)
                 VALUES ($1, $2, $3, 'T01', 'terminal', 'CN=T01', now() + interval '5 days',
                         now(), 'expires soon')",
                &[&"ab".repeat(32), &days, &tokyo.as_str()],
            )
            .await
            .unwrap();
    }
    let log = store.notification_deliveries(None, 100).await.unwrap();
    let mut seen: Vec<(i64, &str, &str)> = log
        .iter()
        .map(|d| (d.endpoint_id, d.kind.as_str(), d.event.as_str()))
        .collect();
    seen.reverse();
    assert_eq!(
        seen,
        [
            (all.id, "sequence_gap", "opened"),
            (all.id, "sequence_gap", "resolved"),
            (all.id, "certificate_expiry", "opened"),
            (all.id, "certificate_expiry", "escalated"),
        ],
        "nothing for Osaka's endpoint ({}) nor the disabled one",
        osaka_only.id
    );

    // Quiet hours: the chain is closed now; nothing here is urgent, so everything is held.
    let closed: OpeningHours = serde_json::from_str(r#"{"weekly": {}}"#).unwrap();
    store
        .set_opening_hours(None, &closed, "test")
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let claimed = store.claim_notifications(now, claim(&[])).await.unwrap();
    assert!(claimed.due.is_empty());
    assert_eq!(
        claimed.held, 2,
        "the first of each alert; the others wait behind them"
    );
    let held = store.notification_deliveries(None, 100).await.unwrap();
    assert_eq!(held.iter().filter(|d| d.status == "held").count(), 2);

    // Urgent kinds pass; and only the first undelivered row of each alert is due.
    let first = store
        .claim_notifications(now, claim(&["sequence_gap", "certificate_expiry"]))
        .await
        .unwrap();
    let events: Vec<&str> = first.due.iter().map(|d| d.event.as_str()).collect();
    assert_eq!(events, ["opened", "opened"]);
    assert_eq!(first.due[0].attempts, 1);
    // A failed delivery keeps its place; the escalation stays behind it.
    store
        .record_delivery(first.due[1].id, Err("refused".into()), Duration::ZERO)
        .await
        .unwrap();
    store
        .record_delivery(first.due[0].id, Ok(()), Duration::ZERO)
        .await
        .unwrap();
    let second = store
        .claim_notifications(now, claim(&["sequence_gap", "certificate_expiry"]))
        .await
        .unwrap();
    let next: Vec<(&str, &str, i32)> = second
        .due
        .iter()
        .map(|d| (d.kind.as_str(), d.event.as_str(), d.attempts))
        .collect();
    assert_eq!(
        next,
        [
            ("sequence_gap", "resolved", 1),
            ("certificate_expiry", "opened", 2)
        ]
    );
    let failed = store
        .notification_deliveries(Some(all.id), 100)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.id == first.due[1].id)
        .unwrap();
    assert_eq!(failed.last_error.as_deref(), Some("refused"));
}

// ------------------------------------------------------------------------------- the page

const PASSWORD: &str = "a long enough password 42";

async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, String, String) {
    let mut service = app.clone();
    std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut service, cx))
        .await
        .unwrap();
    let response = service.call(request).await.unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_string();
    let body = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    (status, cookie, String::from_utf8(body.to_vec()).unwrap())
}

async fn sign_in(app: &axum::Router, login: &str) -> (String, String) {
    let (status, cookie, body) = send(
        app,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "login={login}&password={}",
                central_core::form::encode(PASSWORD)
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    // Every page's sign-out form carries the session's CSRF token.
    let (_, _, page) = get(app, &cookie, "/").await;
    let field = &page[page.find("name=\"_csrf\"").expect("a CSRF field")..];
    let at = field.find("value=\"").unwrap() + 7;
    let csrf = field[at..at + field[at..].find('"').unwrap()].to_string();
    (cookie, csrf)
}

async fn get(app: &axum::Router, cookie: &str, path: &str) -> (StatusCode, String, String) {
    send(
        app,
        Request::get(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_chain_administrator_adds_endpoints_on_the_page_and_an_area_manager_cannot() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::app_store(&db).await;
    for (login, role, prefectures) in [
        ("it-admin", "chain_admin", vec![]),
        ("kansai", "area_manager", vec!["27".to_string()]),
    ] {
        let account = AccountSpec {
            login: login.into(),
            display_name: login.into(),
            role: role.into(),
            prefectures,
            sites: Vec::new(),
            password: PASSWORD.into(),
        };
        create_account(&store, &account, "test").await.unwrap();
    }
    let key = std::sync::Arc::new(
        central_core::notify::key::NotificationKey::from_hex(&"42".repeat(32)).unwrap(),
    );
    let app = central_http::routes::router_with(central_http::state::ApiState {
        store: store.clone(),
        patient_key: None,
        deny: fleet_tls::deny::DenyList::default(),
        limiter: central_core::auth::rate_limit::SignInLimiter::default(),
        notification_key: Some(key),
    });

    let (cookie, csrf) = sign_in(&app, "it-admin").await;
    let (status, _, page) = get(&app, &cookie, "/notifications").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"add-endpoint\""), "{page}");
    assert!(page.contains("通知 / Notifications"));
    let form = |fields: &str| {
        Request::post("/notifications")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "_csrf={}&{fields}",
                central_core::form::encode(&csrf)
            )))
            .unwrap()
    };
    let (status, _, made) = send(
        &app,
        form("name=on+call&channel=webhook&target=https%3A%2F%2Fhooks.example.jp%2Fx&kinds=chain_break&kinds=access_violation&prefectures=13%2C+27&quiet_hours=on"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let marker = "id=\"endpoint-secret\">";
    let at = made.find(marker).expect("the secret, once") + marker.len();
    let secret = &made[at..at + made[at..].find('<').unwrap()];
    assert!(secret.starts_with("whsec_"), "{secret}");
    let (_, _, again) = get(&app, &cookie, "/notifications").await;
    assert!(!again.contains(secret), "never shown again");
    let endpoints = store.notification_endpoints().await.unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].kinds, ["chain_break", "access_violation"]);
    assert_eq!(endpoints[0].prefectures, ["13", "27"]);

    // Changed on its own page: the form comes prefilled; the channel and secret stay.
    let (status, _, edit) = get(
        &app,
        &cookie,
        &format!("/notifications/{}", endpoints[0].id),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        edit.contains("value=\"https://hooks.example.jp/x\""),
        "{edit}"
    );
    let (status, _, body) = send(
        &app,
        Request::post(format!("/notifications/{}", endpoints[0].id))
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "_csrf={}&name=on+call&channel=webhook&target=https%3A%2F%2Fhooks.example.jp%2Fy&prefectures=13",
                central_core::form::encode(&csrf)
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let changed = store
        .notification_endpoint(endpoints[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.target, "https://hooks.example.jp/y");
    assert_eq!(changed.prefectures, ["13"]);
    assert!(changed.kinds.is_empty() && !changed.quiet_hours && changed.enabled);

    // A mistake is named on the page and changes nothing.
    let (status, _, refused) = send(&app, form("name=x&channel=mail&target=not-an-address")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused.contains("id=\"endpoint-error\""), "{refused}");
    assert_eq!(store.notification_endpoints().await.unwrap().len(), 1);

    // Disable and test from the page; each change audited.
    let id = endpoints[0].id;
    for action in ["disable", "test"] {
        let (status, _, body) = send(
            &app,
            Request::post(format!("/notifications/{id}/{action}"))
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "_csrf={}",
                    central_core::form::encode(&csrf)
                )))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{action}: {body}");
    }
    assert!(
        !store
            .notification_endpoint(id)
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    let (_, _, log) = get(&app, &cookie, "/notifications").await;
    assert!(
        log.contains("data-delivery="),
        "the test is in the log: {log}"
    );
    let client = e2e::connect(&db.url).await.unwrap();
    let audited: i64 = client
        .query_one(
            "SELECT count(*) FROM security_events
             WHERE kind = 'admin_action' AND detail LIKE '%notification%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 4, "created, changed, disabled, tested");

    // An area manager may not open the page nor read the endpoints.
    let (cookie, _) = sign_in(&app, "kansai").await;
    let (status, _, _) = get(&app, &cookie, "/notifications").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = get(&app, &cookie, "/api/v1/notifications/endpoints").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
