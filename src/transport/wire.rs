//! The listener that watches every connection's bytes (see the module docs of
//! [`crate::transport`]).
//!
//! A connection stays plain HTTP until a WebSocket upgrade: the Engine.IO request layer
//! ([`crate::transport::session_head`]) tells the connection's [`Wire`] that one is coming, and the
//! outgoing scan waits for hyper's `HTTP/1.1 101` head. From there on the frames of both
//! directions are scanned: the client cannot send a frame before it has read the 101, so
//! every byte read after it is WebSocket. Nothing is scanned on connections that never
//! upgrade, which is all of REST.
//!
//! engineioxide closes a session by cancelling the WebSocket reader at once, letting the
//! writer write what is queued and a close frame, and dropping the stream. Dropped at that
//! point, the socket would be closed with the client's reply (and anything else it sent)
//! unread, which makes the kernel reset the connection, and a proxy that still buffers data
//! for the client may drop it. So a connection whose server close is unanswered is handed to
//! a short task that keeps reading, with the scanner's state intact, until the client's close
//! frame (then the client has read everything before ours), the end of the stream, or
//! `CLOSE_ANSWER_TIMEOUT`.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{ready, Context, Poll},
    time::Instant,
};

use axum::{
    extract::connect_info::Connected,
    serve::{IncomingStream, Listener},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    time::Sleep,
};

use super::{
    frames::{Frame, FrameScanner},
    Transport, ALL, NEVER, WEBSOCKET,
};

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
        (Observed { io: Some(Io::new(tcp)), wire }, addr)
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
        Peer { addr: *stream.remote_addr(), wire: stream.io().wire.clone() }
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
    fn new(transport: Arc<Transport>) -> Self {
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

    fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    fn on_outgoing(&self, frame: Frame) {
        if frame == Frame::Close && !self.close_written.swap(true, Ordering::SeqCst) {
            let frozen = self.transport.stop.hub_is_frozen();
            self.close_after_freeze.store(frozen, Ordering::SeqCst);
            *lock(&self.close_written_at) = Some(Instant::now());
            if frozen {
                self.transport.stop.closes.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn on_incoming(&self, frame: Frame) {
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

/// A connection, as hyper (and, once upgraded, engineioxide) reads and writes it.
pub struct Observed {
    /// Taken when the stream is dropped, by the task that waits for the close answer.
    io: Option<Io>,
    wire: Arc<Wire>,
}

struct Io {
    tcp: TcpStream,
    scan: Scan,
    /// Test hook (`TEST_HOOK_HOLD_WRITES_AT_STOP`): bytes written while writes are held back.
    held: Vec<u8>,
    hold_timer: Option<Pin<Box<Sleep>>>,
}

/// Where the scan of each direction is.
#[derive(Default)]
struct Scan {
    head: UpgradeHead,
    websocket: bool,
    outgoing: FrameScanner,
    incoming: FrameScanner,
}

impl Scan {
    fn outgoing(&mut self, mut bytes: &[u8], wire: &Wire) {
        if !self.websocket {
            if !wire.upgrade_expected.load(Ordering::Relaxed) {
                return;
            }
            match self.head.feed(bytes) {
                Some(end) => {
                    self.websocket = true;
                    bytes = &bytes[end..];
                }
                None => return,
            }
        }
        self.outgoing.feed(bytes, |f| wire.on_outgoing(f));
    }

    fn incoming(&mut self, bytes: &[u8], wire: &Wire) {
        if self.websocket {
            self.incoming.feed(bytes, |f| wire.on_incoming(f));
        }
    }
}

/// Finds the end of hyper's `101 Switching Protocols` head in the outgoing bytes.
#[derive(Default)]
struct UpgradeHead {
    /// How much of `HTTP/1.1 101 ` has matched, then how much of the blank line.
    matched: usize,
    in_head: bool,
}

impl UpgradeHead {
    const START: &'static [u8] = b"HTTP/1.1 101 ";
    const END: &'static [u8] = b"\r\n\r\n";

    /// The offset just past the head's end, if it ends within `bytes`.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            let pattern = if self.in_head { Self::END } else { Self::START };
            if b == pattern[self.matched] {
                self.matched += 1;
            } else {
                // In both patterns, no proper suffix of a matched part followed by a byte
                // that does not match is longer than one byte and a prefix of the pattern.
                self.matched = usize::from(b == pattern[0]);
            }
            if self.matched == pattern.len() {
                self.matched = 0;
                if self.in_head {
                    return Some(i + 1);
                }
                self.in_head = true;
            }
        }
        None
    }
}

impl Io {
    fn new(tcp: TcpStream) -> Self {
        Self { tcp, scan: Scan::default(), held: Vec::new(), hold_timer: None }
    }

    fn holding(&self, wire: &Wire) -> bool {
        wire.transport.stop.hold_until().is_some_and(|until| Instant::now() < until)
    }

    /// Writes what the test hook held back.
    fn poll_release(&mut self, cx: &mut Context<'_>, wire: &Wire) -> Poll<io::Result<()>> {
        let Self { tcp, scan, held, .. } = self;
        while !held.is_empty() {
            let n = ready!(Pin::new(&mut *tcp).poll_write(cx, held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            scan.outgoing(&held[..n], wire);
            held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }

    /// Makes sure held bytes go out when the hold ends, even if nothing else is written.
    fn wake_for_release(&mut self, cx: &mut Context<'_>, wire: &Wire) {
        if self.held.is_empty() {
            return;
        }
        let Some(until) = wire.transport.stop.hold_until() else { return };
        let timer = self.hold_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until.into())));
        if timer.as_mut().poll(cx).is_ready() {
            let _ = self.poll_release(cx, wire);
        }
    }

    fn scan_written(&mut self, bufs: &[io::IoSlice<'_>], mut n: usize, wire: &Wire) {
        for buf in bufs {
            if n == 0 {
                break;
            }
            let k = n.min(buf.len());
            self.scan.outgoing(&buf[..k], wire);
            n -= k;
        }
    }
}

impl Observed {
    fn parts(&mut self) -> io::Result<(&mut Io, &Wire)> {
        match self.io.as_mut() {
            Some(io) => Ok((io, &self.wire)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl AsyncRead for Observed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let (io, wire) = self.get_mut().parts()?;
        io.wake_for_release(cx, wire);
        let before = buf.filled().len();
        ready!(Pin::new(&mut io.tcp).poll_read(cx, buf))?;
        io.scan.incoming(&buf.filled()[before..], wire);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Observed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let (io, wire) = self.get_mut().parts()?;
        if io.holding(wire) {
            io.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(io.poll_release(cx, wire))?;
        let n = ready!(Pin::new(&mut io.tcp).poll_write(cx, buf))?;
        io.scan.outgoing(&buf[..n], wire);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let (io, wire) = self.get_mut().parts()?;
        if io.holding(wire) {
            let mut n = 0;
            for buf in bufs {
                io.held.extend_from_slice(buf);
                n += buf.len();
            }
            return Poll::Ready(Ok(n));
        }
        ready!(io.poll_release(cx, wire))?;
        let n = ready!(Pin::new(&mut io.tcp).poll_write_vectored(cx, bufs))?;
        io.scan_written(bufs, n, wire);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (io, wire) = self.get_mut().parts()?;
        if io.holding(wire) {
            return Poll::Ready(Ok(()));
        }
        ready!(io.poll_release(cx, wire))?;
        Pin::new(&mut io.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (io, wire) = self.get_mut().parts()?;
        if io.holding(wire) {
            return Poll::Ready(Ok(()));
        }
        ready!(io.poll_release(cx, wire))?;
        Pin::new(&mut io.tcp).poll_shutdown(cx)
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        let Some(io) = self.io.take() else { return };
        let unanswered = io.scan.websocket
            && !self.wire.client_closed.load(Ordering::SeqCst)
            && (self.wire.close_written.load(Ordering::SeqCst) || !io.held.is_empty());
        if !unanswered && io.held.is_empty() {
            self.wire.finish();
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(linger(io, self.wire.clone()))),
            Err(_) => self.wire.finish(),
        }
    }
}

/// Owns a connection engineioxide dropped after closing it: writes what the test hook held
/// back, then reads until the client answers the close, ends the stream, or the time is up.
async fn linger(mut io: Io, wire: Arc<Wire>) {
    let stop = &wire.transport.stop;
    if !io.held.is_empty() {
        if let Some(until) = stop.hold_until() {
            tokio::time::sleep_until(until.into()).await;
        }
        let held = std::mem::take(&mut io.held);
        if io.tcp.write_all(&held).await.is_err() {
            wire.finish();
            return;
        }
        io.scan.outgoing(&held, &wire);
    }
    if io.scan.websocket && wire.close_written.load(Ordering::SeqCst) {
        let deadline = tokio::time::Instant::now() + stop.answer_timeout;
        let mut buf = [0u8; 256];
        while !wire.client_closed.load(Ordering::SeqCst) {
            match tokio::time::timeout_at(deadline, io.tcp.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => io.scan.incoming(&buf[..n], &wire),
                _ => break,
            }
        }
    }
    wire.finish();
}

/// A poisoned lock only guards a timestamp; it is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_the_upgrade_head_in_any_pieces() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 101 Switching Protocols\r\n\
            upgrade: websocket\r\nconnection: Upgrade\r\n\r\n\x81\x012";
        let end = head.len() - 3;
        for piece in [1, 2, 5, head.len()] {
            let mut finder = UpgradeHead::default();
            let mut at = 0;
            let mut found = None;
            for chunk in head.chunks(piece) {
                if let Some(i) = finder.feed(chunk) {
                    found = Some(at + i);
                    break;
                }
                at += chunk.len();
            }
            assert_eq!(found, Some(end), "pieces of {piece}");
        }
    }
}
