//! What every HTTP handler (JSON API and dashboard alike) is given: the store and the
//! replica-wide pieces a request may touch.

use std::sync::Arc;

use axum::extract::FromRef;
use onshi_domain::patient::PatientHashKey;

use central_core::auth::rate_limit::SignInLimiter;
use central_store::Store;

/// The handlers' shared state: the store, and the chain's patient hash key when central was
/// given one (auditors then search by insurance card details, hashed at query time).
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Store,
    pub patient_key: Option<Arc<PatientHashKey>>,
    /// The handshake's deny list: a revocation made here applies at once in this replica.
    pub deny: fleet_tls::deny::DenyList,
    /// Failed sign-ins, per login and per address.
    pub limiter: SignInLimiter,
    /// Seals the secrets of new webhook endpoints (`--notification-key-file`); without it,
    /// webhooks cannot be made.
    pub notification_key: Option<Arc<central_core::notify::key::NotificationKey>>,
}

impl ApiState {
    /// A state with the store only: no patient key, no notification key, default limits.
    pub fn new(store: Store) -> ApiState {
        ApiState {
            store,
            patient_key: None,
            deny: fleet_tls::deny::DenyList::default(),
            limiter: SignInLimiter::default(),
            notification_key: None,
        }
    }
}

impl FromRef<ApiState> for Store {
    fn from_ref(state: &ApiState) -> Store {
        state.store.clone()
    }
}
