//! `/sites`: every site in scope with its state, filters and pages; `/sites/{site_code}`: one
//! site's terminals, readers, links, certificates, events, adoption checklist and agent.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use onshi_domain::availability::State as Availability;
use onshi_domain::ids::Prefecture;
use onshi_domain::site::SiteCode;
use serde::Deserialize;
use time::OffsetDateTime;

use super::format::{count, date_with_era, tokyo, tokyo_or_dash};
use super::layout::{Nav, page};
use crate::error::HttpError;
use crate::state::ApiState;
use central_core::auth::Principal;
use central_core::error::ServiceError;
use central_store::adoption::AdoptionView;
use central_store::dashboard::{SITES_PER_PAGE, SiteDetail, SiteEvent, SiteFilter, SitePage};

/// Site kinds as the code's fee-table digit tells them: form value, digit, Japanese, English.
pub const KINDS: [(&str, char, &str, &str); 4] = [
    ("medical", '1', "医科", "medical"),
    ("dental", '3', "歯科", "dental"),
    ("pharmacy", '4', "調剤", "pharmacy"),
    ("home_nursing", '6', "訪問看護", "home nursing"),
];

/// A site's state in its latest rollout: form value, Japanese, English.
pub(crate) const ROLLOUT_STATES: [(&str, &str, &str); 6] = [
    ("pending", "待機", "pending"),
    ("targeted", "配信指示済", "targeted"),
    ("applied", "適用済", "applied"),
    ("failed", "失敗", "failed"),
    ("rolled_back", "切り戻し", "rolled back"),
    ("none", "対象外", "never in a rollout"),
];

/// Availability states the filter offers: every state the domain knows, then `unknown` for
/// sites not classified yet.
const STATUSES: [&str; Availability::ALL.len() + 1] = {
    let mut names = ["unknown"; Availability::ALL.len() + 1];
    let mut i = 0;
    while i < Availability::ALL.len() {
        names[i] = Availability::ALL[i].as_str();
        i += 1;
    }
    names
};

const MAX_Q: usize = 100;

/// The filter form as the browser sends it (and `GET /api/v1/sites/search` takes); empty
/// fields mean "any".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    prefecture: Option<String>,
    kind: Option<String>,
    status: Option<String>,
    rollout: Option<String>,
    q: Option<String>,
    page: Option<String>,
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl Params {
    /// The checked filter, or what is wrong with the form (Japanese, then English).
    pub fn filter(&self) -> Result<SiteFilter, String> {
        let prefecture = present(&self.prefecture)
            .map(|p| {
                if p.len() == 2 && Prefecture::parse(p).is_ok() {
                    Ok(p.to_string())
                } else {
                    Err(format!(
                        "都道府県は2桁のコード（01〜47）です / prefecture is a two-digit code \
                         01 to 47, not {p:?}"
                    ))
                }
            })
            .transpose()?;
        let fee_table = present(&self.kind)
            .map(|k| {
                KINDS
                    .iter()
                    .find(|(name, ..)| *name == k)
                    .map(|(_, digit, ..)| *digit)
                    .ok_or_else(|| {
                        format!(
                            "種別は {} のいずれかです / kind is one of {}, not {k:?}",
                            KINDS.map(|(_, _, ja, _)| ja).join("・"),
                            KINDS.map(|(name, ..)| name).join(", ")
                        )
                    })
            })
            .transpose()?;
        let status = present(&self.status)
            .map(|s| {
                if STATUSES.contains(&s) {
                    Ok(s.to_string())
                } else {
                    Err(format!(
                        "状態の指定が正しくありません / status is one of {}, not {s:?}",
                        STATUSES.join(", ")
                    ))
                }
            })
            .transpose()?;
        let rollout = present(&self.rollout)
            .map(|r| {
                if ROLLOUT_STATES.iter().any(|(name, ..)| *name == r) {
                    Ok(r.to_string())
                } else {
                    Err(format!(
                        "配信状態の指定が正しくありません / rollout is one of {}, not {r:?}",
                        ROLLOUT_STATES.map(|(name, ..)| name).join(", ")
                    ))
                }
            })
            .transpose()?;
        let q = present(&self.q)
            .map(|q| {
                if q.chars().count() <= MAX_Q {
                    Ok(q.to_string())
                } else {
                    Err(format!(
                        "検索語は{MAX_Q}文字までです / the search is at most {MAX_Q} characters"
                    ))
                }
            })
            .transpose()?;
        let page = match present(&self.page) {
            None => 1,
            Some(p) => p
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| {
                    format!("ページは1以上の整数です / page is a whole number from 1, not {p:?}")
                })?,
        };
        Ok(SiteFilter {
            prefecture,
            fee_table,
            status,
            rollout,
            q,
            page,
        })
    }
}

/// The query string of `filter` on page `page`.
pub(crate) fn query_string(filter: &SiteFilter, page: i64) -> String {
    let kind = filter
        .fee_table
        .and_then(|d| KINDS.iter().find(|(_, digit, ..)| *digit == d))
        .map(|(name, ..)| name.to_string());
    let fields = [
        ("prefecture", filter.prefecture.clone()),
        ("kind", kind),
        ("status", filter.status.clone()),
        ("rollout", filter.rollout.clone()),
        ("q", filter.q.clone()),
        ("page", (page > 1).then(|| page.to_string())),
    ];
    let parts: Vec<String> = fields
        .iter()
        .filter_map(|(name, value)| {
            value
                .as_ref()
                .map(|v| format!("{name}={}", super::form::encode(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn kind_of(code: &str) -> (&'static str, &'static str) {
    let digit = code.chars().nth(2).unwrap_or('?');
    KINDS
        .iter()
        .find(|(_, d, ..)| *d == digit)
        .map_or(("?", "?"), |(_, _, ja, en)| (ja, en))
}

fn prefecture_of(code: &str) -> String {
    let two = code.get(..2).unwrap_or("");
    Prefecture::parse(two).map_or_else(|_| two.to_string(), |p| p.name_ja().to_string())
}

fn status_label(state: Option<&str>) -> String {
    state.and_then(Availability::parse).map_or_else(
        || "未判定 / not checked yet".to_string(),
        |s| s.label().to_string(),
    )
}

fn status_class(state: Option<&str>) -> &'static str {
    match state {
        Some("online") => "ok",
        Some("closed") | None => "muted",
        Some(_) => "bad",
    }
}

fn rollout_label(state: Option<&str>) -> String {
    let state = state.unwrap_or("none");
    ROLLOUT_STATES
        .iter()
        .find(|(name, ..)| *name == state)
        .map_or_else(|| state.to_string(), |(_, ja, en)| format!("{ja} / {en}"))
}

fn filter_form(params: &Params) -> Markup {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let selected = |v: &Option<String>, option: &str| present(v) == Some(option);
    html! {
        form.filters #site-filter method="get" action="/sites" {
            label { "検索 " span.en { "Search (code prefix or name)" } " "
                input name="q" type="search" value=(value(&params.q)) maxlength=(MAX_Q); }
            label { "都道府県 " span.en { "Prefecture" } " "
                select name="prefecture" {
                    option value="" { "すべて / all" }
                    @for code in 1..=47u8 {
                        @if let Some(p) = Prefecture::from_code(code) {
                            @let two = format!("{code:02}");
                            option value=(two) selected[selected(&params.prefecture, &two)] {
                                (two) " " (p.name_ja()) " / " (p.name_en())
                            }
                        }
                    }
                }
            }
            label { "種別 " span.en { "Kind" } " "
                select name="kind" {
                    option value="" { "すべて / all" }
                    @for (name, _, ja, en) in KINDS {
                        option value=(name) selected[selected(&params.kind, name)] { (ja) " / " (en) }
                    }
                }
            }
            label { "状態 " span.en { "Status" } " "
                select name="status" {
                    option value="" { "すべて / all" }
                    @for name in STATUSES {
                        option value=(name) selected[selected(&params.status, name)] {
                            (status_label((name != "unknown").then_some(name)))
                        }
                    }
                }
            }
            label { "配信 " span.en { "Rollout" } " "
                select name="rollout" {
                    option value="" { "すべて / all" }
                    @for (name, ja, en) in ROLLOUT_STATES {
                        option value=(name) selected[selected(&params.rollout, name)] { (ja) " / " (en) }
                    }
                }
            }
            button type="submit" { "絞り込む / Filter" }
            " " a href="/sites" { "解除 / Clear" }
        }
    }
}

fn list(filter: &SiteFilter, found: &SitePage) -> Markup {
    let pages = ((found.matches + SITES_PER_PAGE - 1) / SITES_PER_PAGE).max(1);
    html! {
        p #site-count data-count=(found.matches) {
            (count(found.matches)) " 施設 " span.en { "sites match" }
            " · " (filter.page) " / " (pages) " ページ " span.en { "page" }
        }
        table #sites {
            thead {
                tr {
                    th { "コード " span.en { "Code" } }
                    th { "名称 " span.en { "Name" } }
                    th { "都道府県 " span.en { "Prefecture" } }
                    th { "種別 " span.en { "Kind" } }
                    th { "状態 " span.en { "Status" } }
                    th { "エージェント " span.en { "Agent version" } }
                    th { "最終通信 " span.en { "Last seen" } }
                    th.num { "未解決アラート " span.en { "Open alerts" } }
                    th { "配信 " span.en { "Rollout" } }
                }
            }
            tbody {
                @for row in &found.rows {
                    @let (kind_ja, kind_en) = kind_of(&row.site_code);
                    tr data-site=(row.site_code) data-status=(row.status.as_deref().unwrap_or("unknown"))
                        data-rollout=(row.rollout_state.as_deref().unwrap_or("none")) {
                        td.code { a href=(format!("/sites/{}", row.site_code)) { (row.site_code) } }
                        td { (row.name.as_deref().unwrap_or("—")) }
                        td { (prefecture_of(&row.site_code)) }
                        td { (kind_ja) " " span.en { (kind_en) } }
                        td class=(status_class(row.status.as_deref())) { (status_label(row.status.as_deref())) }
                        td { (row.agent_version.as_deref().unwrap_or("—")) }
                        td { (tokyo_or_dash(row.last_seen_at)) }
                        td.num { (count(row.open_alerts)) }
                        td {
                            (rollout_label(row.rollout_state.as_deref()))
                            @if let Some(v) = &row.rollout_version { " → " (v) }
                        }
                    }
                }
            }
        }
        @if found.rows.is_empty() {
            p #no-sites { "条件に合う施設はありません。 " span.en { "No site matches." } }
        }
        nav.pagination {
            @if filter.page > 1 {
                a rel="prev" href=(format!("/sites{}", query_string(filter, filter.page - 1))) {
                    "← 前へ / Previous" }
            }
            " "
            @if filter.page < pages {
                a rel="next" href=(format!("/sites{}", query_string(filter, filter.page + 1))) {
                    "次へ → / Next" }
            }
        }
    }
}

pub(crate) async fn list_handler(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    let title = "施設 / Sites";
    let filter = match params.filter() {
        Ok(filter) => filter,
        Err(message) => {
            let body = html! {
                p.error #filter-error role="alert" { (message) }
                (filter_form(&params))
            };
            return Ok((
                StatusCode::BAD_REQUEST,
                page(&principal, Nav::Sites, title, body),
            )
                .into_response());
        }
    };
    let found = state.store.site_page(&principal.scope, &filter).await?;
    let body = html! {
        (filter_form(&params))
        (list(&filter, &found))
    };
    Ok(page(&principal, Nav::Sites, title, body).into_response())
}

/// The fields of an event body the site page shows, by kind: states and outcomes, staff and
/// the patient's keyed hash, never anything else a body may carry.
const SHOWN_FIELDS: [&str; 20] = [
    "outcome",
    "route",
    "source",
    "target",
    "state",
    "rtt_ms",
    "reader_name",
    "result",
    "category",
    "allowed",
    "refusal_reason",
    "staff_id",
    "staff_role",
    "disaster_window_id",
    "error_code",
    "first_sequence",
    "last_sequence",
    "reason",
    "level",
    "patient_ref",
];

/// `key: value` for the shown fields of `body`; the patient's keyed hash is shortened.
pub(crate) fn event_summary(body: &serde_json::Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for key in SHOWN_FIELDS {
        let text = match body.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Bool(b)) => b.to_string(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        let text = if key == "patient_ref" && text.chars().count() > 12 {
            format!("{}…", text.chars().take(12).collect::<String>())
        } else {
            text
        };
        out.push((key, text));
    }
    if let Some(certificates) = body.get("certificates").and_then(|c| c.as_array()) {
        out.push(("certificates", certificates.len().to_string()));
    }
    out
}

/// An event kind as people read it: Japanese, English.
fn event_kind_label(kind: &str) -> (&str, &str) {
    match kind {
        "lookup" => ("資格確認", "lookup"),
        "consent" => ("同意", "consent"),
        "info_view" => ("情報閲覧", "information view"),
        "reader_change" => ("カードリーダー", "reader change"),
        "link_change" => ("回線", "link change"),
        "certificate_inventory" => ("証明書", "certificates"),
        "card_check" => ("カード確認", "card check"),
        "loss" => ("欠損", "loss"),
        "outbox_pressure" => ("送信待ち容量", "outbox pressure"),
        other => (other, other),
    }
}

/// A card reader's state: Japanese, English.
fn reader_state_label(state: &str) -> (&str, &str) {
    match state {
        "present_empty" => ("接続中", "connected, no card"),
        "card_present" => ("カードあり", "card on the reader"),
        "removed" => ("取り外し", "removed"),
        "error" => ("エラー", "error"),
        other => (other, other),
    }
}

fn events_table(id: &str, events: &[SiteEvent]) -> Markup {
    html! {
        table id=(id) {
            thead {
                tr {
                    th { "日時 " span.en { "When (Tokyo)" } }
                    th { "種類 " span.en { "Kind" } }
                    th { "端末 " span.en { "Terminal" } }
                    th.num { "連番 " span.en { "Sequence" } }
                    th { "内容 " span.en { "Summary" } }
                }
            }
            tbody {
                @for event in events {
                    tr data-kind=(event.kind) data-sequence=(event.sequence) {
                        td { (tokyo(event.occurred_at)) }
                        @let (kind_ja, kind_en) = event_kind_label(&event.kind);
                        td { (kind_ja) " " span.en { (kind_en) } }
                        td { (event.terminal_id) }
                        td.num { (event.sequence) }
                        td {
                            @for (key, value) in event_summary(&event.body) {
                                span.field data-field=(key) { span.en { (key) } " " (value) } " "
                            }
                        }
                    }
                }
            }
        }
        @if events.is_empty() {
            p { "なし " span.en { "None" } }
        }
    }
}

fn owner_label(owner: onshi_domain::adoption::Owner) -> &'static str {
    use onshi_domain::adoption::Owner;
    match owner {
        Owner::Site => "施設 / site",
        Owner::ChainIt => "チェーンIT / chain IT",
        Owner::NetworkVendor => "回線業者 / network vendor",
        Owner::SystemVendor => "システム事業者 / system vendor",
    }
}

fn adoption_status_label(
    status: onshi_domain::adoption::SiteAdoption,
) -> (&'static str, &'static str) {
    use onshi_domain::adoption::SiteAdoption;
    match status {
        SiteAdoption::OnTrack => ("順調 / on track", "ok"),
        SiteAdoption::AtRisk => ("要注意 / at risk", "warn"),
        SiteAdoption::Overdue => ("期限超過 / overdue", "bad"),
        SiteAdoption::Live => ("運用開始 / live", "ok"),
    }
}

/// `2026-12-02` with its era; other text as it is.
fn era_date(text: &str) -> String {
    time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_or_else(|_| text.to_string(), date_with_era)
}

fn adoption_section(adoption: Option<&AdoptionView>) -> Markup {
    html! {
        section #adoption {
            h2 { "導入チェックリスト " span.en { "Adoption checklist" } }
            @match adoption {
                None => p { "導入計画はありません。 " span.en { "No adoption plan." } },
                Some(view) => {
                    @let (label, class) = adoption_status_label(view.status);
                    p #adoption-status class=(class) data-status=(serde_json::to_value(view.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) {
                        (label) " · 運用開始予定 " span.en { "planned start" } " " (era_date(&view.planned_start))
                    }
                    table #adoption-steps {
                        thead {
                            tr {
                                th { "手順 " span.en { "Step" } }
                                th { "担当 " span.en { "Owner" } }
                                th { "期限 " span.en { "Deadline" } }
                                th { "完了日 " span.en { "Done on" } }
                                th { "根拠 " span.en { "Evidence" } }
                            }
                        }
                        tbody {
                            @for step in &view.steps {
                                tr data-step=(serde_json::to_value(step.step).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
                                    data-done=(step.done_on.is_some()) {
                                    td { (step.label_ja) " " span.en { (step.label_en) } }
                                    td { (owner_label(step.owner)) }
                                    td { (era_date(&step.deadline)) }
                                    td { @match &step.done_on { Some(d) => (era_date(d)), None => "—" } }
                                    td.evidence {
                                        (step.evidence.as_deref().unwrap_or(""))
                                        @if step.by_agent { " " span.en { "(エージェント確認 / proved by the agent)" } }
                                    }
                                }
                            }
                        }
                    }
                    @if !view.grace_notifications.is_empty() {
                        p #grace-active { "猶予届出 " span.en { "grace notifications active" } ": "
                            (view.grace_notifications.len()) }
                    }
                }
            }
        }
    }
}

fn detail_body(site: &SiteDetail, adoption: Option<&AdoptionView>, now: OffsetDateTime) -> Markup {
    let (kind_ja, kind_en) = kind_of(&site.site_code);
    html! {
        div #site data-site=(site.site_code) {
            section #site-summary {
                dl.facts {
                    dt { "都道府県 " span.en { "Prefecture" } } dd { (prefecture_of(&site.site_code)) }
                    dt { "種別 " span.en { "Kind" } } dd { (kind_ja) " " span.en { (kind_en) } }
                    dt { "状態 " span.en { "Status" } }
                    dd #site-status data-status=(site.availability.as_ref().map_or("unknown", |a| a.state.as_str())) {
                        @match &site.availability {
                            None => (status_label(None)),
                            Some(a) => {
                                span class=(status_class(Some(&a.state))) { (status_label(Some(&a.state))) }
                                " · " (tokyo(a.since)) "〜 "
                                @if a.open_now { "営業中 " span.en { "open now" } }
                                @else { "営業時間外 " span.en { "closed now" } }
                                br; span.en { (a.detail) }
                            }
                        }
                    }
                    dt { "エージェント " span.en { "Agent version" } }
                    dd #agent-version { (site.streams.first().map_or("—", |s| s.agent_version.as_str())) }
                    dt { "最終通信 " span.en { "Last seen" } }
                    dd { (tokyo_or_dash(site.streams.first().map(|s| s.last_seen_at))) }
                    dt { "未送信 " span.en { "Outbox lag" } }
                    // Saturating: rows stored before central bounded sequences may claim up to i64::MAX.
                    dd { (count(site.streams.iter().fold(0i64, |sum, s| sum.saturating_add(s.lag)))) }
                    dt { "配信 " span.en { "Rollout" } }
                    dd #site-rollout {
                        (rollout_label(site.rollout_state.as_deref()))
                        @if let Some(v) = &site.rollout_version { " → " (v) }
                    }
                }
            }
            section #site-alerts {
                h2 { "未解決のアラート " span.en { "Open alerts" } }
                @if site.alerts.is_empty() { p { "なし " span.en { "None" } } }
                @else {
                    ul {
                        @for alert in &site.alerts {
                            li data-alert=(alert.id) { (alert.kind) " · " (tokyo(alert.opened_at)) " · " (alert.detail) }
                        }
                    }
                    a href="/alerts" { "アラート一覧 " span.en { "All alerts" } }
                }
            }
            section #inventory {
                h2 { "端末とカードリーダー " span.en { "Terminals and readers" } }
                @match &site.inventory {
                    None => p { "在庫情報はまだ届いていません。 " span.en { "No inventory received yet." } },
                    Some(inventory) => {
                        p { "報告 " span.en { "reported" } " " (tokyo(inventory.taken_at))
                            " · 受信 " span.en { "received" } " " (tokyo_or_dash(site.inventory_received_at)) }
                        ul #terminals {
                            @for terminal in &inventory.terminal_ids {
                                li data-terminal=(terminal.as_str()) { (terminal.as_str()) }
                            }
                        }
                        table #readers {
                            thead {
                                tr {
                                    th { "リーダー " span.en { "Reader" } }
                                    th { "状態 " span.en { "State" } }
                                    th.num { "読取 " span.en { "Cards read" } }
                                    th.num { "エラー " span.en { "Errors" } }
                                    th { "直近のエラー " span.en { "Last error" } }
                                }
                            }
                            tbody {
                                @for reader in &inventory.readers {
                                    @let state = serde_json::to_value(reader.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                                    tr data-reader=(reader.reader_name) data-state=(state) {
                                        td { (reader.reader_name) }
                                        @let (state_ja, state_en) = reader_state_label(&state);
                                        td class=[matches!(state.as_str(), "removed" | "error").then_some("bad")] {
                                            (state_ja) " " span.en { (state_en) }
                                        }
                                        td.num { (reader.cards_read) }
                                        td.num { (reader.errors) }
                                        td { (reader.last_error.as_deref().unwrap_or("")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "回線の履歴 " span.en { "Link history" } }
                (events_table("links", &site.links))
            }
            section {
                h2 { "証明書 " span.en { "Certificates" } }
                table #certificates {
                    thead {
                        tr {
                            th { "端末 " span.en { "Terminal" } }
                            th { "用途 " span.en { "Role" } }
                            th { "主体 " span.en { "Subject" } }
                            th { "有効期限 " span.en { "Expires" } }
                            th.num { "残り日数 " span.en { "Days left" } }
                        }
                    }
                    tbody {
                        @for c in &site.certificates {
                            @let days = central_store::certificates::days_to_expiry(now, c.not_after);
                            tr data-fingerprint=(c.sha256_fingerprint) class=[c.missing.then_some("missing")] {
                                td { (c.terminal_id) }
                                td { (c.role) }
                                td { (c.subject) @if c.missing { " " span.en { "(ファイルなし / file missing)" } } }
                                td { (date_with_era(super::format::tokyo_day(c.not_after))) }
                                td.num class=[(days < 30).then_some("warn")] { (days) }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "最近のイベント " span.en { "Recent events" } }
                (events_table("events", &site.events))
            }
            (adoption_section(adoption))
        }
    }
}

pub(crate) async fn detail_handler(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
) -> Result<Response, HttpError> {
    // The middleware checked the code and the scope.
    let site = SiteCode::parse(&site_code)
        .map_err(|e| ServiceError::BadRequest(format!("site code {site_code:?}: {e}")))?;
    let now = OffsetDateTime::now_utc();
    let (detail, adoption) = tokio::try_join!(
        state.store.site_detail(&site),
        state.store.adoption(&site, now)
    )?;
    let Some(mut detail) = detail else {
        let body = html! {
            p.error #not-found role="alert" {
                "施設 " (site.as_str()) " はセントラルに登録されていません。 "
                span.en { "Central does not know site " (site.as_str()) "." }
            }
            a href="/sites" { "施設一覧 " span.en { "All sites" } }
        };
        return Ok((
            StatusCode::NOT_FOUND,
            page(
                &principal,
                Nav::Sites,
                "施設が見つかりません / Site not found",
                body,
            ),
        )
            .into_response());
    };
    for event in detail.events.iter_mut().chain(detail.links.iter_mut()) {
        central_core::auth::without_identifiers(&principal, &mut event.body);
    }
    let title = match &detail.name {
        Some(name) => format!("{} {name}", detail.site_code),
        None => detail.site_code.clone(),
    };
    Ok(page(
        &principal,
        Nav::Sites,
        &title,
        detail_body(&detail, adoption.as_ref(), now),
    )
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        let mut p = Params::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "prefecture" => p.prefecture = v,
                "kind" => p.kind = v,
                "status" => p.status = v,
                "rollout" => p.rollout = v,
                "q" => p.q = v,
                "page" => p.page = v,
                _ => unreachable!(),
            }
        }
        p
    }

    #[test]
    fn filters_are_checked_and_empty_fields_mean_any() {
        let filter = params(&[
            ("prefecture", "13"),
            ("kind", "pharmacy"),
            ("status", "agent_down"),
            ("rollout", "none"),
            ("q", " 新宿 "),
            ("page", "2"),
        ])
        .filter()
        .unwrap();
        assert_eq!(filter.prefecture.as_deref(), Some("13"));
        assert_eq!(filter.fee_table, Some('4'));
        assert_eq!(filter.q.as_deref(), Some("新宿"));
        assert_eq!(filter.page, 2);
        let any = params(&[("prefecture", ""), ("kind", " ")])
            .filter()
            .unwrap();
        assert_eq!(
            any,
            SiteFilter {
                page: 1,
                ..SiteFilter::default()
            }
        );
    }

    #[test]
    fn the_status_filter_offers_every_availability_state() {
        for state in Availability::ALL {
            let filter = params(&[("status", state.as_str())]).filter().unwrap();
            assert_eq!(filter.status.as_deref(), Some(state.as_str()));
        }
        assert!(STATUSES.contains(&"terminal_not_answering"));
        assert_eq!(STATUSES.last(), Some(&"unknown"));
    }

    #[test]
    fn a_bad_filter_says_what_is_allowed() {
        for (field, value, expected) in [
            ("prefecture", "48", "01 to 47"),
            ("prefecture", "1", "01 to 47"),
            ("kind", "zoo", "pharmacy"),
            ("status", "sleeping", "agent_down"),
            ("rollout", "done", "applied"),
            ("page", "0", "page"),
            ("page", "x", "page"),
        ] {
            let error = params(&[(field, value)]).filter().unwrap_err();
            assert!(error.contains(expected), "{field}={value}: {error}");
        }
        let long = "a".repeat(MAX_Q + 1);
        assert!(params(&[("q", &long)]).filter().is_err());
    }

    #[test]
    fn pages_keep_the_filter() {
        let filter = params(&[("kind", "dental"), ("q", "a&b")])
            .filter()
            .unwrap();
        assert_eq!(query_string(&filter, 3), "?kind=dental&q=a%26b&page=3");
        assert_eq!(query_string(&SiteFilter::default(), 1), "");
    }

    #[test]
    fn an_event_summary_shows_only_its_listed_fields() {
        let body = serde_json::json!({
            "outcome": "valid",
            "patient_ref": "0123456789abcdef0123",
            "insurer_number": "06139993",
            "latency_ms": 120,
            "staff_id": "S01",
        });
        let summary = event_summary(&body);
        assert_eq!(
            summary,
            vec![
                ("outcome", "valid".to_string()),
                ("staff_id", "S01".to_string()),
                ("patient_ref", "0123456789ab…".to_string()),
            ]
        );
    }

    #[test]
    fn kinds_and_prefectures_come_from_the_code() {
        assert_eq!(kind_of("1341234566"), ("調剤", "pharmacy"));
        assert_eq!(prefecture_of("1341234566"), "東京都");
        assert_eq!(era_date("2026-12-02"), "2026-12-02（令和8年12月2日）");
        assert_eq!(era_date("soon"), "soon");
    }
}
