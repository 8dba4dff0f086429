//! A small HTTPS client for the JSON API, presenting a certificate of the dev PKI.

use std::path::Path;

use fleet_tls::config::{Identity, client_config, load_certificates};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// An HTTPS client (HTTP/1.1, connections kept) trusting `ca`, presenting `identity` when
/// given, connecting from `local` when given: the one way this harness speaks HTTPS.
type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn https_client(
    ca: &Path,
    identity: Option<&Identity>,
    local: Option<std::net::IpAddr>,
) -> anyhow::Result<HttpsClient> {
    // No ALPN: hyper-rustls sets it itself.
    let tls = client_config(identity, &load_certificates(ca)?, &[])?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_local_address(local);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    // Central closes a keep-alive connection that stays idle for its header-read timeout
    // (`ListenerLimits::header_read_timeout`, 15 s); a request sent into such a connection fails
    // or is reset. Idle connections are dropped here first.
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(
            fleet_tls::listen::ListenerLimits::DEFAULT.header_read_timeout
                - std::time::Duration::from_secs(5),
        )
        .build(connector))
}

/// GETs `https://{addr}{path}` with the certificate at `cert`/`key`; returns status and JSON.
pub async fn get_json(
    ca: &Path,
    cert: &Path,
    key: &Path,
    addr: &str,
    path: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let (status, _, body) = get(ca, cert, key, addr, path).await?;
    Ok((status, serde_json::from_slice(&body)?))
}

/// GETs `https://{addr}{path}` with the certificate at `cert`/`key`; returns status, content
/// type and body.
pub async fn get(
    ca: &Path,
    cert: &Path,
    key: &Path,
    addr: &str,
    path: &str,
) -> anyhow::Result<(u16, String, Vec<u8>)> {
    request(ca, cert, key, addr, "GET", path, None).await
}

/// `method` with a JSON `body` (PUT, POST); returns status and the JSON answer.
#[allow(clippy::too_many_arguments)]
pub async fn send_json(
    ca: &Path,
    cert: &Path,
    key: &Path,
    addr: &str,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let (status, _, answer) = request(
        ca,
        cert,
        key,
        addr,
        method,
        path,
        Some(serde_json::to_vec(body)?),
    )
    .await?;
    Ok((status, serde_json::from_slice(&answer)?))
}

#[allow(clippy::too_many_arguments)]
async fn request_with(
    ca: &Path,
    cert: &Path,
    key: &Path,
    addr: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let identity = Identity::from_pem_files(cert, key)?;
    let client = https_client(ca, Some(&identity), None)?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("https://{addr}{path}"));
    // Every write is JSON, with or without a body: central refuses others under a certificate
    // (a cross-site form could send them).
    let content_type = content_type
        .or((body.is_some() || !matches!(method, "GET" | "HEAD")).then_some("application/json"));
    if let Some(content_type) = content_type {
        request = request.header(hyper::header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, content_type, body.to_vec()))
}

async fn request(
    ca: &Path,
    cert: &Path,
    key: &Path,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<(u16, String, Vec<u8>)> {
    request_with(ca, cert, key, addr, method, path, None, body).await
}

/// The dev PKI's operator `e2e` calling one running central's JSON API: what most tests need
/// instead of passing four paths to every call.
#[derive(Debug, Clone)]
pub struct Operator {
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    addr: String,
}

impl Operator {
    pub fn new(pki: &crate::Pki, central: &crate::Running) -> Self {
        let (cert, key) = pki.paths.operator("e2e");
        Self {
            ca: pki.paths.chain_ca(),
            cert,
            key,
            addr: central.field("http"),
        }
    }

    /// GET `path`: status and JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        get_json(&self.ca, &self.cert, &self.key, &self.addr, path).await
    }

    /// Makes a dashboard account with `role` (whole chain, the password [`TEST_PASSWORD`])
    /// through the API, as chain IT would, and signs it in at central's dashboard listener
    /// (`web`).
    pub async fn signed_in_account(
        &self,
        central: &crate::Running,
        login: &str,
        role: &str,
    ) -> anyhow::Result<WebSession> {
        let (status, answer) = self
            .send(
                "POST",
                "/api/v1/accounts",
                &serde_json::json!({
                    "login": login, "display_name": "試験 利用者", "role": role,
                    "prefectures": [], "sites": [], "password": TEST_PASSWORD
                }),
            )
            .await?;
        anyhow::ensure!(
            status == 201,
            "making the account {login}: {status} {answer}"
        );
        WebSession::sign_in(&self.ca, &central.field("web"), login, TEST_PASSWORD).await
    }

    /// GET `path`: status, content type and body (CSV, HTML).
    pub async fn get_raw(&self, path: &str) -> anyhow::Result<(u16, String, Vec<u8>)> {
        get(&self.ca, &self.cert, &self.key, &self.addr, path).await
    }

    /// GET `path`: status, the `Link` header and JSON.
    pub async fn get_linked(
        &self,
        path: &str,
    ) -> anyhow::Result<(u16, Option<String>, serde_json::Value)> {
        let identity = Identity::from_pem_files(&self.cert, &self.key)?;
        let client = https_client(&self.ca, Some(&identity), None)?;
        let request = hyper::Request::builder()
            .uri(format!("https://{}{path}", self.addr))
            .body(Full::new(Bytes::new()))?;
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let link = response
            .headers()
            .get(hyper::header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, link, serde_json::from_slice(&body)?))
    }

    /// `method` with `body` declared as `content_type`, as a page on another site could make
    /// the operator's browser send it: status and body.
    pub async fn send_as(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let (status, _, answer) = request_with(
            &self.ca,
            &self.cert,
            &self.key,
            &self.addr,
            method,
            path,
            Some(content_type),
            Some(body.to_vec()),
        )
        .await?;
        Ok((status, answer))
    }

    /// `method` (POST, PUT) with a JSON body: status and JSON.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        send_json(
            &self.ca, &self.cert, &self.key, &self.addr, method, path, body,
        )
        .await
    }
}

/// A person at the dashboard: one HTTPS client (connections reused, no client certificate)
/// carrying the session cookie of a real sign-in through `POST /login`.
#[derive(Clone)]
pub struct WebSession {
    client: HttpsClient,
    addr: String,
    cookie: String,
}

impl std::fmt::Debug for WebSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSession")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl WebSession {
    /// Signs in at central's dashboard listener `addr`, trusting `ca`.
    pub async fn sign_in(
        ca: &Path,
        addr: &str,
        login: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        let client = https_client(ca, None, None)?;
        let form = format!(
            "login={}&password={}",
            form_field(login),
            form_field(password)
        );
        let request = hyper::Request::builder()
            .method("POST")
            .uri(format!("https://{addr}/login"))
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(form)))?;
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let cookie = response
            .headers()
            .get(hyper::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_string);
        let Some(cookie) = cookie.filter(|_| status == 303) else {
            anyhow::bail!("signing in as {login} answered {status} without a session cookie");
        };
        Ok(Self {
            client,
            addr: addr.to_string(),
            cookie,
        })
    }

    /// GET `path` with the session: status, content type and body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String, Vec<u8>)> {
        let request = hyper::Request::builder()
            .uri(format!("https://{}{path}", self.addr))
            .header(hyper::header::COOKIE, &self.cookie)
            .body(Full::new(Bytes::new()))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, content_type, body.to_vec()))
    }

    /// POSTs a form `body` to `path` with the session (a CSRF field, if any, is the caller's):
    /// status and body.
    pub async fn post_form(
        &self,
        path: &str,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<(u16, String)> {
        let answer = post_form(&self.client, &self.addr, path, Some(&self.cookie), body).await?;
        Ok((answer.status, answer.body))
    }
}

/// The password of the accounts tests make ([`Operator::signed_in_account`]).
pub const TEST_PASSWORD: &str = "correct horse battery staple";

/// `value` percent-encoded for a form body (unreserved characters kept).
fn form_field(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Someone without an account at the dashboard listener (no client certificate, no session):
/// one client whose connections are kept and reused, so that many requests can be sent at
/// the same moment over connections opened beforehand.
#[derive(Clone)]
pub struct Anonymous {
    client: HttpsClient,
    addr: String,
}

impl std::fmt::Debug for Anonymous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anonymous")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// What central answered: status, `Retry-After`, `Location`, body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub location: Option<String>,
    pub body: String,
}

impl Anonymous {
    /// A client for central's dashboard listener `addr`, trusting `ca`.
    pub fn new(ca: &Path, addr: &str) -> anyhow::Result<Self> {
        Self::from_address(ca, addr, None)
    }

    /// [`Anonymous::new`] connecting from `local` (another loopback address, 127.x.y.z: many
    /// people at once, as far as central can tell).
    pub fn from_address(
        ca: &Path,
        addr: &str,
        local: Option<std::net::IpAddr>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: https_client(ca, None, local)?,
            addr: addr.to_string(),
        })
    }

    /// Opens `count` connections (concurrent GETs of the sign-in page) and keeps them for the
    /// requests that follow.
    pub async fn warm_up(&self, count: usize) -> anyhow::Result<()> {
        let gets = (0..count).map(|_| async {
            let request = hyper::Request::builder()
                .uri(format!("https://{}/login", self.addr))
                .body(Full::new(Bytes::new()))?;
            let response = self.client.request(request).await?;
            response.into_body().collect().await?;
            anyhow::Ok(())
        });
        for result in futures_util::future::join_all(gets).await {
            result?;
        }
        Ok(())
    }

    /// GETs `path`: status and the answer's headers.
    pub async fn get_headers(&self, path: &str) -> anyhow::Result<(u16, hyper::HeaderMap)> {
        let request = hyper::Request::builder()
            .uri(format!("https://{}{path}", self.addr))
            .body(Full::new(Bytes::new()))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        response.into_body().collect().await?;
        Ok((status, headers))
    }

    /// POSTs a form `body` to `path`.
    pub async fn post_form(&self, path: &str, body: impl Into<Bytes>) -> anyhow::Result<Answer> {
        post_form(&self.client, &self.addr, path, None, body).await
    }
}

/// POSTs a form `body` to `https://{addr}{path}`, with a session `cookie` when given.
async fn post_form(
    client: &HttpsClient,
    addr: &str,
    path: &str,
    cookie: Option<&str>,
    body: impl Into<Bytes>,
) -> anyhow::Result<Answer> {
    let mut request = hyper::Request::builder()
        .method("POST")
        .uri(format!("https://{addr}{path}"))
        .header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    if let Some(cookie) = cookie {
        request = request.header(hyper::header::COOKIE, cookie);
    }
    let response = client
        .request(request.body(Full::new(body.into()))?)
        .await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let location = response
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        retry_after,
        location,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Automation with an API token at central's dashboard listener `addr`, trusting `ca`:
/// `method` on `path` with `Authorization: Bearer <token>` (and a JSON body on writes); status
/// and JSON.
pub async fn with_token(
    ca: &Path,
    addr: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let client = https_client(ca, None, None)?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("https://{addr}{path}"))
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    if method != "GET" {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let body = body
        .map(serde_json::to_vec)
        .transpose()?
        .unwrap_or_default();
    let response = client
        .request(request.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = response.status().as_u16();
    let answer = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&answer).unwrap_or(serde_json::Value::Null),
    ))
}

/// The sign-in form's body for `login` and `password`.
pub fn sign_in_form(login: &str, password: &str) -> String {
    format!(
        "login={}&password={}",
        form_field(login),
        form_field(password)
    )
}

/// One HTTP/2 connection to the operator listener under one operator's certificate, kept open
/// across requests (as an operator's tooling keeps it): for what must hold per request, not
/// per handshake.
#[derive(Debug)]
pub struct OperatorConnection {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    ended: tokio::task::JoinHandle<()>,
    addr: String,
}

impl OperatorConnection {
    /// Connects to `addr` (central's `http` listener) as operator `name` of `pki`, over h2.
    pub async fn open(pki: &crate::Pki, addr: &str, name: &str) -> anyhow::Result<Self> {
        let (cert, key) = pki.paths.operator(name);
        let identity = Identity::from_pem_files(&cert, &key)?;
        let tls = client_config(
            Some(&identity),
            &load_certificates(&pki.paths.chain_ca())?,
            &[fleet_tls::config::ALPN_H2],
        )?;
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(
                rustls::pki_types::ServerName::try_from("localhost")?.to_owned(),
                tcp,
            )
            .await?;
        anyhow::ensure!(
            stream.get_ref().1.alpn_protocol() == Some(fleet_tls::config::ALPN_H2),
            "central did not agree to HTTP/2"
        );
        let (sender, connection) = hyper::client::conn::http2::handshake(
            TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await?;
        let ended = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            ended,
            addr: addr.to_string(),
        })
    }

    /// GET `path` on this connection: status and JSON.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        self.sender.ready().await?;
        let request = hyper::Request::builder()
            .uri(format!("https://{}{path}", self.addr))
            .body(Full::new(Bytes::new()))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&body)?))
    }

    /// Waits until central has closed the connection (within the tests' patience).
    pub async fn closed(self) -> anyhow::Result<()> {
        tokio::time::timeout(crate::patience(), self.ended)
            .await
            .map_err(|_| anyhow::anyhow!("central kept the connection open"))??;
        Ok(())
    }
}
