//! Searching the audit trail, for the JSON API (`/api/v1/audit/events`, `/api/v1/audit/report`)
//! and the dashboard (`/audit`, `/audit/export.csv`, `/audit/report`) alike: one query type
//! parsed once from what was sent ([`AuditParams`] → [`AuditSearch`] with `TryFrom`), one
//! meaning of the period, the principal's scope in every search, one CSV export streamed as
//! PostgreSQL returns rows, and one report.
//!
//! The period, on every interface: `from` and `to` are each a Tokyo date `YYYY-MM-DD` or an
//! RFC 3339 instant. The period starts at `from` (a date: its first instant in Tokyo) and ends
//! before `to` (a date: the end of that Tokyo day, so the day of `to` is included; an instant:
//! that instant excluded). `month` (`YYYY-MM`) is a whole Tokyo month instead of `from`/`to`.

use futures_util::{Stream, StreamExt};
use onshi_domain::calendar::JST;
use onshi_domain::ids::{
    IdError, InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber,
};
use onshi_domain::patient::{PatientHashKey, PatientRef};
use onshi_domain::site::SiteCode;
use serde::Deserialize;
use time::{Date, Duration, OffsetDateTime};

use crate::audit_report::describe_query;
use crate::auth::Principal;
use crate::error::ServiceError;
use central_store::audit_search::AuditCursor;
use central_store::{AuditQuery, Store, StoredEvent};

/// The event kinds a search may name, with their labels (Japanese, English).
pub const KINDS: [(&str, &str, &str); 4] = [
    ("lookup", "資格確認", "lookup"),
    ("info_view", "情報の閲覧", "information view"),
    ("consent", "同意", "consent"),
    ("card_check", "カード確認", "card check"),
];

/// What `result` may be: a lookup outcome, a view allowed or refused, a card check result.
pub const RESULTS: [(&str, &str); 14] = [
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

/// The categories a consent may give.
pub const CONSENTS: [(&str, &str); 5] = [
    ("limit_info", "限度額情報 / copay limit"),
    ("drug", "薬剤情報 / drug history"),
    ("checkup", "特定健診情報 / checkups"),
    ("diagnosis", "診療情報 / diagnoses"),
    ("surgery", "手術情報 / surgeries"),
];

/// The staff roles a search may name.
pub const STAFF_ROLES: [(&str, &str); 5] = [
    ("doctor", "医師 / doctor"),
    ("dentist", "歯科医師 / dentist"),
    ("pharmacist", "薬剤師 / pharmacist"),
    ("clerk", "事務 / clerk"),
    ("site_admin", "施設管理者 / site admin"),
];

/// Refused and disaster-window views a report lists.
pub(crate) const REPORT_VIEWS: i64 = 10_000;

/// A search as sent, field by field (a query string of the API or the dashboard's form):
/// nothing checked yet; an empty field means "any".
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub site: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub month: Option<String>,
    /// Comma-separated event kinds.
    pub kind: Option<String>,
    pub staff: Option<String>,
    pub role: Option<String>,
    pub patient_ref: Option<String>,
    /// The patient by insurance card details (hashed with the chain's key).
    pub insurer: Option<String>,
    pub symbol: Option<String>,
    pub number: Option<String>,
    pub branch: Option<String>,
    pub result: Option<String>,
    pub consent: Option<String>,
    /// `true` or `false`.
    pub disaster_window: Option<String>,
    /// JSON pages: at most this many events.
    pub limit: Option<String>,
    /// JSON pages: the cursor of the previous page's next link.
    pub after: Option<String>,
    /// The API's answer: `json` (default) or `csv`.
    pub format: Option<String>,
}

/// A patient given by insurance card details, checked, still to be hashed with the chain's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsuranceCard {
    pub insurer: InsurerNumber,
    pub symbol: Option<InsuredCardSymbol>,
    pub number: InsuredIdentificationNumber,
    pub branch: Option<InsuredBranchNumber>,
}

/// How the API answers a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// A checked search: every field parsed, the period resolved to instants.
#[derive(Debug, Clone, Default)]
pub struct AuditSearch {
    /// The store's query; its patient is set when given as `patient_ref`.
    pub query: AuditQuery,
    /// The patient given by insurance card details instead (hashed by [`AuditSearch::query`]).
    pub card: Option<InsuranceCard>,
    /// The month asked for (a report's title names it).
    pub month: Option<String>,
    pub format: Format,
}

fn bad(message: String) -> ServiceError {
    ServiceError::BadRequest(message)
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn id_error(e: IdError) -> ServiceError {
    bad(format!("{} / {}", e.message_ja(), e))
}

fn tokyo_midnight(day: Date) -> OffsetDateTime {
    day.midnight().assume_offset(JST)
}

fn parse_day(text: &str) -> Option<Date> {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

/// One bound of the period: a Tokyo date (its first instant, or with `end` the first instant
/// of the next day) or an RFC 3339 instant.
fn bound(name: &str, text: &str, end: bool) -> Result<OffsetDateTime, ServiceError> {
    if let Some(day) = parse_day(text) {
        return Ok(tokyo_midnight(day) + Duration::days(i64::from(end)));
    }
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|_| {
        bad(format!(
            "{name} が正しくありません / {name} {text:?}: expected a date YYYY-MM-DD (Tokyo) or an \
             RFC 3339 time, e.g. 2026-12-01T00:00:00+09:00"
        ))
    })
}

/// The period: a whole Tokyo month, or from `from` to before `to` (module docs).
fn period(
    params: &AuditParams,
) -> Result<(Option<OffsetDateTime>, Option<OffsetDateTime>), ServiceError> {
    let (from, to) = (present(&params.from), present(&params.to));
    let (from, to) = if let Some(month) = present(&params.month) {
        if from.is_some() || to.is_some() {
            return Err(bad(
                "月か期間のどちらかを指定してください / give either month or from/to, not both"
                    .into(),
            ));
        }
        let start = parse_day(&format!("{month}-01")).ok_or_else(|| {
            bad(format!(
                "月が正しくありません / month {month:?}: expected YYYY-MM"
            ))
        })?;
        let end = (start + Duration::days(32))
            .replace_day(1)
            .map_err(|e| bad(e.to_string()))?;
        (Some(tokyo_midnight(start)), Some(tokyo_midnight(end)))
    } else {
        (
            from.map(|t| bound("from", t, false)).transpose()?,
            to.map(|t| bound("to", t, true)).transpose()?,
        )
    };
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(bad(
            "期間の終わりが始まりより前です / the period is empty: it ends before it starts".into(),
        ));
    }
    Ok((from, to))
}

/// `value` when it is one of `allowed`'s values.
fn one_of(
    name: &str,
    value: Option<&str>,
    allowed: impl IntoIterator<Item = &'static str>,
) -> Result<Option<String>, ServiceError> {
    let Some(value) = value else { return Ok(None) };
    let allowed: Vec<&str> = allowed.into_iter().collect();
    if allowed.contains(&value) {
        Ok(Some(value.to_string()))
    } else {
        Err(bad(format!(
            "{name} が正しくありません / {name} {value:?}: one of {}",
            allowed.join(", ")
        )))
    }
}

/// The patient of the search: a keyed hash, or card details to hash.
type Patient = (Option<PatientRef>, Option<InsuranceCard>);

fn patient(params: &AuditParams) -> Result<Patient, ServiceError> {
    let has_card = [
        &params.insurer,
        &params.symbol,
        &params.number,
        &params.branch,
    ]
    .iter()
    .any(|f| present(f).is_some());
    match (present(&params.patient_ref), has_card) {
        (Some(_), true) => Err(bad(
            "患者は patient_ref か保険証の記号番号のどちらかで指定します / give the patient as \
             patient_ref or as insurance card details, not both"
                .into(),
        )),
        (Some(r), false) => PatientRef::parse(r)
            .map(|r| (Some(r), None))
            .map_err(|e| bad(format!("patient_ref が正しくありません / patient_ref: {e}"))),
        (None, true) => {
            let (Some(insurer), Some(number)) = (present(&params.insurer), present(&params.number))
            else {
                return Err(bad(
                    "保険者番号と被保険者番号が必要です（記号・枝番は保険証にあれば） / insurer \
                     and number are needed (symbol and branch if the card has them)"
                        .into(),
                ));
            };
            Ok((
                None,
                Some(InsuranceCard {
                    insurer: InsurerNumber::parse(insurer).map_err(id_error)?,
                    symbol: present(&params.symbol)
                        .map(InsuredCardSymbol::parse)
                        .transpose()
                        .map_err(id_error)?,
                    number: InsuredIdentificationNumber::parse(number).map_err(id_error)?,
                    branch: present(&params.branch)
                        .map(InsuredBranchNumber::parse)
                        .transpose()
                        .map_err(id_error)?,
                }),
            ))
        }
        (None, false) => Ok((None, None)),
    }
}

impl TryFrom<AuditParams> for AuditSearch {
    type Error = ServiceError;

    /// Checks every field; what is wrong is said in Japanese, then English.
    fn try_from(params: AuditParams) -> Result<AuditSearch, ServiceError> {
        let site = present(&params.site)
            .map(|s| {
                SiteCode::parse(s).map_err(|e| {
                    bad(format!(
                        "施設コードが正しくありません / site code {s:?}: {e}"
                    ))
                })
            })
            .transpose()?;
        let mut kinds = Vec::new();
        for kind in present(&params.kind)
            .into_iter()
            .flat_map(|k| k.split(','))
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            kinds.extend(one_of("kind", Some(kind), KINDS.iter().map(|k| k.0))?);
        }
        let disaster_window = match present(&params.disaster_window) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(bad(format!(
                    "災害時の指定が正しくありません / disaster_window {other:?}: true, false or empty"
                )));
            }
        };
        let limit = present(&params.limit)
            .map(|l| {
                l.parse::<i64>().ok().filter(|l| *l >= 1).ok_or_else(|| {
                    bad(format!(
                        "limit が正しくありません / limit {l:?}: expected a number from 1"
                    ))
                })
            })
            .transpose()?;
        let format = match present(&params.format) {
            None | Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some(other) => {
                return Err(bad(format!(
                    "形式が正しくありません / format {other:?}: expected json or csv"
                )));
            }
        };
        let (from, to) = period(&params)?;
        let (patient, card) = patient(&params)?;
        Ok(AuditSearch {
            query: AuditQuery {
                site,
                from,
                to,
                kinds,
                staff_id: present(&params.staff).map(str::to_string),
                staff_role: one_of(
                    "role",
                    present(&params.role),
                    STAFF_ROLES.iter().map(|r| r.0),
                )?,
                patient,
                result: one_of(
                    "result",
                    present(&params.result),
                    RESULTS.iter().map(|r| r.0),
                )?,
                consent: one_of(
                    "consent",
                    present(&params.consent),
                    CONSENTS.iter().map(|c| c.0),
                )?,
                disaster_window,
                limit,
                after: present(&params.after).map(AuditCursor::parse).transpose()?,
            },
            card,
            month: present(&params.month).map(str::to_string),
            format,
        })
    }
}

impl AuditSearch {
    /// The patient as the keyed hash: insurance card details are hashed with `key` (central's
    /// `--patient-key`); without a key only `patient_ref` can be searched.
    pub fn patient_ref(
        &self,
        key: Option<&PatientHashKey>,
    ) -> Result<Option<PatientRef>, ServiceError> {
        let Some(card) = &self.card else {
            return Ok(self.query.patient.clone());
        };
        let key = key.ok_or_else(|| {
            bad(
                "central に患者ハッシュ鍵が設定されていません（--patient-key）。\
                 patient_ref で検索してください / central has no patient hash key \
                 (--patient-key): search by patient_ref"
                    .into(),
            )
        })?;
        Ok(Some(PatientRef::for_insurance_card(
            key,
            &card.insurer,
            card.symbol.as_ref(),
            &card.number,
            card.branch.as_ref(),
        )))
    }

    /// Whether the patient was given by insurance card details.
    pub fn has_card(&self) -> bool {
        self.card.is_some()
    }

    /// The store's query for this search, card details hashed with `key`, at most `limit`
    /// events (`None`: all of them).
    pub fn query(
        &self,
        key: Option<&PatientHashKey>,
        limit: Option<i64>,
    ) -> Result<AuditQuery, ServiceError> {
        Ok(AuditQuery {
            patient: self.patient_ref(key)?,
            limit,
            ..self.query.clone()
        })
    }
}

/// The events of `query` the principal may see (their scope applied in SQL), oldest first.
pub async fn search(
    store: &Store,
    principal: &Principal,
    query: &AuditQuery,
) -> Result<Vec<StoredEvent>, ServiceError> {
    Ok(store.audit_search(query, &principal.scope).await?)
}

/// Bytes of the CSV sent in one piece at most (rows are gathered up to this, then sent).
const CSV_CHUNK_BYTES: usize = 64 * 1024;

/// The whole search as CSV (`audit_report::csv_head`, then one record per event), audited
/// before the first byte and streamed as PostgreSQL returns the rows: memory stays bounded
/// whatever the size, and nothing cuts it short. A failure midway ends the stream with the
/// error, so the reader sees a broken download, never a short file that looks whole.
pub async fn export_csv(
    store: &Store,
    principal: &Principal,
    query: &AuditQuery,
) -> Result<impl Stream<Item = Result<Vec<u8>, ServiceError>> + Send + use<>, ServiceError> {
    let query = AuditQuery {
        limit: None,
        ..query.clone()
    };
    let rows = store.audit_rows(&query, &principal.scope).await?;
    store
        .record_export(
            &format!("audit search CSV ({})", describe_query(&query)),
            &principal.audit_name(),
        )
        .await?;
    let head = futures_util::stream::once(async { Ok(crate::audit_report::csv_head()) });
    let body =
        futures_util::stream::unfold((Box::pin(rows), false), |(mut rows, failed)| async move {
            if failed {
                return None;
            }
            let mut chunk = Vec::with_capacity(CSV_CHUNK_BYTES + 1024);
            while chunk.len() < CSV_CHUNK_BYTES {
                match rows.next().await {
                    Some(Ok(event)) => crate::audit_report::csv_row(&mut chunk, &event),
                    Some(Err(error)) => {
                        tracing::warn!(%error, "audit CSV export failed midway");
                        // The rows gathered so far are lost with the download: it is broken
                        // either way, and the reader must see that it is.
                        return Some((Err(ServiceError::from(error)), (rows, true)));
                    }
                    None if chunk.is_empty() => return None,
                    None => break,
                }
            }
            Some((Ok(chunk), (rows, false)))
        });
    Ok(head.chain(body))
}

/// The printable report of the search's site and period (`audit_report::html`: totals per site
/// and staff, refused views, disaster-window views, the chain verdict), audited.
pub async fn report(
    store: &Store,
    principal: &Principal,
    search: &AuditSearch,
    query: &AuditQuery,
) -> Result<String, ServiceError> {
    let scope = &principal.scope;
    let views = AuditQuery {
        kinds: vec!["info_view".into()],
        // One more than the report lists, to say when it lists only the first ones.
        limit: Some(REPORT_VIEWS + 1),
        after: None,
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
    let (totals, mut refusals, mut disaster_views, verdict) = tokio::try_join!(
        store.audit_totals(query.site.as_ref(), (query.from, query.to), scope),
        store.audit_search(&refused, scope),
        store.audit_search(&disaster, scope),
        store.verify_period(query.site.as_ref(), query.from, query.to),
    )?;
    let listed = usize::try_from(REPORT_VIEWS).unwrap_or(usize::MAX);
    let more = refusals.len() > listed || disaster_views.len() > listed;
    refusals.truncate(listed);
    disaster_views.truncate(listed);
    let title = match &search.month {
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
        views_cut_at: more.then_some(listed),
        verdict: &verdict,
    });
    store
        .record_export(
            &format!(
                "audit report ({}; verdict {})",
                describe_query(query),
                if verdict.intact { "INTACT" } else { "BROKEN" }
            ),
            &generated_by,
        )
        .await?;
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn params(pairs: &[(&str, &str)]) -> AuditParams {
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::form::encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        serde_json::from_value(serde_json::Value::Object(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
                .collect(),
        ))
        .unwrap()
    }

    fn search(pairs: &[(&str, &str)]) -> Result<AuditSearch, ServiceError> {
        AuditSearch::try_from(params(pairs))
    }

    #[test]
    fn a_date_is_a_whole_tokyo_day_and_an_instant_is_itself() {
        let s = search(&[("from", "2026-12-01"), ("to", "2026-12-01")])
            .unwrap()
            .query;
        assert_eq!(s.from, Some(datetime!(2026-11-30 15:00 UTC)));
        assert_eq!(s.to, Some(datetime!(2026-12-01 15:00 UTC)));
        let s = search(&[
            ("from", "2026-12-01T09:00:00+09:00"),
            ("to", "2026-12-01T10:00:00Z"),
        ])
        .unwrap()
        .query;
        assert_eq!(s.from, Some(datetime!(2026-12-01 00:00 UTC)));
        assert_eq!(s.to, Some(datetime!(2026-12-01 10:00 UTC)));
        let s = search(&[("month", "2026-12")]).unwrap().query;
        assert_eq!(s.from, Some(datetime!(2026-11-30 15:00 UTC)));
        assert_eq!(s.to, Some(datetime!(2026-12-31 15:00 UTC)));
        let empty = search(&[("from", ""), ("site", " ")]).unwrap().query;
        assert_eq!((empty.from, empty.site), (None, None));
    }

    #[test]
    fn what_cannot_be_a_search_is_refused_in_japanese_then_english() {
        for pairs in [
            &[("month", "2026-12"), ("from", "2026-12-01")][..],
            &[("from", "2026-12-02"), ("to", "2026-12-01")],
            &[("month", "December")],
            &[("from", "yesterday")],
            &[("kind", "lookup,reader_change")],
            &[("disaster_window", "maybe")],
            &[("consent", "everything")],
            &[("role", "janitor")],
            &[("limit", "0")],
            &[("format", "xml")],
            &[("insurer", "06139158")],
        ] {
            let error = search(pairs).unwrap_err().to_string();
            assert!(error.contains(" / "), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn card_details_are_hashed_only_with_the_key() {
        let card = search(&[("insurer", "06139158"), ("number", "1234567")]).unwrap();
        assert!(card.has_card());
        let error = card.query(None, Some(10)).unwrap_err().to_string();
        assert!(error.contains("--patient-key"), "{error}");
        let key = PatientHashKey::from_bytes(&[7; 32]).unwrap();
        let query = card.query(Some(&key), Some(10)).unwrap();
        let hashed = query.patient.unwrap();
        assert!(!describe_query(&card.query(Some(&key), None).unwrap()).contains("1234567"));
        let both = search(&[("patient_ref", hashed.as_str()), ("number", "1234567")]);
        assert!(both.is_err());
        let by_ref = search(&[("patient_ref", hashed.as_str())]).unwrap();
        assert_eq!(by_ref.patient_ref(None).unwrap(), Some(hashed));
    }
}
