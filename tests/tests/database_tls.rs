//! Central reaches PostgreSQL over TLS when its URL asks for it (issue 15, Low): the throwaway
//! cluster is given a server certificate and TLS is switched on; central with
//! `sslmode=verify-full&sslrootcert=<CA>` serves over TLS connections, and refuses to start
//! when the certificate does not chain to the CA it was given.

use std::os::unix::fs::PermissionsExt;

use e2e::http::Operator;
use e2e::{Pki, TestDb, central_serve, eventually, spawn_ready};

/// Switches TLS on in the cluster behind `db`, with the PKI's central certificate (it names
/// 127.0.0.1) as PostgreSQL's. The files go beside the cluster's data folder, owned by the
/// server's user, as PostgreSQL demands of its key.
async fn switch_tls_on(db: &TestDb, pki: &Pki) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let client = db.client().await?;
    let data: String = client.query_one("SHOW data_directory", &[]).await?.get(0);
    let data = std::path::Path::new(&data);
    let owner = std::fs::metadata(data).map_err(|e| {
        anyhow::anyhow!(
            "the TLS test needs the cluster's data folder {} on this machine (DATABASE_URL of \
             a local cluster, as scripts/with-pg.sh makes): {e}",
            data.display()
        )
    })?;
    let dir = data
        .parent()
        .expect("a data folder has a parent")
        .join("tls-e2e");
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let (cert, key) = pki.paths.central();
    let (server_cert, server_key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::copy(cert, &server_cert)?;
    std::fs::copy(key, &server_key)?;
    std::fs::set_permissions(&server_cert, std::fs::Permissions::from_mode(0o644))?;
    std::fs::set_permissions(&server_key, std::fs::Permissions::from_mode(0o600))?;
    for file in [&server_cert, &server_key] {
        std::os::unix::fs::chown(file, Some(owner.uid()), Some(owner.gid()))?;
    }
    for (setting, value) in [
        ("ssl_cert_file", server_cert.display().to_string()),
        ("ssl_key_file", server_key.display().to_string()),
        ("ssl", "on".to_string()),
    ] {
        client
            .batch_execute(&format!("ALTER SYSTEM SET {setting} = '{value}'"))
            .await?;
    }
    client.batch_execute("SELECT pg_reload_conf()").await?;
    eventually("PostgreSQL takes TLS connections", || async {
        let client = db.client().await.ok()?;
        let ssl: String = client.query_one("SHOW ssl", &[]).await.ok()?.get(0);
        (ssl == "on").then_some(())
    })
    .await;
    Ok(())
}

/// The user and the rest of a `postgres://user@host…` URL.
fn user_of(url: &str) -> String {
    let rest = url.split_once("://").expect("a postgres:// URL").1;
    let userinfo = rest.split_once('@').expect("a user in the URL").0;
    userinfo.split(':').next().unwrap_or_default().to_string()
}

fn with_query(url: &str, query: &str) -> String {
    let join = if url.contains('?') { '&' } else { '?' };
    format!("{url}{join}{query}")
}

#[tokio::test(flavor = "multi_thread")]
async fn central_connects_over_verified_tls_when_its_url_asks_and_refuses_a_foreign_certificate()
-> anyhow::Result<()> {
    let pki = Pki::new(&[])?;
    let db = TestDb::create().await?;
    switch_tls_on(&db, &pki).await?;
    let app = db.app_login().await?;
    let role = user_of(&app);

    // The certificate chains to the chain CA and names 127.0.0.1: central serves, over TLS.
    let verified = with_query(
        &app,
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            pki.paths.chain_ca().display()
        ),
    );
    let mut command = central_serve(&pki, &[]);
    command
        .env("DATABASE_URL", &verified)
        .env("CENTRAL_MIGRATE_DATABASE_URL", &db.url);
    let central = spawn_ready(command).await?;
    let (status, sites) = Operator::new(&pki, &central).get("/api/v1/sites").await?;
    assert_eq!(status, 200, "{sites}");
    let client = db.client().await?;
    let (encrypted, plain): (i64, i64) = {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl) AS encrypted,
                        count(*) FILTER (WHERE NOT s.ssl) AS plain
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                 WHERE a.usename = $1",
                &[&role],
            )
            .await?;
        (row.get("encrypted"), row.get("plain"))
    };
    assert!(encrypted > 0, "central's connections are TLS");
    assert_eq!(plain, 0, "none of central's connections is plain");
    central.kill().await?;

    // A CA that did not issue PostgreSQL's certificate: central does not start.
    let foreign = with_query(
        &app,
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            pki.paths.common_ca().display()
        ),
    );
    let mut command = central_serve(&pki, &[]);
    command
        .env("DATABASE_URL", &foreign)
        .env("CENTRAL_MIGRATE_DATABASE_URL", &db.url);
    assert!(
        spawn_ready(command).await.is_err(),
        "central must not serve over a connection it cannot verify"
    );

    // sslmode=require would take any certificate: refused with the reason.
    let output = tokio::process::Command::new(e2e::bin("central"))
        .arg("schema")
        .env("DATABASE_URL", with_query(&app, "sslmode=require"))
        .output()
        .await?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("verify-full"), "{stderr}");
    Ok(())
}
