//! Information views (薬剤情報・特定健診情報の閲覧): a staff member asks to see a patient's drug
//! or checkup information; the access policy decides; the national system answers; every view
//! and every refusal is an `InfoView` event, recorded before anything is shown.
//!
//! 1. The patient: either the **view handle** a card lookup returned (the lookup's event id,
//!    kept in memory for [`HANDLE_LIFETIME`], with the insurance numbers the national answer
//!    carried; lost on restart, when the numbers can be typed instead), or the **insurance
//!    numbers** typed (insurer, symbol, number, branch: the disaster-mode search). A handle or
//!    numbers that do not parse are refused before anything is recorded (there is no patient
//!    to record).
//! 2. The staff member: looked up in the roster (`[[staff]]`); an unknown id is a recorded
//!    refusal (`unknown_staff`).
//! 3. [`onshi_domain::access::decide`] with the site's kind and prefecture, the configured
//!    policy version, the patient's kept consent ([`crate::consents`]) and the configured
//!    disaster windows. A refusal is recorded with its code, then told (Japanese, English).
//! 4. Allowed: `YZKsiquc01` (drugs, the last 36 months) or `TKKsiquc01` (checkups) is sent.
//!    A national refusal or an unreachable national system is recorded as a refusal
//!    (`national_error:<code>`, `unreachable`, `malformed_response`); an answer is recorded as
//!    an allowed view (staff, role, policy version, disaster window when that was the basis),
//!    and only then returned.
//!
//! Logs carry codes and counts only: never a patient identifier or a staff id.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration as StdDuration;

use onshi_domain::access::{
    AccessRules, Basis, ConsentRecord, DisasterWindow, PolicyVersion, ViewRequest,
};
use onshi_domain::codes::SegmentOfResult;
use onshi_domain::events::{EventBody, FleetEvent, InfoCategory, InfoView};
use onshi_domain::ids::{
    InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber, Prefecture,
};
use onshi_domain::patient::{PatientHashKey, PatientRef};
use onshi_domain::site::{SiteKind, TerminalId};
use onshi_domain::xml::{
    Checkup, CheckupInfoRequest, CheckupInfoResult, DrugInfoRequest, DrugInfoResult, DrugMonth,
    FileCategory, InfoRequestHeader, InfoResultHeader, XmlEncoding, YearMonth,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::StaffMember;
use crate::consents::{ConsentStore, ConsentStoreError};
use crate::national::National;
use crate::outbox::OutboxError;
use crate::recorder::Recorder;

/// How long a card lookup's view handle can be used (memory only).
pub const HANDLE_LIFETIME: StdDuration = StdDuration::from_secs(60 * 60);
/// Handles kept at most (the oldest dropped first).
const MAX_HANDLES: usize = 4096;
/// Months of drug history asked for (the national side keeps 3 years).
const DRUG_MONTHS: i32 = 36;

/// The insurance numbers that name a patient to the national system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientNumbers {
    pub insurer_number: InsurerNumber,
    pub symbol: Option<InsuredCardSymbol>,
    pub number: InsuredIdentificationNumber,
    pub branch: Option<InsuredBranchNumber>,
}

impl PatientNumbers {
    pub fn patient_ref(&self, key: &PatientHashKey) -> PatientRef {
        PatientRef::for_insurance_card(
            key,
            &self.insurer_number,
            self.symbol.as_ref(),
            &self.number,
            self.branch.as_ref(),
        )
    }
}

/// Who the view is about.
#[derive(Debug, Clone)]
pub enum PatientBy {
    /// The view handle a card lookup returned.
    Handle(String),
    /// Insurance numbers as typed (symbol and branch may be empty).
    Card {
        insurer_number: String,
        symbol: String,
        number: String,
        branch: String,
    },
}

#[derive(Debug, Clone)]
pub struct ViewQuery {
    /// `drug` or `checkup`.
    pub category: String,
    pub staff_id: String,
    pub patient: PatientBy,
    pub terminal: Option<String>,
}

/// Refused before anything was recorded.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{0}")]
    Invalid(String),
    /// The view could not be recorded, so nothing is shown.
    #[error(
        "閲覧を記録できなかったため表示できません。管理者に連絡してください / the view could not be recorded: {0}"
    )]
    NotRecorded(#[from] OutboxError),
    #[error("同意情報を読み取れません / {0}")]
    Consents(#[from] ConsentStoreError),
}

/// What the staff member is shown, after its event is in the outbox.
#[derive(Debug, Clone)]
pub struct ViewAnswer {
    pub allowed: bool,
    /// Japanese, then English.
    pub message: String,
    pub refusal_reason: Option<String>,
    pub basis: Option<Basis>,
    pub policy: PolicyVersion,
    pub drugs: Vec<DrugMonth>,
    pub checkups: Vec<Checkup>,
    pub event: FleetEvent,
}

/// The site facts and rules views are decided by.
#[derive(Debug, Clone)]
pub struct ViewRules {
    pub site_kind: SiteKind,
    pub prefecture: Prefecture,
    pub policy: PolicyVersion,
    pub staff: Vec<StaffMember>,
    pub disaster_windows: Vec<DisasterWindow>,
}

#[derive(Debug)]
struct Handle {
    numbers: PatientNumbers,
    expires: std::time::Instant,
}

/// Information views, and the consents and handles card lookups leave for them.
#[derive(Debug)]
pub struct Views {
    rules: ViewRules,
    /// The roster and disaster windows central pushed (`AccessRules`), which replace those of
    /// the configuration once they exist; kept in `rules_file` across restarts.
    central: std::sync::RwLock<Option<AccessRules>>,
    rules_file: PathBuf,
    consents: ConsentStore,
    handles: Mutex<HashMap<String, Handle>>,
    onshi: National,
    recorder: Recorder,
    patient_key: PatientHashKey,
    default_terminal: TerminalId,
}

fn category_of(name: &str) -> Result<InfoCategory, ViewError> {
    match name {
        "drug" => Ok(InfoCategory::Drug),
        "checkup" => Ok(InfoCategory::Checkup),
        "diagnosis" | "surgery" => Err(ViewError::Invalid(
            "診療情報・手術情報の閲覧にはまだ対応していません / diagnosis and surgery views are not supported yet".into(),
        )),
        other => Err(ViewError::Invalid(format!(
            "閲覧できる情報は drug（薬剤）または checkup（特定健診）です / the category is drug or checkup, not {other:?}"
        ))),
    }
}

impl Views {
    pub fn new(
        rules: ViewRules,
        rules_file: PathBuf,
        consents: ConsentStore,
        onshi: National,
        recorder: Recorder,
        patient_key: PatientHashKey,
        default_terminal: TerminalId,
    ) -> Self {
        let central = match std::fs::read(&rules_file) {
            Ok(bytes) => match serde_json::from_slice::<AccessRules>(&bytes) {
                Ok(kept) => Some(kept),
                Err(error) => {
                    // Not fatal: the configuration's rules apply until central sends new ones.
                    tracing::warn!(path = %rules_file.display(), %error, "the kept access rules cannot be read; using the configuration's until central sends them");
                    None
                }
            },
            Err(_) => None,
        };
        Self {
            rules,
            central: std::sync::RwLock::new(central),
            rules_file,
            consents,
            handles: Mutex::new(HashMap::new()),
            onshi,
            recorder,
            patient_key,
            default_terminal,
        }
    }

    /// Takes the access rules central pushed: kept on disk first (temp file, fsync, rename),
    /// then used for every view. Returns whether they were new.
    pub fn apply_central_rules(&self, rules: AccessRules) -> std::io::Result<bool> {
        let current = self
            .central
            .read()
            .map(|c| c.as_ref().map(|r| r.version.clone()));
        if current.ok().flatten().as_deref() == Some(rules.version.as_str()) {
            return Ok(false);
        }
        let temp = self.rules_file.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&serde_json::to_vec_pretty(&rules).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
        }
        std::fs::rename(&temp, &self.rules_file)?;
        tracing::info!(
            version = %rules.version,
            staff = rules.staff.len(),
            windows = rules.disaster_windows.len(),
            "access rules from central applied"
        );
        if let Ok(mut central) = self.central.write() {
            *central = Some(rules);
        }
        Ok(true)
    }

    /// The roster and windows in force: central's once it sent some, else the configuration's.
    fn roster_and_windows(&self) -> (Vec<StaffMember>, Vec<DisasterWindow>) {
        match self.central.read().ok().and_then(|c| c.clone()) {
            Some(rules) => (rules.staff, rules.disaster_windows),
            None => (
                self.rules.staff.clone(),
                self.rules.disaster_windows.clone(),
            ),
        }
    }

    /// After a card lookup's `Consent` event is recorded: keeps the consent and a view handle
    /// (`handle`, the lookup's event id) for the patient.
    pub async fn consent_recorded(
        &self,
        handle: String,
        numbers: PatientNumbers,
        record: &ConsentRecord,
    ) -> Result<(), ConsentStoreError> {
        let patient = numbers.patient_ref(&self.patient_key);
        self.remember(handle, numbers);
        self.consents
            .put(&patient, record, OffsetDateTime::now_utc())
            .await
    }

    /// Keeps a view handle for a card lookup.
    pub fn remember(&self, handle: String, numbers: PatientNumbers) {
        let now = std::time::Instant::now();
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        handles.retain(|_, h| h.expires > now);
        if handles.len() >= MAX_HANDLES
            && let Some(oldest) = handles
                .iter()
                .min_by_key(|(_, h)| h.expires)
                .map(|(k, _)| k.clone())
        {
            handles.remove(&oldest);
        }
        handles.insert(
            handle,
            Handle {
                numbers,
                expires: now + HANDLE_LIFETIME,
            },
        );
    }

    fn resolve(&self, patient: &PatientBy) -> Result<PatientNumbers, ViewError> {
        match patient {
            PatientBy::Handle(handle) => {
                let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
                handles
                    .get(handle)
                    .filter(|h| h.expires > std::time::Instant::now())
                    .map(|h| h.numbers.clone())
                    .ok_or_else(|| ViewError::Invalid(
                        "カード読み取りの照会番号が無効か期限切れです。保険証の番号で指定してください / the view handle is unknown or expired: give the insurance numbers instead".into(),
                    ))
            }
            PatientBy::Card {
                insurer_number,
                symbol,
                number,
                branch,
            } => {
                let mut problems = Vec::new();
                let insurer = InsurerNumber::parse(insurer_number).map_err(|e| problems.push(e));
                let symbol = match symbol.trim() {
                    "" => Ok(None),
                    s => InsuredCardSymbol::parse(s)
                        .map(Some)
                        .map_err(|e| problems.push(e)),
                };
                let number =
                    InsuredIdentificationNumber::parse(number).map_err(|e| problems.push(e));
                let branch = match branch.trim() {
                    "" => Ok(None),
                    b => InsuredBranchNumber::parse(b)
                        .map(Some)
                        .map_err(|e| problems.push(e)),
                };
                match (insurer, symbol, number, branch) {
                    (Ok(insurer_number), Ok(symbol), Ok(number), Ok(branch)) => {
                        Ok(PatientNumbers {
                            insurer_number,
                            symbol,
                            number,
                            branch,
                        })
                    }
                    _ => Err(ViewError::Invalid(
                        problems
                            .iter()
                            .map(|e| format!("{} / {e}", e.message_ja()))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    )),
                }
            }
        }
    }

    /// Decides, fetches and records one view; see the module docs.
    #[tracing::instrument(skip_all, fields(category = %query.category))]
    pub async fn view(&self, query: ViewQuery) -> Result<ViewAnswer, ViewError> {
        let category = category_of(&query.category)?;
        let terminal = match query.terminal.as_deref() {
            None | Some("") => self.default_terminal.clone(),
            Some(t) => TerminalId::parse(t)
                .map_err(|e| ViewError::Invalid(format!("端末IDが正しくありません / {e}")))?,
        };
        let numbers = self.resolve(&query.patient)?;
        let patient_ref = numbers.patient_ref(&self.patient_key);
        let policy = self.rules.policy;
        let now = OffsetDateTime::now_utc();
        let (roster, windows) = self.roster_and_windows();
        let staff = roster.iter().find(|s| s.id == query.staff_id);
        let Some(staff) = staff else {
            let view = InfoView {
                patient_ref,
                category,
                allowed: false,
                refusal_reason: Some("unknown_staff".into()),
                staff_id: Some(query.staff_id.clone()),
                staff_role: None,
                policy_version: Some(policy.as_str().into()),
                disaster_window_id: None,
            };
            let event = self.record(terminal, view).await?;
            tracing::info!(
                reason = "unknown_staff",
                sequence = event.sequence,
                "view refused"
            );
            return Ok(refused(
                "職員IDが名簿にありません / the staff id is not in the site's roster".into(),
                "unknown_staff",
                policy,
                event,
            ));
        };
        let consent = self.consents.get(&patient_ref, now).await?;
        let decision = onshi_domain::access::decide(&ViewRequest {
            policy,
            site_kind: self.rules.site_kind,
            site_prefecture: self.rules.prefecture,
            role: staff.role,
            category,
            consent: consent.as_ref(),
            disaster_windows: &windows,
            now,
        });
        let base = InfoView {
            patient_ref,
            category,
            allowed: false,
            refusal_reason: None,
            staff_id: Some(staff.id.clone()),
            staff_role: Some(staff.role.as_str().into()),
            policy_version: Some(policy.as_str().into()),
            disaster_window_id: None,
        };
        let basis = match decision {
            Err(refusal) => {
                let view = InfoView {
                    refusal_reason: Some(refusal.code().into()),
                    ..base
                };
                let event = self.record(terminal, view).await?;
                tracing::info!(
                    reason = refusal.code(),
                    sequence = event.sequence,
                    "view refused"
                );
                return Ok(refused(
                    format!("{} / {refusal}", refusal.message_ja()),
                    refusal.code(),
                    policy,
                    event,
                ));
            }
            Ok(basis) => basis,
        };
        let window_id = match &basis {
            Basis::DisasterWindow { id } => Some(id.clone()),
            Basis::Consent { .. } => None,
        };
        let fetched = self.fetch(category, &numbers).await;
        match fetched {
            Err((reason, message)) => {
                let view = InfoView {
                    refusal_reason: Some(reason.clone()),
                    disaster_window_id: window_id,
                    ..base
                };
                let event = self.record(terminal, view).await?;
                tracing::info!(reason = %reason, sequence = event.sequence, "view refused by the national side");
                Ok(refused(message, &reason, policy, event))
            }
            Ok((drugs, checkups)) => {
                let view = InfoView {
                    allowed: true,
                    disaster_window_id: window_id,
                    ..base
                };
                let event = self.record(terminal, view).await?;
                tracing::info!(
                    entries = drugs.len() + checkups.len(),
                    sequence = event.sequence,
                    "view recorded"
                );
                let message = match &basis {
                    Basis::Consent { .. } => {
                        "患者の同意に基づき表示します / shown with the patient's consent"
                            .to_string()
                    }
                    Basis::DisasterWindow { id } => format!(
                        "災害時医療情報閲覧（{id}）として表示します / shown under disaster window {id}"
                    ),
                };
                Ok(ViewAnswer {
                    allowed: true,
                    message,
                    refusal_reason: None,
                    basis: Some(basis),
                    policy,
                    drugs,
                    checkups,
                    event,
                })
            }
        }
    }

    async fn record(
        &self,
        terminal: TerminalId,
        view: InfoView,
    ) -> Result<FleetEvent, OutboxError> {
        self.recorder
            .record(terminal, EventBody::InfoView(view))
            .await
    }

    /// Asks the national system; `Err((reason code, message))` when nothing can be shown.
    async fn fetch(
        &self,
        category: InfoCategory,
        numbers: &PatientNumbers,
    ) -> Result<(Vec<DrugMonth>, Vec<Checkup>), (String, String)> {
        let header = InfoRequestHeader {
            medical_institution_code: self.recorder.site().institution_code(),
            insurer_number: numbers.insurer_number.clone(),
            insurance_card_symbol: numbers.symbol.clone(),
            insured_person_identification_number: numbers.number.clone(),
            branch_number: numbers.branch.clone(),
            arbitrary_file_identifier: Some(Uuid::now_v7().simple().to_string()),
        };
        let this_month = YearMonth::of(crate::lookup::today_jst());
        let (message_id, body) = match category {
            InfoCategory::Drug => (
                "YZKsiquc01",
                DrugInfoRequest {
                    header,
                    start_month: this_month.minus_months(DRUG_MONTHS - 1),
                    end_month: this_month,
                    file_category: FileCategory::Xml,
                }
                .to_xml(XmlEncoding::Utf8),
            ),
            _ => (
                "TKKsiquc01",
                CheckupInfoRequest {
                    header,
                    start_month: None,
                    end_month: None,
                    file_category: FileCategory::Xml,
                }
                .to_xml(XmlEncoding::Utf8),
            ),
        };
        let answer = self.onshi.exchange(message_id, body).await.map_err(|e| {
            (
                "unreachable".to_string(),
                format!("オンライン資格確認システムに接続できません。時間をおいて再度お試しください / {e}"),
            )
        })?;
        let malformed = |detail: String| {
            if (200..300).contains(&answer.http_status) {
                (
                    "malformed_response".to_string(),
                    format!("応答を読み取れませんでした / the answer could not be read: {detail}"),
                )
            } else {
                (
                    format!("http_{}", answer.http_status),
                    format!(
                        "照会が拒否されました（HTTP {}） / the national system refused the request",
                        answer.http_status
                    ),
                )
            }
        };
        let national = |h: &InfoResultHeader| -> Result<(), (String, String)> {
            if h.segment_of_result == SegmentOfResult::Normal {
                return Ok(());
            }
            let code = h.error_code.clone().unwrap_or_else(|| "-".into());
            Err((
                format!("national_error:{code}"),
                format!(
                    "オンライン資格確認システムが情報を提供しませんでした（{code}）{} / the national system did not provide the information",
                    h.error_message.as_deref().unwrap_or("")
                ),
            ))
        };
        match category {
            InfoCategory::Drug => {
                let result =
                    DrugInfoResult::from_xml(&answer.body).map_err(|e| malformed(e.to_string()))?;
                national(&result.header)?;
                Ok((result.months, Vec::new()))
            }
            _ => {
                let result = CheckupInfoResult::from_xml(&answer.body)
                    .map_err(|e| malformed(e.to_string()))?;
                national(&result.header)?;
                Ok((Vec::new(), result.checkups))
            }
        }
    }
}

fn refused(message: String, reason: &str, policy: PolicyVersion, event: FleetEvent) -> ViewAnswer {
    ViewAnswer {
        allowed: false,
        message,
        refusal_reason: Some(reason.to_string()),
        basis: None,
        policy,
        drugs: Vec::new(),
        checkups: Vec::new(),
        event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_checked() {
        assert_eq!(category_of("drug").unwrap(), InfoCategory::Drug);
        assert_eq!(category_of("checkup").unwrap(), InfoCategory::Checkup);
        assert!(matches!(category_of("surgery"), Err(ViewError::Invalid(_))));
        assert!(matches!(category_of("x"), Err(ViewError::Invalid(_))));
    }
}
