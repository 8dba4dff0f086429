//! Central behind PgBouncer in transaction mode (docs/scale.md, "Poolers"): a server
//! connection per transaction, so nothing central does may rely on a session — no statement
//! prepared in one round trip and used in the next, no session advisory lock, no `SET`. The
//! pooler is real (Debian's PgBouncer), in front of the throwaway cluster; central serves
//! through it while its migrations go to PostgreSQL directly, as the chart's migration Job does.

use e2e::http::Operator;
use e2e::pg::{Bouncer, PoolMode};
use e2e::{AgentSite, Pki, TestDb, eventually, https_endpoint, sim_people, site_code, start_sim};

#[tokio::test(flavor = "multi_thread")]
async fn central_ingests_and_answers_through_pgbouncer_in_transaction_mode() -> anyhow::Result<()> {
    let stack = Stack::behind_pgbouncer("transaction").await?;
    let (db, pki, central, site) = (&stack.db, &stack.pki, &stack.central, &stack.site);

    // Several lookups at once, so central's pool holds several connections and PgBouncer
    // hands each transaction whichever server connection is free.
    lookups_are_acked_and_stored_once(&stack.agent_site, db, 12).await?;

    // An administrative write (audited in the same transaction), then the reads: every
    // listing the API serves goes through the same pooler.
    let operator = Operator::new(pki, central);
    let (status, body) = operator
        .send(
            "PUT",
            &format!("/api/v1/sites/{site}"),
            &serde_json::json!({ "name": "広島中央薬局" }),
        )
        .await?;
    assert!(
        status < 300,
        "naming the site through PgBouncer: {status} {body}"
    );
    for path in [
        "/api/v1/sites".to_string(),
        format!("/api/v1/sites/{site}/events"),
        format!("/api/v1/sites/{site}/inventory"),
        format!("/api/v1/sites/{site}/verification"),
        format!("/api/v1/sites/{site}/adoption"),
        "/api/v1/agents".to_string(),
        "/api/v1/alerts".to_string(),
        "/api/v1/rollouts".to_string(),
        "/api/v1/availability".to_string(),
        "/api/v1/certificates".to_string(),
        "/api/v1/audit/events?from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z".to_string(),
        "/api/v1/adoption/prefectures".to_string(),
        "/api/v1/revocations".to_string(),
        "/api/v1/me".to_string(),
    ] {
        for attempt in 0..3 {
            let (status, _, body) = operator.get_raw(&path).await?;
            assert_eq!(
                status,
                200,
                "GET {path} (attempt {attempt}) through PgBouncer: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn central_told_there_is_no_pooler_behind_one_stops_keeping_statements_and_loses_nothing()
-> anyhow::Result<()> {
    // `--database-pooler none` behind a transaction pooler is a misconfiguration: the
    // statements ingest keeps prepared are gone (the strict pooler discards them after every
    // transaction). Central must notice, write the group again with unnamed statements, keep
    // none from then on, and acknowledge each event once.
    let stack = Stack::behind_pgbouncer("none").await?;
    lookups_are_acked_and_stored_once(&stack.agent_site, &stack.db, 4).await
}

/// A site's agent and onshi-sim, and central serving through a strict PgBouncer in transaction
/// mode (a statement left on a server connection fails every time, not by chance), told
/// `pooler` (`--database-pooler`); migrations go to PostgreSQL directly, as the chart's
/// migration Job does.
/// Fields drop in this order: the processes before the pooler, the database last.
struct Stack {
    _agent: e2e::Running,
    agent_site: AgentSite,
    _sim: e2e::Running,
    central: e2e::Running,
    pki: Pki,
    site: String,
    _bouncer: Bouncer,
    db: TestDb,
}

impl Stack {
    async fn behind_pgbouncer(pooler: &str) -> anyhow::Result<Self> {
        let db = TestDb::create().await?;
        let bouncer = Bouncer::strict(&db.url, PoolMode::Transaction).await?;
        let site = site_code("341071236");
        let pki = Pki::new(&[&site])?;
        let mut serve = e2e::central_serve(&pki, &["--database-pooler", pooler]);
        serve
            .env("DATABASE_URL", bouncer.route(&db.app_login().await?))
            .env("CENTRAL_MIGRATE_DATABASE_URL", &db.url);
        let central = e2e::spawn_ready(serve).await?;
        let sim = start_sim(&pki).await?;
        let agent_site = AgentSite::new(
            &pki,
            &site,
            &https_endpoint(&central, "grpc"),
            &https_endpoint(&sim, "https"),
        )?;
        let agent = agent_site.start().await?;
        Ok(Self {
            _agent: agent,
            agent_site,
            _sim: sim,
            central,
            pki,
            site,
            _bouncer: bouncer,
            db,
        })
    }
}

/// `count` lookups at the site at once, each answered, acknowledged by central and stored once.
async fn lookups_are_acked_and_stored_once(
    agent_site: &AgentSite,
    db: &TestDb,
    count: usize,
) -> anyhow::Result<()> {
    let people = sim_people("valid", count).await?;
    let lookups = people.iter().map(|person| agent_site.lookup(person));
    for output in futures_util::future::join_all(lookups).await {
        let output = output?;
        assert!(
            output.status.success(),
            "a lookup through central behind PgBouncer failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    eventually("central to acknowledge every lookup", || async {
        let status = agent_site.status().await.ok()?;
        (status["outbox_depth"] == 0 && status["last_acked_sequence"] == count as u64).then_some(())
    })
    .await;
    let stored: i64 = db
        .client()
        .await?
        .query_one("SELECT count(*) FROM events WHERE kind = 'lookup'", &[])
        .await?
        .get(0);
    assert_eq!(stored, count as i64, "each lookup stored exactly once");
    Ok(())
}
