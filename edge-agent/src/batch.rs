//! Batch inquiry (一括照会): a CSV of, say, tomorrow's appointments in; per row 有効 / 無効 /
//! エラー out, in a CSV of the same encoding.
//!
//! Two halves:
//!
//! - the **CLI** (`edge-agent batch --csv FILE`, in [`crate::cli`]): reads the file, sends the
//!   rows to the running agent, writes the results; this module gives it the file's reading
//!   (UTF-8 with or without BOM, or Shift_JIS as Japanese spreadsheets save it; detected), the
//!   header's mapping (Japanese or English column names) and the results' writing. A row id /
//!   患者ID column never leaves the CLI;
//! - the **agent** ([`run_rows`]): validates every row locally first (a bad row is an エラー row
//!   with the reason, and is never sent), then looks the others up one by one through
//!   [`Lookups::confirm`], a few at a time, each recorded as a lookup event with
//!   `LookupSource::Batch` and the batch's id.
//!
//! Two modes ([`BatchMode`]): **row by row** (the default) gives every row its own single
//! confirmation, event and answer as it comes; **national** ([`run_national`], `--mode
//! national`) sends the valid rows as the national two-step batch inquiry (`OQSmuquc01req`,
//! answered with a `ReceptionNumber`, then `OQSmuquc02req` polled with a bounded backoff until
//! the results are ready; shapes as in `shared/onshi-corpus`, see `onshi_domain::xml::bulk`). Either way
//! each row that reached the national system is one lookup event, recorded through
//! [`Lookups::record_asked`] (each batch unit read as the single result it stands for) before
//! the row is answered.
//!
//! Patient identifiers in the rows are never logged: only counts and field names.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onshi_domain::codes::SegmentOfResult;
use onshi_domain::events::{LookupOutcome, LookupSource};
use onshi_domain::ids::InsuranceCardQuery;
use onshi_domain::site::TerminalId;
use onshi_domain::xml::{
    BulkInquiryAccepted, BulkInquiryRequest, BulkResult, BulkResultRequest,
    QualificationConfirmSearchInfo, QualificationConfirmationRequest,
    QualificationConfirmationResult, RequestHeader, ResultBody, ResultHeader, XmlEncoding,
};
use proto::agent::v1 as pb;
use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::judge::log_read_warnings;
use crate::lookup::{Asked, CardFields, LookupError, Lookups, Provenance, today_jst};
use crate::national::{
    BatchLeft, OnshiAnswer, OnshiError, Recovery, StoredBatch, Ticket, Transport,
};

/// The most rows one batch may have (a day's appointments at a large hospital fit easily).
pub const MAX_ROWS: usize = 10_000;
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const MAX_CONCURRENCY: usize = 16;

/// A row's verdict, as the national guide's table shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowStatus {
    Valid,
    Invalid,
    Error,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Valid => "valid",
            RowStatus::Invalid => "invalid",
            RowStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "valid" => Some(RowStatus::Valid),
            "invalid" => Some(RowStatus::Invalid),
            "error" => Some(RowStatus::Error),
            _ => None,
        }
    }

    pub fn ja(self) -> &'static str {
        match self {
            RowStatus::Valid => "有効",
            RowStatus::Invalid => "無効",
            RowStatus::Error => "エラー",
        }
    }

    fn of(outcome: LookupOutcome) -> Self {
        match outcome {
            LookupOutcome::Valid => RowStatus::Valid,
            // "No matching qualification" is not eligibility: the card must be checked.
            LookupOutcome::Invalid | LookupOutcome::NotFound => RowStatus::Invalid,
            _ => RowStatus::Error,
        }
    }
}

/// One row answered by the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDone {
    pub index: usize,
    pub status: RowStatus,
    /// The lookup outcome when the row reached the network.
    pub outcome: Option<LookupOutcome>,
    pub message: String,
    pub event_id: Option<String>,
}

/// Answers `rows` as one batch, sending each answer to `done` as it completes; returns when
/// every row is answered, or early when `done` is closed (the CLI went away: rows not yet
/// started are not asked).
pub async fn run_rows(
    lookups: Arc<Lookups>,
    rows: Vec<CardFields>,
    batch_id: String,
    terminal: TerminalId,
    concurrency: usize,
    done: mpsc::Sender<RowDone>,
) {
    let limit = Arc::new(Semaphore::new(concurrency.clamp(1, MAX_CONCURRENCY)));
    let today = today_jst();
    let total = rows.len();
    let mut tasks = tokio::task::JoinSet::new();
    let mut refused = 0usize;
    for (index, fields) in rows.into_iter().enumerate() {
        if done.is_closed() {
            break;
        }
        let query = match InsuranceCardQuery::parse(
            &fields.insurer_number,
            &fields.symbol,
            &fields.number,
            &fields.branch,
            &fields.birthdate,
            today,
        ) {
            Ok(query) => query,
            Err(errors) => {
                refused += 1;
                let _ = done
                    .send(RowDone {
                        index,
                        status: RowStatus::Error,
                        outcome: None,
                        message: LookupError::InvalidInput(errors).for_clerk(),
                        event_id: None,
                    })
                    .await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let request = QualificationConfirmationRequest {
            header: RequestHeader {
                qualification_confirmation_date: today,
                medical_institution_code: lookups.recorder().site().institution_code(),
                arbitrary_file_identifier: Some(Uuid::now_v7().simple().to_string()),
            },
            search: QualificationConfirmSearchInfo::from_query(&query, fields.limit_consent),
        };
        let provenance = Provenance {
            source: LookupSource::Batch,
            batch_id: Some(batch_id.clone()),
            terminal: terminal.clone(),
        };
        let lookups = lookups.clone();
        let done = done.clone();
        tasks.spawn(async move {
            let row = match lookups.confirm(&request, provenance).await {
                Ok(confirmed) => RowDone {
                    index,
                    status: RowStatus::of(confirmed.answer.outcome),
                    outcome: Some(confirmed.answer.outcome),
                    message: confirmed.answer.message,
                    event_id: Some(confirmed.answer.event.id.to_string()),
                },
                Err(error) => RowDone {
                    index,
                    status: RowStatus::Error,
                    outcome: None,
                    message: LookupError::NotRecorded(error).for_clerk(),
                    event_id: None,
                },
            };
            drop(permit);
            let _ = done.send(row).await;
        });
        // Reap finished rows as we go, so the set stays as small as the concurrency.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    tracing::info!(
        batch_id,
        rows = total,
        refused_locally = refused,
        "batch inquiry done"
    );
}

/// How a batch is asked of the national system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BatchMode {
    /// One single confirmation (`OQSsiquc01`) per row, a few at a time.
    #[default]
    RowByRow,
    /// The national two-step batch inquiry (`OQSmuquc01`, then `OQSmuquc02` until ready).
    National,
}

impl BatchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchMode::RowByRow => "row",
            BatchMode::National => "national",
        }
    }

    /// `""` and `"row"` are row by row; `"national"` the two-step batch inquiry.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "" | "row" | "row-by-row" => Some(BatchMode::RowByRow),
            "national" => Some(BatchMode::National),
            _ => None,
        }
    }
}

/// The most rows sent in one `OQSmuquc01req`: larger batches go as several, one after the
/// other (the real limit is not public; onshi-sim's is 1,000).
pub const NATIONAL_CHUNK: usize = 1_000;

/// How the agent waits for a national batch's results: polls `OQSmuquc02` after `first`, then
/// doubling up to `cap` between polls, and gives up after `total` from acceptance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    pub first: Duration,
    pub cap: Duration,
    pub total: Duration,
}

impl Polling {
    pub const DEFAULT: Polling = Polling {
        first: Duration::from_millis(250),
        cap: Duration::from_secs(5),
        total: Duration::from_secs(10 * 60),
    };

    /// The delays between polls: exponential from `first`, capped, and the last one cut so
    /// that the sum never exceeds `total`. Finite.
    pub fn delays(&self) -> Vec<Duration> {
        let mut backoff = Backoff::new(self.first.max(Duration::from_millis(1)), self.cap);
        let mut delays = Vec::new();
        let mut spent = Duration::ZERO;
        while spent < self.total {
            let delay = backoff.next_delay(1.0).min(self.total - spent);
            spent += delay;
            delays.push(delay);
        }
        delays
    }
}

/// Why a national batch brought no results for its rows.
#[derive(Debug)]
enum NationalFailure {
    /// The national system could not be reached (`OQSmuquc01`): as for a single lookup.
    Onshi(OnshiError),
    /// It answered with an abnormal end: the file's header, to be judged per row.
    Refused {
        http_status: u16,
        process_execution_time: time::PrimitiveDateTime,
        error_code: Option<String>,
        error_message: Option<String>,
    },
    /// Its answer could not be read: the raw answer, judged per row as unreadable.
    Unreadable(OnshiAnswer),
    /// The results were not ready within [`Polling::total`].
    NotReady(Duration),
    /// Nothing was sent: the outbox is full, so the rows could not be recorded.
    NotRecordable(crate::outbox::OutboxError),
}

/// Sends one national batch and waits for its results. Through the terminal every step is
/// journaled with the batch ([`Recovery::Batch`]): the returned tickets (the `OQSmuquc01`
/// entry, and the `OQSmuquc02` entry that brought the results) are noted with the rows' events
/// and closed once they committed, so a restart finishes a batch the agent died in
/// ([`resume`]).
async fn national_exchange(
    lookups: &Lookups,
    request: &BulkInquiryRequest,
    polling: Polling,
    stored: &StoredBatch,
) -> (Result<BulkResult, NationalFailure>, Vec<Ticket>) {
    // Nothing goes to the national system when its rows could not be recorded.
    if let Err(error) = lookups.ensure_room().await {
        return (Err(NationalFailure::NotRecordable(error)), Vec::new());
    }
    let (answer, accepted) = lookups
        .onshi()
        .exchange_journaled(
            "OQSmuquc01",
            request.to_xml(XmlEncoding::Utf8),
            Recovery::Batch(stored.clone()),
        )
        .await;
    let mut tickets = vec![accepted];
    let outcome = match answer {
        Ok(answer) => after_accept(lookups, request, answer, polling, stored, &mut tickets).await,
        Err(error) => Err(NationalFailure::Onshi(error)),
    };
    (outcome, tickets)
}

/// The batch accepted (`OQSmuquc01`'s answer): its reception number, then the results.
async fn after_accept(
    lookups: &Lookups,
    request: &BulkInquiryRequest,
    answer: OnshiAnswer,
    polling: Polling,
    stored: &StoredBatch,
    tickets: &mut Vec<Ticket>,
) -> Result<BulkResult, NationalFailure> {
    let accepted = match BulkInquiryAccepted::read_xml(&answer.body) {
        Ok(read) => {
            log_read_warnings("OQSmuquc01res", &read.warnings);
            read.value
        }
        Err(_) => return Err(NationalFailure::Unreadable(answer)),
    };
    let reception_number = match (accepted.segment_of_result, accepted.reception_number) {
        (SegmentOfResult::Normal, Some(number)) => number,
        _ => {
            return Err(NationalFailure::Refused {
                http_status: answer.http_status,
                process_execution_time: accepted.process_execution_time,
                error_code: accepted.error_code,
                error_message: accepted.error_message,
            });
        }
    };
    tracing::info!(
        rows = request.searches.len(),
        reception_number,
        "national batch accepted"
    );
    let ask = results_request(request, reception_number);
    let mut polls = 0u32;
    for delay in polling.delays() {
        tokio::time::sleep(delay).await;
        polls += 1;
        let (answer, ticket) = lookups
            .onshi()
            .exchange_journaled("OQSmuquc02", ask.clone(), Recovery::Batch(stored.clone()))
            .await;
        // A poll that does not get through is retried at the next step: the results wait.
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                ticket.finish().await;
                tracing::warn!(%error, polls, "national batch: polling failed, retrying");
                continue;
            }
        };
        match read_results(answer) {
            None => ticket.finish().await,
            Some(done) => {
                tracing::info!(polls, "national batch answered");
                tickets.push(ticket);
                return done;
            }
        }
    }
    tracing::warn!(polls, total = ?polling.total, "national batch: results not ready in time");
    Err(NationalFailure::NotReady(polling.total))
}

/// An `OQSmuquc02` answer: `None` while the results are in progress.
fn read_results(answer: OnshiAnswer) -> Option<Result<BulkResult, NationalFailure>> {
    let result = match crate::exchanges::read_batch_result(&answer.body) {
        Ok(read) => {
            log_read_warnings("OQSmuquc02res", &read.warnings);
            read.value
        }
        Err(_) => return Some(Err(NationalFailure::Unreadable(answer))),
    };
    match result.header.segment_of_result {
        SegmentOfResult::InProgress => None,
        SegmentOfResult::Normal => Some(Ok(result)),
        SegmentOfResult::AbnormalEnd => Some(Err(NationalFailure::Refused {
            http_status: answer.http_status,
            process_execution_time: result.header.process_execution_time,
            error_code: result.header.error_code,
            error_message: result.header.error_message,
        })),
    }
}

/// Finishes a national batch a previous run left in the terminal's journal (start-up recovery,
/// [`crate::national::terminal::Terminal::recover`]): from its results if they were read, else
/// from its acceptance (polling again for the results), else with the reason it got none;
/// then its rows are recorded (one transaction, noted on every ticket) and the tickets closed.
/// Nobody waits for the rows any more: they are only recorded.
pub async fn resume(lookups: &Lookups, left: BatchLeft) {
    let BatchLeft {
        stored,
        request,
        accepted,
        results,
        latency_ms,
        mut tickets,
    } = left;
    let Ok(request) = BulkInquiryRequest::from_xml(&request) else {
        tracing::error!("a national batch in the terminal journal does not read; closing it");
        for ticket in &tickets {
            ticket.finish().await;
        }
        return;
    };
    let Some(terminal) = TerminalId::parse(&stored.terminal).ok() else {
        tracing::error!("a national batch in the terminal journal names no valid terminal");
        return;
    };
    let started = Instant::now();
    let outcome = match (results.and_then(read_results), accepted) {
        (Some(done), _) => done,
        (None, Ok(answer)) => {
            after_accept(
                lookups,
                &request,
                answer,
                Polling::DEFAULT,
                &stored,
                &mut tickets,
            )
            .await
        }
        (None, Err(error)) => Err(NationalFailure::Onshi(error)),
    };
    let latency_ms = latency_ms.saturating_add(ms(started.elapsed()));
    let chunk: Vec<(usize, QualificationConfirmSearchInfo)> = request
        .searches
        .iter()
        .enumerate()
        .map(|(at, search)| {
            let index = search
                .arbitrary_identifier
                .as_deref()
                .and_then(|i| i.parse().ok())
                .unwrap_or(at);
            (index, search.clone())
        })
        .collect();
    let today = request.header.qualification_confirmation_date;
    let rows = record_rows(
        lookups,
        &chunk,
        &request.header,
        today,
        &outcome,
        latency_ms,
        &stored,
        terminal,
        &tickets,
    )
    .await;
    if rows.iter().all(|r| r.event_id.is_some()) {
        for ticket in &tickets {
            ticket.finish().await;
        }
    }
    tracing::warn!(
        rows = rows.len(),
        "recorded the rows of a national batch the previous run did not finish"
    );
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// The `OQSmuquc01req` for `searches` (their `ArbitraryIdentifier` tells the units apart),
/// under a new file identifier.
fn batch_request(
    institution: &onshi_domain::ids::MedicalInstitutionCode,
    today: time::Date,
    searches: Vec<QualificationConfirmSearchInfo>,
) -> BulkInquiryRequest {
    BulkInquiryRequest {
        header: RequestHeader {
            qualification_confirmation_date: today,
            medical_institution_code: institution.clone(),
            arbitrary_file_identifier: Some(Uuid::now_v7().simple().to_string()),
        },
        searches,
    }
}

/// The `OQSmuquc02req` asking for the results of `request`, accepted under
/// `reception_number`: the institution in the header, the number in the body, as real
/// clients write it (`shared/onshi-corpus/OQSmuquc02req_fetch.xml`); the reception number is
/// the correlation, so no `ArbitraryFileIdentifier` is added.
fn results_request(request: &BulkInquiryRequest, reception_number: String) -> Vec<u8> {
    BulkResultRequest {
        medical_institution_code: request.header.medical_institution_code.clone(),
        reception_number,
        arbitrary_file_identifier: None,
    }
    .to_xml(XmlEncoding::Utf8)
}

/// A single result file standing for a whole-batch abnormal end or a missing unit, so that the
/// row is judged (and recorded) like a single confirmation that ended so.
fn abnormal_single(
    request: &QualificationConfirmationRequest,
    process_execution_time: time::PrimitiveDateTime,
    error_code: Option<String>,
    error_message: Option<String>,
) -> Vec<u8> {
    QualificationConfirmationResult {
        header: ResultHeader {
            process_execution_time,
            qualification_confirmation_date: request.header.qualification_confirmation_date,
            medical_institution_code: request.header.medical_institution_code.clone(),
            arbitrary_file_identifier: request.header.arbitrary_file_identifier.clone(),
            reference_classification: onshi_domain::codes::ReferenceClassification::InsuranceCard,
            segment_of_result: SegmentOfResult::AbnormalEnd,
            error_code,
            error_message,
            character_code_identifier: onshi_domain::codes::CharacterCodeIdentifier::Utf8,
        },
        body: ResultBody::default(),
    }
    .to_xml(XmlEncoding::Utf8)
}

/// The rows of one national batch as `outcome` decides them, each recorded as a lookup event
/// with the batch's id, all in one outbox transaction noted on every ticket; what each row's
/// caller is told.
#[allow(clippy::too_many_arguments)]
async fn record_rows(
    lookups: &Lookups,
    chunk: &[(usize, QualificationConfirmSearchInfo)],
    header: &RequestHeader,
    today: time::Date,
    outcome: &Result<BulkResult, NationalFailure>,
    latency_ms: u32,
    stored: &StoredBatch,
    terminal: TerminalId,
    tickets: &[Ticket],
) -> Vec<RowDone> {
    let asked: Vec<(QualificationConfirmationRequest, Asked)> = chunk
        .iter()
        .map(|(_, search)| {
            let single = QualificationConfirmationRequest {
                header: header.clone(),
                search: search.clone(),
            };
            let answer = row_answer(&single, search, today, outcome);
            (single, Asked { answer, latency_ms })
        })
        .collect();
    let provenance = Provenance {
        source: LookupSource::Batch,
        batch_id: Some(stored.batch_id.clone()),
        terminal,
    };
    let noting = tickets.to_vec();
    let recorded = lookups
        .record_all_asked(asked, provenance, move |e| {
            for ticket in &noting {
                ticket.note(e);
            }
        })
        .await;
    match recorded {
        Ok(confirmed) => chunk
            .iter()
            .zip(confirmed)
            .map(|((index, _), confirmed)| {
                let message = match outcome {
                    Err(NationalFailure::NotReady(d)) => format!(
                        "一括照会の結果が{}秒以内に返されませんでした。保険証で確認してください / the national batch results did not come back within {}s",
                        d.as_secs(),
                        d.as_secs()
                    ),
                    _ => confirmed.answer.message,
                };
                RowDone {
                    index: *index,
                    status: RowStatus::of(confirmed.answer.outcome),
                    outcome: Some(confirmed.answer.outcome),
                    message,
                    event_id: Some(confirmed.answer.event.id.to_string()),
                }
            })
            .collect(),
        Err(error) => {
            let message = LookupError::NotRecorded(error).for_clerk();
            chunk
                .iter()
                .map(|(index, _)| RowDone {
                    index: *index,
                    status: RowStatus::Error,
                    outcome: None,
                    message: message.clone(),
                    event_id: None,
                })
                .collect()
        }
    }
}

/// One row's answer in a national batch that ended as `outcome`: its unit of the results as a
/// single result file, or the batch's failure as the row's.
fn row_answer(
    single: &QualificationConfirmationRequest,
    search: &QualificationConfirmSearchInfo,
    today: time::Date,
    outcome: &Result<BulkResult, NationalFailure>,
) -> Result<OnshiAnswer, OnshiError> {
    match outcome {
        Ok(result) => {
            let body = match result.units.iter().find(|u| {
                u.search_info.as_ref().and_then(|s| s.arbitrary_identifier.as_ref())
                    == search.arbitrary_identifier.as_ref()
            }) {
                Some(unit) => result.single_result(unit, today).to_xml(XmlEncoding::Utf8),
                None => abnormal_single(
                    single,
                    result.header.process_execution_time,
                    Some("bulk_unit_missing".into()),
                    Some("一括照会の結果にこの行がありません / the batch result has no entry for this row".into()),
                ),
            };
            Ok(OnshiAnswer {
                http_status: 200,
                body,
            })
        }
        Err(NationalFailure::Onshi(error)) => Err(match error {
            OnshiError::Timeout(d) => OnshiError::Timeout(*d),
            OnshiError::Unreachable(e) => OnshiError::Unreachable(e.clone()),
            OnshiError::Body(e) => OnshiError::Body(e.clone()),
            OnshiError::TerminalSilent { waited } => OnshiError::TerminalSilent { waited: *waited },
        }),
        Err(NationalFailure::Refused {
            http_status,
            process_execution_time,
            error_code,
            error_message,
        }) => Ok(OnshiAnswer {
            http_status: *http_status,
            body: abnormal_single(
                single,
                *process_execution_time,
                error_code.clone(),
                error_message.clone(),
            ),
        }),
        Err(NationalFailure::Unreadable(answer)) => Ok(answer.clone()),
        Err(NationalFailure::NotReady(d)) => Err(OnshiError::Timeout(*d)),
        // Recording the row fails the same way, and the row says it was not recorded.
        Err(NationalFailure::NotRecordable(error)) => Err(OnshiError::Unreachable(format!(
            "nothing was sent to the national system: {error}"
        ))),
    }
}

/// Answers `rows` as national batches ([`BatchMode::National`]): rows refused locally are
/// answered at once; the others are sent in batches of [`NATIONAL_CHUNK`], and when a batch's
/// results are in (or it failed, or `polling.total` passed) each of its rows is recorded as
/// one lookup event with the batch's id, then answered.
pub async fn run_national(
    lookups: Arc<Lookups>,
    rows: Vec<CardFields>,
    batch_id: String,
    terminal: TerminalId,
    polling: Polling,
    done: mpsc::Sender<RowDone>,
) {
    let today = today_jst();
    let total = rows.len();
    let institution = lookups.recorder().site().institution_code();
    let mut refused = 0usize;
    let mut valid: Vec<(usize, QualificationConfirmSearchInfo)> = Vec::new();
    for (index, fields) in rows.into_iter().enumerate() {
        match InsuranceCardQuery::parse(
            &fields.insurer_number,
            &fields.symbol,
            &fields.number,
            &fields.branch,
            &fields.birthdate,
            today,
        ) {
            Ok(query) => {
                let mut search = QualificationConfirmSearchInfo::from_query(&query, false);
                // The row's index is how its unit is found in the results.
                search.arbitrary_identifier = Some(index.to_string());
                valid.push((index, search));
            }
            Err(errors) => {
                refused += 1;
                let _ = done
                    .send(RowDone {
                        index,
                        status: RowStatus::Error,
                        outcome: None,
                        message: LookupError::InvalidInput(errors).for_clerk(),
                        event_id: None,
                    })
                    .await;
            }
        }
    }
    let stored = StoredBatch {
        batch_id: batch_id.clone(),
        terminal: terminal.as_str().to_string(),
    };
    let mut chunks = 0usize;
    for chunk in valid.chunks(NATIONAL_CHUNK) {
        if done.is_closed() {
            break;
        }
        chunks += 1;
        let request = batch_request(
            &institution,
            today,
            chunk.iter().map(|(_, s)| s.clone()).collect(),
        );
        let header = request.header.clone();
        let started = Instant::now();
        let (outcome, tickets) = national_exchange(&lookups, &request, polling, &stored).await;
        let latency_ms = ms(started.elapsed());
        let rows = record_rows(
            &lookups,
            chunk,
            &header,
            today,
            &outcome,
            latency_ms,
            &stored,
            terminal.clone(),
            &tickets,
        )
        .await;
        if rows.iter().all(|r| r.event_id.is_some()) {
            for ticket in &tickets {
                ticket.finish().await;
            }
        }
        for row in rows {
            let _ = done.send(row).await;
        }
    }
    tracing::info!(
        batch_id,
        rows = total,
        refused_locally = refused,
        national_batches = chunks,
        "national batch inquiry done"
    );
}

/// The control API's side (`LocalAgent.BatchInquiry`): starts the batch and returns the stream
/// of per-row progress. Refuses (with a message for the clerk) an empty or oversized batch or a
/// bad terminal id.
pub fn serve(
    lookups: Arc<Lookups>,
    request: pb::BatchInquiryRequest,
) -> Result<
    tokio_stream::wrappers::ReceiverStream<Result<pb::BatchInquiryProgress, tonic::Status>>,
    String,
> {
    let total = request.rows.len();
    if total == 0 {
        return Err("行がありません / the batch has no rows".into());
    }
    if total > MAX_ROWS {
        return Err(format!(
            "行が多すぎます（上限 {MAX_ROWS} 行） / more than {MAX_ROWS} rows: split the file"
        ));
    }
    let terminal = match request.terminal_id.as_str() {
        "" => lookups.default_terminal().clone(),
        t => TerminalId::parse(t).map_err(|e| format!("端末IDが正しくありません / {e}"))?,
    };
    let concurrency = match request.concurrency {
        0 => DEFAULT_CONCURRENCY,
        n => n as usize,
    };
    let mode = BatchMode::parse(&request.mode).ok_or_else(|| {
        format!(
            "照会方式が正しくありません / unknown batch mode {:?}: use row or national",
            request.mode
        )
    })?;
    let rows: Vec<CardFields> = request
        .rows
        .into_iter()
        .map(|r| CardFields {
            insurer_number: r.insurer_number,
            symbol: r.insured_card_symbol,
            number: r.insured_identification_number,
            branch: r.insured_branch_number,
            birthdate: r.birthdate,
            terminal: None,
            limit_consent: false,
        })
        .collect();
    let batch_id = Uuid::now_v7().to_string();
    let (row_tx, mut row_rx) = mpsc::channel::<RowDone>(64);
    let (out_tx, out_rx) = mpsc::channel(64);
    tracing::info!(
        batch_id,
        rows = total,
        concurrency,
        mode = mode.as_str(),
        "batch inquiry started"
    );
    match mode {
        BatchMode::RowByRow => {
            tokio::spawn(run_rows(
                lookups,
                rows,
                batch_id.clone(),
                terminal,
                concurrency,
                row_tx,
            ));
        }
        BatchMode::National => {
            tokio::spawn(run_national(
                lookups,
                rows,
                batch_id.clone(),
                terminal,
                Polling::DEFAULT,
                row_tx,
            ));
        }
    }
    tokio::spawn(async move {
        let mut done = 0u32;
        while let Some(row) = row_rx.recv().await {
            done += 1;
            let progress = pb::BatchInquiryProgress {
                batch_id: batch_id.clone(),
                total: total as u32,
                done,
                index: row.index as u32,
                status: row.status.as_str().to_string(),
                outcome: row
                    .outcome
                    .map(|o| o.as_str().to_string())
                    .unwrap_or_default(),
                message: row.message,
                event_id: row.event_id.unwrap_or_default(),
            };
            if out_tx.send(Ok(progress)).await.is_err() {
                // The CLI went away; dropping the row receiver stops new lookups.
                break;
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(out_rx))
}

// ------------------------------------------------------------------------------------ CSV

/// How the input file was encoded; the results are written the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvEncoding {
    Utf8,
    Utf8Bom,
    ShiftJis,
}

/// One data row of the input file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputRow {
    /// The data row's number in the file, from 1 (the header not counted).
    pub line: u64,
    /// The row id / 患者ID column; stays at the CLI.
    pub row_id: String,
    pub insurer_number: String,
    pub symbol: String,
    pub number: String,
    pub branch: String,
    pub birthdate: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInput {
    pub encoding: CsvEncoding,
    pub rows: Vec<InputRow>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchCsvError {
    #[error(
        "文字コードを判別できません / the file is neither UTF-8 nor Shift_JIS (save it as CSV UTF-8 or CSV Shift_JIS)"
    )]
    Encoding,
    #[error("見出し行がありません / the file has no header row")]
    NoHeader,
    #[error("列「{ja}」({en}) がありません / the header has no {en} column")]
    MissingColumn { ja: &'static str, en: &'static str },
    #[error("CSV を読めません / the CSV is not readable: {0}")]
    Csv(String),
    #[error("行が多すぎます（上限 {MAX_ROWS} 行） / more than {MAX_ROWS} rows: split the file")]
    TooManyRows,
    #[error("データ行がありません / the file has no data rows")]
    Empty,
}

/// Decodes the file: a UTF-8 BOM, else valid UTF-8, else Shift_JIS without a single invalid
/// sequence; anything else is refused rather than guessed.
pub fn decode(bytes: &[u8]) -> Result<(String, CsvEncoding), BatchCsvError> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        let text = std::str::from_utf8(rest).map_err(|_| BatchCsvError::Encoding)?;
        return Ok((text.to_string(), CsvEncoding::Utf8Bom));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok((text.to_string(), CsvEncoding::Utf8));
    }
    let (text, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(bytes);
    if had_errors {
        return Err(BatchCsvError::Encoding);
    }
    Ok((text.into_owned(), CsvEncoding::ShiftJis))
}

pub fn encode(text: &str, encoding: CsvEncoding) -> Vec<u8> {
    match encoding {
        CsvEncoding::Utf8 => text.as_bytes().to_vec(),
        CsvEncoding::Utf8Bom => [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat(),
        CsvEncoding::ShiftJis => onshi_domain::sjis::encode(text),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    RowId,
    Insurer,
    Symbol,
    Number,
    Branch,
    Birthdate,
}

fn column_of(header: &str) -> Option<Column> {
    let h: String = header
        .trim()
        .trim_matches('\u{feff}')
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
        .replace('ｉ', "i")
        .replace('ｄ', "d");
    Some(match h.as_str() {
        "保険者番号" | "insurer_number" | "insurer" | "insurernumber" => Column::Insurer,
        "記号" | "symbol" | "insured_card_symbol" => Column::Symbol,
        "番号" | "number" | "insured_identification_number" => Column::Number,
        "枝番" | "branch" | "insured_branch_number" => Column::Branch,
        "生年月日" | "birthdate" | "birth_date" | "dateofbirth" => Column::Birthdate,
        "患者id" | "患者番号" | "行id" | "row_id" | "rowid" | "id" | "patient_id" => {
            Column::RowId
        }
        _ => return None,
    })
}

/// `1980/01/02` and `1980-01-02`, as spreadsheets write dates, become `19800102`.
fn normalise_date(raw: &str) -> String {
    let raw = raw.trim();
    let parts: Vec<&str> = raw.split(['/', '-']).collect();
    if parts.len() == 3
        && parts[0].len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[1].len() <= 2
        && parts[2].len() <= 2
    {
        return format!("{}{:0>2}{:0>2}", parts[0], parts[1], parts[2]);
    }
    raw.to_string()
}

pub fn parse_csv(bytes: &[u8]) -> Result<BatchInput, BatchCsvError> {
    let (text, encoding) = decode(bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = records
        .next()
        .ok_or(BatchCsvError::NoHeader)?
        .map_err(|e| BatchCsvError::Csv(e.to_string()))?;
    let columns: Vec<Option<Column>> = header.iter().map(column_of).collect();
    let find = |c: Column| columns.iter().position(|x| *x == Some(c));
    for (c, ja, en) in [
        (Column::Insurer, "保険者番号", "insurer_number"),
        (Column::Number, "番号", "number"),
        (Column::Birthdate, "生年月日", "birthdate"),
    ] {
        if find(c).is_none() {
            return Err(BatchCsvError::MissingColumn { ja, en });
        }
    }
    let mut rows = Vec::new();
    for record in records {
        let record = record.map_err(|e| BatchCsvError::Csv(e.to_string()))?;
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if rows.len() == MAX_ROWS {
            return Err(BatchCsvError::TooManyRows);
        }
        let get = |c: Column| {
            find(c)
                .and_then(|at| record.get(at))
                .map(|f| f.trim().to_string())
                .unwrap_or_default()
        };
        rows.push(InputRow {
            line: rows.len() as u64 + 1,
            row_id: get(Column::RowId),
            insurer_number: get(Column::Insurer),
            symbol: get(Column::Symbol),
            number: get(Column::Number),
            branch: get(Column::Branch),
            birthdate: normalise_date(&get(Column::Birthdate)),
        });
    }
    if rows.is_empty() {
        return Err(BatchCsvError::Empty);
    }
    Ok(BatchInput { encoding, rows })
}

/// The per-row result of the CLI, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowResult {
    pub status: RowStatus,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub valid: usize,
    pub invalid: usize,
    pub error: usize,
}

impl Summary {
    pub fn of(results: &[RowResult]) -> Self {
        let mut s = Summary::default();
        for r in results {
            match r.status {
                RowStatus::Valid => s.valid += 1,
                RowStatus::Invalid => s.invalid += 1,
                RowStatus::Error => s.error += 1,
            }
        }
        s
    }
}

/// The results file: the input's fields, then 結果 (有効 / 無効 / エラー) and 詳細, in the
/// input's encoding (Shift_JIS files come back with CRLF line ends, as spreadsheets expect).
pub fn write_results(input: &BatchInput, results: &[RowResult]) -> Vec<u8> {
    let terminator = match input.encoding {
        CsvEncoding::ShiftJis => csv::Terminator::CRLF,
        _ => csv::Terminator::Any(b'\n'),
    };
    let mut writer = csv::WriterBuilder::new()
        .terminator(terminator)
        .from_writer(Vec::new());
    let header = [
        "行",
        "患者ID",
        "保険者番号",
        "記号",
        "番号",
        "枝番",
        "生年月日",
        "結果",
        "詳細",
    ];
    // Writing to a Vec cannot fail.
    let _ = writer.write_record(header);
    for (row, result) in input.rows.iter().zip(results) {
        let line = row.line.to_string();
        let message = result.message.replace('\n', " ");
        let _ = writer.write_record([
            line.as_str(),
            &row.row_id,
            &row.insurer_number,
            &row.symbol,
            &row.number,
            &row.branch,
            &row.birthdate,
            result.status.ja(),
            &message,
        ]);
    }
    let bytes = writer.into_inner().unwrap_or_default();
    encode(&String::from_utf8_lossy(&bytes), input.encoding)
}

// ------------------------------------------------------------------------------------ CLI

/// The default results file: `<input stem>_result.csv` beside the input.
pub fn default_output(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "batch".into());
    input.with_file_name(format!("{stem}_result.csv"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `shared/onshi-corpus`; a missing corpus fails with the path it looked for.
    fn corpus(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/onshi-corpus")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "the conformance corpus file {} cannot be read: {e}",
                path.display()
            )
        })
    }

    #[test]
    fn national_requests_place_their_elements_as_the_corpus() {
        use onshi_domain::xml::element_paths;
        let institution = onshi_domain::ids::MedicalInstitutionCode::parse("0110112489").unwrap();
        let corpus_request = BulkInquiryRequest::from_xml(&corpus("OQSmuquc01req_batch.xml"))
            .expect("the corpus batch request reads");
        let request = batch_request(
            &institution,
            time::macros::date!(2026 - 01 - 15),
            corpus_request.searches.clone(),
        );
        assert_eq!(
            element_paths(&request.to_xml(XmlEncoding::Utf8)).unwrap(),
            element_paths(&corpus("OQSmuquc01req_batch.xml")).unwrap()
        );
        let ask = results_request(&request, "20260115000000000123".into());
        assert_eq!(
            element_paths(&ask).unwrap(),
            element_paths(&corpus("OQSmuquc02req_fetch.xml")).unwrap(),
            "{}",
            String::from_utf8_lossy(&ask)
        );
        let read = BulkResultRequest::from_xml(&ask).unwrap();
        assert_eq!(read.reception_number, "20260115000000000123");
    }

    #[test]
    fn japanese_headers_in_shift_jis_with_slashed_dates() {
        let text = "患者ID,保険者番号,記号,番号,枝番,生年月日\r\nP-1,06139992,記号A,123,01,1980/1/2\r\n\r\n";
        let bytes = encoding_rs::SHIFT_JIS.encode(text).0.into_owned();
        let input = parse_csv(&bytes).unwrap();
        assert_eq!(input.encoding, CsvEncoding::ShiftJis);
        assert_eq!(input.rows.len(), 1);
        let row = &input.rows[0];
        assert_eq!(row.row_id, "P-1");
        assert_eq!(row.symbol, "記号A");
        assert_eq!(row.birthdate, "19800102");
        assert_eq!(row.line, 1);

        let results = [RowResult {
            status: RowStatus::Valid,
            message: "資格有効 / eligible".into(),
        }];
        let out = write_results(&input, &results);
        let (back, encoding) = decode(&out).unwrap();
        assert_eq!(encoding, CsvEncoding::ShiftJis);
        assert!(back.starts_with("行,患者ID,"));
        assert!(back.contains("1,P-1,06139992,記号A,123,01,19800102,有効,"));
        assert!(back.contains("\r\n"));
    }

    /// Fuzz regression (batch_csv): a 外字 (Windows-31J user-defined area, here F040 and
    /// F9FC) in a Shift_JIS file came back in the results file as `&#57344;`, so the clerk's
    /// patient id no longer matched. The results file now holds the same bytes and reads back
    /// as the same rows.
    #[test]
    fn user_defined_characters_in_shift_jis_come_back_unchanged() {
        let mut bytes = encoding_rs::SHIFT_JIS
            .encode("患者ID,保険者番号,番号,生年月日\r\n")
            .0
            .into_owned();
        bytes.extend_from_slice(b"P\xF0\x40\xF9\xFC,06139992,123,19800102\r\n");
        let input = parse_csv(&bytes).unwrap();
        assert_eq!(input.encoding, CsvEncoding::ShiftJis);
        assert_eq!(input.rows[0].row_id, "P\u{E000}\u{E757}");
        let results = [RowResult {
            status: RowStatus::Valid,
            message: "資格有効 / eligible".into(),
        }];
        let out = write_results(&input, &results);
        assert!(
            out.windows(5).any(|w| w == b"P\xF0\x40\xF9\xFC"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let again = parse_csv(&out).unwrap();
        assert_eq!(again.encoding, CsvEncoding::ShiftJis);
        assert_eq!(again.rows, input.rows);
    }

    #[test]
    fn english_headers_with_bom_and_any_column_order() {
        let text = "\u{feff}birthdate,number,insurer_number,row_id\n19800102,9,138156,7\n";
        let input = parse_csv(text.as_bytes()).unwrap();
        assert_eq!(input.encoding, CsvEncoding::Utf8Bom);
        assert_eq!(input.rows[0].insurer_number, "138156");
        assert_eq!(input.rows[0].branch, "");
        let out = write_results(
            &input,
            &[RowResult {
                status: RowStatus::Error,
                message: "a\nb".into(),
            }],
        );
        assert!(out.starts_with(b"\xEF\xBB\xBF"));
        assert!(String::from_utf8_lossy(&out).contains("エラー,a b"));
    }

    #[test]
    fn unreadable_files_say_why() {
        assert_eq!(
            parse_csv(b"name,number\nx,1\n"),
            Err(BatchCsvError::MissingColumn {
                ja: "保険者番号",
                en: "insurer_number"
            })
        );
        assert_eq!(parse_csv(b""), Err(BatchCsvError::NoHeader));
        assert_eq!(
            parse_csv(b"insurer,number,birthdate\n"),
            Err(BatchCsvError::Empty)
        );
        // Bytes that are valid neither as UTF-8 nor as Shift_JIS.
        assert_eq!(parse_csv(b"\x80\x80\xff"), Err(BatchCsvError::Encoding));
    }

    #[test]
    fn modes_and_polling() {
        assert_eq!(BatchMode::parse(""), Some(BatchMode::RowByRow));
        assert_eq!(BatchMode::default(), BatchMode::RowByRow);
        for m in [BatchMode::RowByRow, BatchMode::National] {
            assert_eq!(BatchMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(BatchMode::parse("zip"), None);

        let polling = Polling {
            first: Duration::from_millis(250),
            cap: Duration::from_secs(2),
            total: Duration::from_secs(10),
        };
        let delays: Vec<u128> = polling.delays().iter().map(|d| d.as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 2000, 2000, 2000, 250]);
        assert_eq!(
            Polling::DEFAULT.delays().iter().sum::<Duration>(),
            Polling::DEFAULT.total
        );
        let none = Polling {
            total: Duration::ZERO,
            ..polling
        };
        assert!(none.delays().is_empty());
    }

    #[test]
    fn statuses() {
        assert_eq!(RowStatus::of(LookupOutcome::Valid), RowStatus::Valid);
        assert_eq!(RowStatus::of(LookupOutcome::NotFound), RowStatus::Invalid);
        assert_eq!(RowStatus::of(LookupOutcome::Unreachable), RowStatus::Error);
        for s in [RowStatus::Valid, RowStatus::Invalid, RowStatus::Error] {
            assert_eq!(RowStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            default_output(Path::new("/a/明日.csv")),
            PathBuf::from("/a/明日_result.csv")
        );
    }
}
