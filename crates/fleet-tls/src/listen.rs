//! TLS listeners for tonic (gRPC) and axum (HTTPS), and the plain-HTTP scrape listener.
//!
//! Handshakes run in their own tasks with a deadline, so a client that connects and stays silent
//! cannot hold up the others, and a refused handshake (no certificate, a certificate from another
//! CA, TLS 1.2 only) is logged with the peer address and never reaches the application.
//!
//! Every listener holds at most [`ListenerLimits::max_connections`] connections, handshakes
//! included: one more is closed as soon as it is accepted, so a flood of idle sockets costs a
//! file descriptor for a moment, never memory or a task. HTTPS listeners also close a connection
//! whose request head does not arrive within [`ListenerLimits::header_read_timeout`] — which is
//! also how an idle HTTP/1.1 keep-alive connection ends — and ping HTTP/2 connections, closing
//! those that stop answering. The agents' gRPC stream keeps its own keepalive (tonic's).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Completed handshakes waiting for the server to pick them up.
const READY_QUEUE: usize = 64;

/// What one listener allows, whoever connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once, TLS handshakes included; one more is closed on accept.
    pub max_connections: usize,
    /// HTTPS: how long a request head may take to arrive, counted from the connection's start
    /// or the previous response (so an idle HTTP/1.1 keep-alive connection is closed after it).
    pub header_read_timeout: Duration,
    /// HTTPS over HTTP/2: how often an idle connection is pinged.
    pub keepalive_interval: Duration,
    /// HTTPS over HTTP/2: how long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// HTTPS over HTTP/2: requests in flight on one connection.
    pub max_concurrent_streams: u32,
}

impl ListenerLimits {
    /// For central's listeners: far above a chain's agents and operators (a 3,000-site chain
    /// holds 3,000 agent streams), far below what exhausts a pod's file descriptors or memory.
    pub const DEFAULT: ListenerLimits = ListenerLimits {
        max_connections: 8_192,
        header_read_timeout: Duration::from_secs(15),
        keepalive_interval: Duration::from_secs(30),
        keepalive_timeout: Duration::from_secs(20),
        max_concurrent_streams: 64,
    };
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// An accepted connection holding its place under [`ListenerLimits::max_connections`]: the
/// place is given back when the connection is dropped, however it ends.
#[derive(Debug)]
pub struct Limited<S> {
    inner: S,
    _place: OwnedSemaphorePermit,
}

impl<S> Limited<S> {
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// tonic reads the peer's certificates through this (the agents' identity).
impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Limited<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The certificate chain a client presented, as an axum request extension.
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

impl PeerCertificates {
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.0.first()
    }
}

/// The client's address, as an axum request extension (for per-address limits and the audit
/// trail of sign-ins).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddress(pub SocketAddr);

/// Accepts TCP connections on `listener` and yields the ones whose TLS handshake succeeded,
/// under [`ListenerLimits::DEFAULT`]. The stream ends, and the accept task with it, when the
/// consumer drops it.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<Result<Limited<TlsStream<TcpStream>>, std::io::Error>> {
    tls_incoming_with(listener, config, ListenerLimits::DEFAULT)
}

/// [`tls_incoming`] under `limits`.
pub fn tls_incoming_with(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    limits: ListenerLimits,
) -> ReceiverStream<Result<Limited<TlsStream<TcpStream>>, std::io::Error>> {
    let acceptor = TlsAcceptor::from(config);
    incoming_with(listener, limits, move |tcp, peer| {
        let acceptor = acceptor.clone();
        async move { handshake(&acceptor, tcp, peer).await }
    })
}

/// Accepts TCP connections on `listener` under `limits` and yields each once `open` made it
/// usable (a TLS handshake, or nothing for plain HTTP); `open` runs in the connection's own task.
fn incoming_with<S, F, Fut>(
    listener: TcpListener,
    limits: ListenerLimits,
    open: F,
) -> ReceiverStream<Result<Limited<S>, std::io::Error>>
where
    S: Send + 'static,
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = Option<S>> + Send + 'static,
{
    let (ready_tx, ready_rx) = mpsc::channel(READY_QUEUE);
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let turned_away = AtomicU64::new(0);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = ready_tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Typically EMFILE: back off briefly instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(place) = places.clone().try_acquire_owned() else {
                // Closed at once. Logged on the first and then every 1,000th, so a flood
                // cannot fill the log either.
                let n = turned_away.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(1_000) {
                    tracing::warn!(
                        %peer,
                        limit = limits.max_connections,
                        turned_away = n + 1,
                        "connection limit reached; connection closed"
                    );
                }
                drop(tcp);
                continue;
            };
            let opening = open(tcp, peer);
            let ready_tx = ready_tx.clone();
            tokio::spawn(async move {
                if let Some(stream) = opening.await {
                    let stream = Limited {
                        inner: stream,
                        _place: place,
                    };
                    let _ = ready_tx.send(Ok(stream)).await;
                }
            });
        }
    });
    ReceiverStream::new(ready_rx)
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "TLS handshake refused");
            None
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Serves `router` over HTTPS on `listener` under [`ListenerLimits::DEFAULT`] until
/// `shutdown` completes, then lets in-flight requests finish (bounded by `HANDSHAKE_TIMEOUT`).
/// Each request carries the client's certificates as a [`PeerCertificates`] extension and its
/// address as a [`PeerAddress`].
pub async fn serve_https(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    serve_https_with(listener, config, router, ListenerLimits::DEFAULT, shutdown).await
}

/// [`serve_https`] under `limits`.
pub async fn serve_https_with(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: axum::Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let incoming = tls_incoming_with(listener, config, limits);
    serve(incoming, router, limits, None, shutdown).await
}

/// Serves `router` over plain HTTP on `listener` under `limits` (central's Prometheus scrape
/// endpoint): the same connection cap, header-read timeout and first-request deadline as the
/// HTTPS listeners, without TLS. Requests carry a [`PeerAddress`] and no certificates.
pub async fn serve_http_with(
    listener: TcpListener,
    router: axum::Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let incoming = incoming_with(listener, limits, |tcp, _peer| async move {
        let _ = tcp.set_nodelay(true);
        Some(tcp)
    });
    serve(incoming, router, limits, None, shutdown).await
}

/// What a served connection tells the application about its client.
trait Client {
    fn certificates(&self) -> Vec<CertificateDer<'static>>;
    fn address(&self) -> Option<SocketAddr>;
}

impl Client for TlsStream<TcpStream> {
    fn certificates(&self) -> Vec<CertificateDer<'static>> {
        self.get_ref()
            .1
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    fn address(&self) -> Option<SocketAddr> {
        self.get_ref().0.peer_addr().ok()
    }
}

impl Client for TcpStream {
    fn certificates(&self) -> Vec<CertificateDer<'static>> {
        Vec::new()
    }

    fn address(&self) -> Option<SocketAddr> {
        self.peer_addr().ok()
    }
}

/// The deny list a client-certificate listener checks on every request, not only at the
/// handshake: an HTTP/2 connection outlives a revocation, and its requests must not.
#[derive(Clone)]
pub struct Revocations {
    pub deny: crate::deny::DenyList,
    /// Told the leaf's fingerprint at each refusal (the audit trail), as at the handshake.
    pub refused: crate::deny::OnRefused,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations").finish_non_exhaustive()
    }
}

/// [`serve_https_with`] for a listener that asks for client certificates: a request whose
/// client certificate is on `revocations.deny` is answered 401 (`certificate_revoked`) without
/// reaching `router`, and its connection is closed (HTTP/2: GOAWAY, then the socket), so a
/// certificate revoked while its connection was open stops working at its next request.
pub async fn serve_https_revocable(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: axum::Router,
    limits: ListenerLimits,
    revocations: Revocations,
    shutdown: impl Future<Output = ()> + Send,
) {
    let incoming = tls_incoming_with(listener, config, limits);
    serve(incoming, router, limits, Some(revocations), shutdown).await
}

/// The answer to a request under a revoked certificate: JSON in central's error shape.
fn revoked_answer() -> axum::response::Response {
    let body = r#"{"code":"certificate_revoked","message":"この証明書は失効しています。接続を閉じます / this client certificate has been revoked; the connection is closed"}"#;
    axum::response::Response::builder()
        .status(axum::http::StatusCode::UNAUTHORIZED)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body))
        .expect("a static response")
}

async fn serve<S>(
    mut incoming: ReceiverStream<Result<Limited<S>, std::io::Error>>,
    router: axum::Router,
    limits: ListenerLimits,
    revocations: Option<Revocations>,
    shutdown: impl Future<Output = ()> + Send,
) where
    S: Client + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tokio_stream::StreamExt;

    // Every connection task holds a clone of `open`; at shutdown they are told through
    // `stopping`, and `ended` yields None once the last one is gone.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let (open, mut ended) = mpsc::channel::<()>(1);
    // hyper enforces its header timeout and HTTP/2 keepalive only with a timer.
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            next = incoming.next() => match next {
                Some(Ok(stream)) => stream,
                Some(Err(_)) => continue,
                None => break,
            },
        };
        let client = stream.get_ref();
        let certificates = client.certificates();
        let leaf = certificates.first().cloned();
        let peer = PeerCertificates(Arc::new(certificates));
        let address = client.address().map(PeerAddress);
        // hyper's header timeout runs only once the client has sent something (or between
        // requests): a client that completes the handshake and stays silent is closed here.
        let asked = Arc::new(AtomicBool::new(false));
        let noted = asked.clone();
        // Set by a request under a revoked certificate: the connection is then closed.
        let revoked = Arc::new(tokio::sync::Notify::new());
        let refuse = revoked.clone();
        let checks = revocations.clone();
        let service = router
            .clone()
            .layer(axum::Extension(peer))
            .layer(axum::Extension(address))
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    noted.store(true, Ordering::Relaxed);
                    let revoked = match (&checks, &leaf) {
                        (Some(checks), Some(leaf)) if checks.deny.refuses(leaf) => {
                            (checks.refused)(crate::deny::fingerprint(leaf));
                            refuse.notify_one();
                            true
                        }
                        _ => false,
                    };
                    async move {
                        if revoked {
                            revoked_answer()
                        } else {
                            next.run(request).await
                        }
                    }
                },
            ));
        let service = TowerToHyperService::new(service);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let mut stopping = stopping.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let _open = open;
            tokio::pin!(connection);
            let header_deadline = tokio::time::sleep(limits.header_read_timeout);
            tokio::pin!(header_deadline);
            // A `select!` condition is read when the `select!` starts, and this one runs until
            // the connection ends: whether a request came is looked at when the deadline
            // passes, or every connection would be cut at the deadline, answering or not.
            let mut first_request_due = true;
            let mut closing = false;
            let ended = loop {
                tokio::select! {
                    ended = &mut connection => break ended,
                    () = &mut header_deadline, if first_request_due => {
                        if asked.load(Ordering::Relaxed) {
                            // hyper's own header timeout bounds the waits between requests.
                            first_request_due = false;
                            continue;
                        }
                        // Dropping the connection closes it.
                        return;
                    }
                    _ = stopping.wait_for(|stop| *stop), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    () = revoked.notified(), if !closing => {
                        // The refusal in flight is still answered; then the socket closes.
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, "HTTPS connection ended with an error");
            }
        });
    }
    drop(open);
    let _ = stopping_tx.send(true);
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, ended.recv()).await;
}
