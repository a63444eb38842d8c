//! Operational metrics, rendered as Prometheus text at `/metrics`: connections (active,
//! total, peak), events and errors by name, and event handling latency. One registry per
//! server instance, so tests can run many servers in one process.

use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
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
        Arc::new(Self {
            registry,
            connections_active,
            connections_total,
            connections_peak,
            peak: AtomicI64::new(0),
            events,
            errors,
            latency,
            slow_consumer_resyncs,
        })
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
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
