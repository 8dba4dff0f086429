//! Fault knobs, so tests and demos can exercise the agent's degraded, down and error paths.
//!
//! - **Outage**: the closed-network link is down. Every request (the health check too) is held
//!   without an answer until the outage ends — to a client this is a black hole, as when the
//!   line drops packets, and its own timeout decides. A held request is released when the
//!   outage is switched off (it is then answered normally) or after [`MAX_HOLD`].
//! - **Error injection**: a fixed `SIM-` code for every eligibility answer (`error_code`), or a
//!   code for a fraction of them (`error_rate`, 0.0–1.0; the code is `error_code` or else
//!   [`SimErrorCode::Overloaded`]). The choice is deterministic: a counter, not randomness, so
//!   a rate of 0.25 fails exactly every fourth request.
//!
//! Set at start (`onshi-sim serve --outage --error-code … --error-rate …`) and changed at run
//! time with `POST /admin/faults` (JSON [`FaultSettings`], fields optional) or with signals:
//! `SIGUSR1` starts an outage, `SIGUSR2` ends it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use onshi_domain::codes::{ProcessingResultStatus, SegmentOfResult};
use onshi_domain::xml::{QualificationConfirmationRequest, ResultBody, XmlEncoding};
use time::PrimitiveDateTime;

use crate::errors::SimErrorCode;
use crate::service::{Answer, HeaderEcho, refusal};

/// The longest a request is held during an outage before it is dropped unanswered.
pub const MAX_HOLD: Duration = Duration::from_secs(600);

/// The knobs as set; every field optional in a change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage: Option<bool>,
    /// A `SIM-` code from [`crate::errors`]; `""` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultError {
    #[error("unknown error code {0:?}: use a SIM- code of the simulator's catalogue")]
    UnknownCode(String),
    #[error("error_rate must be between 0.0 and 1.0, got {0}")]
    Rate(f64),
}

#[derive(Debug, Clone, Copy, Default)]
struct Injection {
    code: Option<SimErrorCode>,
    rate: f64,
}

/// The live fault state, shared by the routes.
#[derive(Debug)]
pub struct Faults {
    outage: watch::Sender<bool>,
    injection: Mutex<Injection>,
    counter: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            outage: watch::Sender::new(false),
            injection: Mutex::new(Injection::default()),
            counter: AtomicU64::new(0),
        }
    }
}

impl Faults {
    pub fn new(settings: &FaultSettings) -> Result<Self, FaultError> {
        let faults = Self::default();
        faults.apply(settings)?;
        Ok(faults)
    }

    /// Applies a change; fields that are `None` stay as they are. Nothing changes on an error.
    pub fn apply(&self, change: &FaultSettings) -> Result<(), FaultError> {
        let code = match change.error_code.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(code) => Some(Some(
                SimErrorCode::from_code(code)
                    .ok_or_else(|| FaultError::UnknownCode(code.to_string()))?,
            )),
        };
        if let Some(rate) = change.error_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return Err(FaultError::Rate(rate));
        }
        {
            let mut injection = self.injection.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(code) = code {
                injection.code = code;
            }
            if let Some(rate) = change.error_rate {
                injection.rate = rate;
            }
        }
        if let Some(outage) = change.outage {
            self.set_outage(outage);
        }
        Ok(())
    }

    pub fn set_outage(&self, on: bool) {
        self.outage.send_replace(on);
        tracing::warn!(outage = on, "fault knob: outage");
    }

    pub fn current(&self) -> FaultSettings {
        let injection = *self.injection.lock().unwrap_or_else(|e| e.into_inner());
        FaultSettings {
            outage: Some(*self.outage.borrow()),
            error_code: Some(
                injection
                    .code
                    .map(|c| c.code().to_string())
                    .unwrap_or_default(),
            ),
            error_rate: Some(injection.rate),
        }
    }

    /// Holds the caller while an outage lasts. Returns `false` when the hold timed out (the
    /// caller then drops the request without an answer).
    pub async fn pass_outage(&self) -> bool {
        let mut rx = self.outage.subscribe();
        if !*rx.borrow_and_update() {
            return true;
        }
        tokio::time::timeout(MAX_HOLD, rx.wait_for(|on| !*on))
            .await
            .is_ok()
    }

    /// The error to inject into this eligibility answer, if any.
    pub fn injected_error(&self) -> Option<SimErrorCode> {
        let injection = *self.injection.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        if injection.rate > 0.0 {
            // Fails request n when the running quota floor(n·rate) grows: exact over any window.
            let due =
                (n as f64 * injection.rate).floor() > ((n - 1) as f64 * injection.rate).floor();
            return due.then(|| injection.code.unwrap_or(SimErrorCode::Overloaded));
        }
        injection.code
    }
}

/// The answer carrying an injected error for `request`: a per-person error
/// (`ProcessingResultStatus` 2) for codes answered with HTTP 200, otherwise a file that ends
/// abnormally (`SegmentOfResult` 9).
pub fn injected_answer(
    request: &QualificationConfirmationRequest,
    error: SimErrorCode,
    now: PrimitiveDateTime,
    encoding: XmlEncoding,
) -> Answer {
    let header = &request.header;
    let echo = HeaderEcho {
        qualification_confirmation_date: Some(header.qualification_confirmation_date),
        arbitrary_file_identifier: header.arbitrary_file_identifier.clone(),
    };
    let mut answer = refusal(
        &header.medical_institution_code,
        &echo,
        error,
        Some("injected by the simulator's fault knob"),
        now,
        encoding,
    );
    if error.http_status() == 200 {
        let result = &mut answer.result;
        result.header.segment_of_result = SegmentOfResult::Normal;
        result.header.error_code = None;
        result.header.error_message = None;
        result.body = ResultBody {
            processing_result_status: Some(ProcessingResultStatus::Error),
            processing_result_code: Some(error.code().to_string()),
            processing_result_message: Some(error.message_ja().to_string()),
            qualification_validity: None,
            search_info: Some(request.search.clone()),
            prescription_issue_select: None,
            results: Vec::new(),
        };
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_fails_exactly_its_share() {
        let faults = Faults::new(&FaultSettings {
            error_rate: Some(0.25),
            ..Default::default()
        })
        .unwrap();
        let failed = (0..100)
            .filter(|_| faults.injected_error().is_some())
            .count();
        assert_eq!(failed, 25);
    }

    #[test]
    fn a_fixed_code_fails_everything_and_can_be_cleared() {
        let faults = Faults::new(&FaultSettings {
            error_code: Some("SIM-E0201".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            faults.injected_error(),
            Some(SimErrorCode::InsurerUnderMaintenance)
        );
        faults
            .apply(&FaultSettings {
                error_code: Some(String::new()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(faults.injected_error(), None);
    }

    #[test]
    fn bad_settings_change_nothing() {
        let faults = Faults::default();
        assert!(matches!(
            faults.apply(&FaultSettings {
                outage: Some(true),
                error_code: Some("E1".into()),
                ..Default::default()
            }),
            Err(FaultError::UnknownCode(_))
        ));
        assert_eq!(faults.current().outage, Some(false));
        assert_eq!(
            faults.apply(&FaultSettings {
                error_rate: Some(1.5),
                ..Default::default()
            }),
            Err(FaultError::Rate(1.5))
        );
    }

    #[tokio::test]
    async fn the_admin_route_reads_and_changes_the_knobs() {
        use axum::body::{Body, to_bytes};
        use axum::http::{Request, StatusCode};
        use tower::ServiceExt;

        let population = std::sync::Arc::new(crate::population::Population::generate(1, 5));
        let service = std::sync::Arc::new(crate::service::Service::new(population));
        let faults = std::sync::Arc::new(Faults::default());
        let router =
            crate::http::router_with_faults(service, std::time::Duration::ZERO, faults.clone());
        let post = |body: &'static str| {
            Request::post("/admin/faults")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap()
        };

        let answer = router
            .clone()
            .oneshot(post(r#"{"error_code":"SIM-E0301","error_rate":0.5}"#))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let now: FaultSettings =
            serde_json::from_slice(&to_bytes(answer.into_body(), 4096).await.unwrap()).unwrap();
        assert_eq!(now.error_code.as_deref(), Some("SIM-E0301"));
        assert_eq!(now.error_rate, Some(0.5));
        assert_eq!(now.outage, Some(false));

        let refused = router
            .clone()
            .oneshot(post(r#"{"error_code":"E-1"}"#))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert_eq!(faults.current().error_code.as_deref(), Some("SIM-E0301"));

        let read = router
            .oneshot(Request::get("/admin/faults").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(read.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn an_outage_holds_requests_until_it_ends() {
        let faults = std::sync::Arc::new(Faults::default());
        assert!(faults.pass_outage().await);
        faults.set_outage(true);
        let held = tokio::spawn({
            let faults = faults.clone();
            async move { faults.pass_outage().await }
        });
        tokio::task::yield_now().await;
        assert!(!held.is_finished());
        faults.set_outage(false);
        assert!(held.await.unwrap());
    }
}
