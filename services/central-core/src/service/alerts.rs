//! Alerts, for the JSON API (`/api/v1/alerts…`) and the dashboard (`/alerts…`) alike: listing
//! them within the principal's scope, and acknowledging one; one `Alert` from both.

use crate::auth::{Principal, SiteScope};
use crate::error::ServiceError;
use central_store::{Acknowledgement, Alert, AlertState, Store};

/// Opened alerts of the sites in `scope` in any of `states`, newest first, at most `limit`
/// (1 to 1000).
pub async fn list(
    store: &Store,
    scope: &SiteScope,
    states: &[AlertState],
    limit: i64,
) -> Result<Vec<Alert>, ServiceError> {
    if !(1..=1000).contains(&limit) {
        return Err(ServiceError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    Ok(store.alerts(states, limit, scope).await?)
}

/// Acknowledges alert `id` (as sent) of a site in the principal's scope; the alert as it is
/// now. 404 for an alert the principal does not see, 400 for one already acknowledged or
/// resolved.
pub async fn acknowledge(
    store: &Store,
    principal: &Principal,
    id: &str,
) -> Result<Alert, ServiceError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ServiceError::BadRequest(format!("alert id {id:?} is not a number")))?;
    match store
        .acknowledge_alert(
            id,
            &principal.scope,
            &principal.name,
            &principal.audit_name(),
        )
        .await?
    {
        Acknowledgement::Done(alert) => Ok(alert),
        Acknowledgement::NotFound => Err(ServiceError::NotFound(format!(
            "no alert {id} among the sites you see (アラートが見つかりません)"
        ))),
        Acknowledgement::NotOpen(alert) => {
            Err(ServiceError::BadRequest(match alert.acknowledged_by {
                Some(by) => format!("alert {id} was already acknowledged by {by} (確認済みです)"),
                None => format!("alert {id} is resolved; nothing to acknowledge (解決済みです)"),
            }))
        }
    }
}
