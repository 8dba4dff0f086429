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
