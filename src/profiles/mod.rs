//! Wire dialects. Each profile only translates: client events → core calls, and core events →
//! its own event names and shapes. Adding a profile adds a module here and touches nothing in
//! `core`.

pub mod socketio;
pub mod sup;

use chrono::{DateTime, SecondsFormat, Utc};

/// Timestamps on the wire: RFC 3339 in UTC with milliseconds, as JavaScript's `toISOString`.
pub fn iso(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
