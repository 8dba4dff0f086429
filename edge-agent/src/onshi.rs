//! The direct transport ([`crate::national`]): HTTPS to onshi-sim's own protocol. No real
//! national endpoint speaks it (a real site goes through the qualification terminal's file
//! interface, `transport = "terminal"`); it is kept for the simulator, demos and benchmarks.
//!
//! HTTPS with the terminal's electronic certificate as client certificate, TLS 1.3, connections
//! kept alive between lookups (the counter waits on every round trip). The transport between a
//! qualification terminal and the national system is not public; onshi-sim's convention is one
//! POST per message, `POST /oqs/<message id>` with the request XML as body (UNCONFIRMED against
//! the real service; the message formats themselves are the real ones).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The largest answer the agent reads; a result for one person is a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OnshiError {
    #[error("the national system did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the national system cannot be reached: {0}")]
    Unreachable(String),
    #[error("the national system's answer could not be read: {0}")]
    Body(String),
    /// Terminal transport: the qualification terminal left a request unanswered.
    #[error(
        "the qualification terminal did not answer within {waited:?}: check that the terminal software is running"
    )]
    TerminalSilent { waited: Duration },
}

impl OnshiError {
    /// The sentence for the clerk, Japanese then English: what failed and what to do now.
    pub fn for_clerk(&self) -> String {
        match self {
            OnshiError::TerminalSilent { .. } => format!(
                "資格確認端末が応答しません。資格確認端末の連携ソフトが起動しているか確認してください。その間は保険証で確認してください / {self}; check the insurance card meanwhile"
            ),
            _ => format!(
                "オンライン資格確認システムに接続できません。保険証で確認してください / {self}"
            ),
        }
    }
}

/// The national system's answer to one request, not yet recorded ([`crate::lookup::Lookups::ask`]); whichever transport asked.
#[derive(Debug)]
pub struct Asked {
    pub answer: Result<OnshiAnswer, OnshiError>,
    pub latency_ms: u32,
}

/// What came back: the HTTP status and the body (normally a result XML file).
#[derive(Debug, Clone)]
pub struct OnshiAnswer {
    pub http_status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct OnshiClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: String,
    timeout: Duration,
}

impl OnshiClient {
    pub fn new(endpoint: &str, tls: Arc<rustls::ClientConfig>, timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self {
            client,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            timeout,
        }
    }

    /// Sends one message (e.g. `OQSsiquc01`) and returns the answer, whatever its HTTP status:
    /// a refusal (4xx) still carries a result file saying why.
    pub async fn exchange(
        &self,
        message_id: &str,
        body: Vec<u8>,
    ) -> Result<OnshiAnswer, OnshiError> {
        self.post(message_id, "application/xml", body).await
    }

    /// Like `exchange`, for the card route's JSON messages (onshi-sim's convention).
    pub async fn exchange_json(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<OnshiAnswer, OnshiError> {
        self.post(path, "application/json", body).await
    }

    async fn post(
        &self,
        path: &str,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<OnshiAnswer, OnshiError> {
        let request = hyper::Request::post(format!("{}/oqs/{path}", self.endpoint))
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| OnshiError::Unreachable(e.to_string()))?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                // hyper says "client error (Connect)"; the causes underneath are what help,
                // and anyhow's alternate form prints them all.
                .map_err(|e| OnshiError::Unreachable(format!("{:#}", anyhow::Error::new(e))))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| OnshiError::Body(e.to_string()))?
                .to_bytes();
            Ok(OnshiAnswer {
                http_status: status.as_u16(),
                body: body.to_vec(),
            })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| OnshiError::Timeout(self.timeout))?
    }
}
