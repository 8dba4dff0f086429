//! Disaster windows (災害時医療情報閲覧): areas and periods in which drug and checkup
//! information is answered without a card consent.
//!
//! Opened at start (`onshi-sim serve --disaster-window 13,27@<RFC 3339>/<RFC 3339>`, repeatable)
//! or at run time: `POST /admin/disaster-windows` with `{"id":"…","prefectures":["13"],
//! "starts_at":"…","ends_at":"…"}` (`id` optional), `GET` lists them, `DELETE` closes all. A
//! window covers a request when the requesting institution's prefecture (the first two digits
//! of its code, from the terminal certificate) is listed and the time is inside it.

use std::sync::Mutex;

use onshi_domain::access::DisasterWindow;
use onshi_domain::ids::Prefecture;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A window as an operator opens it (the id is made up when absent).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenWindow {
    #[serde(default)]
    pub id: Option<String>,
    pub prefectures: Vec<Prefecture>,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

#[derive(Debug, Default)]
pub struct DisasterWindows {
    windows: Mutex<Vec<DisasterWindow>>,
}

impl DisasterWindows {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<DisasterWindow>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a window; refuses an empty area or a period that ends before it starts.
    pub fn open(&self, window: OpenWindow) -> Result<DisasterWindow, String> {
        if window.prefectures.is_empty() {
            return Err("a disaster window needs at least one prefecture".into());
        }
        if window.ends_at <= window.starts_at {
            return Err("a disaster window must end after it starts".into());
        }
        let mut windows = self.lock();
        let id = window
            .id
            .unwrap_or_else(|| format!("sim-{}", windows.len() + 1));
        let opened = DisasterWindow {
            id,
            prefectures: window.prefectures,
            starts_at: window.starts_at,
            ends_at: window.ends_at,
        };
        windows.push(opened.clone());
        Ok(opened)
    }

    pub fn list(&self) -> Vec<DisasterWindow> {
        self.lock().clone()
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The id of a window covering `prefecture` at `at`.
    pub fn covering(&self, prefecture: Prefecture, at: OffsetDateTime) -> Option<String> {
        self.lock()
            .iter()
            .find(|w| w.covers(prefecture, at))
            .map(|w| w.id.clone())
    }
}

/// Parses `--disaster-window 13,27@2026-01-01T00:00:00+09:00/2026-01-08T00:00:00+09:00`.
pub fn parse_flag(text: &str) -> Result<OpenWindow, String> {
    let (area, period) = text
        .split_once('@')
        .ok_or("expected PREFECTURES@START/END, e.g. 13,27@2026-01-01T00:00:00+09:00/2026-01-08T00:00:00+09:00")?;
    let (start, end) = period
        .split_once('/')
        .ok_or("expected START/END after @ (RFC 3339)")?;
    let prefectures = area
        .split(',')
        .map(|p| Prefecture::parse(p.trim()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let time = |s: &str| {
        OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|e| format!("{s:?}: {e} (RFC 3339)"))
    };
    Ok(OpenWindow {
        id: None,
        prefectures,
        starts_at: time(start)?,
        ends_at: time(end)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn windows_cover_their_area_and_time() {
        let windows = DisasterWindows::default();
        let w = parse_flag("13,27@2026-01-01T00:00:00+09:00/2026-01-08T00:00:00+09:00").unwrap();
        let opened = windows.open(w).unwrap();
        assert_eq!(opened.id, "sim-1");
        let tokyo = Prefecture::parse("13").unwrap();
        let hokkaido = Prefecture::parse("01").unwrap();
        let inside = datetime!(2026-01-03 12:00 +09:00);
        assert_eq!(windows.covering(tokyo, inside).as_deref(), Some("sim-1"));
        assert_eq!(windows.covering(hokkaido, inside), None);
        assert_eq!(
            windows.covering(tokyo, datetime!(2026-01-08 00:00 +09:00)),
            None
        );
        windows.clear();
        assert_eq!(windows.covering(tokyo, inside), None);
        assert!(parse_flag("13@2026-01-08T00:00:00Z/2026-01-01T00:00:00Z").is_ok());
        assert!(
            windows
                .open(parse_flag("13@2026-01-08T00:00:00Z/2026-01-01T00:00:00Z").unwrap())
                .is_err()
        );
        assert!(parse_flag("48@2026-01-01T00:00:00Z/2026-01-02T00:00:00Z").is_err());
        assert!(parse_flag("13").is_err());
    }
}
