//! The uplink to central: one gRPC stream, batches out, acks in, events leave the outbox only
//! when acked.
//!
//! On (re)connect the agent says hello, central answers with the sequence it already holds
//! contiguously, and the agent resumes after it: an event whose ack was lost in a crash is
//! simply sent again and counted by central as a duplicate. A bounded window of unacked events
//! keeps memory flat; reconnects back off exponentially with full jitter, so thousands of agents
//! do not reconnect in lockstep after central restarts.

use std::sync::Arc;
use std::time::Duration;

use onshi_domain::access::AccessRules;
use onshi_domain::events::Inventory;
use onshi_domain::site::SiteCode;
use proto::fleet::v1 as pb;
use proto::fleet::v1::fleet_uplink_client::FleetUplinkClient;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::identity::AgentIdentity;
use crate::outbox::{Outbox, OutboxError};
use fleet_tls::renewal::RenewalRequest;

/// Our own batch limits; central may announce smaller ones in its Welcome.
const MAX_BATCH_EVENTS: usize = 500;
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Batches in flight before the agent waits for acks.
const WINDOW_BATCHES: u64 = 4;
/// Central counts a session silent after a few of these (`--silence-secs`, 90 by default).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    Connecting,
    Connected,
    Disconnected,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Connecting => "connecting",
            LinkStatus::Connected => "connected",
            LinkStatus::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("central refused or dropped the stream: {0}")]
    Status(#[from] tonic::Status),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// What the agent says about itself in every hello.
#[derive(Debug, Clone)]
pub struct AgentFacts {
    pub site: SiteCode,
    pub agent_version: String,
    pub config_hash: String,
}

/// Reads what the agent sees now (readers, certificates, terminals) for central's
/// `InventorySnapshot`, sent after each Welcome and when central asks.
#[derive(Clone)]
pub struct InventorySource(Arc<dyn Fn() -> Inventory + Send + Sync>);

impl InventorySource {
    pub fn new(read: impl Fn() -> Inventory + Send + Sync + 'static) -> Self {
        Self(Arc::new(read))
    }

    fn snapshot(&self) -> pb::InventorySnapshot {
        pb::InventorySnapshot::from(&(self.0)())
    }
}

/// Where access rules from central go (the views), kept on disk before this returns.
#[derive(Clone)]
pub struct RulesSink(Arc<dyn Fn(AccessRules) -> std::io::Result<bool> + Send + Sync>);

impl RulesSink {
    pub fn new(
        apply: impl Fn(AccessRules) -> std::io::Result<bool> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(apply))
    }
}

impl std::fmt::Debug for RulesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RulesSink")
    }
}

impl std::fmt::Debug for InventorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InventorySource")
    }
}

/// Renews the agent's certificate over the stream (see [`crate::identity`]); a renewed one is
/// presented on a new connection, made by `connect`.
/// Where this session stands with a renewal: at most one request per session.
enum Renewing {
    NotAsked,
    Awaiting(RenewalRequest),
    Done,
}

#[derive(Clone)]
pub struct Renewal {
    pub identity: Arc<AgentIdentity>,
    pub connect: Arc<dyn Fn() -> Result<Channel, fleet_tls::connect::ConnectError> + Send + Sync>,
}

impl std::fmt::Debug for Renewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewal")
            .field("identity", &self.identity)
            .finish()
    }
}

#[derive(Debug)]
pub struct Uplink {
    outbox: Outbox,
    /// Replaced after a renewal: an open HTTP/2 connection keeps the certificate it was made
    /// with, so the new one needs a new connection.
    channel: std::sync::Mutex<Channel>,
    facts: AgentFacts,
    new_events: Arc<Notify>,
    status: watch::Sender<LinkStatus>,
    reconnect_max: Duration,
    inventory: Option<InventorySource>,
    rules: Option<RulesSink>,
    renewal: Option<Renewal>,
    heartbeat_every: Duration,
    update_target_file: Option<std::path::PathBuf>,
}

impl Uplink {
    pub fn new(
        outbox: Outbox,
        channel: Channel,
        facts: AgentFacts,
        new_events: Arc<Notify>,
        reconnect_max: Duration,
    ) -> (Self, watch::Receiver<LinkStatus>) {
        let (status, status_rx) = watch::channel(LinkStatus::Disconnected);
        (
            Self {
                outbox,
                channel: std::sync::Mutex::new(channel),
                facts,
                new_events,
                status,
                reconnect_max,
                inventory: None,
                rules: None,
                renewal: None,
                heartbeat_every: HEARTBEAT_EVERY,
                update_target_file: None,
            },
            status_rx,
        )
    }

    /// Where access rules central pushes go (without a sink they are ignored).
    pub fn with_access_rules(mut self, sink: RulesSink) -> Self {
        self.rules = Some(sink);
        self
    }

    /// How often to send a heartbeat (central reads silence as a link down).
    pub fn with_heartbeat_every(mut self, every: Duration) -> Self {
        self.heartbeat_every = every;
        self
    }

    /// Renews the agent's certificate through central when it is due.
    pub fn with_renewal(mut self, renewal: Renewal) -> Self {
        self.renewal = Some(renewal);
        self
    }

    /// Sends a CSR when the certificate is due and this session has not asked yet.
    async fn ask_renewal(
        &self,
        to_central: &mpsc::Sender<pb::AgentMessage>,
        renewing: &mut Renewing,
    ) -> Result<(), SessionError> {
        let (Some(renewal), Renewing::NotAsked) = (&self.renewal, &renewing) else {
            return Ok(());
        };
        match renewal.identity.due(time::OffsetDateTime::now_utc()) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(error) => {
                tracing::error!(%error, "cannot tell when the agent certificate expires");
                return Ok(());
            }
        }
        // Whatever happens next, once per session.
        *renewing = Renewing::Done;
        if let Err(error) = renewal.identity.writable() {
            tracing::error!(%error, "the agent certificate is due for renewal but its files cannot be replaced");
            return Ok(());
        }
        let request = match fleet_tls::renewal::request(self.facts.site.as_str()) {
            Ok(request) => request,
            Err(error) => {
                tracing::error!(%error, "cannot make a certificate signing request");
                return Ok(());
            }
        };
        tracing::info!("the agent certificate is due: asking central for a new one");
        let message = pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::RenewCertificate(
                pb::RenewCertificate {
                    csr_der: request.csr_der.clone(),
                },
            )),
        };
        to_central
            .send(message)
            .await
            .map_err(|_| SessionError::Protocol("request stream closed"))?;
        *renewing = Renewing::Awaiting(request);
        Ok(())
    }

    /// Installs central's answer; `true` when the session should end so that the next one
    /// presents the new certificate.
    fn take_renewal(&self, renewing: &mut Renewing, answer: pb::CertificateRenewal) -> bool {
        let (Some(renewal), Renewing::Awaiting(request)) =
            (&self.renewal, std::mem::replace(renewing, Renewing::Done))
        else {
            tracing::warn!("central sent a certificate this agent did not ask for; ignored");
            return false;
        };
        if !answer.refused.is_empty() {
            tracing::warn!(reason = %answer.refused, "central refused to renew the agent certificate; keeping the current one");
            return false;
        }
        let installed = renewal.identity.install(
            request,
            &answer.certificate_chain_pem,
            time::OffsetDateTime::now_utc(),
        );
        match installed {
            Ok(summary) => {
                tracing::info!(serial = %summary.serial_hex, not_after = %summary.not_after, "agent certificate renewed; reconnecting with it");
                match (renewal.connect)() {
                    Ok(channel) => {
                        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = channel;
                        true
                    }
                    // The old connection stays; the next reconnect of the channel presents the
                    // new certificate anyway.
                    Err(error) => {
                        tracing::error!(%error, "cannot open a new connection to central");
                        false
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "the renewed certificate was not installed");
                false
            }
        }
    }

    /// Where rollout targets go for the site's updater (without a folder they are logged only).
    pub fn with_update_target_file(mut self, path: std::path::PathBuf) -> Self {
        self.update_target_file = Some(path);
        self
    }

    /// Hands central's update target to the site's updater: `update-target.json` (rollout,
    /// version, when), written whole or not at all. The agent does not replace itself; central
    /// sees the new version in the next hello.
    fn take_update_target(&self, target: &pb::UpdateTarget) {
        if target.version == self.facts.agent_version {
            tracing::debug!(rollout = target.rollout_id, version = %target.version, "already at the rollout's target");
        } else {
            tracing::info!(rollout = target.rollout_id, version = %target.version, running = %self.facts.agent_version, "central asks for another agent version");
        }
        let Some(path) = &self.update_target_file else {
            return;
        };
        let body = serde_json::json!({
            "rollout_id": target.rollout_id,
            "version": target.version,
            "running_version": self.facts.agent_version,
            "received_at": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        });
        if let Err(error) = crate::folder::fsio::write_atomic(path, body.to_string().as_bytes()) {
            tracing::error!(%error, path = %path.display(), "the update target could not be written for the updater");
        }
    }

    /// Where the inventory sent to central comes from (without one, none is sent).
    pub fn with_inventory(mut self, source: InventorySource) -> Self {
        self.inventory = Some(source);
        self
    }

    /// Applies access rules from central. Rules that do not parse end the session (central
    /// sent something wrong; the last good rules stay in force); rules that cannot be kept on
    /// disk are not applied, and the next session brings them again.
    fn take_rules(&self, rules: pb::AccessRules) -> Result<(), SessionError> {
        let Some(sink) = &self.rules else {
            return Ok(());
        };
        let rules = AccessRules::try_from(rules).map_err(|e| {
            tracing::error!(error = %e, "central sent access rules this agent cannot read; keeping the current ones");
            SessionError::Protocol("unreadable access rules")
        })?;
        if let Err(error) = (sink.0)(rules) {
            tracing::error!(%error, "the access rules from central could not be kept; keeping the current ones");
        }
        Ok(())
    }

    /// Sends the inventory when `always`, or when it differs from `sent` (the last one sent in
    /// this session, its time left out): central's live view follows reader and certificate
    /// changes, which are recorded as events and so wake the uplink.
    async fn send_inventory(
        &self,
        to_central: &mpsc::Sender<pb::AgentMessage>,
        sent: &mut Option<pb::InventorySnapshot>,
        always: bool,
    ) -> Result<(), SessionError> {
        let Some(source) = &self.inventory else {
            return Ok(());
        };
        let snapshot = source.snapshot();
        let content = pb::InventorySnapshot {
            taken_at: None,
            ..snapshot.clone()
        };
        if !always && sent.as_ref() == Some(&content) {
            return Ok(());
        }
        *sent = Some(content);
        let message = pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Inventory(snapshot)),
        };
        to_central
            .send(message)
            .await
            .map_err(|_| SessionError::Protocol("request stream closed"))
    }

    /// Streams until `shutdown` resolves. Never gives up: events wait in the outbox.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new(Duration::from_millis(250), self.reconnect_max);
        loop {
            let _ = self.status.send(LinkStatus::Connecting);
            let outcome = tokio::select! {
                _ = &mut shutdown => return,
                outcome = self.session(&mut backoff) => outcome,
            };
            let _ = self.status.send(LinkStatus::Disconnected);
            if let Err(error) = outcome {
                tracing::warn!(%error, "uplink to central interrupted; events stay in the outbox");
            }
            let delay = backoff.next_delay(random_unit());
            tracing::debug!(?delay, "reconnecting to central after backoff");
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session(&self, backoff: &mut Backoff) -> Result<(), SessionError> {
        let before = self.outbox.status().await?;
        let (to_central, outbound) = mpsc::channel(WINDOW_BATCHES as usize + 2);
        let hello = pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
                site_code: self.facts.site.as_str().to_string(),
                stream_id: self.outbox.stream_id().0.as_bytes().to_vec(),
                agent_version: self.facts.agent_version.clone(),
                config_hash: self.facts.config_hash.clone(),
                last_produced_sequence: before.last_sequence,
            })),
        };
        to_central
            .send(hello)
            .await
            .map_err(|_| SessionError::Protocol("request stream closed"))?;
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut client = FleetUplinkClient::new(channel);
        // The session's opening (hello to welcome) is a span of its own, and its W3C trace
        // context goes to central in the request metadata. Lookups do not ride on it (a stream
        // lives for hours): each event carries its own `traceparent` from the outbox.
        let opening = tracing::info_span!("uplink_connect");
        let mut request = tonic::Request::new(ReceiverStream::new(outbound));
        inject_trace_context(&opening, request.metadata_mut());
        let mut inbound = client
            .session(request)
            .instrument(opening.clone())
            .await?
            .into_inner();

        let welcome = match inbound.message().instrument(opening).await? {
            Some(pb::CentralMessage {
                kind: Some(pb::central_message::Kind::Welcome(w)),
            }) => w,
            _ => {
                return Err(SessionError::Protocol(
                    "central did not answer with a welcome",
                ));
            }
        };
        let max_events = limit(welcome.max_batch_events, MAX_BATCH_EVENTS);
        let max_bytes = limit(welcome.max_batch_bytes, MAX_BATCH_BYTES);
        let mut acked = welcome.resume_after_sequence;
        self.outbox.ack(acked).await?;
        let mut sent = acked;
        // The backoff is reset by progress (an ack that moves), not by a welcome: a batch that
        // central refuses every time must not turn into a reconnect every 250 ms.
        let nothing_to_send = before.last_sequence <= acked;
        if nothing_to_send {
            backoff.reset();
        }
        let _ = self.status.send(LinkStatus::Connected);
        tracing::info!(resume_after = acked, "connected to central");
        let mut inventory_sent = None;
        self.send_inventory(&to_central, &mut inventory_sent, true)
            .await?;
        let mut renewing = Renewing::NotAsked;
        self.ask_renewal(&to_central, &mut renewing).await?;

        let mut heartbeat = tokio::time::interval(self.heartbeat_every);
        heartbeat.tick().await;
        loop {
            // Fill the window with what the outbox holds beyond what is in flight.
            while sent - acked < WINDOW_BATCHES * max_events as u64 {
                let batch = self.outbox.pending(sent, max_events, max_bytes).await?;
                let Some(last) = batch.last().map(|p| p.sequence) else {
                    break;
                };
                let events = batch.into_iter().map(|p| p.event).collect();
                let message = pb::AgentMessage {
                    kind: Some(pb::agent_message::Kind::Batch(pb::EventBatch { events })),
                };
                if to_central.send(message).await.is_err() {
                    return Err(SessionError::Protocol("request stream closed"));
                }
                sent = last;
            }
            tokio::select! {
                message = inbound.message() => match message? {
                    Some(pb::CentralMessage { kind: Some(pb::central_message::Kind::Ack(ack)) }) => {
                        if ack.up_to_sequence > acked {
                            self.outbox.ack(ack.up_to_sequence).await?;
                            acked = ack.up_to_sequence;
                            backoff.reset();
                        }
                        tracing::debug!(acked, stored = ack.stored, duplicates = ack.duplicates, "ack");
                    }
                    Some(pb::CentralMessage { kind: Some(pb::central_message::Kind::Directive(d)) }) => {
                        match d.kind {
                            Some(pb::directive::Kind::RequestInventory(_)) => {
                                tracing::debug!(directive = %d.directive_id, "central asked for the inventory");
                                self.send_inventory(&to_central, &mut inventory_sent, true).await?;
                            }
                            Some(pb::directive::Kind::AccessRules(rules)) => self.take_rules(rules)?,
                            Some(pb::directive::Kind::UpdateTarget(target)) => self.take_update_target(&target),
                            // A newer central's directive: nothing this agent can do about it.
                            None => tracing::info!(directive = %d.directive_id, "unknown directive ignored"),
                        }
                    }
                    Some(pb::CentralMessage { kind: Some(pb::central_message::Kind::CertificateRenewal(answer)) }) => {
                        if self.take_renewal(&mut renewing, answer) {
                            backoff.reset();
                            return Ok(());
                        }
                    }
                    Some(_) => return Err(SessionError::Protocol("unexpected message from central")),
                    None => return Err(SessionError::Protocol("central closed the stream")),
                },
                _ = self.new_events.notified() => {
                    self.send_inventory(&to_central, &mut inventory_sent, false).await?;
                }
                _ = heartbeat.tick() => {
                    let status = self.outbox.status().await?;
                    let beat = pb::AgentMessage {
                        kind: Some(pb::agent_message::Kind::Heartbeat(pb::Heartbeat {
                            sent_at: Some(proto::convert::timestamp(time::OffsetDateTime::now_utc())),
                            last_produced_sequence: status.last_sequence,
                            outbox_depth: status.depth,
                        })),
                    };
                    if to_central.send(beat).await.is_err() {
                        return Err(SessionError::Protocol("request stream closed"));
                    }
                    // Sessions live for weeks: the certificate may fall due during one.
                    self.ask_renewal(&to_central, &mut renewing).await?;
                }
            }
        }
    }
}

/// Writes `span`'s W3C trace context (`traceparent`, `tracestate`) into gRPC metadata through the
/// global propagator, which only `fleet-telemetry` installs: with telemetry off nothing is added.
fn inject_trace_context(span: &tracing::Span, metadata: &mut tonic::metadata::MetadataMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    struct Injector<'a>(&'a mut tonic::metadata::MetadataMap);
    impl opentelemetry::propagation::Injector for Injector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(key), Ok(value)) = (
                tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
                tonic::metadata::MetadataValue::try_from(value.as_str()),
            ) {
                self.0.insert(key, value);
            }
        }
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut Injector(metadata))
    });
}

fn limit(announced: u32, ours: usize) -> usize {
    match announced as usize {
        0 => ours,
        theirs => theirs.min(ours),
    }
}

/// A uniform number in [0, 1) from the system's secure random source (jitter only).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}
