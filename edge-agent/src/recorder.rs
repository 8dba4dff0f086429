//! The one way anything at the agent records an event: numbered, written to the outbox
//! (fsynced), and the uplink woken. Whoever shows something to a user calls this first.

use std::sync::Arc;

use onshi_domain::events::{EventBody, EventId, FleetEvent};
use onshi_domain::site::{SiteCode, TerminalId};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::outbox::{Outbox, OutboxError};

#[derive(Debug, Clone)]
pub struct Recorder {
    site: SiteCode,
    outbox: Outbox,
    new_events: Arc<Notify>,
}

impl Recorder {
    pub fn new(site: SiteCode, outbox: Outbox, new_events: Arc<Notify>) -> Self {
        Self {
            site,
            outbox,
            new_events,
        }
    }

    pub fn site(&self) -> &SiteCode {
        &self.site
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Records `body` as happening now at `terminal`; the event is on disk when this returns.
    pub async fn record(
        &self,
        terminal: TerminalId,
        body: EventBody,
    ) -> Result<FleetEvent, OutboxError> {
        let site = self.site.clone();
        let occurred_at = OffsetDateTime::now_utc();
        let event = self
            .outbox
            .append(move |sequence| FleetEvent {
                id: EventId::from_uuid(Uuid::now_v7()).expect("now_v7 makes a v7 UUID"),
                site,
                terminal,
                occurred_at,
                sequence,
                body,
            })
            .await?;
        self.new_events.notify_one();
        Ok(event)
    }

    /// [`Recorder::record`], calling `before_commit` with the numbered event inside the outbox
    /// transaction, before it commits. The file exchange writes its restart journal there: if
    /// the agent dies, the outbox's last sequence then tells whether the event committed
    /// (`filex::journal`). `before_commit` runs on a blocking thread under the outbox lock:
    /// keep it short (one small fsynced file).
    pub async fn record_noting(
        &self,
        terminal: TerminalId,
        body: EventBody,
        before_commit: impl FnOnce(&FleetEvent) + Send + 'static,
    ) -> Result<FleetEvent, OutboxError> {
        let site = self.site.clone();
        let occurred_at = OffsetDateTime::now_utc();
        let event = self
            .outbox
            .append(move |sequence| {
                let event = FleetEvent {
                    id: EventId::from_uuid(Uuid::now_v7()).expect("now_v7 makes a v7 UUID"),
                    site,
                    terminal,
                    occurred_at,
                    sequence,
                    body,
                };
                before_commit(&event);
                event
            })
            .await?;
        self.new_events.notify_one();
        Ok(event)
    }
}
