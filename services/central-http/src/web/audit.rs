//! `/audit`: the auditor's search over the audit trail (who looked up whom, who saw which
//! history, under what consent or disaster window), its exports (`/audit/export.csv`, the
//! printable `/audit/report`, each one an `audit_export` security event) and where the chain
//! verifier stands on every stream.
//!
//! Patients appear only as their keyed hash. A search by insurance card details is hashed here
//! with the chain's key and answered with a redirect to the same search by `patient_ref`, so
//! the clear numbers are in one request only: not in the page, its links or its exports.

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use onshi_domain::patient::PatientRef;
use time::OffsetDateTime;

use super::form::encode;
use super::format::{count, date_with_era, tokyo, tokyo_day, tokyo_or_dash};
use super::layout::{Nav, page};
use crate::error::HttpError;
use crate::extract::Query;
use crate::state::ApiState;
use central_core::audit_report::{field, result as result_of};
use central_core::auth::{Permission, Principal};
use central_core::error::ServiceError;
use central_core::service::audit::{
    AuditParams, AuditSearch, CONSENTS, KINDS, RESULTS, STAFF_ROLES,
};
use central_store::dashboard_rollout::StreamVerificationStatus;
use central_store::{AuditQuery, StoredEvent};

/// Rows the page shows (one more is asked for, to say there are more).
const PAGE_ROWS: i64 = 200;

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The form as a query string, the patient only as `patient_ref` (never card details).
fn query_string(params: &AuditParams, patient: Option<&PatientRef>) -> String {
    let mut parts: Vec<String> = [
        ("from", &params.from),
        ("to", &params.to),
        ("month", &params.month),
        ("site", &params.site),
        ("staff", &params.staff),
        ("role", &params.role),
        ("kind", &params.kind),
        ("result", &params.result),
        ("consent", &params.consent),
        ("disaster_window", &params.disaster_window),
    ]
    .into_iter()
    .filter_map(|(name, value)| present(value).map(|v| format!("{name}={}", encode(v))))
    .collect();
    if let Some(patient) = patient {
        parts.push(format!("patient_ref={}", patient.as_str()));
    }
    parts.join("&")
}

/// The same form without the card details (shown again after the hashing redirect), and
/// without what only the API reads.
fn without_card(params: &AuditParams, patient: Option<&PatientRef>) -> AuditParams {
    AuditParams {
        patient_ref: patient.map(|p| p.as_str().to_string()),
        insurer: None,
        symbol: None,
        number: None,
        branch: None,
        limit: None,
        after: None,
        format: None,
        ..params.clone()
    }
}

fn select(name: &str, current: Option<&str>, any: &str, options: &[(&str, String)]) -> Markup {
    html! {
        select id=(name) name=(name) {
            option value="" selected[current.is_none()] { (any) }
            @for (value, label) in options {
                option value=(value) selected[current == Some(*value)] { (label) }
            }
        }
    }
}

fn pairs(list: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    list.iter().map(|(v, l)| (*v, l.to_string())).collect()
}

fn search_form(params: &AuditParams) -> Markup {
    let text = |name: &str, value: &Option<String>| -> Markup {
        html! { input id=(name) name=(name) value=[present(value)]; }
    };
    let kinds: Vec<(&str, String)> = KINDS
        .iter()
        .map(|(k, ja, en)| (*k, format!("{ja} / {en}")))
        .collect();
    let disaster = [
        (
            "true",
            "災害時の閲覧のみ / under a disaster window".to_string(),
        ),
        ("false", "災害時以外 / outside one".to_string()),
    ];
    html! {
        form #audit-search .filters method="get" action="/audit" {
            fieldset {
                legend { "期間 " span.en { "Period (Asia/Tokyo)" } }
                label for="from" { "開始日 " span.en { "From" } }
                input #from name="from" type="date" value=[present(&params.from)];
                label for="to" { "終了日 " span.en { "To (included)" } }
                input #to name="to" type="date" value=[present(&params.to)];
                label for="month" { "または月 " span.en { "or month" } }
                input #month name="month" type="month" placeholder="2026-12"
                    value=[present(&params.month)];
            }
            fieldset {
                legend { "対象 " span.en { "What" } }
                label for="site" { "施設コード " span.en { "Site code" } }
                input #site name="site" inputmode="numeric" pattern="[0-9]{10}" size="12"
                    value=[present(&params.site)];
                label for="staff" { "職員ID " span.en { "Staff id" } }
                (text("staff", &params.staff))
                label for="role" { "職種 " span.en { "Staff role" } }
                (select("role", present(&params.role), "すべて / any", &pairs(&STAFF_ROLES)))
                label for="kind" { "種類 " span.en { "Kind" } }
                (select("kind", present(&params.kind), "すべて / any", &kinds))
                label for="result" { "結果 " span.en { "Result" } }
                (select("result", present(&params.result), "すべて / any", &pairs(&RESULTS)))
                label for="consent" { "同意 " span.en { "Consent given" } }
                (select("consent", present(&params.consent), "すべて / any", &pairs(&CONSENTS)))
                label for="disaster_window" { "災害時 " span.en { "Disaster window" } }
                (select("disaster_window", present(&params.disaster_window), "問わない / either", &disaster))
            }
            fieldset {
                legend { "患者 " span.en { "Patient (hashed with the chain's key when searched)" } }
                label for="insurer" { "保険者番号 " span.en { "Insurer" } }
                input #insurer name="insurer" inputmode="numeric" autocomplete="off" size="8";
                label for="symbol" { "記号 " span.en { "Symbol" } }
                input #symbol name="symbol" autocomplete="off" size="8";
                label for="number" { "番号 " span.en { "Number" } }
                input #number name="number" autocomplete="off" size="10";
                label for="branch" { "枝番 " span.en { "Branch" } }
                input #branch name="branch" inputmode="numeric" autocomplete="off" size="2";
                label for="patient_ref" { "または patient_ref " span.en { "or patient_ref" } }
                input #patient_ref name="patient_ref" size="66" autocomplete="off"
                    value=[present(&params.patient_ref)];
            }
            button #search type="submit" { "検索 / Search" }
        }
    }
}

fn kind_label(kind: &str) -> String {
    KINDS
        .iter()
        .find(|(k, ..)| *k == kind)
        .map_or_else(|| kind.to_string(), |(_, ja, en)| format!("{ja} / {en}"))
}

fn results_table(events: &[StoredEvent]) -> Markup {
    html! {
        table #audit-results {
            thead {
                tr {
                    th { "日時 " span.en { "At (JST)" } }
                    th { "施設 " span.en { "Site" } }
                    th { "端末 " span.en { "Terminal" } }
                    th { "種類 " span.en { "Kind" } }
                    th { "結果 " span.en { "Result" } }
                    th { "職員 " span.en { "Staff" } }
                    th { "職種 " span.en { "Role" } }
                    th { "患者（鍵付きハッシュ） " span.en { "Patient (keyed hash)" } }
                    th { "情報 " span.en { "Category" } }
                    th { "理由・災害 " span.en { "Reason, window" } }
                    th { "ポリシー " span.en { "Policy" } }
                }
            }
            tbody {
                @for e in events {
                    @let patient = field(e, "patient_ref");
                    tr data-event=(e.event_id) data-site=(e.site_code) data-kind=(e.kind) {
                        td { (tokyo(e.occurred_at)) }
                        td { (e.site_code) }
                        td { (e.terminal_id) }
                        td { (kind_label(&e.kind)) }
                        td { (result_of(e)) }
                        td { (field(e, "staff_id")) }
                        td { (field(e, "staff_role")) }
                        td.patient {
                            @if !patient.is_empty() {
                                code title=(patient) data-patient-ref=(patient) {
                                    (patient.get(..16).unwrap_or(&patient)) "…"
                                }
                            }
                        }
                        td { (field(e, "category")) }
                        td {
                            (field(e, "refusal_reason"))
                            @let window = field(e, "disaster_window_id");
                            @if !window.is_empty() { " " span.warn { "災害 / disaster " (window) } }
                        }
                        td { (field(e, "policy_version")) }
                    }
                }
                @if events.is_empty() {
                    tr.none { td colspan="11" { "該当する記録はありません / nothing matches" } }
                }
            }
        }
    }
}

fn verification_table(streams: &[StreamVerificationStatus]) -> Markup {
    html! {
        table #verification {
            thead {
                tr {
                    th { "施設 " span.en { "Site" } }
                    th { "ストリーム " span.en { "Stream" } }
                    th { "状態 " span.en { "State" } }
                    th.num { "検証済みの番号 / 受信 " span.en { "Verified through / held" } }
                    th { "改ざん・欠落 " span.en { "Breaks" } }
                    th { "最新の封印 " span.en { "Last seal" } }
                    th { "検証日時 " span.en { "Verified at" } }
                }
            }
            tbody {
                @for s in streams {
                    @let state = if s.breaks > 0 {
                        "broken"
                    } else if s.verified_through >= s.contiguous_sequence {
                        "verified"
                    } else {
                        "behind"
                    };
                    tr data-site=(s.site_code) data-stream=(s.stream_id) data-state=(state)
                        data-verified-through=(s.verified_through) data-breaks=(s.breaks) {
                        td { (s.site_code) }
                        td { code title=(s.stream_id) { (s.stream_id.to_string().get(..8).unwrap_or_default()) "…" } }
                        td {
                            @match state {
                                "broken" => { span.bad { "改ざん・欠落あり " span.en { "BROKEN" } } }
                                "verified" => { span.ok { "検証済み " span.en { "verified" } } }
                                _ => { span.warn { "検証待ち " span.en { "behind" } } }
                            }
                        }
                        td.num { (count(s.verified_through)) " / " (count(s.contiguous_sequence)) }
                        td {
                            @if s.breaks > 0 {
                                (count(s.breaks)) " " span.en { (s.break_detail.as_deref().unwrap_or("")) }
                            } @else {
                                "なし " span.en { "none" }
                            }
                        }
                        td {
                            @match (s.last_seal_day, s.last_seal_through) {
                                (Some(day), Some(through)) => {
                                    (date_with_era(day)) " " span.en { "#" (count(through)) }
                                }
                                _ => { "未封印 " span.en { "not sealed yet" } }
                            }
                        }
                        td { (tokyo_or_dash(s.verified_at)) }
                    }
                }
                @if streams.is_empty() {
                    tr.none { td colspan="7" { "ストリームがありません / no agent stream yet" } }
                }
            }
        }
    }
}

/// The search form, results and export links, the verification table.
fn audit_body(
    principal: &Principal,
    params: &AuditParams,
    error: Option<&str>,
    search: Option<(&AuditQuery, &[StoredEvent])>,
    streams: &[StreamVerificationStatus],
) -> Markup {
    html! {
        section #audit {
            (search_form(params))
            @if let Some(error) = error {
                p.error #search-error role="alert" { (error) }
            }
            @if let Some((query, events)) = search {
                @let more = events.len() as i64 > PAGE_ROWS;
                @let shown = &events[..events.len().min(PAGE_ROWS as usize)];
                @let links = query_string(params, query.patient.as_ref());
                p.summary {
                    span #result-count { (count(shown.len() as i64)) } " 件"
                    @if more { "（先頭 " (PAGE_ROWS) " 件のみ表示） " }
                    " " span.en {
                        @if more { "first " (PAGE_ROWS) " shown, oldest first" } @else { "events, oldest first" }
                    }
                    @if principal.may(Permission::ExportAudit) {
                        " · "
                        a #audit-csv href=(format!("/audit/export.csv?{links}")) { "CSVで出力 / Export CSV" }
                        " · "
                        a #audit-report href=(format!("/audit/report?{links}")) { "報告書（印刷用） / Printable report" }
                    }
                }
                (results_table(shown))
            }
            h2 { "改ざん検証の状況 " span.en { "Chain verification per stream" } }
            (verification_table(streams))
            p.en { "患者は施設外では鍵付きハッシュでのみ表示されます / patients appear only as keyed hashes outside the site." }
        }
    }
}

fn card_redirect(params: &AuditParams, patient: Option<&PatientRef>) -> Response {
    let clean = without_card(params, patient);
    Redirect::to(&format!("/audit?{}", query_string(&clean, patient))).into_response()
}

/// `GET /audit`: `service::audit`'s search, the same rows the JSON API answers for the same
/// query string. Without any field the search covers today (Tokyo).
pub(crate) async fn page_handler(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<AuditParams>,
    uri: axum::http::Uri,
) -> Result<Response, HttpError> {
    let title = "監査 / Audit";
    let params = if uri.query().is_none_or(str::is_empty) {
        let today = tokyo_day(OffsetDateTime::now_utc()).to_string();
        AuditParams {
            from: Some(today.clone()),
            to: Some(today),
            ..AuditParams::default()
        }
    } else {
        params
    };
    let streams = state.store.verification_status(&principal.scope).await?;
    let key = state.patient_key.as_deref();
    let checked = AuditSearch::try_from(params.clone()).and_then(|search| {
        let query = search.query(key, Some(PAGE_ROWS + 1))?;
        Ok((search, query))
    });
    let (search, query) = match checked {
        Ok(checked) => checked,
        Err(ServiceError::BadRequest(message)) => {
            let shown = without_card(&params, None);
            let body = audit_body(&principal, &shown, Some(&message), None, &streams);
            return Ok((
                StatusCode::BAD_REQUEST,
                page(&principal, Nav::Audit, title, body),
            )
                .into_response());
        }
        Err(other) => return Err(other.into()),
    };
    if search.has_card() {
        // Hashed: search again by the hash, so the numbers leave the address bar.
        return Ok(card_redirect(&params, query.patient.as_ref()));
    }
    let events = central_core::service::audit::search(&state.store, &principal, &query).await?;
    let body = audit_body(&principal, &params, None, Some((&query, &events)), &streams);
    Ok(page(&principal, Nav::Audit, title, body).into_response())
}

/// `GET /audit/export.csv`: the whole search as CSV, streamed and audited
/// (`service::audit::export_csv`, the same export as the API's `format=csv`).
pub async fn export_csv(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<AuditParams>,
) -> Result<Response, HttpError> {
    let query = AuditSearch::try_from(params)?.query(state.patient_key.as_deref(), None)?;
    let rows = central_core::service::audit::export_csv(&state.store, &principal, &query).await?;
    Ok(super::csv_download(
        "audit",
        OffsetDateTime::now_utc(),
        axum::body::Body::from_stream(rows),
    ))
}

/// `GET /audit/report`: the printable report of the search's site and period
/// (`service::audit::report`, the same report as the API's), audited.
pub async fn report(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<AuditParams>,
) -> Result<Response, HttpError> {
    let search = AuditSearch::try_from(params)?;
    let query = search.query(state.patient_key.as_deref(), None)?;
    let html =
        central_core::service::audit::report(&state.store, &principal, &search, &query).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_the_patient_as_the_hash_and_never_card_details() {
        let key = onshi_domain::patient::PatientHashKey::from_bytes(&[7; 32]).unwrap();
        let params = AuditParams {
            site: Some("1310000224".into()),
            insurer: Some("06139158".into()),
            number: Some("1234567".into()),
            ..AuditParams::default()
        };
        let search = AuditSearch::try_from(params.clone()).unwrap();
        let patient = search.patient_ref(Some(&key)).unwrap().unwrap();
        let link = query_string(&without_card(&params, Some(&patient)), Some(&patient));
        assert!(
            !link.contains("1234567") && !link.contains("06139158"),
            "{link}"
        );
        assert!(
            link.contains(&format!("patient_ref={}", patient.as_str())),
            "{link}"
        );
    }
}
