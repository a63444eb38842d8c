//! What every Socket.IO profile shares: authentication at connect, registration with the
//! fan-out hub, the ack/error envelope of SPEC §6, payload decoding, metrics and ordering.
//!
//! Timing matters here. socketioxide sends the CONNECT packet *before* it spawns the connect
//! handler, so a handler registered inside it can miss an event the client emits the moment
//! `connect` fires. Everything a client can reach is therefore set up in the connect
//! *middleware*, which runs before CONNECT: token check, event handlers, the session, and the
//! hub registration (in syncing mode, so live messages wait for the backlog). The connect
//! handler only emits the greeting and starts the catch-up.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, value::RawValue, Value};
use socketioxide::{
    adapter::LocalAdapter,
    extract::{AckSender, Extension, SocketRef, State, TryData},
    handler::{ConnectHandler, FromMessageParts, Value as PacketValue},
    socket::{DisconnectReason, Socket},
    SendError, SocketError, SocketIo,
};

use crate::{
    core::{connections::ConnectionGuard, model::Actor, model::Event, presence::Identity, SendOrder, SendTicket},
    error::{AppError, AppResult, Field},
    fanout::{ConnId, Connection, EncodeCache, Receipts, SendFailure},
    telemetry::metrics::Refusal,
    transport::AppState,
    transport::{session_head::EngineQuery, Peer, SessionReceipts},
};

/// Who a socket is, set once at connect.
#[derive(Clone)]
pub struct Session {
    /// Who connected. For a dialect that identifies its sockets later
    /// ([`SocketIoProfile::IDENTIFIED_AT_CONNECT`] false), a visitor: nobody yet.
    pub identity: Arc<Identity>,
    /// The hub's id of the connection opened at connect; `0` (no connection) for a visitor.
    pub conn: ConnId,
    /// The core's side of the connection: closing it unregisters and records the departure.
    /// `None` for a visitor, whose connection is [`Session::binding`]'s.
    pub guard: Option<Arc<ConnectionGuard>>,
    /// The core connection a visitor opened once a handler established who it is.
    pub binding: Arc<Binding>,
    pub order: Arc<SendOrder>,
    pub activity: Arc<Activity>,
    /// What reached the client, on whichever transport the Engine.IO session uses.
    pub receipts: Arc<SessionReceipts>,
}

/// When a socket last sent an event, for the idle timeout (see [`super::idle`]).
pub struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` of the last client event.
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self { opened: Instant::now(), last_ms: AtomicU64::new(0) }
    }
}

impl Activity {
    pub fn touch(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    pub fn idle_for(&self) -> Duration {
        self.opened.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl Session {
    pub fn actor(&self) -> Actor {
        self.identity.actor(Some(self.conn))
    }
}

/// The core connection of a socket that was not identified at connect (an anonymous e2e
/// visitor), opened under the identity a handler established afterwards (the session member it
/// joined as), and replaced when it establishes another. Closed with the socket.
#[derive(Default)]
pub struct Binding {
    /// Held across the open and the close, so that one socket's binds do not interleave.
    slot: tokio::sync::Mutex<Option<Bound>>,
}

/// A bound identity and its open connection.
pub struct Bound {
    pub identity: Arc<Identity>,
    pub guard: ConnectionGuard,
}

impl Bound {
    pub fn actor(&self) -> Actor {
        self.identity.actor(Some(self.guard.id()))
    }
}

impl Binding {
    /// Who the socket is bound as, acting through its bound connection.
    pub async fn actor(&self) -> Option<Actor> {
        self.slot.lock().await.as_ref().map(Bound::actor)
    }

    /// Closes the bound connection, if any; returns who it was.
    pub async fn close(&self) -> Option<Actor> {
        let bound = self.slot.lock().await.take()?;
        let actor = bound.actor();
        bound.guard.close().await;
        Some(actor)
    }
}

/// Opens a core connection for `socket` under `identity` (closing one it had before, whose
/// actor is returned) and hands it to `ready` before it starts: what `ready` sends the client
/// (a history) comes before any live event for the connection, and what it marks as handed
/// ([`crate::fanout::Hub::handed`]) is not pushed again. The connection then catches up and
/// goes live.
pub async fn bind<P, F, Fut, T>(
    app: &Arc<AppState>,
    socket: &SocketRef,
    session: &Session,
    identity: Identity,
    ready: F,
) -> AppResult<(T, Option<Actor>)>
where
    P: SocketIoProfile,
    F: FnOnce(Actor) -> Fut,
    Fut: Future<Output = AppResult<T>>,
{
    let mut slot = session.binding.slot.lock().await;
    let previous = match slot.take() {
        Some(bound) => {
            let actor = bound.actor();
            bound.guard.close().await;
            Some(actor)
        }
        None => None,
    };
    let hub_side = Arc::new(SocketConnection::<P> {
        socket: socket.clone(),
        user: identity.user_id.clone().into(),
        device: identity.device().to_string(),
        receipts: session.receipts.clone(),
        _profile: std::marker::PhantomData,
    });
    let guard = app.core.open_connection(&identity, hub_side, &[]).await?;
    let bound = Bound { identity: Arc::new(identity), guard };
    let result = ready(bound.actor()).await;
    match result {
        Ok(value) => {
            bound.guard.start();
            *slot = Some(bound);
            Ok((value, previous))
        }
        Err(e) => {
            bound.guard.close().await;
            Err(e)
        }
    }
}

/// A wire dialect over Socket.IO.
pub trait SocketIoProfile: Send + Sync + 'static {
    /// Whether a socket is someone from the moment it connects: its core connection opens at
    /// connect, under the identity [`SocketIoProfile::authenticate`] returns. A dialect of
    /// anonymous sessions (`e2e`) says no: its sockets are visitors, with no core connection,
    /// until a handler binds one to the identity it established ([`bind`]).
    const IDENTIFIED_AT_CONNECT: bool = true;
    /// Whether the dialect's sockets hear room events (typing) of every chat of their user
    /// without joining rooms, because its clients have no join event.
    const FOLLOWS_ALL_CHATS: bool = false;
    /// Who connects, from the handshake's `auth` payload and the request that opened the
    /// session; an error refuses the connection with its message as the `connect_error`.
    /// By default a JWT (SPEC §4); a dialect of anonymous sessions (`e2e`) decides otherwise.
    fn authenticate(app: &AppState, auth: Option<&Value>, parts: &http::request::Parts) -> AppResult<Identity> {
        jwt_identity(app, auth, parts)
    }
    /// What the dialect calls a request field, in error messages (`chatId`, `conversationId`).
    fn field_name(field: Field) -> &'static str {
        field.neutral_name()
    }
    /// Encodes a core event as `(event name, payload)`, or `None` when the dialect has no
    /// such event.
    fn encode(event: &Event) -> Option<(&'static str, Value)>;
    /// A second event for the same core event, for clients of the dialect that listen for
    /// another name (SUP's `chat:user-typing` beside `message:typing`); sent after the first.
    fn encode_also(_event: &Event) -> Option<(&'static str, Value)> {
        None
    }
    /// Lists the dialect's event handlers (once per namespace; every socket shares them).
    fn handlers(handlers: &mut Handlers);
    /// Runs once the client is connected, before the backlog is pushed.
    fn greet(_socket: &SocketRef, _session: &Session) {}
    /// Runs in the connect middleware, once the session exists and before the client learns
    /// it is connected: set-up the dialect implies without being asked (Spark follows the
    /// presence of its user's contacts). A failure is logged; the connection stays.
    fn prepare(_app: &Arc<AppState>, _session: &Session) -> impl Future<Output = AppResult<()>> + Send {
        async { Ok(()) }
    }
    /// Runs when the socket is gone, before its connections close (e2e tells a session that
    /// its member left). A failure is logged.
    fn disconnected(_app: &Arc<AppState>, _session: &Session) -> impl Future<Output = AppResult<()>> + Send {
        async { Ok(()) }
    }
}

/// The identity of a JWT from the handshake's `auth.token`, the `token` query parameter or
/// `Authorization: Bearer`; the device is the token's `deviceId`, else the handshake's
/// `auth.deviceId` (SPEC §4).
pub fn jwt_identity(app: &AppState, auth: Option<&Value>, parts: &http::request::Parts) -> AppResult<Identity> {
    let from_auth = auth.and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_string));
    let token = from_auth.or_else(|| crate::auth::token_from_request(&parts.headers, parts.uri.query()));
    let mut identity = app.verifier.verify(token.as_deref())?;
    if identity.device_id.is_none() {
        if let Some(device) = auth.and_then(|a| a.get("deviceId")) {
            identity.device_id = Some(crate::auth::device_from_handshake(device)?.into());
        }
    }
    Ok(identity)
}

/// Serves `P` on the namespace `path`.
pub fn mount<P: SocketIoProfile>(io: &SocketIo, path: &'static str) {
    let mut handlers = Handlers { words: P::field_name, ..Handlers::default() };
    P::handlers(&mut handlers);
    let handlers = Arc::new(handlers);
    io.ns(
        path,
        connected::<P>.with(move |s: SocketRef, auth: TryData<Value>, app: State<Arc<AppState>>| {
            admit::<P>(s, auth, app, handlers)
        }),
    );
}

/// Why a connection was refused; socket.io-client shows it as `connect_error`'s `message`.
#[derive(Debug)]
pub struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

async fn admit<P: SocketIoProfile>(
    s: SocketRef,
    TryData(auth): TryData<Value>,
    State(app): State<Arc<AppState>>,
    handlers: Arc<Handlers>,
) -> Result<(), Refused> {
    // Before the token check, so refused tokens count too (and cost no signature check).
    match crate::transport::client_ip(s.req_parts(), &app.config.trusted_proxies) {
        Some(ip) => {
            if let Err(wait) = app.core.limits.check_connection(ip) {
                app.metrics.connection_refused(Refusal::RateLimited);
                return Err(Refused(format!("too many connection attempts, retry in {} ms", wait.as_millis().max(1))));
            }
        }
        None => tracing::warn!("no peer address on a Socket.IO request; not rate limited"),
    }
    let identity = P::authenticate(&app, auth.ok().as_ref(), s.req_parts()).map_err(|e| {
        app.metrics.connection_refused(Refusal::Unauthorized);
        Refused(e.to_string())
    })?;
    let receipts = app.transport.sessions.claim(s.id.as_str(), began_on_websocket(s.req_parts()).as_ref());
    let guard = if P::IDENTIFIED_AT_CONNECT {
        let hub_side = Arc::new(SocketConnection::<P> {
            socket: s.clone(),
            user: identity.user_id.clone().into(),
            device: identity.device().to_string(),
            receipts: receipts.clone(),
            _profile: std::marker::PhantomData,
        });
        let guard = app.core.open_connection(&identity, hub_side, &[]).await.map_err(|e| {
            app.transport.sessions.release(&receipts);
            e.log_if_internal("connect");
            app.metrics.connection_refused(Refusal::ServerError);
            Refused("server error, please retry".into())
        })?;
        Some(Arc::new(guard))
    } else {
        None
    };

    listen(&s, handlers);
    s.on_disconnect(disconnected::<P>);
    let session = Session {
        identity: Arc::new(identity),
        conn: guard.as_ref().map_or(0, |g| g.id()),
        guard,
        binding: Arc::default(),
        order: Arc::default(),
        activity: Arc::default(),
        receipts,
    };
    s.extensions.insert(session.clone());
    if let Err(e) = P::prepare(&app, &session).await {
        e.log_if_internal("connect");
    }
    app.metrics.connection_opened();
    Ok(())
}

async fn connected<P: SocketIoProfile>(s: SocketRef, Extension(session): Extension<Session>) {
    P::greet(&s, &session);
    if let Some(guard) = &session.guard {
        guard.start();
    }
}

async fn disconnected<P: SocketIoProfile>(
    State(app): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    reason: DisconnectReason,
) {
    tracing::debug!(user = %session.identity.user_id, ?reason, "socket disconnected");
    app.metrics.connection_closed();
    if let Err(e) = P::disconnected(&app, &session).await {
        e.log_if_internal("disconnect");
    }
    if let Some(guard) = &session.guard {
        guard.close().await;
    }
    session.binding.close().await;
    app.transport.sessions.release(&session.receipts);
}

/// The WebSocket an Engine.IO session began on, if it did not begin with long-polling: the
/// request that opened it carries the connection's [`Peer`]. (A session that began with
/// long-polling is found by its `sid` instead: its requests come over many connections.)
fn began_on_websocket(opened_by: &http::request::Parts) -> Option<Arc<crate::transport::Wire>> {
    if !EngineQuery::parse(opened_by.uri.query()).websocket {
        return None;
    }
    opened_by.extensions.get::<axum::extract::ConnectInfo<Peer>>().map(|c| c.0.wire.clone())
}

/// A socket as the hub sees it.
struct SocketConnection<P> {
    socket: SocketRef,
    user: String,
    device: String,
    receipts: Arc<SessionReceipts>,
    _profile: std::marker::PhantomData<fn() -> P>,
}

impl<P: SocketIoProfile> Connection for SocketConnection<P> {
    fn user_id(&self) -> &str {
        &self.user
    }

    fn device_id(&self) -> &str {
        &self.device
    }

    fn follows_all_chats(&self) -> bool {
        P::FOLLOWS_ALL_CHATS
    }

    fn receipts(&self) -> Arc<dyn Receipts> {
        self.receipts.clone()
    }

    fn send(&self, event: &Event, cache: &EncodeCache) -> Result<(), SendFailure> {
        // Encoded and serialized once per profile and delivery; each socket copies the bytes.
        let encoded = cache.get_or_encode::<P, (&'static str, Box<RawValue>)>(|| raw(P::encode(event)?));
        let Some(encoded) = encoded else {
            return Ok(());
        };
        self.emit(encoded.0, &encoded.1)?;
        let also = cache.get_or_encode::<Also<P>, (&'static str, Box<RawValue>)>(|| raw(P::encode_also(event)?));
        match also {
            Some(also) => self.emit(also.0, &also.1),
            None => Ok(()),
        }
    }
}

/// Cache key of a profile's second encoding ([`SocketIoProfile::encode_also`]).
struct Also<P>(std::marker::PhantomData<P>);

fn raw((name, payload): (&'static str, Value)) -> Option<(&'static str, Box<RawValue>)> {
    match serde_json::value::to_raw_value(&payload) {
        Ok(raw) => Some((name, raw)),
        Err(e) => {
            tracing::error!(event = name, cause = %e, "could not encode event");
            None
        }
    }
}

impl<P> SocketConnection<P> {
    fn emit(&self, name: &'static str, payload: &RawValue) -> Result<(), SendFailure> {
        match self.socket.emit(name, payload) {
            Ok(()) => Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull)) => Err(SendFailure::Full),
            Err(SendError::Socket(SocketError::Closed)) => Err(SendFailure::Closed),
            Err(e) => {
                // An event that cannot be encoded will not encode on retry either.
                tracing::error!(event = name, cause = %e, "could not encode event");
                Ok(())
            }
        }
    }
}

/// The ack callback, if the client passed one, and what to do without one.
pub struct Reply {
    ack: AckSender,
    wants_ack: bool,
    /// The dialect's words for the fields an error names.
    words: fn(Field) -> &'static str,
}

impl FromMessageParts<LocalAdapter> for Reply {
    type Error = Infallible;
    fn from_message_parts(
        s: &Arc<Socket<LocalAdapter>>,
        v: &mut PacketValue,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(Reply {
            ack: AckSender::from_message_parts(s, v, ack_id)?,
            wants_ack: ack_id.is_some(),
            words: Field::neutral_name,
        })
    }
}

impl Reply {
    /// Answers with the envelope of SPEC §6: through the ack when there is one, else errors
    /// as an `error` event `{code, message, event}` (successes need no event).
    pub fn send<T: Answer>(self, socket: &SocketRef, event: &str, result: AppResult<T>) {
        match result {
            Ok(answer) => {
                if self.wants_ack {
                    let _ = self.ack.send(&answer.into_ack());
                }
            }
            Err(e) => {
                e.log_if_internal(event);
                let body = e.body_in(self.words);
                if self.wants_ack {
                    let _ = self.ack.send(&json!({ "success": false, "error": body }));
                } else {
                    let _ =
                        socket.emit("error", &json!({ "code": body.code, "message": body.message, "event": event }));
                }
            }
        }
    }
}

/// What a successful handler answers, as its ack carries it: serialized once, straight from
/// the handler's data (building a `Value` of the whole ack first deep-copied the data; for a
/// SUP `message:new` that was a third of the message's instructions, see
/// `examples/bench/analysis.md`).
pub trait Answer: Send + 'static {
    fn into_ack(self) -> Box<RawValue>;
    /// The error code of an answer that is a refusal the handler already told the client
    /// about in its dialect's own way (e2e's `session-error`), for the metrics.
    fn refusal(&self) -> Option<&'static str> {
        None
    }
}

/// Any data: `{ success: true, data }`.
impl<T: Serialize + Send + 'static> Answer for T {
    fn into_ack(self) -> Box<RawValue> {
        success_ack(&self, None)
    }
}

/// `{ success: true, data, ...fields }`, serialized. `fields` never replace `success` or `data`.
pub fn success_ack<T: Serialize + ?Sized>(data: &T, fields: Option<&serde_json::Map<String, Value>>) -> Box<RawValue> {
    raw_ack(&Success { data, fields })
}

/// Any ack body, serialized; one that cannot be (a map with keys that are not strings) is
/// logged and answered `null`.
pub fn raw_ack<T: Serialize + ?Sized>(ack: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(ack).unwrap_or_else(|e| {
        tracing::error!(cause = %e, "could not encode an ack");
        Box::<RawValue>::default()
    })
}

struct Success<'a, T: ?Sized> {
    data: &'a T,
    fields: Option<&'a serde_json::Map<String, Value>>,
}

impl<T: Serialize + ?Sized> Serialize for Success<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let extra = self.fields.into_iter().flatten().filter(|(key, _)| *key != "success" && *key != "data");
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("success", &true)?;
        map.serialize_entry("data", self.data)?;
        for (key, value) in extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// `data`, plus top-level fields beside `success` and `data` for a dialect whose existing
/// clients read them there (SUP's running service acked `{ success, chatId }`). The fields
/// never replace `success` or `data`.
pub struct WithFields<T> {
    pub data: T,
    pub fields: serde_json::Map<String, Value>,
}

impl<T: Serialize + Send + 'static> Answer for WithFields<T> {
    fn into_ack(self) -> Box<RawValue> {
        success_ack(&self.data, Some(&self.fields))
    }
}

/// The event's first argument; `Null` when the client sent none (`socket.emit('x', ack)`),
/// which socketioxide reports as a decoding error.
pub struct Payload(Result<Value, String>);

impl FromMessageParts<LocalAdapter> for Payload {
    type Error = Infallible;
    fn from_message_parts(
        s: &Arc<Socket<LocalAdapter>>,
        v: &mut PacketValue,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let TryData(data) = TryData::<Value>::from_message_parts(s, v, ack_id)?;
        Ok(Payload(match data {
            Ok(value) => Ok(value),
            Err(_) if only_event_name(v) => Ok(Value::Null),
            Err(e) => Err(e.to_string()),
        }))
    }
}

/// True when the packet is `["event"]`: an event without arguments. Only looked at once
/// decoding failed, so well-formed events are not parsed twice.
fn only_event_name(v: &PacketValue) -> bool {
    v.as_str()
        .and_then(|raw| serde_json::from_str::<Vec<serde::de::IgnoredAny>>(raw).ok())
        .is_some_and(|args| args.len() == 1)
}

/// Turns a payload into a typed request ([`crate::payload::object`]): a non-object (at any
/// depth where a struct is expected), a wrong type or a missing field is a `VALIDATION_FAILED`
/// naming the problem.
pub fn decode<T: DeserializeOwned>(data: Result<Value, impl std::fmt::Display>) -> AppResult<T> {
    let mut value = data.map_err(|e| AppError::validation(format!("payload could not be read: {e}")))?;
    // `socket.emit('notification:clear-all')` carries no payload; it means "no arguments".
    if value.is_null() {
        value = Value::Object(Default::default());
    }
    crate::payload::object(&value)
}

pub use crate::payload::Decoder;

/// Every event of dialect `P` with its payload decoder, exactly as its handlers decode: for
/// tests that feed decoders arbitrary payloads (`tests/decoders.rs`).
pub fn decoders<P: SocketIoProfile>() -> Vec<(&'static str, Decoder)> {
    let mut handlers = Handlers::default();
    P::handlers(&mut handlers);
    handlers.decoders
}

/// What a handler does with one event: its synchronous part (activity, send ticket) runs at
/// once, in packet order; the rest is the returned future.
type Handler = Box<dyn Fn(SocketRef, Result<Value, String>, Reply, Arc<AppState>, Session) -> Pending + Send + Sync>;
type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One dialect's event handlers, built once per namespace and shared by all its sockets.
///
/// socketioxide keeps event handlers per socket: registering the ~30 events of a dialect with
/// `socket.on` cost every connection a hash map and two boxes per event (~1.7 KiB). Each
/// socket gets one fallback handler instead ([`listen`]), which looks the event up here.
pub struct Handlers {
    by_event: HashMap<&'static str, Handler>,
    /// Each event's payload decoder alone, without a handler (see [`decoders`]).
    decoders: Vec<(&'static str, Decoder)>,
    /// The dialect's words for the fields errors name ([`SocketIoProfile::field_name`]).
    words: fn(Field) -> &'static str,
}

impl Default for Handlers {
    fn default() -> Self {
        Self { by_event: HashMap::new(), decoders: Vec::new(), words: Field::neutral_name }
    }
}

impl Handlers {
    /// Handles `event` with `handler`, which receives the decoded request. Every handler gets
    /// the same treatment: in-flight accounting, metrics, the reply envelope, and a send ticket
    /// taken when the packet arrives so that message order per connection is kept.
    pub fn on<Req, Res, F, Fut>(&mut self, event: &'static str, handler: F)
    where
        Req: DeserializeOwned + Send + 'static,
        Res: Answer,
        F: Fn(Arc<AppState>, Session, Req, SendTicket) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = AppResult<Res>> + Send + 'static,
    {
        self.on_socket(event, move |app, _socket, session, req, ticket| handler(app, session, req, ticket));
    }

    /// As [`Handlers::on`], for a handler that also needs the socket (to emit to it, or to
    /// [`bind`] it).
    pub fn on_socket<Req, Res, F, Fut>(&mut self, event: &'static str, handler: F)
    where
        Req: DeserializeOwned + Send + 'static,
        Res: Answer,
        F: Fn(Arc<AppState>, SocketRef, Session, Req, SendTicket) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = AppResult<Res>> + Send + 'static,
    {
        let handler: Handler = Box::new(move |s, data, reply, app, session| {
            session.activity.touch();
            let ticket = session.order.ticket();
            let handler = handler.clone();
            Box::pin(async move {
                let _busy = app.inflight.enter();
                let started = Instant::now();
                let result = match decode::<Req>(data) {
                    Ok(req) => handler(app.clone(), s.clone(), session, req, ticket).await,
                    Err(e) => Err(e),
                };
                let code = match &result {
                    Ok(answer) => answer.refusal(),
                    Err(e) => Some(e.code()),
                };
                app.metrics.observe(event, started.elapsed().as_secs_f64(), code);
                reply.send(&s, event, result);
            })
        });
        self.by_event.insert(event, handler);
        self.decoders.push((event, |data| decode::<Req>(Ok::<_, String>(data)).map(drop)));
    }

    /// Accepts `event` with any payload and does nothing: a reply some clients send that
    /// needs no answer (SUP's app-level `pong`). An ack, when asked for, is a bare success.
    /// Not counted as activity: a heartbeat shows the transport is alive, not that anyone uses it.
    pub fn ignore(&mut self, event: &'static str) {
        let handler: Handler = Box::new(move |s, _data, reply, _app, _session| {
            reply.send(&s, event, Ok(Value::Null));
            Box::pin(async {})
        });
        self.by_event.insert(event, handler);
    }

    fn dispatch(
        &self,
        s: SocketRef,
        event: String,
        data: Result<Value, String>,
        mut reply: Reply,
        app: Arc<AppState>,
        session: Session,
    ) -> Pending {
        reply.words = self.words;
        // Nothing is taken from a client whose token expired, even in the moment before the
        // sweep closes its socket ([`super::expiry`]).
        if session.identity.expired() {
            return Box::pin(async move {
                let result: AppResult<()> = Err(super::expiry::expired());
                reply.send(&s, &event, result);
                super::expiry::close(&s, &session);
            });
        }
        match self.by_event.get(event.as_str()) {
            Some(handler) => handler(s, data, reply, app, session),
            None => {
                // An unknown event is still someone using the socket.
                session.activity.touch();
                Box::pin(unknown(s, event, reply, app))
            }
        }
    }
}

/// Routes every event of the socket to its dialect's [`Handlers`].
fn listen(socket: &SocketRef, handlers: Arc<Handlers>) {
    socket.on_fallback(
        move |s: SocketRef,
              socketioxide::extract::Event(event): socketioxide::extract::Event,
              Payload(data): Payload,
              reply: Reply,
              State(app): State<Arc<AppState>>,
              Extension(session): Extension<Session>| handlers.dispatch(s, event, data, reply, app, session),
    );
}

/// Answers events the dialect does not know with `UNKNOWN_TYPE`, so a client is never left
/// waiting on an ack that will not come.
async fn unknown(s: SocketRef, event: String, reply: Reply, app: Arc<AppState>) {
    app.metrics.observe("unknown", 0.0, Some("UNKNOWN_TYPE"));
    let event: String = event.chars().take(64).collect();
    let result: AppResult<()> = Err(AppError::UnknownType(format!("unknown event `{event}`")));
    reply.send(&s, &event, result);
}
