//! The local control API (`onshi.agent.v1.LocalAgent`) on a channel only the agent's account
//! can open: a Unix socket, or a named pipe on Windows ([`channel`]). The counter CLI uses it;
//! patient details cross it, but never leave the machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use proto::agent::v1 as pb;
use proto::agent::v1::local_agent_client::LocalAgentClient;
use proto::agent::v1::local_agent_server::{LocalAgent, LocalAgentServer};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Response, Status};

use crate::lookup::{CardFields, LookupError, Lookups};
use crate::outbox::Outbox;
use crate::uplink::LinkStatus;

pub mod channel;

pub use channel::{ControlListener, agent_is_running};

#[derive(Debug, Clone)]
pub struct Control {
    lookups: Arc<Lookups>,
    outbox: Outbox,
    link: watch::Receiver<LinkStatus>,
    site_code: String,
    cards: Option<Arc<crate::cards::Cards>>,
    views: Option<Arc<crate::views::Views>>,
}

impl Control {
    pub fn new(
        lookups: Arc<Lookups>,
        outbox: Outbox,
        link: watch::Receiver<LinkStatus>,
        site_code: String,
    ) -> Self {
        Self {
            lookups,
            outbox,
            link,
            site_code,
            cards: None,
            views: None,
        }
    }

    /// Serves `InfoView` with `views`.
    pub fn with_views(mut self, views: Arc<crate::views::Views>) -> Self {
        self.views = Some(views);
        self
    }

    /// Serves the card reader RPCs (`CardLookup`, `Readers`) with `cards`.
    pub fn with_cards(mut self, cards: Option<Arc<crate::cards::Cards>>) -> Self {
        self.cards = cards;
        self
    }

    /// Serves on a channel bound by [`bind_private`] until `shutdown`.
    pub async fn serve(
        self,
        listener: ControlListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let (incoming, cleanup) = listener.incoming();
        tonic::transport::Server::builder()
            .add_service(LocalAgentServer::new(self))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        cleanup();
        Ok(())
    }
}

/// Binds the control channel owner-only: a Unix socket (a stale one from a crashed agent is
/// removed) or, on Windows, a named pipe. A live agent on the same channel is refused.
pub fn bind_private(socket: &Path) -> anyhow::Result<ControlListener> {
    ControlListener::bind_private(socket)
}

#[tonic::async_trait]
impl LocalAgent for Control {
    async fn lookup_insurance_card(
        &self,
        request: Request<pb::InsuranceCardLookupRequest>,
    ) -> Result<Response<pb::LookupReply>, Status> {
        self.sends()?;
        let r = request.into_inner();
        let fields = CardFields {
            insurer_number: r.insurer_number,
            symbol: r.insured_card_symbol,
            number: r.insured_identification_number,
            branch: r.insured_branch_number,
            birthdate: r.birthdate,
            terminal: Some(r.terminal_id),
            limit_consent: r.limit_consent,
        };
        let answer = self.lookups.insurance_card(fields).await.map_err(|e| {
            let message = e.for_clerk();
            match e {
                LookupError::InvalidInput(_) | LookupError::BadTerminal(_) => {
                    Status::invalid_argument(message)
                }
                LookupError::NotRecorded(_) => Status::unavailable(message),
            }
        })?;
        let person = answer.person.unwrap_or_default();
        Ok(Response::new(pb::LookupReply {
            outcome: answer.outcome.as_str().to_string(),
            qualification_validity: answer
                .qualification_validity
                .and_then(|v| v.code().parse().ok())
                .unwrap_or(0),
            message: answer.message,
            name: person.name,
            name_kana: person.name_kana,
            insurer_name: person.insurer_name,
            insured_partial_contribution_ratio: person.insured_partial_contribution_ratio,
            disqualification_date: person.disqualification_date,
            details: person.details,
            event_id: answer.event.id.to_string(),
            sequence: answer.event.sequence,
            latency_ms: answer.latency_ms,
        }))
    }

    async fn card_lookup(
        &self,
        request: Request<pb::CardLookupRequest>,
    ) -> Result<Response<pb::CardLookupReply>, Status> {
        self.sends()?;
        self.card_lookup_rpc(request).await
    }

    async fn readers(
        &self,
        _request: Request<pb::ReadersRequest>,
    ) -> Result<Response<pb::ReadersReply>, Status> {
        Ok(Response::new(self.readers_rpc()))
    }

    type BatchInquiryStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::BatchInquiryProgress, Status>>;

    async fn batch_inquiry(
        &self,
        request: Request<pb::BatchInquiryRequest>,
    ) -> Result<Response<Self::BatchInquiryStream>, Status> {
        self.sends()?;
        crate::batch::serve(self.lookups.clone(), request.into_inner())
            .map(Response::new)
            .map_err(Status::invalid_argument)
    }

    async fn info_view(
        &self,
        request: Request<pb::InfoViewRequest>,
    ) -> Result<Response<pb::InfoViewReply>, Status> {
        self.sends()?;
        self.info_view_rpc(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let status = self
            .outbox
            .status()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Ok(Response::new(pb::StatusReply {
            site_code: self.site_code.clone(),
            outbox_depth: status.depth,
            last_produced_sequence: status.last_sequence,
            last_acked_sequence: status.last_acked,
            oldest_unacked_age_seconds: status
                .oldest_recorded_at
                .map_or(0, |t| now.saturating_sub(t).max(0) as u64),
            central_link: self.link.borrow().as_str().to_string(),
            last_ack_at_unix: status.last_ack_at.unwrap_or(0),
            outbox_used_bytes: status.used_bytes,
            outbox_budget_bytes: status.budget_bytes,
            national_link: match self.lookups.onshi().health() {
                Some(health) => {
                    let described = health.assess(std::time::Instant::now()).describe();
                    if self.lookups.onshi().sends() {
                        described
                    } else {
                        format!("{described} (tap mode)")
                    }
                }
                None => "direct".to_string(),
            },
        }))
    }
}

impl Control {
    /// Refuses what would send something to the national system in tap mode, before anything
    /// is recorded: there the receipt computer asks and the agent only watches.
    fn sends(&self) -> Result<(), Status> {
        if self.lookups.onshi().sends() {
            Ok(())
        } else {
            Err(Status::failed_precondition(crate::national::TAP_REFUSAL))
        }
    }

    async fn card_lookup_rpc(
        &self,
        request: Request<pb::CardLookupRequest>,
    ) -> Result<Response<pb::CardLookupReply>, Status> {
        use crate::cards::{CardRequest, CardRequestError};
        let cards = self.cards.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "カードリーダーが設定されていません / card readers are not enabled ([cards] in the configuration)",
            )
        })?;
        let r = request.into_inner();
        let pin = match r.pin.as_str() {
            "" => None,
            text => Some(
                card_reader::Pin::parse(text)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            ),
        };
        let terminal = match r.terminal_id.as_str() {
            "" => None,
            t => Some(onshi_domain::site::TerminalId::parse(t).map_err(|e| {
                Status::invalid_argument(format!("端末IDが正しくありません / {e}"))
            })?),
        };
        let answer = cards
            .lookup(CardRequest {
                reader: r.reader,
                pin,
                face_verified: r.face_verified,
                terminal,
                limit_consent: r.limit_consent || r.consent.iter().any(|c| c == "limit"),
                consent: r
                    .consent
                    .iter()
                    .filter(|c| c.as_str() != "limit")
                    .map(|c| {
                        serde_json::from_value(serde_json::Value::String(c.clone())).map_err(|_| {
                            Status::invalid_argument(format!(
                                "同意項目が正しくありません / unknown consent category {c:?} (limit, drug, checkup, diagnosis, surgery)"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            })
            .await
            .map_err(|e| match e {
                CardRequestError::Invalid(m) => Status::invalid_argument(m),
                e @ CardRequestError::Busy(_) => Status::resource_exhausted(e.to_string()),
                e @ CardRequestError::NotRecorded(_) => Status::unavailable(e.to_string()),
            })?;
        let lookup = answer.outcome.map(|outcome| {
            let person = answer.person.clone().unwrap_or_default();
            pb::LookupReply {
                outcome: outcome.as_str().to_string(),
                qualification_validity: answer
                    .qualification_validity
                    .and_then(|v| v.code().parse().ok())
                    .unwrap_or(0),
                message: answer.message.clone(),
                name: person.name,
                name_kana: person.name_kana,
                insurer_name: person.insurer_name,
                insured_partial_contribution_ratio: person.insured_partial_contribution_ratio,
                disqualification_date: person.disqualification_date,
                details: person.details,
                event_id: answer.event.id.to_string(),
                sequence: answer.event.sequence,
                latency_ms: answer.latency_ms,
            }
        });
        Ok(Response::new(pb::CardLookupReply {
            card_check: snake(&answer.card_check),
            pin_tries_left: answer.pin_tries_left,
            identity_verification: snake(&answer.identity_verification),
            lookup,
            message: answer.message,
            event_id: answer.event.id.to_string(),
            sequence: answer.event.sequence,
            latency_ms: answer.latency_ms,
            view_handle: answer.view_handle.clone().unwrap_or_default(),
            consented: answer
                .consent
                .as_ref()
                .map(|c| {
                    [
                        ("limit", c.limit_info),
                        ("drug", c.drug),
                        ("checkup", c.checkup),
                        ("diagnosis", c.diagnosis),
                        ("surgery", c.surgery),
                    ]
                    .into_iter()
                    .filter(|(_, choice)| *choice == onshi_domain::events::ConsentChoice::Given)
                    .map(|(name, _)| name.to_string())
                    .collect()
                })
                .unwrap_or_default(),
            consent_available_until: answer
                .consent
                .as_ref()
                .and_then(|c| {
                    c.available_until
                        .format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default(),
        }))
    }

    async fn info_view_rpc(&self, r: pb::InfoViewRequest) -> Result<pb::InfoViewReply, Status> {
        use crate::views::{PatientBy, ViewError, ViewQuery};
        let views = self.views.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "情報閲覧は有効になっていません / information views are not enabled",
            )
        })?;
        let patient = if r.view_handle.is_empty() {
            PatientBy::Card {
                insurer_number: r.insurer_number,
                symbol: r.insured_card_symbol,
                number: r.insured_identification_number,
                branch: r.insured_branch_number,
            }
        } else {
            PatientBy::Handle(r.view_handle)
        };
        let answer = views
            .view(ViewQuery {
                category: r.category,
                staff_id: r.staff_id,
                patient,
                terminal: Some(r.terminal_id),
            })
            .await
            .map_err(|e| match e {
                ViewError::Invalid(m) => Status::invalid_argument(m),
                e @ ViewError::NotRecorded(_) => Status::unavailable(e.to_string()),
                e @ ViewError::Consents(_) => Status::internal(e.to_string()),
            })?;
        let (drugs, checkups) = crate::views::view_lines(&answer.info);
        let (basis, window) = match &answer.basis {
            Some(onshi_domain::access::Basis::Consent { .. }) => ("consent", String::new()),
            Some(onshi_domain::access::Basis::DisasterWindow { id }) => {
                ("disaster_window", id.clone())
            }
            None => ("", String::new()),
        };
        Ok(pb::InfoViewReply {
            allowed: answer.allowed,
            message: answer.message,
            refusal_reason: answer.refusal_reason.unwrap_or_default(),
            basis: basis.to_string(),
            disaster_window_id: window,
            policy_version: answer.policy.as_str().to_string(),
            drugs,
            checkups,
            event_id: answer.event.id.to_string(),
            sequence: answer.event.sequence,
        })
    }

    fn readers_rpc(&self) -> pb::ReadersReply {
        let Some(cards) = &self.cards else {
            return pb::ReadersReply {
                enabled: false,
                readers: Vec::new(),
            };
        };
        pb::ReadersReply {
            enabled: true,
            readers: cards
                .readers()
                .into_iter()
                .map(|r| pb::ReaderInfo {
                    name: r.name,
                    state: snake(&r.state),
                    face_recognition: r.face_recognition,
                    cards_read: r.cards_read,
                    errors: r.errors,
                    last_error: r.last_error.unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// The snake_case name serde gives a domain enum (the same names the events carry).
fn snake<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A client of a running agent's control channel.
pub async fn connect(socket: &Path) -> anyhow::Result<LocalAgentClient<Channel>> {
    // The first connection is made here, so that an agent that is not running is said plainly
    // (not as a transport error); tonic's connector takes it, and makes later ones itself.
    let first = std::sync::Mutex::new(Some(channel::connect(socket).await?));
    let first = Arc::new(first);
    let path: PathBuf = socket.to_path_buf();
    // The URI is ignored: every connection goes to the channel.
    let channel = Endpoint::from_static("http://agent.local")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            let first = first.lock().ok().and_then(|mut f| f.take());
            async move {
                let stream = match first {
                    Some(stream) => stream,
                    None => channel::connect(&path).await?,
                };
                Ok::<_, anyhow::Error>(TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(LocalAgentClient::new(channel))
}
