//! TLS clients: a tonic channel whose connections go through our rustls config (TLS 1.3, client
//! certificate), instead of tonic's own TLS settings, so every process shares one policy.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0:?} is not a valid https:// endpoint")]
    BadEndpoint(String),
    #[error("cannot connect to {endpoint}: {source}")]
    Transport {
        endpoint: String,
        source: tonic::transport::Error,
    },
}

/// Splits `https://host:port` into host and port.
pub fn host_and_port(endpoint: &str) -> Result<(String, u16), ConnectError> {
    let bad = || ConnectError::BadEndpoint(endpoint.to_string());
    let uri: Uri = endpoint.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("https") {
        return Err(bad());
    }
    let host = uri.host().ok_or_else(bad)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(443)))
}

/// A lazily connecting gRPC channel to `endpoint` (`https://host:port`) over our TLS.
/// The channel reconnects by itself; the first call fails if the handshake is refused.
pub fn grpc_channel(endpoint: &str, config: Arc<ClientConfig>) -> Result<Channel, ConnectError> {
    let (host, port) = host_and_port(endpoint)?;
    grpc_channel_via(&host, port, &host, config)
        .map_err(|_| ConnectError::BadEndpoint(endpoint.to_string()))
}

/// Like [`grpc_channel`], for a long-lived stream: the connection sends an HTTP/2 PING every
/// `keepalive` and is dropped when one goes unanswered for as long, so a link that went silent
/// (no FIN, no RST) is noticed and the caller reconnects instead of waiting for ever.
pub fn grpc_channel_with_keepalive(
    endpoint: &str,
    config: Arc<ClientConfig>,
    keepalive: std::time::Duration,
) -> Result<Channel, ConnectError> {
    let (host, port) = host_and_port(endpoint)?;
    channel(&host, port, &host, config, Some(keepalive))
        .map_err(|_| ConnectError::BadEndpoint(endpoint.to_string()))
}

/// Like [`grpc_channel`], connecting to `host:port` while verifying the server's certificate
/// for `server_name`: a health probe inside a pod reaches 127.0.0.1 but central's certificate
/// names the service.
pub fn grpc_channel_via(
    host: &str,
    port: u16,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<Channel, ConnectError> {
    channel(host, port, server_name, config, None)
}

fn channel(
    host: &str,
    port: u16,
    server_name: &str,
    config: Arc<ClientConfig>,
    keepalive: Option<std::time::Duration>,
) -> Result<Channel, ConnectError> {
    let endpoint = format!("https://{}", authority(host, port));
    let server_name = ServerName::try_from(server_name.to_string())
        .map_err(|_| ConnectError::BadEndpoint(format!("server name {server_name}")))?;
    let host = host.to_string();
    let connector = TlsConnector::from(config);
    // tonic sees plain http: the TLS happens in the connector below.
    let plain = Endpoint::from_shared(format!("http://{}", authority(&host, port)))
        .map_err(|_| ConnectError::BadEndpoint(endpoint.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(10))
        .tcp_nodelay(true);
    let plain = match keepalive {
        Some(every) => plain
            .http2_keep_alive_interval(every)
            .keep_alive_timeout(every)
            .keep_alive_while_idle(true),
        None => plain,
    };
    Ok(
        plain.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let host = host.clone();
            async move {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        })),
    )
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_https() {
        assert_eq!(
            host_and_port("https://localhost:7443").unwrap(),
            ("localhost".to_string(), 7443)
        );
        assert_eq!(
            host_and_port("https://[::1]:1").unwrap(),
            ("::1".to_string(), 1)
        );
        assert!(host_and_port("http://localhost:7443").is_err());
        assert!(host_and_port("localhost").is_err());
    }
}
