//! A hand-driven uplink client, for tests that speak the protocol directly (replays, foreign
//! sites) instead of going through an agent.

use std::sync::Arc;

use fleet_tls::config::{ALPN_H2, Identity, client_config, load_certificates};
use onshi_domain::events::{
    EventBody, EventId, FleetEvent, IdentityVerification, Lookup, LookupOutcome, LookupRoute,
    LookupSource,
};
use onshi_domain::site::{SiteCode, TerminalId};
use proto::fleet::v1 as pb;
use proto::fleet::v1::fleet_uplink_client::FleetUplinkClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use uuid::Uuid;

use crate::Pki;

/// TLS for a client presenting the agent certificate of `site`.
pub fn agent_tls(pki: &Pki, site: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let (cert, key) = pki.paths.agent(site);
    let identity = Identity::from_pem_files(&cert, &key)?;
    let roots = load_certificates(&pki.paths.chain_ca())?;
    Ok(client_config(Some(&identity), &roots, &[ALPN_H2])?)
}

#[derive(Debug)]
pub struct Session {
    pub to_central: mpsc::Sender<pb::AgentMessage>,
    pub from_central: Streaming<pb::CentralMessage>,
    pub welcome: pb::Welcome,
}

impl Session {
    /// Opens a session and says hello as `site` on `stream`.
    pub async fn open(
        endpoint: &str,
        tls: Arc<rustls::ClientConfig>,
        site: &str,
        stream: Uuid,
    ) -> Result<Self, tonic::Status> {
        Self::open_saying(endpoint, tls, hello(site, stream)).await
    }

    /// Opens a session whose first message is `first` (a hello, honest or not).
    pub async fn open_saying(
        endpoint: &str,
        tls: Arc<rustls::ClientConfig>,
        first: pb::AgentMessage,
    ) -> Result<Self, tonic::Status> {
        let channel = fleet_tls::connect::grpc_channel(endpoint, tls)
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let (to_central, outbound) = mpsc::channel(16);
        to_central.send(first).await.expect("the channel is open");
        let mut from_central = FleetUplinkClient::new(channel)
            .session(ReceiverStream::new(outbound))
            .await?
            .into_inner();
        match from_central.message().await? {
            Some(pb::CentralMessage {
                kind: Some(pb::central_message::Kind::Welcome(welcome)),
            }) => Ok(Self {
                to_central,
                from_central,
                welcome,
            }),
            other => Err(tonic::Status::internal(format!(
                "expected a welcome, got {other:?}"
            ))),
        }
    }

    /// Sends a batch and returns central's answer: an ack, or the status that ended the stream.
    pub async fn send_batch(&mut self, events: Vec<pb::Event>) -> Result<pb::Ack, tonic::Status> {
        self.to_central
            .send(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Batch(pb::EventBatch { events })),
            })
            .await
            .map_err(|_| tonic::Status::cancelled("request stream closed"))?;
        match self.from_central.message().await? {
            Some(pb::CentralMessage {
                kind: Some(pb::central_message::Kind::Ack(ack)),
            }) => Ok(ack),
            other => Err(tonic::Status::internal(format!(
                "expected an ack, got {other:?}"
            ))),
        }
    }
}

impl Session {
    /// Asks central to sign `csr_der` (a `fleet_tls::renewal::request`) and returns its answer,
    /// skipping what central pushes meanwhile (access rules, update targets).
    pub async fn renew(
        &mut self,
        csr_der: Vec<u8>,
    ) -> Result<pb::CertificateRenewal, tonic::Status> {
        self.to_central
            .send(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::RenewCertificate(
                    pb::RenewCertificate { csr_der },
                )),
            })
            .await
            .map_err(|_| tonic::Status::cancelled("request stream closed"))?;
        loop {
            match self.from_central.message().await? {
                Some(pb::CentralMessage {
                    kind: Some(pb::central_message::Kind::CertificateRenewal(answer)),
                }) => return Ok(answer),
                Some(_) => continue,
                None => return Err(tonic::Status::cancelled("central ended the session")),
            }
        }
    }
}

/// TLS for a client presenting `cert_pem` (a chain, leaf first) with `key_pem`: an agent
/// certificate central issued in a renewal, say.
pub fn tls_from_pem(
    pki: &Pki,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let identity = Identity::from_pem(cert_pem, key_pem)?;
    let roots = load_certificates(&pki.paths.chain_ca())?;
    Ok(client_config(Some(&identity), &roots, &[ALPN_H2])?)
}

/// Whether central refuses, at the TLS handshake, a client presenting `cert`/`key` (a PEM
/// chain, leaf first) at `addr`: the refusal arrives as an alert on the first read, while an
/// accepted HTTP/2 connection reads central's SETTINGS frame after the client's preface.
pub async fn refused_at_handshake(
    pki: &Pki,
    addr: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<bool> {
    use tokio::io::AsyncReadExt;
    let identity = Identity::from_pem_files(cert, key)?;
    let tls = client_config(
        Some(&identity),
        &load_certificates(&pki.paths.chain_ca())?,
        &[ALPN_H2],
    )?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut stream = match tokio_rustls::TlsConnector::from(tls)
        .connect(
            rustls::pki_types::ServerName::try_from("localhost")?.to_owned(),
            tcp,
        )
        .await
    {
        Ok(stream) => stream,
        Err(_) => return Ok(true),
    };
    // The HTTP/2 preface and an empty SETTINGS frame: central answers with its SETTINGS (a
    // listener that also speaks HTTP/1.1 waits for the client's first bytes).
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    if tokio::io::AsyncWriteExt::write_all(&mut stream, &hello)
        .await
        .is_err()
    {
        return Ok(true);
    }
    let mut buf = [0u8; 64];
    match tokio::time::timeout(crate::patience(), stream.read(&mut buf)).await {
        Ok(Ok(n)) => Ok(n == 0),
        Ok(Err(_)) => Ok(true),
        Err(_) => anyhow::bail!("central neither refused nor greeted the connection"),
    }
}

pub fn hello(site: &str, stream: Uuid) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
            site_code: site.to_string(),
            stream_id: stream.as_bytes().to_vec(),
            agent_version: "e2e".into(),
            config_hash: "0".repeat(64),
            last_produced_sequence: 0,
        })),
    }
}

/// A valid lookup event of `site` at `sequence`.
pub fn lookup_event(site: &str, sequence: u64) -> pb::Event {
    let event = FleetEvent {
        id: EventId::from_uuid(Uuid::now_v7()).expect("v7"),
        site: SiteCode::parse(site).expect("valid site code"),
        terminal: TerminalId::parse("T01").expect("valid terminal"),
        occurred_at: time::OffsetDateTime::now_utc(),
        sequence,
        chain_hash: None,
        body: EventBody::Lookup(Lookup {
            route: LookupRoute::InsuranceCard,
            outcome: LookupOutcome::Valid,
            patient_ref: None,
            insurer_number: Some("06139156".into()),
            qualification_validity: Some("1".into()),
            processing_result_code: None,
            error_code: None,
            latency_ms: 5,
            staff_id: None,
            source: LookupSource::Counter,
            batch_id: None,
            identity_verification: IdentityVerification::None,
        }),
    };
    pb::Event::from(&event)
}
