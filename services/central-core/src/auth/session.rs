//! Signing in and out of the dashboard: password check under the rate limit, the session (its
//! cookie is the HTTP side's, `central_http`'s middleware), the audit row of each checked
//! attempt and the count of refused ones.

use std::net::IpAddr;
use std::time::Instant;

use time::OffsetDateTime;

use super::rate_limit::{Refusal, SignInLimiter};
use super::{password, secret};
use crate::error::ServiceError;
use central_store::Store;
use central_store::accounts::SignInEvent;

/// A session just started: its token, for the cookie the HTTP side sets.
pub struct NewSession {
    pub login: String,
    pub token: String,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// The longest login the sign-in page takes (accounts' logins are at most 64 characters, see
/// migration 0015); a longer one is refused before anything is counted or written.
pub(crate) const MAX_LOGIN_CHARS: usize = 64;

/// Checks `login` and `password` and starts a session. The attempt is counted by the limiter
/// before the password is checked, and checked only in one of the limiter's few slots. Every
/// checked attempt is audited (success, or failure: wrong login or password, disabled account,
/// one message for all, so the page does not tell which logins exist); attempts refused without
/// a check (rate limit, busy) are counted per key and window (`sign_in_refusals`), not written
/// one by one.
pub async fn sign_in(
    store: &Store,
    limiter: &SignInLimiter,
    login: &str,
    password: &str,
    from: IpAddr,
) -> Result<NewSession, ServiceError> {
    let login = login.trim().to_lowercase();
    if login.is_empty() || login.chars().count() > MAX_LOGIN_CHARS {
        return Err(ServiceError::BadRequest(format!(
            "ログインIDは1〜{MAX_LOGIN_CHARS}文字です: a login has 1 to {MAX_LOGIN_CHARS} characters"
        )));
    }
    if password.len() > password::MAX_LENGTH {
        return Err(ServiceError::BadRequest(format!(
            "パスワードが長すぎます: a password has at most {} bytes",
            password::MAX_LENGTH
        )));
    }
    let attempt = match limiter.begin(&login, from, Instant::now()) {
        Ok(attempt) => attempt,
        Err(refusal) => return Err(refused(store, limiter, refusal).await),
    };
    let slot = match limiter.check_slot(&attempt) {
        Ok(slot) => slot,
        Err(refusal) => {
            limiter.withdraw(attempt);
            return Err(refused(store, limiter, refusal).await);
        }
    };
    let account = store.account(&login).await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let candidate = password.to_string();
    // The slot moves into the blocking task: it is freed when the hash is done, even if the
    // client has gone away meanwhile. Hash even when there is no such account (against the
    // decoy, itself made in the task the first time), so timing does not tell logins apart.
    let matches = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let hash = match &stored {
            Some(hash) => hash.as_str(),
            None => password::decoy(),
        };
        password::verify(&candidate, hash)
    })
    .await
    .unwrap_or(false);
    let account = account.filter(|a| matches && !a.disabled);
    let Some(account) = account else {
        store
            .audit_sign_in(
                SignInEvent::Failed,
                &format!("failed sign-in as {login} from {from}"),
            )
            .await?;
        return Err(ServiceError::Unauthenticated(
            "ログインIDまたはパスワードが違います: the login or password is wrong".into(),
        ));
    };
    limiter.succeeded(attempt);
    let token = secret::random_token();
    store
        .create_session(
            &account.login,
            &secret::digest(&token),
            &secret::random_token(),
            OffsetDateTime::now_utc(),
        )
        .await?;
    store
        .audit_sign_in(
            SignInEvent::SignedIn,
            &format!("account {} signed in from {from}", account.login),
        )
        .await?;
    Ok(NewSession {
        login: account.login,
        token,
    })
}

/// Counts a refused attempt (one row per reason, key and window) and says when to try again.
async fn refused(store: &Store, limiter: &SignInLimiter, refusal: Refusal) -> ServiceError {
    let (reason, key, error) = match refusal {
        Refusal::TooMany { key, wait } => (
            "rate_limited",
            key,
            ServiceError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            },
        ),
        Refusal::Busy { address } => (
            "busy",
            format!("address:{address}"),
            ServiceError::Busy {
                retry_after_secs: BUSY_RETRY_SECS,
            },
        ),
    };
    if let Err(store_error) = store
        .count_refused_sign_in(reason, &key, limiter.window())
        .await
    {
        // The refusal stands either way; only its count is missing.
        tracing::warn!(error = %store_error, reason, "could not count a refused sign-in");
    }
    error
}

/// What a busy sign-in page asks to wait: a check takes a fraction of a second.
const BUSY_RETRY_SECS: u64 = 1;

/// Ends the session of `token` (audited as the account that held it).
pub async fn sign_out(store: &Store, token: &str, login: &str) -> Result<(), ServiceError> {
    store.end_session(&secret::digest(token)).await?;
    store
        .audit_sign_in(
            SignInEvent::SignedOut,
            &format!("account {login} signed out"),
        )
        .await?;
    Ok(())
}
