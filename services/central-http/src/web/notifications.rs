//! `/notifications` (chain administrators): the endpoints alerts are sent to, a form to make
//! one (a webhook's secret is shown on the answer to that form, once) and, at
//! `/notifications/{id}`, to change one, enable/disable and test buttons, and the delivery log. The same capabilities as the JSON API
//! (`central_core::notify::endpoint`), so both say the same thing.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::format::{tokyo, tokyo_or_dash};
use super::layout::{Nav, csrf_field, page};
use crate::error::HttpError;
use crate::state::ApiState;
use central_core::auth::Principal;
use central_core::error::ServiceError;
use central_core::notify::endpoint::{self, EndpointRequest};
use central_core::notify::{KINDS, URGENT_KINDS, event_label, kind_label};
use central_store::notifications::Endpoint;

const TITLE: &str = "通知 / Notifications";
/// Deliveries the page shows.
const DELIVERIES_SHOWN: i64 = 50;

fn list_or_all(list: &[String]) -> String {
    if list.is_empty() {
        "すべて / all".to_string()
    } else {
        list.join(", ")
    }
}

async fn body(
    state: &ApiState,
    principal: &Principal,
    notice: Markup,
) -> Result<Markup, HttpError> {
    let endpoints = state.store.notification_endpoints().await?;
    let deliveries = state
        .store
        .notification_deliveries(None, DELIVERIES_SHOWN)
        .await?;
    Ok(html! {
        (notice)
        h2 { "通知先 " span.en { "Endpoints" } }
        table #endpoints {
            thead { tr {
                th { "名前 " span.en { "Name" } }
                th { "種類 " span.en { "Channel" } }
                th { "宛先 " span.en { "Target" } }
                th { "アラート " span.en { "Kinds" } }
                th { "範囲 " span.en { "Scope" } }
                th { "夜間・休業時の保留 " span.en { "Quiet hours" } }
                th { "状態 " span.en { "State" } }
                th {}
            } }
            tbody {
                @for e in &endpoints {
                    tr data-endpoint=(e.id) {
                        td { a href=(format!("/notifications/{}", e.id)) { (e.name) } }
                        td { (e.channel) }
                        td { code { (e.target) } }
                        td { (list_or_all(&e.kinds)) }
                        td { (list_or_all(&[e.prefectures.clone(), e.sites.clone()].concat())) }
                        td { @if e.quiet_hours { "保留する / held" } @else { "すぐ送る / sent at once" } }
                        td { @if e.enabled { "有効 / enabled" } @else { "無効 / disabled" } }
                        td {
                            form.inline method="post" action=(format!("/notifications/{}/test", e.id)) {
                                (csrf_field(principal))
                                button.test type="submit" { "テスト配信 / Test delivery" }
                            }
                            @let (action, label) = if e.enabled { ("disable", "無効にする / Disable") } else { ("enable", "有効にする / Enable") };
                            form.inline method="post" action=(format!("/notifications/{}/{action}", e.id)) {
                                (csrf_field(principal))
                                button type="submit" { (label) }
                            }
                        }
                    }
                }
            }
        }
        @if endpoints.is_empty() {
            p #no-endpoints { "通知先はまだありません。 " span.en { "No endpoints yet." } }
        }
        h2 { "通知先を追加 " span.en { "Add an endpoint" } }
        (endpoint_form(principal, None))
        h2 { "配信履歴 " span.en { "Delivery log" } }
        table #deliveries {
            thead { tr {
                th { "#" }
                th { "通知先 " span.en { "Endpoint" } }
                th { "内容 " span.en { "What" } }
                th { "施設 " span.en { "Site" } }
                th { "状態 " span.en { "Status" } }
                th { "試行 " span.en { "Attempts" } }
                th { "最終試行 " span.en { "Last attempt" } }
                th { "最後のエラー " span.en { "Last error" } }
                th { "配信 " span.en { "Delivered" } }
            } }
            tbody {
                @for d in &deliveries {
                    @let (kind_ja, kind_en) = kind_label(&d.kind);
                    @let (event_ja, event_en) = event_label(&d.event);
                    tr data-delivery=(d.id) data-status=(d.status) {
                        td { (d.id) }
                        td { (d.endpoint_id) }
                        td { (kind_ja) "・" (event_ja) " " span.en { (kind_en) ", " (event_en) } }
                        td { (d.site_code) }
                        td { (d.status) }
                        td { (d.attempts) }
                        td { (tokyo_or_dash(d.last_attempt_at)) }
                        td { (d.last_error.as_deref().unwrap_or("—")) }
                        td { (tokyo_or_dash(d.delivered_at)) }
                    }
                }
            }
        }
        @if let Some(first) = deliveries.last() {
            p.en { (deliveries.len()) " 件（" (tokyo(first.created_at)) " から） / the newest " (deliveries.len()) }
        }
    })
}

/// The form that adds an endpoint, or changes `current` (its channel stays, its secret too).
fn endpoint_form(principal: &Principal, current: Option<&Endpoint>) -> Markup {
    let action = current.map_or("/notifications".to_string(), |e| {
        format!("/notifications/{}", e.id)
    });
    let value = |pick: fn(&Endpoint) -> String| current.map(pick).unwrap_or_default();
    let kinds: Vec<String> = current.map(|e| e.kinds.clone()).unwrap_or_default();
    let quiet = current.is_none_or(|e| e.quiet_hours);
    html! {
        form #endpoint-form method="post" action=(action) {
            (csrf_field(principal))
            label { "名前 " span.en { "Name" } " " input name="name" required value=(value(|e| e.name.clone())); }
            @if let Some(e) = current {
                input type="hidden" name="channel" value=(e.channel);
                p { "種類 " span.en { "Channel" } ": " (e.channel) }
            } @else {
                label { "種類 " span.en { "Channel" } " "
                    select name="channel" {
                        option value="webhook" { "Webhook" }
                        option value="mail" { "メール / Mail" }
                    }
                }
            }
            label { "宛先（URL またはメールアドレス） " span.en { "Target (URL or mail address)" } " "
                input name="target" required value=(value(|e| e.target.clone())); }
            fieldset {
                legend { "アラートの種類（なし: すべて） " span.en { "Kinds (none: all)" } }
                @for kind in KINDS {
                    @let (ja, en) = kind_label(kind);
                    label { input type="checkbox" name="kinds" value=(kind) checked[kinds.iter().any(|k| k == kind)]; " " (ja) " " span.en { (en) } }
                }
            }
            label { "都道府県（カンマ区切り、例 13,27） " span.en { "Prefectures (comma-separated)" } " "
                input name="prefectures" value=(value(|e| e.prefectures.join(","))); }
            label { "施設コード（カンマ区切り） " span.en { "Sites (comma-separated)" } " "
                input name="sites" value=(value(|e| e.sites.join(","))); }
            label {
                input type="checkbox" name="quiet_hours" value="on" checked[quiet];
                " 営業時間外は保留（" (URGENT_KINDS.join("・")) " を除く） "
                span.en { "Hold outside opening hours (except " (URGENT_KINDS.join(", ")) ")" }
            }
            @if current.is_some() {
                button #save-endpoint type="submit" { "保存 / Save" }
            } @else {
                button #add-endpoint type="submit" { "追加 / Add" }
            }
        }
    }
}

pub(crate) async fn page_handler(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, HttpError> {
    let body = body(&state, &principal, html! {}).await?;
    Ok(page(&principal, Nav::Notifications, TITLE, body).into_response())
}

/// The values of every `name` field (checkboxes), and a comma-separated field as a list.
fn fields(form: &[u8], name: &str) -> Vec<String> {
    form_urlencoded::parse(form)
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .collect()
}

fn comma_list(form: &[u8], name: &str) -> Vec<String> {
    super::form::field(form, name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The endpoint a form asks for.
fn request_from(form: &[u8], enabled: bool) -> EndpointRequest {
    EndpointRequest {
        name: super::form::field(form, "name").unwrap_or_default(),
        channel: super::form::field(form, "channel").unwrap_or_default(),
        target: super::form::field(form, "target").unwrap_or_default(),
        kinds: fields(form, "kinds"),
        prefectures: comma_list(form, "prefectures"),
        sites: comma_list(form, "sites"),
        quiet_hours: super::form::field(form, "quiet_hours").is_some(),
        enabled,
    }
}

/// The form: makes the endpoint and answers with the page, a webhook's secret shown once.
pub(crate) async fn create_form(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    form: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let request = request_from(&form, true);
    let (status, notice) = match endpoint::create(
        &state.store,
        state.notification_key.as_deref(),
        &request,
        &principal,
    )
    .await
    {
        Ok((made, secret)) => (
            StatusCode::CREATED,
            html! {
                div.notice #endpoint-created role="status" {
                    p { "通知先 " (made.id) " を追加しました。 " span.en { "Endpoint " (made.id) " added." } }
                    @if let Some(secret) = secret {
                        p {
                            "署名用シークレット（この画面でのみ表示されます。今すぐ受信側に設定してください） "
                            span.en { "Signing secret (shown only now; set it in the receiver): " }
                        }
                        p { code #endpoint-secret { (secret) } }
                    }
                }
            },
        ),
        Err(ServiceError::BadRequest(message)) => (
            StatusCode::BAD_REQUEST,
            html! { p.error #endpoint-error role="alert" { (message) } },
        ),
        Err(error) => return Err(error.into()),
    };
    let body = body(&state, &principal, notice).await?;
    Ok((status, page(&principal, Nav::Notifications, TITLE, body)).into_response())
}

fn endpoint_id(id: &str) -> Result<i64, ServiceError> {
    id.parse().map_err(|_| {
        ServiceError::BadRequest(format!(
            "通知先の番号が正しくありません / endpoint id {id:?} is not a number"
        ))
    })
}

/// One endpoint's page: its form, prefilled.
pub(crate) async fn edit_page(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let id = endpoint_id(&id)?;
    let current = state
        .store
        .notification_endpoint(id)
        .await?
        .ok_or_else(|| {
            ServiceError::NotFound(format!(
                "通知先 {id} はありません / no notification endpoint {id}"
            ))
        })?;
    let body = html! {
        h2 { "通知先 " (id) " を変更 " span.en { "Change endpoint " (id) } }
        (endpoint_form(&principal, Some(&current)))
        p { a href="/notifications" { "通知の一覧へ " span.en { "Back to notifications" } } }
    };
    Ok(page(&principal, Nav::Notifications, TITLE, body).into_response())
}

/// The edit form: changes the endpoint (keeping whether it is enabled), then back to the list;
/// a mistake is named on the form's page and changes nothing.
pub(crate) async fn edit_form(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    form: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let id = endpoint_id(&id)?;
    let enabled = state
        .store
        .notification_endpoint(id)
        .await?
        .is_none_or(|e| e.enabled);
    match endpoint::update(&state.store, id, &request_from(&form, enabled), &principal).await {
        Ok(_) => Ok(Redirect::to("/notifications").into_response()),
        Err(ServiceError::BadRequest(message)) => {
            let body = html! {
                p.error #endpoint-error role="alert" { (message) }
                p { a href=(format!("/notifications/{id}")) { "戻る " span.en { "Back" } } }
            };
            Ok((
                StatusCode::BAD_REQUEST,
                page(&principal, Nav::Notifications, TITLE, body),
            )
                .into_response())
        }
        Err(error) => Err(error.into()),
    }
}

/// Test, enable or disable, then back to the page.
pub(crate) async fn act_form(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let id = endpoint_id(&id)?;
    match action.as_str() {
        "test" => {
            endpoint::test(&state.store, id, &principal).await?;
        }
        "enable" | "disable" => {
            endpoint::set_enabled(&state.store, id, action == "enable", &principal).await?;
        }
        other => {
            return Err(ServiceError::NotFound(format!(
                "通知先の操作は test・enable・disable です / no action {other:?}: test, enable or disable"
            )).into());
        }
    }
    Ok(Redirect::to("/notifications").into_response())
}
