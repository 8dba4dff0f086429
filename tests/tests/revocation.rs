//! Revocations that hold against what a stolen certificate already has (issue 15): an open
//! HTTP/2 connection of a revoked operator certificate (item 7).

use e2e::http::{OperatorConnection, send_json};
use e2e::{Pki, TestDb, eventually, site_code, start_central};

/// An operator's tooling keeps one HTTP/2 connection open; the certificate is revoked (by
/// another operator) while it is open. The next request on that same connection is refused
/// with `certificate_revoked`, the refusal is audited, and central closes the connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_revoked_while_its_http2_connection_is_open_is_refused_there_and_the_connection_closed()
-> anyhow::Result<()> {
    let site = site_code("131011001");
    let pki = Pki::with_operators(&[&site], &["e2e", "admin"])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let addr = central.field("http");

    let mut stolen = OperatorConnection::open(&pki, &addr, "e2e").await?;
    let (status, answer) = stolen.get("/api/v1/revocations").await?;
    assert_eq!(
        status, 200,
        "before its revocation the certificate works: {answer}"
    );

    let (cert, key) = pki.paths.operator("admin");
    let leaf = fleet_tls::config::load_certificates(&pki.paths.operator("e2e").0)?.remove(0);
    let fingerprint = onshi_domain::hex::encode(&fleet_tls::deny::fingerprint(&leaf));
    let (status, answer) = send_json(
        &pki.paths.chain_ca(),
        &cert,
        &key,
        &addr,
        "POST",
        "/api/v1/revocations",
        &serde_json::json!({ "sha256_fingerprint": fingerprint, "reason": "laptop stolen" }),
    )
    .await?;
    assert_eq!(status, 200, "{answer}");

    let (status, answer) = stolen.get("/api/v1/revocations").await?;
    assert_eq!(
        status, 401,
        "the same connection, after the revocation: {answer}"
    );
    assert_eq!(answer["code"], "certificate_revoked", "{answer}");
    stolen.closed().await?;

    let client = db.client().await?;
    eventually("the refusal on the open connection is audited", || {
        let client = &client;
        async move {
            let row = client
                .query_one(
                    "SELECT count(*) FROM security_events WHERE kind = 'revoked_certificate_refused'",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) > 0).then_some(())
        }
    })
    .await;

    // A new connection with it is refused at the handshake, as before.
    let refused = match OperatorConnection::open(&pki, &addr, "e2e").await {
        Err(_) => true,
        Ok(mut again) => again.get("/api/v1/revocations").await.is_err(),
    };
    assert!(
        refused,
        "a new connection with the revoked certificate is refused"
    );
    Ok(())
}
