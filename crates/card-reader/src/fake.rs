//! An in-process [`CardReaders`] for unit tests: readers are plugged and unplugged and cards
//! inserted and removed by calls, and a card is any function that answers APDUs (the virtual
//! card's applet in tests). It is never the only test of the PC/SC path: the same
//! [`crate::conformance`] suite runs against pcscd in the end-to-end tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{
    Canceller, CardChannel, CardError, CardPresence, CardReaders, ReaderSnapshot, ReaderWatch,
    WatchEvent,
};

/// A card: its ATR and a function from command APDU to response APDU; `None` means the card
/// was pulled off the reader while answering.
pub struct FakeCard {
    pub atr: Vec<u8>,
    pub answer: Answer,
}

/// Command APDU in, response APDU out; `None`: the card left the reader.
pub type Answer = Box<dyn FnMut(&[u8]) -> Option<Vec<u8>> + Send>;

impl std::fmt::Debug for FakeCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCard").field("atr", &self.atr).finish()
    }
}

#[derive(Debug, Default)]
struct Slot {
    card: Option<Arc<Mutex<FakeCard>>>,
    /// Bumped on every insertion and removal.
    card_events: u32,
}

#[derive(Debug, Default)]
struct Inner {
    readers: BTreeMap<String, Slot>,
    service_down: bool,
}

#[derive(Debug, Default)]
struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
    cancel_generation: Mutex<u64>,
}

/// Readers and cards in memory.
#[derive(Debug, Clone, Default)]
pub struct FakeReaders {
    shared: Arc<Shared>,
}

impl FakeReaders {
    pub fn new(readers: &[&str]) -> Self {
        let fake = Self::default();
        for r in readers {
            fake.plug(r);
        }
        fake
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut Inner)) {
        change(&mut self.lock());
        self.shared.changed.notify_all();
    }

    pub fn plug(&self, reader: &str) {
        self.update(|inner| {
            inner.readers.entry(reader.to_string()).or_default();
        });
    }

    pub fn unplug(&self, reader: &str) {
        self.update(|inner| {
            inner.readers.remove(reader);
        });
    }

    pub fn insert(&self, reader: &str, card: FakeCard) {
        self.update(|inner| {
            if let Some(slot) = inner.readers.get_mut(reader) {
                slot.card = Some(Arc::new(Mutex::new(card)));
                slot.card_events += 1;
            }
        });
    }

    pub fn remove(&self, reader: &str) {
        self.update(|inner| {
            if let Some(slot) = inner.readers.get_mut(reader)
                && slot.card.take().is_some()
            {
                slot.card_events += 1;
            }
        });
    }

    /// Emulates pcscd stopping (`down`) and starting again.
    pub fn set_service_down(&self, down: bool) {
        self.update(|inner| inner.service_down = down);
    }

    fn snapshot(inner: &Inner) -> Vec<ReaderSnapshot> {
        inner
            .readers
            .iter()
            .map(|(name, slot)| ReaderSnapshot {
                name: name.clone(),
                card: match &slot.card {
                    Some(card) => CardPresence::Present {
                        atr: card
                            .lock()
                            .map(|c| c.atr.clone())
                            .unwrap_or_else(|p| p.into_inner().atr.clone()),
                    },
                    None => CardPresence::Empty,
                },
                card_events: slot.card_events,
            })
            .collect()
    }
}

impl CardReaders for FakeReaders {
    fn readers(&self) -> Result<Vec<ReaderSnapshot>, CardError> {
        let inner = self.lock();
        if inner.service_down {
            return Err(CardError::NoService);
        }
        Ok(Self::snapshot(&inner))
    }

    fn watch(&self) -> Result<Box<dyn ReaderWatch>, CardError> {
        let generation = *self
            .shared
            .cancel_generation
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Ok(Box::new(FakeWatch {
            readers: self.clone(),
            last: None,
            generation,
        }))
    }

    fn connect(&self, reader: &str) -> Result<Box<dyn CardChannel>, CardError> {
        let inner = self.lock();
        if inner.service_down {
            return Err(CardError::NoService);
        }
        let slot = inner.readers.get(reader).ok_or(CardError::ReaderGone)?;
        let card = slot.card.clone().ok_or(CardError::NoCard)?;
        let atr = card.lock().map_err(|_| CardError::CardRemoved)?.atr.clone();
        Ok(Box::new(FakeChannel {
            readers: self.clone(),
            reader: reader.to_string(),
            card,
            atr,
        }))
    }
}

#[derive(Debug)]
struct FakeChannel {
    readers: FakeReaders,
    reader: String,
    card: Arc<Mutex<FakeCard>>,
    atr: Vec<u8>,
}

impl CardChannel for FakeChannel {
    fn atr(&self) -> &[u8] {
        &self.atr
    }

    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        {
            let inner = self.readers.lock();
            if inner.service_down {
                return Err(CardError::NoService);
            }
            let slot = inner
                .readers
                .get(&self.reader)
                .ok_or(CardError::ReaderGone)?;
            match &slot.card {
                Some(card) if Arc::ptr_eq(card, &self.card) => {}
                _ => return Err(CardError::CardRemoved),
            }
        }
        let answer = {
            let mut card = self.card.lock().map_err(|_| CardError::CardRemoved)?;
            (card.answer)(apdu)
        };
        match answer {
            Some(response) => Ok(response),
            None => {
                // The card left the reader mid-command, as a pulled card does.
                let card = self.card.clone();
                self.readers.update(|inner| {
                    if let Some(slot) = inner.readers.get_mut(&self.reader)
                        && slot.card.as_ref().is_some_and(|c| Arc::ptr_eq(c, &card))
                    {
                        slot.card = None;
                        slot.card_events += 1;
                    }
                });
                Err(CardError::CardRemoved)
            }
        }
    }
}

#[derive(Debug)]
struct FakeWatch {
    readers: FakeReaders,
    last: Option<Vec<ReaderSnapshot>>,
    generation: u64,
}

impl FakeWatch {
    fn cancelled(&self) -> bool {
        *self
            .readers
            .shared
            .cancel_generation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            != self.generation
    }
}

impl ReaderWatch for FakeWatch {
    fn next_change(&mut self, timeout: Option<Duration>) -> Result<WatchEvent, CardError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut inner = self.readers.lock();
        loop {
            if self.cancelled() {
                return Ok(WatchEvent::Cancelled);
            }
            if inner.service_down {
                self.last = Some(Vec::new());
                return Err(CardError::NoService);
            }
            let now = FakeReaders::snapshot(&inner);
            if self.last.as_ref() != Some(&now) {
                self.last = Some(now.clone());
                return Ok(WatchEvent::Changed(now));
            }
            inner = match deadline {
                None => self
                    .readers
                    .shared
                    .changed
                    .wait(inner)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(WatchEvent::TimedOut);
                    }
                    self.readers
                        .shared
                        .changed
                        .wait_timeout(inner, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    fn canceller(&self) -> Canceller {
        let readers = self.readers.clone();
        Canceller::new(move || {
            *readers
                .shared
                .cancel_generation
                .lock()
                .unwrap_or_else(|p| p.into_inner()) += 1;
            // Take the lock so a watcher between its check and its wait cannot miss the wake.
            drop(readers.lock());
            readers.shared.changed.notify_all();
        })
    }
}
