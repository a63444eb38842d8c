//! The raw WebSocket host, written once for every dialect that speaks frames over a plain
//! WebSocket (`mrezhen` today; `socialink` at `/ws/{user_id}/{device_id}` next). A dialect
//! ([`Dialect`]) only decodes frames and encodes events; this module owns the rest:
//!
//! * **Authentication before the upgrade.** The token comes from `?token=`, `Authorization:
//!   Bearer`, or the subprotocol pair `access_token, <jwt>` (the 101 then selects
//!   `access_token`, since browsers require the selected protocol to be one they offered). A
//!   bad token is an HTTP 401 with the dialect's reason, a path naming another user a 403,
//!   too many attempts from one address a 429: the socket never opens.
//! * **Registration with the hub** before the 101 is sent, so the dialect's first frames (its
//!   presence, the backlog) are queued before the client can send anything; see [`open`].
//! * **A bounded send queue per connection.** The hub's `send` never waits: a full queue is
//!   [`SendFailure::Full`], and the hub switches the connection to catch-up from the store, so
//!   a slow reader is neither closed nor loses anything. Replies to the client's own frames
//!   wait for room instead, which slows only that client's reading.
//! * **Limits and liveness.** Frames over [`MAX_FRAME`] close the connection with 1009. The
//!   server pings every `WS_PING_INTERVAL` and closes a connection that has sent nothing, not
//!   even a pong, since the previous ping; a write that cannot complete within two intervals
//!   means a stalled peer and ends the connection too. An optional idle timeout closes a
//!   connection whose client sent no frame for that long. A connection whose token expires
//!   is closed with 4001 (`token expired`), and frames read after that are not handed on
//!   (see [`super::expiry`]).
//! * **Graceful shutdown.** [`Registry::close_all`] closes every connection with a close frame
//!   (1001) and waits briefly for the answers.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    extract::{
        ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade},
        FromRequestParts, Request,
    },
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use futures_util::{stream::SplitSink, SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::{
    core::{
        connections::ConnectionGuard,
        model::{Actor, Event},
        presence::Identity,
    },
    error::AppError,
    fanout::{ConnId, Connection, EncodeCache, Receipts, SendFailure},
    telemetry::metrics::Refusal,
    transport::AppState,
};

/// Largest frame (and message) a client may send (SPEC §6).
pub const MAX_FRAME: usize = 64 * 1024;

/// Close codes (RFC 6455 §7.4.1).
pub mod close {
    /// The server is going away (shutdown) or gave up on the peer (no pong, stalled writes).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL: u16 = 1002;
    /// A frame larger than [`super::MAX_FRAME`].
    pub const TOO_BIG: u16 = 1009;
    /// The client sent nothing for the dialect's idle timeout.
    pub const IDLE: u16 = 1000;
    /// A live connection whose send queue filled up (a dialect that disconnects slow
    /// consumers).
    pub const SLOW: u16 = 1008;
    /// The server could not send an event just now (a lookup failed): reconnect and be pushed
    /// it again (RFC 6455's 1013, Try Again Later).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The connection's token expired: get a new one and reconnect (an application code,
    /// in the 4000–4999 range RFC 6455 leaves to applications; 4001 as HTTP's 401).
    pub const TOKEN_EXPIRED: u16 = 4001;
}

/// The subprotocol a browser names to carry its token as `access_token, <jwt>`.
pub const TOKEN_PROTOCOL: &str = "access_token";

/// How soon after an event is written a ping asks the client to confirm it (at most one such
/// ping in flight per interval, whatever the number of events).
const RECEIPT_PING_AFTER: Duration = Duration::from_secs(1);

/// How long a closing connection waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A wire dialect over raw WebSocket: translation only.
pub trait Dialect: Send + Sync + 'static {
    /// What the dialect remembers per connection.
    type State: Send + Sync + 'static;

    /// Whether every connection follows, from its start and before its user is announced,
    /// the presence of the people its user may see (`Core::presence_circle`: who shares a
    /// conversation with them) and its own.
    const FOLLOWS_PRESENCE: bool = false;
    /// Closes a connection whose client sent no frame for this long; `None` never does.
    fn idle_timeout(&self, _app: &AppState) -> Option<Duration> {
        None
    }
    /// The body of the 401 that refuses a token.
    fn unauthorized(&self, err: &AppError) -> String {
        err.to_string()
    }
    /// The response that refuses an upgrade before it completes (`status` 401, 403, or the
    /// status of [`Dialect::admit`]'s error).
    fn refusal(&self, status: StatusCode, err: &AppError) -> Response {
        let body = if status == StatusCode::UNAUTHORIZED { self.unauthorized(err) } else { err.to_string() };
        (status, body).into_response()
    }
    /// Checks the connection's identity beyond its token (Socialink: the path's device is
    /// registered and active), before the upgrade; an error refuses it with its status.
    fn admit(&self, _app: &Arc<AppState>, _identity: &Identity) -> impl Future<Output = Result<(), AppError>> + Send {
        std::future::ready(Ok(()))
    }
    /// True when a connection that cannot keep up, once live, is closed rather than caught up
    /// from the store later (Socialink: its queue re-pushes on the next connection).
    fn disconnects_slow_consumers(&self) -> bool {
        false
    }
    /// True when the dialect's clients hear the room events of all their user's chats without
    /// joining rooms (see `fanout::Connection::follows_all_chats`).
    fn follows_all_chats(&self) -> bool {
        false
    }
    fn state(&self, link: &Link) -> Self::State;
    /// One frame from the client (binary frames are read as UTF-8 text).
    fn frame(&self, link: &Link, state: &Self::State, text: &str) -> impl Future<Output = ()> + Send;
    /// An event the hub handed this connection, as a frame; `None` sends nothing (the event
    /// is not for this client). An error means the frame could not be made (a lookup failed):
    /// the connection is closed without confirming that item or anything after it, so the
    /// client reconnects and is pushed it again rather than never.
    fn encode(
        &self,
        link: &Link,
        state: &Self::State,
        item: &Delivery,
    ) -> impl Future<Output = Result<Option<String>, AppError>> + Send;
    /// The first catch-up of the connection is done (its backlog is queued): a frame to send
    /// next, if any.
    fn caught_up(&self, link: &Link, state: &Self::State) -> impl Future<Output = Option<String>> + Send;
    /// After [`Dialect::caught_up`]: the dialect's own backlog, one page at a time, written
    /// before anything queued meanwhile; an empty page ends it. Events queued while it is
    /// written wait (the connection is not treated as slow until it is done).
    fn backlog(&self, _link: &Link, _state: &Self::State) -> impl Future<Output = Vec<String>> + Send {
        std::future::ready(Vec::new())
    }
}

/// The user (and device) a WebSocket path names, as Socialink's `/ws/{user_id}/{device_id}`.
#[derive(Clone, Copy, Debug)]
pub struct PathIdentity<'a> {
    pub user: &'a str,
    /// The connection's device, whatever the token says.
    pub device: Option<&'a str>,
}

/// One event on its way to the raw connections of one delivery pass.
pub struct Delivery {
    /// Tells deliveries apart: every connection handed this event sees the same number, so a
    /// dialect can compute something for an event once and share it.
    pub serial: u64,
    pub event: Event,
}

/// A connection as its dialect sees it.
pub struct Link {
    pub app: Arc<AppState>,
    pub identity: Arc<Identity>,
    pub conn: ConnId,
    /// When the connection opened: messages stored before it were waiting for it.
    pub opened: DateTime<Utc>,
    out: mpsc::Sender<Out>,
    receipts: Arc<RawReceipts>,
    ctl: mpsc::UnboundedSender<(u16, &'static str)>,
}

impl Link {
    /// Closes the connection with a close frame (`code`, `reason`).
    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.ctl.send((code, reason));
    }

    pub fn user(&self) -> &str {
        &self.identity.user_id
    }

    pub fn actor(&self) -> Actor {
        self.identity.actor(Some(self.conn))
    }

    /// Queues a frame for the client, waiting for room: a client that does not read its
    /// replies stops being read itself.
    pub async fn reply(&self, frame: String) {
        let Ok(permit) = self.out.reserve().await else { return };
        let _order = self.receipts.order.lock().unwrap_or_else(|p| p.into_inner());
        permit.send(Out::Frame(frame));
        self.receipts.queued.fetch_add(1, Ordering::SeqCst);
    }
}

enum Out {
    Event(Arc<Delivery>),
    Frame(String),
}

/// Every open raw connection of this instance, for graceful shutdown.
pub struct Registry {
    stop: watch::Sender<bool>,
    open: AtomicUsize,
    closed: Notify,
}

impl Default for Registry {
    fn default() -> Self {
        Self { stop: watch::channel(false).0, open: AtomicUsize::new(0), closed: Notify::new() }
    }
}

impl Registry {
    /// Closes every connection with a close frame (1001) and waits, at most `grace`, until
    /// they are gone. Connections opened afterwards are closed at once.
    pub async fn close_all(&self, grace: Duration) {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let closed = self.closed.notified();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                tracing::warn!(open = self.open.load(Ordering::SeqCst), "raw WebSocket connections still open");
                return;
            }
        }
    }

    fn left(&self) {
        if self.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.closed.notify_waiters();
        }
    }
}

/// The connection as the hub sees it.
struct RawConnection {
    user: String,
    device: String,
    out: mpsc::Sender<Out>,
    synced: Mutex<Option<oneshot::Sender<()>>>,
    receipts: Arc<RawReceipts>,
    follows_all_chats: bool,
    /// Set when a full queue closes the connection instead ([`Dialect::disconnects_slow_consumers`]),
    /// once the dialect's backlog is written.
    close_when_full: Option<Arc<AtomicBool>>,
    ctl: mpsc::UnboundedSender<(u16, &'static str)>,
}

/// What reached the client of a raw connection (SPEC §5.6: delivered only once confirmed).
/// Queued items are numbered in queue order, and the writer writes them in that order; a
/// WebSocket ping written after item `n` is answered by a pong only once the client read
/// everything before it, so that pong confirms items up to `n`. The client's answer to the
/// server's close frame confirms everything written before the close.
#[derive(Default)]
struct RawReceipts {
    /// Items queued so far, numbered in queue order; taken under `order` with the queueing.
    queued: AtomicU64,
    order: Mutex<()>,
    /// Items confirmed read by the client.
    confirmed: AtomicU64,
    /// For each ping written and not answered yet: the items written before it.
    pings: Mutex<std::collections::VecDeque<u64>>,
    /// The client sent its close frame.
    close_answered: AtomicBool,
    finished: AtomicBool,
}

impl RawReceipts {
    /// Queues an item and numbers it, as one step: numbers follow queue order.
    fn try_queue(&self, out: &mpsc::Sender<Out>, item: Out) -> Result<(), mpsc::error::TrySendError<Out>> {
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        out.try_send(item)?;
        self.queued.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// A ping is written after `written` items; returns its payload, which names them.
    fn pinged(&self, written: u64) -> Vec<u8> {
        self.pings.lock().unwrap_or_else(|p| p.into_inner()).push_back(written);
        written.to_be_bytes().to_vec()
    }

    /// A pong echoes its ping's payload (RFC 6455 §5.5.3): it confirms the items that ping
    /// followed, and every earlier ping is answered with it. A pong that answers no ping of
    /// ours (an unsolicited one, RFC 6455 allows them) confirms nothing.
    fn ponged(&self, payload: &[u8]) {
        let Ok(bytes) = <[u8; 8]>::try_from(payload) else { return };
        let covered = u64::from_be_bytes(bytes);
        let mut pings = self.pings.lock().unwrap_or_else(|p| p.into_inner());
        if !pings.contains(&covered) {
            return;
        }
        while pings.front().is_some_and(|n| *n <= covered) {
            pings.pop_front();
        }
        self.confirmed.fetch_max(covered, Ordering::SeqCst);
    }
}

impl Receipts for RawReceipts {
    fn position(&self) -> u64 {
        self.queued.load(Ordering::SeqCst)
    }

    fn confirmed(&self) -> u64 {
        self.confirmed.load(Ordering::SeqCst)
    }

    fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }
}

/// Numbers deliveries (see [`Delivery::serial`]).
static SERIAL: AtomicU64 = AtomicU64::new(1);

impl Connection for RawConnection {
    fn user_id(&self) -> &str {
        &self.user
    }

    fn device_id(&self) -> &str {
        &self.device
    }

    fn send(&self, event: &Event, cache: &EncodeCache) -> Result<(), SendFailure> {
        // One copy of the event per delivery pass, shared by every raw connection it reaches;
        // each dialect encodes it on the connection's own task.
        let delivery = cache.get_or_encode::<RawConnection, Delivery>(|| {
            Some(Delivery { serial: SERIAL.fetch_add(1, Ordering::Relaxed), event: event.clone() })
        });
        let Some(delivery) = delivery else { return Ok(()) };
        match self.receipts.try_queue(&self.out, Out::Event(delivery)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_))
                if self.close_when_full.as_ref().is_some_and(|live| live.load(Ordering::SeqCst)) =>
            {
                // Disconnected rather than skipped: its next connection is pushed the rest.
                let _ = self.ctl.send((close::SLOW, "slow consumer"));
                Err(SendFailure::Closed)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(SendFailure::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendFailure::Closed),
        }
    }

    fn receipts(&self) -> Arc<dyn Receipts> {
        self.receipts.clone()
    }

    fn follows_all_chats(&self) -> bool {
        self.follows_all_chats
    }

    fn caught_up(&self) {
        if let Some(synced) = self.synced.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = synced.send(());
        }
    }
}

/// Serves a WebSocket upgrade request for dialect `D`. `path` is the user (and device) a path
/// names (Socialink's `/ws/{user_id}/{device_id}`): a token of anyone else gets a 403, and the
/// connection is the path's device.
pub async fn accept<D: Dialect>(
    app: Arc<AppState>,
    dialect: Arc<D>,
    req: Request,
    path: Option<PathIdentity<'_>>,
) -> Response {
    let (mut parts, _body) = req.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        // Not a WebSocket upgrade (a plain GET of `/ws`): said in the envelope.
        Err(rejection) => {
            let message = format!("this endpoint takes WebSocket upgrades only: {}", rejection.body_text());
            return AppError::BadRequest { status: rejection.status().as_u16(), message }.into_response();
        }
    };
    if let Some(refusal) = refuse_rate(&app, &parts) {
        return refusal;
    }
    let from_protocol = token_from_protocol(&parts.headers);
    let token = crate::auth::token_from_request(&parts.headers, parts.uri.query()).or_else(|| from_protocol.clone());
    let mut identity = match app.verifier.verify(token.as_deref()) {
        Ok(identity) => identity,
        Err(e) => {
            app.metrics.connection_refused(Refusal::Unauthorized);
            return dialect.refusal(StatusCode::UNAUTHORIZED, &e);
        }
    };
    if let Some(path) = path {
        if path.user != identity.user_id {
            app.metrics.connection_refused(Refusal::Unauthorized);
            let e = AppError::Forbidden("the path names another user".into());
            return dialect.refusal(StatusCode::FORBIDDEN, &e);
        }
        if let Some(device) = path.device {
            identity.device_id = Some(device.to_string().into());
        }
    }
    if let Err(e) = dialect.admit(&app, &identity).await {
        e.log_if_internal("raw websocket admission");
        app.metrics.connection_refused(Refusal::Unauthorized);
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return dialect.refusal(status, &e);
    }
    let mut upgrade = upgrade
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .read_buffer_size(app.config.ws_read_buffer_size.max(MIN_READ_BUFFER));
    if from_protocol.is_some() {
        upgrade = upgrade.protocols([TOKEN_PROTOCOL]);
    }

    let (out, queue) = mpsc::channel(app.config.raw_ws.send_queue);
    let (synced, on_synced) = oneshot::channel();
    let receipts = Arc::new(RawReceipts::default());
    let (ctl, control) = mpsc::unbounded_channel::<(u16, &'static str)>();
    let live = dialect.disconnects_slow_consumers().then(|| Arc::new(AtomicBool::new(false)));
    let hub_side = Arc::new(RawConnection {
        user: identity.user_id.clone().into(),
        device: identity.device().to_string(),
        out: out.clone(),
        synced: Mutex::new(Some(synced)),
        receipts: receipts.clone(),
        follows_all_chats: dialect.follows_all_chats(),
        close_when_full: live.clone(),
        ctl: ctl.clone(),
    });
    let identity = Arc::new(identity);
    // Taken before registration: whatever was stored before it was waiting for this connection.
    let opened = Utc::now();
    let registered = match open(&app, &identity, hub_side, D::FOLLOWS_PRESENCE).await {
        Ok(registered) => registered,
        Err(e) => {
            e.log_if_internal("raw websocket connect");
            app.metrics.connection_refused(Refusal::ServerError);
            let body = serde_json::json!({
                "success": false,
                "error": { "code": "INTERNAL_ERROR", "message": "server error, please retry" },
            });
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
        }
    };
    let link = Link { app: app.clone(), identity, conn: registered.id(), opened, out, receipts, ctl };
    upgrade.on_upgrade(move |socket| async move {
        serve(socket, dialect, link, queue, on_synced, control, live).await;
        registered.close().await;
    })
}

/// tungstenite reads at least this much at once, whatever the setting.
const MIN_READ_BUFFER: usize = 512;

/// A 429 when the client address made too many connection attempts (counted before the
/// token is checked, as for Socket.IO).
fn refuse_rate(app: &AppState, parts: &Parts) -> Option<Response> {
    let Some(ip) = crate::transport::client_ip(parts, &app.config.trusted_proxies) else {
        tracing::warn!("no peer address on a WebSocket upgrade; not rate limited");
        return None;
    };
    let wait = app.core.limits.check_connection(ip).err()?;
    app.metrics.connection_refused(Refusal::RateLimited);
    let retry_after_ms = wait.as_millis().max(1) as u64;
    Some(AppError::RateLimited { what: "connection attempts", retry_after_ms }.into_response())
}

/// The token of `Sec-WebSocket-Protocol: access_token, <jwt>`.
fn token_from_protocol(headers: &HeaderMap) -> Option<String> {
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let at = offered.iter().position(|p| p == TOKEN_PROTOCOL)?;
    offered.get(at + 1).cloned()
}

/// A raw connection the core opened ([`ConnectionGuard`]), counted for metrics and the
/// graceful stop until it closes. Dropped without [`Registered::close`] (the upgrade never
/// completed), it closes on its own.
struct Registered {
    app: Arc<AppState>,
    guard: ConnectionGuard,
    armed: bool,
}

/// Opens the connection with the core, following presence from the start when the dialect
/// does (so that it hears its own arrival), and starts its catch-up.
async fn open(
    app: &Arc<AppState>,
    identity: &Identity,
    conn: Arc<RawConnection>,
    follows_presence: bool,
) -> Result<Registered, AppError> {
    let circle = if follows_presence { app.core.presence_circle(&identity.user_id, true).await? } else { Vec::new() };
    let guard = app.core.open_connection(identity, conn, &circle).await?;
    app.raw_ws.open.fetch_add(1, Ordering::SeqCst);
    app.metrics.connection_opened();
    guard.start();
    Ok(Registered { app: app.clone(), guard, armed: true })
}

impl Registered {
    fn id(&self) -> ConnId {
        self.guard.id()
    }

    async fn close(mut self) {
        self.armed = false;
        self.guard.close().await;
        self.left();
    }

    fn left(&self) {
        self.app.metrics.connection_closed();
        self.app.raw_ws.left();
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // The guard closes itself when it drops.
        if self.armed {
            self.left();
        }
    }
}

/// What the writer does next.
enum Step {
    Out(Out),
    Synced,
    Ping,
    /// Events were written since the last ping: ask the client to confirm them.
    ReceiptPing,
    Close(u16, &'static str),
    End,
}

/// Runs one upgraded connection until either side closes it.
async fn serve<D: Dialect>(
    socket: WebSocket,
    dialect: Arc<D>,
    link: Link,
    mut queue: mpsc::Receiver<Out>,
    on_synced: oneshot::Receiver<()>,
    mut control: mpsc::UnboundedReceiver<(u16, &'static str)>,
    live: Option<Arc<AtomicBool>>,
) {
    let app = link.app.clone();
    let state = dialect.state(&link);
    let link = Arc::new(link);
    let state = Arc::new(state);
    let (mut sink, stream) = socket.split();
    let heard = Arc::new(AtomicBool::new(true));
    let ctl = link.ctl.clone();
    let (reader_done, mut reader_finished) = watch::channel(false);
    let reader = tokio::spawn(read(
        stream,
        dialect.clone(),
        link.clone(),
        state.clone(),
        heard.clone(),
        ctl,
        dialect.idle_timeout(&app),
        reader_done,
    ));

    let every = app.config.raw_ws.ping_interval;
    let write_limit = every * 2;
    // A ping soon after events were written, besides the heartbeat's: its pong confirms them,
    // so a client whose connection drops a few seconds later is not pushed them again (with
    // only the heartbeat, everything of a connection shorter than the interval was).
    let receipt_ping = tokio::time::sleep(every);
    tokio::pin!(receipt_ping);
    let mut receipt_ping_armed = false;
    let mut pinged_at: u64 = 0;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = app.raw_ws.stop.subscribe();
    let mut on_synced = Some(on_synced);
    let mut closing = None;
    let token_expires = token_deadline(&link.identity);
    tokio::pin!(token_expires);
    // Queued items taken off the queue so far, in queue order (see `RawReceipts`).
    let mut written: u64 = 0;
    // Set when an item could not be encoded: it and whatever follows stay unconfirmed.
    let mut unsent = false;
    if *stop.borrow_and_update() {
        closing = Some((close::GOING_AWAY, "server shutting down"));
    }
    while closing.is_none() {
        let step = tokio::select! {
            biased;
            _ = stop.changed() => Step::Close(close::GOING_AWAY, "server shutting down"),
            Some((code, reason)) = control.recv() => Step::Close(code, reason),
            _ = &mut token_expires => Step::Close(close::TOKEN_EXPIRED, "token expired"),
            _ = reader_finished.changed() => Step::End,
            _ = ping.tick() => Step::Ping,
            _ = &mut receipt_ping, if receipt_ping_armed => Step::ReceiptPing,
            out = queue.recv() => out.map_or(Step::End, Step::Out),
            synced = synced(&mut on_synced) => if synced { Step::Synced } else { continue },
        };
        let is_event = matches!(step, Step::Out(Out::Event(_)));
        if matches!(step, Step::Out(_)) {
            written += 1;
        }
        let frame = match step {
            Step::Out(Out::Frame(text)) => Some(text),
            Step::Out(Out::Event(delivery)) => match encode_patiently(&*dialect, &link, &state, &delivery).await {
                Ok(frame) => frame,
                Err(e) => {
                    // Counting it as written would let the next pong confirm an event the
                    // client never got, and move its device's delivered cursor past it.
                    e.log_if_internal("raw websocket event");
                    unsent = true;
                    closing = Some((close::TRY_AGAIN_LATER, "temporarily unavailable; reconnect"));
                    continue;
                }
            },
            Step::Synced => {
                let first = dialect.caught_up(&link, &state).await;
                if let Some(text) = first {
                    if !put(&mut sink, WsMessage::Text(text.into()), write_limit).await {
                        break;
                    }
                }
                if !write_backlog(&mut sink, &*dialect, &link, &state, write_limit).await {
                    tracing::debug!(conn = link.conn, "raw websocket backlog write failed or stalled; closing");
                    break;
                }
                if let Some(live) = &live {
                    live.store(true, Ordering::SeqCst);
                }
                None
            }
            Step::Ping => {
                if !heard.swap(false, Ordering::SeqCst) {
                    closing = Some((close::GOING_AWAY, "no pong"));
                    continue;
                }
                pinged_at = written;
                if !write_ping(&mut sink, &link.receipts, written, write_limit).await {
                    break;
                }
                None
            }
            Step::ReceiptPing => {
                receipt_ping_armed = false;
                // Not a liveness check: the heartbeat's tick still judges the pongs.
                if written > pinged_at {
                    pinged_at = written;
                    if !write_ping(&mut sink, &link.receipts, written, write_limit).await {
                        break;
                    }
                }
                None
            }
            Step::Close(code, reason) => {
                closing = Some((code, reason));
                continue;
            }
            Step::End => break,
        };
        if let Some(text) = frame {
            if !put(&mut sink, WsMessage::Text(text.into()), write_limit).await {
                tracing::debug!(conn = link.conn, "raw websocket write failed or stalled; closing");
                break;
            }
            if is_event && !receipt_ping_armed {
                receipt_ping.as_mut().reset(tokio::time::Instant::now() + RECEIPT_PING_AFTER);
                receipt_ping_armed = true;
            }
        }
    }
    if let Some((code, reason)) = closing {
        let frame = CloseFrame { code, reason: reason.into() };
        if put(&mut sink, WsMessage::Close(Some(frame)), CLOSE_WAIT).await {
            // A clean close: the client answers with its own close frame, having read all
            // that was written before ours.
            let answered = tokio::time::timeout(CLOSE_WAIT, reader_finished.wait_for(|done| *done)).await;
            if answered.is_ok() && link.receipts.close_answered.load(Ordering::SeqCst) {
                // Everything written before the close, but an item that could not be sent
                // (the last one taken).
                let sent = if unsent { written - 1 } else { written };
                link.receipts.confirmed.fetch_max(sent, Ordering::SeqCst);
            }
        }
    }
    reader.abort();
    link.receipts.finished.store(true, Ordering::SeqCst);
}

/// Writes a ping after `written` items, its payload naming them (see [`RawReceipts`]); false
/// when the write failed.
async fn write_ping(
    sink: &mut SplitSink<WebSocket, WsMessage>,
    receipts: &RawReceipts,
    written: u64,
    limit: Duration,
) -> bool {
    let payload = receipts.pinged(written);
    put(sink, WsMessage::Ping(payload.into()), limit).await
}

/// How long an event whose frame cannot be made (a read failing, as while the database
/// restarts) is tried again before its connection is closed. Some clients (Mrezhen's) do not
/// reconnect by themselves, so a short outage is waited out rather than ending the connection.
const ENCODE_PATIENCE: Duration = Duration::from_secs(15);

/// [`Dialect::encode`], tried again with a growing pause while it fails, for up to
/// [`ENCODE_PATIENCE`]; later events wait meanwhile, so the order holds.
async fn encode_patiently<D: Dialect>(
    dialect: &D,
    link: &Link,
    state: &D::State,
    item: &Delivery,
) -> Result<Option<String>, AppError> {
    let deadline = tokio::time::Instant::now() + ENCODE_PATIENCE;
    let mut pause = Duration::from_millis(100);
    loop {
        match dialect.encode(link, state, item).await {
            Err(e) if tokio::time::Instant::now() + pause < deadline => {
                e.log_if_internal("raw websocket event (trying again)");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            done => return done,
        }
    }
}

/// Writes the dialect's own backlog, page after page; false when a write failed.
async fn write_backlog<D: Dialect>(
    sink: &mut SplitSink<WebSocket, WsMessage>,
    dialect: &D,
    link: &Link,
    state: &D::State,
    limit: Duration,
) -> bool {
    loop {
        let page = dialect.backlog(link, state).await;
        if page.is_empty() {
            return true;
        }
        for text in page {
            if !put(sink, WsMessage::Text(text.into()), limit).await {
                return false;
            }
        }
    }
}

/// Resolves when the connection's token expires (see [`super::expiry`]); never for an
/// identity that does not expire.
async fn token_deadline(identity: &Identity) {
    match identity.expires_at {
        Some(at) => {
            let left = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves when the first catch-up is done (true), or never again once it was reported.
async fn synced(on_synced: &mut Option<oneshot::Receiver<()>>) -> bool {
    let Some(rx) = on_synced.as_mut() else {
        return std::future::pending().await;
    };
    let done = rx.await.is_ok();
    *on_synced = None;
    done
}

/// Writes one message, giving up after `limit` (a peer that reads nothing).
async fn put(sink: &mut SplitSink<WebSocket, WsMessage>, msg: WsMessage, limit: Duration) -> bool {
    matches!(tokio::time::timeout(limit, sink.send(msg)).await, Ok(Ok(())))
}

/// Reads the client's frames one at a time, in order, and hands them to the dialect.
#[allow(clippy::too_many_arguments)]
async fn read<D: Dialect>(
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    dialect: Arc<D>,
    link: Arc<Link>,
    state: Arc<D::State>,
    heard: Arc<AtomicBool>,
    ctl: mpsc::UnboundedSender<(u16, &'static str)>,
    idle: Option<Duration>,
    done: watch::Sender<bool>,
) {
    loop {
        let next = match idle {
            Some(idle) => match tokio::time::timeout(idle, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let _ = ctl.send((close::IDLE, "idle"));
                    break;
                }
            },
            None => stream.next().await,
        };
        let msg = match next {
            None => break,
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                let code = match e.into_inner().downcast_ref::<tungstenite::Error>() {
                    Some(tungstenite::Error::Capacity(_)) => Some((close::TOO_BIG, "frame too large")),
                    Some(tungstenite::Error::Protocol(_)) => Some((close::PROTOCOL, "protocol error")),
                    _ => None,
                };
                if let Some(code) = code {
                    let _ = ctl.send(code);
                }
                break;
            }
        };
        heard.store(true, Ordering::SeqCst);
        // Nothing is taken from a client whose token expired; the writer closes with 4001.
        if matches!(msg, WsMessage::Text(_) | WsMessage::Binary(_)) && link.identity.expired() {
            let _ = ctl.send((close::TOKEN_EXPIRED, "token expired"));
            continue;
        }
        match msg {
            WsMessage::Text(text) => dialect.frame(&link, &state, text.as_str()).await,
            WsMessage::Binary(bytes) => dialect.frame(&link, &state, &String::from_utf8_lossy(&bytes)).await,
            WsMessage::Ping(_) => {}
            WsMessage::Pong(payload) => link.receipts.ponged(&payload),
            WsMessage::Close(_) => {
                link.receipts.close_answered.store(true, Ordering::SeqCst);
                break;
            }
        }
    }
    let _ = done.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pong_confirms_what_its_ping_followed_and_answers_earlier_pings() {
        let receipts = RawReceipts::default();
        let first = receipts.pinged(3);
        let second = receipts.pinged(7);
        receipts.ponged(&second);
        assert_eq!(receipts.confirmed.load(Ordering::SeqCst), 7);
        // The first ping's pong, arriving late, moves nothing back and nothing forward.
        receipts.ponged(&first);
        assert_eq!(receipts.confirmed.load(Ordering::SeqCst), 7);
    }

    #[test]
    fn a_pong_that_answers_no_ping_of_ours_confirms_nothing() {
        let receipts = RawReceipts::default();
        receipts.pinged(5);
        receipts.ponged(b"");
        receipts.ponged(b"hello");
        receipts.ponged(&9u64.to_be_bytes());
        assert_eq!(receipts.confirmed.load(Ordering::SeqCst), 0);
        receipts.ponged(&5u64.to_be_bytes());
        assert_eq!(receipts.confirmed.load(Ordering::SeqCst), 5);
    }
}
