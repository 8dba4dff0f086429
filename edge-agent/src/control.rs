//! The local control API (`onshi.agent.v1.LocalAgent`) on a Unix socket only the agent's user
//! can open. The counter CLI uses it; patient details cross it, but never leave the machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use proto::agent::v1 as pb;
use proto::agent::v1::local_agent_client::LocalAgentClient;
use proto::agent::v1::local_agent_server::{LocalAgent, LocalAgentServer};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Response, Status};

use crate::lookup::{CardFields, LookupError, Lookups};
use crate::outbox::Outbox;
use crate::uplink::LinkStatus;

#[derive(Debug, Clone)]
pub struct Control {
    lookups: Arc<Lookups>,
    outbox: Outbox,
    link: watch::Receiver<LinkStatus>,
    site_code: String,
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
        }
    }

    /// Serves on a socket bound by [`bind_private`] until `shutdown`.
    pub async fn serve(
        self,
        listener: UnixListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf));
        tonic::transport::Server::builder()
            .add_service(LocalAgentServer::new(self))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
            .await?;
        if let Some(path) = path {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
}

/// Binds the control socket owner-only. A stale socket file from a crashed agent is removed; a
/// live one means another agent runs on the same data folder, which is refused.
pub fn bind_private(socket: &Path) -> anyhow::Result<UnixListener> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if socket.exists() {
        // Only a socket we can connect to belongs to a running agent.
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            anyhow::bail!(
                "another agent is already running on {} (stop it first)",
                socket.display()
            );
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

#[tonic::async_trait]
impl LocalAgent for Control {
    async fn lookup_insurance_card(
        &self,
        request: Request<pb::InsuranceCardLookupRequest>,
    ) -> Result<Response<pb::LookupReply>, Status> {
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
            event_id: answer.event.id.to_string(),
            sequence: answer.event.sequence,
            latency_ms: answer.latency_ms,
        }))
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
        }))
    }
}

/// A client of a running agent's control socket.
pub async fn connect(socket: &Path) -> anyhow::Result<LocalAgentClient<Channel>> {
    let path: PathBuf = socket.to_path_buf();
    if !path.exists() {
        anyhow::bail!(
            "the agent is not running: no control socket at {} (start it with `edge-agent run`)",
            path.display()
        );
    }
    // The URI is ignored: every connection goes to the socket.
    let channel = Endpoint::from_static("http://agent.local")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await?;
    Ok(LocalAgentClient::new(channel))
}
