//! `/certificates`: every certificate the sites in scope hold, soonest expiry first, with
//! filters, the expiry timeline of the next twelve months, and the same listing as CSV
//! (`/certificates.csv`, audited like every export).

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use onshi_domain::calendar::JST;
use onshi_domain::ids::Prefecture;
use onshi_domain::site::SiteCode;
use serde::Deserialize;
use time::OffsetDateTime;

use super::charts::{self, Series};
use super::format::{count, date_with_era, tokyo, tokyo_day};
use super::layout::{Nav, page};
use crate::error::HttpError;
use crate::state::ApiState;
use central_core::auth::{Permission, Principal, SiteScope};
use central_core::error::ServiceError;
use central_store::CertificateRow;
use central_store::dashboard_rollout::CertificateFilter;

/// Rows the page shows; the CSV has them all.
const PAGE_ROWS: i64 = 1_000;
/// Months the expiry timeline covers, this one included.
const TIMELINE_MONTHS: u8 = 12;
const DEFAULT_WITHIN_DAYS: i64 = 30;

/// The roles an agent reports, as the page names them (Japanese, English).
const ROLES: [(&str, &str, &str, &str); 3] = [
    ("terminal", "端末証明書", "Terminal", "bar-accent"),
    (
        "agent",
        "エージェント証明書",
        "Agent (to central)",
        "bar-ok",
    ),
    ("ca", "CA証明書", "CA", "bar-muted"),
];

const WITHIN_CHOICES: [i64; 7] = [7, 15, 30, 60, 90, 180, 365];

/// The filter form as the browser sends it: empty fields mean "any".
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    /// Days, or `all`.
    within: Option<String>,
    kind: Option<String>,
    site: Option<String>,
    prefecture: Option<String>,
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn role_label(role: &str) -> (&str, &str) {
    ROLES
        .iter()
        .find(|(r, ..)| *r == role)
        .map_or((role, role), |(_, ja, en, _)| (ja, en))
}

impl Params {
    /// The filter, or what is wrong with the form (Japanese, then English).
    fn filter(&self) -> Result<CertificateFilter, String> {
        let within_days = match present(&self.within) {
            None => Some(DEFAULT_WITHIN_DAYS),
            Some("all") => None,
            Some(days) => Some(
                days.parse::<i64>()
                    .ok()
                    .filter(|d| (0..=36_500).contains(d))
                    .ok_or_else(|| {
                        format!(
                            "期間は0〜36500日か「すべて」です / within is 0 to 36500 days or \
                             all, not {days:?}"
                        )
                    })?,
            ),
        };
        let role = present(&self.kind)
            .map(|kind| {
                ROLES
                    .iter()
                    .find(|(r, ..)| *r == kind)
                    .map(|(r, ..)| r.to_string())
                    .ok_or_else(|| {
                        format!(
                            "種別は terminal / agent / ca のいずれかです / kind is terminal, \
                             agent or ca, not {kind:?}"
                        )
                    })
            })
            .transpose()?;
        let site = present(&self.site)
            .map(|code| {
                SiteCode::parse(code)
                    .map_err(|e| format!("施設コードが正しくありません / site code {code:?}: {e}"))
            })
            .transpose()?;
        let prefecture = present(&self.prefecture)
            .map(|p| {
                Prefecture::parse(p)
                    .map(|p| p.code_str())
                    .map_err(|e| format!("都道府県が正しくありません / prefecture {p:?}: {e}"))
            })
            .transpose()?;
        Ok(CertificateFilter {
            within_days,
            role,
            site,
            prefecture,
        })
    }
}

/// The filter as a query string (for the CSV link), `within` always written.
fn query_string(filter: &CertificateFilter) -> String {
    let mut parts = vec![format!(
        "within={}",
        filter
            .within_days
            .map_or_else(|| "all".to_string(), |d| d.to_string())
    )];
    if let Some(role) = &filter.role {
        parts.push(format!("kind={}", super::form::encode(role)));
    }
    if let Some(site) = &filter.site {
        parts.push(format!("site={site}"));
    }
    if let Some(prefecture) = &filter.prefecture {
        parts.push(format!("prefecture={prefecture}"));
    }
    parts.join("&")
}

/// The filter in words, for the audit trail.
fn describe(filter: &CertificateFilter) -> String {
    let mut parts = vec![match filter.within_days {
        Some(days) => format!("expiring within {days} days"),
        None => "all expiries".to_string(),
    }];
    if let Some(role) = &filter.role {
        parts.push(format!("kind {role}"));
    }
    if let Some(site) = &filter.site {
        parts.push(format!("site {site}"));
    }
    if let Some(prefecture) = &filter.prefecture {
        parts.push(format!("prefecture {prefecture}"));
    }
    parts.join(", ")
}

/// The prefectures the filter offers: the principal's, or all 47.
fn prefecture_choices(scope: &SiteScope) -> Vec<Prefecture> {
    let all = (1..=47).filter_map(Prefecture::from_code);
    match scope {
        SiteScope::All => all.collect(),
        SiteScope::Area { prefectures, sites } => all
            .filter(|p| {
                prefectures.iter().any(|q| q == p.as_str())
                    || sites.iter().any(|s| s.starts_with(p.as_str()))
            })
            .collect(),
    }
}

fn filter_form(params: &Params, filter: &CertificateFilter, principal: &Principal) -> Markup {
    let within = present(&params.within).unwrap_or("30");
    let custom = within != "all" && !WITHIN_CHOICES.iter().any(|d| d.to_string() == within);
    html! {
        form #certificate-filters .filters method="get" action="/certificates" {
            label for="within" { "有効期限まで " span.en { "Expiring within" } }
            select #within name="within" {
                @for days in WITHIN_CHOICES {
                    option value=(days) selected[within == days.to_string()] {
                        (days) "日 / " (days) " days"
                    }
                }
                @if custom {
                    option value=(within) selected { (within) "日 / " (within) " days" }
                }
                option value="all" selected[within == "all"] { "すべて / all" }
            }
            label for="kind" { "種別 " span.en { "Kind" } }
            select #kind name="kind" {
                option value="" selected[filter.role.is_none()] { "すべて / all" }
                @for (role, ja, en, _) in ROLES {
                    option value=(role) selected[filter.role.as_deref() == Some(role)] {
                        (ja) " / " (en)
                    }
                }
            }
            label for="site" { "施設コード " span.en { "Site code" } }
            input #site name="site" inputmode="numeric" pattern="[0-9]{10}" size="12"
                value=[filter.site.as_ref().map(SiteCode::as_str)];
            label for="prefecture" { "都道府県 " span.en { "Prefecture" } }
            select #prefecture name="prefecture" {
                option value="" selected[filter.prefecture.is_none()] { "すべて / all" }
                @for p in prefecture_choices(&principal.scope) {
                    option value=(p.as_str())
                        selected[filter.prefecture.as_deref() == Some(p.as_str())] {
                        (p.as_str()) " " (p.name_ja()) " / " (p.name_en())
                    }
                }
            }
            button type="submit" { "絞り込む / Filter" }
        }
    }
}

/// `YYYY-MM` of the `TIMELINE_MONTHS` Tokyo months from `now`'s.
fn timeline_months(now: OffsetDateTime) -> Vec<String> {
    let today = tokyo_day(now);
    let first = today.year() * 12 + i32::from(u8::from(today.month())) - 1;
    (0..i32::from(TIMELINE_MONTHS))
        .map(|i| {
            let index = first + i;
            format!(
                "{:04}-{:02}",
                index.div_euclid(12),
                index.rem_euclid(12) + 1
            )
        })
        .collect()
}

fn expiry_chart(
    now: OffsetDateTime,
    months: &[central_store::dashboard_rollout::ExpiryMonth],
) -> Markup {
    let categories = timeline_months(now);
    let series: Vec<Series> = ROLES
        .iter()
        .map(|(role, ja, en, class)| Series {
            label_ja: (*ja).to_string(),
            label_en: (*en).to_string(),
            class,
            values: categories
                .iter()
                .map(|month| {
                    months
                        .iter()
                        .filter(|m| &m.month == month && m.role == *role)
                        .map(|m| m.certificates)
                        .sum()
                })
                .collect(),
        })
        .collect();
    charts::stacked_bars(
        "expiry-chart",
        "今後12か月に期限を迎える証明書（月別） / Certificates expiring per month, next 12 months",
        &categories,
        1,
        &series,
    )
}

fn row_class(c: &CertificateRow) -> &'static str {
    match c.days_to_expiry {
        d if d < 0 => "expired",
        d if d <= 30 => "soon",
        _ => "",
    }
}

fn table(rows: &[CertificateRow]) -> Markup {
    html! {
        table #certificates {
            thead {
                tr {
                    th { "有効期限 " span.en { "Expires (JST)" } }
                    th.num { "残り日数 " span.en { "Days left" } }
                    th { "施設 " span.en { "Site" } }
                    th { "端末 " span.en { "Terminal" } }
                    th { "種別 " span.en { "Kind" } }
                    th { "主体者 " span.en { "Subject" } }
                    th { "発行者 " span.en { "Issuer" } }
                    th.num { "更新の余裕（営業日） " span.en { "Renewal lead (business days)" } }
                    th { "状態 " span.en { "State" } }
                }
            }
            tbody {
                @for c in rows {
                    @let (ja, en) = role_label(&c.role);
                    tr class=(row_class(c)) data-fingerprint=(c.sha256_fingerprint)
                        data-site=(c.site_code) data-days=(c.days_to_expiry) {
                        td {
                            (date_with_era(c.not_after.to_offset(JST).date()))
                            " " span.en { (tokyo(c.not_after)) }
                        }
                        td.num { (c.days_to_expiry) }
                        td { a href=(format!("/sites/{}", c.site_code)) { (c.site_code) } }
                        td { (c.terminal_id) }
                        td { (ja) " " span.en { (en) } }
                        td.subject title=(c.sha256_fingerprint) { (c.subject) }
                        td { (c.issuer) }
                        td.num {
                            @match c.renewal_lead_business_days {
                                Some(lead) => { (lead) }
                                None => { "—" }
                            }
                        }
                        td {
                            @if c.missing {
                                span.bad { "ファイルなし " span.en { "file missing" } }
                            } @else if c.days_to_expiry < 0 {
                                span.bad { "期限切れ " span.en { "expired" } }
                            } @else if c.renewal_lead_business_days.is_some_and(|l| l <= 0) {
                                span.bad { "更新が間に合わない " span.en { "renewal overdue" } }
                            } @else if c.days_to_expiry <= 30 {
                                span.warn { "まもなく期限 " span.en { "expiring soon" } }
                            } @else {
                                span.ok { "有効 " span.en { "valid" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn body(
    principal: &Principal,
    params: &Params,
    filter: &CertificateFilter,
    error: Option<&str>,
    chart: Markup,
    rows: &[CertificateRow],
) -> Markup {
    let more = rows.len() as i64 > PAGE_ROWS;
    let shown = &rows[..rows.len().min(PAGE_ROWS as usize)];
    let expired = shown.iter().filter(|c| c.days_to_expiry < 0).count();
    html! {
        section #certificates-page {
            (filter_form(params, filter, principal))
            @if let Some(error) = error {
                p.error #filter-error role="alert" { (error) }
            }
            (chart)
            p.summary {
                "表示 " span #certificate-count { (count(shown.len() as i64)) } " 件"
                @if expired > 0 { "（期限切れ " (expired) " 件）" }
                " " span.en { "certificates shown, soonest expiry first" }
                @if principal.may(Permission::ExportFleet) {
                    " · "
                    a #export-csv href=(format!("/certificates.csv?{}", query_string(filter))) {
                        "CSVで出力 / Export CSV"
                    }
                }
            }
            @if more {
                p.warn #more-rows {
                    "最初の " (count(PAGE_ROWS)) " 件のみ表示しています。絞り込むかCSVを使ってください。 "
                    span.en { "Only the first " (count(PAGE_ROWS)) " are shown: narrow the filter or export CSV." }
                }
            }
            (table(shown))
        }
    }
}

/// `GET /certificates`.
pub(crate) async fn page_handler(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    let now = OffsetDateTime::now_utc();
    let title = "証明書 / Certificates";
    let filter = match params.filter() {
        Ok(filter) => filter,
        Err(message) => {
            let fallback = CertificateFilter {
                within_days: Some(DEFAULT_WITHIN_DAYS),
                ..CertificateFilter::default()
            };
            let markup = body(
                &principal,
                &params,
                &fallback,
                Some(&message),
                html! {},
                &[],
            );
            return Ok((
                StatusCode::BAD_REQUEST,
                page(&principal, Nav::Certificates, title, markup),
            )
                .into_response());
        }
    };
    let store = &state.store;
    let (rows, months) = tokio::try_join!(
        store.dashboard_certificates(now, &filter, &principal.scope, PAGE_ROWS + 1),
        store.certificate_expiry_months(now, TIMELINE_MONTHS, &filter, &principal.scope),
    )?;
    let markup = body(
        &principal,
        &params,
        &filter,
        None,
        expiry_chart(now, &months),
        &rows,
    );
    Ok(page(&principal, Nav::Certificates, title, markup).into_response())
}

const CSV_HEADER: [&str; 15] = [
    "有効期限（日本時間） / not_after_jst",
    "有効期限（和暦） / not_after_era",
    "残り日数 / days_to_expiry",
    "施設コード / site_code",
    "端末 / terminal_id",
    "種別 / kind",
    "主体者 / subject",
    "発行者 / issuer",
    "シリアル番号 / serial_hex",
    "SHA-256 フィンガープリント / sha256_fingerprint",
    "鍵 / key",
    "更新の余裕（営業日） / renewal_lead_business_days",
    "ファイル / source",
    "ファイルなし / missing",
    "最終確認（日本時間） / last_seen_jst",
];

/// One certificate as a CSV record (see [`CSV_HEADER`]; [`central_core::spreadsheet`]: RFC 4180,
/// inert cells).
fn csv_record(c: &CertificateRow) -> Vec<u8> {
    let day = c.not_after.to_offset(JST).date();
    let mut out = Vec::new();
    central_core::spreadsheet::write_line(
        &mut out,
        [
            tokyo(c.not_after),
            onshi_domain::era::wareki(day),
            c.days_to_expiry.to_string(),
            c.site_code.clone(),
            c.terminal_id.clone(),
            c.role.clone(),
            c.subject.clone(),
            c.issuer.clone(),
            c.serial_hex.clone(),
            c.sha256_fingerprint.clone(),
            format!("{} {}", c.key_type, c.key_bits),
            c.renewal_lead_business_days
                .map(|l| l.to_string())
                .unwrap_or_default(),
            c.source.clone(),
            c.missing.to_string(),
            tokyo(c.last_seen_at),
        ],
    );
    out
}

/// Certificates per chunk of the streamed CSV.
const CSV_CHUNK_ROWS: usize = 256;

/// `GET /certificates.csv`: the page's listing with the same filters, as a download streamed
/// as PostgreSQL reads it (memory bounded whatever the number of certificates); the export is
/// recorded, with its number of rows, before anything is sent, and fails if it cannot be.
pub(crate) async fn csv_handler(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    use futures_util::StreamExt;
    let now = OffsetDateTime::now_utc();
    let filter = params.filter().map_err(ServiceError::BadRequest)?;
    let export = state
        .store
        .certificates_export(now, &filter, &principal.scope)
        .await?;
    let filters = format!("{}; {} rows", describe(&filter), export.rows);
    state
        .store
        .record_export(
            &format!("certificates CSV ({filters})"),
            &principal.audit_name(),
        )
        .await?;
    let head = futures_util::stream::once(async {
        Ok::<_, central_store::StoreError>(central_core::spreadsheet::head(&CSV_HEADER))
    });
    let rows = export
        .stream
        .ready_chunks(CSV_CHUNK_ROWS)
        .map(|chunk| {
            let mut bytes = Vec::new();
            for row in chunk {
                bytes.extend(csv_record(&row?));
            }
            Ok(bytes)
        })
        .inspect(|chunk: &Result<Vec<u8>, central_store::StoreError>| {
            if let Err(error) = chunk {
                // The status is sent: the download ends short, and the log says why.
                tracing::warn!(%error, "the certificates CSV stopped half-way");
            }
        });
    Ok(super::csv_download(
        "certificates",
        now,
        axum::body::Body::from_stream(head.chain(rows)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn params(within: &str, kind: &str, site: &str, prefecture: &str) -> Params {
        let some = |s: &str| Some(s.to_string());
        Params {
            within: some(within),
            kind: some(kind),
            site: some(site),
            prefecture: some(prefecture),
        }
    }

    #[test]
    fn empty_fields_mean_any_and_the_default_is_thirty_days() {
        let filter = params("", "", "", "").filter().unwrap();
        assert_eq!(filter.within_days, Some(30));
        assert_eq!(
            (filter.role, filter.site, filter.prefecture),
            (None, None, None)
        );
        assert_eq!(
            params("all", "", "", "").filter().unwrap().within_days,
            None
        );
        let filter = params("90", "terminal", "", "13").filter().unwrap();
        assert_eq!(
            query_string(&filter),
            "within=90&kind=terminal&prefecture=13"
        );
        assert_eq!(
            describe(&filter),
            "expiring within 90 days, kind terminal, prefecture 13"
        );
    }

    #[test]
    fn wrong_filters_say_what_is_wrong_in_both_languages() {
        for (p, needle) in [
            (params("-1", "", "", ""), "within"),
            (params("30", "server", "", ""), "kind"),
            (params("30", "", "12345", ""), "site code"),
            (params("30", "", "", "48"), "prefecture"),
        ] {
            let error = p.filter().unwrap_err();
            assert!(error.contains(needle), "{error}");
            assert!(error.contains(" / "), "{error}");
        }
    }

    #[test]
    fn the_timeline_has_twelve_tokyo_months_across_the_year_end() {
        // 2026-11-30 16:00 UTC is already December 1st in Tokyo.
        let months = timeline_months(datetime!(2026-11-30 16:00 UTC));
        assert_eq!(months.len(), 12);
        assert_eq!(months[0], "2026-12");
        assert_eq!(months[1], "2027-01");
        assert_eq!(months[11], "2027-11");
    }

    #[test]
    fn the_csv_has_a_bom_and_a_bilingual_header() {
        let at = datetime!(2027-01-15 03:00 UTC);
        let row = CertificateRow {
            site_code: "1310000216".into(),
            terminal_id: "T01".into(),
            role: "terminal".into(),
            subject: "CN=terminal, O=\"clinic\"".into(),
            issuer: "CN=common CA".into(),
            serial_hex: "01".into(),
            sha256_fingerprint: "ab".repeat(32),
            not_before: at - time::Duration::days(1000),
            not_after: at,
            key_type: "RSA".into(),
            key_bits: 2048,
            source: "/etc/t.pem".into(),
            missing: false,
            first_seen_at: at,
            last_seen_at: at,
            days_to_expiry: 10,
            renewal_lead_business_days: Some(-3),
        };
        let mut bytes = central_core::spreadsheet::head(&CSV_HEADER);
        bytes.extend(csv_record(&row));
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with('\u{feff}'));
        let mut lines = text.trim_start_matches('\u{feff}').lines();
        let header = lines.next().unwrap();
        assert!(
            header.starts_with("有効期限（日本時間） / not_after_jst,"),
            "{header}"
        );
        let line = lines.next().unwrap();
        assert!(
            line.starts_with("2027-01-15 12:00,令和9年1月15日,10,1310000216,T01,terminal,"),
            "{line}"
        );
        assert!(line.contains("\"CN=terminal, O=\"\"clinic\"\"\""), "{line}");
    }
}
