//! Issue 15, item 5, against the real central process: a client that opens a connection and
//! never asks for anything is closed by every listener central serves HTTP on — the dashboard's
//! (TLS, no client certificate), the operators' (mutual TLS) and the Prometheus endpoint (plain
//! HTTP) — after the header-read timeout (15 s, `ListenerLimits::DEFAULT`), instead of holding a
//! place and a task for ever. The three wait at once, so the test takes the timeout once.

use std::time::{Duration, Instant};

use e2e::{Pki, TestDb, site_code, start_central_with};
use fleet_tls::config::{Identity, client_config, load_certificates};
use fleet_tls::listen::ListenerLimits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits for the server to close `stream`; how long it took. Fails after `bound`.
async fn closed_within(
    what: &str,
    mut stream: impl AsyncRead + Unpin,
    bound: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(bound, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => anyhow::bail!("{what}: central kept a silent connection open for {bound:?}"),
        }
    }
}

/// A TLS connection to `addr` that completes its handshake (as `operator`, when given) and then
/// sends nothing.
async fn silent_tls(
    pki: &Pki,
    addr: &str,
    operator: Option<&str>,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let identity = match operator {
        Some(name) => {
            let (cert, key) = pki.paths.operator(name);
            Some(Identity::from_pem_files(&cert, &key)?)
        }
        None => None,
    };
    let tls = client_config(
        identity.as_ref(),
        &load_certificates(&pki.paths.chain_ca())?,
        &[b"http/1.1"],
    )?;
    let tcp = TcpStream::connect(addr).await?;
    Ok(tokio_rustls::TlsConnector::from(tls)
        .connect(
            rustls::pki_types::ServerName::try_from("localhost")?.to_owned(),
            tcp,
        )
        .await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_http_listener_of_central_closes_a_client_that_never_asks() -> anyhow::Result<()> {
    let site = site_code("131000049");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central_with(
        &pki,
        &db,
        &[
            "--web-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    )
    .await?;
    let timeout = ListenerLimits::DEFAULT.header_read_timeout;
    let bound = timeout + e2e::patience();

    let web = silent_tls(&pki, &central.field("web"), None).await?;
    let operator = silent_tls(&pki, &central.field("http"), Some("e2e")).await?;
    let metrics = TcpStream::connect(central.field("metrics")).await?;
    let (web, operator, metrics) = tokio::join!(
        closed_within("dashboard listener", web, bound),
        closed_within("operator listener", operator, bound),
        closed_within("metrics listener", metrics, bound),
    );
    // Not before the timeout: the close is the header-read deadline, not a refused handshake.
    let early = timeout - Duration::from_secs(2);
    for (what, took) in [
        ("dashboard", web?),
        ("operator", operator?),
        ("metrics", metrics?),
    ] {
        assert!(took >= early, "{what} listener closed after {took:?}");
    }
    // The listener still serves whoever asks.
    let mut scraper = TcpStream::connect(central.field("metrics")).await?;
    scraper
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(e2e::patience(), scraper.read_to_end(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    Ok(())
}
