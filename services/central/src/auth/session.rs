//! Signing in and out of the dashboard: password check under the rate limit, the session and
//! its cookie, and the audit row of each attempt.

use std::net::IpAddr;
use std::time::Instant;

use axum::http::HeaderValue;
use time::OffsetDateTime;

use super::middleware::SESSION_COOKIE;
use super::rate_limit::SignInLimiter;
use super::{password, secret};
use crate::error::ServiceError;
use crate::store::Store;
use crate::store::accounts::{SESSION_LIFETIME, SignInEvent};

/// A session just started: the cookie to set.
#[derive(Debug)]
pub struct NewSession {
    pub login: String,
    pub cookie: HeaderValue,
}

/// The cookie that carries `token`: never readable by scripts, sent only over HTTPS and only
/// with requests from central's own pages.
fn session_cookie(token: &str, max_age_secs: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_secs}"
    ))
    .expect("a hex token makes a valid header")
}

/// The cookie that clears the session on sign-out.
pub fn cleared_cookie() -> HeaderValue {
    session_cookie("", 0)
}

/// Checks `login` and `password` and starts a session. Every attempt is audited: success,
/// failure (wrong login or password, disabled account: one message for all, so the page does
/// not tell which logins exist) and refusal by the rate limit.
pub async fn sign_in(
    store: &Store,
    limiter: &SignInLimiter,
    login: &str,
    password: &str,
    from: IpAddr,
) -> Result<NewSession, ServiceError> {
    let login = login.trim().to_lowercase();
    if let Err(wait) = limiter.check(&login, from, Instant::now()) {
        store
            .audit_sign_in(
                SignInEvent::Refused,
                &format!("sign-in as {login} from {from} refused: too many failures"),
            )
            .await?;
        return Err(ServiceError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let account = store.account(&login).await?;
    // Hash even when there is no such account, so timing does not tell logins apart.
    let stored = account
        .as_ref()
        .map_or(password::decoy(), |a| a.password_hash.as_str())
        .to_string();
    let candidate = password.to_string();
    let matches = tokio::task::spawn_blocking(move || password::verify(&candidate, &stored))
        .await
        .unwrap_or(false);
    let account = account.filter(|a| matches && !a.disabled);
    let Some(account) = account else {
        limiter.failed(&login, from, Instant::now());
        store
            .audit_sign_in(
                SignInEvent::Failed,
                &format!("failed sign-in as {login} from {from}"),
            )
            .await?;
        return Err(ServiceError::Unauthenticated(
            "the login or password is wrong (ログインIDまたはパスワードが違います)".into(),
        ));
    };
    limiter.succeeded(&login);
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
        cookie: session_cookie(&token, SESSION_LIFETIME.whole_seconds()),
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_http_only_secure_and_same_site_strict() {
        let cookie = session_cookie("abc", 60);
        let text = cookie.to_str().unwrap();
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(text.contains(attribute), "{text}");
        }
        assert!(cleared_cookie().to_str().unwrap().contains("Max-Age=0"));
    }
}
