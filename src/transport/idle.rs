//! The idle timeout (`MAX_IDLE_TIME`): one task for every socket of every namespace, which
//! disconnects the sockets that have sent no event for that long.
//!
//! It used to be a task per socket, sleeping until its socket's deadline: exact, but a task
//! cell, a timer entry and a wake-up signal for every idle connection (about 0.4 KiB each).
//! A sweep over the sockets costs nothing per connection; the price is that a socket is
//! disconnected up to one sweep period late.
//!
//! Heartbeats do not count as activity: they prove the transport is alive, not that anyone
//! uses it. The socket gets a Socket.IO DISCONNECT (`socket.disconnect()`), unlike a graceful
//! stop, which only closes the transport. An unchanged client reconnects by itself after a
//! transport close; after "io server disconnect" it stays disconnected until the app calls
//! `socket.connect()` again. Only the latter releases anything: an idle tab that reconnected
//! at once would hold the same resources as before.

use std::{sync::Arc, time::Duration};

use socketioxide::SocketIo;
use tokio::{task::JoinHandle, time::MissedTickBehavior};

use super::socketio::Session;
use super::AppState;

/// How late a socket may be disconnected, as a fraction of `MAX_IDLE_TIME`.
const PERIODS_PER_TIMEOUT: u32 = 16;
/// Sweeps are never further apart than this (the default 30-minute timeout sweeps every 30 s,
/// 19,000 sockets in well under a millisecond)…
const LONGEST_PERIOD: Duration = Duration::from_secs(30);
/// …nor closer together than this, however short the timeout.
const SHORTEST_PERIOD: Duration = Duration::from_millis(10);

/// Starts sweeping the sockets of `namespaces`; `None` when the idle timeout is off.
pub fn spawn(io: SocketIo, namespaces: Vec<&'static str>, app: Arc<AppState>) -> Option<JoinHandle<()>> {
    let max_idle = app.config.max_idle_time;
    if max_idle.is_zero() {
        return None;
    }
    let period = (max_idle / PERIODS_PER_TIMEOUT).clamp(SHORTEST_PERIOD, LONGEST_PERIOD);
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            sweep(&io, &namespaces, max_idle, &app);
        }
    }))
}

/// Disconnects every socket of `namespaces` that has been idle for `max_idle` or longer.
fn sweep(io: &SocketIo, namespaces: &[&str], max_idle: Duration, app: &AppState) {
    for namespace in namespaces {
        let Some(sockets) = io.of(namespace) else { continue };
        for socket in sockets.sockets() {
            // A socket still in its connect middleware has no session yet: not idle.
            let Some(session) = socket.extensions.get::<Session>() else { continue };
            let idle = session.activity.idle_for();
            if idle < max_idle {
                continue;
            }
            // A full send buffer refuses the DISCONNECT packet; the next sweep tries again.
            match socket.disconnect() {
                Ok(()) => {
                    let idle_ms = idle.as_millis() as u64;
                    tracing::info!(user = %session.identity.user_id, idle_ms, "idle socket disconnected");
                    app.metrics.idle_disconnect();
                }
                Err(e) => tracing::debug!(cause = %e, "could not disconnect an idle socket"),
            }
        }
    }
}
