//! The My Number card route (マイナ保険証) and reader health.
//!
//! - **Reader watch** ([`Cards::run_watch`]): a dedicated thread blocks in
//!   `SCardGetStatusChange` (through [`card_reader::ReaderWatch`]) and hands every change to an
//!   async task that records a `ReaderChange` event (present / card present / removed / error,
//!   with the reader's counters) whenever a reader's state differs from what was last recorded.
//!   When pcscd is down the thread retries with a backoff (1 s doubling to 10 s) and every known
//!   reader is reported removed; on shutdown the wait is cancelled (`SCardCancel`).
//! - **Card lookup** ([`Cards::lookup`]): identify the card (SELECT of the JPKI application), read
//!   the user-authentication certificate, refuse an expired one locally, verify the PIN (one try,
//!   never stored, never retried by the agent) unless the reader is a face-recognition reader
//!   that verified the face, fetch a challenge from the national system (concurrently with the
//!   card reads), have the card sign it, release the reader, and send certificate and signature
//!   for confirmation. The result is recorded as a `Lookup` event (route `my_number_card`,
//!   identity `pin`/`face`, patient as the keyed hash of the insurance identifiers the answer
//!   carries) **before** it is returned; every failure on the way is a `CardCheck` event, also
//!   recorded before the clerk sees it.
//!
//! The transport of the card route is onshi-sim's convention (see `onshi_sim::card`): the real
//! one is not public.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use card_reader::jpki::sha256_digest_info;
use card_reader::{
    CardError, CardPresence, CardReaders, JpkiCard, Pin, ReaderSnapshot, WatchEvent,
};
use onshi_domain::events::{
    CardCheck, CardCheckResult, Consent, ConsentChoice, EventBody, FleetEvent,
    IdentityVerification, InfoCategory, Lookup, LookupOutcome, LookupRoute, LookupSource,
    ReaderChange, ReaderState,
};
use onshi_domain::patient::{PatientHashKey, PatientRef};
use onshi_domain::site::TerminalId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::judge::{Judged, PersonShown, judge};
use crate::lookup::today_jst;
use crate::national::National;
use crate::outbox::OutboxError;
use crate::recorder::Recorder;
use onshi_domain::codes::QualificationValidity;
use onshi_domain::direct::{ConfirmRequest, ConsentChoices};

/// "No matching qualification" for a card on the reader.
pub(crate) const NOT_FOUND_ON_CARD: &str =
    "該当する資格がありません / no qualification is registered for this card";

/// `[cards]` in the agent's configuration: present means the agent owns the site's readers.
///
/// ```toml
/// [cards]
/// [[cards.readers]]
/// name = "Virtual PCD 00 01"
/// face_recognition = true     # a face-recognition reader (顔認証付きカードリーダー)
/// ```
///
/// `consent_categories` lists what the readers offer the patient to share besides the copay
/// limit (always offered): `drug`, `checkup`, `diagnosis`, `surgery`; by default drug and
/// checkup, as the national defaults are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardsConfig {
    /// What the agent is told about particular readers; unlisted readers are general-purpose
    /// readers (PIN route only).
    #[serde(default)]
    pub readers: Vec<ReaderConfig>,
    /// The information categories the readers offer for consent.
    #[serde(default = "default_consent_categories")]
    pub consent_categories: Vec<InfoCategory>,
}

fn default_consent_categories() -> Vec<InfoCategory> {
    vec![InfoCategory::Drug, InfoCategory::Checkup]
}

impl Default for CardsConfig {
    fn default() -> Self {
        Self {
            readers: Vec::new(),
            consent_categories: default_consent_categories(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderConfig {
    /// The PC/SC reader name, exactly as `edge-agent readers` lists it.
    pub name: String,
    #[serde(default)]
    pub face_recognition: bool,
}

/// A card lookup as the counter asks for it.
#[derive(Debug)]
pub struct CardRequest {
    pub reader: String,
    /// The patient's PIN; `None` on the face route.
    pub pin: Option<Pin>,
    /// The face-recognition reader matched the patient's face to the card.
    pub face_verified: bool,
    pub terminal: Option<TerminalId>,
    pub limit_consent: bool,
    /// What the patient agreed on the reader to share (each must be offered at this site).
    pub consent: Vec<InfoCategory>,
}

/// Refused before touching the card or recording anything.
#[derive(Debug, thiserror::Error)]
pub enum CardRequestError {
    #[error("{0}")]
    Invalid(String),
    #[error("読み取り中のカードリーダーです / the reader {0} is busy with another lookup")]
    Busy(String),
    /// The answer could not be recorded, so it is withheld.
    #[error(
        "結果を記録できなかったため表示できません。管理者に連絡してください / the result could not be recorded: {0}"
    )]
    NotRecorded(#[from] OutboxError),
}

/// What the counter is shown, after its event is in the outbox.
#[derive(Debug, Clone)]
pub struct CardAnswer {
    pub card_check: CardCheckResult,
    pub pin_tries_left: Option<u32>,
    /// Present when the card check passed and the national system was asked.
    pub outcome: Option<LookupOutcome>,
    pub qualification_validity: Option<QualificationValidity>,
    pub identity_verification: IdentityVerification,
    /// For the clerk: Japanese, then English.
    pub message: String,
    pub person: Option<PersonShown>,
    pub event: FleetEvent,
    pub latency_ms: u32,
    /// The consent recorded for this lookup (a `Consent` event), if the patient was asked.
    pub consent: Option<Consent>,
    /// Names the patient for information views ([`crate::views`]) for a while.
    pub view_handle: Option<String>,
}

/// One reader's health, reported with each `ReaderChange`.
#[derive(Debug, Clone)]
pub struct ReaderHealth {
    pub name: String,
    pub state: ReaderState,
    pub face_recognition: bool,
    pub cards_read: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Health {
    /// The state last recorded per reader, with counters.
    readers: HashMap<String, ReaderHealth>,
    busy: std::collections::HashSet<String>,
}

/// The site's card readers.
#[derive(Debug)]
pub struct Cards {
    readers: Arc<dyn CardReaders>,
    config: CardsConfig,
    recorder: Recorder,
    onshi: National,
    patient_key: PatientHashKey,
    default_terminal: TerminalId,
    health: Mutex<Health>,
    views: Option<Arc<crate::views::Views>>,
}

enum WatchMessage {
    Readers(Vec<ReaderSnapshot>),
    Down(CardError),
}

fn card_check_of(error: &CardError) -> (CardCheckResult, Option<u32>) {
    match error {
        CardError::WrongPin { tries_left } => {
            (CardCheckResult::WrongPin, Some(u32::from(*tries_left)))
        }
        CardError::PinLocked => (CardCheckResult::PinLocked, Some(0)),
        CardError::CardRemoved | CardError::NoCard => (CardCheckResult::CardRemoved, None),
        CardError::UnsupportedCard => (CardCheckResult::UnsupportedCard, None),
        CardError::PinRequired
        | CardError::ReaderGone
        | CardError::NoService
        | CardError::Timeout
        | CardError::Card(_)
        | CardError::Reader(_) => (CardCheckResult::ReaderError, None),
    }
}

/// A failure of the card steps: a card error or an expired certificate.
enum CardStop {
    Card(CardError),
    Expired(String),
}

impl Cards {
    pub fn new(
        config: CardsConfig,
        readers: Arc<dyn CardReaders>,
        recorder: Recorder,
        onshi: National,
        patient_key: PatientHashKey,
        default_terminal: TerminalId,
    ) -> Self {
        Self {
            readers,
            config,
            recorder,
            onshi,
            patient_key,
            default_terminal,
            health: Mutex::new(Health::default()),
            views: None,
        }
    }

    /// Keeps consents and view handles for information views.
    pub fn with_views(mut self, views: Arc<crate::views::Views>) -> Self {
        self.views = Some(views);
        self
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn face_capable(&self, reader: &str) -> bool {
        self.config
            .readers
            .iter()
            .any(|r| r.name == reader && r.face_recognition)
    }

    /// Every reader's state and counters, as a `ReaderChange` would report them.
    pub fn reader_states(&self) -> Vec<ReaderChange> {
        self.readers()
            .iter()
            .map(|entry| reader_change(entry, None))
            .collect()
    }

    /// The readers as last seen, sorted by name.
    pub fn readers(&self) -> Vec<ReaderHealth> {
        let mut readers: Vec<ReaderHealth> = self.health().readers.values().cloned().collect();
        readers.sort_by(|a, b| a.name.cmp(&b.name));
        readers
    }

    /// Follows the readers until `stop` completes, recording a `ReaderChange` on every change.
    pub async fn run_watch(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let (tx, mut rx) = mpsc::channel::<WatchMessage>(16);
        let stopping = Arc::new(AtomicBool::new(false));
        let canceller: Arc<Mutex<Option<card_reader::Canceller>>> = Arc::new(Mutex::new(None));
        let thread = {
            let readers = self.readers.clone();
            let stopping = stopping.clone();
            let canceller = canceller.clone();
            std::thread::Builder::new()
                .name("card-readers".into())
                .spawn(move || watch_thread(readers, tx, stopping, canceller))
        };
        if let Err(error) = thread {
            tracing::error!(%error, "cannot start the card reader thread");
            return;
        }
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                message = rx.recv() => match message {
                    Some(message) => {
                        if let Err(error) = self.readers_changed(message).await {
                            tracing::error!(%error, "a reader change could not be recorded");
                        }
                    }
                    None => break,
                },
            }
        }
        stopping.store(true, Ordering::SeqCst);
        if let Some(c) = canceller.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            c.cancel();
        }
    }

    async fn readers_changed(&self, message: WatchMessage) -> Result<(), OutboxError> {
        let changes: Vec<ReaderChange> = {
            let mut health = self.health();
            let mut changes = Vec::new();
            let (seen, down): (Vec<ReaderSnapshot>, Option<CardError>) = match message {
                WatchMessage::Readers(readers) => (readers, None),
                WatchMessage::Down(error) => (Vec::new(), Some(error)),
            };
            for reader in &seen {
                let state = match reader.card {
                    CardPresence::Empty => ReaderState::PresentEmpty,
                    CardPresence::Present { .. } => ReaderState::CardPresent,
                    CardPresence::Mute => ReaderState::Error,
                };
                let face = self.face_capable(&reader.name);
                let entry = health
                    .readers
                    .entry(reader.name.clone())
                    .or_insert_with(|| ReaderHealth {
                        name: reader.name.clone(),
                        state: ReaderState::Removed,
                        face_recognition: face,
                        cards_read: 0,
                        errors: 0,
                        last_error: None,
                    });
                if state == ReaderState::Error && entry.state != ReaderState::Error {
                    entry.errors += 1;
                    entry.last_error = Some("the card on the reader does not answer".into());
                }
                if entry.state != state {
                    entry.state = state;
                    changes.push(reader_change(entry, None));
                }
            }
            let detail = match &down {
                Some(error) => format!("{error}"),
                None => "the reader was unplugged".to_string(),
            };
            for entry in health.readers.values_mut() {
                if entry.state != ReaderState::Removed && !seen.iter().any(|r| r.name == entry.name)
                {
                    entry.state = ReaderState::Removed;
                    if down.is_some() {
                        entry.errors += 1;
                        entry.last_error = Some(detail.clone());
                    }
                    changes.push(reader_change(entry, Some(detail.clone())));
                }
            }
            changes
        };
        for change in changes {
            tracing::info!(
                reader = %change.reader_name,
                state = ?change.state,
                "reader change"
            );
            self.recorder
                .record(
                    self.default_terminal.clone(),
                    EventBody::ReaderChange(change),
                )
                .await?;
        }
        Ok(())
    }

    fn count(&self, reader: &str, read: bool, error: Option<&str>) {
        let mut health = self.health();
        if let Some(entry) = health.readers.get_mut(reader) {
            if read {
                entry.cards_read += 1;
            }
            if let Some(error) = error {
                entry.errors += 1;
                entry.last_error = Some(error.to_string());
            }
        }
    }

    /// Reads the card on `request.reader` and asks the national system; see the module docs.
    #[tracing::instrument(skip_all, fields(reader = %request.reader, route = "my_number_card"))]
    pub async fn lookup(&self, request: CardRequest) -> Result<CardAnswer, CardRequestError> {
        // In terminal mode the card is the terminal's: its own software reads it on the face
        // reader and the agent records the result from `face/`. Refused before the reader is
        // touched, so the agent never takes the card from the terminal or spends a PIN try.
        if self.onshi.terminal().is_some() {
            return Err(CardRequestError::Invalid(TERMINAL_OWNS_THE_CARD.into()));
        }
        let face = request.face_verified;
        if face && !self.face_capable(&request.reader) {
            return Err(CardRequestError::Invalid(format!(
                "顔認証付きカードリーダーとして設定されていません / {} is not configured as a face-recognition reader",
                request.reader
            )));
        }
        if let Some(c) = request
            .consent
            .iter()
            .find(|c| !self.config.consent_categories.contains(c))
        {
            let name = serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(CardRequestError::Invalid(format!(
                "この同意項目はこのカードリーダーでは提示していません / consent to {name} is not offered at this site (cards.consent_categories)"
            )));
        }
        if !face && request.pin.is_none() {
            return Err(CardRequestError::Invalid(
                "暗証番号を入力してください / the PIN is needed (or a face match on a face-recognition reader)"
                    .into(),
            ));
        }
        {
            let mut health = self.health();
            if !health.busy.insert(request.reader.clone()) {
                return Err(CardRequestError::Busy(request.reader.clone()));
            }
        }
        self.lookup_inner(request.reader.clone(), request).await
    }

    async fn lookup_inner(
        &self,
        reader: String,
        request: CardRequest,
    ) -> Result<CardAnswer, CardRequestError> {
        struct Release<'a>(&'a Cards, String);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.health().busy.remove(&self.1);
            }
        }
        let _release = Release(self, reader.clone());
        // Nothing goes to the national system (the challenge) when the lookup could not be
        // recorded.
        self.recorder.outbox().ensure_room().await?;
        let started = Instant::now();
        let terminal = request
            .terminal
            .clone()
            .unwrap_or_else(|| self.default_terminal.clone());
        let identity = if request.face_verified {
            IdentityVerification::Face
        } else {
            IdentityVerification::Pin
        };

        // The card steps (blocking) and the challenge (network) at the same time.
        let readers = self.readers.clone();
        let pin = request.pin.clone();
        let card_reader_name = reader.clone();
        let card_steps = tokio::task::spawn_blocking(move || {
            read_and_verify(&*readers, &card_reader_name, pin.as_ref())
        });
        let (card, challenge) = tokio::join!(card_steps, self.challenge());
        let card =
            card.unwrap_or_else(|join| Err(CardStop::Card(CardError::Reader(join.to_string()))));
        let (card, certificate) = match card {
            Ok(ok) => ok,
            Err(stop) => return self.card_failed(&reader, terminal, stop, started).await,
        };
        self.count(&reader, true, None);
        let challenge = match challenge {
            Ok(challenge) => challenge,
            Err(detail) => {
                drop(card);
                return self.unreachable(terminal, identity, detail, started).await;
            }
        };
        let signature = match sign_challenge(card, &challenge, identity).await {
            Ok(signature) => signature,
            Err(error) => {
                return self
                    .card_failed(&reader, terminal, CardStop::Card(error), started)
                    .await;
            }
        };

        let confirm = ConfirmRequest {
            challenge: fleet_tls::identity::hex(&challenge),
            certificate: fleet_tls::identity::hex(&certificate),
            identity_verification: identity.as_str().to_string(),
            signature: signature.as_deref().map(fleet_tls::identity::hex),
            face_verified: request.face_verified,
            qualification_confirmation_date: Some(yyyymmdd(today_jst())),
            arbitrary_file_identifier: Some(Uuid::now_v7().simple().to_string()),
            limit_consent: request.limit_consent,
            consent: ConsentChoices::of(&request.consent),
        };
        let answer = self
            .onshi
            .exchange_json(
                "card/confirm",
                serde_json::to_vec(&confirm).unwrap_or_default(),
            )
            .await;
        let latency_ms = elapsed_ms(started);
        let judged = match answer {
            Ok(answer) => judge(&answer.body, answer.http_status, NOT_FOUND_ON_CARD),
            Err(error) => {
                return self
                    .unreachable(terminal, identity, error.to_string(), started)
                    .await;
            }
        };
        self.record_answer(terminal, &request, identity, judged, latency_ms)
            .await
    }

    /// Records the lookup the national system answered, then the consent the patient gave on
    /// the reader (when asked and the answer is valid), which the site's views then rely on.
    async fn record_answer(
        &self,
        terminal: TerminalId,
        request: &CardRequest,
        identity: IdentityVerification,
        judged: Judged,
        latency_ms: u32,
    ) -> Result<CardAnswer, CardRequestError> {
        let patient_ref = judged.first.as_ref().and_then(|r| {
            Some(PatientRef::for_insurance_card(
                &self.patient_key,
                r.insurer_number.as_ref()?,
                r.insured_card_symbol.as_ref(),
                r.insured_identification_number.as_ref()?,
                r.insured_branch_number.as_ref(),
            ))
        });
        let lookup = Lookup {
            route: LookupRoute::MyNumberCard,
            outcome: judged.outcome,
            patient_ref: patient_ref.clone(),
            insurer_number: judged
                .first
                .as_ref()
                .and_then(|r| r.insurer_number.as_ref())
                .map(|n| n.as_str().to_string()),
            qualification_validity: judged.validity.map(|v| v.code().to_string()),
            processing_result_code: judged.processing_result_code.clone(),
            error_code: judged.error_code.clone(),
            latency_ms,
            staff_id: None,
            source: LookupSource::Counter,
            batch_id: None,
            identity_verification: identity,
        };
        let event = self
            .recorder
            .record(terminal.clone(), EventBody::Lookup(lookup))
            .await?;
        tracing::info!(
            outcome = judged.outcome.as_str(),
            latency_ms,
            sequence = event.sequence,
            "card lookup recorded"
        );
        crate::lookup::observe_latency(LookupRoute::MyNumberCard, judged.outcome, latency_ms);
        let mut message = judged.message.clone();
        let mut consent = None;
        let mut view_handle = None;
        let asked = request.limit_consent || !request.consent.is_empty();
        let numbers = judged.first.as_ref().and_then(|first| {
            Some((
                first,
                crate::views::PatientNumbers {
                    insurer_number: first.insurer_number.clone()?,
                    symbol: first.insured_card_symbol.clone(),
                    number: first.insured_identification_number.clone()?,
                    branch: first.insured_branch_number.clone(),
                },
            ))
        });
        if let (true, Some((first, numbers)), Some(patient_ref)) = (
            asked && judged.outcome == LookupOutcome::Valid,
            numbers,
            patient_ref,
        ) {
            let given = consent_of(first, patient_ref);
            self.recorder
                .record(terminal, EventBody::Consent(given.clone()))
                .await?;
            if let Some(views) = &self.views {
                let categories = given_categories(&given);
                let record = onshi_domain::access::ConsentRecord {
                    consented_at: given.consented_at,
                    categories,
                };
                if let Err(error) = views
                    .consent_recorded(event.id.to_string(), numbers, &record)
                    .await
                {
                    tracing::error!(%error, "the consent could not be kept for views");
                    message.push_str(
                        "\n同意を端末に保存できませんでした（閲覧はできません） / the consent could not be kept at the site: views will be refused",
                    );
                }
                view_handle = Some(event.id.to_string());
            }
            consent = Some(given);
        }
        Ok(CardAnswer {
            card_check: CardCheckResult::Ok,
            pin_tries_left: None,
            outcome: Some(judged.outcome),
            qualification_validity: judged.validity,
            identity_verification: identity,
            person: judged.person(),
            message,
            event,
            latency_ms,
            consent,
            view_handle,
        })
    }

    async fn challenge(&self) -> Result<Vec<u8>, String> {
        let answer = self
            .onshi
            .exchange_json("card/challenge", Vec::new())
            .await
            .map_err(|e| e.to_string())?;
        if answer.http_status != 200 {
            return Err(format!(
                "the challenge was refused (HTTP {})",
                answer.http_status
            ));
        }
        let value: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
        let text = value["challenge"]
            .as_str()
            .ok_or("the challenge answer has no challenge")?;
        unhex(text).ok_or_else(|| "the challenge is not hex".to_string())
    }

    async fn card_failed(
        &self,
        reader: &str,
        terminal: TerminalId,
        stop: CardStop,
        started: Instant,
    ) -> Result<CardAnswer, CardRequestError> {
        let (result, tries, detail, message) = match &stop {
            CardStop::Card(error) => {
                let (result, tries) = card_check_of(error);
                (result, tries, error.to_string(), error.for_clerk())
            }
            CardStop::Expired(until) => (
                CardCheckResult::CertificateExpired,
                None,
                format!("the user-authentication certificate expired ({until})"),
                format!(
                    "マイナンバーカードの電子証明書の有効期限が切れています（{until}）。市区町村で更新が必要です。保険証または資格確認書で確認してください / the card's certificate has expired ({until})"
                ),
            ),
        };
        if matches!(
            result,
            CardCheckResult::CardRemoved | CardCheckResult::ReaderError
        ) {
            self.count(reader, false, Some(&detail));
        }
        let check = CardCheck {
            reader_name: reader.to_string(),
            result,
            pin_tries_left: tries,
            detail: Some(detail),
        };
        let event = self
            .recorder
            .record(terminal, EventBody::CardCheck(check))
            .await?;
        tracing::info!(result = ?result, sequence = event.sequence, "card check recorded");
        Ok(CardAnswer {
            card_check: result,
            pin_tries_left: tries,
            outcome: None,
            qualification_validity: None,
            identity_verification: IdentityVerification::None,
            message,
            person: None,
            event,
            latency_ms: elapsed_ms(started),
            consent: None,
            view_handle: None,
        })
    }

    async fn unreachable(
        &self,
        terminal: TerminalId,
        identity: IdentityVerification,
        detail: String,
        started: Instant,
    ) -> Result<CardAnswer, CardRequestError> {
        let latency_ms = elapsed_ms(started);
        let lookup = Lookup {
            route: LookupRoute::MyNumberCard,
            outcome: LookupOutcome::Unreachable,
            patient_ref: None,
            insurer_number: None,
            qualification_validity: None,
            processing_result_code: None,
            error_code: Some("unreachable".into()),
            latency_ms,
            staff_id: None,
            source: LookupSource::Counter,
            batch_id: None,
            identity_verification: identity,
        };
        let event = self
            .recorder
            .record(terminal, EventBody::Lookup(lookup))
            .await?;
        crate::lookup::observe_latency(
            LookupRoute::MyNumberCard,
            LookupOutcome::Unreachable,
            latency_ms,
        );
        Ok(CardAnswer {
            card_check: CardCheckResult::Ok,
            pin_tries_left: None,
            outcome: Some(LookupOutcome::Unreachable),
            qualification_validity: None,
            identity_verification: identity,
            message: format!(
                "オンライン資格確認システムに接続できません。保険証で確認してください / {detail}"
            ),
            person: None,
            event,
            latency_ms,
            consent: None,
            view_handle: None,
        })
    }
}

/// The consent the national answer states: per category its `…ConsFlg` (a category the
/// answer does not mention was not given), the time from `…ConsTime` (JST) or now.
pub(crate) fn consent_of(
    first: &onshi_domain::xml::ResultOfQualificationConfirmation,
    patient_ref: PatientRef,
) -> Consent {
    use onshi_domain::codes::ConsentStatus;
    let choice = |g: Option<&onshi_domain::xml::ConsentGroup>| match g.map(|g| g.cons_flg) {
        Some(ConsentStatus::Given) => ConsentChoice::Given,
        Some(ConsentStatus::Expired) => ConsentChoice::Expired,
        Some(ConsentStatus::HardToObtain) => ConsentChoice::HardToObtain,
        Some(ConsentStatus::NotGiven) | None => ConsentChoice::None,
    };
    let groups = [
        first.pharmacists_info.as_ref(),
        first.specific_health_checkups_info.as_ref(),
        first.diagnosis_info.as_ref(),
        first.operation_info.as_ref(),
    ];
    let jst = time::macros::offset!(+9);
    let consented_at = groups
        .iter()
        .flatten()
        .find_map(|g| g.cons_time)
        .or(first.limit_application_certificate_related_cons_time)
        .map(|t| t.assume_offset(jst))
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    let limit_given = first.limit_application_certificate_related_cons_flg == Some(true);
    Consent {
        patient_ref,
        consented_at,
        available_until: consented_at + onshi_domain::access::CONSENT_LIFETIME,
        limit_info: if limit_given {
            ConsentChoice::Given
        } else {
            ConsentChoice::None
        },
        drug: choice(groups[0]),
        checkup: choice(groups[1]),
        diagnosis: choice(groups[2]),
        surgery: choice(groups[3]),
    }
}

pub(crate) fn given_categories(c: &Consent) -> Vec<InfoCategory> {
    [
        (c.drug, InfoCategory::Drug),
        (c.checkup, InfoCategory::Checkup),
        (c.diagnosis, InfoCategory::Diagnosis),
        (c.surgery, InfoCategory::Surgery),
    ]
    .into_iter()
    .filter_map(|(choice, category)| (choice == ConsentChoice::Given).then_some(category))
    .collect()
}

fn reader_change(entry: &ReaderHealth, detail: Option<String>) -> ReaderChange {
    ReaderChange {
        reader_name: entry.name.clone(),
        state: entry.state,
        detail,
        cards_read: entry.cards_read,
        errors: entry.errors,
        last_error: entry.last_error.clone(),
    }
}

/// The PIN route signs the challenge with the card's user-authentication key (PKCS#1 v1.5
/// over its SHA-256); the face route asks the card nothing more. Either way the reader is
/// released here, before the network round trip.
async fn sign_challenge(
    mut card: JpkiCard,
    challenge: &[u8],
    identity: IdentityVerification,
) -> Result<Option<Vec<u8>>, CardError> {
    if identity != IdentityVerification::Pin {
        drop(card);
        return Ok(None);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, challenge);
    let mut digest32 = [0u8; 32];
    digest32.copy_from_slice(digest.as_ref());
    tokio::task::spawn_blocking(move || {
        let signature = card.sign(&sha256_digest_info(&digest32));
        drop(card);
        signature
    })
    .await
    .unwrap_or_else(|join| Err(CardError::Reader(join.to_string())))
    .map(Some)
}

/// The blocking card steps: identify, read the certificate, check its dates, verify the PIN.
fn read_and_verify(
    readers: &dyn CardReaders,
    reader: &str,
    pin: Option<&Pin>,
) -> Result<(JpkiCard, Vec<u8>), CardStop> {
    let channel = readers.connect(reader).map_err(CardStop::Card)?;
    let mut card = JpkiCard::open(channel).map_err(CardStop::Card)?;
    let certificate = card.read_auth_certificate().map_err(CardStop::Card)?;
    if let Some(until) = expired(&certificate) {
        return Err(CardStop::Expired(until));
    }
    if let Some(pin) = pin {
        card.verify_pin(pin).map_err(CardStop::Card)?;
    }
    Ok((card, certificate))
}

/// `Some(not_after)` when the certificate is outside its validity dates now.
fn expired(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let now = x509_parser::time::ASN1Time::now();
    (!cert.validity().is_valid_at(now)).then(|| cert.validity().not_after.to_string())
}

fn watch_thread(
    readers: Arc<dyn CardReaders>,
    tx: mpsc::Sender<WatchMessage>,
    stopping: Arc<AtomicBool>,
    canceller: Arc<Mutex<Option<card_reader::Canceller>>>,
) {
    let mut backoff = Duration::from_secs(1);
    while !stopping.load(Ordering::SeqCst) {
        let mut watch = match readers.watch() {
            Ok(watch) => watch,
            Err(error) => {
                if tx.blocking_send(WatchMessage::Down(error)).is_err() {
                    return;
                }
                std::thread::sleep(backoff);
                continue;
            }
        };
        *canceller.lock().unwrap_or_else(|p| p.into_inner()) = Some(watch.canceller());
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        loop {
            // A bounded wait, so a cancel racing with the start of a wait is noticed anyway.
            match watch.next_change(Some(Duration::from_secs(30))) {
                Ok(WatchEvent::Changed(now)) => {
                    backoff = Duration::from_secs(1);
                    if tx.blocking_send(WatchMessage::Readers(now)).is_err() {
                        return;
                    }
                }
                Ok(WatchEvent::TimedOut) => {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                }
                Ok(WatchEvent::Cancelled) => return,
                Err(error) => {
                    if tx.blocking_send(WatchMessage::Down(error)).is_err() {
                        return;
                    }
                    // pcscd is down: try again later, not in a loop.
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                }
            }
        }
    }
}

fn yyyymmdd(d: time::Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

fn elapsed_ms(started: Instant) -> u32 {
    u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The clerk's answer to a card lookup asked of an agent in terminal mode.
const TERMINAL_OWNS_THE_CARD: &str = "資格確認端末モードでは、マイナ保険証は資格確認端末の顔認証付きカードリーダーで確認してください（結果はエージェントが記録します） / in terminal mode, My Number cards are read at the qualification terminal's face-recognition reader; the agent records the result from the terminal";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_errors_map_to_card_checks() {
        assert_eq!(
            card_check_of(&CardError::WrongPin { tries_left: 2 }),
            (CardCheckResult::WrongPin, Some(2))
        );
        assert_eq!(
            card_check_of(&CardError::PinLocked),
            (CardCheckResult::PinLocked, Some(0))
        );
        assert_eq!(
            card_check_of(&CardError::CardRemoved).0,
            CardCheckResult::CardRemoved
        );
        assert_eq!(
            card_check_of(&CardError::UnsupportedCard).0,
            CardCheckResult::UnsupportedCard
        );
        assert_eq!(
            card_check_of(&CardError::NoService).0,
            CardCheckResult::ReaderError
        );
    }

    #[test]
    fn config_is_strict() {
        let ok: CardsConfig =
            toml::from_str("[[readers]]\nname = \"R\"\nface_recognition = true\n").unwrap();
        assert!(ok.readers[0].face_recognition);
        assert!(toml::from_str::<CardsConfig>("colour = 1\n").is_err());
    }
}
