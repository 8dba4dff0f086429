//! Reading the national system's answer to an eligibility confirmation: one judgement for every
//! route (insurance card, My Number card, receipt-computer files), so the same answer means the
//! same outcome and the same words at the counter whichever way it was asked.

use onshi_domain::codes::{ProcessingResultStatus, QualificationValidity, SegmentOfResult};
use onshi_domain::events::LookupOutcome;
use onshi_domain::xml::{QualificationConfirmationResult, ResultOfQualificationConfirmation};

use crate::lookup::PersonShown;
use crate::onshi::OnshiError;

/// The answer reduced to what the event and the counter need.
#[derive(Debug, Clone)]
pub struct Judged {
    pub outcome: LookupOutcome,
    pub validity: Option<QualificationValidity>,
    pub processing_result_code: Option<String>,
    pub error_code: Option<String>,
    pub message: String,
    /// The first person of the result, when there is one.
    pub first: Option<ResultOfQualificationConfirmation>,
}

impl Judged {
    pub fn person(&self) -> Option<PersonShown> {
        self.first.as_ref().map(person_shown)
    }
}

/// The national system could not be reached: the clerk falls back to the physical card.
pub fn unreachable(error: &OnshiError) -> Judged {
    Judged {
        outcome: LookupOutcome::Unreachable,
        validity: None,
        processing_result_code: None,
        error_code: Some("unreachable".into()),
        message: error.for_clerk(),
        first: None,
    }
}

/// Judges a result file. `not_found` is the sentence for "no matching qualification", which
/// differs by route (a typing mistake at the counter, an unregistered card on the reader).
pub fn judge(body: &[u8], http_status: u16, not_found: &str) -> Judged {
    let failed = |error_code: String, message: String| Judged {
        outcome: LookupOutcome::Error,
        validity: None,
        processing_result_code: None,
        error_code: Some(error_code),
        message,
        first: None,
    };
    let result = match QualificationConfirmationResult::from_xml(body) {
        Ok(result) => result,
        Err(_) if !(200..300).contains(&http_status) => {
            return failed(
                format!("http_{http_status}"),
                format!(
                    "照会が拒否されました（HTTP {http_status}） / the national system refused the request"
                ),
            );
        }
        Err(error) => {
            return failed(
                "malformed_response".into(),
                format!("応答を読み取れませんでした / the answer could not be read: {error}"),
            );
        }
    };
    let header = &result.header;
    let body = &result.body;
    if header.segment_of_result != SegmentOfResult::Normal
        || body.processing_result_status == Some(ProcessingResultStatus::Error)
    {
        let code = header
            .error_code
            .clone()
            .or_else(|| body.processing_result_code.clone());
        let text = header
            .error_message
            .clone()
            .or_else(|| body.processing_result_message.clone())
            .unwrap_or_default();
        return Judged {
            outcome: LookupOutcome::Error,
            validity: None,
            processing_result_code: body.processing_result_code.clone(),
            error_code: code.clone(),
            message: format!(
                "照会でエラーが返されました（{}）{text} / the national system returned an error",
                code.as_deref().unwrap_or("-")
            ),
            first: None,
        };
    }
    let validity = body.qualification_validity;
    let outcome = match validity {
        Some(v) if v.is_valid() => LookupOutcome::Valid,
        Some(QualificationValidity::Invalid | QualificationValidity::InvalidNewerExists) => {
            LookupOutcome::Invalid
        }
        Some(_) => LookupOutcome::NotFound,
        None => LookupOutcome::Error,
    };
    let message = match outcome {
        LookupOutcome::Valid => "資格有効 / eligible".to_string(),
        LookupOutcome::Invalid => "資格無効 / not eligible (qualification lost)".to_string(),
        LookupOutcome::NotFound => not_found.to_string(),
        _ => "応答に資格情報がありません / the answer carried no qualification".to_string(),
    };
    Judged {
        outcome,
        validity,
        processing_result_code: body.processing_result_code.clone(),
        error_code: None,
        message,
        first: body.results.first().cloned(),
    }
}

pub fn person_shown(r: &ResultOfQualificationConfirmation) -> PersonShown {
    PersonShown {
        name: r.name.clone().unwrap_or_default(),
        name_kana: r.name_kana.clone().unwrap_or_default(),
        insurer_name: r.insurer_name.clone().unwrap_or_default(),
        insured_partial_contribution_ratio: r
            .insured_partial_contribution_ratio
            .clone()
            .unwrap_or_default(),
        disqualification_date: r
            .disqualification_date
            .map(|d| format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day()))
            .unwrap_or_default(),
    }
}
