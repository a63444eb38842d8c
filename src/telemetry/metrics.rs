//! Operational metrics, rendered as Prometheus text at `/metrics`: connections (active,
//! total, peak, refused, idle disconnects), events and errors by name, and event handling
//! latency. The same counts, summed by event and by error code, feed `/health`. One registry
//! per server instance, so tests can run many servers in one process.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub event: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Why a connection was refused, as counted.
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    RateLimited,
    Unauthorized,
    ServerError,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::RateLimited => "rate_limited",
            Refusal::Unauthorized => "unauthorized",
            Refusal::ServerError => "server_error",
        }
    }
}

/// Totals for `/health`. Prometheus families cannot be read back, so they are kept beside
/// them; the label sets are bounded (event names the server knows, error codes).
#[derive(Default)]
struct Tallies {
    events: BTreeMap<String, u64>,
    errors: BTreeMap<&'static str, u64>,
    refused: BTreeMap<&'static str, u64>,
}

/// What `/health` reports about traffic.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCounts {
    pub events_total: u64,
    pub events_by_name: BTreeMap<String, u64>,
    pub errors_total: u64,
    pub errors_by_code: BTreeMap<&'static str, u64>,
    pub refused_by_reason: BTreeMap<&'static str, u64>,
    pub idle_disconnects: u64,
}

pub struct Metrics {
    registry: Registry,
    pub connections_active: Gauge,
    pub connections_total: Counter,
    pub connections_peak: Gauge,
    peak: AtomicI64,
    pub events: Family<EventLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub latency: Family<EventLabels, Histogram>,
    pub slow_consumer_resyncs: Gauge,
    /// Copied from the core's catch-up memory at each scrape (see [`Metrics::set_catchups`]).
    catchups_from_memory: Counter,
    catchups_from_store: Counter,
    /// Copied from the store's health at each scrape (see [`Metrics::set_storage`]).
    storage_errors: Counter,
    storage_writes_failing: Gauge,
    pub connections_refused: Family<ReasonLabels, Counter>,
    pub idle_disconnects: Counter,
    idle_count: AtomicU64,
    tallies: Mutex<Tallies>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("switchboard");
        let connections_active = Gauge::default();
        let connections_total = Counter::default();
        let connections_peak = Gauge::default();
        let events = Family::<EventLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let latency = Family::<EventLabels, Histogram>::new_with_constructor(|| {
            // 50 µs … ~1.6 s, doubling.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.0, 16))
        });
        let slow_consumer_resyncs = Gauge::default();
        registry.register("connections_active", "Open client connections", connections_active.clone());
        registry.register("connections", "Client connections accepted", connections_total.clone());
        registry.register("connections_peak", "Most connections open at once", connections_peak.clone());
        registry.register("events", "Client events handled", events.clone());
        registry.register("errors", "Client events answered with an error", errors.clone());
        registry.register("event_duration_seconds", "Time to handle a client event", latency.clone());
        registry.register(
            "slow_consumer_resyncs",
            "Connections switched to catch-up because their buffer was full",
            slow_consumer_resyncs.clone(),
        );
        let catchups_from_memory = Counter::default();
        registry.register(
            "catchups_from_memory",
            "Catch-ups of new connections answered without a query: nothing was owed",
            catchups_from_memory.clone(),
        );
        let catchups_from_store = Counter::default();
        registry.register(
            "catchups_from_store",
            "Catch-up rounds that asked the database what a connection is owed",
            catchups_from_store.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register("connections_refused", "Connection attempts refused, by reason", connections_refused.clone());
        let idle_disconnects = Counter::default();
        registry.register(
            "idle_disconnects",
            "Sockets disconnected after MAX_IDLE_TIME without a client event",
            idle_disconnects.clone(),
        );
        let storage_errors = Counter::default();
        registry.register(
            "storage_errors",
            "Failed database writes and connections discarded in a broken state",
            storage_errors.clone(),
        );
        let storage_writes_failing = Gauge::default();
        registry.register(
            "storage_writes_failing",
            "1 from a failed database write until the next write succeeds",
            storage_writes_failing.clone(),
        );
        Arc::new(Self {
            registry,
            storage_errors,
            storage_writes_failing,
            connections_refused,
            idle_disconnects,
            idle_count: AtomicU64::new(0),
            tallies: Mutex::new(Tallies::default()),
            connections_active,
            connections_total,
            connections_peak,
            peak: AtomicI64::new(0),
            events,
            errors,
            latency,
            slow_consumer_resyncs,
            catchups_from_memory,
            catchups_from_store,
        })
    }

    /// Brings the catch-up figures up to date before a scrape.
    pub fn set_catchups(&self, from_memory: u64, from_store: u64) {
        self.catchups_from_memory.inner().store(from_memory, Ordering::Relaxed);
        self.catchups_from_store.inner().store(from_store, Ordering::Relaxed);
    }

    /// Brings the storage figures up to date before a scrape.
    pub fn set_storage(&self, report: &crate::store::health::StorageReport) {
        self.storage_errors.inner().store(report.errors_total, Ordering::Relaxed);
        self.storage_writes_failing.set(i64::from(report.writes_failing));
    }

    pub fn connection_opened(&self) {
        self.connections_total.inc();
        let now = self.connections_active.inc() + 1;
        let peak = self.peak.fetch_max(now, Ordering::Relaxed).max(now);
        self.connections_peak.set(peak);
    }

    pub fn connection_closed(&self) {
        self.connections_active.dec();
    }

    pub fn peak(&self) -> i64 {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn observe(&self, event: &str, seconds: f64, error_code: Option<&str>) {
        let labels = EventLabels { event: event.to_string() };
        self.events.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
        if let Some(code) = error_code {
            self.errors.get_or_create(&ErrorLabels { event: event.to_string(), code: code.to_string() }).inc();
        }
        let mut t = self.tallies();
        *t.events.entry(event.to_string()).or_default() += 1;
        if let Some(code) = error_code {
            *t.errors.entry(static_code(code)).or_default() += 1;
        }
    }

    pub fn connection_refused(&self, why: Refusal) {
        self.connections_refused.get_or_create(&ReasonLabels { reason: why.as_str().to_string() }).inc();
        *self.tallies().refused.entry(why.as_str()).or_default() += 1;
    }

    pub fn idle_disconnect(&self) {
        self.idle_disconnects.inc();
        self.idle_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn health_counts(&self) -> HealthCounts {
        let t = self.tallies();
        HealthCounts {
            events_total: t.events.values().sum(),
            events_by_name: t.events.clone(),
            errors_total: t.errors.values().sum(),
            errors_by_code: t.errors.clone(),
            refused_by_reason: t.refused.clone(),
            idle_disconnects: self.idle_count.load(Ordering::Relaxed),
        }
    }

    fn tallies(&self) -> std::sync::MutexGuard<'_, Tallies> {
        // Plain counters: a panic elsewhere mid-update leaves them usable.
        self.tallies.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Error codes are a closed set (SPEC §6); anything else is counted as internal.
fn static_code(code: &str) -> &'static str {
    const CODES: [&str; 18] = [
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "VALIDATION_FAILED",
        "INVALID_JSON",
        "UNKNOWN_TYPE",
        "EMPTY_CONTENT",
        "CONTENT_TOO_LONG",
        "SELF_MESSAGE",
        "RATE_LIMITED",
        "EDIT_WINDOW_EXPIRED",
        "GROUP_FULL",
        "CONFLICT",
        "INTERNAL_ERROR",
        // e2e's session-error codes (protocols/e2e.md).
        "SESSION_NOT_FOUND",
        "INVALID_KEY",
        "SESSION_NOT_ACTIVE",
        "SESSION_FULL",
    ];
    CODES.into_iter().find(|c| *c == code).unwrap_or("INTERNAL_ERROR")
}
