//! The scenarios, and what they share: the `message:new` payload, reading acks, and the
//! timeline (warm-up, measured window, drain).

pub mod ack;
pub mod fanout;
pub mod idle;
pub mod storm;
pub mod wave;

use std::{
    borrow::Cow,
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::{
    ctx::CpuSample,
    stats::{Errors, Latencies},
};

/// Warm-up, then the measured window, then a drain in which nothing new is sent and what is
/// still outstanding may arrive; whatever has not arrived by `deadline` is lost.
#[derive(Clone, Copy)]
pub struct Timeline {
    pub begin: Instant,
    pub start: Instant,
    pub end: Instant,
    pub deadline: Instant,
}

impl Timeline {
    pub fn new(warmup: Duration, duration: Duration, drain: Duration) -> Self {
        // A short head start so every task is spawned before the first send is due.
        let begin = Instant::now() + Duration::from_millis(50);
        let start = begin + warmup;
        let end = start + duration;
        Self { begin, start, end, deadline: end + drain }
    }

    pub fn measured(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }

    pub fn window(&self) -> Duration {
        self.end - self.start
    }

    /// CPU use over the measured window (see [`CpuSample::until`]), in the background.
    pub fn watch_cpu(&self, server_pid: Option<u32>) -> tokio::task::JoinHandle<serde_json::Value> {
        let (start, end) = (self.start, self.end);
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until(start.into()).await;
            let first = CpuSample::take(server_pid);
            tokio::time::sleep_until(end.into()).await;
            first.until(&CpuSample::take(server_pid))
        })
    }
}

/// A `message:new` payload in the `sup` shape. Every part is generated here (uuids, our own
/// ids, filler), none needs JSON escaping, so it is formatted rather than serialized.
pub fn message_json(chat: &str, temp_id: &str, content: &str) -> String {
    format!(r#"{{"chatId":"{chat}","encryptedContent":"{content}","messageType":"text","tempId":"{temp_id}"}}"#)
}

/// The filler content of a message of `bytes` bytes.
pub fn content(bytes: usize) -> String {
    "x".repeat(bytes.max(1))
}

#[derive(Deserialize)]
struct AckBody<'a> {
    success: bool,
    #[serde(borrow)]
    data: Option<AckData<'a>>,
    #[serde(borrow)]
    error: Option<AckError<'a>>,
}

#[derive(Deserialize)]
struct AckData<'a> {
    #[serde(rename = "tempId", borrow)]
    temp_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AckError<'a> {
    #[serde(borrow)]
    code: Cow<'a, str>,
}

/// Checks that an ack says `success: true`.
pub fn check_success(body: &str) -> Result<(), String> {
    let (ack,): (AckBody,) = serde_json::from_str(body).map_err(|_| "ack: unreadable".to_string())?;
    if ack.success {
        Ok(())
    } else {
        Err(format!("ack: {}", ack.error.map(|e| e.code).unwrap_or(Cow::Borrowed("failed without a code"))))
    }
}

/// Checks a `message:new` ack (`[{success, data: {tempId…}}]`): `Err` names what was wrong,
/// as an error kind for the summary.
pub fn check_ack(body: &str, temp_id: &str) -> Result<(), String> {
    let (ack,): (AckBody,) = serde_json::from_str(body).map_err(|_| "ack: unreadable".to_string())?;
    if !ack.success {
        return Err(format!("ack: {}", ack.error.map(|e| e.code).unwrap_or(Cow::Borrowed("failed without a code"))));
    }
    match ack.data.and_then(|d| d.temp_id) {
        Some(t) if t == temp_id => Ok(()),
        _ => Err("ack: tempId mismatch".into()),
    }
}

/// Reads until the ack `id` arrives: `Some(Ok)` for a good ack, `Some(Err(kind))` for a bad
/// one, `None` when none came before `deadline` or the connection failed (counted).
pub async fn await_ack(
    conn: &mut crate::sio::Conn,
    id: u64,
    temp_id: &str,
    deadline: Instant,
    t: &mut Tally,
) -> Option<Result<(), String>> {
    loop {
        let text = match tokio::time::timeout_at(deadline.into(), conn.next_text()).await {
            Err(_) => {
                t.errors.add("no ack before the deadline");
                return None;
            }
            Ok(Err(e)) => {
                t.errors.add(e.kind());
                return None;
            }
            Ok(Ok(None)) => {
                t.errors.add("closed by server");
                return None;
            }
            Ok(Ok(Some(text))) => text,
        };
        match crate::sio::parse(&text) {
            crate::sio::Packet::Ping => {
                if let Err(e) = conn.send("3".into()).await {
                    t.errors.add(e.kind());
                    return None;
                }
            }
            crate::sio::Packet::Ack { id: got, body } if got == id => return Some(check_ack(body, temp_id)),
            // Ids are answered once each, in the order sent here: an earlier one again is a
            // duplicate.
            crate::sio::Packet::Ack { id: got, .. } if got < id => t.duplicated += 1,
            crate::sio::Packet::Ack { .. } => t.errors.add("ack for an id never sent"),
            crate::sio::Packet::Event { body, .. } => t.event(body),
            crate::sio::Packet::Disconnect => {
                t.errors.add("disconnected by server");
                return None;
            }
            _ => {}
        }
    }
}

/// Counts kept by one task and merged into the scenario's totals once it ends, so the hot
/// path touches no shared state.
#[derive(Default)]
pub struct Tally {
    pub sent: u64,
    pub sent_measured: u64,
    pub acked: u64,
    pub acked_measured: u64,
    /// Answered with `success: false` (or a wrong tempId): not lost, but not a success.
    pub failed: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Latency of what was sent in the measured window.
    pub latency: Latencies,
    pub errors: Errors,
    /// Events the scenario does not act on, by name (e.g. Switchboard's `connected`).
    pub events: BTreeMap<String, u64>,
}

impl Tally {
    pub fn event(&mut self, body: &str) {
        let name = crate::sio::event_name(body).unwrap_or("?");
        match self.events.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                self.events.insert(name.to_string(), 1);
            }
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.sent_measured += other.sent_measured;
        self.acked += other.acked;
        self.acked_measured += other.acked_measured;
        self.failed += other.failed;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.latency.append(other.latency);
        for (kind, n) in other.errors.into_inner() {
            self.errors.add_n(kind, n);
        }
        for (name, n) in other.events {
            *self.events.entry(name).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_checked_for_success_and_temp_id() {
        assert_eq!(check_ack(r#"[{"success":true,"data":{"id":"1","tempId":"t-1"}}]"#, "t-1"), Ok(()));
        assert_eq!(
            check_ack(r#"[{"success":true,"data":{"tempId":"t-2"}}]"#, "t-1"),
            Err("ack: tempId mismatch".into())
        );
        assert_eq!(
            check_ack(r#"[{"success":false,"error":{"code":"RATE_LIMITED","message":"m"}}]"#, "t-1"),
            Err("ack: RATE_LIMITED".into())
        );
        assert_eq!(check_ack("nonsense", "t"), Err("ack: unreadable".into()));
    }

    #[test]
    fn messages_are_valid_json() {
        let v: serde_json::Value = serde_json::from_str(&message_json("c", "t", &content(3))).expect("json");
        assert_eq!(v["encryptedContent"], "xxx");
        assert_eq!(v["tempId"], "t");
    }
}
