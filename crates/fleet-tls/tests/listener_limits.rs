//! The limits every HTTPS listener applies (issue 15, item 5), attacked over real TLS on
//! loopback: a client that opens a connection and never sends a request is closed after the
//! header timeout, an idle keep-alive connection too, and connections beyond the cap are closed
//! at once while the ones inside it keep working. A connection in use, or waiting for a slow
//! answer, is never cut by the header timeout. The plain-HTTP scrape listener (central's
//! `/metrics`) applies the same limits.

use std::time::{Duration, Instant};

use fleet_tls::config::{Identity, client_config, load_certificates, server_config};
use fleet_tls::devpki::{self, DevPkiSpec};
use fleet_tls::listen::{ListenerLimits, serve_http_with, serve_https_with};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

struct Server {
    address: std::net::SocketAddr,
    connector: TlsConnector,
    _pki: tempfile::TempDir,
}

async fn serve(limits: ListenerLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let spec = DevPkiSpec {
        operators: vec!["ops".into()],
        ..Default::default()
    };
    let pki = devpki::init(dir.path(), &spec).unwrap();
    let roots = load_certificates(&pki.chain_ca()).unwrap();
    let (cert, key) = pki.central();
    let server = server_config(
        &Identity::from_pem_files(&cert, &key).unwrap(),
        &roots,
        &[b"http/1.1"],
    )
    .unwrap();
    let (cert, key) = pki.operator("ops");
    let client = client_config(
        Some(&Identity::from_pem_files(&cert, &key).unwrap()),
        &roots,
        &[b"http/1.1"],
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(SLOW_ANSWER).await;
                "ok"
            }),
        );
    tokio::spawn(serve_https_with(
        listener,
        server,
        router,
        limits,
        std::future::pending(),
    ));
    Server {
        address,
        connector: TlsConnector::from(client),
        _pki: dir,
    }
}

impl Server {
    async fn connect(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.address).await?;
        self.connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }
}

/// How long `/slow` takes to answer: longer than [`short_header_timeout`].
const SLOW_ANSWER: Duration = Duration::from_millis(1_000);

/// One HTTP/1.1 request on `stream`, kept alive; returns the status line.
async fn get(stream: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> String {
    get_path(stream, "/").await
}

/// One HTTP/1.1 request for `path` on `stream`, kept alive; returns the status line, or what
/// went wrong when the server closed the connection instead of answering.
async fn get_path(stream: &mut (impl AsyncRead + AsyncWrite + Unpin), path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    if let Err(error) = stream.write_all(request.as_bytes()).await {
        return format!("the request could not be sent: {error}");
    }
    let mut buf = vec![0u8; 1024];
    match stream.read(&mut buf).await {
        Ok(0) => "the server closed the connection".to_owned(),
        Ok(n) => {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            text.lines().next().unwrap_or_default().to_owned()
        }
        Err(error) => format!("the connection ended: {error}"),
    }
}

/// Waits (at most `bound`) for the server to close `stream`; returns how long it took.
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), bound: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(bound, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open longer than {bound:?}"),
        }
    }
}

fn short_header_timeout() -> ListenerLimits {
    ListenerLimits {
        header_read_timeout: Duration::from_millis(400),
        ..ListenerLimits::DEFAULT
    }
}

#[tokio::test]
async fn a_client_that_never_sends_a_request_is_closed_after_the_header_timeout() {
    let server = serve(short_header_timeout()).await;
    let mut silent = server.connect().await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_after_the_header_timeout() {
    let server = serve(short_header_timeout()).await;
    let mut slow = server.connect().await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: loc")
        .await
        .unwrap();
    closed_within(&mut slow, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = serve(short_header_timeout()).await;
    let mut client = server.connect().await.unwrap();
    assert!(get(&mut client).await.contains("200"));
    closed_within(&mut client, Duration::from_secs(10)).await;
}

/// The header timeout bounds waiting for a request, never the life of a connection in use: a
/// dashboard used for a while, or an export streaming for minutes, keeps its connection.
#[tokio::test]
async fn a_connection_in_use_outlives_the_header_timeout() {
    let limits = short_header_timeout();
    let server = serve(limits).await;
    let mut client = server.connect().await.unwrap();
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < limits.header_read_timeout * 3 {
        let status = get(&mut client).await;
        assert!(
            status.contains("200"),
            "request {} after {:?} on one connection: {status:?}",
            answered + 1,
            started.elapsed()
        );
        answered += 1;
        tokio::time::sleep(limits.header_read_timeout / 8).await;
    }
    assert!(answered > 8, "only {answered} requests were made");
}

#[tokio::test]
async fn an_answer_slower_than_the_header_timeout_is_still_sent() {
    let limits = short_header_timeout();
    assert!(SLOW_ANSWER > limits.header_read_timeout * 2);
    let server = serve(limits).await;
    let mut client = server.connect().await.unwrap();
    let status = get_path(&mut client, "/slow").await;
    assert!(status.contains("200"), "the slow answer: {status:?}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_the_others_keep_working() {
    let server = serve(ListenerLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        ..ListenerLimits::DEFAULT
    })
    .await;
    let mut first = server.connect().await.unwrap();
    let mut second = server.connect().await.unwrap();
    assert!(get(&mut first).await.contains("200"));
    assert!(get(&mut second).await.contains("200"));
    // The third is accepted by the kernel, then closed before any handshake.
    let third = server.connect().await;
    assert!(
        third.is_err(),
        "a third connection was served beyond the cap"
    );
    // The two inside the cap still work.
    assert!(get(&mut first).await.contains("200"));
    // A place freed is a place taken again (the server notices the close asynchronously:
    // bounded retries, no fixed sleep).
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut again = loop {
        match server.connect().await {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => tokio::task::yield_now().await,
            Err(error) => panic!("no place freed after a connection closed: {error}"),
        }
    };
    assert!(get(&mut again).await.contains("200"));
}

/// The plain-HTTP listener (central's Prometheus endpoint) under `limits`; its address.
async fn serve_plain(limits: ListenerLimits) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(serve_http_with(
        listener,
        router,
        limits,
        std::future::pending(),
    ));
    address
}

#[tokio::test]
async fn the_plain_scrape_listener_closes_silent_and_idle_clients_and_holds_its_cap() {
    let address = serve_plain(ListenerLimits {
        max_connections: 2,
        ..short_header_timeout()
    })
    .await;
    let mut silent = TcpStream::connect(address).await.unwrap();
    let mut idle = TcpStream::connect(address).await.unwrap();
    assert!(get(&mut idle).await.contains("200"));
    // A third beyond the cap is closed before it is served.
    let mut third = TcpStream::connect(address).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .ok();
    let mut buf = [0u8; 64];
    let answered = matches!(third.read(&mut buf).await, Ok(n) if n > 0);
    assert!(!answered, "a third connection was served beyond the cap");
    let took = closed_within(&mut silent, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");
    closed_within(&mut idle, Duration::from_secs(10)).await;
}
