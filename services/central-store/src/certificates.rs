//! The certificate inventory and its expiry alerts (issue 6).
//!
//! **Projection.** Agents report `certificate_inventory` events (see the agent's `certs`); ingest
//! stores them like any event, and the maintenance task projects them here, never on the ingest
//! path: it reads the events received since a watermark (minus a margin, since transactions
//! commit out of `received_at` order; what `certificate_inventory_history` already holds is
//! skipped), upserts each listed certificate per site + terminal + fingerprint, and for a full
//! snapshot retires the site's certificates it no longer lists. An older event never overrides
//! what a newer one said (`last_seen_at` is the reporting event's time).
//!
//! **Alerts.** Every current certificate is checked against the thresholds (days before
//! `not_after`, default 90, 60, 30, 15, 7, 0: the national reminders). The tightest threshold a
//! certificate has passed is raised once per fingerprint (a CA shared by every site is one
//! alert, not one per site); thresholds passed while central did not know the certificate are not
//! raised after the fact. The detail says the days to expiry and, for a terminal certificate,
//! the renewal lead time left: business days (Japanese calendar, JST) until expiry minus 10
//! (ASSUMED: 5 business days for the national portal's mailed notice, 5 for the site to
//! install). CA and intermediate certificates are tracked the same way: when one expires, the
//! leaves it issued stop validating even though they are still valid themselves.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use onshi_domain::calendar::JST;
use onshi_domain::events::EventBody;
use serde::Serialize;
use time::{Date, Duration, OffsetDateTime};
use tokio_postgres::types::Json;
use uuid::Uuid;

use super::scope::SiteScope;
use super::{Store, StoreError};

/// Names the certificate projection among PostgreSQL advisory locks.
const PROJECTION_LOCK: i64 = 0x6f6e_7368_6943_6572; // "onshiCer"

/// How far behind the watermark the projection re-reads (commits arrive out of order).
const WATERMARK_MARGIN_SECS: f64 = 600.0;

/// Events projected per round trip.
const PROJECTION_BATCH: i64 = 500;

/// ASSUMED: the national portal's mailed notice (5 business days) and the site's installation
/// (5 business days) must both fit before a terminal certificate expires.
pub(crate) const RENEWAL_BUSINESS_DAYS: i64 = 10;

/// The alert thresholds in days before expiry (a small copyable list, most distant first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateAlertDays {
    days: [u16; 16],
    len: usize,
}

impl Default for CertificateAlertDays {
    fn default() -> Self {
        "90,60,30,15,7,0"
            .parse()
            .expect("the default thresholds parse")
    }
}

impl FromStr for CertificateAlertDays {
    type Err = String;

    /// A comma-separated list of days, e.g. `90,60,30,15,7,0` (at most 16, each 0..=3650).
    fn from_str(text: &str) -> Result<Self, String> {
        let mut list = text
            .split(',')
            .map(|d| d.trim())
            .filter(|d| !d.is_empty())
            .map(|d| {
                d.parse::<u16>()
                    .ok()
                    .filter(|d| *d <= 3650)
                    .ok_or_else(|| format!("{d:?} is not a number of days (0..=3650)"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        list.sort_unstable_by(|a, b| b.cmp(a));
        list.dedup();
        if list.is_empty() || list.len() > 16 {
            return Err("give between 1 and 16 thresholds".into());
        }
        let mut days = [0; 16];
        days[..list.len()].copy_from_slice(&list);
        Ok(Self {
            days,
            len: list.len(),
        })
    }
}

impl CertificateAlertDays {
    pub fn as_slice(&self) -> &[u16] {
        &self.days[..self.len]
    }

    /// The tightest threshold `days_left` has reached, if any.
    pub fn reached(&self, days_left: i64) -> Option<u16> {
        self.as_slice()
            .iter()
            .copied()
            .filter(|t| days_left <= i64::from(*t))
            .min()
    }
}

/// What one check did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CertificateCheck {
    /// Inventory events projected.
    pub projected: u64,
    /// Alerts raised.
    pub raised: u64,
}

/// A certificate a site holds now.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateRow {
    pub site_code: String,
    pub terminal_id: String,
    pub role: String,
    pub subject: String,
    pub issuer: String,
    pub serial_hex: String,
    pub sha256_fingerprint: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub key_type: String,
    pub key_bits: i32,
    pub source: String,
    /// The agent can no longer read the file it came from.
    pub missing: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// Whole days until `not_after` (negative once expired).
    pub days_to_expiry: i64,
    /// Terminal certificates: business days left to start a renewal (ASSUMED: business days
    /// until expiry minus 10); negative when it can no longer be done in time.
    pub renewal_lead_business_days: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertificateAlert {
    pub id: i64,
    pub sha256_fingerprint: String,
    pub threshold_days: i32,
    pub site_code: String,
    pub terminal_id: String,
    pub role: String,
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub raised_at: OffsetDateTime,
    pub detail: String,
}

/// Whole days from `now` to `not_after`, rounded down (so 0 on the last day, -1 the day after).
pub fn days_to_expiry(now: OffsetDateTime, not_after: OffsetDateTime) -> i64 {
    (not_after - now).whole_seconds().div_euclid(86_400)
}

/// Business days (JST) strictly between today and the expiry day, minus
/// [`RENEWAL_BUSINESS_DAYS`]; `None` beyond the years the holiday calendar knows.
pub fn renewal_lead_business_days(now: OffsetDateTime, not_after: OffsetDateTime) -> Option<i64> {
    let today = now.to_offset(JST).date();
    let expiry = not_after.to_offset(JST).date();
    Some(business_days_between(today, expiry)? - RENEWAL_BUSINESS_DAYS)
}

/// Business days d with `from` < d < `to`.
fn business_days_between(from: Date, to: Date) -> Option<i64> {
    let mut holidays: HashMap<i32, HashSet<Date>> = HashMap::new();
    let mut count = 0;
    let mut day = from.next_day()?;
    while day < to {
        let year = match holidays.entry(day.year()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                onshi_domain::calendar::holidays(day.year())
                    .ok()?
                    .into_iter()
                    .collect(),
            ),
        };
        let weekend = matches!(
            day.weekday(),
            time::Weekday::Saturday | time::Weekday::Sunday
        );
        if !weekend && !year.contains(&day) {
            count += 1;
        }
        day = day.next_day()?;
    }
    Some(count)
}

fn lead_time_for(role: &str, now: OffsetDateTime, not_after: OffsetDateTime) -> Option<i64> {
    (role == "terminal")
        .then(|| renewal_lead_business_days(now, not_after))
        .flatten()
}

/// The columns [`certificate_row`] reads, in its order.
pub(crate) const CERTIFICATE_COLUMNS: &str = "site_code, terminal_id, role, subject, issuer, serial_hex, \
     sha256_fingerprint, not_before, not_after, key_type, key_bits, source, missing, \
     first_seen_at, last_seen_at";

/// A row of [`CERTIFICATE_COLUMNS`] as listed on `now`: days to expiry and, for terminal
/// certificates, the renewal lead time left.
pub(crate) fn certificate_row(r: &tokio_postgres::Row, now: OffsetDateTime) -> CertificateRow {
    let role: String = r.get(2);
    let not_after: OffsetDateTime = r.get(8);
    CertificateRow {
        site_code: r.get(0),
        terminal_id: r.get(1),
        renewal_lead_business_days: lead_time_for(&role, now, not_after),
        role,
        subject: r.get(3),
        issuer: r.get(4),
        serial_hex: r.get(5),
        sha256_fingerprint: r.get(6),
        not_before: r.get(7),
        not_after,
        key_type: r.get(9),
        key_bits: r.get(10),
        source: r.get(11),
        missing: r.get(12),
        first_seen_at: r.get(13),
        last_seen_at: r.get(14),
        days_to_expiry: days_to_expiry(now, not_after),
    }
}

/// The alert's text.
pub(crate) fn alert_detail(
    role: &str,
    subject: &str,
    site: &str,
    terminal: &str,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> String {
    let days = days_to_expiry(now, not_after);
    let when = if days < 0 {
        format!("expired {} days ago", -days)
    } else {
        format!("expires in {days} days")
    };
    let date = not_after.to_offset(JST).date();
    match role {
        "terminal" => {
            let lead = match renewal_lead_business_days(now, not_after) {
                Some(lead) if lead > 0 => format!(
                    "renewal lead time left: {lead} business days (business days until expiry \
                     minus {RENEWAL_BUSINESS_DAYS}, ASSUMED: 5 for the portal's mailed notice, 5 \
                     for installation at the site); schedule a person at the site"
                ),
                Some(lead) => format!(
                    "renewal lead time left: {lead} business days: a renewal can no longer be \
                     scheduled through the usual process before expiry (ASSUMED 5 + 5 business \
                     days); act now"
                ),
                None => "renewal lead time unknown (beyond the holiday calendar)".into(),
            };
            format!(
                "terminal certificate {subject} at site {site} terminal {terminal} {when} \
                 ({date} JST); {lead}"
            )
        }
        "ca" => format!(
            "CA certificate {subject} (seen at site {site}) {when} ({date} JST): certificates it \
             issued stop validating then, even while still valid themselves"
        ),
        other => format!(
            "{other} certificate {subject} at site {site} terminal {terminal} {when} ({date} JST)"
        ),
    }
}

impl Store {
    /// Projects the inventory events received since the last run; returns how many.
    pub async fn project_certificates(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let mut client = self.conn().await?;
            let tx = client.transaction().await?;
            if !tx.try_lock(PROJECTION_LOCK).await? {
                return Ok(total);
            }
            let rows = tx
                .query(
                    "SELECT e.event_id, e.occurred_at, e.received_at, e.site_code, e.terminal_id,
                            e.body
                     FROM events e, certificate_projection p
                     WHERE e.kind = 'certificate_inventory'
                       AND e.received_at > p.received_at - $1::float8 * interval '1 second'
                       AND NOT EXISTS (
                           SELECT 1 FROM certificate_inventory_history h
                           WHERE h.event_id = e.event_id AND h.occurred_at = e.occurred_at)
                     ORDER BY e.received_at, e.occurred_at
                     LIMIT $2",
                    &[&WATERMARK_MARGIN_SECS, &PROJECTION_BATCH],
                )
                .await?;
            let count = rows.len();
            for row in &rows {
                let event_id: Uuid = row.get(0);
                let occurred_at: OffsetDateTime = row.get(1);
                let received_at: OffsetDateTime = row.get(2);
                let site: String = row.get(3);
                let terminal: String = row.get(4);
                let body: serde_json::Value = row.get(5);
                let inventory = match serde_json::from_value::<EventBody>(body) {
                    Ok(EventBody::CertificateInventory(inventory)) => inventory,
                    _ => {
                        tracing::warn!(%event_id, "a certificate_inventory event does not read as one; skipped");
                        onshi_domain::events::CertificateInventory {
                            certificates: Vec::new(),
                            full_snapshot: false,
                        }
                    }
                };
                for c in &inventory.certificates {
                    let missing = c.source.starts_with("missing:");
                    let key_bits = i32::try_from(c.key_bits).unwrap_or(i32::MAX);
                    tx.execute(
                        "INSERT INTO certificates (site_code, terminal_id, sha256_fingerprint,
                             role, subject, issuer, serial_hex, not_before, not_after, key_type,
                             key_bits, source, missing, first_seen_at, last_seen_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
                         ON CONFLICT (site_code, terminal_id, sha256_fingerprint) DO UPDATE SET
                             role = EXCLUDED.role, subject = EXCLUDED.subject,
                             issuer = EXCLUDED.issuer, serial_hex = EXCLUDED.serial_hex,
                             not_before = EXCLUDED.not_before, not_after = EXCLUDED.not_after,
                             key_type = EXCLUDED.key_type, key_bits = EXCLUDED.key_bits,
                             source = EXCLUDED.source, missing = EXCLUDED.missing,
                             last_seen_at = EXCLUDED.last_seen_at, retired_at = NULL
                         WHERE certificates.last_seen_at <= EXCLUDED.last_seen_at",
                        &[
                            &site,
                            &terminal,
                            &c.sha256_fingerprint,
                            &c.role,
                            &c.subject,
                            &c.issuer,
                            &c.serial_hex,
                            &c.not_before,
                            &c.not_after,
                            &c.key_type,
                            &key_bits,
                            &c.source,
                            &missing,
                            &occurred_at,
                        ],
                    )
                    .await?;
                }
                if inventory.full_snapshot {
                    // Everything listed now has last_seen_at = occurred_at; the rest is gone.
                    tx.execute(
                        "UPDATE certificates SET retired_at = $3
                         WHERE site_code = $1 AND terminal_id = $2 AND retired_at IS NULL
                           AND last_seen_at < $3",
                        &[&site, &terminal, &occurred_at],
                    )
                    .await?;
                }
                tx.execute(
                    "INSERT INTO certificate_inventory_history (event_id, occurred_at,
                         received_at, site_code, terminal_id, full_snapshot, certificates)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    &[
                        &event_id,
                        &occurred_at,
                        &received_at,
                        &site,
                        &terminal,
                        &inventory.full_snapshot,
                        &Json(&inventory.certificates),
                    ],
                )
                .await?;
                tx.execute(
                    "UPDATE certificate_projection SET received_at = greatest(received_at, $1)
                     WHERE id = 1",
                    &[&received_at],
                )
                .await?;
            }
            tx.commit().await?;
            total += count as u64;
            if (count as i64) < PROJECTION_BATCH {
                return Ok(total);
            }
        }
    }

    /// Raises the expiry alerts due at `now` (see the module documentation); returns how many.
    pub async fn raise_certificate_alerts(
        &self,
        now: OffsetDateTime,
        thresholds: CertificateAlertDays,
    ) -> Result<u64, StoreError> {
        let furthest = thresholds.as_slice().iter().copied().max().unwrap_or(0);
        let horizon = now + Duration::days(i64::from(furthest) + 1);
        let client = self.conn().await?;
        let rows = client
            .query(
                "SELECT DISTINCT ON (sha256_fingerprint) sha256_fingerprint, site_code,
                        terminal_id, role, subject, not_after
                 FROM certificates
                 WHERE retired_at IS NULL AND not_after <= $1
                 ORDER BY sha256_fingerprint, (role = 'terminal') DESC, site_code, terminal_id",
                &[&horizon],
            )
            .await?;
        let mut raised = 0;
        for row in &rows {
            let fingerprint: String = row.get(0);
            let site: String = row.get(1);
            let terminal: String = row.get(2);
            let role: String = row.get(3);
            let subject: String = row.get(4);
            let not_after: OffsetDateTime = row.get(5);
            let Some(threshold) = thresholds.reached(days_to_expiry(now, not_after)) else {
                continue;
            };
            let detail = alert_detail(&role, &subject, &site, &terminal, now, not_after);
            raised += client
                .execute(
                    "INSERT INTO certificate_alerts (sha256_fingerprint, threshold_days,
                         site_code, terminal_id, role, subject, not_after, raised_at, detail)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
                     WHERE NOT EXISTS (SELECT 1 FROM certificate_alerts
                                       WHERE sha256_fingerprint = $1 AND threshold_days = $2)
                     ON CONFLICT (sha256_fingerprint, threshold_days) DO NOTHING",
                    &[
                        &fingerprint,
                        &i32::from(threshold),
                        &site,
                        &terminal,
                        &role,
                        &subject,
                        &not_after,
                        &now,
                        &detail,
                    ],
                )
                .await?;
        }
        if raised > 0 {
            tracing::info!(raised, "certificate expiry alerts raised");
        }
        Ok(raised)
    }

    /// One pass: project new inventory events, then raise what is due at `now`.
    pub async fn check_certificates(
        &self,
        now: OffsetDateTime,
        thresholds: CertificateAlertDays,
    ) -> Result<CertificateCheck, StoreError> {
        let projected = self.project_certificates().await?;
        let raised = self.raise_certificate_alerts(now, thresholds).await?;
        Ok(CertificateCheck { projected, raised })
    }

    /// The certificates sites hold now, soonest expiry first; `expiring_within_days` keeps
    /// those expiring within that many days of `now` (expired ones included).
    pub async fn certificates(
        &self,
        now: OffsetDateTime,
        expiring_within_days: Option<i64>,
        site: Option<&str>,
        scope: &SiteScope,
    ) -> Result<Vec<CertificateRow>, StoreError> {
        let until = expiring_within_days.map(|d| now + Duration::days(d));
        let client = self.read_conn().await?;
        let (prefectures, sites) = scope.params();
        let rows = client
            .query(
                &format!(
                    "SELECT {CERTIFICATE_COLUMNS}
                     FROM certificates
                     WHERE retired_at IS NULL
                       AND ($1::timestamptz IS NULL OR not_after <= $1)
                       AND ($2::text IS NULL OR site_code = $2)
                       AND {}
                     ORDER BY not_after, site_code, terminal_id, sha256_fingerprint
                     LIMIT 10000",
                    SiteScope::sql("site_code", 3, 4)
                ),
                &[&until, &site, &prefectures, &sites],
            )
            .await?;
        Ok(rows.iter().map(|r| certificate_row(r, now)).collect())
    }

    /// Expiry alerts, newest first.
    pub async fn certificate_alerts(
        &self,
        limit: i64,
        scope: &SiteScope,
    ) -> Result<Vec<CertificateAlert>, StoreError> {
        let client = self.read_conn().await?;
        let (prefectures, sites) = scope.params();
        let rows = client
            .query(
                &format!(
                    "SELECT id, sha256_fingerprint, threshold_days, site_code, terminal_id, role,
                            subject, not_after, raised_at, detail
                     FROM certificate_alerts WHERE {}
                     ORDER BY raised_at DESC, id DESC LIMIT $1",
                    SiteScope::sql("site_code", 2, 3)
                ),
                &[&limit, &prefectures, &sites],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| CertificateAlert {
                id: r.get(0),
                sha256_fingerprint: r.get(1),
                threshold_days: r.get(2),
                site_code: r.get(3),
                terminal_id: r.get(4),
                role: r.get(5),
                subject: r.get(6),
                not_after: r.get(7),
                raised_at: r.get(8),
                detail: r.get(9),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn thresholds_parse_and_pick_the_tightest() {
        let days = CertificateAlertDays::default();
        assert_eq!(days.as_slice(), [90, 60, 30, 15, 7, 0]);
        assert_eq!(days.reached(91), None);
        assert_eq!(days.reached(90), Some(90));
        assert_eq!(days.reached(10), Some(15));
        assert_eq!(days.reached(0), Some(0));
        assert_eq!(days.reached(-3), Some(0));
        let custom: CertificateAlertDays = "7, 30,7".parse().unwrap();
        assert_eq!(custom.as_slice(), [30, 7]);
        assert!("".parse::<CertificateAlertDays>().is_err());
        assert!("x".parse::<CertificateAlertDays>().is_err());
    }

    #[test]
    fn days_and_lead_time() {
        let now = datetime!(2026-11-20 03:00 UTC); // Friday noon JST
        assert_eq!(days_to_expiry(now, now + Duration::hours(23)), 0);
        assert_eq!(days_to_expiry(now, now - Duration::hours(1)), -1);
        assert_eq!(days_to_expiry(now, now + Duration::days(30)), 30);
        // Expiring Friday 2026-12-04: business days between are Mon 23 (Labour Thanksgiving
        // is the 23rd: a holiday), 24, 25, 26, 27, 30, 1, 2, 3 = 8; minus 10.
        let lead = renewal_lead_business_days(now, datetime!(2026-12-04 03:00 UTC)).unwrap();
        assert_eq!(lead, 8 - RENEWAL_BUSINESS_DAYS);
        let detail = alert_detail(
            "terminal",
            "CN=t",
            "3410712362",
            "T01",
            now,
            datetime!(2026-12-04 03:00 UTC),
        );
        assert!(detail.contains("expires in 14 days"), "{detail}");
        assert!(detail.contains("-2 business days"), "{detail}");
        assert!(detail.contains("ASSUMED"), "{detail}");
    }
}
