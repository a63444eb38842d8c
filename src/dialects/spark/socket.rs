//! The `spark` profile: Exprsn Spark's snake_case Socket.IO events (seeds/exprsn-spark.md,
//! SPEC §7.2). Only translation lives here; the REST half of Spark is in `http`.
//!
//! Spark clients never join rooms: a Spark socket hears typing in every conversation of its
//! user (`FOLLOWS_ALL_CHATS`), and at connect it starts following the presence of everyone
//! it shares a conversation with.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    core::{
        messages::{Draft, Extras},
        model::{ChatUpdated, Event, Location, Message, MessageDeleted, Notification, Presence, Reaction, ReceiptKind},
    },
    dialects::{attachment_json, iso, mentions},
    error::{AppResult, Field},
    transport::socketio::{Handlers, Session, SocketIoProfile},
    transport::AppState,
};

pub struct Spark;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    /// Required over Socket.IO; REST takes it from the path.
    #[serde(default)]
    pub conversation_id: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub encrypted: bool,
    pub reply_to_id: Option<String>,
    /// Ids from `POST /api/attachments`.
    #[serde(default)]
    pub attachments: Vec<String>,
    pub temp_id: Option<String>,
    /// `text` (default), `image`, `video`, `audio`, `voice`, `file` or `location`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub location: Option<Location>,
    pub metadata: Option<Value>,
}

impl SendMessage {
    /// The core's view of a Spark send (socket and REST alike).
    pub fn into_parts(self) -> (Draft, Extras) {
        let draft = Draft {
            mentions: mentions(self.metadata.as_ref()),
            chat_id: self.conversation_id,
            content: self.content,
            kind: self.kind.unwrap_or_else(|| "text".into()),
            reply_to_id: self.reply_to_id,
            metadata: self.metadata,
            temp_id: self.temp_id,
        };
        (draft, Extras { encrypted: self.encrypted, attachment_ids: self.attachments, location: self.location })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConversationRef {
    conversation_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageRef {
    conversation_id: String,
    message_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EditMessage {
    message_id: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteMessage {
    message_id: String,
    /// `self` (default) or `everyone`.
    delete_for: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReactionRef {
    message_id: String,
    emoji: String,
}

/// A message in Spark's shape: `{id, conversationId, senderId, content, encrypted, type,
/// attachments, reactions, edited, replyToId, seq, tempId, createdAt, …}`.
pub fn message_json(m: &Message) -> Value {
    let mut out = json!({
        "id": m.id,
        "conversationId": m.chat_id,
        "senderId": m.sender_id,
        "content": m.content,
        "encrypted": m.encrypted,
        "type": m.kind,
        "attachments": m.attachments.iter().map(attachment_json).collect::<Vec<_>>(),
        // A new message has no reactions; history reads fill them in.
        "reactions": m.reactions.clone().unwrap_or_default(),
        "edited": m.edited_at.is_some(),
        "deleted": m.deleted,
        "replyToId": m.reply_to_id,
        "seq": m.seq,
        "tempId": m.temp_id,
        "metadata": m.metadata,
        "createdAt": iso(&m.created_at),
    });
    if let Some(at) = &m.edited_at {
        out["editedAt"] = json!(iso(at));
        out["updatedAt"] = json!(iso(at));
    }
    if let Some(location) = m.metadata.as_ref().and_then(|meta| meta.get("location")).filter(|_| m.kind == "location") {
        out["location"] = location.clone();
    }
    out
}

pub fn deleted_json(d: &MessageDeleted) -> Value {
    json!({
        "messageId": d.message_id,
        "conversationId": d.chat_id,
        "seq": d.seq,
        "deleteFor": if d.for_everyone { "everyone" } else { "self" },
        "deletedBy": d.deleted_by,
        "deletedAt": iso(&d.at),
    })
}

pub fn reaction_json(r: &Reaction) -> Value {
    json!({
        "messageId": r.message_id,
        "conversationId": r.chat_id,
        "userId": r.user_id,
        "emoji": r.emoji,
        "at": iso(&r.at),
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

fn notification_json(n: &Notification) -> Value {
    // The stored shape uses snake_case keys; Spark's wire is camelCase throughout.
    let data = match serde_json::to_value(&n.data) {
        Ok(Value::Object(map)) => {
            Value::Object(map.into_iter().filter(|(k, _)| k != "kind").map(|(k, v)| (camel(&k), v)).collect())
        }
        _ => Value::Null,
    };
    json!({ "id": n.id, "type": n.data.kind(), "data": data, "read": n.read, "createdAt": iso(&n.created_at) })
}

fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `conversation_updated`: the conversation id, who and when, and only what changed.
fn conversation_updated_json(u: &ChatUpdated) -> Value {
    crate::dialects::chat_changes_json(u, "conversationId")
}

fn receipt_ack(kind: ReceiptKind, chat: &str, message: &str, user: &str, at: &chrono::DateTime<chrono::Utc>) -> Value {
    let when = match kind {
        ReceiptKind::Delivered => "deliveredAt",
        ReceiptKind::Read => "readAt",
    };
    json!({ "conversationId": chat, "messageId": message, "userId": user, when: iso(at) })
}

impl SocketIoProfile for Spark {
    const FOLLOWS_ALL_CHATS: bool = true;

    fn field_name(field: Field) -> &'static str {
        super::field_name(field)
    }

    fn encode(event: &Event) -> Option<(&'static str, Value)> {
        Some(match event {
            Event::MessageCreated(m) => ("new_message", message_json(m)),
            Event::MessageEdited(m) => ("message_updated", message_json(m)),
            Event::MessageDeleted(d) => ("message_deleted", deleted_json(d)),
            Event::Receipt(r) => (
                match r.kind {
                    ReceiptKind::Delivered => "message_delivered",
                    ReceiptKind::Read => "message_read",
                },
                receipt_ack(r.kind, &r.chat_id, &r.message_id, &r.user_id, &r.at),
            ),
            Event::Typing(t) => (
                "user_typing",
                json!({ "conversationId": t.chat_id, "userId": t.user_id, "username": t.username, "isTyping": t.typing }),
            ),
            Event::Presence(p) => ("presence_update", presence_json(p)),
            Event::Reaction(r) => (if r.added { "reaction_added" } else { "reaction_removed" }, reaction_json(r)),
            Event::Notification(n) => ("new_notification", notification_json(n)),
            Event::MemberJoined(j) => (
                "member_joined",
                json!({ "conversationId": j.chat_id, "userId": j.user_id, "role": j.role, "addedBy": j.added_by }),
            ),
            Event::MemberLeft(l) => {
                ("member_left", json!({ "conversationId": l.chat_id, "userId": l.user_id, "removedBy": l.removed_by }))
            }
            Event::ChatUpdated(u) => ("conversation_updated", conversation_updated_json(u)),
            // Spark has no calls; its users are reached through the sup dialect for those.
            Event::Call(_) | Event::CallChanged(..) | Event::Session(_) => return None,
            // Socialink's keyed devices; Spark has no such event.
            Event::Device(_) => return None,
        })
    }

    fn prepare(app: &Arc<AppState>, session: &Session) -> impl std::future::Future<Output = AppResult<()>> + Send {
        let (app, session) = (app.clone(), session.clone());
        async move {
            let circle = app.core.presence_circle(&session.identity.user_id, false).await?;
            app.core.hub.watch(session.conn, &circle);
            Ok(())
        }
    }

    fn handlers(h: &mut Handlers) {
        h.on("send_message", |app: Arc<AppState>, session: Session, req: SendMessage, ticket| async move {
            let (draft, extras) = req.into_parts();
            let msg = app.core.send_message_with(&session.actor(), draft, extras, Some(ticket)).await?;
            Ok(message_json(&msg))
        });
        for (event, typing) in [("typing_start", true), ("typing_stop", false)] {
            h.on(event, move |app: Arc<AppState>, session: Session, req: ConversationRef, _| async move {
                app.core.set_typing(&session.actor(), &req.conversation_id, typing).await?;
                Ok(json!({ "conversationId": req.conversation_id, "isTyping": typing }))
            });
        }
        for (event, kind) in [("mark_read", ReceiptKind::Read), ("mark_delivered", ReceiptKind::Delivered)] {
            h.on(event, move |app: Arc<AppState>, session: Session, req: MessageRef, _| async move {
                let r = app.core.mark(&session.actor(), kind, &req.conversation_id, &req.message_id).await?;
                Ok(receipt_ack(kind, &r.chat_id, &r.message_id, &r.user_id, &r.at))
            });
        }
        h.on("edit_message", |app: Arc<AppState>, session: Session, req: EditMessage, _| async move {
            let msg = app.core.edit_message(&session.actor(), &req.message_id, &req.content).await?;
            Ok(message_json(&msg))
        });
        h.on("delete_message", |app: Arc<AppState>, session: Session, req: DeleteMessage, _| async move {
            let everyone = delete_for(req.delete_for.as_deref())?;
            let deleted = app.core.delete_message(&session.actor(), &req.message_id, everyone).await?;
            Ok(deleted_json(&deleted))
        });
        for (event, add) in [("add_reaction", true), ("remove_reaction", false)] {
            h.on(event, move |app: Arc<AppState>, session: Session, req: ReactionRef, _| async move {
                let r = app.core.react(&session.actor(), &req.message_id, &req.emoji, add).await?;
                Ok(reaction_json(&r))
            });
        }
    }
}

/// `deleteFor`: `self` (the default) or `everyone`; true for everyone.
pub fn delete_for(value: Option<&str>) -> AppResult<bool> {
    match value {
        None | Some("self") => Ok(false),
        Some("everyone") => Ok(true),
        Some(_) => Err(crate::error::AppError::validation("deleteFor must be self or everyone")),
    }
}
