//! Japan time as central writes it in messages, exports and reports. Japan has one time zone
//! and no daylight saving time, so Asia/Tokyo is the fixed offset +09:00.

use onshi_domain::calendar::JST;
use time::OffsetDateTime;

/// `2026-12-01 09:30:00 JST`.
pub fn stamp(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    format!(
        "{} JST",
        at.to_offset(JST).format(format).unwrap_or_default()
    )
}
