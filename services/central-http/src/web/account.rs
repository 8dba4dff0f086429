//! `/account`: who is signed in (name, role, the sites they see) and their own API tokens:
//! make one (shown this once), revoke one. The same store calls as `/api/v1/tokens`; an
//! operator certificate has no account, and a token cannot make tokens (the API says why).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::format::{tokyo, tokyo_or_dash};
use super::layout::{Nav, csrf_field, page};
use crate::error::HttpError;
use crate::state::ApiState;
use central_core::auth::{Credential, Principal};
use central_core::error::ServiceError;
use central_store::accounts::ApiTokenSummary;
use central_store::scope::SiteScope;

const TITLE: &str = "アカウント / Account";

fn who(principal: &Principal) -> Markup {
    html! {
        dl #who {
            dt { "名前 " span.en { "Name" } } dd #account-name { (principal.display_name) }
            dt { "ログイン " span.en { "Login" } } dd #account-login { (principal.name) }
            dt { "役割 " span.en { "Role" } } dd #account-role { (principal.role.label()) }
            dt { "見える施設 " span.en { "Sites in view" } }
            dd #account-scope {
                @match &principal.scope {
                    SiteScope::All => { "チェーン全体 " span.en { "the whole chain" } }
                    SiteScope::Area { prefectures, sites } => {
                        @if !prefectures.is_empty() {
                            "都道府県 " span.en { "prefectures" } " " (prefectures.join(", "))
                        }
                        @if !prefectures.is_empty() && !sites.is_empty() { " · " }
                        @if !sites.is_empty() {
                            "施設 " span.en { "sites" } " " (sites.join(", "))
                        }
                    }
                }
            }
        }
    }
}

fn tokens(principal: &Principal, tokens: &[ApiTokenSummary]) -> Markup {
    html! {
        h2 { "APIトークン " span.en { "API tokens" } }
        @if tokens.is_empty() {
            p #no-tokens { "トークンはありません。 " span.en { "No tokens." } }
        } @else {
            table #tokens {
                thead { tr {
                    th { "用途 " span.en { "Label" } }
                    th { "作成 " span.en { "Made" } }
                    th { "期限 " span.en { "Expires" } }
                    th { "最終使用 " span.en { "Last used" } }
                    th {}
                } }
                tbody {
                    @for token in tokens {
                        tr data-token=(token.id) {
                            td { (token.label) }
                            td { (tokyo(token.created_at)) }
                            td { (tokyo(token.expires_at)) }
                            td { (tokyo_or_dash(token.last_used_at)) }
                            td {
                                @if token.revoked {
                                    "失効済み " span.en { "revoked" }
                                } @else {
                                    form.inline method="post" action=(format!("/account/tokens/{}/revoke", token.id)) {
                                        (csrf_field(principal))
                                        button.revoke type="submit" { "失効 / Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        form.stacked #new-token method="post" action="/account/tokens" {
            (csrf_field(principal))
            label for="label" { "用途 " span.en { "Label" } }
            input #label name="label" required maxlength="100";
            label for="days" { "有効日数 " span.en { "Days valid" } }
            input #days name="days" type="number" min="1" max="366" value="90";
            button type="submit" { "トークンを作る / Make a token" }
        }
    }
}

/// `GET /account`.
pub(crate) async fn page_handler(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, HttpError> {
    let body = match principal.credential {
        Credential::Certificate => html! {
            (who(&principal))
            p.en { "オペレーター証明書にはアカウントもトークンもありません。 / An operator certificate has no account and no tokens." }
        },
        _ => {
            let listed = state.store.api_tokens(&principal.name).await?;
            html! { (who(&principal)) (tokens(&principal, &listed)) }
        }
    };
    Ok(page(&principal, Nav::Account, TITLE, body).into_response())
}

/// `POST /account/tokens` from the page's form: the new token, shown this once.
pub(crate) async fn make_token(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    form: Bytes,
) -> Result<Response, HttpError> {
    if principal.credential != Credential::Session {
        return Err(ServiceError::Forbidden(
            "トークンはサインインして作成してください / sign in to make a token".into(),
        )
        .into());
    }
    let label = super::form::field(&form, "label").unwrap_or_default();
    let days = super::form::field(&form, "days")
        .and_then(|d| d.trim().parse::<i64>().ok())
        .unwrap_or(90);
    let made = central_core::auth::accounts::issue_token(
        &state.store,
        &principal.name,
        &label,
        days,
        &principal.audit_name(),
    )
    .await;
    let body = match made {
        Ok((_, token)) => html! {
            p #token-made {
                "トークンを作りました。この画面を閉じると二度と表示されません。 "
                span.en { "The token is made; it is shown this once." }
            }
            pre #new-token-value { (token) }
            a href="/account" { "アカウントへ " span.en { "Back to the account" } }
        },
        Err(ServiceError::BadRequest(message)) => {
            let body = html! {
                p.error #token-error role="alert" { (message) }
                a href="/account" { "アカウントへ " span.en { "Back to the account" } }
            };
            return Ok((
                StatusCode::BAD_REQUEST,
                page(&principal, Nav::Account, TITLE, body),
            )
                .into_response());
        }
        Err(error) => return Err(error.into()),
    };
    Ok(page(&principal, Nav::Account, TITLE, body).into_response())
}

/// `POST /account/tokens/{id}/revoke`: the caller's own token.
pub(crate) async fn revoke_token(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Response, HttpError> {
    state
        .store
        .revoke_api_token(id, Some(&principal.name), &principal.audit_name())
        .await?;
    Ok(Redirect::to("/account").into_response())
}
