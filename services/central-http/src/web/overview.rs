//! `/`: the fleet at a glance for the sites in scope. Each tile carries `data-metric` and its
//! number in `.value[data-value]`; the lookups of the last day are the `#lookups-chart`.
//! A role without the fleet view (an auditor) is sent to the audit pages instead.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get};
use maud::{Markup, html};
use onshi_domain::availability::State as Availability;
use onshi_domain::calendar::JST;
use time::{Duration, OffsetDateTime};

use super::charts::{self, Series};
use super::format::{count, tokyo};
use super::layout::{Nav, page};
use crate::error::HttpError;
use crate::state::ApiState;
use central_core::auth::{Permission, Principal};
use central_store::dashboard::Overview;

/// Lookup outcomes in the order the chart stacks them: name, Japanese, English, CSS class.
pub(crate) const OUTCOMES: [(&str, &str, &str, &str); 5] = [
    ("valid", "有効", "valid", "bar-ok"),
    ("invalid", "無効", "invalid", "bar-warn"),
    ("not_found", "該当なし", "not found", "bar-muted"),
    ("error", "エラー", "error", "bar-bad"),
    ("unreachable", "接続不可", "unreachable", "bar-accent"),
];

fn outcome_label(outcome: &str) -> (&str, &str) {
    OUTCOMES
        .iter()
        .find(|(name, ..)| *name == outcome)
        .map_or((outcome, outcome), |(_, ja, en, _)| (ja, en))
}

/// `GET /`.
pub fn route() -> MethodRouter<ApiState> {
    get(page_handler)
}

async fn page_handler(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, HttpError> {
    if !principal.may(Permission::ViewFleet) {
        let to = if principal.may(Permission::ViewAudit) {
            "/audit"
        } else {
            "/account"
        };
        return Ok(Redirect::to(to).into_response());
    }
    let now = OffsetDateTime::now_utc();
    let overview = state.store.overview(&principal.scope, now).await?;
    Ok(page(
        &principal,
        Nav::Overview,
        "概況 / Fleet overview",
        body(&overview, now),
    )
    .into_response())
}

/// A tile: its label (Japanese, English), its number and what else it says.
fn tile(metric: &str, ja: &str, en: &str, value: i64, class: &str, more: Markup) -> Markup {
    html! {
        section.tile class=(class) data-metric=(metric) {
            h2 { (ja) " " span.en { (en) } }
            p.value data-value=(value) { (count(value)) }
            (more)
        }
    }
}

fn state_count(overview: &Overview, wanted: impl Fn(&str) -> bool) -> i64 {
    overview
        .availability
        .iter()
        .filter(|(state, _)| wanted(state))
        .map(|(_, n)| n)
        .sum()
}

/// Whether a site in `state` is not serving: anything but online, closed or not classified.
fn is_offline(state: &str) -> bool {
    !matches!(state, "online" | "closed" | "unknown")
}

fn availability_label(state: &str) -> String {
    Availability::parse(state).map_or_else(
        || "未判定 / not checked yet".to_string(),
        |s| s.label().to_string(),
    )
}

/// `counts` by outcome in [`OUTCOMES`] order, others after them by name.
fn in_outcome_order(counts: &[(String, i64)]) -> Vec<(&str, i64)> {
    let rank = |o: &str| {
        OUTCOMES
            .iter()
            .position(|(n, ..)| *n == o)
            .unwrap_or(OUTCOMES.len())
    };
    let mut out: Vec<(&str, i64)> = counts.iter().map(|(o, n)| (o.as_str(), *n)).collect();
    out.sort_by(|a, b| rank(a.0).cmp(&rank(b.0)).then(a.0.cmp(b.0)));
    out
}

/// The 24 hourly bars of the lookups chart: hour labels in Tokyo time and one series per
/// outcome (those known first, in [`OUTCOMES`] order, then any other the data has).
pub(crate) fn lookup_series(overview: &Overview) -> (Vec<String>, Vec<Series>) {
    let hours: Vec<OffsetDateTime> = (0..24)
        .map(|i| overview.hours_from + Duration::hours(i))
        .collect();
    let labels = hours
        .iter()
        .map(|h| format!("{:02}:00", h.to_offset(JST).hour()))
        .collect();
    let mut names: Vec<&str> = OUTCOMES.iter().map(|(n, ..)| *n).collect();
    for (_, outcome, _) in &overview.lookups_by_hour {
        if !names.contains(&outcome.as_str()) {
            names.push(outcome);
        }
    }
    let series = names
        .iter()
        .map(|name| {
            let (ja, en) = outcome_label(name);
            let class = OUTCOMES
                .iter()
                .find(|(n, ..)| n == name)
                .map_or("bar-muted", |(.., c)| c);
            let values = hours
                .iter()
                .map(|h| {
                    overview
                        .lookups_by_hour
                        .iter()
                        .filter(|(at, o, _)| at == h && o == name)
                        .map(|(.., n)| n)
                        .sum()
                })
                .collect();
            Series {
                label_ja: ja.to_string(),
                label_en: en.to_string(),
                class,
                values,
            }
        })
        .collect();
    (labels, series)
}

fn body(overview: &Overview, now: OffsetDateTime) -> Markup {
    let online = state_count(overview, |s| s == "online");
    let offline = state_count(overview, is_offline);
    let closed = state_count(overview, |s| s == "closed");
    let lookups_hour: i64 = overview.lookups_last_hour.iter().map(|(_, n)| n).sum();
    let (hours, series) = lookup_series(overview);
    let rollout_applied: i64 = overview.rollouts.iter().map(|r| r.applied).sum();
    let rollout_sites: i64 = overview.rollouts.iter().map(|r| r.sites).sum();
    html! {
        div #overview {
            p.as-of { "時点 " span.en { "As of" } " " (tokyo(now)) " · "
                "施設数 " span.en { "sites" } " "
                span #site-total data-value=(overview.sites) { (count(overview.sites)) } }
            div.tiles {
                (tile("sites-online", "稼働中の施設", "Sites online", online,
                      if online > 0 { "ok" } else { "" }, html! {
                    p.more { "営業時間外 " span.en { "closed" } " "
                        span data-metric="sites-closed" data-value=(closed) { (count(closed)) } }
                }))
                (tile("sites-offline", "停止中の施設", "Sites offline", offline,
                      if offline > 0 { "bad" } else { "" }, html! {
                    ul.breakdown {
                        @for (state, n) in &overview.availability {
                            @if is_offline(state) || state == "unknown" {
                                li data-state=(state) { (availability_label(state)) ": " (count(*n)) }
                            }
                        }
                    }
                    a href="/sites?status=agent_down" { "施設一覧 " span.en { "Site list" } }
                }))
                (tile("readers-down", "停止中のカードリーダー", "Readers down",
                      overview.readers_down, if overview.readers_down > 0 { "bad" } else { "" },
                      html! {
                    p.more { (count(overview.sites_with_readers_down)) " 施設 " span.en { "sites" } }
                }))
                (tile("links-down", "回線の断・劣化", "Links down or degraded",
                      overview.links_down + overview.links_degraded,
                      if overview.links_down > 0 { "bad" }
                      else if overview.links_degraded > 0 { "warn" } else { "" }, html! {
                    p.more {
                        "断 " span.en { "down" } " "
                        span data-metric="links-down-only" data-value=(overview.links_down) {
                            (count(overview.links_down)) }
                        " · 劣化 " span.en { "degraded" } " "
                        span data-metric="links-degraded" data-value=(overview.links_degraded) {
                            (count(overview.links_degraded)) }
                    }
                }))
                (tile("outbox-lag", "未送信のイベント", "Outbox lag (events)", overview.outbox_lag,
                      if overview.outbox_lag > 0 { "warn" } else { "" }, html! {
                    @if let Some((site, n)) = &overview.worst_lag {
                        p.more #worst-lag data-site=(site) {
                            "最大 " span.en { "worst" } " "
                            a href=(format!("/sites/{site}")) { (site) } ": " (count(*n))
                        }
                    }
                }))
                (tile("open-alerts", "未解決のアラート", "Open alerts", overview.open_alerts,
                      if overview.unacknowledged_alerts > 0 { "bad" } else { "" }, html! {
                    p.more {
                        "未確認 " span.en { "unacknowledged" } " "
                        span data-metric="unacknowledged-alerts"
                            data-value=(overview.unacknowledged_alerts) {
                            (count(overview.unacknowledged_alerts)) }
                        " " a href="/alerts" { "一覧 " span.en { "list" } }
                    }
                }))
                (tile("lookups-hour", "直近1時間の照会", "Lookups, last hour", lookups_hour, "",
                      html! {
                    ul.breakdown {
                        @for (outcome, n) in in_outcome_order(&overview.lookups_last_hour) {
                            @let (ja, en) = outcome_label(outcome);
                            li data-result=(outcome) data-value=(n) {
                                (ja) " " span.en { (en) } ": " (count(n))
                            }
                        }
                    }
                }))
                (tile("certificates-expiring", "30日以内に期限切れの証明書",
                      "Certificates expiring within 30 days", overview.certificates_expiring,
                      if overview.certificates_expiring > 0 { "warn" } else { "" }, html! {
                    p.more {
                        "期限切れ " span.en { "expired" } " "
                        span data-metric="certificates-expired"
                            data-value=(overview.certificates_expired) {
                            (count(overview.certificates_expired)) }
                        " " a href="/certificates" { "証明書 " span.en { "certificates" } }
                    }
                }))
                (tile("rollout-progress", "配信中のロールアウト", "Rollout progress (sites applied)",
                      rollout_applied, "", html! {
                    p.more { "対象 " span.en { "of" } " " (count(rollout_sites)) }
                    ul.breakdown {
                        @for r in &overview.rollouts {
                            li data-rollout=(r.id) data-applied=(r.applied) data-sites=(r.sites) {
                                a href="/rollout" { "#" (r.id) " " (r.target_version) }
                                " (" (r.state) ", wave " (r.current_wave + 1) "): "
                                (count(r.applied)) " / " (count(r.sites))
                            }
                        }
                        @if overview.rollouts.is_empty() {
                            li { "なし " span.en { "none running" } }
                        }
                    }
                }))
            }
            h2 { "照会件数（1時間ごと、直近24時間） " span.en { "Lookups per hour, last 24 hours" } }
            (charts::stacked_bars(
                "lookups-chart",
                "結果別の照会件数（1時間ごと、直近24時間、東京時間） / Lookups per hour by result, last 24 hours (Tokyo time)",
                &hours,
                3,
                &series,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_chart_has_24_tokyo_hours_and_every_outcome() {
        let from = datetime!(2026-12-01 06:00 UTC);
        let overview = Overview {
            hours_from: from,
            lookups_by_hour: vec![
                (from, "valid".into(), 3),
                (from + Duration::hours(23), "error".into(), 2),
                (from + Duration::hours(23), "strange".into(), 1),
            ],
            sites: 0,
            availability: vec![],
            readers_down: 0,
            sites_with_readers_down: 0,
            links_down: 0,
            links_degraded: 0,
            outbox_lag: 0,
            worst_lag: None,
            open_alerts: 0,
            unacknowledged_alerts: 0,
            lookups_last_hour: vec![],
            certificates_expiring: 0,
            certificates_expired: 0,
            rollouts: vec![],
        };
        let (hours, series) = lookup_series(&overview);
        assert_eq!(hours.len(), 24);
        assert_eq!(hours[0], "15:00");
        assert_eq!(hours[23], "14:00");
        assert_eq!(series.len(), 6);
        assert_eq!(series[0].values[0], 3);
        assert_eq!(series[3].values[23], 2);
        assert_eq!(series[5].label_en, "strange");
        assert_eq!(series[5].values[23], 1);
    }

    #[test]
    fn offline_means_neither_online_nor_closed() {
        assert!(is_offline("agent_down"));
        assert!(is_offline("reader_unplugged"));
        assert!(!is_offline("online"));
        assert!(!is_offline("closed"));
        assert!(!is_offline("unknown"));
    }

    #[test]
    fn the_last_hour_lists_outcomes_as_the_chart_stacks_them() {
        let counts = vec![
            ("error".to_string(), 1),
            ("strange".to_string(), 2),
            ("valid".to_string(), 3),
        ];
        assert_eq!(
            in_outcome_order(&counts),
            vec![("valid", 3), ("error", 1), ("strange", 2)]
        );
    }
}
