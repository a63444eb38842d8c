//! `reconnect-wave`: what a deploy or an instance crash does. K clients are connected, each
//! in a direct chat with one sender; all disconnect; the sender writes a backlog of a few
//! messages into every chat while they are away; then all K reconnect at once. Measured: the
//! time from the wave's start until every client is connected and has its whole backlog.
//! Every backlog message must arrive exactly once (by tempId); a client that cannot connect
//! retries, as socket.io-client does, until the deadline. Switchboard only: a reference
//! server keeps no backlog.

use std::{
    borrow::Cow,
    cell::RefCell,
    collections::HashSet,
    rc::Rc,
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{check_ack, content, message_json, Tally};
use crate::{
    ctx::{CpuSample, Ctx, Target},
    sio::{self, Conn, Packet},
    stats::{per_second, Errors, Latencies},
};

pub struct WaveOpts {
    pub clients: usize,
    /// Messages owed to each client when the wave starts.
    pub backlog: usize,
    /// Connection attempts in flight during set-up (the wave itself: all at once).
    pub setup_concurrency: usize,
    /// How long the wave may take before what is missing counts as lost.
    pub deadline: Duration,
    /// Messages the sender keeps in flight while writing the backlog.
    pub window: usize,
}

/// Pause between a client's failed connection attempt and its next one (socket.io-client's
/// first reconnection delay is 1 s with jitter; shorter here, so the figure is the server's).
const RETRY_AFTER: Duration = Duration::from_millis(200);
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Longest the sender waits for its next ack before the scenario fails.
const ACK_STALL: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct Delivered<'a> {
    #[serde(rename = "tempId", borrow)]
    temp_id: Option<Cow<'a, str>>,
}

#[derive(Default)]
struct Wave {
    connected: usize,
    complete: usize,
    given_up: usize,
    retries: u64,
    received: u64,
    duplicated: u64,
    connect_latency: Latencies,
    complete_latency: Latencies,
    last_connected: Option<Duration>,
    last_complete: Option<Duration>,
    errors: Errors,
    tally: Tally,
}

pub async fn run(ctx: Rc<Ctx>, opts: WaveOpts) -> anyhow::Result<Value> {
    if ctx.target != Target::Switchboard {
        anyhow::bail!("reconnect-wave needs Switchboard: a reference server keeps no backlog to catch up");
    }
    let users: Vec<String> = (0..opts.clients).map(|i| format!("wave-{}-{i}", ctx.run)).collect();
    let sender = format!("wave-{}-sender", ctx.run);
    eprintln!("setup: {} direct chats", users.len());
    let chats = ctx.direct_chats(&sender, &users).await?;
    // The sender connects now and stays: its own catch-up (every chat of the scenario) is long
    // over when it writes. A connection still catching up is pushed its own messages sent
    // meanwhile; on one socket they and the acks share socketioxide's 128-packet buffer, and
    // an ack that finds it full is dropped.
    let sender_conn = ctx.connect(usize::MAX / 2, &sender).await.map_err(|e| anyhow::anyhow!("sender: {e}"))?;
    let (stop_idling, stopped) = tokio::sync::oneshot::channel::<()>();
    let idling = tokio::task::spawn_local(idle(sender_conn, stopped));

    // 1. Everyone connected once (their devices and cursors exist), then everyone leaves.
    eprintln!("setup: connecting {} clients", users.len());
    let mut setup_errors = Errors::default();
    let conns = ctx.connect_all(&users, opts.setup_concurrency, &mut setup_errors).await;
    let up = conns.iter().filter(|c| c.is_some()).count();
    if up < users.len() {
        anyhow::bail!("only {up} of {} clients connected during set-up: {}", users.len(), setup_errors.to_json());
    }
    eprintln!("setup: all connected; disconnecting");
    futures_util::future::join_all(conns.into_iter().flatten().map(|c| c.disconnect(CLOSE_WAIT))).await;

    // 2. The backlog, written while they are away.
    eprintln!("setup: writing {} messages of backlog", users.len() * opts.backlog);
    let _ = stop_idling.send(());
    let sender_conn = idling.await?.map_err(|e| anyhow::anyhow!("sender, while idle: {e}"))?;
    let sent = write_backlog(&ctx, sender_conn, &chats, &opts).await?;

    // 3. The wave: every client at once.
    eprintln!("wave: {} clients reconnect at once", users.len());
    let state = Rc::new(RefCell::new(Wave::default()));
    let start = Instant::now();
    let deadline = start + opts.deadline;
    let cpu_before = CpuSample::take(ctx.server_pid);
    let (release, released) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let (ctx, state, user, released) = (ctx.clone(), state.clone(), user.clone(), released.clone());
            let backlog = opts.backlog;
            tokio::task::spawn_local(
                async move { client(ctx, i, user, backlog, start, deadline, state, released).await },
            )
        })
        .collect();
    let mut last_report = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let s = state.borrow();
        if s.complete + s.given_up >= users.len() || Instant::now() >= deadline {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  connected {}/{}, complete {}", s.connected, users.len(), s.complete);
            last_report = Instant::now();
        }
    }
    let cpu = cpu_before.until(&CpuSample::take(ctx.server_pid));
    let elapsed = start.elapsed();
    // Whatever arrives after the last backlog would be a duplicate: look a moment longer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = release.send(true);
    for task in tasks {
        let _ = task.await;
    }

    let mut s = state.take();
    let expected = (users.len() * opts.backlog) as u64;
    let all_done = s.complete == users.len();
    Ok(json!({
        "scenario": "reconnect-wave",
        "clients": users.len(),
        "backlog_per_client": opts.backlog,
        "backlog_sent": sent,
        "connected": s.connected,
        "complete": s.complete,
        "all_connected_s": s.last_connected.filter(|_| s.connected == users.len()).map(|d| round3(d.as_secs_f64())),
        "wave_s": if all_done { s.last_complete.map(|d| round3(d.as_secs_f64())) } else { None },
        "measured_s": round3(elapsed.as_secs_f64()),
        "connects_per_s": per_second(s.connected as u64, s.last_connected.unwrap_or(elapsed)),
        "connect_latency_ms": s.connect_latency.summary(),
        "complete_latency_ms": s.complete_latency.summary(),
        "retries": s.retries,
        "cpu": cpu,
        "received": s.received,
        "lost": expected.saturating_sub(s.received),
        "duplicated": s.duplicated,
        "errors": merged_errors(&mut s),
        "other_events": s.tally.events,
    }))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn merged_errors(s: &mut Wave) -> Value {
    let mut all = std::mem::take(&mut s.errors);
    for (kind, n) in std::mem::take(&mut s.tally.errors).into_inner() {
        all.add_n(kind, n);
    }
    all.to_json()
}

/// The sender writes `backlog` messages into every chat, `window` in flight; returns how many
/// were acknowledged. Any failure stops the scenario: a backlog that was not written cannot
/// be caught up.
/// Holds a connection, answering pings, until told to hand it back.
async fn idle(mut conn: Conn, mut stop: tokio::sync::oneshot::Receiver<()>) -> Result<Conn, sio::Error> {
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(conn),
            frame = conn.next_text() => match frame? {
                None => return Err(sio::Error::Closed),
                Some(text) => {
                    if sio::parse(&text) == Packet::Ping {
                        conn.send("3".into()).await?;
                    }
                }
            },
        }
    }
}

async fn write_backlog(ctx: &Ctx, mut conn: Conn, chats: &[String], opts: &WaveOpts) -> anyhow::Result<u64> {
    let body = content(100);
    let total = chats.len() * opts.backlog;
    // Ack id n is message n: chat n / backlog, k = n % backlog, in chat order per k so each
    // chat's messages are written in order.
    let temp_id = |n: usize| format!("{}-w-{}-{}", ctx.run, n / opts.backlog, n % opts.backlog);
    let (mut next, mut acked) = (0usize, 0usize);
    let mut tally = Tally::default();
    let mut last_ack = tokio::time::Instant::now();
    while acked < total {
        while next < total && next - acked < opts.window.max(1) {
            let chat = &chats[next / opts.backlog];
            conn.emit("message:new", &message_json(chat, &temp_id(next), &body), Some(next as u64))
                .await
                .map_err(|e| anyhow::anyhow!("sender: {e}"))?;
            next += 1;
        }
        // Pings arrive meanwhile: the deadline is for the next ack, not the next frame.
        let text = match tokio::time::timeout_at(last_ack + ACK_STALL, conn.next_text()).await {
            Err(_) => anyhow::bail!("sender: no ack for {ACK_STALL:?} ({acked} of {total} acked)"),
            Ok(Err(e)) => anyhow::bail!("sender: {e}"),
            Ok(Ok(None)) => anyhow::bail!("sender: closed by server"),
            Ok(Ok(Some(text))) => text,
        };
        match sio::parse(&text) {
            Packet::Ping => conn.send("3".into()).await.map_err(|e| anyhow::anyhow!("sender: {e}"))?,
            Packet::Ack { id, body } => {
                // Acks come in the order sent (one connection, one writer).
                check_ack(body, &temp_id(id as usize)).map_err(|e| anyhow::anyhow!("sender, message {id}: {e}"))?;
                acked += 1;
                last_ack = tokio::time::Instant::now();
            }
            Packet::Event { body, .. } => tally.event(body),
            _ => {}
        }
    }
    conn.disconnect(CLOSE_WAIT).await;
    Ok(acked as u64)
}

#[allow(clippy::too_many_arguments)]
async fn client(
    ctx: Rc<Ctx>,
    i: usize,
    user: String,
    backlog: usize,
    start: Instant,
    deadline: Instant,
    state: Rc<RefCell<Wave>>,
    mut released: tokio::sync::watch::Receiver<bool>,
) {
    let mut conn: Conn = loop {
        match ctx.connect(i, &user).await {
            Ok(conn) => break conn,
            Err(e) => {
                let give_up = {
                    let mut s = state.borrow_mut();
                    s.errors.add(format!("connect: {}", e.kind()));
                    let give_up = Instant::now() + RETRY_AFTER >= deadline;
                    if give_up {
                        s.given_up += 1;
                    } else {
                        s.retries += 1;
                    }
                    give_up
                };
                if give_up {
                    return;
                }
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    };
    {
        let mut s = state.borrow_mut();
        s.connected += 1;
        let at = start.elapsed();
        s.connect_latency.record(at);
        s.last_connected = Some(s.last_connected.map_or(at, |d| d.max(at)));
    }
    let prefix = format!("{}-w-{i}-", ctx.run);
    let mut seen: HashSet<String> = HashSet::with_capacity(backlog);
    let mut complete = backlog == 0;
    if complete {
        record_complete(&state, start);
    }
    loop {
        let text = tokio::select! {
            frame = conn.next_text() => frame,
            _ = released.wait_for(|r| *r) => break,
        };
        let text = match text {
            Ok(Some(text)) => text,
            Ok(None) => {
                state.borrow_mut().errors.add("closed by server");
                break;
            }
            Err(e) => {
                state.borrow_mut().errors.add(e.kind());
                break;
            }
        };
        match sio::parse(&text) {
            Packet::Ping => {
                if let Err(e) = conn.send("3".into()).await {
                    state.borrow_mut().errors.add(e.kind());
                    break;
                }
            }
            Packet::Event { body, .. } if sio::event_name(body) == Some("message:new") => {
                let temp_id = match serde_json::from_str::<(&str, Delivered)>(body) {
                    Ok((_, Delivered { temp_id: Some(t) })) => t,
                    _ => {
                        state.borrow_mut().errors.add("message:new without a readable tempId");
                        continue;
                    }
                };
                let mut s = state.borrow_mut();
                if !temp_id.starts_with(&prefix) {
                    s.errors.add("message:new for another client");
                } else if !seen.insert(temp_id.into_owned()) {
                    s.duplicated += 1;
                } else {
                    s.received += 1;
                    if !complete && seen.len() >= backlog {
                        complete = true;
                        drop(s);
                        record_complete(&state, start);
                    }
                }
            }
            Packet::Event { body, .. } => state.borrow_mut().tally.event(body),
            Packet::Disconnect => {
                state.borrow_mut().errors.add("disconnected by server");
                break;
            }
            _ => {}
        }
    }
    conn.disconnect(CLOSE_WAIT).await;
}

fn record_complete(state: &Rc<RefCell<Wave>>, start: Instant) {
    let mut s = state.borrow_mut();
    s.complete += 1;
    let at = start.elapsed();
    s.complete_latency.record(at);
    s.last_complete = Some(s.last_complete.map_or(at, |d| d.max(at)));
}
