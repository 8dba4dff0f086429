//! Alerts: acknowledging one, for the JSON API (`POST /api/v1/alerts/{id}/acknowledge`) and
//! the dashboard's form (`POST /alerts/{id}/acknowledge`) alike.

use crate::auth::Principal;
use crate::error::ServiceError;
use crate::store::Alert;
use crate::store::Store;
use crate::store::dashboard::Acknowledgement;

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
