//! The `sup` profile: SUP Messenger's `area:verb` events (seeds/sup-messenger-websocket.md,
//! SPEC §7.1). Only translation lives here.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use socketioxide::extract::SocketRef;

use super::{
    iso,
    socketio::{on, on_unknown, Session, SocketIoProfile},
};
use crate::{
    app::AppState,
    core::{
        messages::Draft,
        model::{Event, Message, Presence, ReceiptKind},
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

pub fn message_json(m: &Message) -> Value {
    json!({
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
    })
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

    fn register_handlers(s: &SocketRef) {
        on(s, "message:new", |app: Arc<AppState>, session: Session, req: NewMessage, ticket| async move {
            let draft = Draft {
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
            on(s, event, move |app: Arc<AppState>, session: Session, req: MessageRef, _| async move {
                let r = app.core.mark(&session.actor(), kind, &req.chat_id, &req.message_id).await?;
                Ok(json!({ "chatId": r.chat_id, "messageId": r.message_id, "userId": r.user_id, "at": iso(&r.at) }))
            });
        }
        for (event, typing) in [("message:typing", true), ("message:stop-typing", false)] {
            on(s, event, move |app: Arc<AppState>, session: Session, req: ChatRef, _| async move {
                app.core.set_typing(&session.actor(), &req.chat_id, typing).await?;
                Ok(json!({ "chatId": req.chat_id }))
            });
        }
        on(s, "message:sync", |app: Arc<AppState>, session: Session, req: SyncRequest, _| async move {
            let limit = req.limit.unwrap_or(crate::core::DEFAULT_PAGE);
            let messages = app.core.messages_after(&session.actor(), &req.chat_id, req.after_seq, limit).await?;
            let last = messages.last().map(|m| m.seq).unwrap_or(req.after_seq);
            Ok(json!({
                "chatId": req.chat_id,
                "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
                "lastSeq": last,
            }))
        });

        on(s, "presence:update", |app: Arc<AppState>, session: Session, req: PresenceUpdate, _| async move {
            let p = app.core.update_presence(&session.actor(), &req.status, req.custom_status).await?;
            Ok(presence_json(&p))
        });
        on(s, "presence:subscribe", |app: Arc<AppState>, session: Session, req: UserRefs, _| async move {
            let ids = user_ids(req)?;
            app.core.hub.watch(session.conn, &ids);
            let current = app.core.presence_of(&ids).await?;
            Ok(json!({ "presence": current.iter().map(presence_json).collect::<Vec<_>>() }))
        });
        on(s, "presence:unsubscribe", |app: Arc<AppState>, session: Session, req: UserRefs, _| async move {
            let ids = user_ids(req)?;
            app.core.hub.unwatch(session.conn, &ids);
            Ok(json!({ "userIds": ids }))
        });

        on(s, "chat:join", |app: Arc<AppState>, session: Session, req: ChatRef, _| async move {
            app.core.join_chat(&session.actor(), session.conn, &req.chat_id).await?;
            Ok(json!({ "chatId": req.chat_id }))
        });
        on(s, "chat:leave", |app: Arc<AppState>, session: Session, req: ChatRef, _| async move {
            app.core.leave_chat(&session.actor(), session.conn, &req.chat_id).await?;
            Ok(json!({ "chatId": req.chat_id }))
        });
        on(s, "chat:join-multiple", |app: Arc<AppState>, session: Session, req: ChatRefs, _| async move {
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
        on(s, "chat:get-active-members", |app: Arc<AppState>, session: Session, req: ChatRef, _| async move {
            let members = app.core.active_members(&session.actor(), &req.chat_id).await?;
            Ok(
                json!({ "chatId": req.chat_id, "members": members.iter().map(|u| json!({ "userId": u })).collect::<Vec<_>>() }),
            )
        });
        on_unknown(s);
    }
}
