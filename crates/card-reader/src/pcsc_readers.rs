//! [`CardReaders`] over pcsc-lite (the `pcsc` crate): the real stack, `pcscd` and its drivers.
//!
//! - Watching uses one context of its own and `SCardGetStatusChange` on every reader plus the
//!   `\\?PnP?\Notification` pseudo-reader, so it blocks until a reader is added or removed or a
//!   card is inserted or removed; [`Canceller::cancel`] calls `SCardCancel` on that context.
//! - When pcscd stops, every call answers [`CardError::NoService`] and the context is dropped;
//!   the next call establishes a new one (so readers come back when pcscd does).
//! - Each [`CardReaders::connect`] opens a context of its own: a card session never waits on the
//!   watcher's context, and dropping the channel releases both the card and the context.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pcsc::{Context, Protocols, ReaderState, Scope, ShareMode, State};

use crate::{
    Canceller, CardChannel, CardError, CardPresence, CardReaders, ReaderSnapshot, ReaderWatch,
    WatchEvent,
};

/// The readers of this machine as pcscd sees them.
#[derive(Debug, Default, Clone)]
pub struct PcscReaders {}

impl PcscReaders {
    pub fn new() -> Self {
        Self {}
    }
}

/// pcsc errors as the card errors the rest of the code knows.
pub fn map_error(error: pcsc::Error) -> CardError {
    use pcsc::Error as E;
    match error {
        E::RemovedCard | E::ResetCard => CardError::CardRemoved,
        // vpcd (and a real reader losing the card mid-APDU) report a failed transmission; the
        // card is gone or not answering, which the clerk fixes the same way.
        E::NotTransacted | E::CommError | E::CommDataLost => CardError::CardRemoved,
        E::NoSmartcard => CardError::NoCard,
        E::UnknownReader | E::ReaderUnavailable | E::NoReadersAvailable => CardError::ReaderGone,
        E::NoService | E::ServiceStopped | E::InvalidHandle | E::Shutdown => CardError::NoService,
        E::UnresponsiveCard | E::UnpoweredCard | E::UnsupportedCard | E::InvalidAtr => {
            CardError::UnsupportedCard
        }
        E::Timeout | E::WaitedTooLong => CardError::Timeout,
        other => CardError::Reader(other.to_string()),
    }
}

fn establish() -> Result<Context, CardError> {
    Context::establish(Scope::User).map_err(map_error)
}

impl CardReaders for PcscReaders {
    fn readers(&self) -> Result<Vec<ReaderSnapshot>, CardError> {
        let ctx = establish()?;
        let mut states = reader_states(&ctx, Vec::new())?;
        match ctx.get_status_change(Duration::ZERO, &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(e) => return Err(map_error(e)),
        }
        Ok(snapshot(&states))
    }

    fn watch(&self) -> Result<Box<dyn ReaderWatch>, CardError> {
        Ok(Box::new(PcscWatch {
            shared: Arc::new(WatchShared {
                context: Mutex::new(None),
                cancelled: AtomicBool::new(false),
            }),
            states: Vec::new(),
            last: None,
        }))
    }

    fn connect(&self, reader: &str) -> Result<Box<dyn CardChannel>, CardError> {
        let name = CString::new(reader).map_err(|_| CardError::ReaderGone)?;
        let ctx = establish()?;
        let card = ctx
            .connect(&name, ShareMode::Shared, Protocols::ANY)
            .map_err(map_error)?;
        let atr = card.status2_owned().map_err(map_error)?.atr().to_vec();
        Ok(Box::new(PcscChannel {
            card: Some(card),
            atr,
        }))
    }
}

struct PcscChannel {
    /// `None` once disconnected.
    card: Option<pcsc::Card>,
    atr: Vec<u8>,
}

impl Drop for PcscChannel {
    fn drop(&mut self) {
        // Leave the card as it is: a reset (what dropping a pcsc::Card does) fails on a card
        // that left mid-command and can leave the driver believing it is still there.
        if let Some(card) = self.card.take() {
            let _ = card.disconnect(pcsc::Disposition::LeaveCard);
        }
    }
}

impl std::fmt::Debug for PcscChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscChannel").finish_non_exhaustive()
    }
}

impl CardChannel for PcscChannel {
    fn atr(&self) -> &[u8] {
        &self.atr
    }

    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        let mut buffer = [0u8; pcsc::MAX_BUFFER_SIZE];
        let card = self.card.as_ref().ok_or(CardError::CardRemoved)?;
        let response = card.transmit(apdu, &mut buffer).map_err(map_error)?;
        let out = response.to_vec();
        buffer.iter_mut().for_each(|b| *b = 0);
        if out.len() < 2 {
            // vpcd (like a reader whose card leaves mid-command) hands back no status word: the
            // card is gone.
            return Err(CardError::CardRemoved);
        }
        Ok(out)
    }
}

struct WatchShared {
    context: Mutex<Option<Context>>,
    cancelled: AtomicBool,
}

struct PcscWatch {
    shared: Arc<WatchShared>,
    /// The PnP pseudo-reader first, then the readers.
    states: Vec<ReaderState>,
    last: Option<Vec<ReaderSnapshot>>,
}

impl std::fmt::Debug for PcscWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscWatch")
            .field("readers", &self.last)
            .finish_non_exhaustive()
    }
}

/// The reader states to wait on: the PnP pseudo-reader, the readers still there from `old`
/// (keeping what was last seen of them), and new readers as "unaware".
fn reader_states(ctx: &Context, old: Vec<ReaderState>) -> Result<Vec<ReaderState>, CardError> {
    let names = match ctx.list_readers_owned() {
        Ok(names) => names,
        Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
        Err(e) => return Err(map_error(e)),
    };
    let pnp = pcsc::PNP_NOTIFICATION();
    let mut states: Vec<ReaderState> = Vec::with_capacity(names.len() + 1);
    let mut old = old;
    match old.iter().position(|s| s.name() == pnp) {
        Some(i) => states.push(old.swap_remove(i)),
        None => states.push(ReaderState::new(pnp, State::UNAWARE)),
    }
    for name in names {
        match old.iter().position(|s| s.name() == name.as_c_str()) {
            Some(i) => states.push(old.swap_remove(i)),
            None => states.push(ReaderState::new(name, State::UNAWARE)),
        }
    }
    Ok(states)
}

fn snapshot(states: &[ReaderState]) -> Vec<ReaderSnapshot> {
    let pnp = pcsc::PNP_NOTIFICATION();
    let mut readers: Vec<ReaderSnapshot> = states
        .iter()
        .filter(|s| s.name() != pnp)
        .filter(|s| {
            !s.event_state()
                .intersects(State::UNKNOWN | State::IGNORE | State::UNAVAILABLE)
        })
        .map(|s| {
            let event = s.event_state();
            let card = if event.contains(State::PRESENT) {
                if event.contains(State::MUTE) {
                    CardPresence::Mute
                } else {
                    CardPresence::Present {
                        atr: s.atr().to_vec(),
                    }
                }
            } else {
                CardPresence::Empty
            };
            ReaderSnapshot {
                name: s.name().to_string_lossy().into_owned(),
                card,
                card_events: s.event_count(),
            }
        })
        .collect();
    readers.sort_by(|a, b| a.name.cmp(&b.name));
    readers
}

impl PcscWatch {
    fn context(&self) -> Result<Context, CardError> {
        let mut guard = self
            .shared
            .context
            .lock()
            .map_err(|_| CardError::Reader("watch lock poisoned".into()))?;
        if let Some(ctx) = guard.as_ref() {
            return Ok(ctx.clone());
        }
        let ctx = establish()?;
        *guard = Some(ctx.clone());
        Ok(ctx)
    }

    fn lost_service(&mut self) {
        if let Ok(mut guard) = self.shared.context.lock() {
            *guard = None;
        }
        self.states.clear();
        // Readers come back as "new" (a change) when the service does.
        self.last = Some(Vec::new());
    }
}

impl ReaderWatch for PcscWatch {
    fn next_change(&mut self, timeout: Option<Duration>) -> Result<WatchEvent, CardError> {
        loop {
            if self.shared.cancelled.load(Ordering::SeqCst) {
                return Ok(WatchEvent::Cancelled);
            }
            let ctx = match self.context() {
                Ok(ctx) => ctx,
                Err(e) => {
                    self.lost_service();
                    return Err(e);
                }
            };
            let old = std::mem::take(&mut self.states);
            self.states = match reader_states(&ctx, old) {
                Ok(states) => states,
                Err(e) => {
                    self.lost_service();
                    return Err(e);
                }
            };
            // Learn the state of new readers without blocking.
            match ctx.get_status_change(Duration::ZERO, &mut self.states) {
                Ok(()) | Err(pcsc::Error::Timeout) => {}
                Err(pcsc::Error::Cancelled) => return Ok(WatchEvent::Cancelled),
                Err(e) => {
                    self.lost_service();
                    return Err(map_error(e));
                }
            }
            for s in &mut self.states {
                s.sync_current_state();
            }
            let now = snapshot(&self.states);
            if self.last.as_ref() != Some(&now) {
                self.last = Some(now.clone());
                return Ok(WatchEvent::Changed(now));
            }
            // Nothing new: block until pcscd reports a change (reader or card).
            match ctx.get_status_change(timeout, &mut self.states) {
                Ok(()) => {
                    // Drop readers that went away; their state says so.
                    self.states.retain(|s| {
                        !s.event_state().intersects(State::UNKNOWN | State::IGNORE)
                            || s.name() == pcsc::PNP_NOTIFICATION()
                    });
                    continue;
                }
                Err(pcsc::Error::Timeout) => return Ok(WatchEvent::TimedOut),
                Err(pcsc::Error::Cancelled) => return Ok(WatchEvent::Cancelled),
                Err(pcsc::Error::UnknownReader) => continue,
                Err(e) => {
                    self.lost_service();
                    return Err(map_error(e));
                }
            }
        }
    }

    fn canceller(&self) -> Canceller {
        let shared = self.shared.clone();
        Canceller::new(move || {
            shared.cancelled.store(true, Ordering::SeqCst);
            if let Ok(guard) = shared.context.lock()
                && let Some(ctx) = guard.as_ref()
            {
                let _ = ctx.cancel();
            }
        })
    }
}
