//! `/alerts`: the alerts of the sites in scope, open, acknowledged or resolved, and
//! acknowledging one (`POST /alerts/{id}/acknowledge` from the page's form; the JSON API's
//! twin calls the same `service::alerts::acknowledge`).

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::format::{tokyo, tokyo_or_dash};
use super::layout::{Nav, csrf_field, page};
use crate::error::HttpError;
use crate::state::ApiState;
use central_core::auth::{Permission, Principal};
use central_core::error::ServiceError;
use central_core::notify::kind_label;
use central_store::{Alert, AlertState};

/// Alerts the list shows at most, newest first.
const ALERTS_SHOWN: i64 = 500;

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    state: Option<String>,
}

fn state_label(state: AlertState) -> (&'static str, &'static str) {
    match state {
        AlertState::Open => ("未確認", "Open"),
        AlertState::Acknowledged => ("確認済み", "Acknowledged"),
        AlertState::Resolved => ("解決済み", "Resolved"),
    }
}

fn table(principal: &Principal, state: AlertState, alerts: &[Alert]) -> Markup {
    let may_act = principal.may(Permission::ActOnSite) && state == AlertState::Open;
    html! {
        table #alerts data-state=(state.as_str()) {
            thead {
                tr {
                    th { "種類 " span.en { "Kind" } }
                    th { "施設 " span.en { "Site" } }
                    th { "発生 " span.en { "Opened" } }
                    th { "内容 " span.en { "Detail" } }
                    th { "確認 " span.en { "Acknowledged" } }
                    @if state == AlertState::Resolved { th { "解決 " span.en { "Resolved" } } }
                    @if may_act { th {} }
                }
            }
            tbody {
                @for alert in alerts {
                    @let (ja, en) = kind_label(&alert.kind);
                    tr data-alert=(alert.id) data-kind=(alert.kind) data-site=(alert.site_code) {
                        td { (ja) " " span.en { (en) } }
                        td { a href=(format!("/sites/{}", alert.site_code)) { (alert.site_code) } }
                        td { (tokyo(alert.opened_at)) }
                        td { (alert.detail) }
                        td.acknowledged {
                            @if let Some(by) = &alert.acknowledged_by {
                                (by) " · " (tokyo_or_dash(alert.acknowledged_at))
                            } @else { "—" }
                        }
                        @if state == AlertState::Resolved { td { (tokyo_or_dash(alert.resolved_at)) } }
                        @if may_act {
                            td {
                                form.inline method="post" action=(format!("/alerts/{}/acknowledge", alert.id)) {
                                    (csrf_field(principal))
                                    button.acknowledge type="submit" { "確認 / Acknowledge" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if alerts.is_empty() {
            p #no-alerts { "該当するアラートはありません。 " span.en { "No alerts." } }
        }
        @if alerts.len() as i64 >= ALERTS_SHOWN {
            p.en { "新しい順に" (ALERTS_SHOWN) "件まで表示 / the newest " (ALERTS_SHOWN) " are shown" }
        }
    }
}

fn tabs(current: AlertState) -> Markup {
    html! {
        nav.tabs #alert-states {
            @for state in AlertState::ALL {
                @let (ja, en) = state_label(state);
                a href=(format!("/alerts?state={}", state.as_str())) data-state=(state.as_str())
                    class=[(state == current).then_some("active")] {
                    (ja) " " span.en { (en) }
                }
                " "
            }
        }
    }
}

pub(crate) async fn list_handler(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    let title = "アラート / Alerts";
    let wanted = params
        .state
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let Some(alert_state) = wanted.map_or(Some(AlertState::Open), AlertState::parse) else {
        let body = html! {
            p.error #filter-error role="alert" {
                "状態は open・acknowledged・resolved のいずれかです / state is one of open, \
                 acknowledged, resolved, not " (format!("{:?}", wanted.unwrap_or_default()))
            }
            (tabs(AlertState::Open))
        };
        return Ok((
            StatusCode::BAD_REQUEST,
            page(&principal, Nav::Alerts, title, body),
        )
            .into_response());
    };
    let alerts = central_core::service::alerts::list(
        &state.store,
        &principal.scope,
        &[alert_state],
        ALERTS_SHOWN,
    )
    .await?;
    let body = html! {
        (tabs(alert_state))
        (table(&principal, alert_state, &alerts))
    };
    Ok(page(&principal, Nav::Alerts, title, body).into_response())
}

/// The page's form: acknowledges, then back to the list.
pub(crate) async fn acknowledge_form(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    match central_core::service::alerts::acknowledge(&state.store, &principal, &id).await {
        Ok(_) => Ok(Redirect::to("/alerts").into_response()),
        Err(error @ (ServiceError::NotFound(_) | ServiceError::BadRequest(_))) => {
            let status = if matches!(error, ServiceError::NotFound(_)) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            let body = html! {
                p.error #acknowledge-error role="alert" { (error.to_string()) }
                a href="/alerts" { "アラート一覧へ " span.en { "Back to the alerts" } }
            };
            Ok((
                status,
                page(&principal, Nav::Alerts, "アラート / Alerts", body),
            )
                .into_response())
        }
        Err(error) => Err(error.into()),
    }
}
