//! Socialink's messages and per-device queues (protocols/socialink.md §4), and the group send
//! of §5 (`POST /groups/{group_id}/send/{sender_id}`, a send into that conversation). Byte
//! fields are base64 on the wire; a message written as text by another dialect shows its
//! UTF-8 bytes as `ciphertext` (§10). Translation only: the rules live in `core::queues`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{delete, get, post, put},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{body, decode_with, parse_enum, time, Bytes64, Caller, IdList, Rejection, Reply};
use crate::{
    core::queues::{body_bytes, check_sealed, ConversationView, Destination, Progress, SealedDraft},
    domain::{ConversationKind, DeviceId, Message, ReceiptKind, UserId},
    error::AppError,
    payload::Decoder,
    transport::AppState,
};

/// The nil UUID: "no conversation yet" in a send.
const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

pub fn router(_app: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route("/messages/send/{sender_id}", post(send))
        .route("/groups/{group_id}/send/{sender_id}", post(group_send))
        .route("/messages/conversation/{user_id}", get(history))
        .route("/messages/delivered/{user_id}/{message_id}", put(delivered))
        .route("/messages/read/{user_id}/{message_id}", put(read))
        .route("/messages/delete/{user_id}/{message_id}", delete(delete_message))
        .route("/messages/queue/{user_id}/{device_id}", get(queue).delete(acknowledge))
}

/// Message types as the real server wrote them; input matched case-insensitively. `System`
/// is the server's own and refused on input.
const MESSAGE_TYPES: &[(&str, &str)] = &[
    ("Text", "text"),
    ("Media", "media"),
    ("Audio", "audio"),
    ("File", "file"),
    ("Location", "location"),
    ("Contact", "contact"),
    ("Poll", "poll"),
    ("Event", "event"),
    ("Call", "call"),
];

/// A stored kind as a Socialink message type; kinds of other dialects map to the nearest.
pub fn message_type(kind: &str) -> &'static str {
    match kind {
        "media" | "image" | "video" => "Media",
        "audio" | "voice" => "Audio",
        "file" => "File",
        "location" => "Location",
        "contact" => "Contact",
        "poll" => "Poll",
        "event" => "Event",
        "call" => "Call",
        "system" => "System",
        _ => "Text",
    }
}

fn status_name(p: Progress) -> &'static str {
    match p {
        Progress::Sent => "Sent",
        Progress::Delivered => "Delivered",
        Progress::Read => "Read",
    }
}

/// The Message object (history, queues, WebSocket `message` frames).
pub fn message_json(m: &Message, view: &ConversationView) -> Value {
    let is_group = view.kind == ConversationKind::Group;
    json!({
        "id": m.id,
        "conversation_id": m.chat_id,
        "sender_id": m.sender_id,
        "sender_device_id": m.sender_device.as_deref().filter(|d| !d.is_empty()),
        "recipient_id": view.recipient(&m.sender_id),
        "message_type": message_type(&m.kind),
        "ciphertext": Bytes64::encode(&body_bytes(m)),
        "ephemeral_key": m.ephemeral_key.clone().unwrap_or_default(),
        "sequence_number": m.seq,
        "timestamp": time(&m.created_at),
        "is_group": is_group,
        // The group's epoch as it is now: an epoch per message is not stored.
        "group_epoch": if is_group { Some(view.epoch) } else { None },
        "status": status_name(view.progress(m)),
        "delivered_at": Value::Null,
        "read_at": Value::Null,
        "is_self_destructing": m.expires_at.is_some(),
        "expires_at": m.expires_at.as_ref().map(time),
        "is_edited": m.edited_at.is_some(),
        "edited_at": m.edited_at.as_ref().map(time),
        "created_at": time(&m.created_at),
        "client_message_id": m.temp_id,
    })
}

/// What a send may carry (`messages/send` and the group send).
#[derive(Deserialize)]
struct SendIn {
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    recipient_id: Option<String>,
    #[serde(default)]
    device_id: Option<String>,
    ciphertext: Bytes64,
    #[serde(default)]
    ephemeral_key: Option<Bytes64>,
    #[serde(default)]
    message_type: Option<String>,
    #[serde(default)]
    is_self_destructing: Option<bool>,
    #[serde(default)]
    expires_in_seconds: Option<i64>,
    #[serde(default)]
    client_message_id: Option<String>,
}

impl SendIn {
    fn draft(self, to: Destination) -> Result<SealedDraft, Rejection> {
        let kind = match self.message_type.as_deref() {
            None => "text",
            Some(name) if name.eq_ignore_ascii_case("System") => {
                return Err(AppError::validation("message_type System is reserved to the server").into())
            }
            Some(name) => parse_enum(name, MESSAGE_TYPES, "message_type")?,
        };
        let expires_in = match (self.is_self_destructing.unwrap_or(false), self.expires_in_seconds) {
            (false, _) => None,
            (true, Some(seconds)) if seconds >= 1 => Some(seconds as u64),
            (true, _) => {
                return Err(
                    AppError::validation("is_self_destructing needs expires_in_seconds from 1 to 2592000").into()
                )
            }
        };
        Ok(SealedDraft {
            to,
            device_id: self.device_id,
            ciphertext: self.ciphertext.0,
            ephemeral_key: self.ephemeral_key.map(|k| k.0).unwrap_or_default(),
            kind: kind.to_string(),
            expires_in,
            client_message_id: self.client_message_id,
        })
    }
}

/// The JSON bodies of these routes, each with the checks made before any lookup (see
/// `super::body_decoders`).
pub(super) fn bodies() -> Vec<(&'static str, Decoder)> {
    fn send(v: Value) -> crate::error::AppResult<()> {
        decode_with(v, |input: SendIn| {
            let draft = input.draft(Destination::User(UserId::from("decoder-test")))?;
            Ok(check_sealed(&draft)?)
        })
    }
    vec![
        ("POST /messages/send/{sender_id}", send),
        ("POST /groups/{group_id}/send/{sender_id}", send),
        ("DELETE /messages/queue/{user_id}/{device_id}", |v| {
            IdList::from_json(v, "message_ids").map(drop).map_err(|Rejection(e)| e)
        }),
    ]
}

fn sent_json(m: &Message) -> Value {
    json!({
        "message_id": m.id,
        "conversation_id": m.chat_id,
        "sequence_number": m.seq,
        "timestamp": time(&m.created_at),
        "status": "Sent",
    })
}

async fn send(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(sender_id): Path<UserId>,
    bytes: Bytes,
) -> Reply<(StatusCode, Json<Value>)> {
    let actor = caller.acting_as(&sender_id)?;
    let mut input: SendIn = body(&bytes)?;
    let to = match input.conversation_id.take().filter(|c| c != NIL_UUID && !c.is_empty()) {
        Some(chat) => Destination::Conversation(chat.into()),
        None => match input.recipient_id.take().filter(|r| !r.is_empty()) {
            Some(user) => Destination::User(user.into()),
            None => return Err(AppError::validation("recipient_id is required without a conversation_id").into()),
        },
    };
    let draft = input.draft(to)?;
    let (message, _) = app.core.send_sealed(actor, draft).await?;
    Ok((StatusCode::CREATED, Json(sent_json(&message))))
}

async fn group_send(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((group_id, sender_id)): Path<(String, UserId)>,
    bytes: Bytes,
) -> Reply<(StatusCode, Json<Value>)> {
    let actor = caller.acting_as(&sender_id)?;
    let input: SendIn = body(&bytes)?;
    let draft = input.draft(Destination::Conversation(group_id.clone().into()))?;
    let view = app.core.conversation_view(actor, &group_id).await?;
    if view.kind != ConversationKind::Group {
        return Err(AppError::NotFound("Group not found".into()).into());
    }
    let (message, _) = app.core.send_sealed(actor, draft).await?;
    Ok((StatusCode::CREATED, Json(sent_json(&message))))
}

/// An optional integer query parameter; anything else is `VALIDATION_FAILED`.
fn number(query: &HashMap<String, String>, name: &str) -> Result<Option<i64>, Rejection> {
    match query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            v.parse::<i64>().map(Some).map_err(|_| AppError::validation(format!("{name} must be an integer")).into())
        }
    }
}

async fn history(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<UserId>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    let chat = query
        .get("conversation_id")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| AppError::validation("conversation_id is required"))?;
    let before = number(&query, "before_sequence")?;
    let after = number(&query, "after_sequence")?;
    let limit = number(&query, "limit")?.map(|l| l.max(1) as u64);
    let (view, messages) = app.core.sealed_history(actor, chat, before, after, limit).await?;
    let messages: Vec<Value> = messages.iter().map(|m| message_json(m, &view)).collect();
    Ok(Json(json!({ "count": messages.len(), "messages": messages })))
}

async fn receipt(
    app: &AppState,
    caller: &Caller,
    user_id: &str,
    message_id: &str,
    kind: ReceiptKind,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(user_id)?;
    app.core.sealed_receipt(actor, message_id, kind).await?;
    Ok(Json(json!({ "success": true })))
}

async fn delivered(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((user_id, message_id)): Path<(UserId, String)>,
) -> Reply<Json<Value>> {
    receipt(&app, &caller, &user_id, &message_id, ReceiptKind::Delivered).await
}

async fn read(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((user_id, message_id)): Path<(UserId, String)>,
) -> Reply<Json<Value>> {
    receipt(&app, &caller, &user_id, &message_id, ReceiptKind::Read).await
}

async fn delete_message(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((user_id, message_id)): Path<(UserId, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    let for_everyone = match query.get("for_everyone").map(|v| v.to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "true" || v == "1" => true,
        Some(v) if v == "false" || v == "0" || v.is_empty() => false,
        Some(_) => return Err(AppError::validation("for_everyone must be true or false").into()),
    };
    app.core.sealed_delete(actor, &message_id, for_everyone).await?;
    let text = if for_everyone { "Message deleted for everyone" } else { "Message deleted" };
    Ok(Json(json!({ "success": true, "message": text })))
}

/// Shows queued or pushed messages, looking each conversation up once.
pub struct Shower<'a> {
    app: &'a AppState,
    views: HashMap<String, ConversationView>,
}

impl<'a> Shower<'a> {
    pub fn new(app: &'a AppState) -> Self {
        Self { app, views: HashMap::new() }
    }

    pub async fn show(&mut self, m: &Message) -> Result<Value, AppError> {
        if !self.views.contains_key(m.chat_id.as_str()) {
            let view = self.app.core.view_of(&m.chat_id).await?;
            self.views.insert(m.chat_id.to_string(), view);
        }
        let view =
            self.views.get(m.chat_id.as_str()).ok_or_else(|| AppError::Internal(anyhow::anyhow!("view vanished")))?;
        Ok(message_json(m, view))
    }
}

async fn queue(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((user_id, device_id)): Path<(UserId, DeviceId)>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    let limit = number(&query, "limit")?.map(|l| l.max(1) as u64).unwrap_or(crate::core::queues::QUEUE_PAGE);
    let device = app.core.own_keyed_device(actor, &device_id).await?;
    let queued = app.core.device_queue(&device, 0, limit).await?;
    let mut shower = Shower::new(&app);
    let mut messages = Vec::with_capacity(queued.len());
    for q in &queued {
        messages.push(shower.show(&q.message).await?);
    }
    Ok(Json(json!({ "count": messages.len(), "messages": messages })))
}

async fn acknowledge(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((user_id, device_id)): Path<(UserId, DeviceId)>,
    bytes: Bytes,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    // `[message_id, …]`, or `{message_ids: [...]}`.
    let IdList(ids) = IdList::read(&bytes, "message_ids")?;
    let device = app.core.own_keyed_device(actor, &device_id).await?;
    let (acknowledged, remaining) = app.core.acknowledge(&device, &ids).await?;
    Ok(Json(json!({ "success": true, "acknowledged": acknowledged, "remaining": remaining })))
}
