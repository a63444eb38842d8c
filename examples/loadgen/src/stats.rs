//! Counting: latencies kept whole (every sample, in microseconds: a 20 s run at 200,000
//! samples/s is 16 MB) so percentiles are exact, and errors by kind.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{json, Value};

#[derive(Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn append(&mut self, mut other: Latencies) {
        self.0.append(&mut other.0);
    }

    /// `{count, p50, p90, p99, p999, max}` in milliseconds; nulls when nothing was recorded.
    pub fn summary(&mut self) -> Value {
        self.0.sort_unstable();
        let pick = |q: f64| -> Value {
            if self.0.is_empty() {
                return Value::Null;
            }
            let i = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len()) - 1;
            json!(ms(self.0[i]))
        };
        json!({
            "count": self.0.len(),
            "p50": pick(0.50),
            "p90": pick(0.90),
            "p99": pick(0.99),
            "p999": pick(0.999),
            "max": pick(1.0),
        })
    }
}

/// Microseconds as milliseconds (three decimals, exactly).
fn ms(us: u32) -> f64 {
    us as f64 / 1000.0
}

/// Errors by kind, for the summary.
#[derive(Default)]
pub struct Errors(BTreeMap<String, u64>);

impl Errors {
    pub fn add(&mut self, kind: impl Into<String>) {
        *self.0.entry(kind.into()).or_default() += 1;
    }

    pub fn add_n(&mut self, kind: String, n: u64) {
        *self.0.entry(kind).or_default() += n;
    }

    pub fn into_inner(self) -> BTreeMap<String, u64> {
        self.0
    }

    pub fn to_json(&self) -> Value {
        json!(self.0)
    }
}

/// A rate with two decimals.
pub fn per_second(count: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    (count as f64 / secs * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut l = Latencies::default();
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us * 1000));
        }
        let s = l.summary();
        assert_eq!(s["count"], 1000);
        assert_eq!(s["p50"], 500.0);
        assert_eq!(s["p99"], 990.0);
        assert_eq!(s["p999"], 999.0);
        assert_eq!(s["max"], 1000.0);
        assert!(Latencies::default().summary()["p50"].is_null());
    }
}
