//! The auditor's search over the audit trail: who looked up whom, who saw which history, under
//! what consent or disaster window, and the totals a report is made of.
//!
//! Patients are only ever searched by their keyed reference (`PatientRef`); the caller computes
//! it from the insurance card details at query time, so nothing here holds them in clear.

use onshi_domain::patient::PatientRef;
use onshi_domain::site::SiteCode;
use serde::Serialize;
use time::OffsetDateTime;

use super::events::StoredEvent;
use super::scope::SiteScope;
use super::{Store, StoreError};

/// The kinds an audit search covers by default: what people did, not what machines reported.
pub(crate) const AUDIT_KINDS: [&str; 4] = ["lookup", "consent", "info_view", "card_check"];

/// What to look for; every field narrows the search.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub site: Option<SiteCode>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    /// Event kinds (default [`AUDIT_KINDS`]).
    pub kinds: Vec<String>,
    pub staff_id: Option<String>,
    pub staff_role: Option<String>,
    pub patient: Option<PatientRef>,
    /// A lookup outcome (`valid`, `invalid`, `not_found`, `error`, `unreachable`), an
    /// information view's `allowed` or `refused`, or a card check result.
    pub result: Option<String>,
    /// Consents that gave this category (`limit_info`, `drug`, `checkup`, `diagnosis`,
    /// `surgery`).
    pub consent: Option<String>,
    /// Only views made under a disaster window (true) or outside one (false).
    pub disaster_window: Option<bool>,
    /// At most this many events; `None`: the whole search (an export, streamed).
    pub limit: Option<i64>,
    /// Only events after this one in the search's order (a page's [`AuditCursor`]).
    pub after: Option<AuditCursor>,
}

/// Where a page of an audit search ended: the last event's time, site and sequence (the
/// search's order). Written `<unix nanoseconds>.<site code>.<sequence>` in a `next` link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    pub occurred_at: OffsetDateTime,
    pub site_code: String,
    pub sequence: i64,
}

impl AuditCursor {
    /// The cursor after `event`.
    pub fn after(event: &StoredEvent) -> Self {
        Self {
            occurred_at: event.occurred_at,
            site_code: event.site_code.clone(),
            sequence: event.sequence,
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let bad = || {
            StoreError::BadQuery(format!(
                "after {text:?}: expected the cursor of a previous page's next link"
            ))
        };
        let mut parts = text.split('.');
        let (Some(nanos), Some(site), Some(sequence), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let nanos: i128 = nanos.parse().map_err(|_| bad())?;
        Ok(Self {
            occurred_at: OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?,
            site_code: SiteCode::parse(site).map_err(|_| bad())?.to_string(),
            sequence: sequence.parse().map_err(|_| bad())?,
        })
    }
}

impl std::fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.occurred_at.unix_timestamp_nanos(),
            self.site_code,
            self.sequence
        )
    }
}

/// The categories a consent event names (its JSON fields).
const CONSENT_CATEGORIES: [&str; 5] = ["limit_info", "drug", "checkup", "diagnosis", "surgery"];

/// Totals per site and staff member over a period.
#[derive(Debug, Clone, Serialize)]
pub struct AuditTotals {
    pub site_code: String,
    /// Empty for events without a staff member (lookups before rosters, machine events).
    pub staff_id: String,
    pub staff_role: String,
    pub lookups: i64,
    pub lookups_valid: i64,
    pub views_allowed: i64,
    pub views_refused: i64,
    pub disaster_window_views: i64,
    pub consents: i64,
}

impl AuditQuery {
    /// Refuses what cannot be a search, with a message for the auditor.
    pub fn check(&self) -> Result<(), StoreError> {
        if let Some(c) = &self.consent
            && !CONSENT_CATEGORIES.contains(&c.as_str())
        {
            return Err(StoreError::BadQuery(format!(
                "consent {c:?}: expected one of {}",
                CONSENT_CATEGORIES.join(", ")
            )));
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            return Err(StoreError::BadQuery(
                "the period is empty: `from` must be before `to`".into(),
            ));
        }
        if let Some(limit) = self.limit
            && !(1..=100_000).contains(&limit)
        {
            return Err(StoreError::BadQuery(
                "limit must be between 1 and 100000".into(),
            ));
        }
        Ok(())
    }
}

/// The rows of an audit search as PostgreSQL returns them, with the pooled connection they
/// come over (kept until the last row is read).
struct RowsOver {
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    _client: super::Conn,
    rows: std::pin::Pin<Box<tokio_postgres::RowStream>>,
}

impl Store {
    /// Events matching `query` within `scope`, oldest first, at most `query.limit`.
    pub async fn audit_search(
        &self,
        query: &AuditQuery,
        scope: &SiteScope,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        use futures_util::TryStreamExt;
        // A page (at most `query.limit`), not an export: no export slot.
        self.rows(query, scope, None).await?.try_collect().await
    }

    /// Events matching `query` within `scope`, oldest first, streamed as PostgreSQL returns
    /// them: memory stays bounded whatever the size (tokio-postgres reads the socket only as
    /// rows are taken, so a slow reader holds PostgreSQL back instead of filling memory). A
    /// failure midway ends the stream with the error, never silently. An export: it holds an
    /// export slot until the stream is dropped ([`Store::export_slot`]).
    pub async fn audit_rows(
        &self,
        query: &AuditQuery,
        scope: &SiteScope,
    ) -> Result<
        impl futures_util::Stream<Item = Result<StoredEvent, StoreError>> + Send + use<>,
        StoreError,
    > {
        let slot = self.export_slot()?;
        self.rows(query, scope, Some(slot)).await
    }

    async fn rows(
        &self,
        query: &AuditQuery,
        scope: &SiteScope,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<
        impl futures_util::Stream<Item = Result<StoredEvent, StoreError>> + Send + use<>,
        StoreError,
    > {
        query.check()?;
        let kinds: Vec<String> = if query.kinds.is_empty() {
            AUDIT_KINDS.iter().map(|k| k.to_string()).collect()
        } else {
            query.kinds.clone()
        };
        let (prefectures, sites) = scope.params();
        let site = query.site.as_ref().map(SiteCode::as_str);
        let patient = query.patient.as_ref().map(PatientRef::as_str);
        let after_at = query.after.as_ref().map(|a| a.occurred_at);
        let after_site = query.after.as_ref().map(|a| a.site_code.as_str());
        let after_sequence = query.after.as_ref().map(|a| a.sequence);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 16] = [
            &kinds,
            &site,
            &query.from,
            &query.to,
            &query.staff_id,
            &query.staff_role,
            &patient,
            &query.result,
            &query.consent,
            &query.disaster_window,
            &query.limit,
            &after_at,
            &after_site,
            &after_sequence,
            &prefectures,
            &sites,
        ];
        let client = self.read_conn().await?;
        let rows = client
            .query_raw(
                &format!(
                    "SELECT event_id, site_code, stream_id, sequence, terminal_id, occurred_at,
                            received_at, kind, body
                     FROM events
                     WHERE kind = ANY($1)
                       AND ($2::text IS NULL OR site_code = $2)
                       AND ($3::timestamptz IS NULL OR occurred_at >= $3)
                       AND ($4::timestamptz IS NULL OR occurred_at < $4)
                       AND ($5::text IS NULL OR body->>'staff_id' = $5)
                       AND ($6::text IS NULL OR body->>'staff_role' = $6)
                       AND ($7::text IS NULL OR body->>'patient_ref' = $7)
                       AND ($8::text IS NULL
                            OR (kind = 'lookup' AND body->>'outcome' = $8)
                            OR (kind = 'card_check' AND body->>'result' = $8)
                            OR (kind = 'info_view' AND $8 = CASE WHEN (body->>'allowed')::boolean
                                                                 THEN 'allowed' ELSE 'refused' END))
                       AND ($9::text IS NULL OR (kind = 'consent' AND body->>$9 = 'given'))
                       AND ($10::boolean IS NULL OR (kind = 'info_view'
                            AND (body->>'disaster_window_id' IS NOT NULL) = $10))
                       AND ($12::timestamptz IS NULL
                            OR (occurred_at, site_code, sequence) > ($12, $13, $14))
                       AND {}
                     ORDER BY occurred_at, site_code, sequence
                     LIMIT $11::bigint",
                    SiteScope::sql("site_code", 15, 16)
                ),
                &params,
            )
            .await?;
        let over = RowsOver {
            _slot: slot,
            _client: client,
            rows: Box::pin(rows),
        };
        use futures_util::StreamExt;
        // Fused: a reader that asks again after the end gets the end again.
        Ok(futures_util::stream::unfold(over, |mut over| async move {
            let row = over.rows.next().await?;
            Some((
                row.map(|r| StoredEvent::from_row(&r))
                    .map_err(StoreError::from),
                over,
            ))
        })
        .fuse())
    }

    /// Totals per site and staff member over a period (a report's table).
    pub async fn audit_totals(
        &self,
        site: Option<&SiteCode>,
        (from, to): (Option<OffsetDateTime>, Option<OffsetDateTime>),
        scope: &SiteScope,
    ) -> Result<Vec<AuditTotals>, StoreError> {
        let (prefectures, sites) = scope.params();
        let rows = self.read_conn().await?
            .query(
                &format!("SELECT site_code, coalesce(body->>'staff_id', '') AS staff_id,
                        coalesce(body->>'staff_role', '') AS staff_role,
                        count(*) FILTER (WHERE kind = 'lookup'),
                        count(*) FILTER (WHERE kind = 'lookup' AND body->>'outcome' = 'valid'),
                        count(*) FILTER (WHERE kind = 'info_view' AND (body->>'allowed')::boolean),
                        count(*) FILTER (WHERE kind = 'info_view' AND NOT (body->>'allowed')::boolean),
                        count(*) FILTER (WHERE kind = 'info_view'
                                           AND body->>'disaster_window_id' IS NOT NULL),
                        count(*) FILTER (WHERE kind = 'consent')
                 FROM events
                 WHERE kind IN ('lookup', 'info_view', 'consent')
                   AND ($1::text IS NULL OR site_code = $1)
                   AND ($2::timestamptz IS NULL OR occurred_at >= $2)
                   AND ($3::timestamptz IS NULL OR occurred_at < $3)
                   AND {}
                 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                 SiteScope::sql("site_code", 4, 5)),
                &[&site.map(SiteCode::as_str), &from, &to, &prefectures, &sites],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditTotals {
                site_code: r.get(0),
                staff_id: r.get(1),
                staff_role: r.get(2),
                lookups: r.get(3),
                lookups_valid: r.get(4),
                views_allowed: r.get(5),
                views_refused: r.get(6),
                disaster_window_views: r.get(7),
                consents: r.get(8),
            })
            .collect())
    }
}
