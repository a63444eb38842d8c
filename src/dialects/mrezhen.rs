//! The `mrezhen` dialect (SPEC §7.4, seeds/mrezhen-direct-ws.md, protocols/mrezhen.md): JSON
//! frames `{ type, … }` for direct messages between two users, over the raw WebSocket host.
//! Translation only: frames become core calls (the pair's direct conversation, durable
//! messages, history, who is online) and core events become frames. The rules (validation
//! order, limits, conversations, delivery) live in the core.
//!
//! Client → server: `direct_message {to, content, tempId?}`, `get_history {with, limit?}`,
//! `get_online_users`, `ping`. Server → client: `direct_message`, `message_ack`, `presence`,
//! `online_users`, `message_history`, `pong`, `error {code, message}`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use axum::{extract::Request, http::header, middleware::Next, Router};
use serde_json::{json, Value};

use crate::{
    config::Config,
    core::{
        frame_limit::FrameLimit,
        model::{ChatId, Event, Message, Presence, PresenceStatus, UserId},
        Core,
    },
    error::AppError,
    transport::{
        raw_ws::{self, Delivery, Dialect, Link},
        AppState,
    },
};

/// Longest message text, in characters (the running service's 5,000; SPEC §6).
pub const MAX_CONTENT: usize = 5000;
/// History page: the default, and the most one request gets.
const HISTORY_DEFAULT: u64 = 50;
const HISTORY_MAX: u64 = 200;

pub struct Mrezhen {
    /// `RATE_LIMIT_MESSAGES` per `RATE_LIMIT_WINDOW_MS`, every frame counted, per user.
    frames: FrameLimit,
    /// The online users as last read for one presence delivery ([`Delivery::serial`]): read
    /// once per event and instance, not once per connection it reaches.
    roster: tokio::sync::Mutex<(u64, Arc<Vec<UserId>>)>,
}

impl Mrezhen {
    pub fn new(core: &Core, config: &Config) -> Self {
        Self {
            frames: core.frame_limit("mrezhen", config.raw_ws.mrezhen_frames),
            roster: tokio::sync::Mutex::new((0, Arc::default())),
        }
    }

    async fn roster(&self, core: &Core, serial: u64) -> Result<Arc<Vec<UserId>>, AppError> {
        let mut cached = self.roster.lock().await;
        if cached.0 != serial {
            *cached = (serial, Arc::new(core.online_users().await?));
        }
        Ok(cached.1.clone())
    }
}

/// What one connection remembers.
pub struct Conn {
    /// Per conversation: the other member when it is a direct one (the only kind this
    /// dialect can show), else `None`.
    peers: Mutex<HashMap<ChatId, Option<UserId>>>,
    /// `online_users` was sent after the first catch-up.
    greeted: AtomicBool,
}

/// A refusal as the client reads it: `{ type: "error", code, message }`.
#[derive(Debug)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<AppError> for Refusal {
    fn from(e: AppError) -> Self {
        e.log_if_internal("mrezhen");
        Self { code: e.code(), message: e.to_string() }
    }
}

fn ms(t: &chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

impl Dialect for Mrezhen {
    type State = Conn;

    /// The running service announced every arrival and departure to everyone connected;
    /// here a connection hears those of the people its user may see (who share a
    /// conversation with them, see `Core::visible_to`), and its own.
    const FOLLOWS_PRESENCE: bool = true;

    /// The running service's reasons.
    fn unauthorized(&self, err: &AppError) -> String {
        let reason = match err.to_string().as_str() {
            m if m.starts_with("authentication token missing") => "Unauthorized",
            "token expired" => "Token expired",
            crate::auth::NO_USER_ID => "Missing userId in token",
            _ => "Invalid token",
        };
        reason.to_string()
    }

    fn state(&self, _link: &Link) -> Conn {
        Conn { peers: Mutex::new(HashMap::new()), greeted: AtomicBool::new(false) }
    }

    async fn frame(&self, link: &Link, _state: &Conn, text: &str) {
        let app = &link.app;
        let _busy = app.inflight.enter();
        let started = Instant::now();
        let (kind, result) = self.handle(link, text).await;
        let frame = match &result {
            Ok(frame) => frame.to_string(),
            Err(r) => json!({ "type": "error", "code": r.code, "message": r.message }).to_string(),
        };
        let metric = format!("mrezhen:{kind}");
        app.metrics.observe(&metric, started.elapsed().as_secs_f64(), result.as_ref().err().map(|r| r.code));
        link.reply(frame).await;
    }

    async fn encode(&self, link: &Link, state: &Conn, item: &Delivery) -> Result<Option<String>, AppError> {
        match &item.event {
            Event::MessageCreated(m) => self.direct_message(link, state, m).await,
            Event::Presence(p) => Ok(self.presence(link, p, item.serial).await),
            _ => Ok(None),
        }
    }

    async fn caught_up(&self, link: &Link, state: &Conn) -> Option<String> {
        if state.greeted.swap(true, Ordering::SeqCst) {
            return None;
        }
        match link.app.core.visible_online(link.conn, link.user()).await {
            Ok(users) => Some(json!({ "type": "online_users", "users": users }).to_string()),
            Err(e) => {
                e.log_if_internal("mrezhen online_users");
                None
            }
        }
    }
}

impl Mrezhen {
    /// Decodes and answers one frame; also names its type for metrics.
    async fn handle(&self, link: &Link, text: &str) -> (&'static str, Result<Value, Refusal>) {
        // Every frame counts, valid or not, before anything else (the running service's order).
        if let Err(e) = self.frames.check(link.user()).await {
            return ("frame", Err(e.into()));
        }
        let frame = match decode_frame(text) {
            Ok(frame) => frame,
            Err((kind, refusal)) => return (kind, Err(refusal)),
        };
        match frame {
            Frame::Direct { to, content, temp_id } => ("direct_message", self.send(link, to, content, temp_id).await),
            Frame::History { with, limit } => ("get_history", self.history(link, with, limit).await),
            Frame::OnlineUsers => ("get_online_users", self.online(link).await),
            Frame::Ping => ("ping", Ok(json!({ "type": "pong", "timestamp": chrono::Utc::now().timestamp_millis() }))),
        }
    }

    /// `direct_message {to, content, tempId?}` → `message_ack`.
    async fn send(&self, link: &Link, to: String, content: String, temp_id: Option<String>) -> Result<Value, Refusal> {
        let sent = link.app.core.send_direct(&link.actor(), &to, content, MAX_CONTENT, temp_id, None).await?;
        // They share a conversation now: this connection follows the peer's presence.
        link.app.core.follow_peer(&link.actor(), link.conn, &to).await?;
        let m = &sent.message;
        let mut ack = json!({
            "type": "message_ack",
            "messageId": m.id,
            "to": to,
            "timestamp": ms(&m.created_at),
            "status": if sent.recipient_online { "delivered" } else { "queued" },
            "conversationId": m.chat_id,
            "seq": m.seq,
        });
        if let Some(temp_id) = &m.temp_id {
            ack["tempId"] = json!(temp_id);
        }
        Ok(ack)
    }

    /// `get_history {with, limit?}` → `message_history`.
    async fn history(&self, link: &Link, with: String, limit: u64) -> Result<Value, Refusal> {
        let messages = link.app.core.direct_history(&link.actor(), &with, limit).await?;
        let messages: Vec<Value> = messages.iter().map(message_json).collect();
        Ok(json!({ "type": "message_history", "with": with, "messages": messages }))
    }

    async fn online(&self, link: &Link) -> Result<Value, Refusal> {
        let users = link.app.core.visible_online(link.conn, link.user()).await?;
        Ok(json!({ "type": "online_users", "users": users }))
    }

    /// A message of one of the user's direct conversations, from the other member. The user's
    /// own messages (sent from another tab or dialect) have no frame in this protocol, and
    /// group messages have no place in it.
    async fn direct_message(&self, link: &Link, state: &Conn, m: &Message) -> Result<Option<String>, AppError> {
        if m.sender_id == link.user() {
            return Ok(None);
        }
        let known = state.peers.lock().unwrap_or_else(|p| p.into_inner()).get(&m.chat_id).cloned();
        let peer = match known {
            Some(peer) => peer,
            None => {
                // Not remembered when it fails: the message is pushed again after a reconnect.
                let peer = link.app.core.direct_peer(&m.chat_id, link.user()).await?;
                state.peers.lock().unwrap_or_else(|p| p.into_inner()).insert(m.chat_id.clone(), peer.clone());
                // A first message from someone: they share a conversation now, so this
                // connection follows their presence.
                if let Some(peer) = &peer {
                    if let Err(e) = link.app.core.follow_peer(&link.actor(), link.conn, peer).await {
                        e.log_if_internal("mrezhen follow");
                    }
                }
                peer
            }
        };
        // Not a message of a direct conversation with its sender (a group's, say): Mrezhen
        // shows none of those.
        if peer.as_deref() != Some(m.sender_id.as_str()) {
            return Ok(None);
        }
        let mut frame = json!({ "type": "direct_message", "message": message_json(m) });
        // Stored before this connection opened: it waited in the user's queue.
        if m.created_at < link.opened {
            frame["queued"] = json!(true);
        }
        Ok(Some(frame.to_string()))
    }

    /// `presence {userId, status, onlineUsers}`: online or offline only (a chosen `away` or
    /// `busy` is still online here).
    async fn presence(&self, link: &Link, p: &Presence, serial: u64) -> Option<String> {
        let online = p.status != PresenceStatus::Offline;
        let roster = match self.roster(&link.app.core, serial).await {
            Ok(users) => users,
            Err(e) => {
                e.log_if_internal("mrezhen presence");
                return None;
            }
        };
        // Only who this connection may see (and itself): see `Core::visible_to`.
        let mut followed = link.app.core.hub.watching(link.conn);
        followed.insert((link.user().to_string()).into());
        let mut users = crate::core::presence::filter_followed(roster.as_ref().clone(), &followed);
        users.retain(|u| online || *u != p.user_id);
        if online && !users.contains(&p.user_id) {
            users.push(p.user_id.clone());
        }
        let status = if online { "online" } else { "offline" };
        Some(json!({ "type": "presence", "userId": p.user_id, "status": status, "onlineUsers": users }).to_string())
    }
}

/// A client frame, decoded: what the dialect will ask the core.
#[derive(Debug)]
pub enum Frame {
    /// `direct_message`: `to` and `content` trimmed; the content's length, the recipient and
    /// the sender's rate are the core's to check.
    Direct {
        to: String,
        content: String,
        temp_id: Option<String>,
    },
    /// `get_history`, `limit` already clamped to 1..=200 (50 when absent or not a number).
    History {
        with: String,
        limit: u64,
    },
    OnlineUsers,
    Ping,
}

/// Decodes one text frame, in the running service's order of checks: JSON, an object, no
/// NUL anywhere, a `type`, a known type, its fields. A refusal names the frame kind for
/// metrics (`invalid`, `unknown`, or the type) and says why, in the protocol's codes. Pure:
/// no state, no I/O (the decoder property test feeds it every shape of JSON).
pub fn decode_frame(text: &str) -> Result<Frame, (&'static str, Refusal)> {
    let invalid = |code, message: &str| ("invalid", Refusal::new(code, message));
    let value: Value = serde_json::from_str(text).map_err(|_| invalid("INVALID_JSON", "Invalid JSON"))?;
    let Value::Object(frame) = value else {
        return Err(invalid("INVALID_FORMAT", "Message must be a JSON object"));
    };
    if let Err(e) = crate::error::refuse_nul(&Value::Object(frame.clone())) {
        return Err(("invalid", e.into()));
    }
    let kind = match frame.get("type") {
        None | Some(Value::Null) => return Err(invalid("MISSING_TYPE", "Missing message type")),
        Some(Value::String(s)) if s.is_empty() => return Err(invalid("MISSING_TYPE", "Missing message type")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(("unknown", Refusal::new("UNKNOWN_TYPE", "Unknown message type"))),
    };
    match kind {
        "direct_message" => {
            let to = user_field(frame.get("to"))
                .ok_or(("direct_message", Refusal::new("MISSING_RECIPIENT", "Missing recipient")))?;
            let content = match frame.get("content") {
                Some(Value::String(s)) => s.trim().to_string(),
                _ => String::new(),
            };
            let temp_id = frame.get("tempId").and_then(Value::as_str).map(str::to_string);
            Ok(Frame::Direct { to, content, temp_id })
        }
        "get_history" => {
            let with =
                user_field(frame.get("with")).ok_or(("get_history", Refusal::new("MISSING_USER", "Missing user")))?;
            let limit = match frame.get("limit").and_then(Value::as_f64) {
                Some(n) if n.is_finite() && n >= 1.0 => (n as u64).min(HISTORY_MAX),
                _ => HISTORY_DEFAULT,
            };
            Ok(Frame::History { with, limit })
        }
        "get_online_users" => Ok(Frame::OnlineUsers),
        "ping" => Ok(Frame::Ping),
        other => {
            let shown: String = other.chars().take(64).collect();
            Err(("unknown", Refusal::new("UNKNOWN_TYPE", format!("Unknown message type: {shown}"))))
        }
    }
}

/// A user id field: a non-blank string (trimmed), or an integer (some issuers' ids).
fn user_field(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// `{ id, from, content, timestamp }`, the timestamp in milliseconds since the epoch.
fn message_json(m: &Message) -> Value {
    json!({ "id": m.id, "from": m.sender_id, "content": m.content, "timestamp": ms(&m.created_at) })
}

/// Serves `mrezhen` at `/ws`, and on WebSocket upgrades to `/` (its browser client opens the
/// root path; a plain `GET /` still reaches the demo page, and Socket.IO keeps `/socket.io/`).
pub fn intercept(router: Router, app: &Arc<AppState>) -> Router {
    let (app, mrezhen) = (app.clone(), Arc::new(Mrezhen::new(&app.core, &app.config)));
    router.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let (app, mrezhen) = (app.clone(), mrezhen.clone());
        async move {
            let path = req.uri().path();
            if path == "/ws" || (path == "/" && wants_websocket(&req)) {
                return raw_ws::accept(app, mrezhen, req, None).await;
            }
            next.run(req).await
        }
    }))
}

/// An HTTP/1.1 WebSocket upgrade request (`Upgrade: websocket`).
fn wants_websocket(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_trimmed_strings_or_integers() {
        assert_eq!(user_field(Some(&json!("  bob "))), Some("bob".into()));
        assert_eq!(user_field(Some(&json!(42))), Some("42".into()));
        assert_eq!(user_field(Some(&json!("   "))), None);
        assert_eq!(user_field(Some(&json!(1.5))), None);
        assert_eq!(user_field(None), None);
    }
}
