//! TLS to PostgreSQL with rustls (the one TLS stack of the workspace), when the URL asks for it.
//!
//! `DATABASE_URL` takes libpq's `sslmode=verify-full` and `sslrootcert=<PEM file>`: the
//! server's certificate must chain to that CA and name the URL's host, or central does not
//! connect. tokio-postgres itself knows only disable / prefer / require and verifies nothing,
//! so these two parameters are taken out of the URL here and a verifying connector is given
//! instead. `verify-ca` (a valid certificate for any name) and `require` (any certificate) are
//! refused: they protect against nothing a man in the middle cannot do. Without `sslmode`,
//! central connects without TLS, as before (a database on loopback or a private network).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use super::StoreError;

/// `url` without the TLS parameters central handles itself, and the verifying TLS client
/// configuration they ask for (None: no TLS).
pub(crate) fn split_url(url: &str) -> Result<(String, Option<RustlsConnect>), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut mode = None;
    let mut root = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => mode = Some(value.to_string()),
            Some(("sslrootcert", value)) => root = Some(percent_decoded(value)),
            _ => kept.push(pair),
        }
    }
    let rebuilt = |kept: &[&str]| {
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    };
    match mode.as_deref() {
        None | Some("disable") | Some("prefer") => {
            if let Some(mode) = &mode {
                kept.push(if mode == "disable" {
                    "sslmode=disable"
                } else {
                    "sslmode=prefer"
                });
            }
            Ok((rebuilt(&kept), None))
        }
        Some("verify-full") => {
            let root = root.ok_or_else(|| {
                StoreError::Url(
                    "sslmode=verify-full needs sslrootcert=<the PEM file of the CA that issued \
                     PostgreSQL's certificate>"
                        .into(),
                )
            })?;
            let roots = fleet_tls::config::load_certificates(std::path::Path::new(&root))
                .map_err(|e| StoreError::Url(format!("sslrootcert {root}: {e}")))?;
            let config = fleet_tls::config::client_config(None, &roots, &[])
                .map_err(|e| StoreError::Url(format!("sslrootcert {root}: {e}")))?;
            kept.push("sslmode=require");
            Ok((rebuilt(&kept), Some(RustlsConnect(config))))
        }
        Some(other) => Err(StoreError::Url(format!(
            "sslmode={other}: central takes verify-full (with sslrootcert), or disable; \
             require and verify-ca would accept a certificate that does not name the server"
        ))),
    }
}

/// `%2F` and the like in a path given in a URL.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Makes a verifying rustls connection for each PostgreSQL connection.
#[derive(Clone)]
pub(crate) struct RustlsConnect(Arc<rustls::ClientConfig>);

impl std::fmt::Debug for RustlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RustlsConnect")
    }
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsTlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsTlsConnect, Self::Error> {
        Ok(RustlsTlsConnect {
            config: self.0.clone(),
            name: ServerName::try_from(domain.to_string())?,
        })
    }
}

#[derive(Debug)]
pub(crate) struct RustlsTlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// A PostgreSQL connection inside TLS.
#[derive(Debug)]
pub(crate) struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding (as with libpq's channel_binding=prefer on a server
        // that does not offer it); the certificate check above is what binds the server.
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_parameters_are_taken_out_and_others_kept() {
        let (url, tls) = split_url("postgres://u@h:5432/db?application_name=c").unwrap();
        assert_eq!(url, "postgres://u@h:5432/db?application_name=c");
        assert!(tls.is_none());
        let (url, tls) = split_url("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=disable");
        assert!(tls.is_none());
        for refused in [
            "postgres://u@h/db?sslmode=require",
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert=/x",
            "postgres://u@h/db?sslmode=verify-full",
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/no/such/file.pem",
        ] {
            assert!(split_url(refused).is_err(), "{refused}");
        }
        assert_eq!(percent_decoded("%2Fetc%2Fca.pem"), "/etc/ca.pem");
    }
}
