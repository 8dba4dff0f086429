//! `/rollout`: adoption across the chain (the per-prefecture table, the funnel, the sites at
//! risk or overdue) and the agent version rollouts with the form that starts one;
//! `/rollouts/{id}`: one rollout's waves, gates, sites and transitions, and the operator's
//! pause / resume / rollback.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use onshi_domain::adoption::{Owner, PrefectureRow, SiteAdoption};
use onshi_domain::rollout::{Gates, Wave};
use serde::Deserialize;
use time::{Date, OffsetDateTime};

use super::charts::{self, Bar};
use super::format::{count, date_with_era, tokyo};
use super::layout::{Nav, csrf_field, page};
use crate::error::HttpError;
use crate::state::ApiState;
use central_core::auth::{Permission, Principal};
use central_core::error::ServiceError;
use central_core::service;
use central_store::StoreError;
use central_store::adoption::AdoptionView;
use central_store::dashboard_rollout::{RolloutDetail, RolloutSummary};
use central_store::rollouts::NewRollout;

/// Rollouts the page lists.
const LISTED_ROLLOUTS: i64 = 20;

const TITLE: &str = "導入・配信 / Rollout";

fn rollout_state(state: &str) -> (&'static str, &'static str) {
    match state {
        "running" => ("実行中", "running"),
        "paused" => ("一時停止中", "paused"),
        "completed" => ("完了", "completed"),
        "rolled_back" => ("切り戻し済み", "rolled back"),
        _ => ("不明", "unknown"),
    }
}

fn site_state(state: &str) -> (&'static str, &'static str) {
    match state {
        "pending" => ("待機", "pending"),
        "targeted" => ("配信指示済み", "targeted"),
        "applied" => ("適用済み", "applied"),
        "failed" => ("失敗", "failed"),
        "rolled_back" => ("切り戻し", "rolled back"),
        _ => ("不明", "unknown"),
    }
}

fn window_label(window: &str) -> (&'static str, &'static str) {
    match window {
        "any" => ("いつでも", "any time"),
        _ => ("営業時間外のみ", "outside opening hours"),
    }
}

fn failure_label(on_failure: &str) -> (&'static str, &'static str) {
    match on_failure {
        "rollback" => ("切り戻す", "roll back"),
        _ => ("一時停止する", "pause"),
    }
}

fn owner_label(owner: Owner) -> (&'static str, &'static str) {
    match owner {
        Owner::Site => ("施設", "site"),
        Owner::ChainIt => ("本部IT", "chain IT"),
        Owner::NetworkVendor => ("回線事業者", "network vendor"),
        Owner::SystemVendor => ("システム事業者", "system vendor"),
    }
}

fn both((ja, en): (&str, &str)) -> Markup {
    html! { (ja) " " span.en { (en) } }
}

/// `5% → 25% → 100%`, or the named sites of a wave.
fn wave_text(wave: &Wave) -> String {
    match wave {
        Wave::Share { share } => format!("{share}%"),
        Wave::Sites { sites } => format!("{} 施設 / sites", sites.len()),
    }
}

fn waves_of(value: &serde_json::Value) -> Vec<Wave> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

fn plan_text(value: &serde_json::Value) -> String {
    waves_of(value)
        .iter()
        .map(wave_text)
        .collect::<Vec<_>>()
        .join(" → ")
}

fn day(text: &str) -> Option<Date> {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

fn day_or_text(text: &str) -> String {
    day(text).map_or_else(|| text.to_string(), date_with_era)
}

// ------------------------------------------------------------------------------- adoption

fn prefecture_table(rows: &[PrefectureRow]) -> Markup {
    let sum = |f: fn(&PrefectureRow) -> u64| rows.iter().map(f).sum::<u64>();
    let all = sum(|r| r.institutions);
    let rate = |part: u64| (part * 100 + all / 2).checked_div(all).unwrap_or(0);
    let cell =
        |n: u64, pct: u64| html! { td.num { (count(n as i64)) " " span.en { "(" (pct) "%)" } } };
    html! {
        table #prefectures {
            thead {
                tr {
                    th { "都道府県 " span.en { "Prefecture" } }
                    th.num { "施設数 " span.en { "Institutions" } }
                    th.num { "カードリーダー申込 " span.en { "Card reader applied" } }
                    th.num { "本番接続 " span.en { "Production connected" } }
                    th.num { "運用開始 " span.en { "Operating" } }
                }
            }
            tbody {
                @for r in rows {
                    tr data-prefecture=(r.prefecture.as_str()) {
                        th scope="row" {
                            (r.prefecture.name_ja()) " " span.en { (r.prefecture.name_en()) }
                        }
                        td.num { (count(r.institutions as i64)) }
                        (cell(r.card_reader_applied, r.card_reader_rate))
                        (cell(r.production_connected, r.connected_rate))
                        (cell(r.operating, r.operating_rate))
                    }
                }
                @if rows.is_empty() {
                    tr { td colspan="5" { "施設がありません / no sites" } }
                }
            }
            tfoot {
                tr #prefecture-totals {
                    th scope="row" { "計 " span.en { "Total" } }
                    td.num { (count(all as i64)) }
                    (cell(sum(|r| r.card_reader_applied), rate(sum(|r| r.card_reader_applied))))
                    (cell(sum(|r| r.production_connected), rate(sum(|r| r.production_connected))))
                    (cell(sum(|r| r.operating), rate(sum(|r| r.operating))))
                }
            }
        }
    }
}

fn funnel(rows: &[PrefectureRow]) -> Markup {
    let sum = |f: fn(&PrefectureRow) -> u64| rows.iter().map(f).sum::<u64>();
    let all = sum(|r| r.institutions);
    let pct = |n: u64| {
        let rate = (n * 100 + all / 2).checked_div(all).unwrap_or(0);
        Some(format!("{rate}%"))
    };
    let bar = |label: &str, n: u64, class| Bar {
        label: label.to_string(),
        value: n as i64,
        note: pct(n),
        class,
    };
    charts::horizontal_bars(
        "funnel",
        "導入の進み具合 / Adoption funnel",
        &[
            bar("導入予定 / Planned", all, "bar-muted"),
            bar(
                "カードリーダー申込 / Card reader applied",
                sum(|r| r.card_reader_applied),
                "bar-accent",
            ),
            bar(
                "本番接続 / Production connected",
                sum(|r| r.production_connected),
                "bar-accent",
            ),
            bar("運用開始 / Operating", sum(|r| r.operating), "bar-ok"),
        ],
    )
}

/// The sites at risk or overdue, overdue first, then by the open step's deadline.
fn at_risk(views: &[AdoptionView]) -> Markup {
    let mut late: Vec<(&AdoptionView, Option<&central_store::adoption::StepView>)> = views
        .iter()
        .filter(|v| matches!(v.status, SiteAdoption::AtRisk | SiteAdoption::Overdue))
        .map(|v| (v, v.steps.iter().find(|s| Some(s.step) == v.reason)))
        .collect();
    late.sort_by(|(a, sa), (b, sb)| {
        (b.status == SiteAdoption::Overdue)
            .cmp(&(a.status == SiteAdoption::Overdue))
            .then_with(|| {
                sa.map(|s| s.deadline.as_str())
                    .cmp(&sb.map(|s| s.deadline.as_str()))
            })
            .then_with(|| a.site_code.cmp(&b.site_code))
    });
    html! {
        table #at-risk {
            thead {
                tr {
                    th { "施設 " span.en { "Site" } }
                    th { "状態 " span.en { "Status" } }
                    th { "遅れている手順 " span.en { "Step behind" } }
                    th { "担当 " span.en { "Owner" } }
                    th { "期限 " span.en { "Deadline" } }
                    th { "運用開始予定 " span.en { "Planned start" } }
                }
            }
            tbody {
                @for (view, step) in &late {
                    @let overdue = view.status == SiteAdoption::Overdue;
                    tr data-site=(view.site_code)
                        data-status=(if overdue { "overdue" } else { "at_risk" })
                        class=(if overdue { "overdue" } else { "at-risk" }) {
                        td { a href=(format!("/sites/{}", view.site_code)) { (view.site_code) } }
                        td {
                            @if overdue {
                                span.bad { "期限超過 " span.en { "overdue" } }
                            } @else {
                                span.warn { "遅延の恐れ " span.en { "at risk" } }
                            }
                        }
                        @if let Some(step) = step {
                            td { (step.label_ja) " " span.en { (step.label_en) } }
                            td { (both(owner_label(step.owner))) }
                            td.deadline { (day_or_text(&step.deadline)) }
                        } @else {
                            td { "—" } td { "—" } td { "—" }
                        }
                        td { (day_or_text(&view.planned_start)) }
                    }
                }
                @if late.is_empty() {
                    tr.none { td colspan="6" { "遅れている施設はありません / no site is at risk or overdue" } }
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------- rollouts

fn rollouts_table(rollouts: &[RolloutSummary]) -> Markup {
    html! {
        table #rollouts {
            thead {
                tr {
                    th { "番号 " span.en { "No." } }
                    th { "状態 " span.en { "State" } }
                    th { "配信するバージョン " span.en { "Target version" } }
                    th { "ウェーブ " span.en { "Waves" } }
                    th.num { "適用済み / 対象 " span.en { "Sites applied / total" } }
                    th { "開始 " span.en { "Started" } }
                }
            }
            tbody {
                @for r in rollouts {
                    tr data-rollout=(r.id) data-state=(r.state) {
                        td { a href=(format!("/rollouts/{}", r.id)) { "#" (r.id) } }
                        td { (both(rollout_state(&r.state))) }
                        td { code { (r.target_version) } }
                        td {
                            (plan_text(&r.waves))
                            " " span.en { "(" (r.current_wave) "番目 / wave " (r.current_wave) ")" }
                        }
                        td.num {
                            span.applied { (count(r.applied)) } " / " span.total { (count(r.sites)) }
                            @if r.failed > 0 {
                                " " span.bad { "失敗 " (r.failed) " / failed" }
                            }
                        }
                        td { (tokyo(r.created_at)) " " span.en { (r.created_by) } }
                    }
                }
                @if rollouts.is_empty() {
                    tr { td colspan="6" { "配信はまだありません / no rollout yet" } }
                }
            }
        }
    }
}

/// What the start form was given (kept to show it again with a message).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StartForm {
    target_version: Option<String>,
    waves: Option<String>,
    window: Option<String>,
    on_gate_failure: Option<String>,
}

impl StartForm {
    /// The rollout asked for, or what is wrong (Japanese, then English).
    fn rollout(&self) -> Result<NewRollout, String> {
        let target_version = self
            .target_version
            .as_deref()
            .unwrap_or("")
            .trim()
            .to_string();
        if target_version.is_empty() {
            return Err(
                "配信するバージョンを入力してください / give the agent version to roll out".into(),
            );
        }
        let waves_text = self.waves.as_deref().unwrap_or("").trim();
        let waves = waves_text
            .split(',')
            .map(|w| w.trim().trim_end_matches('%').trim())
            .filter(|w| !w.is_empty())
            .map(|w| {
                w.parse::<u8>()
                    .ok()
                    .filter(|s| (1..=100).contains(s))
                    .map(|share| Wave::Share { share })
                    .ok_or_else(|| {
                        format!(
                            "ウェーブは1〜100の割合をカンマで区切って入力します（例: 5,25,100） / \
                             waves are shares from 1 to 100 separated by commas (e.g. 5,25,100), \
                             not {w:?}"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        onshi_domain::rollout::check_plan(&waves).map_err(|e| {
            format!(
                "ウェーブの割合は増えていき、最後は100にします / shares grow and the last is \
                 100: {e}"
            )
        })?;
        let window = self
            .window
            .as_deref()
            .unwrap_or("outside_opening_hours")
            .to_string();
        if !["outside_opening_hours", "any"].contains(&window.as_str()) {
            return Err(format!(
                "配信の時間帯が正しくありません / window is outside_opening_hours or any, not \
                 {window:?}"
            ));
        }
        let on_gate_failure = self
            .on_gate_failure
            .as_deref()
            .unwrap_or("pause")
            .to_string();
        if !["pause", "rollback"].contains(&on_gate_failure.as_str()) {
            return Err(format!(
                "ゲート不合格時の動作が正しくありません / on_gate_failure is pause or rollback, \
                 not {on_gate_failure:?}"
            ));
        }
        Ok(NewRollout {
            target_version,
            waves,
            gates: Gates::default(),
            window,
            on_gate_failure,
            soak_secs: 3600,
            apply_timeout_secs: 86_400,
        })
    }
}

fn start_form(principal: &Principal, form: &StartForm, error: Option<&str>) -> Markup {
    let window = form.window.as_deref().unwrap_or("outside_opening_hours");
    let on_failure = form.on_gate_failure.as_deref().unwrap_or("pause");
    html! {
        form #start-rollout .stacked method="post" action="/rollouts" {
            (csrf_field(principal))
            @if let Some(error) = error {
                p.error #start-error role="alert" { (error) }
            }
            label for="target_version" { "配信するバージョン " span.en { "Target version" } }
            input #target_version name="target_version" required maxlength="64"
                placeholder="0.2.0" value=[form.target_version.as_deref()];
            label for="waves" {
                "ウェーブ（累積の割合 %） " span.en { "Waves (cumulative shares, %)" }
            }
            input #waves name="waves" required value=(form.waves.as_deref().unwrap_or("5,25,100"));
            label for="window" { "配信の時間帯 " span.en { "Window" } }
            select #window name="window" {
                @for value in ["outside_opening_hours", "any"] {
                    @let (ja, en) = window_label(value);
                    option value=(value) selected[window == value] { (ja) " / " (en) }
                }
            }
            label for="on_gate_failure" { "ゲート不合格のとき " span.en { "On gate failure" } }
            select #on_gate_failure name="on_gate_failure" {
                @for value in ["pause", "rollback"] {
                    @let (ja, en) = failure_label(value);
                    option value=(value) selected[on_failure == value] { (ja) " / " (en) }
                }
            }
            button #start type="submit" { "配信を開始 / Start rollout" }
        }
    }
}

async fn rollout_page(
    state: &ApiState,
    principal: &Principal,
    form: &StartForm,
    error: Option<&str>,
) -> Result<Markup, HttpError> {
    let now = OffsetDateTime::now_utc();
    let store = &state.store;
    let scope = &principal.scope;
    let ((prefectures, views), rollouts) = tokio::try_join!(
        async {
            store
                .adoption_overview(now, scope)
                .await
                .map_err(ServiceError::from)
        },
        service::rollouts::summaries(store, scope, LISTED_ROLLOUTS),
    )?;
    let body = html! {
        section #adoption {
            h2 { "導入状況 " span.en { "Adoption" } }
            (funnel(&prefectures))
            (prefecture_table(&prefectures))
            h3 { "遅れている施設 " span.en { "Sites at risk or overdue" } }
            (at_risk(&views))
        }
        section #agent-rollouts {
            h2 { "エージェントの配信 " span.en { "Agent version rollouts" } }
            (rollouts_table(&rollouts))
            @if principal.may(Permission::Administer) {
                h3 { "新しい配信 " span.en { "Start a rollout" } }
                (start_form(principal, form, error))
            }
        }
    };
    Ok(page(principal, Nav::Rollout, TITLE, body))
}

/// `GET /rollout`.
pub async fn overview(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
) -> Result<Markup, HttpError> {
    rollout_page(&state, &principal, &StartForm::default(), None).await
}

/// `POST /rollouts`: starts a rollout and shows it (303), or shows the form again with what is
/// wrong (400).
pub async fn start(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Form(form): Form<StartForm>,
) -> Result<Response, HttpError> {
    principal.require(Permission::Administer)?;
    let message = match form.rollout() {
        Ok(new) => {
            let now = OffsetDateTime::now_utc();
            match state
                .store
                .create_rollout(&new, &principal.audit_name(), now)
                .await
            {
                Ok(id) => return Ok(Redirect::to(&format!("/rollouts/{id}")).into_response()),
                Err(StoreError::BadQuery(message)) => {
                    format!("配信を開始できません / the rollout cannot start: {message}")
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(message) => message,
    };
    let markup = rollout_page(&state, &principal, &form, Some(&message)).await?;
    Ok((StatusCode::BAD_REQUEST, markup).into_response())
}

// ------------------------------------------------------------------------------- one rollout

fn gates_table(gates: &Gates) -> Markup {
    let rows: [(&str, &str, String); 6] = [
        (
            "照会成功率の低下（最大）",
            "Largest drop of the lookup success rate",
            format!("{:.1} pt", gates.max_success_drop_pct),
        ),
        (
            "カードリーダーエラー率の上昇（最大）",
            "Largest rise of the reader error rate",
            format!("{:.1} pt", gates.max_reader_error_rise_pct),
        ),
        (
            "未送信イベント（最大）",
            "Largest outbox backlog",
            count(gates.max_backlog),
        ),
        (
            "オフライン施設の割合（最大）",
            "Largest share of sites offline",
            format!("{:.0}%", gates.max_offline_pct),
        ),
        (
            "適用失敗の割合（最大）",
            "Largest share of sites failing to apply",
            format!("{:.0}%", gates.max_failed_pct),
        ),
        (
            "成功率を比べる最少の照会数",
            "Fewest lookups to compare the success rate",
            count(gates.min_lookups),
        ),
    ];
    html! {
        table #gates {
            tbody {
                @for (ja, en, value) in rows {
                    tr { th scope="row" { (ja) " " span.en { (en) } } td.num { (value) } }
                }
            }
        }
    }
}

fn waves_table(detail: &RolloutDetail) -> Markup {
    let waves = waves_of(&detail.summary.waves);
    html! {
        table #waves {
            thead {
                tr {
                    th { "ウェーブ " span.en { "Wave" } }
                    th { "計画 " span.en { "Plan" } }
                    th.num { "施設 " span.en { "Sites" } }
                    th.num { "適用済み " span.en { "Applied" } }
                    th.num { "配信中・待機 " span.en { "Targeted / pending" } }
                    th.num { "失敗 " span.en { "Failed" } }
                    th.num { "切り戻し " span.en { "Rolled back" } }
                }
            }
            tbody {
                @for (i, wave) in waves.iter().enumerate() {
                    @let n = i as i32 + 1;
                    @let sites: Vec<_> = detail.sites.iter().filter(|s| s.wave == n).collect();
                    @let of = |state: &str| sites.iter().filter(|s| s.state == state).count() as i64;
                    tr data-wave=(n) class=[(n == detail.summary.current_wave).then_some("current")] {
                        th scope="row" {
                            (n)
                            @if n == detail.summary.current_wave { " 現在 " span.en { "current" } }
                        }
                        td { (wave_text(wave)) }
                        td.num { (count(sites.len() as i64)) }
                        td.num { (count(of("applied"))) }
                        td.num { (count(of("targeted") + of("pending"))) }
                        td.num { (count(of("failed"))) }
                        td.num { (count(of("rolled_back"))) }
                    }
                }
            }
        }
    }
}

fn action_forms(principal: &Principal, detail: &RolloutDetail) -> Markup {
    let id = detail.summary.id;
    let state = detail.summary.state.as_str();
    let actions: [(&str, bool, &str); 3] = [
        ("pause", state == "running", "一時停止 / Pause"),
        ("resume", state == "paused", "再開 / Resume"),
        (
            "rollback",
            matches!(state, "running" | "paused"),
            "切り戻し / Roll back",
        ),
    ];
    html! {
        @if principal.may(Permission::Administer) {
            div.actions {
                @for (action, applies, label) in actions {
                    @if applies {
                        form.inline id=(action) method="post"
                            action=(format!("/rollouts/{id}/{action}")) {
                            (csrf_field(principal))
                            button type="submit" { (label) }
                        }
                    }
                }
            }
        }
    }
}

fn detail_body(principal: &Principal, detail: &RolloutDetail, error: Option<&str>) -> Markup {
    let r = &detail.summary;
    let gates: Gates = serde_json::from_value(detail.gates.clone()).unwrap_or_default();
    html! {
        section #rollout data-rollout=(r.id) {
            p { a href="/rollout" { "← 導入・配信 / Rollout" } }
            @if let Some(error) = error {
                p.error #action-error role="alert" { (error) }
            }
            dl.facts {
                dt { "状態 " span.en { "State" } }
                dd { span #rollout-state .state data-state=(r.state) { (both(rollout_state(&r.state))) } }
                dt { "配信するバージョン " span.en { "Target version" } }
                dd { code #target-version { (r.target_version) } }
                dt { "現在のウェーブ " span.en { "Current wave" } }
                dd { (r.current_wave) " / " (waves_of(&r.waves).len()) }
                dt { "適用済み / 対象 " span.en { "Sites applied / total" } }
                dd #applied { (count(r.applied)) " / " (count(r.sites)) }
                dt { "配信の時間帯 " span.en { "Window" } }
                dd { (both(window_label(&r.window))) }
                dt { "ゲート不合格のとき " span.en { "On gate failure" } }
                dd { (both(failure_label(&r.on_gate_failure))) }
                dt { "様子見の時間・適用の期限 " span.en { "Soak, apply timeout" } }
                dd { (detail.soak_secs / 60) "分 / min, " (detail.apply_timeout_secs / 3600) "時間 / h" }
                dt { "開始 " span.en { "Started" } }
                dd { (tokyo(r.created_at)) " " span.en { (r.created_by) } }
            }
            (action_forms(principal, detail))
            h2 { "ウェーブ " span.en { "Waves" } }
            (waves_table(detail))
            h2 { "ゲート " span.en { "Health gates" } }
            (gates_table(&gates))
            h2 { "施設ごとの状態 " span.en { "Sites" } }
            table #rollout-sites {
                thead {
                    tr {
                        th { "施設 " span.en { "Site" } }
                        th.num { "ウェーブ " span.en { "Wave" } }
                        th { "状態 " span.en { "State" } }
                        th { "以前のバージョン " span.en { "Previous version" } }
                        th { "配信指示 " span.en { "Targeted" } }
                        th { "結果 " span.en { "Reported" } }
                    }
                }
                tbody {
                    @for s in &detail.sites {
                        tr data-site=(s.site_code) data-state=(s.state) {
                            td { a href=(format!("/sites/{}", s.site_code)) { (s.site_code) } }
                            td.num { (s.wave) }
                            td { (both(site_state(&s.state))) }
                            td { code { (s.previous_version) } }
                            td { (super::format::tokyo_or_dash(s.targeted_at)) }
                            td { (super::format::tokyo_or_dash(s.reported_at)) }
                        }
                    }
                    @if detail.sites.is_empty() {
                        tr { td colspan="6" {
                            "施設はまだ割り当てられていません（次の制御周期で割り当て） / no site assigned yet (the controller's next pass assigns them)"
                        } }
                    }
                }
            }
            h2 { "経過 " span.en { "Transitions" } }
            table #transitions {
                thead {
                    tr {
                        th { "日時 " span.en { "At (JST)" } }
                        th { "変化 " span.en { "Change" } }
                        th.num { "ウェーブ " span.en { "Wave" } }
                        th { "理由 " span.en { "Reason" } }
                        th { "実行者 " span.en { "By" } }
                    }
                }
                tbody {
                    @for t in &detail.transitions {
                        tr data-to=(t.to_state) {
                            td { (tokyo(t.at)) }
                            td {
                                @if let Some(from) = &t.from_state {
                                    (rollout_state(from).0) " → "
                                }
                                (rollout_state(&t.to_state).0)
                                " " span.en {
                                    @if let Some(from) = &t.from_state { (rollout_state(from).1) " → " }
                                    (rollout_state(&t.to_state).1)
                                }
                            }
                            td.num { (t.wave) }
                            td { (t.reason) }
                            td { (t.actor) }
                        }
                    }
                }
            }
        }
    }
}

async fn detail_page(
    state: &ApiState,
    principal: &Principal,
    id: i64,
    error: Option<&str>,
) -> Result<Markup, HttpError> {
    let detail = service::rollouts::detail(&state.store, &principal.scope, id).await?;
    let title = format!("配信 #{id} / Rollout #{id}");
    Ok(page(
        principal,
        Nav::Rollout,
        &title,
        detail_body(principal, &detail, error),
    ))
}

/// `GET /rollouts/{id}`.
pub async fn detail(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Markup, HttpError> {
    detail_page(&state, &principal, id, None).await
}

/// `POST /rollouts/{id}/{action}` (pause, resume, rollback): 303 back to the rollout, or the
/// rollout again with why the action does not apply (400).
pub async fn act(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path((id, action)): Path<(i64, String)>,
) -> Result<Response, HttpError> {
    principal.require(Permission::Administer)?;
    match service::rollouts::act(&state.store, id, &action, &principal.audit_name()).await {
        Ok(()) => Ok(Redirect::to(&format!("/rollouts/{id}")).into_response()),
        Err(ServiceError::BadRequest(message)) => {
            let message = format!("操作できません / the action does not apply: {message}");
            let markup = detail_page(&state, &principal, id, Some(&message)).await?;
            Ok((StatusCode::BAD_REQUEST, markup).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(version: &str, waves: &str) -> StartForm {
        StartForm {
            target_version: Some(version.into()),
            waves: Some(waves.into()),
            window: Some("any".into()),
            on_gate_failure: Some("rollback".into()),
        }
    }

    #[test]
    fn the_start_form_reads_shares_and_refuses_a_bad_plan_in_both_languages() {
        let new = form("0.2.0", "5, 25%, 100").rollout().unwrap();
        assert_eq!(
            new.waves,
            vec![
                Wave::Share { share: 5 },
                Wave::Share { share: 25 },
                Wave::Share { share: 100 }
            ]
        );
        assert_eq!(
            (new.window.as_str(), new.on_gate_failure.as_str()),
            ("any", "rollback")
        );
        for (f, needle) in [
            (form("", "100"), "version"),
            (form("0.2.0", "5,x"), "\"x\""),
            (form("0.2.0", "50,25,100"), "shares grow"),
            (form("0.2.0", "5,25"), "shares grow"),
            (form("0.2.0", ""), "shares grow"),
        ] {
            let error = f.rollout().unwrap_err();
            assert!(error.contains(needle), "{error}");
            assert!(error.contains(" / "), "{error}");
        }
    }

    #[test]
    fn a_plan_reads_as_arrows() {
        let waves = serde_json::json!([{"share": 5}, {"sites": ["1310000216"]}, {"share": 100}]);
        assert_eq!(plan_text(&waves), "5% → 1 施設 / sites → 100%");
    }
}
