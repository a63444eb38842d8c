//! The stream every accepted connection is read and written through: it scans the bytes
//! for [`Wire`], and keeps a connection the server closed open for its close answer.
//!
//! Once the Engine.IO layer said an upgrade is coming, the outgoing bytes are searched for
//! hyper's `101` head; from there on the frames of both directions are scanned. The client
//! cannot send a frame before it has read the 101, so every byte read after it is WebSocket.
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
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
    time::Instant,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
    time::Sleep,
};

use super::{
    frames::{FrameScanner, UpgradeHead},
    Wire,
};

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
            if !wire.upgrade_expected() {
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

impl Io {
    fn new(tcp: TcpStream) -> Self {
        Self { tcp, scan: Scan::default(), held: Vec::new(), hold_timer: None }
    }

    fn holding(&self, wire: &Wire) -> bool {
        wire.stop().hold_until().is_some_and(|until| Instant::now() < until)
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
        let Some(until) = wire.stop().hold_until() else { return };
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
    pub(super) fn new(tcp: TcpStream, wire: Arc<Wire>) -> Self {
        Self { io: Some(Io::new(tcp)), wire }
    }

    /// What the connection's bytes showed.
    pub(super) fn wire(&self) -> &Arc<Wire> {
        &self.wire
    }

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
        let unanswered =
            io.scan.websocket && !self.wire.client_closed() && (self.wire.close_written() || !io.held.is_empty());
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
    let stop = wire.stop();
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
    if io.scan.websocket && wire.close_written() {
        let deadline = tokio::time::Instant::now() + stop.answer_timeout;
        let mut buf = [0u8; 256];
        while !wire.client_closed() {
            match tokio::time::timeout_at(deadline, io.tcp.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => io.scan.incoming(&buf[..n], &wire),
                _ => break,
            }
        }
    }
    wire.finish();
}
