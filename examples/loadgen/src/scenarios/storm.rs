//! `reconnect-storm`: workers that connect, send one `message:new` the moment the connection
//! is up (as a client that emits in its `connect` handler does), wait for its ack, disconnect,
//! and start over, each time from the next source address. Reports completed connects per
//! second; every message must be acked exactly once, which also checks that nothing sent
//! right after CONNECT is dropped.

use std::{
    cell::RefCell,
    rc::Rc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use super::{await_ack, content, message_json, Tally, Timeline};
use crate::{
    ctx::Ctx,
    stats::{per_second, Latencies},
};

pub struct StormOpts {
    pub workers: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain: Duration,
}

/// How long one cycle may wait for its ack, and for the server to close after a disconnect.
const ACK_WAIT: Duration = Duration::from_secs(10);
const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Storm {
    connects: u64,
    connects_measured: u64,
    connect_latency: Latencies,
    tally: Tally,
}

pub async fn run(ctx: Rc<Ctx>, opts: StormOpts) -> anyhow::Result<Value> {
    let users: Vec<String> = (0..opts.workers).map(|i| format!("storm-{}-{i}", ctx.run)).collect();
    eprintln!("setup: {} chats", users.len());
    let chats = ctx.own_chats(&users).await?;
    let line = Timeline::new(opts.warmup, opts.duration, opts.drain);
    let cpu = line.watch_cpu(ctx.server_pid);
    let total = Rc::new(RefCell::new(Storm::default()));
    let tasks: Vec<_> = users
        .into_iter()
        .zip(chats)
        .enumerate()
        .map(|(w, (user, chat))| {
            let (ctx, total) = (ctx.clone(), total.clone());
            let workers = opts.workers;
            tokio::task::spawn_local(async move { worker(ctx, w, workers, user, chat, line, total).await })
        })
        .collect();
    eprintln!("running: {} workers", opts.workers);
    for task in tasks {
        let _ = task.await;
    }

    let s = total.take();
    let (mut t, mut connect_latency) = (s.tally, s.connect_latency);
    let cpu = cpu.await.unwrap_or(Value::Null);
    let window = line.window();
    Ok(json!({
        "scenario": "reconnect-storm",
        "workers": opts.workers,
        "cpu": cpu,
        "duration_s": window.as_secs_f64(),
        "connects": s.connects,
        "connects_per_s": per_second(s.connects_measured, window),
        "connect_latency_ms": connect_latency.summary(),
        "sent": t.sent,
        "acked": t.acked,
        "ack_latency_ms": t.latency.summary(),
        "failed": t.failed,
        "lost": t.lost,
        "duplicated": t.duplicated,
        "errors": t.errors.to_json(),
        "other_events": t.events,
    }))
}

async fn worker(
    ctx: Rc<Ctx>,
    w: usize,
    workers: usize,
    user: String,
    chat: String,
    line: Timeline,
    total: Rc<RefCell<Storm>>,
) {
    let content = content(100);
    let mut t = Tally::default();
    let mut connect_latency = Latencies::default();
    let (mut connects, mut connects_measured) = (0u64, 0u64);
    tokio::time::sleep_until(line.begin.into()).await;
    let mut cycle = 0usize;
    while Instant::now() < line.end {
        cycle += 1;
        let t0 = Instant::now();
        let mut conn = match ctx.connect(w + cycle * workers, &user).await {
            Ok(conn) => conn,
            Err(e) => {
                t.errors.add(format!("connect: {}", e.kind()));
                // A refused or failing server must not be hammered in a tight loop.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let up = Instant::now();
        connects += 1;
        if line.measured(up) {
            connects_measured += 1;
            connect_latency.record(up - t0);
        }
        let temp_id = format!("{}-{w}-{cycle}", ctx.run);
        let sent = Instant::now();
        if let Err(e) = conn.emit("message:new", &message_json(&chat, &temp_id, &content), Some(1)).await {
            t.errors.add(format!("send: {}", e.kind()));
            continue;
        }
        t.sent += 1;
        match await_ack(&mut conn, 1, &temp_id, (sent + ACK_WAIT).min(line.deadline), &mut t).await {
            Some(Ok(())) => {
                t.acked += 1;
                if line.measured(sent) {
                    t.latency.record(sent.elapsed());
                }
            }
            Some(Err(kind)) => {
                t.failed += 1;
                t.errors.add(kind);
            }
            None => {
                t.lost += 1;
                continue;
            }
        }
        conn.disconnect(CLOSE_WAIT).await;
    }
    let mut s = total.borrow_mut();
    s.connects += connects;
    s.connects_measured += connects_measured;
    s.connect_latency.append(connect_latency);
    s.tally.merge(t);
}
