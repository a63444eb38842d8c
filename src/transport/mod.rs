//! How connections are carried, written once for every dialect: Socket.IO namespaces
//! (`socketio`, with the request head a session keeps, the idle sweep and the sweep that ends
//! connections whose token expired, `expiry`), the raw WebSocket
//! host (`raw_ws`) every raw-WebSocket dialect shares, what every REST route shares (`rest`),
//! and what reached a client: delivery receipts observed on the wire.
//!
//! A message counts as delivered only when the server knows it reached the client (SPEC §5,
//! guarantee 6). engineioxide tells its user neither when a packet was written nor when the
//! client answered: pongs go to its own heartbeat, and a session it closes is dropped without
//! reading the client's close reply. So Switchboard watches the bytes itself:
//!
//! * [`wire`]: the listener wraps every accepted TCP connection. Once a connection became a
//!   WebSocket, it scans the frames both ways: Engine.IO pongs read, the server's close frame
//!   written, the client's answer to it. A connection the server closed is kept open for a
//!   moment after engineioxide drops it, to read that answer.
//! * [`sessions`]: an Engine.IO session's receipts, on whichever transport it is: poll
//!   requests over long-polling, the WebSocket's pongs and close answer once it upgraded.
//! * [`stream`]: the stream each connection is read and written through, which scans it.
//! * [`frames`]: the incremental scanners of the bytes.
//!
//! The core sees none of this: a hub connection carries a [`crate::fanout::Receipts`], which
//! only hands out and compares positions.

pub mod address;
pub mod expiry;
pub mod frames;
pub mod idle;
pub mod raw_ws;
pub mod rest;
pub mod session_head;
pub mod sessions;
pub mod socketio;
pub mod state;
pub mod stream;
pub mod wire;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use crate::config::Config;

pub use address::client_ip;
pub use sessions::{SessionReceipts, Sessions};
pub use state::{AppState, InFlight, InFlightGuard};

/// Receipt positions (see [`crate::fanout::Receipts`]): long-polling responses count below
/// this bit, WebSocket pongs above it, so that a session that upgrades only moves forward.
pub(crate) const WEBSOCKET: u64 = 1 << 48;
/// What an answered close confirms: everything written before it.
pub(crate) const ALL: u64 = u64::MAX - 1;
/// The position of what is queued after the close frame went out: it is never written.
pub(crate) const NEVER: u64 = u64::MAX;
pub use wire::{Peer, Wire, WireListener};

/// State shared by every connection of this server: the course of a graceful stop, and what
/// it measured.
pub struct Transport {
    pub sessions: Arc<Sessions>,
    stop: StopState,
}

pub(crate) struct StopState {
    /// When the graceful stop began (SIGTERM), if it did.
    began: OnceLock<Instant>,
    /// The hub handed out its last event: a close frame written from now on follows
    /// everything any connection was handed, so the client's answer confirms all of it.
    hub_frozen: AtomicBool,
    /// How long a connection the server closed waits for the client's answer.
    pub(crate) answer_timeout: Duration,
    /// Test hook: how long writes are held back once the stop began (zero: never).
    pub(crate) hold_writes: Duration,
    pub(crate) closes: CloseStats,
}

/// Close handshakes of the server's WebSocket closes, for the log line at the end of a stop.
#[derive(Default)]
pub(crate) struct CloseStats {
    pub(crate) sent: AtomicU64,
    pub(crate) answered: AtomicU64,
    pub(crate) answer_micros_total: AtomicU64,
    pub(crate) answer_micros_max: AtomicU64,
}

impl Transport {
    pub fn new(config: &Config) -> Arc<Self> {
        Arc::new(Self {
            sessions: Arc::new(Sessions::new(config.max_buffer_size as u64)),
            stop: StopState {
                began: OnceLock::new(),
                hub_frozen: AtomicBool::new(false),
                answer_timeout: config.close_answer_timeout,
                hold_writes: config.test_hook_hold_writes_at_stop,
                closes: CloseStats::default(),
            },
        })
    }

    /// The graceful stop began: new Engine.IO sessions are refused from now on (the client
    /// retries, and finds another instance once this one stopped listening).
    pub fn stop_began(&self) {
        let _ = self.stop.began.set(Instant::now());
    }

    pub fn stopping(&self) -> bool {
        self.stop.began.get().is_some()
    }

    /// The hub handed out its last event; the transports are about to be closed.
    pub fn hub_frozen(&self) {
        self.stop.hub_frozen.store(true, Ordering::SeqCst);
    }

    /// One line about the close handshakes of this stop.
    pub fn log_close_handshakes(&self) {
        let c = &self.stop.closes;
        let (sent, answered) = (c.sent.load(Ordering::Relaxed), c.answered.load(Ordering::Relaxed));
        let total = c.answer_micros_total.load(Ordering::Relaxed);
        tracing::info!(
            closes_sent = sent,
            closes_answered = answered,
            answer_ms_mean = if answered > 0 { total as f64 / answered as f64 / 1000.0 } else { 0.0 },
            answer_ms_max = c.answer_micros_max.load(Ordering::Relaxed) as f64 / 1000.0,
            "close handshakes"
        );
    }
}

impl StopState {
    /// Until when writes are held back (test hook), if they are.
    pub(crate) fn hold_until(&self) -> Option<Instant> {
        if self.hold_writes.is_zero() {
            return None;
        }
        self.began.get().map(|began| *began + self.hold_writes)
    }

    pub(crate) fn hub_is_frozen(&self) -> bool {
        self.hub_frozen.load(Ordering::SeqCst)
    }
}
