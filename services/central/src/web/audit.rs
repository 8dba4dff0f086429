//! `/audit`: the auditor's search over the audit trail (who looked up whom, who saw which
//! history, under what consent or disaster window), its exports (`/audit/export.csv`, the
//! printable `/audit/report`, each one an `audit_export` security event) and where the chain
//! verifier stands on every stream.
//!
//! Patients appear only as their keyed hash. A search by insurance card details is hashed here
//! with the chain's key and answered with a redirect to the same search by `patient_ref`, so
//! the clear numbers are in one request only: not in the page, its links or its exports.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use onshi_domain::ids::{
    IdError, InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber,
};
use onshi_domain::patient::PatientRef;
use onshi_domain::site::SiteCode;
use serde::Deserialize;
use time::{Date, Duration, OffsetDateTime};

use super::form::encode;
use super::format::{TOKYO, count, date_with_era, tokyo, tokyo_day, tokyo_or_dash};
use super::layout::{Nav, page};
use crate::api::ApiState;
use crate::audit_report::{describe_query, field, result as result_of};
use crate::auth::{Permission, Principal};
use crate::error::ServiceError;
use crate::store::dashboard_rollout::StreamVerificationStatus;
use crate::store::{AuditQuery, StoredEvent};

/// Rows the page shows (one more is asked for, to say there are more).
const PAGE_ROWS: i64 = 200;
/// Events a CSV export may hold; a search reaching it is refused rather than cut short.
const CSV_ROWS: i64 = 100_000;
/// Refused and disaster-window views a report lists.
const REPORT_VIEWS: i64 = 10_000;

const KINDS: [(&str, &str, &str); 4] = [
    ("lookup", "資格確認", "lookup"),
    ("info_view", "情報の閲覧", "information view"),
    ("consent", "同意", "consent"),
    ("card_check", "カード確認", "card check"),
];

const RESULTS: [(&str, &str); 14] = [
    ("valid", "有効 / valid"),
    ("invalid", "無効 / invalid"),
    ("not_found", "該当なし / not found"),
    ("error", "エラー / error"),
    ("unreachable", "接続不可 / unreachable"),
    ("allowed", "閲覧許可 / view allowed"),
    ("refused", "閲覧拒否 / view refused"),
    ("ok", "カード確認成功 / card ok"),
    ("wrong_pin", "暗証番号誤り / wrong PIN"),
    ("pin_locked", "暗証番号ロック / PIN locked"),
    ("card_removed", "カード抜去 / card removed"),
    ("unsupported_card", "非対応カード / unsupported card"),
    (
        "certificate_expired",
        "証明書期限切れ / certificate expired",
    ),
    ("reader_error", "リーダーエラー / reader error"),
];

const CONSENTS: [(&str, &str); 5] = [
    ("limit_info", "限度額情報 / copay limit"),
    ("drug", "薬剤情報 / drug history"),
    ("checkup", "特定健診情報 / checkups"),
    ("diagnosis", "診療情報 / diagnoses"),
    ("surgery", "手術情報 / surgeries"),
];

const STAFF_ROLES: [(&str, &str); 5] = [
    ("doctor", "医師 / doctor"),
    ("dentist", "歯科医師 / dentist"),
    ("pharmacist", "薬剤師 / pharmacist"),
    ("clerk", "事務 / clerk"),
    ("site_admin", "施設管理者 / site admin"),
];

/// The search form as the browser sends it: empty fields mean "any".
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Params {
    /// Tokyo days `YYYY-MM-DD`, `to` included.
    from: Option<String>,
    to: Option<String>,
    /// `YYYY-MM`, a whole Tokyo month (instead of from/to).
    month: Option<String>,
    site: Option<String>,
    staff: Option<String>,
    role: Option<String>,
    kind: Option<String>,
    result: Option<String>,
    consent: Option<String>,
    /// `yes`, `no` or empty.
    disaster: Option<String>,
    patient_ref: Option<String>,
    insurer: Option<String>,
    symbol: Option<String>,
    number: Option<String>,
    branch: Option<String>,
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn id_error(e: IdError) -> String {
    format!("{} / {}", e.message_ja(), e)
}

fn parse_day(name: &str, text: &str) -> Result<Date, String> {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| format!("{name} の日付が正しくありません / {name} {text:?}: expected YYYY-MM-DD"))
}

fn tokyo_midnight(day: Date) -> OffsetDateTime {
    day.midnight().assume_offset(TOKYO)
}

/// The period of the form: a whole Tokyo month, or from the start of `from` to the end of `to`.
fn period(params: &Params) -> Result<(Option<OffsetDateTime>, Option<OffsetDateTime>), String> {
    if let Some(month) = present(&params.month) {
        if present(&params.from).is_some() || present(&params.to).is_some() {
            return Err(
                "月か期間のどちらかを指定してください / give either a month or from/to, not both"
                    .into(),
            );
        }
        let start = parse_day("month", &format!("{month}-01"))
            .map_err(|_| format!("月が正しくありません / month {month:?}: expected YYYY-MM"))?;
        let next = start + Duration::days(32);
        let end = next.replace_day(1).map_err(|e| e.to_string())?;
        return Ok((Some(tokyo_midnight(start)), Some(tokyo_midnight(end))));
    }
    let from = present(&params.from)
        .map(|d| parse_day("from", d).map(tokyo_midnight))
        .transpose()?;
    let to = present(&params.to)
        .map(|d| parse_day("to", d).map(|d| tokyo_midnight(d) + Duration::days(1)))
        .transpose()?;
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err("期間の終わりが始まりより前です / the period ends before it starts".into());
    }
    Ok((from, to))
}

fn one_of<'a>(
    name: &str,
    value: Option<&'a str>,
    allowed: &[&str],
) -> Result<Option<&'a str>, String> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(format!(
            "{name} が正しくありません / {name} {v:?}: one of {}",
            allowed.join(", ")
        )),
        other => Ok(other),
    }
}

impl Params {
    /// Whether the form holds insurance card details (which are hashed, then dropped).
    fn has_card(&self) -> bool {
        [&self.insurer, &self.symbol, &self.number, &self.branch]
            .iter()
            .any(|f| present(f).is_some())
    }

    /// The patient of the form as a keyed hash: `patient_ref`, or the insurance card details
    /// hashed with the chain's key.
    fn patient(&self, state: &ApiState) -> Result<Option<PatientRef>, String> {
        let reference = present(&self.patient_ref);
        match (reference, self.has_card()) {
            (Some(_), true) => Err(
                "患者は patient_ref か保険証の記号番号のどちらかで指定します / give the patient \
                 as patient_ref or as insurance card details, not both"
                    .into(),
            ),
            (Some(r), false) => PatientRef::parse(r)
                .map(Some)
                .map_err(|e| format!("patient_ref が正しくありません / patient_ref: {e}")),
            (None, true) => {
                let key = state.patient_key.as_deref().ok_or(
                    "central に患者ハッシュ鍵が設定されていません（--patient-key）。patient_ref で\
                     検索してください / central has no patient hash key (--patient-key): search \
                     by patient_ref",
                )?;
                let (Some(insurer), Some(number)) = (present(&self.insurer), present(&self.number))
                else {
                    return Err(
                        "保険者番号と被保険者番号が必要です（記号・枝番は保険証にあれば） / \
                         insurer and number are needed (symbol and branch if the card has them)"
                            .into(),
                    );
                };
                let symbol = present(&self.symbol)
                    .map(InsuredCardSymbol::parse)
                    .transpose()
                    .map_err(id_error)?;
                let branch = present(&self.branch)
                    .map(InsuredBranchNumber::parse)
                    .transpose()
                    .map_err(id_error)?;
                Ok(Some(PatientRef::for_insurance_card(
                    key,
                    &InsurerNumber::parse(insurer).map_err(id_error)?,
                    symbol.as_ref(),
                    &InsuredIdentificationNumber::parse(number).map_err(id_error)?,
                    branch.as_ref(),
                )))
            }
            (None, false) => Ok(None),
        }
    }

    /// The search, or what is wrong with the form (Japanese, then English).
    fn query(&self, state: &ApiState, limit: i64) -> Result<AuditQuery, String> {
        let site = present(&self.site)
            .map(|s| {
                SiteCode::parse(s)
                    .map_err(|e| format!("施設コードが正しくありません / site code {s:?}: {e}"))
            })
            .transpose()?;
        let kinds: Vec<&str> = KINDS.iter().map(|(k, ..)| *k).collect();
        let kind = one_of("kind", present(&self.kind), &kinds)?;
        let results: Vec<&str> = RESULTS.iter().map(|(r, _)| *r).collect();
        let result = one_of("result", present(&self.result), &results)?;
        let consents: Vec<&str> = CONSENTS.iter().map(|(c, _)| *c).collect();
        let consent = one_of("consent", present(&self.consent), &consents)?;
        let disaster_window = match present(&self.disaster) {
            None => None,
            Some("yes") => Some(true),
            Some("no") => Some(false),
            Some(other) => {
                return Err(format!(
                    "災害時の指定が正しくありません / disaster {other:?}: yes, no or empty"
                ));
            }
        };
        let (from, to) = period(self)?;
        Ok(AuditQuery {
            site,
            from,
            to,
            kinds: kind.map(|k| vec![k.to_string()]).unwrap_or_default(),
            staff_id: present(&self.staff).map(str::to_string),
            staff_role: present(&self.role).map(str::to_string),
            patient: self.patient(state)?,
            result: result.map(str::to_string),
            consent: consent.map(str::to_string),
            disaster_window,
            limit,
            after: None,
        })
    }

    /// The form as a query string, the patient only as `patient_ref` (never card details).
    fn query_string(&self, patient: Option<&PatientRef>) -> String {
        let mut parts: Vec<String> = [
            ("from", &self.from),
            ("to", &self.to),
            ("month", &self.month),
            ("site", &self.site),
            ("staff", &self.staff),
            ("role", &self.role),
            ("kind", &self.kind),
            ("result", &self.result),
            ("consent", &self.consent),
            ("disaster", &self.disaster),
        ]
        .into_iter()
        .filter_map(|(name, value)| present(value).map(|v| format!("{name}={}", encode(v))))
        .collect();
        if let Some(patient) = patient {
            parts.push(format!("patient_ref={}", patient.as_str()));
        }
        parts.join("&")
    }

    /// The same form without the card details (shown again after the hashing redirect).
    fn without_card(&self, patient: Option<&PatientRef>) -> Params {
        Params {
            patient_ref: patient.map(|p| p.as_str().to_string()),
            insurer: None,
            symbol: None,
            number: None,
            branch: None,
            ..self.clone()
        }
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

fn search_form(params: &Params) -> Markup {
    let text = |name: &str, value: &Option<String>| -> Markup {
        html! { input id=(name) name=(name) value=[present(value)]; }
    };
    let kinds: Vec<(&str, String)> = KINDS
        .iter()
        .map(|(k, ja, en)| (*k, format!("{ja} / {en}")))
        .collect();
    let disaster = [
        (
            "yes",
            "災害時の閲覧のみ / under a disaster window".to_string(),
        ),
        ("no", "災害時以外 / outside one".to_string()),
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
                label for="disaster" { "災害時 " span.en { "Disaster window" } }
                (select("disaster", present(&params.disaster), "問わない / either", &disaster))
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
    params: &Params,
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
                @let links = params.query_string(query.patient.as_ref());
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

fn card_redirect(params: &Params, patient: Option<&PatientRef>) -> Response {
    let clean = params.without_card(patient);
    Redirect::to(&format!("/audit?{}", clean.query_string(patient))).into_response()
}

/// `GET /audit`. Without any field the search covers today (Tokyo).
pub async fn page_handler(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<Params>,
    uri: axum::http::Uri,
) -> Result<Response, ServiceError> {
    let title = "監査 / Audit";
    let params = if uri.query().is_none_or(str::is_empty) {
        let today = tokyo_day(OffsetDateTime::now_utc()).to_string();
        Params {
            from: Some(today.clone()),
            to: Some(today),
            ..Params::default()
        }
    } else {
        params
    };
    let streams = state.store.verification_status(&principal.scope).await?;
    let query = match params.query(&state, PAGE_ROWS + 1) {
        Ok(query) => query,
        Err(message) => {
            let shown = params.without_card(None);
            let body = audit_body(&principal, &shown, Some(&message), None, &streams);
            return Ok((
                StatusCode::BAD_REQUEST,
                page(&principal, Nav::Audit, title, body),
            )
                .into_response());
        }
    };
    if params.has_card() {
        // Hashed: search again by the hash, so the numbers leave the address bar.
        return Ok(card_redirect(&params, query.patient.as_ref()));
    }
    let events = state.store.audit_search(&query).await?;
    let body = audit_body(&principal, &params, None, Some((&query, &events)), &streams);
    Ok(page(&principal, Nav::Audit, title, body).into_response())
}

fn export_query(state: &ApiState, params: &Params, limit: i64) -> Result<AuditQuery, ServiceError> {
    params.query(state, limit).map_err(ServiceError::BadRequest)
}

/// `GET /audit/export.csv`: the search as CSV (`audit_report::csv`), audited.
pub async fn export_csv(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<Params>,
) -> Result<Response, ServiceError> {
    let query = export_query(&state, &params, CSV_ROWS)?;
    let events = state.store.audit_search(&query).await?;
    if events.len() as i64 >= CSV_ROWS {
        return Err(ServiceError::BadRequest(format!(
            "{CSV_ROWS} or more events match: narrow the search (a shorter period, a site) so \
             that the export is complete"
        )));
    }
    state
        .store
        .record_export(
            &format!(
                "audit search CSV of {} events ({})",
                events.len(),
                describe_query(&query)
            ),
            &principal.audit_name(),
        )
        .await?;
    Ok(super::csv_download(
        "audit",
        OffsetDateTime::now_utc(),
        crate::audit_report::csv(&events),
    ))
}

/// `GET /audit/report`: the printable report of the search's site and period
/// (`audit_report::html`: totals per site and staff, refused views, disaster-window views, the
/// chain verdict), audited.
pub async fn report(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<Params>,
) -> Result<Response, ServiceError> {
    let query = export_query(&state, &params, REPORT_VIEWS)?;
    let store = &state.store;
    let views = AuditQuery {
        kinds: vec!["info_view".into()],
        ..query.clone()
    };
    let refused = AuditQuery {
        result: Some("refused".into()),
        ..views.clone()
    };
    let disaster = AuditQuery {
        disaster_window: Some(true),
        ..views
    };
    let (totals, refusals, disaster_views, verdict) = tokio::try_join!(
        store.audit_totals(query.site.as_ref(), (query.from, query.to)),
        store.audit_search(&refused),
        store.audit_search(&disaster),
        store.verify_period(query.site.as_ref(), query.from, query.to),
    )?;
    let title = match present(&params.month) {
        Some(month) => format!("オンライン資格確認 監査月報 {month} / monthly audit summary"),
        None => "オンライン資格確認 監査報告 / audit report".to_string(),
    };
    let site = query.site.as_ref().map(|s| s.to_string());
    let generated_by = principal.audit_name();
    let html = crate::audit_report::html(&crate::audit_report::ReportInput {
        title,
        site_code: site.as_deref(),
        from: query.from,
        to: query.to,
        generated_at: OffsetDateTime::now_utc(),
        generated_by: &generated_by,
        totals: &totals,
        refusals: &refusals,
        disaster_views: &disaster_views,
        verdict: &verdict,
    });
    state
        .store
        .record_export(
            &format!(
                "audit report ({}; verdict {})",
                describe_query(&query),
                if verdict.intact { "INTACT" } else { "BROKEN" }
            ),
            &principal.audit_name(),
        )
        .await?;
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
    use time::macros::datetime;

    fn state(key: bool) -> ApiState {
        let pool = crate::store::connect(
            &crate::store::DatabaseUrl::new("postgres://nobody@127.0.0.1:1/none"),
            1,
        )
        .unwrap();
        ApiState {
            store: crate::store::Store::new(pool),
            patient_key: key.then(|| {
                std::sync::Arc::new(
                    onshi_domain::patient::PatientHashKey::from_bytes(&[7; 32]).unwrap(),
                )
            }),
            deny: fleet_tls::deny::DenyList::default(),
            limiter: crate::auth::rate_limit::SignInLimiter::default(),
            notification_key: None,
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        serde_urlencoded_from(&query)
    }

    fn serde_urlencoded_from(query: &str) -> Params {
        let uri: axum::http::Uri = format!("/audit?{query}").parse().unwrap();
        Query::<Params>::try_from_uri(&uri).unwrap().0
    }

    #[tokio::test]
    async fn a_period_is_whole_tokyo_days_or_a_month() {
        let s = state(false);
        let q = params(&[("from", "2026-12-01"), ("to", "2026-12-01")])
            .query(&s, 10)
            .unwrap();
        assert_eq!(q.from, Some(datetime!(2026-11-30 15:00 UTC)));
        assert_eq!(q.to, Some(datetime!(2026-12-01 15:00 UTC)));
        let q = params(&[("month", "2026-12")]).query(&s, 10).unwrap();
        assert_eq!(q.to, Some(datetime!(2026-12-31 15:00 UTC)));
        for bad in [
            params(&[("month", "2026-12"), ("from", "2026-12-01")]),
            params(&[("from", "2026-12-02"), ("to", "2026-12-01")]),
            params(&[("month", "December")]),
            params(&[("kind", "reader_change")]),
            params(&[("disaster", "maybe")]),
        ] {
            let error = bad.query(&s, 10).unwrap_err();
            assert!(error.contains(" / "), "{error}");
        }
    }

    #[tokio::test]
    async fn card_details_become_a_keyed_hash_and_never_a_link() {
        let card = params(&[
            ("site", "1310000224"),
            ("insurer", "06139158"),
            ("number", "1234567"),
        ]);
        let error = card.query(&state(false), 10).unwrap_err();
        assert!(error.contains("--patient-key"), "{error}");
        let q = card.query(&state(true), 10).unwrap();
        let patient = q.patient.clone().unwrap();
        let link = card.query_string(q.patient.as_ref());
        assert!(!link.contains("1234567"), "{link}");
        assert!(!link.contains("06139158"), "{link}");
        assert!(
            link.contains(&format!("patient_ref={}", patient.as_str())),
            "{link}"
        );
        assert!(
            !describe_query(&q).contains("1234567"),
            "{}",
            describe_query(&q)
        );
        let both = params(&[("patient_ref", patient.as_str()), ("number", "1234567")]);
        assert!(both.query(&state(true), 10).is_err());
    }
}
