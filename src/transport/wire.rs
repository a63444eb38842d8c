//! The listener that watches every connection, and what one connection's bytes showed (see
//! the module docs of [`crate::transport`]).
//!
//! A connection stays plain HTTP until a WebSocket upgrade: the Engine.IO request layer
//! ([`crate::transport::session_head`]) tells the connection's [`Wire`] that one is coming, and the
//! stream ([`super::stream`]) then scans the frames of both directions. Nothing is scanned on
//! connections that never upgrade, which is all of REST.

use std::{
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use axum::{
    extract::connect_info::Connected,
    serve::{IncomingStream, Listener},
};
use tokio::net::TcpListener;

use super::{frames::Frame, stream::Observed, StopState, Transport, ALL, NEVER, WEBSOCKET};

/// Accepts TCP connections with `TCP_NODELAY` (Nagle's algorithm would hold a second small
/// packet to a client for up to 40 ms: an ack right after a delivery, say) and wraps each in
/// an [`Observed`] stream.
pub struct WireListener {
    inner: TcpListener,
    transport: Arc<Transport>,
}

impl WireListener {
    pub fn new(inner: TcpListener, transport: Arc<Transport>) -> Self {
        Self { inner, transport }
    }
}

impl Listener for WireListener {
    type Io = Observed;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Observed, SocketAddr) {
        // axum's own accept loop, with its handling of accept errors.
        let (tcp, addr) = Listener::accept(&mut self.inner).await;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(cause = %e, "could not set TCP_NODELAY");
        }
        let wire = Arc::new(Wire::new(self.transport.clone()));
        (Observed::new(tcp, wire), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The connect info of every request: the peer's address, and what its connection's bytes
/// showed.
#[derive(Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub wire: Arc<Wire>,
}

impl Connected<IncomingStream<'_, WireListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, WireListener>) -> Self {
        Peer { addr: *stream.remote_addr(), wire: stream.io().wire().clone() }
    }
}

impl Peer {
    /// A peer whose connection is not watched (unit tests of request handling).
    pub fn unwatched(addr: SocketAddr, transport: Arc<Transport>) -> Self {
        Peer { addr, wire: Arc::new(Wire::new(transport)) }
    }
}

/// What one connection's bytes showed, shared between the stream and the receipts of the
/// Engine.IO session it carries.
pub struct Wire {
    transport: Arc<Transport>,
    /// A WebSocket upgrade was requested on this connection: look for the 101.
    upgrade_expected: AtomicBool,
    /// Engine.IO pongs (text frame `3`) read from the client.
    pongs: AtomicU64,
    /// Our close frame is written: nothing follows it.
    close_written: AtomicBool,
    /// ... and was written after the hub handed out its last event (graceful stop).
    close_after_freeze: AtomicBool,
    close_written_at: Mutex<Option<Instant>>,
    /// The client sent a close frame (an answer or its own close).
    client_closed: AtomicBool,
    /// The client answered our close frame of a graceful stop: it read everything before it.
    answered: AtomicBool,
    /// No more receipts will come: the connection is gone.
    finished: AtomicBool,
}

impl Wire {
    pub(super) fn new(transport: Arc<Transport>) -> Self {
        Self {
            transport,
            upgrade_expected: AtomicBool::new(false),
            pongs: AtomicU64::new(0),
            close_written: AtomicBool::new(false),
            close_after_freeze: AtomicBool::new(false),
            close_written_at: Mutex::new(None),
            client_closed: AtomicBool::new(false),
            answered: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        }
    }

    /// A WebSocket upgrade of an Engine.IO session was requested on this connection.
    pub fn expect_upgrade(&self) {
        self.upgrade_expected.store(true, Ordering::SeqCst);
    }

    /// The receipt that confirms everything queued on this WebSocket so far.
    ///
    /// engineioxide queues pings and messages in one channel and writes them in order, and
    /// its heartbeat queues the next ping only once the previous one was answered. So when
    /// `p` pongs have been read, at most `p + 1` pings were queued, and ping `p + 2` is
    /// queued after anything queued now: the client's pong number `p + 2` means it read past
    /// it. (The count is taken as the bytes are read, before engineioxide sees them.)
    /// Nothing queued after our close frame is written will be written.
    pub fn position(&self) -> u64 {
        if self.close_written.load(Ordering::SeqCst) {
            return NEVER;
        }
        WEBSOCKET | (self.pongs.load(Ordering::SeqCst) + 2)
    }

    /// What the client confirmed on this WebSocket, once it confirmed more than a session
    /// that upgraded from long-polling had confirmed there: pong 2 answers a ping queued
    /// after the upgrade request, so it also covers everything queued before.
    pub fn confirmed(&self) -> Option<u64> {
        if self.answered.load(Ordering::SeqCst) {
            return Some(ALL);
        }
        let pongs = self.pongs.load(Ordering::SeqCst);
        (pongs >= 2).then_some(WEBSOCKET | pongs)
    }

    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    pub(super) fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    pub(super) fn upgrade_expected(&self) -> bool {
        self.upgrade_expected.load(Ordering::Relaxed)
    }

    pub(super) fn close_written(&self) -> bool {
        self.close_written.load(Ordering::SeqCst)
    }

    pub(super) fn client_closed(&self) -> bool {
        self.client_closed.load(Ordering::SeqCst)
    }

    pub(super) fn stop(&self) -> &StopState {
        &self.transport.stop
    }

    pub(super) fn on_outgoing(&self, frame: Frame) {
        if frame == Frame::Close && !self.close_written.swap(true, Ordering::SeqCst) {
            let frozen = self.transport.stop.hub_is_frozen();
            self.close_after_freeze.store(frozen, Ordering::SeqCst);
            *lock(&self.close_written_at) = Some(Instant::now());
            if frozen {
                self.transport.stop.closes.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn on_incoming(&self, frame: Frame) {
        match frame {
            Frame::Tiny(b'3') => {
                self.pongs.fetch_add(1, Ordering::SeqCst);
            }
            Frame::Close => {
                self.client_closed.store(true, Ordering::SeqCst);
                // A close frame read before ours was written is the client's own close, and
                // proves nothing about what we sent.
                if self.close_written.load(Ordering::SeqCst) && self.close_after_freeze.load(Ordering::SeqCst) {
                    self.answered.store(true, Ordering::SeqCst);
                    let closes = &self.transport.stop.closes;
                    closes.answered.fetch_add(1, Ordering::Relaxed);
                    if let Some(at) = *lock(&self.close_written_at) {
                        let micros = at.elapsed().as_micros() as u64;
                        closes.answer_micros_total.fetch_add(micros, Ordering::Relaxed);
                        closes.answer_micros_max.fetch_max(micros, Ordering::Relaxed);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A poisoned lock only guards a timestamp; it is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
