//! Summary lines → the tables and the target check of BENCHMARKS.md. Servers are told apart
//! by their `label`; `socketioxide` (the bare reference server) is the yardstick for ratios,
//! and labels starting with `switchboard` are the ones the targets apply to.

use std::{fmt::Write, path::Path};

use anyhow::Context;
use serde_json::Value;

/// The label of the bare socketioxide server, which ratios are taken against.
pub const REFERENCE: &str = "socketioxide";

/// The targets.
const ACK_SHARE_SQLITE: f64 = 0.50;
const ACK_SHARE_POSTGRES: f64 = 0.25;
const FANOUT_SHARE: f64 = 0.70;
const OPEN_P99_MS: f64 = 5.0;
const OPEN_RATE: f64 = 20_000.0;
const OPEN_CONNECTIONS: u64 = 1_000;
const ACK_CONNECTIONS: u64 = 1_000;
const IDLE_KIB: f64 = 12.0;
const IDLE_CONNECTIONS: u64 = 19_000;
const FANOUT_MEMBERS: u64 = 256;

struct Results {
    lines: Vec<Value>,
}

impl Results {
    /// The line of `label` for the scenario `key` (see [`key`]), the last one if repeated.
    fn get(&self, key: &str, label: &str) -> Option<&Value> {
        self.lines.iter().rev().find(|l| scenario_key(l) == key && str_of(l, "label") == label)
    }

    fn labels(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in &self.lines {
            let label = str_of(l, "label").to_string();
            if !out.contains(&label) {
                out.push(label);
            }
        }
        out
    }

    fn keys(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in &self.lines {
            let key = scenario_key(l);
            if !out.contains(&key) {
                out.push(key);
            }
        }
        out
    }

    /// `value / reference value` of the same scenario and field.
    fn ratio(&self, key: &str, label: &str, field: &str) -> Option<f64> {
        let mine = self.get(key, label).and_then(|l| num(l, field))?;
        let theirs = self.get(key, REFERENCE).and_then(|l| num(l, field))?;
        (theirs > 0.0).then(|| mine / theirs)
    }
}

/// Fan-out runs are told apart by group size.
fn scenario_key(l: &Value) -> String {
    let scenario = str_of(l, "scenario");
    match l.get("members_requested").and_then(Value::as_u64) {
        Some(m) if scenario == "fanout" => format!("fanout-{m}"),
        _ => scenario.to_string(),
    }
}

fn str_of<'a>(l: &'a Value, field: &str) -> &'a str {
    l.get(field).and_then(Value::as_str).unwrap_or("?")
}

/// A number at a JSON pointer-ish path (`a.b`).
fn num(l: &Value, path: &str) -> Option<f64> {
    path.split('.').try_fold(l, |v, part| v.get(part))?.as_f64()
}

fn int(n: Option<f64>) -> String {
    match n {
        None => "–".into(),
        Some(n) => {
            let s = format!("{:.0}", n);
            let (sign, digits) = s.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", &s));
            let mut out = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            format!("{sign}{out}")
        }
    }
}

fn dec(n: Option<f64>, places: usize) -> String {
    n.map(|n| format!("{n:.places$}")).unwrap_or_else(|| "–".into())
}

fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_else(|| "–".into())
}

fn errors(l: &Value) -> String {
    match l.get("errors").and_then(Value::as_object) {
        Some(map) if !map.is_empty() => {
            map.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; ").replace('|', "/")
        }
        _ => "–".into(),
    }
}

/// CPU over the measured window: server and load generator in percent of one core, then how
/// busy each core of the machine was (by anyone: other work on the machine shows here).
fn cpu(l: &Value) -> String {
    let c = l.get("cpu").or_else(|| l.get("cpu_during_ramp"));
    let Some(c) = c else { return "–".into() };
    let cores = c
        .get("cores_busy_pct")
        .and_then(Value::as_array)
        .map(|v| v.iter().map(|x| dec(x.as_f64(), 0)).collect::<Vec<_>>().join("/"))
        .unwrap_or_else(|| "–".into());
    format!("{} / {} ({})", dec(num(c, "server_pct"), 0), dec(num(c, "loadgen_pct"), 0), cores)
}

fn lost_dup(l: &Value) -> String {
    format!("{} / {}", int(num(l, "lost")), int(num(l, "duplicated")))
}

/// The table of one scenario: a row per server.
fn table(out: &mut String, r: &Results, key: &str) {
    let labels: Vec<String> = r.labels().into_iter().filter(|label| r.get(key, label).is_some()).collect();
    let (title, header): (String, &[&str]) = match key {
        "idle" => (
            "Idle authenticated connections".into(),
            &[
                "server",
                "connected",
                "RSS before → after (MiB)",
                "KiB / connection",
                "vs socketioxide",
                "connects/s (ramp)",
                "probes answered",
                "lost / dup",
                "CPU % server / loadgen (cores)",
                "errors",
            ],
        ),
        "ack-closed" => (
            "`message:new` with ack, closed loop".into(),
            &[
                "server",
                "connections",
                "acks/s",
                "vs socketioxide",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "lost / dup",
                "failed",
                "CPU % server / loadgen (cores)",
                "errors",
            ],
        ),
        "ack-open" => (
            "`message:new` with ack, open loop (fixed rate)".into(),
            &[
                "server",
                "connections",
                "rate asked",
                "rate kept",
                "sent/s",
                "acks/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "lost / dup",
                "CPU % server / loadgen (cores)",
                "errors",
            ],
        ),
        "reconnect-storm" => (
            "Reconnect storm (connect, one message, disconnect)".into(),
            &[
                "server",
                "workers",
                "connects/s",
                "vs socketioxide",
                "connect p50 ms",
                "connect p99 ms",
                "ack p99 ms",
                "lost / dup",
                "CPU % server / loadgen (cores)",
                "errors",
            ],
        ),
        "reconnect-wave" => (
            "Reconnect wave (all clients at once, each owed a backlog)".into(),
            &[
                "server",
                "clients",
                "backlog each",
                "all connected (s)",
                "all caught up (s)",
                "connects/s",
                "caught up p50 / p99 (s)",
                "retries",
                "lost / dup",
                "CPU % server / loadgen (cores)",
                "errors",
            ],
        ),
        k if k.starts_with("fanout-") => (
            format!("Fan-out to a group of {}", &k["fanout-".len()..]),
            &[
                "server",
                "members",
                "messages/s",
                "deliveries/s",
                "vs socketioxide",
                "delivery p50 ms",
                "p99 ms",
                "p99.9 ms",
                "ack p99 ms",
                "lost / dup",
                "CPU % server / loadgen (cores)",
                "errors",
            ],
        ),
        other => (other.to_string(), &["server", "summary"]),
    };
    let _ = writeln!(out, "### {title}\n");
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for label in labels {
        let Some(l) = r.get(key, &label) else { continue };
        if let Some(e) = l.get("error").and_then(Value::as_str) {
            let _ = writeln!(out, "| {label} | **did not run**: {} |", e.replace('|', "/"));
            continue;
        }
        let cells: Vec<String> = match key {
            "idle" => vec![
                int(num(l, "connections")),
                format!(
                    "{} → {}",
                    dec(num(l, "rss_before_kib").map(|k| k / 1024.0), 0),
                    dec(num(l, "rss_after_kib").map(|k| k / 1024.0), 0)
                ),
                dec(num(l, "rss_per_connection_kib"), 1),
                pct(r.ratio(key, &label, "rss_per_connection_kib")),
                int(num(l, "connects_per_s")),
                format!("{} / {}", int(num(l, "probes_answered")), int(num(l, "probes"))),
                lost_dup(l),
                cpu(l),
                errors(l),
            ],
            "ack-closed" => vec![
                int(num(l, "connections")),
                int(num(l, "acks_per_s")),
                pct(r.ratio(key, &label, "acks_per_s")),
                dec(num(l, "latency_ms.p50"), 2),
                dec(num(l, "latency_ms.p99"), 2),
                dec(num(l, "latency_ms.p999"), 2),
                lost_dup(l),
                int(num(l, "failed")),
                cpu(l),
                errors(l),
            ],
            "ack-open" => vec![
                int(num(l, "connections")),
                int(num(l, "target_rate")),
                match num(l, "skipped") {
                    Some(n) if n > 0.0 => {
                        format!(
                            "**no**: {} sends skipped (over {} unacked)",
                            int(Some(n)),
                            int(num(l, "max_outstanding"))
                        )
                    }
                    _ => "yes".into(),
                },
                int(num(l, "sent_per_s")),
                int(num(l, "acks_per_s")),
                dec(num(l, "latency_ms.p50"), 2),
                dec(num(l, "latency_ms.p99"), 2),
                dec(num(l, "latency_ms.p999"), 2),
                dec(num(l, "latency_ms.max"), 1),
                lost_dup(l),
                cpu(l),
                errors(l),
            ],
            "reconnect-storm" => vec![
                int(num(l, "workers")),
                int(num(l, "connects_per_s")),
                pct(r.ratio(key, &label, "connects_per_s")),
                dec(num(l, "connect_latency_ms.p50"), 2),
                dec(num(l, "connect_latency_ms.p99"), 2),
                dec(num(l, "ack_latency_ms.p99"), 2),
                lost_dup(l),
                cpu(l),
                errors(l),
            ],
            "reconnect-wave" => vec![
                int(num(l, "clients")),
                int(num(l, "backlog_per_client")),
                dec(num(l, "all_connected_s"), 2),
                match num(l, "wave_s") {
                    Some(s) => dec(Some(s), 2),
                    None => format!("**not all** ({} of {})", int(num(l, "complete")), int(num(l, "clients"))),
                },
                int(num(l, "connects_per_s")),
                format!(
                    "{} / {}",
                    dec(num(l, "complete_latency_ms.p50").map(|ms| ms / 1000.0), 2),
                    dec(num(l, "complete_latency_ms.p99").map(|ms| ms / 1000.0), 2)
                ),
                int(num(l, "retries")),
                lost_dup(l),
                cpu(l),
                errors(l),
            ],
            k if k.starts_with("fanout-") => vec![
                int(num(l, "members")),
                int(num(l, "messages_per_s")),
                int(num(l, "deliveries_per_s")),
                pct(r.ratio(key, &label, "deliveries_per_s")),
                dec(num(l, "delivery_latency_ms.p50"), 2),
                dec(num(l, "delivery_latency_ms.p99"), 2),
                dec(num(l, "delivery_latency_ms.p999"), 2),
                dec(num(l, "ack_latency_ms.p99"), 2),
                lost_dup(l),
                cpu(l),
                errors(l),
            ],
            _ => vec![l.to_string().replace('|', "/")],
        };
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    }
    out.push('\n');
}

struct Check {
    target: String,
    measured: String,
    met: Option<bool>,
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

fn checks(r: &Results) -> Vec<Check> {
    let mut out = Vec::new();
    let switchboards: Vec<String> = r.labels().into_iter().filter(|l| l.starts_with("switchboard")).collect();
    for label in &switchboards {
        let postgres = label.contains("postgres");
        let share = if postgres { ACK_SHARE_POSTGRES } else { ACK_SHARE_SQLITE };
        let line = r.get("ack-closed", label);
        let conns = line.and_then(|l| num(l, "connections"));
        let ratio = r.ratio("ack-closed", label, "acks_per_s");
        out.push(Check {
            target: format!(
                "{label}: persisted `message:new` acks/s with {} connections ≥ {:.0}% of socketioxide's",
                int(Some(ACK_CONNECTIONS as f64)),
                share * 100.0
            ),
            measured: format!(
                "{} acks/s = {} ({} connections)",
                int(line.and_then(|l| num(l, "acks_per_s"))),
                pct(ratio),
                int(conns)
            ),
            met: ratio.map(|x| x >= share && conns == Some(ACK_CONNECTIONS as f64)),
        });
    }
    for label in &switchboards {
        let key = format!("fanout-{FANOUT_MEMBERS}");
        let line = r.get(&key, label);
        let ratio = r.ratio(&key, label, "deliveries_per_s");
        out.push(Check {
            target: format!(
                "{label}: fan-out to a {FANOUT_MEMBERS}-member group ≥ {:.0}% of socketioxide's deliveries/s",
                FANOUT_SHARE * 100.0
            ),
            measured: format!("{} deliveries/s = {}", int(line.and_then(|l| num(l, "deliveries_per_s"))), pct(ratio)),
            met: ratio.map(|x| x >= FANOUT_SHARE),
        });
    }
    for label in &switchboards {
        let line = r.get("ack-open", label);
        let p99 = line.and_then(|l| num(l, "latency_ms.p99"));
        let rate = line.and_then(|l| num(l, "acks_per_s"));
        let conns = line.and_then(|l| num(l, "connections"));
        let asked = line.and_then(|l| num(l, "target_rate"));
        out.push(Check {
            target: format!(
                "{label}: p99 ack latency ≤ {OPEN_P99_MS} ms at a steady {} messages/s from {} connections",
                int(Some(OPEN_RATE)),
                int(Some(OPEN_CONNECTIONS as f64))
            ),
            measured: match line.and_then(|l| num(l, "skipped")).filter(|n| *n > 0.0) {
                Some(n) => format!(
                    "rate not kept: {} acks/s, {} sends skipped; p99 {} ms",
                    int(rate),
                    int(Some(n)),
                    dec(p99, 2)
                ),
                None => format!(
                    "p99 {} ms at {} acks/s ({} asked, {} connections)",
                    dec(p99, 2),
                    int(rate),
                    int(asked),
                    int(conns)
                ),
            },
            // The rate must have been kept, or a low p99 would say nothing.
            met: match (p99, rate, asked, conns) {
                (Some(p99), Some(rate), Some(asked), Some(conns)) => Some(
                    p99 <= OPEN_P99_MS
                        && asked >= OPEN_RATE
                        && rate >= 0.98 * OPEN_RATE
                        && conns >= OPEN_CONNECTIONS as f64
                        && line.and_then(|l| num(l, "skipped")).unwrap_or(0.0) == 0.0,
                ),
                _ => None,
            },
        });
    }
    for label in &switchboards {
        let line = r.get("idle", label);
        let kib = line.and_then(|l| num(l, "rss_per_connection_kib"));
        let conns = line.and_then(|l| num(l, "connections"));
        out.push(Check {
            target: format!(
                "{label}: ≤ {IDLE_KIB} KiB of server RSS per idle authenticated connection at {} connections",
                int(Some(IDLE_CONNECTIONS as f64))
            ),
            measured: format!("{} KiB ({} connections)", dec(kib, 1), int(conns)),
            met: match (kib, conns) {
                (Some(kib), Some(conns)) => Some(kib <= IDLE_KIB && conns >= IDLE_CONNECTIONS as f64),
                _ => None,
            },
        });
    }
    for label in &switchboards {
        let mine: Vec<&Value> = r.lines.iter().filter(|l| str_of(l, "label") == label).collect();
        let ran = mine.iter().filter(|l| l.get("error").is_none()).count();
        let bad: Vec<String> = mine
            .iter()
            .filter(|l| {
                l.get("error").is_some()
                    || num(l, "lost").unwrap_or(0.0) > 0.0
                    || num(l, "duplicated").unwrap_or(0.0) > 0.0
            })
            .map(|l| format!("{} {}", scenario_key(l), lost_dup(l)))
            .collect();
        out.push(Check {
            target: format!("{label}: zero lost or duplicated messages in every scenario"),
            measured: if bad.is_empty() {
                format!("0 / 0 in all {ran} scenarios")
            } else {
                format!("lost / dup: {}", bad.join(", "))
            },
            met: (!mine.is_empty()).then_some(bad.is_empty()),
        });
    }
    out
}

pub fn render(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str::<Value>(l).with_context(|| format!("line {} is not JSON", i + 1)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let r = Results { lines };
    let mut out = String::new();
    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(out, "| target | measured | verdict |\n|---|---|---|");
    for c in checks(&r) {
        let _ = writeln!(out, "| {} | {} | {} |", c.target, c.measured, verdict(c.met));
    }
    let _ = writeln!(out, "\n## Results\n");
    for key in r.keys() {
        table(&mut out, &r, &key);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(int(Some(1234567.4)), "1,234,567");
        assert_eq!(int(Some(999.0)), "999");
        assert_eq!(int(None), "–");
        assert_eq!(pct(Some(0.5)), "50%");
    }

    #[test]
    fn ratios_are_taken_against_the_reference_server() {
        let r = Results {
            lines: vec![
                serde_json::json!({"scenario": "ack-closed", "label": "socketioxide", "acks_per_s": 100.0, "connections": 1000, "lost": 0, "duplicated": 0}),
                serde_json::json!({"scenario": "ack-closed", "label": "switchboard-sqlite", "acks_per_s": 60.0, "connections": 1000, "lost": 0, "duplicated": 0}),
            ],
        };
        assert_eq!(r.ratio("ack-closed", "switchboard-sqlite", "acks_per_s"), Some(0.6));
        let checks = checks(&r);
        assert_eq!(checks[0].met, Some(true));
        assert!(checks.iter().any(|c| c.target.contains("zero lost") && c.met == Some(true)));
    }
}
