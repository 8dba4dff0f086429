//! The sign-in page, signing in and out.

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::error::HttpError;
use crate::error::http_status;
use crate::middleware::{cleared_cookie, client_address, new_session_cookie, session_cookie};
use crate::state::ApiState;
use central_core::auth::Principal;
use central_core::auth::session::{sign_in, sign_out};
use central_core::error::ServiceError;

#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignInForm {
    login: String,
    password: String,
    next: Option<String>,
}

/// Only a path of this site: `next=//evil.example` or an absolute URL must not send a person
/// who just signed in elsewhere. The form and query are decoded already, and browsers drop
/// tabs and line breaks from a `Location` (`/%09/evil.example` arrives as `/<tab>/evil.example`
/// and is followed as `//evil.example`) and read `\` as `/`: so a path is taken only when it
/// is printable ASCII without spaces or backslashes, starts with one `/` and not two.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            path
        }
        _ => "/",
    }
}

fn sign_in_page(next: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="ja" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "サインイン / Sign in — onshi-fleet" }
                link rel="stylesheet" href="/static/app.css";
            }
            body {
                main.login {
                    h1 { "オンライン資格確認 フリート管理" br; span.en { "onshi-fleet — sign in" } }
                    @if let Some(error) = error {
                        p.error #sign-in-error role="alert" { (error) }
                    }
                    form method="post" action="/login" {
                        input type="hidden" name="next" value=(next);
                        label for="login" { "ログインID " span.en { "Login" } }
                        input #login name="login" autocomplete="username" required autofocus;
                        label for="password" { "パスワード " span.en { "Password" } }
                        input #password name="password" type="password"
                            autocomplete="current-password" required;
                        button #sign-in type="submit" { "サインイン / Sign in" }
                    }
                }
            }
        }
    }
}

pub async fn page(Query(query): Query<Next>) -> Markup {
    sign_in_page(local_path(query.next.as_deref()), None)
}

/// A sign-in form posted from another origin is refused (login CSRF: being signed in to
/// someone else's account without noticing).
/// The host comes from `Host` (HTTP/1.1) or the request's authority (HTTP/2).
fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    origin_host.is_some() && origin_host == host
}

/// The largest sign-in form read (login, password, next and their names, encoded); axum's
/// default of 2 MB would let anyone without an account post megabytes.
pub(crate) const FORM_LIMIT_BYTES: usize = 4 * 1024;

pub(crate) async fn submit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    request_extensions: axum::http::Extensions,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "送信された内容が大きすぎます: the sign-in form is larger than {FORM_LIMIT_BYTES} bytes"
                )
            } else {
                "サインインのフォームを読み取れません: the sign-in form could not be read (login and password are required)"
                    .to_string()
            };
            return (status, sign_in_page("/", Some(&message))).into_response();
        }
    };
    let next = local_path(form.next.as_deref()).to_string();
    if !same_origin(&headers, &uri) {
        return (
            StatusCode::FORBIDDEN,
            sign_in_page(&next, Some(&ServiceError::Csrf.to_string())),
        )
            .into_response();
    }
    let from = client_address(&request_extensions);
    match sign_in(
        &state.store,
        &state.limiter,
        &form.login,
        &form.password,
        from,
    )
    .await
    {
        Ok(session) => {
            let mut response = Redirect::to(&next).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, new_session_cookie(&session.token));
            response
        }
        Err(error) => {
            let status = match &error {
                ServiceError::RateLimited { .. }
                | ServiceError::Busy { .. }
                | ServiceError::Unauthenticated(_)
                | ServiceError::BadRequest(_) => http_status(&error),
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            let mut response =
                (status, sign_in_page(&next, Some(&error.to_string()))).into_response();
            if let Some(secs) = error.retry_after_secs() {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    }
}

pub(crate) async fn logout(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    if let Some(token) = session_cookie(&headers) {
        sign_out(&state.store, token, &principal.name).await?;
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cleared_cookie());
    Ok(response)
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/app.css"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/sites?q=1")), "/sites?q=1");
        for hostile in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "sites",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n//evil.example",
            "/ /evil.example",
            "/\u{3000}/evil.example",
        ] {
            assert_eq!(local_path(Some(hostile)), "/", "{hostile}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn a_form_from_another_origin_is_not_same_origin() {
        let mut headers = HeaderMap::new();
        let http1: axum::http::Uri = "/login".parse().unwrap();
        headers.insert(header::HOST, "central.example:8443".parse().unwrap());
        assert!(same_origin(&headers, &http1));
        headers.insert(
            header::ORIGIN,
            "https://central.example:8443".parse().unwrap(),
        );
        assert!(same_origin(&headers, &http1));
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&headers, &http1));
        let mut h2 = HeaderMap::new();
        h2.insert(
            header::ORIGIN,
            "https://central.example:8443".parse().unwrap(),
        );
        let authority: axum::http::Uri = "https://central.example:8443/login".parse().unwrap();
        assert!(same_origin(&h2, &authority));
    }
}
