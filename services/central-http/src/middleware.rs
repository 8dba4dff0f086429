//! Resolving the [`Principal`] of each request, checking CSRF on browser writes, and the
//! per-route checks of role and site scope.
//!
//! Order of credentials: a client certificate (the mTLS listener), then `Authorization: Bearer`
//! (an API token), then the session cookie. A request without any is answered 401 on the API
//! and redirected to the sign-in page elsewhere.

use std::net::{IpAddr, Ipv4Addr};

use axum::body::Body;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use fleet_tls::listen::{PeerAddress, PeerCertificates};
use onshi_domain::site::SiteCode;
use time::OffsetDateTime;

use crate::error::HttpError;
use central_core::auth::{Credential, Principal, Role, SiteScope, secret};
use central_core::error::ServiceError;
use central_store::Store;
use central_store::accounts::{AccountRow, SESSION_LIFETIME};

/// Where scripts put the CSRF token of a browser write.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// Where forms put it.
pub(crate) const CSRF_FIELD: &str = "_csrf";
/// A form body read to find its CSRF token is at most this large: the largest form, a rollout
/// naming every site of a 3,000-site chain, is about 40 KiB; anything far larger is refused (413)
/// before it is held in memory.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Whether `path` is answered as JSON (401) rather than with the sign-in page.
fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

/// The principal an account row stands for.
pub(crate) fn principal_of(
    account: AccountRow,
    credential: Credential,
    csrf_token: Option<String>,
) -> Result<Principal, HttpError> {
    let role = Role::parse(&account.role).map_err(|e| {
        ServiceError::Internal(central_store::StoreError::Corrupt(format!(
            "account {}: {e}",
            account.login
        )))
    })?;
    let scope = match role {
        Role::AreaManager => SiteScope::Area {
            prefectures: account.scope_prefectures,
            sites: account.scope_sites,
        },
        _ => SiteScope::All,
    };
    Ok(Principal {
        name: account.login,
        display_name: account.display_name,
        role,
        scope,
        credential,
        csrf_token,
    })
}

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "onshi_session";

/// The cookie that carries `token`: never readable by scripts, sent only over HTTPS and only
/// with requests from central's own pages.
fn cookie_header(token: &str, max_age_secs: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_secs}"
    ))
    .expect("a hex token makes a valid header")
}

/// The cookie of a session just started, for as long as a session lives.
pub(crate) fn new_session_cookie(token: &str) -> HeaderValue {
    cookie_header(token, SESSION_LIFETIME.whole_seconds())
}

/// The cookie that clears the session on sign-out.
pub(crate) fn cleared_cookie() -> HeaderValue {
    cookie_header("", 0)
}

/// The session token in the request's cookies, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The client's IP address (unspecified when the listener could not tell).
pub(crate) fn client_address(request_extensions: &axum::http::Extensions) -> IpAddr {
    request_extensions
        .get::<Option<PeerAddress>>()
        .copied()
        .flatten()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.0.ip())
}

/// `certificate`: the client certificate's leaf, when the listener asked for one.
async fn resolve(
    store: &Store,
    certificate: Option<&rustls::pki_types::CertificateDer<'static>>,
    headers: &HeaderMap,
) -> Result<Option<Principal>, HttpError> {
    if let Some(leaf) = certificate {
        let operator = fleet_tls::identity::operator_of(leaf)
            .map_err(|e| ServiceError::Forbidden(format!("this API is for operators: {e}")))?;
        return Ok(Some(Principal::operator(operator.to_string())));
    }
    let now = OffsetDateTime::now_utc();
    if let Some(token) = bearer(headers) {
        let account = store
            .api_token(&secret::digest(token), now)
            .await?
            .ok_or_else(|| {
                ServiceError::Unauthenticated("the API token is unknown, expired or revoked".into())
            })?;
        return principal_of(account, Credential::ApiToken, None).map(Some);
    }
    if let Some(token) = session_cookie(headers)
        && let Some(session) = store.session(&secret::digest(token), now).await?
    {
        return principal_of(
            session.account,
            Credential::Session,
            Some(session.csrf_token),
        )
        .map(Some);
    }
    Ok(None)
}

/// Puts the request's [`Principal`] in its extensions, or answers 401 / redirects to sign-in.
/// Browser writes must carry the session's CSRF token.
pub(crate) async fn authenticate(
    State(store): State<Store>,
    request: Request,
    next: Next,
) -> Result<Response, HttpError> {
    // The request itself is not Sync, so what `resolve` reads is taken out before it waits.
    let certificate = request
        .extensions()
        .get::<PeerCertificates>()
        .and_then(PeerCertificates::leaf)
        .cloned();
    let headers = request.headers().clone();
    let Some(principal) = resolve(&store, certificate.as_ref(), &headers).await? else {
        let path = request.uri().path();
        if is_api(path) {
            return Err(ServiceError::Unauthenticated(
                "sign in, or present an API token (Authorization: Bearer) or an operator \
                 certificate"
                    .into(),
            )
            .into());
        }
        let back = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let to = format!("/login?next={}", central_core::form::encode(&back));
        return Ok(Redirect::to(&to).into_response());
    };
    let request = match principal.credential {
        Credential::Session if !is_safe(request.method()) => {
            check_csrf(&principal, request).await?
        }
        Credential::Certificate if !is_safe(request.method()) => not_cross_site(request)?,
        _ => request,
    };
    tracing::debug!(role = principal.role.as_str(), path = %request.uri().path(), "request");
    let mut request = request;
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A browser holding an operator certificate presents it to any site's form or `fetch` too,
/// with no session and so no CSRF token. A write under a certificate must therefore be one a
/// page cannot send across sites without a CORS preflight (which central never grants): a
/// JSON request (`Content-Type: application/json`, even without a body). The dashboard's own
/// forms are for sessions, on the dashboard's listener.
fn not_cross_site(request: Request) -> Result<Request, HttpError> {
    if !is_api(request.uri().path()) {
        return Err(ServiceError::Forbidden(
            "ダッシュボードの操作はサインインして行ってください / the dashboard's forms need a \
             signed-in session (the dashboard's own listener), not an operator certificate"
                .into(),
        )
        .into());
    }
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if json {
        Ok(request)
    } else {
        Err(ServiceError::UnsupportedMediaType(
            "API への書き込みは Content-Type: application/json で送ってください / writes to the \
             API must be sent as Content-Type: application/json"
                .into(),
        )
        .into())
    }
}

/// Passes the request on when its CSRF token (header, or the form's `_csrf` field) is the
/// session's. The form body is read and put back.
async fn check_csrf(principal: &Principal, request: Request) -> Result<Request, HttpError> {
    let expected = principal.csrf_token.as_deref().ok_or(ServiceError::Csrf)?;
    if let Some(sent) = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return if secret::same(sent, expected) {
            Ok(request)
        } else {
            Err(ServiceError::Csrf.into())
        };
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(ServiceError::Csrf.into());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            ServiceError::TooLarge(format!("a form may be at most {MAX_FORM_BYTES} bytes"))
        })?;
    let sent = central_core::form::field(&bytes, CSRF_FIELD);
    if sent.is_some_and(|sent| secret::same(&sent, expected)) {
        Ok(Request::from_parts(parts, Body::from(bytes)))
    } else {
        Err(ServiceError::Csrf.into())
    }
}

/// A route layer: a `{site_code}` in the path must be a valid site code in the principal's
/// scope, checked before the handler queries anything about it.
pub(crate) async fn require_site_in_scope(
    params: RawPathParams,
    request: Request,
    next: Next,
) -> Result<Response, HttpError> {
    if let Some((_, code)) = params.iter().find(|(name, _)| *name == "site_code") {
        let site = SiteCode::parse(code)
            .map_err(|e| ServiceError::BadRequest(format!("site code {code:?}: {e}")))?;
        principal(&request)?.require_site(&site)?;
    }
    Ok(next.run(request).await)
}

fn principal(request: &Request) -> Result<&Principal, ServiceError> {
    request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| ServiceError::Unauthenticated("no principal on the request".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_http_only_secure_and_same_site_strict() {
        let cookie = cookie_header("abc", 60);
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

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "theme=dark; onshi_session=abc123; other=x".parse().unwrap(),
        );
        assert_eq!(session_cookie(&headers), Some("abc123"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn an_area_manager_account_gets_its_scope_and_others_the_chain() {
        let account = |role: &str| AccountRow {
            login: "k.sato".into(),
            display_name: "佐藤".into(),
            role: role.into(),
            scope_prefectures: vec!["13".into()],
            scope_sites: vec![],
            password_hash: String::new(),
            disabled: false,
        };
        let manager = principal_of(account("area_manager"), Credential::Session, None).unwrap();
        assert!(matches!(manager.scope, SiteScope::Area { .. }));
        let viewer = principal_of(account("viewer"), Credential::Session, None).unwrap();
        assert_eq!(viewer.scope, SiteScope::All);
        assert!(principal_of(account("root"), Credential::Session, None).is_err());
    }
}
