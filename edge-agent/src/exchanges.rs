//! The receipt computer's exchanges with the national system as events: what one request file
//! and its result (or the lack of one) mean for the audit trail, whoever carried them. Used by
//! the relay ([`crate::filex`], `LookupSource::FileExchange`) and by tap mode
//! ([`crate::observed::tap`], `LookupSource::TerminalTap`), and for the eligibility lookup's body
//! by every route that confirms by insurance card ([`crate::lookup::Lookups::record_asked`]).
//!
//! As the agent's own paths record them:
//!
//! - `OQSsiquc01` (eligibility): one `Lookup`;
//! - `OQSmuquc01` (batch inquiry, step 1): nothing when accepted (the rows are recorded with
//!   their results); when refused or unanswered, one `Lookup` per row of the request (one
//!   without a patient when the request is not known);
//! - `OQSmuquc02` (batch results, step 2): one `Lookup` per result unit when the results are in
//!   (`batch_id` the reception number), nothing while in progress, one `Lookup` without a
//!   patient when it failed or went unanswered;
//! - `YZKsiquc01` / `TKKsiquc01` (drug, checkup): one `InfoView` with the view's `source`, no
//!   staff or policy (the agent decided nothing; the national side allowed or refused), allowed
//!   when the answer's `ResultCode` is 1. The patient is the request's; a result whose request
//!   was never seen (tap mode: the terminal took it first) is recorded from the result alone,
//!   under a reference of the person it names (name, birth date, sex:
//!   `PatientRef::for_named_person`), which does not join the patient's card events, or of
//!   nobody in particular when it names nobody (a refusal).
//!
//! File names: `<Kind>req_<suffix>.xml` is answered by `<Kind>res_<suffix>.xml` (domain notes
//! §4); [`Kind`] is the ten characters before `req_` / `res_`.

use onshi_domain::codes::SegmentOfResult;
use onshi_domain::events::{
    EventBody, IdentityVerification, InfoCategory, InfoView, Lookup, LookupOutcome, LookupRoute,
    LookupSource,
};
use onshi_domain::patient::{PatientHashKey, PatientRef};
use onshi_domain::xml::{
    BulkInquiryAccepted, BulkInquiryRequest, BulkResult, BulkResultRequest, CheckupInfoRequest,
    CheckupInfoResult, DrugInfoRequest, DrugInfoResult, InfoOutcome, InfoPatient,
    InfoRequestHeader, QualificationConfirmSearchInfo, QualificationConfirmationRequest,
    XmlEncoding,
};

use crate::judge::{Judged, judge};
use crate::onshi::{OnshiAnswer, OnshiError};

/// The face reader's results: `OQSsiquc01res_face_…xml` in the terminal's `face` folder, never
/// an answer to a request.
pub const FACE_PREFIX: &str = "OQSsiquc01res_face_";

/// "No matching qualification" for insurance card numbers (typed at the counter or at the
/// receipt computer): most often a typing mistake.
pub const NOT_FOUND: &str = "該当する資格がありません。入力内容を確認してください / no matching qualification: check the card details";

/// The largest batch result read out of a zip archive: a zip bomb stops here.
pub const MAX_UNZIPPED_BYTES: usize = 64 * 1024 * 1024;

/// An `OQSmuquc02res` as the terminal wrote it: the XML, or a zip archive holding it (the
/// national side may zip batch results, [`onshi_domain::zip`]). What does not read says why.
pub fn read_batch_result(bytes: &[u8]) -> Result<onshi_domain::xml::Warned<BulkResult>, String> {
    let xml = onshi_domain::zip::unzipped(bytes, MAX_UNZIPPED_BYTES).map_err(|e| e.to_string())?;
    BulkResult::read_xml(&xml).map_err(|e| e.to_string())
}

/// The message kinds the agent relays and recognises in the terminal's folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `OQSsiquc01`: single eligibility.
    Eligibility,
    /// `OQSmuquc01`: batch inquiry, answered with a reception number.
    BatchSubmit,
    /// `OQSmuquc02`: batch results for a reception number.
    BatchFetch,
    /// `YZKsiquc01`: drug information.
    Drug,
    /// `TKKsiquc01`: specific health checkup information.
    Checkup,
}

const KIND_LEN: usize = 10;

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Eligibility,
        Kind::BatchSubmit,
        Kind::BatchFetch,
        Kind::Drug,
        Kind::Checkup,
    ];

    /// The message id (the file name's first ten characters).
    pub fn message_id(self) -> &'static str {
        match self {
            Kind::Eligibility => "OQSsiquc01",
            Kind::BatchSubmit => "OQSmuquc01",
            Kind::BatchFetch => "OQSmuquc02",
            Kind::Drug => "YZKsiquc01",
            Kind::Checkup => "TKKsiquc01",
        }
    }

    fn of_message_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.message_id() == id)
    }

    /// `<Kind>req_<suffix>.xml`: a request's kind (dot names and `.tmp` names are writers' work
    /// in progress, never requests).
    pub fn of_request(name: &str) -> Option<Self> {
        Self::of_name(name, "req_")
    }

    /// `<Kind>res_<suffix>.xml`: a result's kind (face-reader results, `…res_face_…`, are not
    /// answers to a request).
    pub fn of_result(name: &str) -> Option<Self> {
        if name.starts_with(FACE_PREFIX) {
            return None;
        }
        Self::of_name(name, "res_")
    }

    fn of_name(name: &str, marker: &str) -> Option<Self> {
        if !name.is_char_boundary(KIND_LEN) {
            return None;
        }
        let (kind, rest) = name.split_at(KIND_LEN);
        let suffix = rest.strip_prefix(marker)?;
        let lower = suffix.to_ascii_lowercase();
        let stem = lower.strip_suffix(".xml")?;
        if stem.is_empty() {
            return None;
        }
        Self::of_message_id(kind)
    }
}

/// `<Kind>req_X.xml` → `<Kind>res_X.xml`.
pub fn result_name(request_name: &str) -> String {
    swap(request_name, "req_", "res_")
}

/// `<Kind>res_X.xml` → `<Kind>req_X.xml`.
pub fn request_name(result_name: &str) -> String {
    swap(result_name, "res_", "req_")
}

fn swap(name: &str, from: &str, to: &str) -> String {
    match (name.get(..KIND_LEN), name.get(KIND_LEN..)) {
        (Some(kind), Some(rest)) if rest.starts_with(from) => {
            format!("{kind}{to}{}", &rest[from.len()..])
        }
        _ => name.to_string(),
    }
}

/// Who carried the exchange and what is known besides the files.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub patient_key: &'a PatientHashKey,
    pub source: LookupSource,
    /// From the request to its answer, as far as the carrier could tell (0 when unknown).
    pub latency_ms: u32,
    /// Today in Japan (the date a batch unit's result stands for when its header has none).
    pub today: time::Date,
}

/// The answer to one request: a file, or none (why).
pub type Answer<'a> = Result<&'a OnshiAnswer, &'a OnshiError>;

/// The events one exchange stands for (see the module docs). `request`: the request file's
/// bytes when known.
pub fn events(
    kind: Kind,
    request: Option<&[u8]>,
    answer: Answer<'_>,
    ctx: Context<'_>,
) -> Vec<EventBody> {
    match kind {
        Kind::Eligibility => {
            let request = request.and_then(|r| QualificationConfirmationRequest::from_xml(r).ok());
            let (lookup, _) = eligibility_lookup(
                ctx.patient_key,
                request.as_ref().map(|r| &r.search),
                answer,
                ctx.latency_ms,
                ctx.source,
                None,
            );
            vec![EventBody::Lookup(lookup)]
        }
        Kind::BatchSubmit => batch_submit(request, answer, ctx),
        Kind::BatchFetch => batch_fetch(request, answer, ctx),
        Kind::Drug | Kind::Checkup => {
            vec![EventBody::InfoView(info_view(kind, request, answer, ctx))]
        }
    }
}

/// The `Lookup` of one eligibility confirmation by insurance card numbers, and the judgement
/// of its answer. The patient is the search's (the request's, or the result's echo of it),
/// else the result's first person.
pub fn eligibility_lookup(
    patient_key: &PatientHashKey,
    search: Option<&QualificationConfirmSearchInfo>,
    answer: Answer<'_>,
    latency_ms: u32,
    source: LookupSource,
    batch_id: Option<String>,
) -> (Lookup, Judged) {
    let judged = match answer {
        Ok(a) => judge(&a.body, a.http_status, NOT_FOUND),
        Err(error) => crate::judge::unreachable(error),
    };
    let echoed = match (search, answer) {
        (None, Ok(a)) => onshi_domain::xml::QualificationConfirmationResult::from_xml(&a.body)
            .ok()
            .and_then(|r| r.body.search_info),
        _ => None,
    };
    let search = search.or(echoed.as_ref());
    let first = judged.first.as_ref();
    let patient_ref = match search {
        Some(s) => Some(search_ref(patient_key, s)),
        None => first.and_then(|r| {
            Some(PatientRef::for_insurance_card(
                patient_key,
                r.insurer_number.as_ref()?,
                r.insured_card_symbol.as_ref(),
                r.insured_identification_number.as_ref()?,
                r.insured_branch_number.as_ref(),
            ))
        }),
    };
    let insurer_number = search
        .map(|s| s.insurer_number.as_str().to_string())
        .or_else(|| {
            first
                .and_then(|r| r.insurer_number.as_ref())
                .map(|n| n.as_str().to_string())
        });
    let lookup = Lookup {
        route: LookupRoute::InsuranceCard,
        outcome: judged.outcome,
        patient_ref,
        insurer_number,
        qualification_validity: judged.validity.map(|v| v.code().to_string()),
        processing_result_code: judged.processing_result_code.clone(),
        error_code: judged.error_code.clone(),
        latency_ms,
        staff_id: None,
        source,
        batch_id,
        identity_verification: IdentityVerification::None,
    };
    (lookup, judged)
}

fn search_ref(key: &PatientHashKey, s: &QualificationConfirmSearchInfo) -> PatientRef {
    PatientRef::for_insurance_card(
        key,
        &s.insurer_number,
        s.insured_card_symbol.as_ref(),
        &s.insured_identification_number,
        s.insured_branch_number.as_ref(),
    )
}

/// A row's lookup that ended without a result of its own (refused, unreadable, unanswered).
fn failed_row(
    ctx: Context<'_>,
    search: Option<&QualificationConfirmSearchInfo>,
    outcome: LookupOutcome,
    error_code: Option<String>,
    batch_id: Option<String>,
) -> EventBody {
    EventBody::Lookup(Lookup {
        route: LookupRoute::InsuranceCard,
        outcome,
        patient_ref: search.map(|s| search_ref(ctx.patient_key, s)),
        insurer_number: search.map(|s| s.insurer_number.as_str().to_string()),
        qualification_validity: None,
        processing_result_code: None,
        error_code,
        latency_ms: ctx.latency_ms,
        staff_id: None,
        source: ctx.source,
        batch_id,
        identity_verification: IdentityVerification::None,
    })
}

/// Why there is no usable answer: the outcome and code a failed row is recorded with.
fn failure(answer: Answer<'_>, refused_code: Option<String>) -> (LookupOutcome, Option<String>) {
    match answer {
        Err(_) => (LookupOutcome::Unreachable, Some("unreachable".into())),
        Ok(a) if !(200..300).contains(&a.http_status) => (
            LookupOutcome::Error,
            Some(format!("http_{}", a.http_status)),
        ),
        Ok(_) => (
            LookupOutcome::Error,
            Some(refused_code.unwrap_or_else(|| "malformed_response".into())),
        ),
    }
}

fn batch_submit(request: Option<&[u8]>, answer: Answer<'_>, ctx: Context<'_>) -> Vec<EventBody> {
    let accepted = answer
        .ok()
        .and_then(|a| BulkInquiryAccepted::from_xml(&a.body).ok());
    let refused_code = match &accepted {
        Some(a)
            if a.segment_of_result == SegmentOfResult::Normal && a.reception_number.is_some() =>
        {
            return Vec::new();
        }
        Some(a) => Some(a.error_code.clone().unwrap_or_else(|| "refused".into())),
        None => None,
    };
    let (outcome, code) = failure(answer, refused_code);
    let searches = request
        .and_then(|r| BulkInquiryRequest::from_xml_rows(r).ok())
        .map(|rows| rows.rows.into_iter().flatten().collect::<Vec<_>>())
        .unwrap_or_default();
    if searches.is_empty() {
        return vec![failed_row(ctx, None, outcome, code, None)];
    }
    searches
        .iter()
        .map(|s| failed_row(ctx, Some(s), outcome, code.clone(), None))
        .collect()
}

fn batch_fetch(request: Option<&[u8]>, answer: Answer<'_>, ctx: Context<'_>) -> Vec<EventBody> {
    let asked_for = request
        .and_then(|r| BulkResultRequest::from_xml(r).ok())
        .map(|r| r.reception_number);
    let result = answer
        .ok()
        .and_then(|a| read_batch_result(&a.body).ok())
        .map(|read| read.value);
    let refused_code = match &result {
        Some(result) => {
            let batch_id = result.header.reception_number.clone().or(asked_for.clone());
            match result.header.segment_of_result {
                SegmentOfResult::InProgress => return Vec::new(),
                SegmentOfResult::Normal => {
                    let today = ctx.today;
                    return result
                        .units
                        .iter()
                        .map(|unit| {
                            let single = OnshiAnswer {
                                http_status: 200,
                                body: result.single_result(unit, today).to_xml(XmlEncoding::Utf8),
                            };
                            let (lookup, _) = eligibility_lookup(
                                ctx.patient_key,
                                unit.search_info.as_ref(),
                                Ok(&single),
                                ctx.latency_ms,
                                ctx.source,
                                batch_id.clone(),
                            );
                            EventBody::Lookup(lookup)
                        })
                        .collect();
                }
                SegmentOfResult::AbnormalEnd => Some(
                    result
                        .header
                        .error_code
                        .clone()
                        .unwrap_or_else(|| "refused".into()),
                ),
            }
        }
        None => None,
    };
    let (outcome, code) = failure(answer, refused_code);
    vec![failed_row(ctx, None, outcome, code, asked_for)]
}

fn info_view(kind: Kind, request: Option<&[u8]>, answer: Answer<'_>, ctx: Context<'_>) -> InfoView {
    let (category, header) = match kind {
        Kind::Drug => (
            InfoCategory::Drug,
            request.and_then(|r| DrugInfoRequest::from_xml(r).ok().map(|r| r.header)),
        ),
        _ => (
            InfoCategory::Checkup,
            request.and_then(|r| CheckupInfoRequest::from_xml(r).ok().map(|r| r.header)),
        ),
    };
    let read: Option<(InfoOutcome, Option<InfoPatient>)> = answer.ok().and_then(|a| match kind {
        Kind::Drug => DrugInfoResult::from_xml(&a.body)
            .ok()
            .map(|r| (r.outcome, r.patient)),
        _ => CheckupInfoResult::from_xml(&a.body)
            .ok()
            .map(|r| (r.outcome, r.patient)),
    });
    let (outcome, named) = match read {
        Some((outcome, patient)) => (Some(outcome), patient),
        None => (None, None),
    };
    let patient_ref = match (&header, &named) {
        (Some(header), _) => info_ref(ctx.patient_key, header),
        // The request was never seen (tap mode: the terminal took it first). The result names
        // the person, not the card: a reference of its own, which counts the view as someone's
        // without joining their other events.
        (None, named) => {
            tracing::warn!(
                kind = kind.message_id(),
                named = named.is_some(),
                "an information result whose request was not seen; recorded from the result alone"
            );
            named_ref(ctx.patient_key, named.as_ref())
        }
    };
    let refusal_reason = match (&outcome, answer) {
        (Some(o), _) if o.result_code.is_success() => None,
        (Some(o), _) => Some(format!("national_error:{}", o.result_code.code())),
        (None, Err(_)) => Some("unreachable".to_string()),
        (None, Ok(a)) if !(200..300).contains(&a.http_status) => {
            Some(format!("http_{}", a.http_status))
        }
        (None, Ok(_)) => Some("malformed_response".to_string()),
    };
    InfoView {
        patient_ref,
        category,
        allowed: refusal_reason.is_none(),
        refusal_reason,
        staff_id: None,
        staff_role: None,
        policy_version: None,
        disaster_window_id: None,
        source: Some(ctx.source),
    }
}

/// The reference of the person an information result names ([`PatientRef::for_named_person`]):
/// the kana name as written (else the name), birth date and sex. A result naming nobody (a
/// refusal) gets the reference of nobody in particular, the same for all of them.
fn named_ref(key: &PatientHashKey, named: Option<&InfoPatient>) -> PatientRef {
    let name = named.and_then(|p| p.kana_name.as_deref().or(p.name.as_deref()));
    let birth = named
        .and_then(|p| p.birth)
        .map(|d| format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day()));
    let sex = named.and_then(|p| p.gender_code.as_deref());
    PatientRef::for_named_person(key, name, birth.as_deref(), sex)
}

fn info_ref(key: &PatientHashKey, h: &InfoRequestHeader) -> PatientRef {
    PatientRef::for_insurance_card(
        key,
        &h.insurer_number,
        h.insurance_card_symbol.as_ref(),
        &h.insured_person_identification_number,
        h.branch_number.as_ref(),
    )
}

#[cfg(test)]
mod tests;
