//! The `sup` profile: SUP Messenger's `area:verb` events (seeds/sup-messenger-websocket.md,
//! SPEC §7.1). Only translation lives here.
//!
//! Existing SUP clients were written against the running service, which differs from its
//! README (protocols/sup.md): they send other spellings (`targetUserId`, `reaction`,
//! `chat:member-typing`, `pong`) and read other fields (`data.message.id`, `data.sender.id`,
//! `callerName`, `userName`, top-level ack fields). Inputs accept both spellings; outputs are
//! supersets of both contracts, so one payload serves every reader. Like Spark, a SUP socket
//! follows the presence of everyone its user shares a conversation with, since the running
//! service's clients never subscribe.

use crate::domain::UserId;
use std::sync::Arc;

use serde::{ser::SerializeMap, Deserialize, Serialize, Serializer};
use serde_json::{json, value::RawValue, Value};
use socketioxide::extract::SocketRef;

use super::{attachment_json, iso, mentions};
use crate::transport::socketio::{raw_ack, Answer, Handlers, Session, SocketIoProfile, WithFields};
use crate::{
    core::{
        calls::CallRequest,
        messages::Draft,
        model::{
            Call, CallEndReason, CallOrigin, CallSignal, ChatField, ChatUpdated, Event, Message, Notification,
            NotificationData, Presence, Reaction, ReactionSummary, ReceiptKind,
        },
    },
    error::{AppError, AppResult, Field},
    transport::AppState,
};

pub struct Sup;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewMessage {
    chat_id: String,
    encrypted_content: String,
    #[serde(default = "text")]
    message_type: String,
    reply_to_id: Option<String>,
    metadata: Option<Value>,
    temp_id: Option<String>,
}

fn text() -> String {
    "text".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageRef {
    chat_id: String,
    message_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatRef {
    chat_id: String,
}

/// `chat:member-typing`, the running service's one typing event.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberTyping {
    chat_id: String,
    #[serde(default = "yes")]
    is_typing: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatRefs {
    chat_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PresenceUpdate {
    status: String,
    custom_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserRefs {
    user_ids: Vec<UserId>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncRequest {
    chat_id: String,
    #[serde(default)]
    after_seq: i64,
    limit: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallInitiate {
    chat_id: Option<String>,
    /// The running service's clients call it `targetUserId`.
    #[serde(alias = "targetUserId")]
    callee_id: Option<String>,
    call_type: String,
    offer: Option<Value>,
    /// The running service's clients choose the call's id (`'call_' + Date.now()`).
    call_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallAnswer {
    call_id: String,
    answer: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallReject {
    call_id: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallRef {
    call_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IceCandidate {
    call_id: String,
    #[serde(default)]
    candidate: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallHistory {
    chat_id: String,
    limit: Option<u64>,
    /// ISO 8601: only calls started before this (paging back).
    before: Option<String>,
}

/// `{ messageId, emoji }`, or the running service's `{ messageId, chatId, reaction }` (the
/// chat is the message's own, so a `chatId` is not needed and not trusted).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReactionRef {
    message_id: String,
    #[serde(alias = "reaction")]
    emoji: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageOnly {
    message_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationRef {
    notification_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pending {
    limit: Option<u64>,
}

#[derive(Deserialize)]
struct Nothing {}

/// The flat message, as SUP's seed shows it (history, `message:updated`).
pub fn message_json(m: &Message) -> Value {
    value_of(&MessageOut { m, running: false })
}

/// `message:new` as members receive it and as its ack's `data`: the flat message, plus the
/// running service's `message: {…}` and `sender: {…}` that its clients read
/// (`data.message.encryptedContent`, `data.sender.username`).
pub fn new_message_json(m: &Message) -> Value {
    value_of(&MessageOut { m, running: true })
}

/// A shape below as a `Value`, for the events encoded once per delivery pass.
fn value_of(shape: &impl Serialize) -> Value {
    serde_json::to_value(shape).unwrap_or_else(|e| {
        tracing::error!(cause = %e, "could not encode a message");
        Value::Null
    })
}

fn receipt_json(kind: ReceiptKind, chat: &str, message: &str, user: &str, at: &chrono::DateTime<chrono::Utc>) -> Value {
    let when = match kind {
        ReceiptKind::Delivered => "deliveredAt",
        ReceiptKind::Read => "readAt",
    };
    json!({ "chatId": chat, "messageId": message, "userId": user, "at": iso(at), when: iso(at) })
}

fn call_json(c: &Call) -> Value {
    json!({
        "callId": c.id,
        "chatId": c.chat_id,
        "callerId": c.caller_id,
        "calleeIds": c.callee_ids,
        "callType": c.kind.as_str(),
        "status": c.status.as_str(),
        "answeredBy": c.answered_by,
        "endedBy": c.ended_by,
        "endReason": c.end_reason.map(|r| r.as_str()),
        "startedAt": iso(&c.started_at),
        "answeredAt": c.answered_at.as_ref().map(iso),
        "endedAt": c.ended_at.as_ref().map(iso),
        "duration": c.duration_ms.map(|ms| ms / 1000),
        "durationMs": c.duration_ms,
    })
}

/// Adds the running service's caller fields, which its clients read on every call event:
/// `callerId`, `callerName`, `callerAvatar` (always the call's caller) and `callType`.
fn with_caller(mut out: Value, origin: &CallOrigin) -> Value {
    out["callerId"] = json!(origin.caller_id);
    out["callerName"] = json!(origin.caller.name);
    out["callerAvatar"] = json!(origin.caller.avatar);
    out["callType"] = json!(origin.kind.as_str());
    out
}

/// The running service's `status` of a `call:end`: what became of the call, seen from the
/// device that hears it (`answered` / `rejected` when another device of the user did).
fn end_status(reason: CallEndReason) -> &'static str {
    match reason {
        CallEndReason::Hangup | CallEndReason::Disconnected => "ended",
        CallEndReason::Cancelled | CallEndReason::Missed => "missed",
        CallEndReason::Rejected | CallEndReason::RejectedElsewhere => "rejected",
        CallEndReason::AnsweredElsewhere => "answered",
    }
}

fn call_signal(signal: &CallSignal) -> (&'static str, Value) {
    match signal {
        CallSignal::Incoming { call, caller, offer } => (
            "call:incoming",
            json!({
                "callId": call.id,
                "chatId": call.chat_id,
                "callerId": call.caller_id,
                "callerName": caller.name,
                "callerAvatar": caller.avatar,
                "calleeIds": call.callee_ids,
                "callType": call.kind.as_str(),
                "offer": offer,
                "startedAt": iso(&call.started_at),
                "status": "incoming",
            }),
        ),
        CallSignal::Answered { call_id, chat_id, origin, user_id, answer } => (
            "call:answer",
            with_caller(
                json!({
                    "callId": call_id,
                    "chatId": chat_id,
                    "userId": user_id,
                    "answer": answer,
                    "status": "answered",
                }),
                origin,
            ),
        ),
        // `status` stays the call's: `rejected` once nobody is left ringing, which for the
        // one-to-one calls of SUP clients is the running service's `rejected`.
        CallSignal::Rejected { call_id, chat_id, origin, user_id, reason, status } => (
            "call:reject",
            with_caller(
                json!({
                    "callId": call_id,
                    "chatId": chat_id,
                    "userId": user_id,
                    "reason": reason,
                    "status": status.as_str(),
                }),
                origin,
            ),
        ),
        CallSignal::Ended { call_id, chat_id, origin, reason, ended_by, answered_by, duration_ms } => (
            "call:end",
            with_caller(
                json!({
                    "callId": call_id,
                    "chatId": chat_id,
                    "reason": reason.as_str(),
                    "endedBy": ended_by,
                    "answeredBy": answered_by,
                    "duration": duration_ms.map(|ms| ms / 1000),
                    "durationMs": duration_ms,
                    "status": end_status(*reason),
                }),
                origin,
            ),
        ),
        CallSignal::IceCandidate { call_id, chat_id, user_id, candidate } => (
            "call:ice-candidate",
            json!({ "callId": call_id, "chatId": chat_id, "userId": user_id, "candidate": candidate }),
        ),
    }
}

/// A reaction in both shapes: SPEC's `emoji` and `at`, the running service's `reaction`,
/// `userName`, `action` and `timestamp`.
fn reaction_json(r: &Reaction) -> Value {
    json!({
        "messageId": r.message_id,
        "chatId": r.chat_id,
        "userId": r.user_id,
        "userName": r.user_name,
        "emoji": r.emoji,
        "reaction": r.emoji,
        "action": if r.added { "add" } else { "remove" },
        "at": iso(&r.at),
        "timestamp": iso(&r.at),
    })
}

/// `reaction:get`: one entry per emoji with who reacted, in the order they did.
fn reaction_groups(summary: &ReactionSummary) -> Value {
    summary
        .iter()
        .map(|(emoji, users)| json!({ "reaction": emoji, "emoji": emoji, "users": users, "count": users.len() }))
        .collect()
}

fn notification_json(n: &Notification) -> Value {
    let data = match &n.data {
        NotificationData::Mention { chat_id, message_id, sender_id } => {
            json!({ "chatId": chat_id, "messageId": message_id, "senderId": sender_id })
        }
        NotificationData::MissedCall { call_id, chat_id, caller_id, call_kind } => json!({
            "callId": call_id,
            "chatId": chat_id,
            "callerId": caller_id,
            "callType": call_kind.as_str(),
        }),
        NotificationData::AddedToChat { chat_id, added_by, role } => {
            json!({ "chatId": chat_id, "addedBy": added_by, "role": role })
        }
    };
    // The running service's fields: a title and text to show, who it came from, where, and
    // how loudly (a missed call rings for attention; being added to a chat does not).
    let (title, message, from, chat, msg, priority, sound) = match &n.data {
        NotificationData::Mention { chat_id, message_id, sender_id } => {
            ("New mention", "You were mentioned in a message", sender_id, chat_id, Some(message_id), "normal", true)
        }
        NotificationData::MissedCall { chat_id, caller_id, call_kind, .. } => (
            "Missed call",
            match call_kind {
                crate::core::model::CallKind::Audio => "You missed an audio call",
                crate::core::model::CallKind::Video => "You missed a video call",
            },
            caller_id,
            chat_id,
            None,
            "high",
            true,
        ),
        NotificationData::AddedToChat { chat_id, added_by, .. } => {
            ("Added to a chat", "You were added to a chat", added_by, chat_id, None, "low", false)
        }
    };
    json!({
        "id": n.id,
        "type": n.data.kind(),
        "title": title,
        "message": message,
        "data": data,
        "fromUserId": from,
        "chatId": chat,
        "messageId": msg,
        "priority": priority,
        "sound": sound,
        "badge": n.unread,
        "read": n.read,
        "createdAt": iso(&n.created_at),
        "timestamp": iso(&n.created_at),
    })
}

/// `chat:updated`: the chat id, who and when, and only the fields that changed; plus the
/// running service's `updateType`, `changes` (those fields again) and `timestamp`.
fn chat_updated_json(u: &ChatUpdated) -> Value {
    let mut out = super::chat_changes_json(u, "chatId");
    let changes: serde_json::Map<String, Value> = out
        .as_object()
        .map(|o| o.iter().filter(|(k, _)| !matches!(k.as_str(), "chatId" | "updatedBy" | "updatedAt")))
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out["updateType"] = json!(update_type(&u.changed));
    out["changes"] = Value::Object(changes);
    out["timestamp"] = json!(iso(&u.updated_at));
    out
}

/// The running service's one word for a change: `members` when membership or ownership
/// moved, the field when one detail changed, `settings` for several.
fn update_type(changed: &[ChatField]) -> &'static str {
    if changed.iter().any(|f| matches!(f, ChatField::Members | ChatField::Owner)) {
        return "members";
    }
    match changed {
        [ChatField::Name] => "name",
        [ChatField::Description] => "description",
        [ChatField::Avatar] => "avatar",
        _ => "settings",
    }
}

fn presence_json(p: &Presence) -> Value {
    json!({
        "userId": p.user_id,
        "status": p.status.as_str(),
        "customStatus": p.custom_status,
        "lastSeen": p.last_seen.as_ref().map(iso),
    })
}

/// SUP's names of request fields, in error messages.
pub fn field_name(field: Field) -> &'static str {
    crate::dialects::camel_case_field(field, "chatId")
}

impl SocketIoProfile for Sup {
    fn field_name(field: Field) -> &'static str {
        field_name(field)
    }

    fn encode(event: &Event) -> Option<(&'static str, Value)> {
        Some(match event {
            Event::MessageCreated(m) => ("message:new", new_message_json(m)),
            Event::Receipt(r) => (
                match r.kind {
                    ReceiptKind::Delivered => "message:delivered",
                    ReceiptKind::Read => "message:read",
                },
                receipt_json(r.kind, &r.chat_id, &r.message_id, &r.user_id, &r.at),
            ),
            Event::Typing(t) => (
                if t.typing { "message:typing" } else { "message:stop-typing" },
                json!({ "chatId": t.chat_id, "userId": t.user_id, "username": t.username, "userName": t.username }),
            ),
            Event::Presence(p) => ("presence:update", presence_json(p)),
            Event::Call(signal) => call_signal(signal),
            // SUP hears calls through the signals to the parties.
            Event::CallChanged(..) => return None,
            Event::Reaction(r) => (if r.added { "reaction:new" } else { "reaction:remove" }, reaction_json(r)),
            Event::Notification(n) => ("notification:new", notification_json(n)),
            Event::MemberJoined(j) => (
                "chat:member-joined",
                json!({
                    "chatId": j.chat_id,
                    "userId": j.user_id,
                    "role": j.role,
                    "addedBy": j.added_by,
                    "timestamp": iso(&j.at),
                }),
            ),
            Event::MemberLeft(l) => (
                "chat:member-left",
                json!({ "chatId": l.chat_id, "userId": l.user_id, "removedBy": l.removed_by, "timestamp": iso(&l.at) }),
            ),
            Event::ChatUpdated(u) => ("chat:updated", chat_updated_json(u)),
            Event::Session(_) => return None,
            Event::MessageEdited(m) => ("message:updated", message_json(m)),
            Event::MessageDeleted(d) => (
                "message:deleted",
                json!({
                    "chatId": d.chat_id,
                    "messageId": d.message_id,
                    "seq": d.seq,
                    "deletedBy": d.deleted_by,
                    "forEveryone": d.for_everyone,
                    "at": iso(&d.at),
                }),
            ),
            // Socialink's keyed devices; SUP has no such event.
            Event::Device(_) => return None,
        })
    }

    /// Typing also as the running service's `chat:user-typing` / `chat:user-stopped-typing`
    /// `{ chatId, userId, timestamp }`, for clients that use its `chat:member-typing`.
    fn encode_also(event: &Event) -> Option<(&'static str, Value)> {
        match event {
            Event::Typing(t) => Some((
                if t.typing { "chat:user-typing" } else { "chat:user-stopped-typing" },
                json!({
                    "chatId": t.chat_id,
                    "userId": t.user_id,
                    "username": t.username,
                    "userName": t.username,
                    "isTyping": t.typing,
                    "timestamp": iso(&t.at),
                }),
            )),
            _ => None,
        }
    }

    /// The running service sent every presence change to every socket and its clients never
    /// subscribe: a SUP socket follows the people its user shares a conversation with (not
    /// strangers, whose presence is none of its business).
    fn prepare(app: &Arc<AppState>, session: &Session) -> impl std::future::Future<Output = AppResult<()>> + Send {
        let (app, session) = (app.clone(), session.clone());
        async move {
            let circle = app.core.presence_circle(&session.identity.user_id, false).await?;
            app.core.hub.watch(session.conn, &circle);
            Ok(())
        }
    }

    fn greet(socket: &SocketRef, session: &Session) {
        let _ = socket.emit(
            "connected",
            &json!({
                "userId": session.identity.user_id,
                "socketId": socket.id.to_string(),
                "serverTime": iso(&chrono::Utc::now()),
            }),
        );
    }

    fn handlers(h: &mut Handlers) {
        h.on("message:new", |app: Arc<AppState>, session: Session, req: NewMessage, ticket| async move {
            let draft = Draft {
                mentions: mentions(req.metadata.as_ref()),
                chat_id: req.chat_id,
                content: req.encrypted_content,
                kind: req.message_type,
                reply_to_id: req.reply_to_id,
                metadata: req.metadata,
                temp_id: req.temp_id,
            };
            let msg = app.core.send_message(&session.actor(), draft, Some(ticket)).await?;
            Ok(NewMessageAck(msg))
        });
        // A client's `deliveredAt` / `readAt` is ignored: the server's clock decides.
        for (event, kind) in [("message:delivered", ReceiptKind::Delivered), ("message:read", ReceiptKind::Read)] {
            h.on(event, move |app: Arc<AppState>, session: Session, req: MessageRef, _| async move {
                let r = app.core.mark(&session.actor(), kind, &req.chat_id, &req.message_id).await?;
                Ok(receipt_json(r.kind, &r.chat_id, &r.message_id, &r.user_id, &r.at))
            });
        }
        h.on("chat:member-typing", |app: Arc<AppState>, session: Session, req: MemberTyping, _| async move {
            app.core.set_typing(&session.actor(), &req.chat_id, req.is_typing).await?;
            Ok(json!({ "chatId": req.chat_id, "isTyping": req.is_typing }))
        });
        // The answer to the running service's app-level `ping`; Engine.IO's heartbeat does that job.
        h.ignore("pong");
        for (event, typing) in [("message:typing", true), ("message:stop-typing", false)] {
            h.on(event, move |app: Arc<AppState>, session: Session, req: ChatRef, _| async move {
                app.core.set_typing(&session.actor(), &req.chat_id, typing).await?;
                Ok(json!({ "chatId": req.chat_id }))
            });
        }
        h.on("message:sync", |app: Arc<AppState>, session: Session, req: SyncRequest, _| async move {
            let limit = req.limit.unwrap_or(crate::core::DEFAULT_PAGE);
            let messages = app.core.messages_after(&session.actor(), &req.chat_id, req.after_seq, limit).await?;
            let last = messages.last().map(|m| m.seq).unwrap_or(req.after_seq);
            Ok(json!({
                "chatId": req.chat_id,
                "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
                "lastSeq": last,
            }))
        });

        h.on("presence:update", |app: Arc<AppState>, session: Session, req: PresenceUpdate, _| async move {
            let p = app.core.update_presence(&session.actor(), &req.status, req.custom_status).await?;
            Ok(presence_json(&p))
        });
        // Only users who share a conversation with the caller are followed; the others come
        // back in `hidden` (see `Core::visible_to`).
        h.on("presence:subscribe", |app: Arc<AppState>, session: Session, req: UserRefs, _| async move {
            let watched = app.core.watch_presence(&session.actor(), session.conn, &req.user_ids).await?;
            Ok(json!({
                "presence": watched.presence.iter().map(presence_json).collect::<Vec<_>>(),
                "hidden": watched.hidden,
            }))
        });
        h.on("presence:unsubscribe", |app: Arc<AppState>, session: Session, req: UserRefs, _| async move {
            app.core.unwatch_presence(session.conn, &req.user_ids)?;
            Ok(json!({ "userIds": req.user_ids }))
        });

        h.on("chat:join", |app: Arc<AppState>, session: Session, req: ChatRef, _| async move {
            app.core.join_chat(&session.actor(), session.conn, &req.chat_id).await?;
            Ok(fields(json!({ "chatId": req.chat_id }), [("chatId", json!(req.chat_id))]))
        });
        h.on("chat:leave", |app: Arc<AppState>, session: Session, req: ChatRef, _| async move {
            app.core.leave_chat(&session.actor(), session.conn, &req.chat_id).await?;
            Ok(json!({ "chatId": req.chat_id }))
        });
        h.on("chat:join-multiple", |app: Arc<AppState>, session: Session, req: ChatRefs, _| async move {
            let mut joined = Vec::new();
            let mut failed = Vec::new();
            for (chat, result) in app.core.join_chats(&session.actor(), session.conn, &req.chat_ids).await? {
                match result {
                    Ok(()) => joined.push(chat),
                    Err(e) => failed.push(json!({ "chatId": chat, "error": e.body_in(field_name) })),
                }
            }
            let count = joined.len();
            Ok(fields(
                json!({ "joined": joined, "failed": failed, "joinedCount": count }),
                [("joinedCount", json!(count))],
            ))
        });
        h.on("chat:get-active-members", |app: Arc<AppState>, session: Session, req: ChatRef, _| async move {
            let members = app.core.active_members(&session.actor(), &req.chat_id).await?;
            let count = members.len();
            Ok(fields(
                json!({
                    "chatId": req.chat_id,
                    "members": members.iter().map(|u| json!({ "userId": u })).collect::<Vec<_>>(),
                    "activeMembers": members,
                    "count": count,
                }),
                [("chatId", json!(req.chat_id)), ("activeMembers", json!(members)), ("count", json!(count))],
            ))
        });

        h.on("call:initiate", |app: Arc<AppState>, session: Session, req: CallInitiate, _| async move {
            let request = CallRequest {
                chat_id: req.chat_id,
                callee_id: req.callee_id,
                kind: req.call_type,
                offer: req.offer,
                call_id: req.call_id,
            };
            let call = app.core.initiate_call(&session.actor(), request).await?;
            // The running service's clients read `response.callId`.
            Ok(fields(call_json(&call), [("callId", json!(call.id))]))
        });
        h.on("call:answer", |app: Arc<AppState>, session: Session, req: CallAnswer, _| async move {
            let call = app.core.answer_call(&session.actor(), &req.call_id, req.answer).await?;
            Ok(call_json(&call))
        });
        h.on("call:reject", |app: Arc<AppState>, session: Session, req: CallReject, _| async move {
            let call = app.core.reject_call(&session.actor(), &req.call_id, req.reason).await?;
            Ok(call_json(&call))
        });
        h.on("call:end", |app: Arc<AppState>, session: Session, req: CallRef, _| async move {
            let call = app.core.end_call(&session.actor(), &req.call_id).await?;
            Ok(call_json(&call))
        });
        h.on("call:ice-candidate", |app: Arc<AppState>, session: Session, req: IceCandidate, _| async move {
            app.core.relay_ice(&session.actor(), &req.call_id, req.candidate).await?;
            Ok(json!({ "callId": req.call_id }))
        });
        h.on("call:history", |app: Arc<AppState>, session: Session, req: CallHistory, _| async move {
            let before = req
                .before
                .as_deref()
                .map(|b| {
                    chrono::DateTime::parse_from_rfc3339(b)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .map_err(|e| AppError::validation(format!("before: {e}")))
                })
                .transpose()?;
            let calls = app.core.call_history(&session.actor(), &req.chat_id, req.limit, before).await?;
            Ok(json!({
                "chatId": req.chat_id,
                "calls": calls.iter().map(call_json).collect::<Vec<_>>(),
            }))
        });

        for (event, add) in [("reaction:new", true), ("reaction:remove", false)] {
            h.on(event, move |app: Arc<AppState>, session: Session, req: ReactionRef, _| async move {
                let r = app.core.react(&session.actor(), &req.message_id, &req.emoji, add).await?;
                Ok(reaction_json(&r))
            });
        }
        h.on("reaction:get", |app: Arc<AppState>, session: Session, req: MessageOnly, _| async move {
            let (chat, summary) = app.core.reactions_of(&session.actor(), &req.message_id).await?;
            let groups = reaction_groups(&summary);
            Ok(fields(
                json!({ "messageId": req.message_id, "chatId": chat, "reactions": groups }),
                [("reactions", groups)],
            ))
        });

        h.on("notification:read", |app: Arc<AppState>, session: Session, req: NotificationRef, _| async move {
            let n = app.core.read_notification(&session.actor(), &req.notification_id).await?;
            Ok(notification_json(&n))
        });
        h.on("notification:clear", |app: Arc<AppState>, session: Session, req: NotificationRef, _| async move {
            app.core.clear_notification(&session.actor(), &req.notification_id).await?;
            Ok(json!({ "notificationId": req.notification_id }))
        });
        h.on("notification:clear-all", |app: Arc<AppState>, session: Session, _req: Nothing, _| async move {
            let cleared = app.core.clear_all_notifications(&session.actor()).await?;
            Ok(json!({ "cleared": cleared }))
        });
        h.on("notification:get-pending", |app: Arc<AppState>, session: Session, req: Pending, _| async move {
            let list = app.core.pending_notifications(&session.actor(), req.limit).await?;
            let list: Vec<Value> = list.iter().map(notification_json).collect();
            // The running service answered `{ success, notifications }`.
            Ok(fields(json!({ "notifications": list }), [("notifications", json!(list))]))
        });
    }
}

/// The `message:new` ack: `data` is [`new_message_json`], and beside it the running service's
/// `message: { message, sender }`. Written straight to the output, without building `Value`s:
/// building, copying and dropping the ack's trees was a third of a message's instructions
/// (`examples/bench/analysis.md`).
struct NewMessageAck(Message);

impl Answer for NewMessageAck {
    fn into_ack(self) -> Box<RawValue> {
        raw_ack(&MessageAckOut(&self.0))
    }
}

/// The SUP message shapes, written by serde straight from the message: the ack goes out
/// without building a `Value`, and the events' `Value`s come from the same definitions.
struct MessageAckOut<'a>(&'a Message);
/// The flat message; with `running`, also the running service's `message` and `sender`.
struct MessageOut<'a> {
    m: &'a Message,
    running: bool,
}
/// The running service's message; `status` is `sent` for anything it hands out.
struct NestedOut<'a>(&'a Message);
/// The sender's profile: the token's `username` (else `name`) and `avatar`, as last seen.
struct SenderOut<'a>(&'a Message);
/// The running service's ack field `message: { message, sender }`.
struct RunningOut<'a>(&'a Message);

impl Serialize for MessageAckOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("success", &true)?;
        map.serialize_entry("data", &MessageOut { m: self.0, running: true })?;
        map.serialize_entry("message", &RunningOut(self.0))?;
        map.end()
    }
}

impl Serialize for RunningOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("message", &NestedOut(self.0))?;
        map.serialize_entry("sender", &SenderOut(self.0))?;
        map.end()
    }
}

/// The fields the flat and the nested message both start with.
fn common_fields<M: SerializeMap>(map: &mut M, m: &Message) -> Result<(), M::Error> {
    map.serialize_entry("id", &m.id)?;
    map.serialize_entry("chatId", &m.chat_id)?;
    map.serialize_entry("senderId", &m.sender_id)?;
    map.serialize_entry("encryptedContent", &m.content)?;
    map.serialize_entry("messageType", &m.kind)?;
    map.serialize_entry("replyToId", &m.reply_to_id)?;
    map.serialize_entry("tempId", &m.temp_id)?;
    map.serialize_entry("createdAt", &iso(&m.created_at))
}

impl Serialize for MessageOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.m;
        let mut map = s.serialize_map(None)?;
        common_fields(&mut map, m)?;
        map.serialize_entry("metadata", &m.metadata)?;
        map.serialize_entry("seq", &m.seq)?;
        // Only history reads load reactions; live `message:new` keeps the seed's shape.
        if let Some(reactions) = &m.reactions {
            map.serialize_entry("reactions", reactions)?;
        }
        // Likewise only messages that were edited or deleted (or carry files) say so.
        if let Some(at) = &m.edited_at {
            map.serialize_entry("editedAt", &iso(at))?;
        }
        if m.deleted {
            map.serialize_entry("deleted", &true)?;
        }
        if !m.attachments.is_empty() {
            map.serialize_entry("attachments", &m.attachments.iter().map(attachment_json).collect::<Vec<_>>())?;
        }
        if self.running {
            map.serialize_entry("message", &NestedOut(m))?;
            map.serialize_entry("sender", &SenderOut(m))?;
        }
        map.end()
    }
}

impl Serialize for NestedOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(9))?;
        common_fields(&mut map, self.0)?;
        map.serialize_entry("status", "sent")?;
        map.end()
    }
}

impl Serialize for SenderOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let profile = m.sender.as_ref();
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("id", &m.sender_id)?;
        map.serialize_entry("username", &profile.and_then(|p| p.name.as_ref()))?;
        map.serialize_entry("avatar", &profile.and_then(|p| p.avatar.as_ref()))?;
        map.end()
    }
}

/// An ack with `data` and, beside it, top-level fields the running service's clients read.
fn fields<const N: usize>(data: Value, top: [(&str, Value); N]) -> WithFields<Value> {
    WithFields { data, fields: top.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(extra: Value) -> Message {
        let mut m = json!({
            "id": "m1", "chat_id": "c1", "seq": 7, "sender_id": "alice", "kind": "text",
            "content": "hi \"there\"", "reply_to_id": null, "metadata": null, "temp_id": "t1",
            "created_at": "2026-12-07T10:00:00.123Z", "edited_at": null, "deleted": false,
        });
        if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
            m.extend(extra);
        }
        serde_json::from_value(m).expect("a message")
    }

    #[test]
    fn the_message_ack_written_directly_equals_the_one_built_as_trees() {
        let plain = message(json!({}));
        let full = message(json!({
            "reply_to_id": "m0", "metadata": { "mentions": ["bob"] }, "edited_at": "2026-12-07T10:01:00Z",
            "deleted": true, "reactions": { "+1": ["bob"] }, "sender": { "name": "Alice", "avatar": "a.png" },
        }));
        for m in [plain, full] {
            let written: Value = serde_json::from_str(NewMessageAck(m.clone()).into_ack().get()).expect("JSON");
            let data = new_message_json(&m);
            let running = json!({ "message": data["message"], "sender": data["sender"] });
            let built = json!({ "success": true, "data": data, "message": running });
            assert_eq!(written, built);
        }
    }
}
