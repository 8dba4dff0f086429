//! Files in the folders the agent shares with the qualification terminal and the receipt
//! computer: atomic writes and bounded reads ([`fsio`]), change notification ([`watch`]), and
//! the restart journal of one request being answered ([`journal`]), which the file exchange
//! writes and the terminal transport hands a relayed answer into. Below the transport and the
//! file exchange, which both use it.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Notify;

pub mod fsio;
pub mod journal;

/// Starts file-system notification on `dir`; `None` (rescans only) when it cannot.
pub(crate) fn watch(dir: &Path, wake: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| changes_files(&e.kind)) {
            wake.notify_one();
        }
    });
    match watcher.and_then(|mut w| {
        w.watch(dir, notify::RecursiveMode::NonRecursive)
            .map(|()| w)
    }) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(%error, folder = %dir.display(), "file-system notification unavailable; relying on the periodic rescan");
            None
        }
    }
}

/// Whether an event can mean a file came, went or changed. Opening and reading are not: notify
/// reports those too (inotify `IN_OPEN`, `IN_CLOSE_NOWRITE`), so a scan's own listing and reads
/// would wake the scanner again and keep it spinning.
pub(crate) fn changes_files(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}
