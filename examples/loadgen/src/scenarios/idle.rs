//! `idle`: N authenticated connections held open, and what they cost the server in resident
//! memory (`VmRSS` of `--server-pid` before connecting and once all are connected and have
//! settled). Then every connection sends one probe event and must get its ack exactly once,
//! which shows that all of them are alive, not only counted.

use std::{
    cell::RefCell,
    rc::Rc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use super::{check_success, message_json, Tally};
use crate::{
    ctx::{rss_kib, CpuSample, Ctx, Target},
    sio::{self, Packet},
    stats::{per_second, Latencies},
};

pub struct IdleOpts {
    pub connections: usize,
    pub concurrency: usize,
    /// Pause between the last connection and the second memory reading.
    pub settle: Duration,
    /// How long the connections stay open after the probe.
    pub hold: Duration,
    pub probe_timeout: Duration,
}

#[derive(Default)]
struct Idle {
    connected: usize,
    failed: usize,
    probes_answered: usize,
    tally: Tally,
    connect_latency: Latencies,
}

pub async fn run(ctx: Rc<Ctx>, opts: IdleOpts) -> anyhow::Result<Value> {
    let rss_before = ctx.server_pid.map(rss_kib).transpose()?;
    let state = Rc::new(RefCell::new(Idle::default()));
    let (probe, probe_rx) = watch::channel(false);
    let gate = Rc::new(Semaphore::new(opts.concurrency.max(1)));
    let started = Instant::now();
    let cpu_before = CpuSample::take(ctx.server_pid);
    eprintln!("connecting {} (at most {} at a time)", opts.connections, opts.concurrency);
    // Each connection gets its task as soon as it is up, so that heartbeats are answered
    // while the others are still connecting (a 19,000-connection ramp can outlast a ping).
    let tasks: Vec<_> = (0..opts.connections)
        .map(|i| {
            let (ctx, state, gate, probe_rx) = (ctx.clone(), state.clone(), gate.clone(), probe_rx.clone());
            tokio::task::spawn_local(async move { hold(ctx, i, state, gate, probe_rx).await })
        })
        .collect();

    let mut last_report = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = state.borrow();
        if s.connected + s.failed >= opts.connections {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  connected {}/{}", s.connected, opts.connections);
            last_report = Instant::now();
        }
    }
    let ramp = started.elapsed();
    let cpu = cpu_before.until(&CpuSample::take(ctx.server_pid));
    tokio::time::sleep(opts.settle).await;
    let rss_after = ctx.server_pid.map(rss_kib).transpose()?;
    let connected = state.borrow().connected;
    eprintln!("{connected} connected in {ramp:?}; probing");

    let _ = probe.send(true);
    let probe_deadline = Instant::now() + opts.probe_timeout;
    while Instant::now() < probe_deadline {
        let done = {
            let s = state.borrow();
            s.probes_answered + s.tally.failed as usize >= s.connected
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(opts.hold).await;
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }

    let mut s = state.take();
    // Every connection that was up is owed one probe answer.
    let lost = s.connected.saturating_sub(s.probes_answered + s.tally.failed as usize);
    let per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if s.connected > 0 => {
            json!(((after as f64 - before as f64) / s.connected as f64 * 100.0).round() / 100.0)
        }
        _ => Value::Null,
    };
    Ok(json!({
        "scenario": "idle",
        "connections": s.connected,
        "connections_requested": opts.connections,
        "connect_s": (ramp.as_secs_f64() * 100.0).round() / 100.0,
        "connects_per_s": per_second(s.connected as u64, ramp),
        "connect_latency_ms": s.connect_latency.summary(),
        "cpu_during_ramp": cpu,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_per_connection_kib": per_connection,
        "probes": s.connected,
        "probes_answered": s.probes_answered,
        "failed": s.tally.failed,
        "lost": lost,
        "duplicated": s.tally.duplicated,
        "errors": s.tally.errors.to_json(),
        "other_events": s.tally.events,
    }))
}

async fn hold(ctx: Rc<Ctx>, i: usize, state: Rc<RefCell<Idle>>, gate: Rc<Semaphore>, mut probe: watch::Receiver<bool>) {
    let user = format!("idle-{}-{i}", ctx.run);
    let permit = gate.acquire().await;
    let t0 = Instant::now();
    let result = ctx.connect(i, &user).await;
    drop(permit);
    let mut conn = match result {
        Ok(conn) => {
            let mut s = state.borrow_mut();
            s.connected += 1;
            s.connect_latency.record(t0.elapsed());
            conn
        }
        Err(e) => {
            let mut s = state.borrow_mut();
            s.failed += 1;
            s.tally.errors.add(format!("connect: {}", e.kind()));
            return;
        }
    };
    let mut probed = false;
    let mut answered = false;
    loop {
        tokio::select! {
            frame = conn.next_text() => {
                let text = match frame {
                    Ok(Some(text)) => text,
                    Ok(None) => return state.borrow_mut().tally.errors.add("closed by server"),
                    Err(e) => return state.borrow_mut().tally.errors.add(e.kind()),
                };
                match sio::parse(&text) {
                    Packet::Ping => {
                        if let Err(e) = conn.send("3".into()).await {
                            return state.borrow_mut().tally.errors.add(e.kind());
                        }
                    }
                    Packet::Ack { id: 1, body } if probed => {
                        let mut s = state.borrow_mut();
                        if answered {
                            s.tally.duplicated += 1;
                        } else {
                            answered = true;
                            match check_success(body) {
                                Ok(()) => s.probes_answered += 1,
                                Err(kind) => {
                                    s.tally.failed += 1;
                                    s.tally.errors.add(kind);
                                }
                            }
                        }
                    }
                    Packet::Ack { .. } => state.borrow_mut().tally.errors.add("ack for an id never sent"),
                    Packet::Event { body, .. } => state.borrow_mut().tally.event(body),
                    Packet::Disconnect => return state.borrow_mut().tally.errors.add("disconnected by server"),
                    _ => {}
                }
            }
            changed = probe.changed(), if !probed => {
                if changed.is_err() {
                    continue;
                }
                probed = true;
                // Something every target answers without touching a database: Switchboard
                // leaves a room it is not in; a reference server echoes a message into a
                // room nobody joined.
                let sent = match ctx.target {
                    Target::Switchboard => conn.emit("chat:leave", r#"{"chatId":"probe"}"#, Some(1)).await,
                    Target::Bare => {
                        let body = message_json(&format!("probe-{}", ctx.run), &format!("{}-{i}", ctx.run), "x");
                        conn.emit("message:new", &body, Some(1)).await
                    }
                };
                if let Err(e) = sent {
                    return state.borrow_mut().tally.errors.add(format!("send: {}", e.kind()));
                }
            }
        }
    }
}
