//! Agent version rollouts, for the JSON API (`/api/v1/rollouts…`) and the dashboard
//! (`/rollout`, `/rollouts/{id}`): listing within the principal's scope, and acting on one.

use crate::auth::SiteScope;
use crate::error::ServiceError;
use central_store::dashboard_rollout::{RolloutDetail, RolloutSummary};
use central_store::rollouts::{Action, RolloutView};
use central_store::{Store, StoreError};

/// Rollouts, newest first (at most 50), with their sites in `scope` only: an area manager sees
/// the rollouts that touch their sites and none of the others' sites.
pub async fn list(store: &Store, scope: &SiteScope) -> Result<Vec<RolloutView>, ServiceError> {
    Ok(store.rollouts(None, scope).await?)
}

/// One rollout with its sites in `scope`; 404 when there is none (or none the scope sees).
pub async fn one(store: &Store, scope: &SiteScope, id: i64) -> Result<RolloutView, ServiceError> {
    store
        .rollouts(Some(id), scope)
        .await?
        .pop()
        .ok_or_else(|| ServiceError::NotFound(format!("there is no rollout {id}")))
}

/// The latest `limit` rollouts, newest first, with their sites in `scope` counted by state
/// (the dashboard's rollout page).
pub async fn summaries(
    store: &Store,
    scope: &SiteScope,
    limit: i64,
) -> Result<Vec<RolloutSummary>, ServiceError> {
    Ok(store.rollout_summaries(scope, limit).await?)
}

/// One rollout with its sites in `scope`, its waves and every transition (the dashboard's
/// rollout detail); 404 when there is none (or none the scope sees).
pub async fn detail(
    store: &Store,
    scope: &SiteScope,
    id: i64,
) -> Result<RolloutDetail, ServiceError> {
    store
        .rollout_detail(id, scope)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("there is no rollout {id}")))
}

/// `action` (pause, resume or rollback) on rollout `id`, audited as `by`: 404 for an unknown
/// action or rollout, 400 when the rollout's state does not allow it.
pub async fn act(store: &Store, id: i64, action: &str, by: &str) -> Result<(), ServiceError> {
    let action = Action::parse(action).ok_or_else(|| {
        ServiceError::NotFound(format!(
            "{action:?} is not an action on a rollout: pause, resume or rollback"
        ))
    })?;
    match store.act_on_rollout(id, action, by).await {
        Err(StoreError::BadQuery(message)) if message.starts_with("there is no rollout") => {
            Err(ServiceError::NotFound(message))
        }
        other => Ok(other?),
    }
}
