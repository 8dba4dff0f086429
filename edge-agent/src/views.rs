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
//! 4. Allowed: `YZKsiquc01` (drugs, the last 36 months) or `TKKsiquc01` (checkups) is sent,
//!    as real clients send them ([`drug_request`], [`checkup_request`]). A national refusal
//!    (a `ResultCode` other than 1) or an unreachable national system is recorded as a refusal
//!    (`national_error:<ResultCode>`, `unreachable`, `malformed_response`) and the clerk is
//!    shown the answer's `MessageContents` as written (never interpreted); an answer is
//!    recorded as an allowed view (staff, role, policy version, disaster window when that was
//!    the basis), and only then returned.
//!
//! Logs carry codes and counts only: never a patient identifier or a staff id.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration as StdDuration;

use onshi_domain::access::{
    AccessRules, Basis, ConsentRecord, DisasterWindow, PolicyVersion, ViewRequest,
};
use onshi_domain::events::{EventBody, FleetEvent, InfoCategory, InfoView};
use onshi_domain::ids::{
    InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber, Prefecture,
};
use onshi_domain::patient::{PatientHashKey, PatientRef};
use onshi_domain::site::{SiteKind, TerminalId};
use onshi_domain::xml::{
    Checkup, CheckupInfoRequest, CheckupInfoResult, DrugInfoRequest, DrugInfoResult, FileCategory,
    InfoOutcome, InfoRequestFlags, InfoRequestHeader, MedicationMonth, XmlEncoding, YearMonth,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::consents::{ConsentStore, ConsentStoreError};
use crate::national::{National, OnshiAnswer, OnshiError, Recovery, StoredView, Transport};
use crate::outbox::OutboxError;
use crate::recorder::Recorder;
use onshi_domain::access::Staff as StaffMember;

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
    /// What the answer carried; empty when refused.
    pub info: ViewedInfo,
    pub event: FleetEvent,
}

/// The information a view shows, as the national answer carries it.
#[derive(Debug, Clone, Default)]
pub struct ViewedInfo {
    /// `MeTrMonthInf`: per prescribing institution and month.
    pub drugs: Vec<MedicationMonth>,
    /// `CzDiInf`: dispensing.
    pub dispensing: Vec<MedicationMonth>,
    /// `ShPrInf`: prescriptions.
    pub prescriptions: Vec<MedicationMonth>,
    pub checkups: Vec<Checkup>,
}

impl ViewedInfo {
    /// Entries shown, for the log (counts only).
    pub fn entries(&self) -> usize {
        let drugs = |ms: &[MedicationMonth]| -> usize {
            ms.iter()
                .map(|m| m.drugs.len() + m.days.iter().map(|d| d.drugs.len()).sum::<usize>())
                .sum()
        };
        drugs(&self.drugs)
            + drugs(&self.dispensing)
            + drugs(&self.prescriptions)
            + self.checkups.iter().map(|c| c.items.len()).sum::<usize>()
    }
}

/// The drug request real clients send: the last [`DRUG_MONTHS`] months up to `this_month`,
/// `FileCategory` 4 (XML, and under our reading the category that includes the most; it is
/// also what clinic software sends by default: see [`FileCategory`]), and the two codes as
/// clients send them.
pub fn drug_request(header: InfoRequestHeader, this_month: YearMonth) -> DrugInfoRequest {
    DrugInfoRequest {
        header,
        start_month: this_month.minus_months(DRUG_MONTHS - 1),
        end_month: this_month,
        file_category: FileCategory::FULL_XML,
        flags: InfoRequestFlags::as_clients_send(),
    }
}

/// The checkup request real clients send: `FileCategory` 2 (XML; checkups have 1 and 2 only),
/// no period (the national side answers its 5 years), the two codes as clients send them.
pub fn checkup_request(header: InfoRequestHeader) -> CheckupInfoRequest {
    CheckupInfoRequest {
        header,
        start_month: None,
        end_month: None,
        file_category: FileCategory::XML,
        flags: InfoRequestFlags::as_clients_send(),
    }
}

/// `Err((reason code, message))` unless the answer's `ResultCode` is 1. The message is the
/// answer's `MessageContents` as written (Japanese then English in the simulator): the agent
/// never branches on its text or on the failure code.
fn national(outcome: &InfoOutcome) -> Result<(), (String, String)> {
    if outcome.result_code.is_success() {
        return Ok(());
    }
    let code = outcome.result_code.code();
    let said = outcome
        .message_contents
        .as_deref()
        .map(|m| format!("\n{m}"))
        .unwrap_or_default();
    Err((
        format!("national_error:{code}"),
        format!(
            "オンライン資格確認システムが情報を提供しませんでした（結果コード {code}） / the national system did not provide the information (ResultCode {code}){said}"
        ),
    ))
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
                source: None,
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
            source: None,
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
        // Nothing goes to the national system when its view could not be recorded.
        self.recorder.outbox().ensure_room().await?;
        let pending = InfoView {
            disaster_window_id: window_id,
            ..base
        };
        // Through the terminal the exchange is journaled with the view to record, and closed
        // in the outbox transaction that records it: a restart records an answer that landed
        // while the agent was down, once ([`crate::national::Recovery::View`]).
        let (message_id, body) = self.info_request(category, &numbers);
        let stored = StoredView {
            terminal: terminal.as_str().to_string(),
            view: pending.clone(),
        };
        let (answer, ticket) = self
            .onshi
            .exchange_journaled(message_id, body, Recovery::View(stored))
            .await;
        let fetched = judge_answer(category, answer);
        let noting = ticket.clone();
        let event = self
            .recorder
            .record_noting(
                terminal,
                EventBody::InfoView(answered_view(pending, &fetched)),
                move |e| noting.note(e),
            )
            .await?;
        ticket.finish().await;
        match fetched {
            Err((reason, message)) => {
                tracing::info!(reason = %reason, sequence = event.sequence, "view refused by the national side");
                Ok(refused(message, &reason, policy, event))
            }
            Ok(info) => {
                tracing::info!(
                    entries = info.entries(),
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
                    info,
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

    /// The request for `category` about `numbers`: its message id and bytes.
    fn info_request(
        &self,
        category: InfoCategory,
        numbers: &PatientNumbers,
    ) -> (&'static str, Vec<u8>) {
        let header = InfoRequestHeader {
            medical_institution_code: self.recorder.site().institution_code(),
            insurer_number: numbers.insurer_number.clone(),
            insurance_card_symbol: numbers.symbol.clone(),
            insured_person_identification_number: numbers.number.clone(),
            branch_number: numbers.branch.clone(),
            arbitrary_file_identifier: Some(Uuid::now_v7().simple().to_string()),
        };
        let this_month = YearMonth::of(crate::lookup::today_jst());
        match category {
            InfoCategory::Drug => (
                "YZKsiquc01",
                drug_request(header, this_month).to_xml(XmlEncoding::Utf8),
            ),
            _ => (
                "TKKsiquc01",
                checkup_request(header).to_xml(XmlEncoding::Utf8),
            ),
        }
    }
}

/// The view `pending` (the policy allowed it) as the national answer decides it: allowed, or
/// refused with the answer's reason code.
pub fn answered_view(
    pending: InfoView,
    fetched: &Result<ViewedInfo, (String, String)>,
) -> InfoView {
    match fetched {
        Ok(_) => InfoView {
            allowed: true,
            ..pending
        },
        Err((reason, _)) => InfoView {
            allowed: false,
            refusal_reason: Some(reason.clone()),
            ..pending
        },
    }
}

/// Reads the national answer to a `category` request; `Err((reason code, message))` when
/// nothing can be shown.
pub fn judge_answer(
    category: InfoCategory,
    answer: Result<OnshiAnswer, OnshiError>,
) -> Result<ViewedInfo, (String, String)> {
    let answer = answer.map_err(|e| {
        (
            "unreachable".to_string(),
            format!(
                "オンライン資格確認システムに接続できません。時間をおいて再度お試しください / {e}"
            ),
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
    match category {
        InfoCategory::Drug => {
            let read =
                DrugInfoResult::read_xml(&answer.body).map_err(|e| malformed(e.to_string()))?;
            crate::judge::log_read_warnings("YZKsiquc01res", &read.warnings);
            let result = read.value;
            national(&result.outcome)?;
            Ok(ViewedInfo {
                drugs: result.months,
                dispensing: result.dispensing,
                prescriptions: result.prescriptions,
                checkups: Vec::new(),
            })
        }
        _ => {
            let read =
                CheckupInfoResult::read_xml(&answer.body).map_err(|e| malformed(e.to_string()))?;
            crate::judge::log_read_warnings("TKKsiquc01res", &read.warnings);
            let result = read.value;
            national(&result.outcome)?;
            Ok(ViewedInfo {
                checkups: result.checkups,
                ..ViewedInfo::default()
            })
        }
    }
}

/// The lines the local API carries for a view (one per drug, one per checkup item), in the
/// answer's order: medical months first, then dispensing, then prescriptions.
pub fn view_lines(
    info: &ViewedInfo,
) -> (
    Vec<proto::agent::v1::DrugLine>,
    Vec<proto::agent::v1::CheckupLine>,
) {
    use proto::agent::v1 as pb;
    let ymd = |d: Option<time::Date>| {
        d.map(|d| format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day()))
            .unwrap_or_default()
    };
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    let mut drugs = Vec::new();
    for (source, months) in [
        ("medical", &info.drugs),
        ("dispensing", &info.dispensing),
        ("prescription", &info.prescriptions),
    ] {
        for m in months {
            let days = m
                .days
                .iter()
                .map(|d| (d.date, d.prescription_date, &d.drugs))
                .chain(std::iter::once((None, None, &m.drugs)));
            for (date, prescribed, list) in days {
                for x in list {
                    drugs.push(pb::DrugLine {
                        date: ymd(date),
                        drug_name: text(&x.drug_name),
                        ingredient: text(&x.ingredient_name),
                        quantity: text(&x.quantity),
                        unit: text(&x.unit),
                        usage: text(&x.usage),
                        times: text(&x.times),
                        institution: text(&m.institution_name),
                        month: m.month.map(|m| m.to_string()).unwrap_or_default(),
                        institution_code: text(&m.institution_code),
                        drug_code: text(&x.drug_code),
                        special_instruction: text(&x.special_instruction),
                        prescription_date: ymd(prescribed),
                        source: source.into(),
                    });
                }
            }
        }
    }
    let checkups = info
        .checkups
        .iter()
        .flat_map(|c| {
            c.items.iter().map(move |i| pb::CheckupLine {
                // The day when EffectiveTime is one, else EffectiveTime as written.
                date: c
                    .date()
                    .map(|d| ymd(Some(d)))
                    .unwrap_or_else(|| text(&c.effective_time)),
                item_code: text(&i.item_code),
                item_name: text(&i.item_name),
                value: text(&i.data_value),
                unit: text(&i.unit),
                value_name: text(&i.data_value_name),
                data_type: text(&i.data_type),
                oid: text(&i.oid),
            })
        })
        .collect();
    (drugs, checkups)
}

/// The view as the clerk reads it on the command line, Japanese first: a heading per list,
/// a line per month and institution, then each day's drugs with quantity, directions and
/// days; checkups by day, item by item.
pub fn render_lines(
    drugs: &[proto::agent::v1::DrugLine],
    checkups: &[proto::agent::v1::CheckupLine],
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut source = None;
    let mut place = None;
    for d in drugs {
        if source != Some(d.source.as_str()) {
            source = Some(d.source.as_str());
            place = None;
            let title = match d.source.as_str() {
                "dispensing" => "調剤情報 / dispensing",
                "prescription" => "処方情報 / prescriptions",
                _ => "薬剤情報 / drugs",
            };
            let _ = writeln!(out, "【{title}】");
        }
        let here = (
            d.month.as_str(),
            d.institution_code.as_str(),
            d.institution.as_str(),
        );
        if place != Some(here) {
            place = Some(here);
            let month = match (d.month.get(..4), d.month.get(4..6)) {
                (Some(y), Some(m)) => format!("{y}年{m}月"),
                _ => "月不明 / month unknown".to_string(),
            };
            let mut line = month;
            if !d.institution.is_empty() {
                let _ = write!(line, "  {}", d.institution);
            }
            if !d.institution_code.is_empty() {
                let _ = write!(line, "（{}）", d.institution_code);
            }
            let _ = writeln!(out, "{line}");
        }
        let mut line = format!("  {:<8}  {}", d.date, d.drug_name);
        if !d.ingredient.is_empty() {
            let _ = write!(line, "（{}）", d.ingredient);
        }
        if !d.quantity.is_empty() {
            let _ = write!(line, " {}{}", d.quantity, d.unit);
        }
        if !d.usage.is_empty() {
            let _ = write!(line, " {}", d.usage);
        }
        if !d.times.is_empty() {
            let _ = write!(line, " {}日分", d.times);
        }
        if !d.special_instruction.is_empty() {
            let _ = write!(line, " ［{}］", d.special_instruction);
        }
        if !d.drug_code.is_empty() {
            let _ = write!(line, "  code {}", d.drug_code);
        }
        let _ = writeln!(out, "{line}");
    }
    let mut day = None;
    for c in checkups {
        if day.is_none() {
            let _ = writeln!(out, "【特定健診情報 / checkups】");
        }
        if day != Some(c.date.as_str()) {
            day = Some(c.date.as_str());
            let _ = writeln!(out, "{}", c.date);
        }
        let value = if c.value_name.is_empty() {
            format!("{} {}", c.value, c.unit)
        } else {
            format!("{}（{}） {}", c.value_name, c.value, c.unit)
        };
        let _ = writeln!(
            out,
            "  {:<20} {}  [{}]",
            c.item_name,
            value.trim_end(),
            c.item_code
        );
    }
    out
}

fn refused(message: String, reason: &str, policy: PolicyVersion, event: FleetEvent) -> ViewAnswer {
    ViewAnswer {
        allowed: false,
        message,
        refusal_reason: Some(reason.to_string()),
        basis: None,
        policy,
        info: ViewedInfo::default(),
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

    fn corpus_paths(name: &str) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/onshi-corpus")
            .join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{} cannot be read ({e}): shared/onshi-corpus/ must be beside the checkout",
                path.display()
            )
        });
        onshi_domain::xml::element_paths(&bytes).unwrap()
    }

    fn header() -> InfoRequestHeader {
        InfoRequestHeader {
            medical_institution_code: onshi_domain::ids::MedicalInstitutionCode::parse(
                "0110112489",
            )
            .unwrap(),
            insurer_number: InsurerNumber::parse("01130012").unwrap(),
            insurance_card_symbol: Some(InsuredCardSymbol::parse("12345").unwrap()),
            insured_person_identification_number: InsuredIdentificationNumber::parse("678")
                .unwrap(),
            branch_number: Some(InsuredBranchNumber::parse("00").unwrap()),
            arbitrary_file_identifier: Some("12340".into()),
        }
    }

    #[test]
    fn requests_are_what_real_clients_send() {
        let month = YearMonth::parse("202601").unwrap();
        let drug = drug_request(header(), month);
        assert_eq!(drug.file_category, FileCategory::FULL_XML);
        assert!(drug.file_category.is_xml());
        assert_eq!(drug.start_month.to_string(), "202302");
        let xml = drug.to_xml(XmlEncoding::Utf8);
        assert_eq!(
            onshi_domain::xml::element_paths(&xml).unwrap(),
            corpus_paths("YZKsiquc01req_02261201093012340.xml")
        );
        let checkup = checkup_request(header());
        assert_eq!(checkup.file_category, FileCategory::XML);
        let xml = checkup.to_xml(XmlEncoding::Utf8);
        assert_eq!(
            onshi_domain::xml::element_paths(&xml).unwrap(),
            corpus_paths("TKKsiquc01req_02261201093012340.xml")
        );
    }

    #[test]
    fn national_refusals_keep_the_code_and_show_the_message_as_written() {
        use onshi_domain::xml::ResultCode;
        assert!(national(&InfoOutcome::success()).is_ok());
        let (reason, message) = national(&InfoOutcome {
            result_code: ResultCode::Other("SIM-E0401".into()),
            message_contents: Some("同意がありません / no consent".into()),
        })
        .unwrap_err();
        assert_eq!(reason, "national_error:SIM-E0401");
        assert!(
            message.starts_with("オンライン資格確認システム"),
            "{message}"
        );
        assert!(
            message.ends_with("\n同意がありません / no consent"),
            "{message}"
        );
        let (reason, _) = national(&InfoOutcome {
            result_code: ResultCode::Other("2".into()),
            message_contents: None,
        })
        .unwrap_err();
        assert_eq!(reason, "national_error:2");
    }

    #[test]
    fn the_clerk_reads_months_days_institutions_drugs_and_items() {
        use onshi_domain::xml::{CheckupItem, DrugEntry, MedicationDay};
        let amlodipine = DrugEntry {
            drug_code: Some("620000001".into()),
            drug_name: Some("アムロジピン錠５ｍｇ".into()),
            ingredient_name: Some("アムロジピンベシル酸塩".into()),
            quantity: Some("1".into()),
            unit: Some("錠".into()),
            usage: Some("１日１回朝食後".into()),
            times: Some("28".into()),
            ..DrugEntry::default()
        };
        let day = |drugs: Vec<DrugEntry>| MedicationDay {
            date: Some(time::macros::date!(2025 - 12 - 03)),
            drugs,
            ..MedicationDay::default()
        };
        let info = ViewedInfo {
            drugs: vec![MedicationMonth {
                institution_code: Some("0110112489".into()),
                institution_name: Some("愛全病院".into()),
                month: YearMonth::parse("202512"),
                days: vec![day(vec![amlodipine.clone()])],
                ..MedicationMonth::default()
            }],
            dispensing: vec![MedicationMonth {
                month: YearMonth::parse("202512"),
                days: vec![day(vec![DrugEntry {
                    drug_name: amlodipine.drug_name.clone(),
                    ..DrugEntry::default()
                }])],
                ..MedicationMonth::default()
            }],
            prescriptions: Vec::new(),
            checkups: vec![Checkup {
                effective_time: Some("20250610".into()),
                items: vec![
                    CheckupItem {
                        item_code: Some("9N001000000000001".into()),
                        item_name: Some("身長".into()),
                        data_value: Some("170.0".into()),
                        unit: Some("cm".into()),
                        ..CheckupItem::default()
                    },
                    CheckupItem {
                        item_code: Some("1A020000000190111".into()),
                        item_name: Some("尿糖".into()),
                        data_value: Some("1".into()),
                        data_value_name: Some("－".into()),
                        ..CheckupItem::default()
                    },
                ],
            }],
        };
        assert_eq!(info.entries(), 4);
        let (drugs, checkups) = view_lines(&info);
        assert_eq!(drugs.len(), 2);
        assert_eq!(drugs[0].source, "medical");
        assert_eq!(drugs[0].month, "202512");
        assert_eq!(drugs[1].source, "dispensing");
        assert_eq!(checkups[1].value_name, "－");
        let text = render_lines(&drugs, &checkups);
        let expected = "【薬剤情報 / drugs】
2025年12月  愛全病院（0110112489）
  20251203  アムロジピン錠５ｍｇ（アムロジピンベシル酸塩） 1錠 １日１回朝食後 28日分  code 620000001
【調剤情報 / dispensing】
2025年12月
  20251203  アムロジピン錠５ｍｇ
【特定健診情報 / checkups】
20250610
";
        assert!(text.starts_with(expected), "{text}");
        assert!(text.contains("身長"), "{text}");
        assert!(text.contains("170.0 cm  [9N001000000000001]"), "{text}");
        assert!(text.contains("－（1）  [1A020000000190111]"), "{text}");
    }
}
