//! Whether the database takes writes right now, for operators: every failed write is logged
//! at error level with its cause and counted, and `/health` reports the database as failing
//! from a failed write until the next write succeeds. A reachability probe (`SELECT 1`) is not
//! enough: a disk that refuses writes still answers reads.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use chrono::{DateTime, Utc};

#[derive(Default)]
pub struct StorageHealth {
    /// Failed write transactions and connections discarded in a broken state, since start.
    errors_total: AtomicU64,
    /// The last write attempt failed and none has succeeded since.
    failing: AtomicBool,
    last_error: Mutex<Option<LastError>>,
    /// When the last failure happened, for checks that only pay off after a fault.
    last_failure: Mutex<Option<Instant>>,
}

/// How long after a storage failure connections are checked more closely on release.
const AFTER_A_FAULT: Duration = Duration::from_secs(600);

/// The most recent storage error, as `/health` shows it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    pub at: DateTime<Utc>,
    /// Which write path failed (`message batch`, `delivery marks`, …).
    pub operation: &'static str,
    pub cause: String,
}

/// What `/health` and `/metrics` read.
pub struct StorageReport {
    pub writes_failing: bool,
    pub errors_total: u64,
    pub last_error: Option<LastError>,
}

impl StorageHealth {
    /// A write failed: logged once here, with its cause, at error level.
    pub fn write_failed(&self, operation: &'static str, cause: &dyn std::fmt::Display) {
        let cause = cause.to_string();
        tracing::error!(operation, cause = %cause, "storage write failed");
        self.failed_now();
        let at = DateTime::<Utc>::from(SystemTime::now());
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastError { at, operation, cause });
    }

    /// A connection had to be thrown away because a transaction could not be ended on it.
    pub fn connection_discarded(&self, backend: &'static str) {
        tracing::error!(backend, "a broken database connection was discarded");
        self.failed_now();
    }

    fn failed_now(&self) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        self.failing.store(true, Ordering::Relaxed);
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether a storage failure happened in the last ten minutes.
    pub fn failed_recently(&self) -> bool {
        if self.errors_total.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.last_failure.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|at| at.elapsed() < AFTER_A_FAULT)
    }

    /// A write transaction committed: the database takes writes again.
    pub fn write_succeeded(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::warn!("storage writes succeed again");
        }
    }

    pub fn report(&self) -> StorageReport {
        StorageReport {
            writes_failing: self.failing.load(Ordering::Relaxed),
            errors_total: self.errors_total.load(Ordering::Relaxed),
            last_error: self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_from_a_failed_write_until_the_next_success() {
        let health = StorageHealth::default();
        assert!(!health.report().writes_failing);
        health.write_failed("message batch", &"disk I/O error");
        let report = health.report();
        assert!(report.writes_failing);
        assert_eq!(report.errors_total, 1);
        assert_eq!(report.last_error.map(|e| e.cause), Some("disk I/O error".to_string()));
        health.write_succeeded();
        let report = health.report();
        assert!(!report.writes_failing);
        assert_eq!(report.errors_total, 1, "the count is since start");
    }
}
