//! The direct transport's card route: the JSON the agent sends onshi-sim (`POST
//! /oqs/card/confirm`) after reading a My Number card, one type for the writer (the agent) and
//! the reader (the simulator). The real national system is reached through the qualification
//! terminal instead (`xml`, the terminal's files); this protocol is the simulator's.

use crate::events::InfoCategory;

/// The confirmation body (JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// The challenge, hex, as issued.
    pub challenge: String,
    /// The user-authentication certificate, DER in hex.
    pub certificate: String,
    /// `pin` or `face`.
    pub identity_verification: String,
    /// PKCS#1 v1.5 SHA-256 signature over the challenge bytes, hex (the `pin` route).
    #[serde(default)]
    pub signature: Option<String>,
    /// The face-recognition reader matched the holder (the `face` route).
    #[serde(default)]
    pub face_verified: bool,
    /// `yyyyMMdd`; today (JST) when absent.
    #[serde(default)]
    pub qualification_confirmation_date: Option<String>,
    #[serde(default)]
    pub arbitrary_file_identifier: Option<String>,
    #[serde(default)]
    pub limit_consent: bool,
    /// The patient's choices on the reader for drug, checkup, diagnosis and surgery
    /// information: recorded per person with the confirmation's time (onshi-sim keeps it per person) and
    /// answered in the result's consent groups (`PharmacistsInfo…`,
    /// `SpecificHealthCheckupsInfo…`, `DiagnosisInfo…`, `OperationInfo…`; `…AvailableTime` is
    /// the consent time plus 24 hours).
    #[serde(default)]
    pub consent: ConsentChoices,
}

/// What the patient agreed to share, besides the copay limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentChoices {
    #[serde(default)]
    pub drug: bool,
    #[serde(default)]
    pub checkup: bool,
    #[serde(default)]
    pub diagnosis: bool,
    #[serde(default)]
    pub surgery: bool,
}

impl ConsentChoices {
    /// The choices naming `categories` (others, such as the copay limit, are not choices here).
    pub fn of(categories: &[InfoCategory]) -> Self {
        ConsentChoices {
            drug: categories.contains(&InfoCategory::Drug),
            checkup: categories.contains(&InfoCategory::Checkup),
            diagnosis: categories.contains(&InfoCategory::Diagnosis),
            surgery: categories.contains(&InfoCategory::Surgery),
        }
    }

    pub fn categories(self) -> Vec<InfoCategory> {
        [
            (self.drug, InfoCategory::Drug),
            (self.checkup, InfoCategory::Checkup),
            (self.diagnosis, InfoCategory::Diagnosis),
            (self.surgery, InfoCategory::Surgery),
        ]
        .into_iter()
        .filter_map(|(given, c)| given.then_some(c))
        .collect()
    }
}
