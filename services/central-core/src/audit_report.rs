//! What auditors take away: the CSV of a search and the printable report of a period (the
//! monthly per-site summary is the report of one month). Japanese first, English second; times
//! in Asia/Tokyo. Pure functions of what the store returned.

use std::fmt::Write;

use time::OffsetDateTime;

use central_store::audit::{ChainVerdict, describe};
use central_store::jst::stamp as tokyo;
use central_store::{AuditQuery, AuditTotals, StoredEvent};

/// The fields of an event body an auditor reads, as text ("" when absent).
pub fn field(event: &StoredEvent, name: &str) -> String {
    match event.body.get(name) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// What happened, in one word: a lookup's outcome, a view allowed or refused, a card check's
/// result, the consent categories given.
pub fn result(event: &StoredEvent) -> String {
    match event.kind.as_str() {
        "lookup" => field(event, "outcome"),
        "card_check" => field(event, "result"),
        "info_view" => match event.body.get("allowed").and_then(|a| a.as_bool()) {
            Some(true) => "allowed".into(),
            _ => "refused".into(),
        },
        "consent" => ["limit_info", "drug", "checkup", "diagnosis", "surgery"]
            .iter()
            .filter(|c| field(event, c) == "given")
            .copied()
            .collect::<Vec<_>>()
            .join("+"),
        _ => String::new(),
    }
}

pub const CSV_HEADER: [&str; 13] = [
    "occurred_at_jst",
    "site_code",
    "terminal_id",
    "kind",
    "result",
    "staff_id",
    "staff_role",
    "patient_ref",
    "category",
    "refusal_reason",
    "disaster_window_id",
    "policy_version",
    "event_id",
];

/// The start of a search's CSV: the BOM and [`CSV_HEADER`] ([`crate::spreadsheet`]).
pub(crate) fn csv_head() -> Vec<u8> {
    crate::spreadsheet::head(&CSV_HEADER)
}

/// One event as a CSV record appended to `out` (RFC 4180, inert cells).
pub(crate) fn csv_row(out: &mut Vec<u8>, e: &StoredEvent) {
    crate::spreadsheet::write_line(
        out,
        [
            tokyo(e.occurred_at),
            e.site_code.clone(),
            e.terminal_id.clone(),
            e.kind.clone(),
            result(e),
            field(e, "staff_id"),
            field(e, "staff_role"),
            field(e, "patient_ref"),
            field(e, "category"),
            field(e, "refusal_reason"),
            field(e, "disaster_window_id"),
            field(e, "policy_version"),
            e.event_id.to_string(),
        ],
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What a report is made of.
#[derive(Debug)]
pub struct ReportInput<'a> {
    pub title: String,
    pub site_code: Option<&'a str>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub generated_at: OffsetDateTime,
    pub generated_by: &'a str,
    pub totals: &'a [AuditTotals],
    /// Refused views, and views under a disaster window.
    pub refusals: &'a [StoredEvent],
    pub disaster_views: &'a [StoredEvent],
    /// Set when a list of views holds only its first this many (the CSV has them all).
    pub views_cut_at: Option<usize>,
    pub verdict: &'a ChainVerdict,
}

/// The printable report (HTML that prints on A4 as it shows).
pub fn html(report: &ReportInput<'_>) -> String {
    let mut h = String::new();
    let period = format!(
        "{} – {}",
        report.from.map_or("—".into(), tokyo),
        report.to.map_or("—".into(), tokyo)
    );
    let _ = write!(
        h,
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;\
         width:100%;margin:1em 0}}th,td{{border:1px solid #999;padding:4px 6px;font-size:90%}}\
         th{{background:#eee}}td.n{{text-align:right}}.ok{{color:#060}}.ng{{color:#a00}}\
         @media print{{body{{margin:0}}@page{{size:A4;margin:15mm}}}}</style></head><body>\
         <h1>{title}</h1><p>対象 / scope: {scope}<br>期間 / period: {period}<br>\
         作成 / generated: {generated} ({by})</p>",
        title = escape(&report.title),
        scope = escape(report.site_code.unwrap_or("全施設 / all sites")),
        generated = tokyo(report.generated_at),
        by = escape(report.generated_by),
    );
    let (class, verdict) = if report.verdict.intact {
        ("ok", "改ざんなし / INTACT")
    } else {
        ("ng", "改ざんまたは欠落あり / BROKEN")
    };
    let _ = write!(
        h,
        "<h2>検証 / verification</h2><p class=\"{class}\"><strong>{verdict}</strong>: {} events, \
         {} streams, {} seals</p>",
        report.verdict.events,
        report.verdict.streams.len(),
        report.verdict.streams.iter().map(|s| s.seals).sum::<u64>()
    );
    let findings: Vec<String> = report
        .verdict
        .streams
        .iter()
        .flat_map(|s| {
            s.findings
                .iter()
                .map(move |f| format!("{} {}: {}", s.site_code, s.stream_id, describe(f)))
        })
        .collect();
    if !findings.is_empty() {
        h.push_str("<ul>");
        for f in findings {
            let _ = write!(h, "<li>{}</li>", escape(&f));
        }
        h.push_str("</ul>");
    }
    h.push_str(
        "<h2>施設・職員ごとの件数 / totals per site and staff</h2><table><tr><th>施設 / site</th>\
         <th>職員 / staff</th><th>職種 / role</th><th>資格確認 / lookups</th><th>うち有効 / valid</th>\
         <th>閲覧 / views</th><th>拒否 / refused</th><th>災害時 / disaster</th>\
         <th>同意 / consents</th></tr>",
    );
    for t in report.totals {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            escape(&t.site_code),
            escape(if t.staff_id.is_empty() {
                "—"
            } else {
                &t.staff_id
            }),
            escape(&t.staff_role),
            t.lookups,
            t.lookups_valid,
            t.views_allowed,
            t.views_refused,
            t.disaster_window_views,
            t.consents
        );
    }
    h.push_str("</table>");
    for (title, events) in [
        ("閲覧の拒否 / refused views", report.refusals),
        (
            "災害時の閲覧 / views under a disaster window",
            report.disaster_views,
        ),
    ] {
        let _ = write!(h, "<h2>{title}</h2>");
        if let Some(cut) = report.views_cut_at
            && events.len() >= cut
        {
            let _ = write!(
                h,
                "<p class=\"ng\">先頭 {cut} 件のみ掲載。すべては CSV で出力してください / only the \
                 first {cut} are listed; the CSV export holds them all</p>"
            );
        }
        let _ = write!(
            h,
            "<table><tr><th>日時 / time</th><th>施設 / site</th><th>職員 / staff</th>\
             <th>職種 / role</th><th>情報 / category</th><th>患者 / patient</th>\
             <th>理由・災害 / reason, window</th></tr>"
        );
        if events.is_empty() {
            h.push_str("<tr><td colspan=\"7\">なし / none</td></tr>");
        }
        for e in events {
            let reason = [field(e, "refusal_reason"), field(e, "disaster_window_id")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" / ");
            let patient = field(e, "patient_ref");
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}…</td><td>{}</td></tr>",
                tokyo(e.occurred_at),
                escape(&e.site_code),
                escape(&field(e, "staff_id")),
                escape(&field(e, "staff_role")),
                escape(&field(e, "category")),
                escape(patient.get(..12).unwrap_or(&patient)),
                escape(&reason)
            );
        }
        h.push_str("</table>");
    }
    h.push_str(
        "<p>患者は施設外では鍵付きハッシュでのみ表示されます / patients appear only as keyed \
         hashes outside the site.</p></body></html>",
    );
    h
}

/// A search for the audit trail: its filters, the patient only as the keyed hash.
pub fn describe_query(query: &AuditQuery) -> String {
    let mut parts = Vec::new();
    if let Some(site) = &query.site {
        parts.push(format!("site {site}"));
    }
    if let Some(from) = query.from {
        parts.push(format!("from {}", tokyo(from)));
    }
    if let Some(to) = query.to {
        parts.push(format!("to {}", tokyo(to)));
    }
    if !query.kinds.is_empty() {
        parts.push(format!("kind {}", query.kinds.join("+")));
    }
    if let Some(staff) = &query.staff_id {
        parts.push(format!("staff {staff}"));
    }
    if let Some(role) = &query.staff_role {
        parts.push(format!("role {role}"));
    }
    if let Some(result) = &query.result {
        parts.push(format!("result {result}"));
    }
    if let Some(consent) = &query.consent {
        parts.push(format!("consent {consent}"));
    }
    if let Some(disaster) = query.disaster_window {
        parts.push(format!("disaster window {disaster}"));
    }
    if let Some(patient) = &query.patient {
        parts.push(format!("patient {}", patient.as_str()));
    }
    if parts.is_empty() {
        "everything".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, body: serde_json::Value) -> StoredEvent {
        StoredEvent {
            event_id: uuid::Uuid::nil(),
            site_code: "1340123455".into(),
            stream_id: uuid::Uuid::nil(),
            sequence: 1,
            terminal_id: "T01".into(),
            occurred_at: time::macros::datetime!(2026-12-01 00:30 UTC),
            received_at: time::macros::datetime!(2026-12-01 00:30 UTC),
            kind: kind.into(),
            body,
        }
    }

    #[test]
    fn csv_has_a_bom_a_header_and_tokyo_times() {
        let mut out = csv_head();
        csv_row(
            &mut out,
            &event(
                "info_view",
                serde_json::json!({"allowed": false, "staff_id": "P1", "category": "checkup",
                                   "refusal_reason": "no consent, \"checkup\""}),
            ),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with('\u{feff}'));
        let mut lines = text.trim_start_matches('\u{feff}').lines();
        assert_eq!(lines.next().unwrap(), CSV_HEADER.join(","));
        let row = lines.next().unwrap();
        assert!(
            row.starts_with("2026-12-01 09:30:00 JST,1340123455,T01,info_view,refused,P1"),
            "{row}"
        );
        assert!(
            row.contains("\"no consent, \"\"checkup\"\"\""),
            "quoted: {row}"
        );
    }

    #[test]
    fn html_escapes_what_it_shows() {
        assert_eq!(escape("<b>&\""), "&lt;b&gt;&amp;&quot;");
    }

    #[test]
    fn a_report_says_when_it_lists_only_the_first_views() {
        let refused = [event("info_view", serde_json::json!({"allowed": false}))];
        let verdict = ChainVerdict {
            site_code: None,
            from: None,
            to: None,
            events: 0,
            streams: Vec::new(),
            seal_keys: Vec::new(),
            intact: true,
        };
        let report = |views_cut_at| {
            html(&ReportInput {
                title: "t".into(),
                site_code: None,
                from: None,
                to: None,
                generated_at: time::macros::datetime!(2026-12-01 00:30 UTC),
                generated_by: "auditor",
                totals: &[],
                refusals: &refused,
                disaster_views: &[],
                views_cut_at,
                verdict: &verdict,
            })
        };
        assert!(report(Some(1)).contains("only the first 1 are listed"));
        assert!(!report(None).contains("only the first"));
    }
}
