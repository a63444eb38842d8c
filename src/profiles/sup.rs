//! The `sup` profile: SUP Messenger's `area:verb` events (seeds/sup-messenger-websocket.md,
//! SPEC §7.1). Only translation lives here.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use socketioxide::extract::SocketRef;

use super::{
    attachment_json, iso, mentions,
    socketio::{Handlers, Session, SocketIoProfile},
};
use crate::{
    app::AppState,
    core::{
        calls::CallRequest,
        messages::Draft,
        model::{
            Call, CallSignal, ChatUpdated, Event, Message, Notification, NotificationData, Presence, Reaction,
            ReceiptKind,
        },
        presence::MAX_WATCH,
    },
    error::{AppError, AppResult},
};

pub struct Sup;

/// The most chats `chat:join-multiple` takes at once.
const MAX_JOIN_MULTIPLE: usize = 500;

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
    user_ids: Vec<String>,
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
    callee_id: Option<String>,
    call_type: String,
    offer: Option<Value>,
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReactionRef {
    message_id: String,
    emoji: String,
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

pub fn message_json(m: &Message) -> Value {
    let mut out = json!({
        "id": m.id,
        "chatId": m.chat_id,
        "senderId": m.sender_id,
        "encryptedContent": m.content,
        "messageType": m.kind,
        "replyToId": m.reply_to_id,
        "metadata": m.metadata,
        "tempId": m.temp_id,
        "seq": m.seq,
        "createdAt": iso(&m.created_at),
    });
    // Only history reads load reactions; live `message:new` keeps the seed's shape.
    if let Some(reactions) = &m.reactions {
        out["reactions"] = json!(reactions);
    }
    // Likewise only messages that were edited or deleted (or carry files) say so.
    if let Some(at) = &m.edited_at {
        out["editedAt"] = json!(iso(at));
    }
    if m.deleted {
        out["deleted"] = json!(true);
    }
    if !m.attachments.is_empty() {
        out["attachments"] = json!(m.attachments.iter().map(attachment_json).collect::<Vec<_>>());
    }
    out
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

fn call_signal(signal: &CallSignal) -> (&'static str, Value) {
    match signal {
        CallSignal::Incoming { call, caller, offer } => (
            "call:incoming",
            json!({
                "callId": call.id,
                "chatId": call.chat_id,
                "callerId": call.caller_id,
                "callerName": caller.name,
                "calleeIds": call.callee_ids,
                "callType": call.kind.as_str(),
                "offer": offer,
                "startedAt": iso(&call.started_at),
            }),
        ),
        CallSignal::Answered { call_id, chat_id, user_id, answer, .. } => {
            ("call:answer", json!({ "callId": call_id, "chatId": chat_id, "userId": user_id, "answer": answer }))
        }
        CallSignal::Rejected { call_id, chat_id, user_id, reason, status, .. } => (
            "call:reject",
            json!({
                "callId": call_id,
                "chatId": chat_id,
                "userId": user_id,
                "reason": reason,
                "status": status.as_str(),
            }),
        ),
        CallSignal::Ended { call_id, chat_id, reason, ended_by, answered_by, duration_ms, .. } => (
            "call:end",
            json!({
                "callId": call_id,
                "chatId": chat_id,
                "reason": reason.as_str(),
                "endedBy": ended_by,
                "answeredBy": answered_by,
                "duration": duration_ms.map(|ms| ms / 1000),
                "durationMs": duration_ms,
            }),
        ),
        CallSignal::IceCandidate { call_id, chat_id, user_id, candidate } => (
            "call:ice-candidate",
            json!({ "callId": call_id, "chatId": chat_id, "userId": user_id, "candidate": candidate }),
        ),
    }
}

fn reaction_json(r: &Reaction) -> Value {
    json!({
        "messageId": r.message_id,
        "chatId": r.chat_id,
        "userId": r.user_id,
        "emoji": r.emoji,
        "at": iso(&r.at),
    })
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
    json!({
        "id": n.id,
        "type": n.data.kind(),
        "data": data,
        "read": n.read,
        "createdAt": iso(&n.created_at),
    })
}

/// `chat:updated`: the chat id, who and when, and only the fields that changed.
fn chat_updated_json(u: &ChatUpdated) -> Value {
    super::chat_changes_json(u, "chatId")
}

fn presence_json(p: &Presence) -> Value {
    json!({
        "userId": p.user_id,
        "status": p.status.as_str(),
        "customStatus": p.custom_status,
        "lastSeen": p.last_seen.as_ref().map(iso),
    })
}

fn user_ids(refs: UserRefs) -> AppResult<Vec<String>> {
    if refs.user_ids.len() > MAX_WATCH {
        return Err(AppError::validation(format!("userIds takes at most {MAX_WATCH} ids")));
    }
    for id in &refs.user_ids {
        crate::core::check_id("userIds[]", id)?;
    }
    Ok(refs.user_ids)
}

impl SocketIoProfile for Sup {
    fn encode(event: &Event) -> Option<(&'static str, Value)> {
        Some(match event {
            Event::MessageCreated(m) => ("message:new", message_json(m)),
            Event::Receipt(r) => (
                match r.kind {
                    ReceiptKind::Delivered => "message:delivered",
                    ReceiptKind::Read => "message:read",
                },
                json!({ "chatId": r.chat_id, "messageId": r.message_id, "userId": r.user_id, "at": iso(&r.at) }),
            ),
            Event::Typing(t) => (
                if t.typing { "message:typing" } else { "message:stop-typing" },
                json!({ "chatId": t.chat_id, "userId": t.user_id, "username": t.username }),
            ),
            Event::Presence(p) => ("presence:update", presence_json(p)),
            Event::Call(signal) => call_signal(signal),
            Event::Reaction(r) => (if r.added { "reaction:new" } else { "reaction:remove" }, reaction_json(r)),
            Event::Notification(n) => ("notification:new", notification_json(n)),
            Event::MemberJoined(j) => (
                "chat:member-joined",
                json!({ "chatId": j.chat_id, "userId": j.user_id, "role": j.role, "addedBy": j.added_by }),
            ),
            Event::MemberLeft(l) => {
                ("chat:member-left", json!({ "chatId": l.chat_id, "userId": l.user_id, "removedBy": l.removed_by }))
            }
            Event::ChatUpdated(u) => ("chat:updated", chat_updated_json(u)),
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
        })
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
            Ok(message_json(&msg))
        });
        for (event, kind) in [("message:delivered", ReceiptKind::Delivered), ("message:read", ReceiptKind::Read)] {
            h.on(event, move |app: Arc<AppState>, session: Session, req: MessageRef, _| async move {
                let r = app.core.mark(&session.actor(), kind, &req.chat_id, &req.message_id).await?;
                Ok(json!({ "chatId": r.chat_id, "messageId": r.message_id, "userId": r.user_id, "at": iso(&r.at) }))
            });
        }
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
        h.on("presence:subscribe", |app: Arc<AppState>, session: Session, req: UserRefs, _| async move {
            let ids = user_ids(req)?;
            app.core.hub.watch(session.conn, &ids);
            let current = app.core.presence_of(&ids).await?;
            Ok(json!({ "presence": current.iter().map(presence_json).collect::<Vec<_>>() }))
        });
        h.on("presence:unsubscribe", |app: Arc<AppState>, session: Session, req: UserRefs, _| async move {
            let ids = user_ids(req)?;
            app.core.hub.unwatch(session.conn, &ids);
            Ok(json!({ "userIds": ids }))
        });

        h.on("chat:join", |app: Arc<AppState>, session: Session, req: ChatRef, _| async move {
            app.core.join_chat(&session.actor(), session.conn, &req.chat_id).await?;
            Ok(json!({ "chatId": req.chat_id }))
        });
        h.on("chat:leave", |app: Arc<AppState>, session: Session, req: ChatRef, _| async move {
            app.core.leave_chat(&session.actor(), session.conn, &req.chat_id).await?;
            Ok(json!({ "chatId": req.chat_id }))
        });
        h.on("chat:join-multiple", |app: Arc<AppState>, session: Session, req: ChatRefs, _| async move {
            if req.chat_ids.len() > MAX_JOIN_MULTIPLE {
                return Err(AppError::validation(format!("chatIds takes at most {MAX_JOIN_MULTIPLE} ids")));
            }
            let mut joined = Vec::new();
            let mut failed = Vec::new();
            for chat in req.chat_ids {
                match app.core.join_chat(&session.actor(), session.conn, &chat).await {
                    Ok(()) => joined.push(chat),
                    Err(e) => failed.push(json!({ "chatId": chat, "error": e.body() })),
                }
            }
            Ok(json!({ "joined": joined, "failed": failed }))
        });
        h.on("chat:get-active-members", |app: Arc<AppState>, session: Session, req: ChatRef, _| async move {
            let members = app.core.active_members(&session.actor(), &req.chat_id).await?;
            Ok(
                json!({ "chatId": req.chat_id, "members": members.iter().map(|u| json!({ "userId": u })).collect::<Vec<_>>() }),
            )
        });

        h.on("call:initiate", |app: Arc<AppState>, session: Session, req: CallInitiate, _| async move {
            let request = CallRequest {
                chat_id: req.chat_id,
                callee_id: req.callee_id,
                kind: req.call_type,
                offer: req.offer,
                call_id: None,
            };
            let call = app.core.initiate_call(&session.actor(), request).await?;
            Ok(call_json(&call))
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
            Ok(json!({
                "notifications": list.iter().map(notification_json).collect::<Vec<_>>(),
            }))
        });
    }
}
