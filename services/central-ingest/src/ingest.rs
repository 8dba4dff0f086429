//! The uplink: one bidirectional stream per agent, batches in, acks out.
//!
//! The site an agent speaks for comes from its client certificate. Every site code the agent
//! sends (hello, each event) must match it; a mismatch ends the stream with PERMISSION_DENIED,
//! is written to `security_events`, and stores nothing from that batch. Acks carry the stream's
//! contiguous sequence after the batch committed, so an agent never drops an event central
//! does not hold.
//!
//! Limits, each with a clear status: a message above [`MAX_MESSAGE_BYTES`] is refused with
//! RESOURCE_EXHAUSTED, a batch above [`MAX_BATCH_EVENTS`] with INVALID_ARGUMENT; events per
//! second per site are throttled (see `limits`), never refused.
//!
//! Backpressure: a session writes its batch (through the group-commit `writer`) and waits for
//! the commit before it reads the agent's next message. If PostgreSQL does not commit within the
//! write timeout, or fails, the session ends with UNAVAILABLE: the agent keeps its events,
//! reconnects with jittered backoff and resends from the Welcome's resume point. Ending the
//! stream (rather than retrying inside it) frees the session's memory at once and leaves the
//! pacing of retries to the agents' backoff, which spreads thousands of them out.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use onshi_domain::availability::SessionEnd;
use onshi_domain::events::{FleetEvent, Inventory, StreamId};
use onshi_domain::site::SiteCode;
use proto::fleet::v1 as pb;
use proto::fleet::v1::fleet_uplink_server::FleetUplink;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;
use uuid::Uuid;

use crate::limits::RateLimiter;
use crate::renewal::Renewals;
use crate::writer::Writer;
use central_core::error::ServiceError;
use central_store::{BatchWrite, Store, StoreError};

/// Limits central announces in its Welcome and enforces.
pub const MAX_BATCH_EVENTS: usize = 1_000;
pub(crate) const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// The largest message central decodes: a full batch plus room for the message's own framing.
pub const MAX_MESSAGE_BYTES: usize = MAX_BATCH_BYTES + 64 * 1024;
/// Replies queued for a slow agent before central stops reading its batches.
const REPLY_QUEUE: usize = 16;
/// The highest sequence an agent can really have produced: 2^40, a thousand events a second
/// for 34 years. A claim above it is a lie or a fault, refused so it cannot poison the sums
/// of every view that adds up backlogs.
pub(crate) const MAX_PLAUSIBLE_SEQUENCE: u64 = 1 << 40;
/// Sessions one site may hold open on one replica at once: an agent holds one, a restarting
/// agent briefly two; a stolen key cannot open thousands.
pub const DEFAULT_SESSIONS_PER_SITE: usize = 4;

/// Sessions open per site on this replica.
#[derive(Debug, Clone)]
struct SiteSessions {
    open: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    limit: usize,
}

/// A session's place under [`SiteSessions`]' limit, given back when dropped.
#[derive(Debug)]
struct SessionPlace {
    sessions: SiteSessions,
    site: String,
}

impl SiteSessions {
    fn new(limit: usize) -> Self {
        Self {
            open: Arc::default(),
            limit,
        }
    }

    fn enter(&self, site: &SiteCode) -> Option<SessionPlace> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(site.as_str().to_string()).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(SessionPlace {
            sessions: self.clone(),
            site: site.as_str().to_string(),
        })
    }
}

impl Drop for SessionPlace {
    fn drop(&mut self) {
        let mut open = self.sessions.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.site) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.site);
            }
        }
    }
}

/// Refuses a sequence no agent can have produced.
fn plausible(sequence: u64, what: &str) -> Result<u64, Status> {
    if sequence > MAX_PLAUSIBLE_SEQUENCE {
        return Err(ServiceError::BadRequest(format!(
            "{what} {sequence} is beyond any agent's outbox (at most {MAX_PLAUSIBLE_SEQUENCE})"
        ))
        .into());
    }
    Ok(sequence)
}

#[derive(Debug, Clone)]
pub struct Ingest {
    store: Store,
    writer: Writer,
    limits: Arc<RateLimiter>,
    write_timeout: Duration,
    /// Revoked certificates: refused at the handshake, and a session open when its certificate
    /// is revoked ends at its next message.
    deny: fleet_tls::deny::DenyList,
    renewals: Renewals,
    /// A session that says nothing for this long is ended: the link is counted as down.
    silence: Duration,
    sessions: SiteSessions,
}

impl Ingest {
    pub fn new(
        store: Store,
        writer: Writer,
        limits: Arc<RateLimiter>,
        write_timeout: Duration,
        deny: fleet_tls::deny::DenyList,
    ) -> Self {
        Self {
            store,
            writer,
            limits,
            write_timeout,
            deny,
            renewals: Renewals::disabled(),
            silence: Duration::from_secs(90),
            sessions: SiteSessions::new(DEFAULT_SESSIONS_PER_SITE),
        }
    }

    /// How many sessions one site may hold open on this replica at once.
    pub fn with_sessions_per_site(mut self, limit: usize) -> Self {
        self.sessions = SiteSessions::new(limit.max(1));
        self
    }

    /// How long a session may say nothing (a few agent heartbeats) before central ends it.
    pub fn with_silence(mut self, silence: Duration) -> Self {
        self.silence = silence;
        self
    }

    /// Signs agents' certificate renewals with this CA (without, they are refused).
    pub fn with_renewals(mut self, renewals: Renewals) -> Self {
        self.renewals = renewals;
        self
    }
}

/// tonic refuses a message above the decoding limit with OUT_OF_RANGE and a terse text; the
/// agent gets RESOURCE_EXHAUSTED and what to do instead.
fn inbound_error(status: Status) -> Status {
    if status.code() == tonic::Code::OutOfRange && status.message().contains("too large") {
        return ServiceError::TooLarge(format!(
            "a message may be at most {MAX_MESSAGE_BYTES} bytes and a batch at most \
             {MAX_BATCH_BYTES} bytes (Welcome.max_batch_bytes); send smaller batches ({})",
            status.message()
        ))
        .into();
    }
    status
}

type Replies = Pin<Box<dyn Stream<Item = Result<pb::CentralMessage, Status>> + Send>>;

#[tonic::async_trait]
impl FleetUplink for Ingest {
    type SessionStream = Replies;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let site = peer_site(&request)?;
        let place = self.sessions.enter(&site).ok_or_else(|| {
            tracing::warn!(site = %site, limit = self.sessions.limit, "session refused: the site holds its limit of sessions");
            Status::resource_exhausted(format!(
                "site {site} already holds {} sessions on this replica; close one first",
                self.sessions.limit
            ))
        })?;
        let certificate = request
            .peer_certs()
            .and_then(|certs| certs.first().cloned());
        // The agent's `uplink_connect` span, from the W3C trace context in the metadata.
        let opening = tracing::info_span!("uplink_session_open");
        join_trace(&opening, request.metadata());
        self.open_session(site, certificate, place, request.into_inner())
            .instrument(opening)
            .await
    }
}

impl Ingest {
    async fn open_session(
        &self,
        site: SiteCode,
        certificate: Option<rustls::pki_types::CertificateDer<'static>>,
        place: SessionPlace,
        mut inbound: Streaming<pb::AgentMessage>,
    ) -> Result<Response<Replies>, Status> {
        let hello = match inbound.message().await.map_err(inbound_error)? {
            Some(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Hello(hello)),
            }) => hello,
            _ => {
                return Err(ServiceError::BadRequest(
                    "the first message of a session must be a Hello".into(),
                )
                .into());
            }
        };
        let stream = self.accept_hello(&site, &hello).await?;
        let open = self.store.open_stream(
            &site,
            stream,
            &hello.agent_version,
            &hello.config_hash,
            plausible(hello.last_produced_sequence, "last produced sequence")?,
        );
        let contiguous = within(self.write_timeout, open).await?;
        tracing::info!(site = %site, stream = %stream.0, contiguous, agent_version = %hello.agent_version, "agent connected");

        let (replies, rx) = mpsc::channel(REPLY_QUEUE);
        let welcome = pb::CentralMessage {
            kind: Some(pb::central_message::Kind::Welcome(pb::Welcome {
                site_code: site.as_str().to_string(),
                resume_after_sequence: contiguous,
                server_time: Some(proto::convert::timestamp(time::OffsetDateTime::now_utc())),
                max_batch_events: MAX_BATCH_EVENTS as u32,
                max_batch_bytes: MAX_BATCH_BYTES as u32,
            })),
        };
        replies
            .send(Ok(welcome))
            .await
            .map_err(|_| Status::cancelled("agent went away"))?;

        let presence = Uuid::now_v7();
        if let Err(error) = self.store.session_opened(&site, stream, presence).await {
            // Presence feeds the availability view only; the session itself goes on.
            tracing::warn!(%error, "could not record the session's presence");
        }
        let session = Session {
            store: self.store.clone(),
            writer: self.writer.clone(),
            limits: self.limits.clone(),
            write_timeout: self.write_timeout,
            deny: self.deny.clone(),
            renewals: self.renewals.clone(),
            silence: self.silence,
            summary: certificate
                .as_ref()
                .and_then(|c| fleet_tls::identity::CertificateSummary::from_der(c).ok()),
            certificate,
            site,
            stream,
        };
        tokio::spawn(async move {
            let _place = place;
            let _connected = ConnectedAgent::new();
            let mut end = SessionEnd::Prompt;
            if let Err(status) = session.run(&mut inbound, &replies, &mut end).await {
                tracing::warn!(site = %session.site, code = ?status.code(), message = status.message(), "session ended with an error");
                let _ = replies.send(Err(status)).await;
            }
            if let Err(error) = session
                .store
                .session_ended(&session.site, presence, end)
                .await
            {
                tracing::warn!(%error, "could not record the end of the session");
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn accept_hello(&self, site: &SiteCode, hello: &pb::Hello) -> Result<StreamId, Status> {
        if hello.site_code != site.as_str() {
            self.audit_foreign_site(site, &hello.site_code, "hello names another site")
                .await;
            return Err(ServiceError::ForeignSite {
                certificate: site.to_string(),
                claimed: hello.site_code.clone(),
            }
            .into());
        }
        let stream = Uuid::from_slice(&hello.stream_id).map_err(|_| {
            ServiceError::BadRequest("hello.stream_id must be a 16-byte UUID".into())
        })?;
        Ok(StreamId(stream))
    }

    async fn audit_foreign_site(&self, site: &SiteCode, claimed: &str, detail: &str) {
        audit_foreign_site(&self.store, site, claimed, detail).await;
    }
}

async fn audit_foreign_site(store: &Store, site: &SiteCode, claimed: &str, detail: &str) {
    if let Err(error) = store
        .record_security_event("foreign_site", Some(site.as_str()), Some(claimed), detail)
        .await
    {
        // The refusal stands either way; the audit row is what could not be written.
        tracing::error!(%error, site = %site, "could not record a refused foreign-site batch");
    }
}

/// A store call that must answer within `limit`, else UNAVAILABLE: a session never hangs on a
/// database that stopped answering.
async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, Status> {
    let result = tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(StoreError::Timeout(limit)));
    result.map_err(|error| ServiceError::from(error).into())
}

/// The site named by the client certificate of this request.
fn peer_site<T>(request: &Request<T>) -> Result<SiteCode, Status> {
    let certs = request.peer_certs();
    let leaf = fleet_tls::identity::leaf(certs.as_deref().map(|c| c.as_slice()))
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
    let code =
        fleet_tls::identity::site_of(leaf).map_err(|e| Status::unauthenticated(e.to_string()))?;
    SiteCode::parse(&code).map_err(|e| {
        Status::unauthenticated(format!("the certificate's site code is not valid: {e}"))
    })
}

/// How old a session's latest inventory may get before central asks for a new one.
const INVENTORY_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

fn request_inventory() -> pb::CentralMessage {
    pb::CentralMessage {
        kind: Some(pb::central_message::Kind::Directive(pb::Directive {
            directive_id: Uuid::now_v7().to_string(),
            kind: Some(pb::directive::Kind::RequestInventory(
                pb::RequestInventory {},
            )),
        })),
    }
}

struct Session {
    deny: fleet_tls::deny::DenyList,
    /// The agent's certificate (the session was opened with it), and what it says.
    certificate: Option<rustls::pki_types::CertificateDer<'static>>,
    summary: Option<fleet_tls::identity::CertificateSummary>,
    renewals: Renewals,
    silence: Duration,
    store: Store,
    writer: Writer,
    limits: Arc<RateLimiter>,
    write_timeout: Duration,
    site: SiteCode,
    stream: StreamId,
}

impl Session {
    /// Serves the session until the agent goes; `end` says how it went (silent: central heard
    /// nothing for `silence` and ended it).
    async fn run(
        &self,
        inbound: &mut Streaming<pb::AgentMessage>,
        replies: &mpsc::Sender<Result<pb::CentralMessage, Status>>,
        end: &mut SessionEnd,
    ) -> Result<(), Status> {
        // When this session last received (or asked for) the agent's inventory.
        let mut inventory_at: Option<tokio::time::Instant> = None;
        // The version of the access rules this session sent the agent.
        let mut rules_sent: Option<String> = None;
        // The update target this session sent the agent.
        let mut target_sent: Option<(i64, String)> = None;
        if !self.push_target(replies, &mut target_sent).await? {
            return Ok(());
        }
        // One renewal per session: an agent that got its certificate reconnects with it.
        let mut renewed = false;
        if !self.push_rules(replies, &mut rules_sent).await? {
            return Ok(());
        }
        loop {
            let Ok(next) = tokio::time::timeout(self.silence, inbound.message()).await else {
                *end = SessionEnd::Silent;
                tracing::warn!(site = %self.site, silence = ?self.silence, "nothing from the agent; ending the session");
                return Err(Status::unavailable(format!(
                    "nothing received for {:?}; central ended the session",
                    self.silence
                )));
            };
            let Some(message) = next.map_err(inbound_error)? else {
                break;
            };
            use pb::agent_message::Kind;
            // The certificate, or its whole site, may have been revoked since the handshake.
            if self
                .certificate
                .as_ref()
                .is_some_and(|c| self.deny.refuses(c))
            {
                tracing::warn!(site = %self.site, "ending the session of a revoked certificate");
                return Err(Status::permission_denied(
                    "this agent's certificate has been revoked; the site needs a new one",
                ));
            }
            match message.kind {
                Some(Kind::Batch(batch)) => {
                    let ack = self.ingest(batch).await?;
                    if replies.send(Ok(ack)).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Kind::Heartbeat(beat)) => {
                    let beat = self.store.record_heartbeat(
                        &self.site,
                        self.stream,
                        plausible(beat.last_produced_sequence, "last produced sequence")?,
                    );
                    within(self.write_timeout, beat).await?;
                    // Rules changed centrally reach the agent within a heartbeat.
                    if !self.push_rules(replies, &mut rules_sent).await? {
                        return Ok(());
                    }
                    // So do rollout targets.
                    if !self.push_target(replies, &mut target_sent).await? {
                        return Ok(());
                    }
                    // Streams live for days: ask for a fresh inventory once a day.
                    if inventory_at.is_none_or(|at| at.elapsed() >= INVENTORY_MAX_AGE) {
                        inventory_at = Some(tokio::time::Instant::now());
                        if replies.send(Ok(request_inventory())).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Some(Kind::Inventory(snapshot)) => {
                    let inventory = Inventory::try_from(snapshot)
                        .map_err(|e| ServiceError::BadRequest(format!("inventory: {e}")))?;
                    let record = self
                        .store
                        .record_inventory(&self.site, self.stream, &inventory);
                    within(self.write_timeout, record).await?;
                    inventory_at = Some(tokio::time::Instant::now());
                }
                Some(Kind::RenewCertificate(request)) => {
                    if renewed {
                        return Err(ServiceError::BadRequest(
                            "one certificate renewal per session; reconnect with the new certificate"
                                .into(),
                        )
                        .into());
                    }
                    renewed = true;
                    let answer = self
                        .renewals
                        .answer(&self.store, &self.site, self.summary.as_ref(), &request)
                        .await;
                    let message = pb::CentralMessage {
                        kind: Some(pb::central_message::Kind::CertificateRenewal(answer)),
                    };
                    if replies.send(Ok(message)).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Kind::Hello(_)) => {
                    return Err(
                        ServiceError::BadRequest("a session has exactly one Hello".into()).into(),
                    );
                }
                None => {
                    return Err(ServiceError::BadRequest("empty message".into()).into());
                }
            }
        }
        tracing::info!(site = %self.site, stream = %self.stream.0, "agent disconnected");
        Ok(())
    }

    /// Sends the site's update target when it differs from what this session sent; `false`
    /// when the agent has gone.
    async fn push_target(
        &self,
        replies: &mpsc::Sender<Result<pb::CentralMessage, Status>>,
        sent: &mut Option<(i64, String)>,
    ) -> Result<bool, Status> {
        let target = within(self.write_timeout, self.store.update_target(&self.site)).await?;
        let Some((rollout_id, version)) = target else {
            return Ok(true);
        };
        if sent.as_ref() == Some(&(rollout_id, version.clone())) {
            return Ok(true);
        }
        let message = pb::CentralMessage {
            kind: Some(pb::central_message::Kind::Directive(pb::Directive {
                directive_id: format!("rollout-{rollout_id}-{version}"),
                kind: Some(pb::directive::Kind::UpdateTarget(pb::UpdateTarget {
                    rollout_id,
                    version: version.clone(),
                })),
            })),
        };
        *sent = Some((rollout_id, version));
        Ok(replies.send(Ok(message)).await.is_ok())
    }

    /// Sends the site's access rules when they differ from what this session sent; `false`
    /// when the agent has gone.
    async fn push_rules(
        &self,
        replies: &mpsc::Sender<Result<pb::CentralMessage, Status>>,
        sent: &mut Option<String>,
    ) -> Result<bool, Status> {
        let rules = within(
            self.write_timeout,
            self.store
                .access_rules(&self.site, time::OffsetDateTime::now_utc()),
        )
        .await?;
        let Some(rules) = rules else {
            return Ok(true);
        };
        if sent.as_deref() == Some(rules.version.as_str()) {
            return Ok(true);
        }
        *sent = Some(rules.version.clone());
        let directive = pb::CentralMessage {
            kind: Some(pb::central_message::Kind::Directive(pb::Directive {
                directive_id: Uuid::now_v7().to_string(),
                kind: Some(pb::directive::Kind::AccessRules(pb::AccessRules::from(
                    &rules,
                ))),
            })),
        };
        Ok(replies.send(Ok(directive)).await.is_ok())
    }

    async fn ingest(&self, mut batch: pb::EventBatch) -> Result<pb::CentralMessage, Status> {
        if batch.events.len() > MAX_BATCH_EVENTS {
            return Err(ServiceError::BadRequest(format!(
                "a batch holds at most {MAX_BATCH_EVENTS} events, got {}",
                batch.events.len()
            ))
            .into());
        }
        // Refuse the whole batch if any event names another site, before decoding the rest.
        if let Some(foreign) = batch
            .events
            .iter()
            .find(|e| e.site_code != self.site.as_str())
        {
            let claimed = foreign.site_code.clone();
            let detail = format!(
                "batch of {} events (sequences {}..={}) names site {claimed}",
                batch.events.len(),
                batch.events.first().map_or(0, |e| e.sequence),
                batch.events.last().map_or(0, |e| e.sequence),
            );
            audit_foreign_site(&self.store, &self.site, &claimed, &detail).await;
            return Err(ServiceError::ForeignSite {
                certificate: self.site.to_string(),
                claimed,
            }
            .into());
        }
        // Kept beside the domain events for the commit span (observability only).
        let traceparents: Vec<String> = batch
            .events
            .iter_mut()
            .filter_map(|e| e.traceparent.take())
            .collect();
        let events = batch
            .events
            .into_iter()
            .map(FleetEvent::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        if events.is_empty() {
            return Err(ServiceError::BadRequest("an empty batch".into()).into());
        }
        if let Some(pair) = events.windows(2).find(|w| w[1].sequence <= w[0].sequence) {
            return Err(ServiceError::BadRequest(format!(
                "events of a batch must be in strictly increasing sequence order: {} follows {}",
                pair[1].sequence, pair[0].sequence
            ))
            .into());
        }
        let delay = self.limits.acquire(self.site.as_str(), events.len());
        if !delay.is_zero() {
            tracing::debug!(site = %self.site, ?delay, "throttling a site above its events-per-second limit");
            tokio::time::sleep(delay).await;
        }
        let batch = BatchWrite::new(self.site.clone(), self.stream, events)
            .map_err(|error| Status::from(ServiceError::from(error)))?;
        let write = self.writer.write_traced(batch, traceparents);
        let outcome = within(self.write_timeout, write).await?;
        metrics().acks.add(1, &[]);
        tracing::debug!(site = %self.site, stored = outcome.stored, duplicates = outcome.duplicates, contiguous = outcome.contiguous, "batch committed");
        Ok(pb::CentralMessage {
            kind: Some(pb::central_message::Kind::Ack(pb::Ack {
                up_to_sequence: outcome.contiguous,
                stored: outcome.stored,
                duplicates: outcome.duplicates,
            })),
        })
    }
}

/// Makes `span` a child of the W3C trace context in `metadata` (through the global propagator,
/// which only `fleet-telemetry` installs: with telemetry off this does nothing).
fn join_trace(span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    struct Extractor<'a>(&'a tonic::metadata::MetadataMap);
    impl opentelemetry::propagation::Extractor for Extractor<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0
                .keys()
                .filter_map(|k| match k {
                    tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                    tonic::metadata::KeyRef::Binary(_) => None,
                })
                .collect()
        }
    }
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extractor(metadata)));
    let _ = span.set_parent(parent);
}

struct Metrics {
    acks: opentelemetry::metrics::Counter<u64>,
    connected: opentelemetry::metrics::UpDownCounter<i64>,
}

/// Created on first use, after the binary installed (or not) the meter provider.
fn metrics() -> &'static Metrics {
    static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| {
        let meter = opentelemetry::global::meter("central");
        Metrics {
            acks: meter
                .u64_counter("central_acks_total")
                .with_description("Acks sent to agents, each after its batch committed")
                .build(),
            connected: meter
                .i64_up_down_counter("central_agents_connected")
                .with_description("Agent sessions open on this replica")
                .build(),
        }
    });
    &METRICS
}

/// Counts one open agent session while it lives.
struct ConnectedAgent;

impl ConnectedAgent {
    fn new() -> Self {
        metrics().connected.add(1, &[]);
        Self
    }
}

impl Drop for ConnectedAgent {
    fn drop(&mut self) {
        metrics().connected.add(-1, &[]);
    }
}
