//! Webhook delivery: the [`Message`](super::Message) as JSON, signed so the receiver can check
//! it came from central and refuse replays.
//!
//! Headers: `X-Onshi-Timestamp` (Unix seconds at sending) and `X-Signature: v1=<hex>`, the
//! HMAC-SHA-256 under the endpoint's secret of `timestamp + "." + body`. A receiver recomputes
//! it over the raw body, compares in constant time, and refuses a timestamp older than a few
//! minutes (README, "Notifications"). Any 2xx answer is a delivery; anything else, or no answer
//! within the timeouts, is retried.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;

/// The version prefix of `X-Signature`: a new scheme gets a new prefix, and receivers can
/// accept both while they move.
pub(crate) const SIGNATURE_VERSION: &str = "v1";

/// `v1=` + hex HMAC-SHA-256(secret, timestamp + "." + body).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!(
        "{SIGNATURE_VERSION}={}",
        onshi_domain::hex::encode(context.sign().as_ref())
    )
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// One HTTP client for every webhook, with bounded connect and total times.
#[derive(Clone)]
pub struct WebhookClient {
    client: Client<Connector, Full<Bytes>>,
    total: Duration,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("total", &self.total)
            .finish()
    }
}

impl WebhookClient {
    /// `roots`: the CAs HTTPS receivers are verified with (`--webhook-ca`; none: only http://
    /// receivers can be reached).
    pub fn new(
        roots: &[CertificateDer<'static>],
        connect: Duration,
        total: Duration,
    ) -> anyhow::Result<Self> {
        // No ALPN here: the connector sets it (http/1.1).
        let tls = fleet_tls::config::client_config(None, roots, &[])?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(connector);
        Ok(Self { client, total })
    }

    /// POSTs `body` signed with `secret` at `timestamp`; `Err` says why it was not delivered
    /// (never the secret, never the body).
    pub async fn send(
        &self,
        url: &str,
        secret: &str,
        timestamp: i64,
        body: Vec<u8>,
    ) -> Result<(), String> {
        let signature = signature(secret, timestamp, &body);
        let request = hyper::Request::post(url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "onshi-fleet-central")
            .header("X-Onshi-Timestamp", timestamp.to_string())
            .header("X-Signature", signature)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("the request cannot be made: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("no answer: {:#}", anyhow::Error::new(e)))?;
            let status = response.status();
            // Read (a bounded part of) the answer so the connection can be reused.
            let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the receiver answered HTTP {}", status.as_u16()))
            }
        };
        tokio::time::timeout(self.total, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.total))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        // HMAC-SHA-256("whsec_test", "1700000000.{}"), computed independently with Python's
        // hmac module.
        assert_eq!(
            signature("whsec_test", 1_700_000_000, b"{}"),
            "v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
        assert_ne!(
            signature("whsec_test", 1_700_000_001, b"{}"),
            signature("whsec_test", 1_700_000_000, b"{}")
        );
    }
}
