//! Grace notifications (猶予届出) against real PostgreSQL: each category's deadline through the
//! store, refusals that store nothing, ending once, the status as days pass, the audit rows,
//! least privilege for the application role, and the API routes through central over mTLS.

use central_store::grace::{GraceEnd, GraceView};
use central_store::scope::SiteScope;
use central_store::{self as store, DatabaseUrl, Store, StoreError};
use e2e::TestDb;
use onshi_domain::grace::{GraceCategory, GraceNotification, GraceState, GraceStatus};
use onshi_domain::site::SiteCode;
use time::macros::{date, datetime};
use time::{Date, OffsetDateTime};
use tokio_postgres::error::SqlState;

/// Noon in Tokyo on 15 March 2023, two weeks after the mandate.
const MARCH: OffsetDateTime = datetime!(2023-03-15 12:00 +9);

fn site(first_nine: &str) -> SiteCode {
    SiteCode::parse(&e2e::site_code(first_nine)).unwrap()
}

fn filed(category: GraceCategory) -> GraceNotification {
    GraceNotification::new(category, date!(2023 - 03 - 01))
}

fn category_1() -> GraceNotification {
    GraceNotification {
        contracted_on: Some(date!(2023 - 02 - 20)),
        evidence: Some("vendor contract 2023-0042.pdf".into()),
        ..filed(GraceCategory::SystemNotReady)
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

async fn grace_audit_rows(db: &TestDb) -> Vec<(String, String)> {
    db.client()
        .await
        .unwrap()
        .query(
            "SELECT peer_site_code, detail FROM security_events
             WHERE kind = 'admin_action' AND detail LIKE 'grace notification %' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn refused(result: Result<GraceView, StoreError>) -> String {
    match result {
        Err(StoreError::BadQuery(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn every_category_gets_its_deadline_and_a_status() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let clinic = site("131000021");
    let by = "operator:it-1";
    let cases = [
        (category_1(), date!(2023 - 09 - 30), false),
        (
            GraceNotification {
                ends_on: Some(date!(2023 - 06 - 15)),
                ..category_1()
            },
            date!(2023 - 06 - 15),
            false,
        ),
        (
            GraceNotification {
                line_available_on: Some(date!(2023 - 08 - 31)),
                ..filed(GraceCategory::NoOpticalLine)
            },
            date!(2024 - 02 - 29),
            false,
        ),
        (
            GraceNotification {
                review_on: Some(date!(2023 - 05 - 31)),
                ..filed(GraceCategory::NoOpticalLine)
            },
            date!(2023 - 05 - 31),
            true,
        ),
        (
            filed(GraceCategory::HomeVisitOnly),
            date!(2024 - 03 - 31),
            false,
        ),
        (
            GraceNotification {
                ends_on: Some(date!(2023 - 11 - 30)),
                ..filed(GraceCategory::RenovationOrTemporaryFacility)
            },
            date!(2023 - 11 - 30),
            false,
        ),
        (
            GraceNotification {
                ends_on: Some(date!(2025 - 03 - 31)),
                ..filed(GraceCategory::PlannedClosure)
            },
            date!(2024 - 09 - 30),
            false,
        ),
        (
            GraceNotification {
                review_on: Some(date!(2023 - 04 - 14)),
                evidence: Some("bureau consultation memo".into()),
                ..filed(GraceCategory::SpecialDifficulty)
            },
            date!(2023 - 04 - 14),
            true,
        ),
    ];
    for (notification, deadline, is_review) in &cases {
        let view = store
            .file_grace_notification(&clinic, notification, by, MARCH)
            .await
            .unwrap();
        assert_eq!(view.deadline, deadline.to_string(), "{view:?}");
        assert_eq!(view.deadline_is_review, *is_review, "{view:?}");
        assert_eq!(view.category, notification.category);
        assert_eq!(view.filed_by, by);
        let days_left = (*deadline - MARCH.date()).whole_days();
        assert_eq!(view.status, GraceStatus::Active { days_left }, "{view:?}");
    }

    let listed = store.grace_notifications(&clinic, MARCH).await.unwrap();
    assert_eq!(listed.len(), cases.len());
    let json = serde_json::to_value(&listed[2]).unwrap();
    assert_eq!(json["category"], "no_optical_line");
    assert_eq!(json["category_number"], 2);
    assert_eq!(json["line_available_on"], "2023-08-31");
    assert_eq!(json["deadline"], "2024-02-29");
    assert_eq!(json["status"], "active");
    assert!(json["days_left"].is_number(), "{json}");

    // A year on, every one of them not ended is past its deadline except category 3 and 5.
    let next_march = datetime!(2024-03-15 12:00 +9);
    let later = store
        .grace_notifications(&clinic, next_march)
        .await
        .unwrap();
    let overdue: Vec<u8> = later
        .iter()
        .filter(|v| v.status.state() == GraceState::Overdue)
        .map(|v| v.category_number)
        .collect();
    assert_eq!(overdue, vec![1, 1, 2, 2, 4, 6], "{later:?}");
    let nov = later.iter().find(|v| v.category_number == 4).unwrap();
    assert_eq!(
        nov.status,
        GraceStatus::Overdue {
            since: date!(2023 - 12 - 01)
        }
    );

    // Every filing was audited with the site, the operator and the deadline.
    let audit = grace_audit_rows(&db).await;
    assert_eq!(audit.len(), cases.len());
    assert!(audit.iter().all(|(s, _)| s == clinic.as_str()));
    assert!(
        audit[2].1.contains("filed by operator:it-1")
            && audit[2].1.contains("category 2 (no_optical_line)")
            && audit[2].1.contains("deadline 2024-02-29"),
        "{:?}",
        audit[2]
    );
    assert!(
        audit[3].1.contains("review on 2023-05-31"),
        "{:?}",
        audit[3]
    );
}

#[tokio::test]
async fn a_refused_notification_stores_nothing_and_audits_nothing() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let clinic = site("131000039");
    let no_copy = GraceNotification {
        evidence: None,
        ..category_1()
    };
    let message = refused(
        store
            .file_grace_notification(&clinic, &no_copy, "it-1", MARCH)
            .await,
    );
    assert!(
        message.contains("category 1 needs the vendor contract copy as evidence"),
        "{message}"
    );
    let message = refused(
        store
            .file_grace_notification(&clinic, &filed(GraceCategory::NoOpticalLine), "it-1", MARCH)
            .await,
    );
    assert!(
        message.contains("needs line_available_on or review_on"),
        "{message}"
    );
    let future = GraceNotification::new(GraceCategory::HomeVisitOnly, date!(2023 - 03 - 16));
    let message = refused(
        store
            .file_grace_notification(&clinic, &future, "it-1", MARCH)
            .await,
    );
    assert!(message.contains("in the future"), "{message}");
    assert_eq!(
        count(&db, "SELECT count(*) FROM grace_notifications").await,
        0
    );
    assert!(grace_audit_rows(&db).await.is_empty());

    // The table refuses a category 1 row without evidence even past the store.
    let error = db
        .client()
        .await
        .unwrap()
        .execute(
            "INSERT INTO grace_notifications (site_code, category, filed_on, deadline, filed_by)
             VALUES ('1310000398', 1, '2023-03-01', '2023-09-30', 'x')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::CHECK_VIOLATION), "{error}");
}

#[tokio::test]
async fn a_notification_is_ended_once_by_its_own_site_and_the_ending_is_audited() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let (clinic, pharmacy) = (site("131000047"), site("134000015"));
    let works = GraceNotification {
        ends_on: Some(date!(2023 - 04 - 30)),
        ..filed(GraceCategory::RenovationOrTemporaryFacility)
    };
    let id = store
        .file_grace_notification(&clinic, &works, "it-1", MARCH)
        .await
        .unwrap()
        .id;
    let other = store
        .file_grace_notification(
            &pharmacy,
            &filed(GraceCategory::HomeVisitOnly),
            "it-1",
            MARCH,
        )
        .await
        .unwrap()
        .id;

    // Past its deadline without being ended: overdue, in the chain-wide list too.
    let may = datetime!(2023-05-02 09:00 +9);
    let overdue = store
        .chain_grace_notifications(Some(GraceState::Overdue), may, &SiteScope::All)
        .await
        .unwrap();
    assert_eq!(overdue.iter().map(|v| v.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(
        overdue[0].status,
        GraceStatus::Overdue {
            since: date!(2023 - 05 - 01)
        }
    );
    let active = store
        .chain_grace_notifications(Some(GraceState::Active), may, &SiteScope::All)
        .await
        .unwrap();
    assert_eq!(active.iter().map(|v| v.id).collect::<Vec<_>>(), vec![other]);
    let open = store
        .chain_grace_notifications(None, may, &SiteScope::All)
        .await
        .unwrap();
    assert_eq!(
        open.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![id, other],
        "soonest deadline first"
    );

    // Refused: another site's, one that does not exist, a day before the filing or after today.
    assert!(matches!(
        store
            .end_grace_notification(&pharmacy, id, date!(2023 - 04 - 28), "it-2", may)
            .await
            .unwrap(),
        GraceEnd::NotFound
    ));
    assert!(matches!(
        store
            .end_grace_notification(&clinic, id + 1000, date!(2023 - 04 - 28), "it-2", may)
            .await
            .unwrap(),
        GraceEnd::NotFound
    ));
    for wrong in [date!(2023 - 02 - 28), date!(2023 - 05 - 03)] {
        match store
            .end_grace_notification(&clinic, id, wrong, "it-2", may)
            .await
        {
            Err(StoreError::BadQuery(message)) => {
                assert!(message.contains("ended_on"), "{message}")
            }
            other => panic!("{wrong}: {other:?}"),
        }
    }

    let GraceEnd::Ended(ended) = store
        .end_grace_notification(&clinic, id, date!(2023 - 04 - 28), "it-2", may)
        .await
        .unwrap()
    else {
        panic!("ended");
    };
    assert_eq!(
        ended.status,
        GraceStatus::Ended {
            on: date!(2023 - 04 - 28)
        }
    );
    assert_eq!(ended.ended_by.as_deref(), Some("it-2"));
    assert!(ended.ended_at.is_some());
    match store
        .end_grace_notification(&clinic, id, date!(2023 - 04 - 29), "it-3", may)
        .await
        .unwrap()
    {
        GraceEnd::AlreadyEnded { on, by } => {
            assert_eq!((on, by.as_str()), (date!(2023 - 04 - 28), "it-2"));
        }
        other => panic!("ended twice: {other:?}"),
    }
    let ended_list = store
        .chain_grace_notifications(Some(GraceState::Ended), may, &SiteScope::All)
        .await
        .unwrap();
    assert_eq!(ended_list.len(), 1);
    assert_eq!(ended_list[0].ended_on.as_deref(), Some("2023-04-28"));
    assert!(
        store
            .chain_grace_notifications(Some(GraceState::Overdue), may, &SiteScope::All)
            .await
            .unwrap()
            .is_empty()
    );

    // Two filings and one ending audited; the refused endings were not.
    let audit = grace_audit_rows(&db).await;
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert_eq!(audit[2].0, clinic.as_str());
    assert!(
        audit[2].1.contains(&format!(
            "grace notification {id} of site {clinic} (category 4) ended on 2023-04-28 by it-2"
        )),
        "{:?}",
        audit[2]
    );
}

#[tokio::test]
async fn the_adoption_view_carries_the_active_grace_notifications() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let clinic = site("131000055");
    store
        .set_adoption_plan(&clinic, date!(2023 - 10 - 02), false, "it-1")
        .await
        .unwrap();
    let line = store
        .file_grace_notification(
            &clinic,
            &GraceNotification {
                line_available_on: Some(date!(2023 - 04 - 03)),
                ..filed(GraceCategory::NoOpticalLine)
            },
            "it-1",
            MARCH,
        )
        .await
        .unwrap();
    let view = store.adoption(&clinic, MARCH).await.unwrap().unwrap();
    assert_eq!(
        view.grace_notifications
            .iter()
            .map(|g| g.id)
            .collect::<Vec<_>>(),
        vec![line.id]
    );
    // Past its deadline (2023-10-03) it is overdue, no longer carried as active.
    let view = store
        .adoption(&clinic, datetime!(2023-10-04 12:00 +9))
        .await
        .unwrap()
        .unwrap();
    assert!(view.grace_notifications.is_empty(), "{view:?}");
}

#[tokio::test]
async fn the_application_role_files_and_ends_but_never_rewrites_a_filing() {
    let db = TestDb::create().await.unwrap();
    crate::support::migrated_pool(&db).await;
    let app_url = db.app_login().await.unwrap();
    let app = Store::new(store::connect(&DatabaseUrl::new(&app_url), 2).unwrap());
    let clinic = site("131000063");
    let id = app
        .file_grace_notification(&clinic, &category_1(), "it-1", MARCH)
        .await
        .unwrap()
        .id;
    assert!(matches!(
        app.end_grace_notification(&clinic, id, date!(2023 - 03 - 10), "it-1", MARCH)
            .await
            .unwrap(),
        GraceEnd::Ended(_)
    ));
    let client = e2e::connect(&app_url).await.unwrap();
    for sql in [
        "UPDATE grace_notifications SET deadline = '2030-01-01'",
        "UPDATE grace_notifications SET evidence = 'forged'",
        "DELETE FROM grace_notifications",
    ] {
        let error = client.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(
            error.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {error}"
        );
    }
}

fn day(text: &str) -> Date {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_files_lists_and_ends_grace_notifications() -> anyhow::Result<()> {
    let code = e2e::site_code("131000071");
    let other_code = e2e::site_code("131000089");
    let pki = e2e::Pki::new(&[&code])?;
    let db = TestDb::create().await?;
    let central = e2e::start_central(&pki, &db).await?;
    let (cert, key) = pki.paths.operator("e2e");
    let (ca, addr) = (pki.paths.chain_ca(), central.field("http"));
    let call = |method: &'static str, path: String, body: serde_json::Value| {
        let (ca, cert, key, addr) = (ca.clone(), cert.clone(), key.clone(), addr.clone());
        async move {
            if method == "GET" {
                e2e::http::get_json(&ca, &cert, &key, &addr, &path).await
            } else {
                e2e::http::send_json(&ca, &cert, &key, &addr, method, &path, &body).await
            }
        }
    };
    let today = OffsetDateTime::now_utc()
        .to_offset(time::macros::offset!(+9))
        .date();
    let grace = format!("/api/v1/sites/{code}/grace-notifications");

    // Category 2 by number, the line available on 31 August: 6 months later, overdue by now.
    let (status, line) = call(
        "POST",
        grace.clone(),
        serde_json::json!({
            "category": 2, "filed_on": "2023-03-01", "line_available_on": "2023-08-31"
        }),
    )
    .await?;
    assert_eq!(status, 201, "{line}");
    assert_eq!(line["category"], "no_optical_line");
    assert_eq!(line["deadline"], "2024-02-29");
    assert_eq!(line["status"], "overdue", "{line}");
    assert_eq!(line["since"], "2024-03-01");
    assert_eq!(line["filed_by"], "operator e2e");

    // Category 6 by name, reviewed in a month: active.
    let review = today + time::Duration::days(30);
    let (status, difficulty) = call(
        "POST",
        grace.clone(),
        serde_json::json!({
            "category": "special_difficulty", "filed_on": today.to_string(),
            "review_on": review.to_string(), "evidence": "bureau consultation memo"
        }),
    )
    .await?;
    assert_eq!(status, 201, "{difficulty}");
    assert_eq!(difficulty["status"], "active");
    assert_eq!(difficulty["days_left"], 30);
    assert_eq!(difficulty["deadline_is_review"], true);

    // Refusals with the reason, nothing stored.
    for (body, expect) in [
        (
            serde_json::json!({ "category": 1, "filed_on": "2023-03-01", "contracted_on": "2023-02-01" }),
            "category 1 needs the vendor contract copy as evidence",
        ),
        (
            serde_json::json!({ "category": 7, "filed_on": "2023-03-01" }),
            "not a grace category",
        ),
        (
            serde_json::json!({ "category": 3, "filed_on": "2023-03-01", "colour": "red" }),
            "unknown field",
        ),
        (
            serde_json::json!({ "category": 4, "filed_on": "01/03/2023", "ends_on": "2023-05-01" }),
            "expected a date, YYYY-MM-DD",
        ),
    ] {
        let (status, error) = call("POST", grace.clone(), body.clone()).await?;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["code"], "bad_request");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(expect), "{body}: {message}");
    }

    let (status, listed) = call("GET", grace.clone(), serde_json::Value::Null).await?;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    // Chain-wide by status.
    let chain = |status: &str| {
        call(
            "GET",
            format!("/api/v1/grace-notifications{status}"),
            serde_json::Value::Null,
        )
    };
    let ids = |list: &serde_json::Value| -> Vec<i64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_i64().unwrap())
            .collect()
    };
    let (line_id, difficulty_id) = (
        line["id"].as_i64().unwrap(),
        difficulty["id"].as_i64().unwrap(),
    );
    assert_eq!(ids(&chain("?status=overdue").await?.1), vec![line_id]);
    assert_eq!(ids(&chain("?status=active").await?.1), vec![difficulty_id]);
    assert_eq!(ids(&chain("").await?.1), vec![line_id, difficulty_id]);
    let (status, error) = chain("?status=late").await?;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("active, overdue or ended")
    );

    // Ending: the line is in use since yesterday.
    let yesterday = today - time::Duration::days(1);
    let end = |site: &str, id: i64| format!("/api/v1/sites/{site}/grace-notifications/{id}/end");
    let (status, error) = call(
        "PUT",
        end(&other_code, line_id),
        serde_json::json!({ "ended_on": yesterday.to_string() }),
    )
    .await?;
    assert_eq!(status, 404, "another site's: {error}");
    // Whose it is stays unsaid: the answer is the one a notification that does not exist gets.
    let other_message = error["message"].as_str().unwrap().to_string();
    assert!(!other_message.contains(&code), "{error}");
    let (status, error) = call(
        "PUT",
        end(&other_code, line_id + 100),
        serde_json::json!({ "ended_on": yesterday.to_string() }),
    )
    .await?;
    assert_eq!(status, 404, "{error}");
    let without_id = |message: &str, id: i64| {
        let id = id.to_string();
        message
            .split(' ')
            .map(|word| if word == id { "ID" } else { word })
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        without_id(error["message"].as_str().unwrap(), line_id + 100),
        without_id(&other_message, line_id),
        "another site's notification and a missing one are answered alike"
    );
    let (status, error) = call(
        "PUT",
        end(&code, line_id + 100),
        serde_json::json!({ "ended_on": yesterday.to_string() }),
    )
    .await?;
    assert_eq!(status, 404, "{error}");
    let (status, ended) = call(
        "PUT",
        end(&code, line_id),
        serde_json::json!({ "ended_on": yesterday.to_string() }),
    )
    .await?;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["status"], "ended");
    assert_eq!(day(ended["on"].as_str().unwrap()), yesterday);
    assert_eq!(ended["ended_by"], "operator e2e");
    let (status, error) = call(
        "PUT",
        end(&code, line_id),
        serde_json::json!({ "ended_on": today.to_string() }),
    )
    .await?;
    assert_eq!(status, 400, "ended twice: {error}");
    assert!(
        error["message"].as_str().unwrap().contains("already ended"),
        "{error}"
    );
    assert_eq!(ids(&chain("?status=ended").await?.1), vec![line_id]);
    assert_eq!(ids(&chain("?status=overdue").await?.1), Vec::<i64>::new());

    // The adoption view carries the active one.
    let (status, _) = call(
        "PUT",
        format!("/api/v1/sites/{code}/adoption"),
        serde_json::json!({ "planned_start": (today + time::Duration::days(200)).to_string() }),
    )
    .await?;
    assert_eq!(status, 200);
    let (_, adoption) = call(
        "GET",
        format!("/api/v1/sites/{code}/adoption"),
        serde_json::Value::Null,
    )
    .await?;
    assert_eq!(
        ids(&adoption["grace_notifications"]),
        vec![difficulty_id],
        "{adoption}"
    );

    // Two filings and one ending by the operator, in the audit trail.
    let audit = grace_audit_rows(&db).await;
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert!(
        audit.iter().all(|(_, d)| d.contains("by operator e2e")),
        "{audit:?}"
    );
    Ok(())
}
