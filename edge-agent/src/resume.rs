//! What records, at start, the terminal exchanges a previous run did not finish
//! ([`crate::national::terminal::Terminal::recover`] calls it through
//! [`RecordsRecovered`]): lookups ([`Lookups::record_asked`]), information views (judged by
//! [`crate::views::judge_answer`]) and national batches ([`crate::batch::resume`]). A module of
//! its own above those three, so the transport below them depends on none of them.

use std::sync::Arc;

use onshi_domain::events::{EventBody, FleetEvent};
use onshi_domain::site::TerminalId;
use onshi_domain::xml::QualificationConfirmationRequest;

use crate::lookup::{Asked, Lookups, Provenance};
use crate::national::{BatchLeft, OnshiAnswer, OnshiError, RecordsRecovered, StoredView};
use crate::outbox::OutboxError;

/// Records recovered exchanges for the agent's lookups, views and batches.
#[derive(Debug, Clone)]
pub struct Resume {
    lookups: Arc<Lookups>,
}

impl Resume {
    pub fn new(lookups: Arc<Lookups>) -> Arc<Self> {
        Arc::new(Self { lookups })
    }
}

impl RecordsRecovered for Resume {
    async fn record_recovered(
        &self,
        request: &QualificationConfirmationRequest,
        asked: Asked,
        provenance: Provenance,
        before_commit: Box<dyn FnOnce(&FleetEvent) + Send>,
    ) -> Result<(), OutboxError> {
        self.lookups
            .record_asked(request, asked, provenance, before_commit)
            .await
            .map(drop)
    }

    async fn record_recovered_view(
        &self,
        stored: &StoredView,
        answer: Result<OnshiAnswer, OnshiError>,
        before_commit: Box<dyn FnOnce(&FleetEvent) + Send>,
    ) -> Result<(), OutboxError> {
        let terminal = TerminalId::parse(&stored.terminal)
            .unwrap_or_else(|_| self.lookups.default_terminal().clone());
        let fetched = crate::views::judge_answer(stored.view.category, answer);
        let view = crate::views::answered_view(stored.view.clone(), &fetched);
        let event = self
            .lookups
            .recorder()
            .record_noting(terminal, EventBody::InfoView(view), before_commit)
            .await?;
        tracing::warn!(
            allowed = fetched.is_ok(),
            sequence = event.sequence,
            "recorded an information view the previous run did not record"
        );
        Ok(())
    }

    async fn resume_batch(&self, left: BatchLeft) {
        crate::batch::resume(&self.lookups, left).await
    }
}
