//! The dashboard in a real browser: central (the real binary, with its dashboard listener) over
//! a seeded PostgreSQL, accounts made with `central account add`, and Debian's headless Chromium
//! driven by `tests/browser/dashboard.mjs` (playwright-core): sign in, the overview, filtering
//! sites, a site page, the certificates CSV, starting and pausing a rollout, and an area manager
//! refused a site outside their scope. Screenshots land in `target/browser-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use central_store::{self as store, Store};
use e2e::TestDb;
use onshi_domain::events::{
    CertificateInfo, CertificateInventory, EventBody, EventId, FleetEvent, StreamId,
};
use onshi_domain::site::{SiteCode, TerminalId};
use time::{Duration, OffsetDateTime};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

const CHROMIUM: &str = "/usr/bin/chromium";
const ADMIN_PASSWORD: &str = "chain admin passphrase 1";
const MANAGER_PASSWORD: &str = "tokyo manager passphrase 2";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Lookups, a certificate inventory and an adoption plan for one site, through the store's
/// real ingest path.
async fn seed_site(store: &Store, first_nine: &str, name: &str, now: OffsetDateTime) -> String {
    let code = e2e::site_code(first_nine);
    let site = SiteCode::parse(&code).unwrap();
    let stream = StreamId(Uuid::now_v7());
    store
        .open_stream(&site, stream, "0.1.0", "0", 0)
        .await
        .unwrap();
    let mut events: Vec<FleetEvent> = (1..=5)
        .map(|s| FleetEvent::try_from(e2e::uplink::lookup_event(&code, s)).unwrap())
        .collect();
    events.push(FleetEvent {
        id: EventId::from_uuid(Uuid::now_v7()).unwrap(),
        site: site.clone(),
        terminal: TerminalId::parse("T01").unwrap(),
        occurred_at: now,
        sequence: 6,
        chain_hash: None,
        body: EventBody::CertificateInventory(CertificateInventory {
            certificates: vec![CertificateInfo {
                role: "terminal".into(),
                subject: format!("CN=terminal {code}"),
                issuer: "CN=オンライン資格確認等システム CA".into(),
                serial_hex: "0a".into(),
                sha256_fingerprint: format!("{code:0>64}"),
                not_before: now - Duration::days(700),
                not_after: now + Duration::days(20 + i64::from(first_nine.as_bytes()[8] - b'0')),
                key_type: "RSA".into(),
                key_bits: 2048,
                source: "/etc/onshi/terminal.pem".into(),
            }],
            full_snapshot: true,
        }),
    });
    store.ingest_batch(&site, stream, &events).await.unwrap();
    store.put_site_name(&site, name, "seed").await.unwrap();
    store
        .set_adoption_plan(&site, (now + Duration::days(60)).date(), false, "seed")
        .await
        .unwrap();
    code
}

async fn add_account(db: &TestDb, login: &str, role: &str, extra: &[&str], password: &str) {
    let mut child = tokio::process::Command::new(e2e::bin("central"))
        .args([
            "account", "add", "--login", login, "--name", login, "--role", role,
        ])
        .args(extra)
        .env("DATABASE_URL", &db.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{password}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "central account add: {said}");
    assert!(
        !said.contains(password),
        "the password is never printed: {said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_it_and_an_area_manager_use_the_dashboard_in_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "Debian's Chromium is missing at {CHROMIUM}: run `make deps` (installs chromium)"
    );
    let runner = workspace().join("tests/browser");
    assert!(
        runner.join("node_modules/playwright-core").exists(),
        "playwright-core is missing in {}: run `make deps` (npm ci there)",
        runner.display()
    );

    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let now = OffsetDateTime::now_utc();
    let tokyo = [
        seed_site(&store, "131000011", "さくら薬局 新宿店", now).await,
        seed_site(&store, "131000022", "さくら薬局 渋谷店", now).await,
        seed_site(&store, "131000033", "みどりクリニック 池袋", now).await,
    ];
    let osaka = [
        seed_site(&store, "271000014", "さくら薬局 梅田店", now).await,
        seed_site(&store, "271000025", "さくら薬局 難波店", now).await,
    ];
    // The certificates page reads the projection maintenance keeps; run it as central would.
    store
        .check_certificates(now, store::CertificateAlertDays::default())
        .await
        .unwrap();

    add_account(&db, "it-admin", "chain_admin", &[], ADMIN_PASSWORD).await;
    add_account(
        &db,
        "tokyo-manager",
        "area_manager",
        &["--prefecture", "13"],
        MANAGER_PASSWORD,
    )
    .await;

    let pki = e2e::Pki::new(&[&tokyo[0]]).unwrap();
    let central = e2e::start_central_with(&pki, &db, &["--web-listen", "127.0.0.1:0"], &[])
        .await
        .unwrap();
    let web = central.field("web");
    let screenshots = workspace().join("target/browser-screenshots");
    let (server_cert, _) = pki.paths.central();

    let output = tokio::time::timeout(
        std::time::Duration::from_secs(180),
        tokio::process::Command::new("node")
            .arg(runner.join("dashboard.mjs"))
            .env("ONSHI_BASE", format!("https://{web}"))
            .env("ONSHI_SERVER_CERT", &server_cert)
            .env("ONSHI_SCREENSHOTS", &screenshots)
            .env("ONSHI_ADMIN", "it-admin")
            .env("ONSHI_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("ONSHI_MANAGER", "tokyo-manager")
            .env("ONSHI_MANAGER_PASSWORD", MANAGER_PASSWORD)
            .env("ONSHI_IN_SCOPE", &tokyo[0])
            .env("ONSHI_OUT_OF_SCOPE", &osaka[0])
            .output(),
    )
    .await
    .expect("the browser run ends within 3 minutes")
    .expect("node runs (it comes with npm; `make deps` installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    for page in [
        "01-overview",
        "02-sites-tokyo",
        "03-site",
        "04-certificates",
        "07-rollout-paused",
        "11-manager-out-of-scope",
    ] {
        let shot = screenshots.join(format!("{page}.png"));
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "a screenshot of {page} at {}", shot.display());
    }

    // What the browser did is in the audit trail: sign-ins, the CSV export, the rollout.
    let client = db.client().await.unwrap();
    let kinds: Vec<String> = client
        .query(
            "SELECT kind || ': ' || detail FROM security_events ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let has = |needle: &str| kinds.iter().any(|k| k.contains(needle));
    assert!(has("sign_in: account it-admin"), "{kinds:#?}");
    assert!(has("sign_in: account tokyo-manager"), "{kinds:#?}");
    assert!(has("audit_export: certificates CSV"), "{kinds:#?}");
    assert!(has("started rollout"), "the rollout is audited: {kinds:#?}");
    assert!(
        has("from running to paused"),
        "the pause is audited: {kinds:#?}"
    );
}
