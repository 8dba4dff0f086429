//! TLS listeners for tonic (gRPC) and axum (HTTPS).
//!
//! Handshakes run in their own tasks with a deadline, so a client that connects and stays silent
//! cannot hold up the others, and a refused handshake (no certificate, a certificate from another
//! CA, TLS 1.2 only) is logged with the peer address and never reaches the application.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Completed handshakes waiting for the server to pick them up.
const READY_QUEUE: usize = 64;

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

/// Accepts TCP connections on `listener` and yields the ones whose TLS handshake succeeded.
/// The stream ends, and the accept task with it, when the consumer drops it.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (ready_tx, ready_rx) = mpsc::channel(READY_QUEUE);
    let acceptor = TlsAcceptor::from(config);
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
            let acceptor = acceptor.clone();
            let ready_tx = ready_tx.clone();
            tokio::spawn(async move {
                if let Some(stream) = handshake(&acceptor, tcp, peer).await {
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

/// Serves `router` over HTTPS on `listener` until `shutdown` completes, then lets in-flight
/// requests finish (bounded by `HANDSHAKE_TIMEOUT`). Each request carries the client's
/// certificates as a [`PeerCertificates`] extension and its address as a [`PeerAddress`].
pub async fn serve_https(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;
    use tokio_stream::StreamExt;

    let mut incoming = tls_incoming(listener, config);
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
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
        let peer = PeerCertificates(Arc::new(
            stream
                .get_ref()
                .1
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
        ));
        let address = stream.get_ref().0.peer_addr().ok().map(PeerAddress);
        let service = TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(peer))
                .layer(axum::Extension(address)),
        );
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTPS connection ended with an error");
            }
        });
    }
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, graceful.shutdown()).await;
}
