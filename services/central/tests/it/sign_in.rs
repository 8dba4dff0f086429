//! The sign-in page attacked by someone without an account, against the real central process
//! (issue 15, items 3 and 4): many attempts at the same moment must neither bypass the limiter
//! nor take the pod's memory (argon2id takes 19 MiB a check), and refused attempts must not
//! write an append-only row each.

use central_core::auth::accounts::{AccountSpec, create_account};
use central_store::{self as store, DatabaseUrl, Store};
use e2e::http::{Anonymous, Answer, WebSession, sign_in_form};
use e2e::{Pki, Running, TestDb};

/// Password checks central may run at once in these tests (`--sign-in-checks`).
const CHECKS: usize = 2;
/// What one argon2id check allocates (OWASP's parameters, `auth::password`).
const MIB_PER_CHECK: u64 = 19;

struct Central {
    db: TestDb,
    pki: Pki,
    process: Running,
    web: Anonymous,
}

async fn central() -> Central {
    let db = TestDb::create().await.unwrap();
    let pki = Pki::new(&[]).unwrap();
    let checks = CHECKS.to_string();
    let process = e2e::start_central_with(
        &pki,
        &db,
        &[
            "--web-listen",
            "127.0.0.1:0",
            "--sign-in-checks",
            checks.as_str(),
        ],
        &[],
    )
    .await
    .unwrap();
    let web = Anonymous::new(&pki.paths.chain_ca(), &process.field("web")).unwrap();
    Central {
        db,
        pki,
        process,
        web,
    }
}

impl Central {
    /// `count` sign-ins at the same moment, over connections opened beforehand (so that they
    /// arrive within a few milliseconds, well inside one password check).
    async fn at_once(&self, count: usize, form: impl Fn(usize) -> String) -> Vec<Answer> {
        self.web.warm_up(count).await.unwrap();
        let mut attempts = tokio::task::JoinSet::new();
        for i in 0..count {
            let (web, body) = (self.web.clone(), form(i));
            attempts.spawn(async move { web.post_form("/login", body).await.unwrap() });
        }
        attempts.join_all().await
    }

    /// Makes a whole-chain account `login` with `role` and the password "correct horse battery".
    async fn account(&self, login: &str, role: &str) {
        let store = Store::new(store::connect(&DatabaseUrl::new(&self.db.url), 1).unwrap());
        let account = AccountSpec {
            login: login.into(),
            display_name: "試験 花子".into(),
            role: role.into(),
            prefectures: Vec::new(),
            sites: Vec::new(),
            password: "correct horse battery".into(),
        };
        create_account(&store, &account, "test").await.unwrap();
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db
            .client()
            .await
            .unwrap()
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Peak resident memory of central so far (KiB).
    fn peak_rss_kib(&self) -> u64 {
        let pid = self.process.child.id().expect("central runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }
}

fn tally(answers: &[Answer]) -> (usize, usize, usize) {
    let checked = answers.iter().filter(|a| a.status == 401).count();
    let limited = answers
        .iter()
        .filter(|a| a.status == 429 && a.body.contains("too many sign-in attempts"))
        .count();
    let busy = answers
        .iter()
        .filter(|a| a.status == 429 && a.body.contains("sign-in is busy"))
        .count();
    (checked, limited, busy)
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_sign_ins_at_once_are_counted_before_hashing_and_take_bounded_memory() {
    let central = central().await;
    let failed_rows =
        || central.count("SELECT count(*) FROM security_events WHERE kind = 'sign_in_failed'");
    let before = central.peak_rss_kib();
    let answers = central
        .at_once(64, |_| sign_in_form("hanako", "guess-number-one"))
        .await;
    let (checked, limited, busy) = tally(&answers);
    assert_eq!(
        checked + limited + busy,
        64,
        "every attempt is a 401 or a 429: {answers:?}"
    );
    // Counted before its hash: never more than the login's five checked, however many were
    // in flight (before the fix, all 64 passed the limiter and were hashed at once).
    assert!(checked <= 5, "{checked} passwords checked for one login");
    for answer in answers.iter().filter(|a| a.status == 429) {
        assert!(
            answer.retry_after.is_some(),
            "a 429 says when to retry: {answer:?}"
        );
    }
    assert_eq!(
        failed_rows().await,
        checked as i64,
        "one audit row per checked password, none per refusal"
    );
    // At most CHECKS hashes at once: the peak grows by a few checks' memory, not by 64 (1.2 GiB).
    let grown_mib = central.peak_rss_kib().saturating_sub(before) / 1024;
    let bound = MIB_PER_CHECK * CHECKS as u64 + 96;
    assert!(
        grown_mib <= bound,
        "central's peak memory grew by {grown_mib} MiB (bound {bound} MiB)"
    );

    // One at a time, the login's attempts are checked up to five; the sixth and every later
    // one, at once or not, is refused by the limit without a hash.
    for _ in checked..5 {
        let answer = central
            .web
            .post_form("/login", sign_in_form("hanako", "guess-number-two"))
            .await
            .unwrap();
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    assert_eq!(failed_rows().await, 5);
    let sixth = central
        .web
        .post_form("/login", sign_in_form("hanako", "guess-number-three"))
        .await
        .unwrap();
    assert_eq!(sixth.status, 429, "{sixth:?}");
    assert!(
        sixth.body.contains("too many sign-in attempts"),
        "{sixth:?}"
    );
    let wait: u64 = sixth.retry_after.as_deref().unwrap().parse().unwrap();
    assert!(
        wait > 60,
        "the window's remaining time, not a moment: {wait}"
    );
    let answers = central
        .at_once(64, |_| sign_in_form("HANAKO", "guess-number-four"))
        .await;
    let (checked, limited, busy) = tally(&answers);
    assert_eq!((checked, limited, busy), (0, 64, 0), "{answers:?}");
    assert_eq!(failed_rows().await, 5, "no hash, no row");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_ins_beyond_the_check_slots_are_answered_busy_and_a_person_still_signs_in() {
    let central = central().await;
    // Twenty logins (the per-address limit), all at once: only CHECKS are checked together.
    let answers = central
        .at_once(20, |i| sign_in_form(&format!("user-{i:02}"), "guess"))
        .await;
    let (checked, limited, busy) = tally(&answers);
    assert_eq!(checked + limited + busy, 20, "{answers:?}");
    assert!(
        busy >= 1,
        "twenty attempts at once, {CHECKS} check slots: some are busy ({answers:?})"
    );
    for answer in answers.iter().filter(|a| a.status == 429) {
        assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
    }
    // Busy attempts were taken back: those logins may try again, and their check happens.
    let retry = central
        .web
        .post_form("/login", sign_in_form("user-00", "guess"))
        .await
        .unwrap();
    assert!(retry.status == 401 || retry.status == 429, "{retry:?}");
    assert!(
        central
            .count(
                "SELECT coalesce(sum(attempts), 0)::bigint FROM sign_in_refusals
                 WHERE reason = 'busy'"
            )
            .await
            >= busy as i64,
        "busy refusals are counted"
    );

    // A person with an account still signs in: four wrong passwords, then the right one.
    central.account("kanri", "viewer").await;
    for _ in 0..4 {
        let wrong = central
            .web
            .post_form("/login", sign_in_form("kanri", "wrong horse battery"))
            .await
            .unwrap();
        assert_eq!(wrong.status, 401, "{wrong:?}");
    }
    let ca = central.pki.paths.chain_ca();
    let web = central.process.field("web");
    WebSession::sign_in(&ca, &web, "kanri", "correct horse battery")
        .await
        .unwrap();
    // The success cleared the login's count: it is not locked after one more mistake.
    let wrong = central
        .web
        .post_form("/login", sign_in_form("kanri", "wrong horse battery"))
        .await
        .unwrap();
    assert_eq!(wrong.status, 401, "{wrong:?}");
    WebSession::sign_in(&ca, &web, "kanri", "correct horse battery")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_refused_sign_ins_leave_a_handful_of_rows_and_a_huge_login_none() {
    let central = central().await;
    let rows = || async {
        central.count("SELECT count(*) FROM security_events").await
            + central.count("SELECT count(*) FROM sign_in_refusals").await
    };
    let at_start = rows().await;
    // A megabyte login: refused before it is read, counted or written.
    // Its own connection: central answers before reading the body and closes it.
    let once =
        Anonymous::new(&central.pki.paths.chain_ca(), &central.process.field("web")).unwrap();
    // Central answers 413 and closes without reading the rest; when the client is still
    // writing its megabyte then, it sees the connection reset instead of the answer. Either is
    // a refusal; the rows counted below show nothing was written. The answer is checked on
    // a body the socket buffers take whole.
    if let Ok(huge) = once
        .post_form("/login", sign_in_form(&"a".repeat(1 << 20), "x"))
        .await
    {
        assert_eq!(
            huge.status,
            413,
            "{}",
            huge.body.chars().take(300).collect::<String>()
        );
    }
    let once =
        Anonymous::new(&central.pki.paths.chain_ca(), &central.process.field("web")).unwrap();
    let huge = once
        .post_form("/login", sign_in_form(&"a".repeat(16 << 10), "x"))
        .await
        .unwrap();
    assert_eq!(
        huge.status,
        413,
        "{}",
        huge.body.chars().take(300).collect::<String>()
    );
    assert!(
        huge.body.contains("larger than 4096 bytes"),
        "{}",
        huge.body
    );
    // Sixty-five characters fit the form but not a login.
    let long = central
        .web
        .post_form("/login", sign_in_form(&"b".repeat(65), "x"))
        .await
        .unwrap();
    assert_eq!(long.status, 400, "{long:?}");
    assert!(long.body.contains("1 to 64 characters"), "{}", long.body);
    assert_eq!(rows().await, at_start, "refused inputs write nothing");

    // The login's five checked attempts, then a thousand more, twenty at a time: every one of
    // them refused by the limit (before the fix, each was a security_events row).
    for _ in 0..5 {
        let answer = central
            .web
            .post_form("/login", sign_in_form("taro", "guess-again"))
            .await
            .unwrap();
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    let after_checks = rows().await;
    assert_eq!(after_checks - at_start, 5, "one row per checked password");
    for _ in 0..50 {
        let answers = central
            .at_once(20, |_| sign_in_form("taro", "guess-again"))
            .await;
        assert_eq!(tally(&answers), (0, 20, 0), "{answers:?}");
    }
    assert_eq!(
        central
            .count(
                "SELECT coalesce(sum(attempts), 0)::bigint FROM sign_in_refusals
                 WHERE reason = 'rate_limited' AND key = 'login:taro'"
            )
            .await,
        1000,
        "every refusal is counted"
    );
    // One row for the login's key, two if the test straddles the end of a 15-minute window.
    let written = rows().await - after_checks;
    assert!(written <= 2, "{written} rows for 1,000 refused attempts");
}

/// A link to the sign-in page with `next=` pointing elsewhere must not send the person who
/// signs in there: after decoding, a tab or line break (which browsers drop from `Location`),
/// a backslash (read as `/`), `//host` or an absolute URL all lead to `/`.
#[tokio::test(flavor = "multi_thread")]
async fn after_signing_in_only_a_path_of_this_site_is_followed() {
    let central = central().await;
    central.account("hoshi", "viewer").await;
    for (next, expected) in [
        ("/sites%3Fq%3D1", "/sites?q=1"),
        ("/%09/evil.example", "/"),
        ("/%0D%0A/evil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("https%3A%2F%2Fevil.example%2F", "/"),
    ] {
        let form = format!(
            "{}&next={next}",
            sign_in_form("hoshi", "correct horse battery")
        );
        let answer = central.web.post_form("/login", form).await.unwrap();
        assert_eq!(answer.status, 303, "{next}: {answer:?}");
        assert_eq!(answer.location.as_deref(), Some(expected), "{next}");
    }
}

/// A signed-in browser's form is read (to find its CSRF token) only up to 64 KiB: a larger
/// one is refused with 413 before it is held in memory (it was 1 MiB).
#[tokio::test(flavor = "multi_thread")]
async fn a_signed_in_form_beyond_64_kib_is_refused_before_it_is_read() {
    let central = central().await;
    central.account("kanrisha", "chain_admin").await;
    let session = WebSession::sign_in(
        &central.pki.paths.chain_ca(),
        &central.process.field("web"),
        "kanrisha",
        "correct horse battery",
    )
    .await
    .unwrap();
    let form = format!("name={}", "a".repeat(100 << 10));
    let (status, body) = session.post_form("/notifications", form).await.unwrap();
    assert_eq!(
        status,
        413,
        "{}",
        body.chars().take(300).collect::<String>()
    );
    assert!(body.contains("65536"), "{body}");
}

/// Every page of the dashboard tells the browser not to run scripts or load anything from
/// elsewhere, not to be framed by another site, not to send its URLs as referrers and to
/// stay on HTTPS: the sign-in page, the stylesheet and a redirect to sign in alike.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_forbids_scripts_framing_referrers_and_plain_http() {
    let central = central().await;
    for path in ["/login", "/static/app.css", "/sites"] {
        let (status, headers) = central.web.get_headers(path).await.unwrap();
        assert!(status < 400, "{path}: {status}");
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(
            !csp.contains("script-src"),
            "no script source is allowed: {csp}"
        );
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "same-origin", "{path}");
        assert!(
            header("strict-transport-security").starts_with("max-age="),
            "{path}"
        );
    }
}

/// A login locked out after its five wrong passwords stays locked out when someone floods the
/// limiter with new logins from many addresses: the limiter forgets the least recently used
/// keys that are not locked out, never everyone at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_new_logins_and_addresses_does_not_lift_a_lock_out() {
    let db = TestDb::create().await.unwrap();
    let pki = Pki::new(&[]).unwrap();
    let process = e2e::start_central_with(
        &pki,
        &db,
        &["--web-listen", "127.0.0.1:0", "--sign-in-keys", "32"],
        &[],
    )
    .await
    .unwrap();
    let (ca, web) = (pki.paths.chain_ca(), process.field("web"));
    let victim = Anonymous::new(&ca, &web).unwrap();
    for _ in 0..5 {
        let answer = victim
            .post_form("/login", sign_in_form("kanri", "guess"))
            .await
            .unwrap();
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    let locked = victim
        .post_form("/login", sign_in_form("kanri", "guess"))
        .await
        .unwrap();
    assert_eq!(locked.status, 429, "{locked:?}");

    // Forty new logins, each from an address of its own: eighty keys for thirty-two places.
    for i in 0..40u8 {
        let from = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, i + 1));
        let flood = Anonymous::from_address(&ca, &web, Some(from)).unwrap();
        let answer = flood
            .post_form("/login", sign_in_form(&format!("flood-{i}"), "guess"))
            .await
            .unwrap();
        assert!(answer.status == 401 || answer.status == 429, "{answer:?}");
    }

    let still = victim
        .post_form("/login", sign_in_form("kanri", "guess"))
        .await
        .unwrap();
    assert_eq!(
        still.status, 429,
        "the lock-out survives the flood: {still:?}"
    );
}
