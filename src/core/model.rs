//! Domain types and the events the core publishes. Nothing here knows a wire format: profiles
//! decide names and shapes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub type UserId = String;
pub type ChatId = String;

/// Who is acting: the verified token subject, and the connection it came through (so that
/// a live event is not echoed to the connection that caused it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: UserId,
    pub username: Option<String>,
    pub conn: Option<crate::fanout::ConnId>,
}

impl Actor {
    pub fn rest(user_id: impl Into<String>) -> Self {
        Self { user_id: user_id.into(), username: None, conn: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConversationKind {
    Direct,
    Group,
    SelfNote,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Direct => "direct",
            ConversationKind::Group => "group",
            ConversationKind::SelfNote => "self",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(ConversationKind::Direct),
            "group" => Some(ConversationKind::Group),
            "self" => Some(ConversationKind::SelfNote),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ChatId,
    pub kind: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub avatar: Option<String>,
    pub encrypted: bool,
    pub created_by: UserId,
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Member {
    pub user_id: UserId,
    pub role: String,
    pub username: Option<String>,
    pub name: Option<String>,
    pub avatar: Option<String>,
    pub joined_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub chat_id: ChatId,
    pub seq: i64,
    pub sender_id: UserId,
    pub kind: String,
    pub content: String,
    pub reply_to_id: Option<String>,
    pub metadata: Option<Value>,
    pub temp_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
}

impl From<entity::message::Model> for Message {
    fn from(m: entity::message::Model) -> Self {
        Message {
            id: m.id,
            chat_id: m.conversation_id,
            seq: m.seq,
            sender_id: m.sender_id,
            kind: m.kind,
            content: m.content,
            reply_to_id: m.reply_to_id,
            metadata: m.metadata,
            temp_id: m.temp_id,
            created_at: m.created_at,
            edited_at: m.edited_at,
            deleted: m.deleted_at.is_some(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptKind {
    Delivered,
    Read,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub kind: ReceiptKind,
    pub chat_id: ChatId,
    pub message_id: String,
    pub seq: i64,
    pub user_id: UserId,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresenceStatus {
    Online,
    Away,
    Busy,
    Offline,
}

impl PresenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceStatus::Online => "online",
            PresenceStatus::Away => "away",
            PresenceStatus::Busy => "busy",
            PresenceStatus::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "online" => Some(PresenceStatus::Online),
            "away" => Some(PresenceStatus::Away),
            "busy" => Some(PresenceStatus::Busy),
            "offline" => Some(PresenceStatus::Offline),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Presence {
    pub user_id: UserId,
    pub status: PresenceStatus,
    pub custom_status: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Typing {
    pub chat_id: ChatId,
    pub user_id: UserId,
    pub username: Option<String>,
    pub typing: bool,
}

/// What the core tells connected clients about. Profiles encode each variant in their own
/// event names and shapes, or ignore it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Event {
    MessageCreated(Message),
    Receipt(Receipt),
    Typing(Typing),
    Presence(Presence),
}

/// Who receives an event. These are the rooms `user:{id}` and `chat:{id}` of the spec, plus
/// the watchers of one user's presence.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Audience {
    /// Every connection of these users (the `user:{id}` rooms).
    Users(Vec<UserId>),
    /// Connections that joined this chat (the `chat:{id}` room).
    Chat(ChatId),
    /// Connections subscribed to this user's presence.
    PresenceWatchers(UserId),
}
