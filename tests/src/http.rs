//! A small HTTPS client for the JSON API, presenting a certificate of the dev PKI.

use std::path::Path;

use fleet_tls::config::{Identity, client_config, load_certificates};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

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
    let identity = Identity::from_pem_files(cert, key)?;
    // No ALPN: hyper-rustls sets it itself.
    let tls = client_config(Some(&identity), &load_certificates(ca)?, &[])?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let response = client.get(format!("https://{addr}{path}").parse()?).await?;
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
