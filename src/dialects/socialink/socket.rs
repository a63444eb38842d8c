//! Socialink's per-device WebSocket `GET /ws/{user_id}/{device_id}` (protocols/socialink.md
//! §9), over the raw WebSocket host. The handshake is refused before the upgrade (401 token,
//! 403 another user, 404 a device not registered or deactivated). On open the device's queue
//! is pushed, oldest first, then every newly queued message live, each once on the
//! connection; pushing does not acknowledge (`ack` frames and `DELETE queue` do).
//!
//! How "exactly once" holds: the connection is registered with the hub before the upgrade, so
//! nothing stored afterwards escapes it. Messages the hub hands it before its catch-up ends
//! are ignored: they are committed (and so queued) before they are published, so the queue,
//! read once the catch-up ended, has them. After that, a message is pushed when it is queued
//! for this device and was not pushed on this connection yet (ids remembered, bounded).

use std::{
    collections::{HashSet, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc, Mutex,
    },
};

use axum::{
    extract::{Path, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{
    calls, groups,
    messages::{message_json, Shower},
    presence, typing,
    wire::{time, Rejection},
};
use crate::{
    core::presence::Identity,
    domain::{DeviceNews, Event, KeyedDevice, Message, ReceiptKind},
    error::AppError,
    transport::{
        raw_ws::{self, Delivery, Dialect, Link, PathIdentity},
        AppState,
    },
};

/// Close code of a connection whose device was deactivated.
pub const CLOSE_DEACTIVATED: u16 = 4001;
/// Messages read from the queue per backlog page.
const BACKLOG_PAGE: u64 = 200;
/// Message ids remembered per connection as pushed (the oldest are forgotten first).
const MAX_REMEMBERED: usize = 10_000;

/// The `/ws/{user_id}/{device_id}` route.
pub fn router(_app: &AppState) -> Router<Arc<AppState>> {
    let dialect = Arc::new(Socialink);
    Router::new().route(
        "/ws/{user_id}/{device_id}",
        get(move |State(app): State<Arc<AppState>>, Path((user, device)): Path<(String, String)>, req: Request| {
            let dialect = dialect.clone();
            async move {
                let path = PathIdentity { user: &user, device: Some(&device) };
                raw_ws::accept(app, dialect, req, Some(path)).await
            }
        }),
    )
}

pub struct Socialink;

/// What one connection remembers.
pub struct Conn {
    /// The device, looked up once the catch-up ended.
    device: tokio::sync::OnceCell<Option<KeyedDevice>>,
    /// The queue was read: from now on, messages the hub hands over are live.
    live: AtomicBool,
    /// Queue position the backlog has been read up to.
    backlog_after: AtomicI64,
    backlog_done: AtomicBool,
    pushed: Mutex<Remembered>,
}

/// Ids pushed on this connection, bounded.
#[derive(Default)]
struct Remembered {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Remembered {
    /// Remembers `id`; false when it was already there.
    fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        while self.order.len() > MAX_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

impl Conn {
    /// The connection's device, read once; a failed read is not kept (the next call reads
    /// again), or one failed lookup would stop every live push of the connection.
    async fn device(&self, link: &Link) -> Result<Option<&KeyedDevice>, AppError> {
        let device = self
            .device
            .get_or_try_init(|| link.app.core.active_keyed_device(link.user(), link.identity.device()))
            .await?;
        Ok(device.as_ref())
    }

    fn remember(&self, id: &str) -> bool {
        self.pushed.lock().unwrap_or_else(|p| p.into_inner()).insert(id)
    }
}

fn frame(kind: &str, fields: Value) -> String {
    let mut map = match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    map.insert("type".into(), Value::String(kind.into()));
    Value::Object(map).to_string()
}

fn error_frame(e: &AppError) -> String {
    e.log_if_internal("socialink socket");
    let body = e.body_in(super::wire::field_name);
    frame("error", json!({ "code": body.code, "error": body.message }))
}

impl Dialect for Socialink {
    type State = Conn;
    /// `presence` frames reach the users who share a conversation with the user (§6).
    const FOLLOWS_PRESENCE: bool = true;

    fn refusal(&self, status: StatusCode, err: &AppError) -> Response {
        let mut response = Rejection(clone_error(err)).into_response();
        *response.status_mut() = status;
        response
    }

    /// The path's device must be registered and active.
    async fn admit(&self, app: &Arc<AppState>, identity: &Identity) -> Result<(), AppError> {
        let device = app.core.active_keyed_device(&identity.user_id, identity.device()).await?;
        let device = device.ok_or_else(|| AppError::NotFound("Device not found or deactivated".into()))?;
        app.core.keyed_device_seen(&device).await
    }

    fn disconnects_slow_consumers(&self) -> bool {
        true
    }

    fn follows_all_chats(&self) -> bool {
        // Typing and the other room events of every conversation reach the device.
        true
    }

    fn state(&self, _link: &Link) -> Conn {
        Conn {
            device: tokio::sync::OnceCell::new(),
            live: AtomicBool::new(false),
            backlog_after: AtomicI64::new(0),
            backlog_done: AtomicBool::new(false),
            pushed: Mutex::new(Remembered::default()),
        }
    }

    async fn frame(&self, link: &Link, state: &Conn, text: &str) {
        if let Some(reply) = handle(link, state, text).await {
            link.reply(reply).await;
        }
    }

    async fn encode(&self, link: &Link, state: &Conn, item: &Delivery) -> Result<Option<String>, AppError> {
        Ok(match &item.event {
            Event::MessageCreated(m) => return push(link, state, m).await,
            Event::Receipt(r) => Some(frame(
                "receipt",
                json!({
                    "message_id": r.message_id,
                    "conversation_id": r.chat_id,
                    "user_id": r.user_id,
                    "is_read": r.kind == ReceiptKind::Read,
                    "status": if r.kind == ReceiptKind::Read { "Read" } else { "Delivered" },
                    "timestamp": time(&r.at),
                }),
            )),
            Event::MessageDeleted(d) => Some(frame(
                "message_deleted",
                json!({
                    "message_id": d.message_id,
                    "conversation_id": d.chat_id,
                    "reason": if d.expired { "expired" } else { "deleted" },
                    "for_everyone": d.for_everyone,
                }),
            )),
            Event::Device(DeviceNews::Deactivated { device_id, .. }) => {
                if *device_id == link.identity.device() {
                    link.close(CLOSE_DEACTIVATED, "device deactivated");
                }
                None
            }
            Event::Device(DeviceNews::PrekeysLow { device_id, unused, .. }) => {
                Some(frame("prekeys_low", json!({ "device_id": device_id, "unused_prekeys": unused })))
            }
            // Typing, presence, calls and group membership are encoded by their own modules.
            Event::Typing(_) => typing::frame(&item.event).map(|f| f.to_string()),
            Event::Presence(_) => presence::frame(&item.event).map(|f| f.to_string()),
            Event::Call(_) | Event::CallChanged(..) => calls::frame(&item.event).map(|f| f.to_string()),
            Event::MemberJoined(_) | Event::MemberLeft(_) => groups::frame(&item.event).map(|f| f.to_string()),
            Event::Reaction(_) | Event::Notification(_) | Event::ChatUpdated(_) | Event::MessageEdited(_) => None,
            // Anonymous sessions have no Socialink members.
            Event::Session(_) => None,
        })
    }

    async fn caught_up(&self, _link: &Link, _state: &Conn) -> Option<String> {
        None
    }

    /// The device's queue, oldest first, a page at a time; then the connection is live.
    async fn backlog(&self, link: &Link, state: &Conn) -> Vec<String> {
        if state.backlog_done.load(Ordering::SeqCst) {
            return Vec::new();
        }
        let device = match state.device(link).await {
            Ok(Some(device)) => device,
            Ok(None) => {
                state.backlog_done.store(true, Ordering::SeqCst);
                state.live.store(true, Ordering::SeqCst);
                return Vec::new();
            }
            Err(e) => {
                // As for the queue's read below: the client reconnects and is pushed it then.
                e.log_if_internal("socialink device");
                link.close(raw_ws::close::GOING_AWAY, "server error");
                state.backlog_done.store(true, Ordering::SeqCst);
                return Vec::new();
            }
        };
        let after = state.backlog_after.load(Ordering::SeqCst);
        let page = match link.app.core.device_queue(device, after, BACKLOG_PAGE).await {
            Ok(page) => page,
            Err(e) => {
                // The client reconnects and is pushed its queue then.
                e.log_if_internal("socialink backlog");
                link.close(raw_ws::close::GOING_AWAY, "server error");
                state.backlog_done.store(true, Ordering::SeqCst);
                return Vec::new();
            }
        };
        if page.is_empty() {
            state.backlog_done.store(true, Ordering::SeqCst);
            state.live.store(true, Ordering::SeqCst);
            return Vec::new();
        }
        let mut shower = Shower::new(&link.app);
        let mut frames = Vec::with_capacity(page.len());
        for queued in page {
            state.backlog_after.store(queued.position, Ordering::SeqCst);
            if !state.remember(&queued.message.id) {
                continue;
            }
            match shower.show(&queued.message).await {
                Ok(fields) => frames.push(frame("message", fields)),
                Err(e) => e.log_if_internal("socialink backlog message"),
            }
        }
        frames
    }
}

/// A message the hub handed over, as a `message` frame when it is queued for this device and
/// was not pushed on this connection yet.
async fn push(link: &Link, state: &Conn, m: &Message) -> Result<Option<String>, AppError> {
    if !state.live.load(Ordering::SeqCst) {
        // Before the queue was read: the queue has it (committed before published).
        return Ok(None);
    }
    let own_device = m.sender_id == link.user() && m.sender_device.as_deref() == Some(link.identity.device());
    if own_device || m.deleted || m.expired_at(Utc::now()) {
        return Ok(None);
    }
    let Some(device) = state.device(link).await? else { return Ok(None) };
    if m.created_at < device.registered_at {
        return Ok(None);
    }
    // A message older than the connection reaches it only through a catch-up of the hub,
    // which knows nothing of acknowledgements: only what the queue still holds is pushed.
    // A failed lookup closes the connection (see `raw_ws::Dialect::encode`): its queue is
    // pushed on the next one.
    if m.created_at < link.opened && !link.app.core.queue_holds(device, &m.id).await? {
        return Ok(None);
    }
    let view = link.app.core.view_of(&m.chat_id).await?;
    if !state.remember(&m.id) {
        return Ok(None);
    }
    Ok(Some(frame("message", message_json(m, &view))))
}

#[derive(Deserialize)]
struct AckFrame {
    message_ids: Vec<String>,
}

#[derive(Deserialize)]
struct ReceiptFrame {
    message_id: String,
}

#[derive(Deserialize)]
struct TypingFrame {
    conversation_id: String,
    is_typing: bool,
}

/// A client frame of §9, decoded.
pub enum ClientFrame {
    Ping,
    Ack(Vec<String>),
    Receipt { kind: ReceiptKind, message_id: String },
    Typing { conversation_id: String, is_typing: bool },
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, AppError> {
    crate::payload::strict(value).map_err(|e| AppError::validation(e.to_string()))
}

/// Decodes one client frame: JSON (`INVALID_JSON`), an object with a string `type` among
/// §9's (`UNKNOWN_TYPE`), no NUL anywhere and its fields (`VALIDATION_FAILED`). Pure: no
/// state, no I/O (the decoder property test feeds it every shape of JSON).
pub fn decode_frame(text: &str) -> Result<ClientFrame, AppError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| AppError::InvalidJson(format!("the frame is not JSON: {e}")))?;
    let Some(Value::String(kind)) = value.as_object().and_then(|frame| frame.get("type")) else {
        return Err(AppError::UnknownType("a frame needs a string type".into()));
    };
    crate::error::refuse_nul(&value)?;
    Ok(match kind.as_str() {
        "ping" => ClientFrame::Ping,
        "ack" => ClientFrame::Ack(parse::<AckFrame>(&value)?.message_ids),
        "delivered" | "read" => ClientFrame::Receipt {
            kind: if kind == "read" { ReceiptKind::Read } else { ReceiptKind::Delivered },
            message_id: parse::<ReceiptFrame>(&value)?.message_id,
        },
        "typing" => {
            let t = parse::<TypingFrame>(&value)?;
            ClientFrame::Typing { conversation_id: t.conversation_id, is_typing: t.is_typing }
        }
        other => return Err(AppError::UnknownType(format!("unknown frame type {other}"))),
    })
}

/// One client frame; the reply, if any.
async fn handle(link: &Link, state: &Conn, text: &str) -> Option<String> {
    let result = match decode_frame(text) {
        Err(e) => Err(e),
        Ok(ClientFrame::Ping) => return Some(frame("pong", json!({ "timestamp": time(&Utc::now()) }))),
        Ok(ClientFrame::Ack(ids)) => ack(link, state, &ids).await,
        Ok(ClientFrame::Receipt { kind, message_id }) => {
            link.app.core.sealed_receipt(&link.actor(), &message_id, kind).await
        }
        Ok(ClientFrame::Typing { conversation_id, is_typing }) => {
            link.app.core.set_typing(&link.actor(), &conversation_id, is_typing).await
        }
    };
    result.err().map(|e| error_frame(&e))
}

async fn ack(link: &Link, state: &Conn, message_ids: &[String]) -> Result<(), AppError> {
    let device = state.device(link).await?.ok_or_else(|| AppError::NotFound("Device not found".into()))?;
    link.app.core.acknowledge(device, message_ids).await?;
    Ok(())
}

/// `AppError` is not `Clone` (it may carry a cause); a refusal needs only its kind and text.
fn clone_error(e: &AppError) -> AppError {
    match e {
        AppError::Unauthorized(m) => AppError::Unauthorized(m.clone()),
        AppError::Forbidden(m) => AppError::Forbidden(m.clone()),
        AppError::NotFound(m) => AppError::NotFound(m.clone()),
        AppError::RateLimited { what, retry_after_ms } => {
            AppError::RateLimited { what, retry_after_ms: *retry_after_ms }
        }
        other => match other.http_status() {
            401 => AppError::Unauthorized(other.to_string()),
            403 => AppError::Forbidden(other.to_string()),
            404 => AppError::NotFound(other.to_string()),
            _ => AppError::Internal(anyhow::anyhow!(other.to_string())),
        },
    }
}
