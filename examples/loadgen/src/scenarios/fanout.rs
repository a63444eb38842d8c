//! `fanout`: a group whose members are all connected (one connection per member); a few of
//! them send `message:new` to the group and every other member's connection must receive it
//! exactly once. Reports deliveries per second and the latency from send to each delivery.
//!
//! Senders keep a bounded number of messages in flight (sent, and not yet both acked and
//! received by every member): enough to keep the server busy, few enough that no
//! connection's send buffer on the server (socketioxide's default is 128 packets) can fill
//! and turn the run into a test of slow-consumer handling. Acks count too: a sender that ran
//! ahead of its acks would overflow its own buffer, and a bare socketioxide server then
//! drops them (seen in a first version of this scenario). A message in flight for longer than [`STALE`] stops holding its
//! slot, so one lost delivery cannot stall the run; it is still counted at the end.

use std::{
    borrow::Cow,
    cell::RefCell,
    collections::HashMap,
    rc::Rc,
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::{check_ack, content, message_json, Tally, Timeline};
use crate::{
    ctx::{join_room, Ctx},
    sio::{self, Conn, Packet},
    stats::{per_second, Errors, Latencies},
};

/// A message in flight this long stops holding a window slot.
const STALE: Duration = Duration::from_secs(2);

pub struct FanOpts {
    pub members: usize,
    pub senders: usize,
    pub window: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain: Duration,
    pub payload: usize,
}

/// One message on its way to every receiver.
struct Flight {
    sent: Instant,
    remaining: u32,
    /// Which receivers (by index) have it: a bit each.
    seen: Vec<u64>,
    /// Still holds a window slot.
    holds_slot: bool,
    acked: bool,
}

#[derive(Default)]
struct Fan {
    /// By `(sender << 32) | n`, until the message is acked and every receiver has it.
    flights: HashMap<u64, Flight>,
    /// Messages sent per sender so far (the last `n`).
    sent_by: Vec<u32>,
    /// Sent and not yet acked: ack id (= n) by sender, and when.
    acks_pending: HashMap<u64, Instant>,
    slots_taken: usize,
    receivers: u32,
    deliveries: u64,
    deliveries_measured: u64,
    duplicated: u64,
    ack_latency: Latencies,
    delivery_latency: Latencies,
    tally: Tally,
}

#[derive(Deserialize)]
struct Delivered<'a> {
    #[serde(rename = "tempId", borrow)]
    temp_id: Option<Cow<'a, str>>,
}

pub async fn run(ctx: Rc<Ctx>, opts: FanOpts) -> anyhow::Result<Value> {
    let users: Vec<String> = (0..opts.members).map(|i| format!("fan-{}-{i}", ctx.run)).collect();
    eprintln!("setup: a group of {}", users.len());
    let group = ctx.group(&users).await?;
    let mut connect_errors = Errors::default();
    eprintln!("connecting {}", users.len());
    let mut conns: Vec<Conn> = ctx.connect_all(&users, 200, &mut connect_errors).await.into_iter().flatten().collect();
    if conns.len() < 2 {
        anyhow::bail!("fewer than two members connected: {}", connect_errors.to_json());
    }
    let joins = futures_util::future::join_all(conns.iter_mut().map(|c| join_room(ctx.target, c, &group))).await;
    for result in joins {
        if let Err(e) = result {
            anyhow::bail!("joining the room: {e}");
        }
    }
    // Connections and hub registrations settle (Switchboard pushes a `connected` greeting and
    // an empty backlog first); deliveries to members still syncing would wait for that.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let members = conns.len();
    let senders = opts.senders.clamp(1, members - 1);
    let fan =
        Rc::new(RefCell::new(Fan { sent_by: vec![0; senders], receivers: (members - 1) as u32, ..Default::default() }));
    let slot_freed = Rc::new(Notify::new());
    let line = Timeline::new(opts.warmup, opts.duration, opts.drain);
    let cpu = line.watch_cpu(ctx.server_pid);
    let content = Rc::new(content(opts.payload));
    let mut tasks = Vec::new();
    for (r, conn) in conns.into_iter().enumerate() {
        let task = Member {
            conn,
            index: r,
            sender: (r < senders).then_some(r as u32),
            fan: fan.clone(),
            slot_freed: slot_freed.clone(),
            run: ctx.run.clone(),
            group: group.clone(),
            content: content.clone(),
            window: opts.window.max(1),
            line,
            words: (members as u32).div_ceil(64) as usize,
        };
        tasks.push(tokio::task::spawn_local(task.run()));
    }
    eprintln!("running: {members} members, {senders} sender(s), window {}", opts.window);

    // Supervise: free the slots of stale messages; after the window, wait until everything
    // has arrived or the drain is over.
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        let mut f = fan.borrow_mut();
        let mut freed = 0;
        for flight in f.flights.values_mut() {
            if flight.holds_slot && now - flight.sent > STALE {
                flight.holds_slot = false;
                freed += 1;
            }
        }
        f.slots_taken -= freed;
        if freed > 0 {
            slot_freed.notify_waiters();
        }
        if now >= line.deadline || (now >= line.end && f.flights.is_empty() && f.acks_pending.is_empty()) {
            break;
        }
    }
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }

    let mut f = fan.take();
    let lost_deliveries: u64 = f.flights.values().map(|fl| fl.remaining as u64).sum();
    let lost_acks = f.acks_pending.len() as u64;
    for (kind, n) in connect_errors.into_inner() {
        f.tally.errors.add_n(kind, n);
    }
    let cpu = cpu.await.unwrap_or(Value::Null);
    let window = line.window();
    let sent: u64 = f.sent_by.iter().map(|&n| n as u64).sum();
    Ok(json!({
        "scenario": "fanout",
        "members": members,
        "cpu": cpu,
        "members_requested": opts.members,
        "senders": senders,
        "window": opts.window,
        "duration_s": window.as_secs_f64(),
        "payload_bytes": opts.payload,
        "sent": sent,
        "messages_per_s": per_second(f.tally.sent_measured, window),
        "deliveries": f.deliveries,
        "expected_deliveries": sent * f.receivers as u64,
        "deliveries_per_s": per_second(f.deliveries_measured, window),
        "delivery_latency_ms": f.delivery_latency.summary(),
        "ack_latency_ms": f.ack_latency.summary(),
        "acked": f.tally.acked,
        "failed": f.tally.failed,
        "lost": lost_deliveries + lost_acks,
        "lost_deliveries": lost_deliveries,
        "lost_acks": lost_acks,
        "duplicated": f.duplicated + f.tally.duplicated,
        "errors": f.tally.errors.to_json(),
        "other_events": f.tally.events,
    }))
}

/// One member's connection; the first few also send.
struct Member {
    conn: Conn,
    index: usize,
    sender: Option<u32>,
    fan: Rc<RefCell<Fan>>,
    slot_freed: Rc<Notify>,
    run: String,
    group: String,
    content: Rc<String>,
    window: usize,
    line: Timeline,
    words: usize,
}

impl Member {
    async fn run(mut self) {
        tokio::time::sleep_until(self.line.begin.into()).await;
        loop {
            // A sender sends while the window has room (and the measured window lasts).
            if let Some(s) = self.sender {
                if Instant::now() < self.line.end && self.fan.borrow().slots_taken < self.window {
                    if let Err(e) = self.send(s).await {
                        self.fan.borrow_mut().tally.errors.add(format!("send: {}", e.kind()));
                        return;
                    }
                    continue;
                }
            }
            let frame = if self.sender.is_some() && Instant::now() < self.line.end {
                tokio::select! {
                    frame = self.conn.next_text() => frame,
                    _ = self.slot_freed.notified() => continue,
                    _ = tokio::time::sleep_until(self.line.end.into()) => continue,
                }
            } else {
                self.conn.next_text().await
            };
            let text = match frame {
                Ok(Some(text)) => text,
                Ok(None) => return self.fan.borrow_mut().tally.errors.add("closed by server"),
                Err(e) => return self.fan.borrow_mut().tally.errors.add(e.kind()),
            };
            match sio::parse(&text) {
                Packet::Ping => {
                    if let Err(e) = self.conn.send("3".into()).await {
                        return self.fan.borrow_mut().tally.errors.add(e.kind());
                    }
                }
                Packet::Event { body, .. } if body.starts_with("[\"message:new\",") => self.delivered(body),
                Packet::Event { body, .. } => self.fan.borrow_mut().tally.event(body),
                Packet::Ack { id, body } => self.acked(id, body),
                Packet::Disconnect => return self.fan.borrow_mut().tally.errors.add("disconnected by server"),
                _ => {}
            }
        }
    }

    async fn send(&mut self, s: u32) -> Result<(), sio::Error> {
        let n = {
            let mut f = self.fan.borrow_mut();
            f.sent_by[s as usize] += 1;
            f.sent_by[s as usize]
        };
        let temp_id = format!("{}-{s}-{n}", self.run);
        let now = Instant::now();
        {
            let mut f = self.fan.borrow_mut();
            let key = (s as u64) << 32 | n as u64;
            let receivers = f.receivers;
            let flight =
                Flight { sent: now, remaining: receivers, seen: vec![0; self.words], holds_slot: true, acked: false };
            f.flights.insert(key, flight);
            f.acks_pending.insert(key, now);
            f.slots_taken += 1;
            if self.line.measured(now) {
                f.tally.sent_measured += 1;
            }
        }
        self.conn.emit("message:new", &message_json(&self.group, &temp_id, &self.content), Some(n as u64)).await
    }

    fn acked(&mut self, id: u64, body: &str) {
        let Some(s) = self.sender else { return self.fan.borrow_mut().tally.errors.add("ack on a receiver") };
        let now = Instant::now();
        let mut f = self.fan.borrow_mut();
        let key = (s as u64) << 32 | id;
        match f.acks_pending.remove(&key) {
            Some(sent) => {
                match check_ack(body, &format!("{}-{s}-{id}", self.run)) {
                    Ok(()) => {
                        f.tally.acked += 1;
                        if self.line.measured(sent) {
                            f.ack_latency.record(now - sent);
                        }
                    }
                    Err(kind) => {
                        f.tally.failed += 1;
                        f.tally.errors.add(kind);
                    }
                }
                if let Some(flight) = f.flights.get_mut(&key) {
                    flight.acked = true;
                }
                drop(f);
                self.land(key);
            }
            None if id >= 1 && id <= f.sent_by[s as usize] as u64 => f.tally.duplicated += 1,
            None => f.tally.errors.add("ack for an id never sent"),
        }
    }

    fn delivered(&mut self, body: &str) {
        let now = Instant::now();
        let mut f = self.fan.borrow_mut();
        let temp_id = match serde_json::from_str::<(&str, Delivered)>(body) {
            Ok((_, Delivered { temp_id: Some(t) })) => t,
            _ => return f.tally.errors.add("message:new without a readable tempId"),
        };
        // tempId = "<run>-<sender>-<n>"
        let mut parts = temp_id.rsplitn(3, '-');
        let (n, s, run) = (parts.next(), parts.next(), parts.next());
        let key = match (n.and_then(|n| n.parse::<u64>().ok()), s.and_then(|s| s.parse::<u64>().ok()), run) {
            (Some(n), Some(s), Some(run)) if run == self.run => s << 32 | n,
            _ => return f.tally.errors.add("message:new of another run"),
        };
        if self.sender == Some((key >> 32) as u32) {
            // The sending socket is not an audience of its own message.
            return f.tally.errors.add("message:new echoed to its sender");
        }
        let word = self.index / 64;
        let bit = 1u64 << (self.index % 64);
        let Some(flight) = f.flights.get_mut(&key) else {
            // Every member already had it (its flight is over), or it was never sent.
            let (s, n) = ((key >> 32) as usize, key & 0xffff_ffff);
            if f.sent_by.get(s).is_some_and(|&last| n >= 1 && n <= last as u64) {
                f.duplicated += 1;
            } else {
                f.tally.errors.add("message:new never sent");
            }
            return;
        };
        if flight.seen[word] & bit != 0 {
            f.duplicated += 1;
            return;
        }
        flight.seen[word] |= bit;
        flight.remaining = flight.remaining.saturating_sub(1);
        let (sent, complete) = (flight.sent, flight.remaining == 0);
        f.deliveries += 1;
        if self.line.measured(now) {
            f.deliveries_measured += 1;
        }
        if self.line.measured(sent) {
            f.delivery_latency.record(now - sent);
        }
        if complete {
            drop(f);
            self.land(key);
        }
    }

    /// Ends the flight of a message once it is acked and every receiver has it, and frees
    /// its window slot.
    fn land(&self, key: u64) {
        let mut f = self.fan.borrow_mut();
        let done = f.flights.get(&key).is_some_and(|fl| fl.acked && fl.remaining == 0);
        if !done {
            return;
        }
        if f.flights.remove(&key).is_some_and(|fl| fl.holds_slot) {
            f.slots_taken -= 1;
            drop(f);
            self.slot_freed.notify_waiters();
        }
    }
}
