//! Notification endpoints and the deliveries owed to them (migration 0021).
//!
//! Endpoints are made and changed by chain administrators, each change audited in the same
//! transaction. Deliveries are rows the triggers on `alerts` and `certificate_alerts` insert;
//! the worker (`central_core::notify::worker`) claims due rows with `FOR UPDATE SKIP LOCKED`, so every
//! replica may run it, and a claim pushes the row's next attempt past the delivery's timeout:
//! a replica that dies mid-delivery leaves the row to another (at least once). A row is due
//! only when no earlier row of the same alert and endpoint is still undelivered (in order per
//! alert; other alerts are not held up).

use std::collections::HashMap;
use std::time::Duration;

use onshi_domain::hours::OpeningHours;
use serde::Serialize;
use time::OffsetDateTime;

use super::{Store, StoreError, audit_admin};

/// What an endpoint is, as chain IT set it (checked by `central_core::notify::endpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub name: String,
    pub channel: String,
    pub target: String,
    pub kinds: Vec<String>,
    pub prefectures: Vec<String>,
    pub sites: Vec<String>,
    pub quiet_hours: bool,
    pub enabled: bool,
}

/// An endpoint as the API and the dashboard show it: never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub id: i64,
    pub name: String,
    pub channel: String,
    pub target: String,
    pub kinds: Vec<String>,
    pub prefectures: Vec<String>,
    pub sites: Vec<String>,
    pub quiet_hours: bool,
    pub enabled: bool,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// One notification and how its delivery stands (the delivery log).
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub endpoint_id: i64,
    pub alert_key: String,
    pub event: String,
    pub kind: String,
    pub site_code: String,
    /// delivered, held (quiet hours), retrying (failed at least once) or pending.
    pub status: &'static str,
    pub attempts: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub held_since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
}

/// A claimed notification, with what its delivery needs.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub endpoint_id: i64,
    pub channel: String,
    pub target: String,
    pub secret_sealed: Option<Vec<u8>>,
    pub source: String,
    pub alert_id: Option<i64>,
    pub event: String,
    pub kind: String,
    pub site_code: String,
    pub detail: String,
    pub occurred_at: OffsetDateTime,
    pub opened_at: Option<OffsetDateTime>,
    pub resolved_at: Option<OffsetDateTime>,
    pub attempts: i32,
}

/// What one claim took: the rows to deliver, and how many quiet hours set aside.
#[derive(Debug, Default)]
pub struct Claimed {
    pub due: Vec<Due>,
    pub held: usize,
}

/// How the worker claims.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub limit: i64,
    /// How long a claimed row is left to its claimer (longer than a delivery may take).
    pub lease: Duration,
    /// How soon a row held by quiet hours is looked at again.
    pub hold_recheck: Duration,
    /// Kinds quiet hours never hold.
    pub urgent: &'a [&'a str],
}

const ENDPOINT_COLUMNS: &str = "id, name, channel, target, kinds, prefectures, sites, quiet_hours,
    enabled, created_by, created_at, updated_at";

fn endpoint(r: &tokio_postgres::Row) -> Endpoint {
    Endpoint {
        id: r.get("id"),
        name: r.get("name"),
        channel: r.get("channel"),
        target: r.get("target"),
        kinds: r.get("kinds"),
        prefectures: r.get("prefectures"),
        sites: r.get("sites"),
        quiet_hours: r.get("quiet_hours"),
        enabled: r.get("enabled"),
        created_by: r.get("created_by"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

fn describe(spec: &EndpointSpec) -> String {
    let all = |list: &[String]| {
        if list.is_empty() {
            "all".to_string()
        } else {
            list.join(",")
        }
    };
    format!(
        "{} {:?} to {} (kinds {}; prefectures {}; sites {}; quiet hours {}; {})",
        spec.channel,
        spec.name,
        spec.target,
        all(&spec.kinds),
        all(&spec.prefectures),
        all(&spec.sites),
        if spec.quiet_hours { "on" } else { "off" },
        if spec.enabled { "enabled" } else { "disabled" }
    )
}

impl Store {
    /// Makes an endpoint (a webhook with its sealed secret); audited.
    pub async fn create_notification_endpoint(
        &self,
        spec: &EndpointSpec,
        secret_sealed: Option<&[u8]>,
        by: &str,
    ) -> Result<Endpoint, StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO notification_endpoints (name, channel, target, kinds, prefectures,
                         sites, quiet_hours, enabled, secret_sealed, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     RETURNING {ENDPOINT_COLUMNS}"
                ),
                &[
                    &spec.name,
                    &spec.channel,
                    &spec.target,
                    &spec.kinds,
                    &spec.prefectures,
                    &spec.sites,
                    &spec.quiet_hours,
                    &spec.enabled,
                    &secret_sealed,
                    &by,
                ],
            )
            .await?;
        let made = endpoint(&row);
        audit_admin(
            &tx,
            None,
            &format!(
                "notification endpoint {} created by {by}: {}",
                made.id,
                describe(spec)
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(made)
    }

    /// Changes an endpoint (not its channel, nor its secret); audited. `None`: no such endpoint.
    pub async fn update_notification_endpoint(
        &self,
        id: i64,
        spec: &EndpointSpec,
        by: &str,
    ) -> Result<Option<Endpoint>, StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let Some(current) = tx
            .query_opt(
                "SELECT channel FROM notification_endpoints WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
        else {
            return Ok(None);
        };
        let channel: String = current.get(0);
        if channel != spec.channel {
            return Err(StoreError::BadQuery(format!(
                "通知先 {id} の種類（{channel}）は変更できません。新しい通知先を作ってください / \
                 endpoint {id} is a {channel} endpoint; its channel cannot change: make a new endpoint"
            )));
        }
        let row = tx
            .query_one(
                &format!(
                    "UPDATE notification_endpoints SET name = $2, target = $3, kinds = $4,
                         prefectures = $5, sites = $6, quiet_hours = $7, enabled = $8,
                         updated_at = now()
                     WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
                ),
                &[
                    &id,
                    &spec.name,
                    &spec.target,
                    &spec.kinds,
                    &spec.prefectures,
                    &spec.sites,
                    &spec.quiet_hours,
                    &spec.enabled,
                ],
            )
            .await?;
        audit_admin(
            &tx,
            None,
            &format!(
                "notification endpoint {id} changed by {by}: {}",
                describe(spec)
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(endpoint(&row)))
    }

    pub async fn notification_endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        let client = self.conn().await?;
        let rows = client
            .query(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM notification_endpoints ORDER BY id"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(endpoint).collect())
    }

    pub async fn notification_endpoint(&self, id: i64) -> Result<Option<Endpoint>, StoreError> {
        let client = self.conn().await?;
        let row = client
            .query_opt(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM notification_endpoints WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(endpoint))
    }

    /// Queues a test notification to one endpoint (enabled or not: testing comes before
    /// enabling); audited. `None`: no such endpoint.
    pub async fn enqueue_test_notification(
        &self,
        id: i64,
        by: &str,
    ) -> Result<Option<i64>, StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "INSERT INTO notifications (endpoint_id, alert_key, source, event, kind, site_code,
                     detail, occurred_at)
                 SELECT id, 'test:' || gen_random_uuid(), 'test', 'test', 'test', '0000000000',
                        'テスト配信です / a test delivery from onshi-fleet central', now()
                 FROM notification_endpoints WHERE id = $1
                 RETURNING id",
                &[&id],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let notification: i64 = row.get("id");
        audit_admin(
            &tx,
            None,
            &format!("test notification {notification} to endpoint {id} queued by {by}"),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(notification))
    }

    /// The delivery log, newest first (one endpoint's, or every endpoint's).
    pub async fn notification_deliveries(
        &self,
        endpoint: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let client = self.conn().await?;
        let rows = client
            .query(
                "SELECT id, endpoint_id, alert_key, event, kind, site_code, attempts, created_at,
                        last_attempt_at, last_error, held_since, delivered_at
                 FROM notifications WHERE ($1::bigint IS NULL OR endpoint_id = $1)
                 ORDER BY id DESC LIMIT $2",
                &[&endpoint, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let delivered_at: Option<OffsetDateTime> = r.get("delivered_at");
                let held_since: Option<OffsetDateTime> = r.get("held_since");
                let attempts: i32 = r.get("attempts");
                let last_error: Option<String> = r.get("last_error");
                let status = if delivered_at.is_some() {
                    "delivered"
                } else if held_since.is_some() {
                    "held"
                } else if last_error.is_some() {
                    "retrying"
                } else {
                    "pending"
                };
                Delivery {
                    id: r.get("id"),
                    endpoint_id: r.get("endpoint_id"),
                    alert_key: r.get("alert_key"),
                    event: r.get("event"),
                    kind: r.get("kind"),
                    site_code: r.get("site_code"),
                    status,
                    attempts,
                    created_at: r.get("created_at"),
                    last_attempt_at: r.get("last_attempt_at"),
                    last_error,
                    held_since,
                    delivered_at,
                }
            })
            .collect())
    }

    /// Claims due notifications (see the module documentation). Those quiet hours hold (the
    /// endpoint keeps quiet hours, the kind is not urgent, the site is closed at `now`) are
    /// set aside until `hold_recheck` later, without counting an attempt.
    pub async fn claim_notifications(
        &self,
        now: OffsetDateTime,
        claim: Claim<'_>,
    ) -> Result<Claimed, StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT n.id, n.endpoint_id, e.channel, e.target, e.secret_sealed, e.quiet_hours,
                        n.source, n.alert_id, n.event, n.kind, n.site_code, n.detail,
                        n.occurred_at, n.opened_at, n.resolved_at, n.attempts
                 FROM notifications n JOIN notification_endpoints e ON e.id = n.endpoint_id
                 WHERE n.delivered_at IS NULL AND n.next_attempt_at <= now()
                   AND (e.enabled OR n.source = 'test')
                   AND NOT EXISTS (SELECT 1 FROM notifications p
                                   WHERE p.endpoint_id = n.endpoint_id
                                     AND p.alert_key = n.alert_key
                                     AND p.id < n.id AND p.delivered_at IS NULL)
                 ORDER BY n.id LIMIT $1
                 FOR UPDATE OF n SKIP LOCKED",
                &[&claim.limit],
            )
            .await?;
        if rows.is_empty() {
            return Ok(Claimed::default());
        }
        // Quiet hours may hold a row when its endpoint keeps them and its kind is not urgent
        // (a test is never held): then it waits while its site is closed.
        let quiet = |r: &tokio_postgres::Row| {
            r.get::<_, bool>("quiet_hours")
                && r.get::<_, String>("source") != "test"
                && !claim.urgent.contains(&r.get::<_, String>("kind").as_str())
        };
        let quiet_sites: Vec<String> = rows
            .iter()
            .filter(|r| quiet(r))
            .map(|r| r.get("site_code"))
            .collect();
        let open = sites_open(&tx, &quiet_sites, now).await?;
        let (mut held, mut claimed) = (Vec::new(), Vec::new());
        for r in &rows {
            let site: String = r.get("site_code");
            if quiet(r) && open.get(&site) == Some(&false) {
                held.push(r.get::<_, i64>("id"));
                continue;
            }
            claimed.push(Due {
                id: r.get("id"),
                endpoint_id: r.get("endpoint_id"),
                channel: r.get("channel"),
                target: r.get("target"),
                secret_sealed: r.get("secret_sealed"),
                source: r.get("source"),
                alert_id: r.get("alert_id"),
                event: r.get("event"),
                kind: r.get("kind"),
                site_code: site,
                detail: r.get("detail"),
                occurred_at: r.get("occurred_at"),
                opened_at: r.get("opened_at"),
                resolved_at: r.get("resolved_at"),
                attempts: r.get::<_, i32>("attempts") + 1,
            });
        }
        if !held.is_empty() {
            tx.execute(
                "UPDATE notifications SET held_since = coalesce(held_since, now()),
                     next_attempt_at = now() + $2::float8 * interval '1 second'
                 WHERE id = ANY($1)",
                &[&held, &claim.hold_recheck.as_secs_f64()],
            )
            .await?;
        }
        let ids: Vec<i64> = claimed.iter().map(|d| d.id).collect();
        tx.execute(
            "UPDATE notifications SET attempts = attempts + 1, last_attempt_at = now(),
                 next_attempt_at = now() + $2::float8 * interval '1 second'
             WHERE id = ANY($1)",
            &[&ids, &claim.lease.as_secs_f64()],
        )
        .await?;
        tx.commit().await?;
        Ok(Claimed {
            due: claimed,
            held: held.len(),
        })
    }

    /// Forgets delivered notifications older than `kept` (the delivery log's horizon); the
    /// undelivered stay whatever their age.
    pub async fn forget_delivered_notifications(&self, kept: Duration) -> Result<u64, StoreError> {
        let client = self.conn().await?;
        Ok(client
            .execute(
                "DELETE FROM notifications
                 WHERE delivered_at < now() - $1::float8 * interval '1 second'",
                &[&kept.as_secs_f64()],
            )
            .await?)
    }

    /// Records a delivery's outcome: delivered, or the error and when to try again.
    pub async fn record_delivery(
        &self,
        id: i64,
        outcome: Result<(), String>,
        retry_in: Duration,
    ) -> Result<(), StoreError> {
        let client = self.conn().await?;
        match outcome {
            Ok(()) => {
                client
                    .execute(
                        "UPDATE notifications SET delivered_at = now(), last_error = NULL
                         WHERE id = $1 AND delivered_at IS NULL",
                        &[&id],
                    )
                    .await?
            }
            Err(error) => {
                client
                    .execute(
                        "UPDATE notifications SET last_error = $2,
                             next_attempt_at = now() + $3::float8 * interval '1 second'
                         WHERE id = $1 AND delivered_at IS NULL",
                        &[&id, &error, &retry_in.as_secs_f64()],
                    )
                    .await?
            }
        };
        Ok(())
    }
}

/// Whether each of `sites` is open at `now` under the hours that apply to it.
async fn sites_open(
    tx: &super::Tx<'_>,
    sites: &[String],
    now: OffsetDateTime,
) -> Result<HashMap<String, bool>, StoreError> {
    let mut open = HashMap::new();
    if sites.is_empty() {
        return Ok(open);
    }
    let rows = tx
        .query(
            "SELECT scope, hours FROM opening_hours WHERE scope = ANY($1) OR scope = '*'",
            &[&sites],
        )
        .await?;
    let mut chain = None;
    let mut own = HashMap::new();
    for row in rows {
        let scope: String = row.get("scope");
        let hours = super::availability::hours_from(Some(row.get("hours")))?;
        if scope == "*" {
            chain = Some(hours);
        } else {
            own.insert(scope, hours);
        }
    }
    let chain = chain.unwrap_or_else(OpeningHours::chain_default);
    for site in sites {
        let hours = own.get(site).unwrap_or(&chain);
        // A time the calendar does not cover counts as open: better a notice at night than
        // one held for ever.
        open.insert(site.clone(), hours.is_open(now).unwrap_or(true));
    }
    Ok(open)
}
