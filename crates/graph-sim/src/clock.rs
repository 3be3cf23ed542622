//! Wall-clock timestamps in the forms Graph writes (`createdDateTime`, error `date`).
//! One place, so every timestamp the simulator emits has the same shape.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, UTC, RFC 3339 with whole seconds and a `Z` (`2024-05-01T12:00:00Z`), as Graph writes it.
pub fn now_rfc3339_seconds() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}
