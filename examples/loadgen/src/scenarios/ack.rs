//! `ack-closed` and `ack-open`: `message:new` with an ack callback, into each connection's own
//! chat, so the figure is the server's request path (validate, store, publish, ack) and not
//! fan-out.
//!
//! * closed loop: every connection sends, waits for the ack, sends again: the throughput the
//!   server sustains with that many clients in flight;
//! * open loop: a fixed total rate spread evenly over the connections, each send due at a
//!   fixed time whatever happened to the previous one; latency is measured from when the
//!   send was *due*, so a stalled server or generator shows in the tail instead of quietly
//!   lowering the rate (coordinated omission). A server that cannot keep the rate builds a
//!   backlog without bound; while `max_outstanding` messages wait for their ack, sends that
//!   fall due are skipped and counted (`skipped`), as a client with a bounded outbox would,
//!   so the server stays saturated at a bounded backlog and `acks_per_s` is what it sustains
//!   under overload. At the end the run drains for as long as acks keep coming (up to the
//!   drain limit), so that late is not reported as lost.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    rc::Rc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use super::{await_ack, check_ack, content, message_json, Tally, Timeline};
use crate::{
    ctx::Ctx,
    sio::{self, Conn, Packet},
    stats::{per_second, Errors},
};

pub struct AckOpts {
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain: Duration,
    pub payload: usize,
    /// Total messages per second for the open loop; `None` for the closed loop.
    pub rate: Option<f64>,
    /// Open loop: unacked messages (all connections) past which sending stops.
    pub max_outstanding: usize,
}

/// Open loop: during the drain, give up once no ack has come for this long.
const STALL: Duration = Duration::from_secs(5);

/// What the open-loop connections share.
struct Open {
    outstanding: Cell<usize>,
    max_outstanding: usize,
    skipped: Cell<u64>,
    last_ack: Cell<Instant>,
}

impl Open {
    /// Whether a send that is due may go out, or must be skipped (counted).
    fn may_send(&self) -> bool {
        if self.outstanding.get() < self.max_outstanding {
            return true;
        }
        if self.skipped.get() == 0 {
            eprintln!("{} messages unacked: the server is not keeping the rate; skipping sends", self.max_outstanding);
        }
        self.skipped.set(self.skipped.get() + 1);
        false
    }

    fn sent(&self) {
        self.outstanding.set(self.outstanding.get() + 1);
    }

    fn answered(&self) {
        self.outstanding.set(self.outstanding.get().saturating_sub(1));
        self.last_ack.set(Instant::now());
    }

    /// When a connection waiting for its last acks should stop waiting.
    fn give_up_at(&self, line: &Timeline) -> Instant {
        line.deadline.min(self.last_ack.get().max(line.end) + STALL)
    }
}

pub async fn run(ctx: Rc<Ctx>, opts: AckOpts) -> anyhow::Result<Value> {
    let users: Vec<String> = (0..opts.connections).map(|i| format!("ack-{}-{i}", ctx.run)).collect();
    eprintln!("setup: {} chats", users.len());
    let chats = ctx.own_chats(&users).await?;
    let mut connect_errors = Errors::default();
    eprintln!("connecting {}", users.len());
    let conns = ctx.connect_all(&users, 200, &mut connect_errors).await;
    let connected = conns.iter().filter(|c| c.is_some()).count();
    if connected == 0 {
        anyhow::bail!("no connection succeeded: {}", connect_errors.to_json());
    }

    let line = Timeline::new(opts.warmup, opts.duration, opts.drain);
    let open = Rc::new(Open {
        outstanding: Cell::new(0),
        max_outstanding: opts.max_outstanding.max(1),
        skipped: Cell::new(0),
        last_ack: Cell::new(line.begin),
    });
    let cpu = line.watch_cpu(ctx.server_pid);
    let total = Rc::new(RefCell::new(Tally::default()));
    let content = Rc::new(content(opts.payload));
    let mut tasks = Vec::new();
    for (i, (conn, chat)) in conns.into_iter().zip(chats).enumerate() {
        let Some(conn) = conn else { continue };
        let (ctx, total, content, open) = (ctx.clone(), total.clone(), content.clone(), open.clone());
        tasks.push(match opts.rate {
            None => tokio::task::spawn_local(async move {
                let tally = closed_loop(conn, i, &chat, &ctx.run, &content, line).await;
                total.borrow_mut().merge(tally);
            }),
            Some(rate) => {
                // Each connection sends every `interval`; connection i starts i/rate after
                // the first, so the sends of all connections are spread evenly.
                let interval = Duration::from_secs_f64(connected as f64 / rate);
                let offset = Duration::from_secs_f64(tasks.len() as f64 / rate);
                tokio::task::spawn_local(async move {
                    let tally = open_loop(conn, i, &chat, &ctx.run, &content, line, interval, offset, &open).await;
                    total.borrow_mut().merge(tally);
                })
            }
        });
    }
    eprintln!("running: {} connections, warm-up {:?}, measuring {:?}", connected, opts.warmup, opts.duration);
    for task in tasks {
        let _ = task.await;
    }

    let mut t = total.take();
    for (kind, n) in connect_errors.into_inner() {
        t.errors.add_n(kind, n);
    }
    let cpu = cpu.await.unwrap_or(Value::Null);
    let window = line.window();
    let mut out = json!({
        "scenario": if opts.rate.is_some() { "ack-open" } else { "ack-closed" },
        "connections": connected,
        "cpu": cpu,
        "connections_requested": opts.connections,
        "duration_s": window.as_secs_f64(),
        "payload_bytes": opts.payload,
        "sent": t.sent,
        "acked": t.acked,
        "acks_per_s": per_second(t.acked_measured, window),
        "latency_ms": t.latency.summary(),
        "failed": t.failed,
        "lost": t.lost,
        "duplicated": t.duplicated,
        "errors": t.errors.to_json(),
        "other_events": t.events,
    });
    if let Some(rate) = opts.rate {
        out["target_rate"] = json!(rate);
        out["sent_per_s"] = json!(per_second(t.sent_measured, window));
        out["max_outstanding"] = json!(opts.max_outstanding);
        out["skipped"] = json!(open.skipped.get());
    }
    Ok(out)
}

/// Send, wait for the ack, repeat until the window ends; the last message may be answered
/// during the drain.
async fn closed_loop(mut conn: Conn, i: usize, chat: &str, run: &str, content: &str, line: Timeline) -> Tally {
    let mut t = Tally::default();
    tokio::time::sleep_until(line.begin.into()).await;
    let mut id = 0u64;
    while Instant::now() < line.end {
        id += 1;
        let temp_id = format!("{run}-{i}-{id}");
        let sent = Instant::now();
        if let Err(e) = conn.emit("message:new", &message_json(chat, &temp_id, content), Some(id)).await {
            t.errors.add(format!("send: {}", e.kind()));
            break;
        }
        t.sent += 1;
        match await_ack(&mut conn, id, &temp_id, line.deadline, &mut t).await {
            Some(Ok(())) => {
                let now = Instant::now();
                t.acked += 1;
                if line.measured(now) {
                    t.acked_measured += 1;
                }
                if line.measured(sent) {
                    t.latency.record(now - sent);
                }
            }
            Some(Err(kind)) => {
                t.failed += 1;
                t.errors.add(kind);
            }
            None => {
                t.lost += 1;
                break;
            }
        }
    }
    t
}

/// Sends on a fixed schedule whatever the acks do, and matches acks as they come.
#[allow(clippy::too_many_arguments)]
async fn open_loop(
    mut conn: Conn,
    i: usize,
    chat: &str,
    run: &str,
    content: &str,
    line: Timeline,
    interval: Duration,
    offset: Duration,
    open: &Open,
) -> Tally {
    let mut t = Tally::default();
    // (ack id, when it was due), in send order; acks mostly come back in that order.
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut due = line.begin + offset;
    let mut id = 0u64;
    loop {
        let sending = due < line.end;
        if !sending && pending.is_empty() {
            break;
        }
        let wake = if sending { due } else { open.give_up_at(&line) };
        tokio::select! {
            biased;
            frame = conn.next_text() => {
                let text = match frame {
                    Ok(Some(text)) => text,
                    Ok(None) => { t.errors.add("closed by server"); break; }
                    Err(e) => { t.errors.add(e.kind()); break; }
                };
                match sio::parse(&text) {
                    Packet::Ping => {
                        if let Err(e) = conn.send("3".into()).await {
                            t.errors.add(e.kind());
                            break;
                        }
                    }
                    Packet::Ack { id: got, body } => {
                        let now = Instant::now();
                        match pending.iter().position(|(p, _)| *p == got) {
                            Some(pos) => {
                                let (_, was_due) = pending.remove(pos).unwrap_or((got, now));
                                open.answered();
                                match check_ack(body, &format!("{run}-{i}-{got}")) {
                                    Ok(()) => {
                                        t.acked += 1;
                                        if line.measured(now) {
                                            t.acked_measured += 1;
                                        }
                                        if line.measured(was_due) {
                                            t.latency.record(now - was_due);
                                        }
                                    }
                                    Err(kind) => {
                                        t.failed += 1;
                                        t.errors.add(kind);
                                    }
                                }
                            }
                            None if got >= 1 && got <= id => t.duplicated += 1,
                            None => t.errors.add("ack for an id never sent"),
                        }
                    }
                    Packet::Event { body, .. } => t.event(body),
                    Packet::Disconnect => { t.errors.add("disconnected by server"); break; }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                if !sending {
                    if Instant::now() < open.give_up_at(&line) {
                        // Acks are still coming for others: the server is working through
                        // its backlog.
                        continue;
                    }
                    t.errors.add("no ack before the deadline");
                    break;
                }
                if !open.may_send() {
                    due += interval;
                    continue;
                }
                id += 1;
                let temp_id = format!("{run}-{i}-{id}");
                if let Err(e) = conn.emit("message:new", &message_json(chat, &temp_id, content), Some(id)).await {
                    t.errors.add(format!("send: {}", e.kind()));
                    break;
                }
                t.sent += 1;
                if line.measured(due) {
                    t.sent_measured += 1;
                }
                pending.push_back((id, due));
                open.sent();
                due += interval;
            }
        }
    }
    t.lost += pending.len() as u64;
    t
}
