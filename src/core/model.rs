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
    /// The device acting (`''`, the default device, when the connection named none).
    pub device: String,
    pub username: Option<String>,
    /// The avatar claim of the token, shown with what the actor sends.
    #[serde(default)]
    pub avatar: Option<String>,
    pub conn: Option<crate::fanout::ConnId>,
}

impl Actor {
    pub fn rest(user_id: impl Into<String>) -> Self {
        Self { user_id: user_id.into(), device: String::new(), username: None, avatar: None, conn: None }
    }

    /// How the actor shows themselves to others.
    pub fn profile(&self) -> Profile {
        Profile { name: self.username.clone(), avatar: self.avatar.clone() }
    }
}

/// How a user shows themselves to others: the profile claims of their token (`username`,
/// else `name`, and `avatar`), as last seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: Option<String>,
    pub avatar: Option<String>,
}

impl Profile {
    pub fn of(user: &entity::user::Model) -> Self {
        Profile { name: user.username.clone().or_else(|| user.name.clone()), avatar: user.avatar.clone() }
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

impl Member {
    /// A member with the profile claims last seen for them (none when they never connected).
    pub fn from_rows(m: entity::member::Model, user: Option<&entity::user::Model>) -> Self {
        Member {
            username: user.and_then(|u| u.username.clone()),
            name: user.and_then(|u| u.name.clone()),
            avatar: user.and_then(|u| u.avatar.clone()),
            user_id: m.user_id,
            role: m.role,
            joined_at: m.joined_at,
        }
    }
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
    /// Reactions by emoji, when the read loaded them (history reads do; a freshly sent or
    /// pushed message does not, since it has none or is about to be fetched again).
    #[serde(default)]
    pub reactions: Option<ReactionSummary>,
    /// The client marked `content` as ciphertext.
    #[serde(default)]
    pub encrypted: bool,
    /// Files sent with the message, in the order the sender listed them.
    #[serde(default)]
    pub attachments: Vec<AttachmentInfo>,
    /// The sender's profile, on messages handed out live or pushed as missed (not on
    /// history reads, whose readers know the members).
    #[serde(default)]
    pub sender: Option<Profile>,
}

/// What a message says about one of its attachments. Serde's shape of this struct is also
/// how it is stored with the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    pub id: String,
    /// `image`, `video`, `audio` or `file`.
    pub kind: String,
    /// The sniffed type of the stored bytes.
    pub content_type: String,
    pub file_name: String,
    pub size: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub has_thumbnail: bool,
}

/// A shared position: latitude and longitude in degrees (WGS 84).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    /// Radius of uncertainty in metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// A place name or address to show with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Who reacted with what: emoji → user ids, in the order they reacted.
pub type ReactionSummary = std::collections::BTreeMap<String, Vec<UserId>>;

impl From<entity::message::Model> for Message {
    fn from(m: entity::message::Model) -> Self {
        let attachments = match m.attachments {
            None => Vec::new(),
            Some(json) => serde_json::from_value(json).unwrap_or_else(|e| {
                // Written by us, so this means a bug or a hand-edited row: show the message
                // without them rather than not at all.
                tracing::warn!(message = %m.id, cause = %e, "unreadable attachment list");
                Vec::new()
            }),
        };
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
            reactions: None,
            encrypted: m.encrypted,
            attachments,
            sender: None,
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
    #[serde(default = "Utc::now")]
    pub at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallKind {
    Audio,
    Video,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Audio => "audio",
            CallKind::Video => "video",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "audio" => Some(CallKind::Audio),
            "video" => Some(CallKind::Video),
            _ => None,
        }
    }
}

/// The call state machine: `Ringing` → `Active` → `Ended`; a ringing call can also end as
/// `Rejected` (every callee declined) or `Missed` (nobody answered in time, or the caller
/// gave up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallStatus {
    Ringing,
    Active,
    Ended,
    Rejected,
    Missed,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ringing => "ringing",
            CallStatus::Active => "active",
            CallStatus::Ended => "ended",
            CallStatus::Rejected => "rejected",
            CallStatus::Missed => "missed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ringing" => Some(CallStatus::Ringing),
            "active" => Some(CallStatus::Active),
            "ended" => Some(CallStatus::Ended),
            "rejected" => Some(CallStatus::Rejected),
            "missed" => Some(CallStatus::Missed),
            _ => None,
        }
    }

    pub fn is_live(self) -> bool {
        matches!(self, CallStatus::Ringing | CallStatus::Active)
    }
}

/// Why a call (or its ringing on some devices) stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallEndReason {
    /// A participant of an active call hung up.
    Hangup,
    /// The caller gave up before anyone answered.
    Cancelled,
    /// Nobody answered within the ring timeout.
    Missed,
    /// Every callee declined.
    Rejected,
    /// Another device of this user, or another member of a group, answered.
    AnsweredElsewhere,
    /// Another device of this user declined.
    RejectedElsewhere,
    /// A participant had no connection left for longer than the grace period.
    Disconnected,
}

impl CallEndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CallEndReason::Hangup => "hangup",
            CallEndReason::Cancelled => "cancelled",
            CallEndReason::Missed => "missed",
            CallEndReason::Rejected => "rejected",
            CallEndReason::AnsweredElsewhere => "answered_elsewhere",
            CallEndReason::RejectedElsewhere => "rejected_elsewhere",
            CallEndReason::Disconnected => "disconnected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            CallEndReason::Hangup,
            CallEndReason::Cancelled,
            CallEndReason::Missed,
            CallEndReason::Rejected,
            CallEndReason::AnsweredElsewhere,
            CallEndReason::RejectedElsewhere,
            CallEndReason::Disconnected,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Call {
    pub id: String,
    pub chat_id: ChatId,
    pub caller_id: UserId,
    /// Everyone who was rung.
    pub callee_ids: Vec<UserId>,
    pub kind: CallKind,
    pub status: CallStatus,
    pub answered_by: Option<UserId>,
    pub ended_by: Option<UserId>,
    pub end_reason: Option<CallEndReason>,
    pub started_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
}

/// Who placed a call and what kind of call it is. Every signal of the call repeats it, so a
/// client can show the call (and its caller) from any one of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallOrigin {
    pub caller_id: UserId,
    pub caller: Profile,
    pub kind: CallKind,
}

/// Call signaling. Offers, answers and ICE candidates are opaque to the server (WebRTC SDP
/// and candidates as the clients produce them) and relayed untouched.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CallSignal {
    /// To every device of the callees.
    Incoming {
        call: Call,
        caller: Profile,
        offer: Option<Value>,
    },
    /// To the caller: `user_id` picked up.
    Answered {
        call_id: String,
        chat_id: ChatId,
        origin: CallOrigin,
        user_id: UserId,
        answer: Option<Value>,
    },
    /// To the caller: `user_id` declined; `status` says whether the call is over.
    Rejected {
        call_id: String,
        chat_id: ChatId,
        origin: CallOrigin,
        user_id: UserId,
        reason: Option<String>,
        status: CallStatus,
    },
    /// The call is over for the receiver (or stopped ringing on this device).
    Ended {
        call_id: String,
        chat_id: ChatId,
        origin: CallOrigin,
        reason: CallEndReason,
        ended_by: Option<UserId>,
        answered_by: Option<UserId>,
        duration_ms: Option<i64>,
    },
    IceCandidate {
        call_id: String,
        chat_id: ChatId,
        user_id: UserId,
        candidate: Value,
    },
}

/// A reaction added (`added`) or removed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reaction {
    pub message_id: String,
    pub chat_id: ChatId,
    pub user_id: UserId,
    /// The reacting user's display name, when their token gave one.
    #[serde(default)]
    pub user_name: Option<String>,
    pub emoji: String,
    pub at: DateTime<Utc>,
    pub added: bool,
}

/// What a notification is about. Stored as JSON (serde's shape of this enum is the storage
/// format; profiles choose the wire shape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotificationData {
    Mention { chat_id: ChatId, message_id: String, sender_id: UserId },
    MissedCall { call_id: String, chat_id: ChatId, caller_id: UserId, call_kind: CallKind },
    AddedToChat { chat_id: ChatId, added_by: UserId, role: String },
}

impl NotificationData {
    pub fn kind(&self) -> &'static str {
        match self {
            NotificationData::Mention { .. } => "mention",
            NotificationData::MissedCall { .. } => "missed_call",
            NotificationData::AddedToChat { .. } => "added_to_chat",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub user_id: UserId,
    pub data: NotificationData,
    pub read: bool,
    pub created_at: DateTime<Utc>,
    /// The user's unread notifications when this one was pushed, itself included (an app
    /// badge); not known on notifications read back from the store.
    #[serde(default)]
    pub unread: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberJoined {
    pub chat_id: ChatId,
    pub user_id: UserId,
    pub role: String,
    pub added_by: UserId,
    #[serde(default = "Utc::now")]
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberLeft {
    pub chat_id: ChatId,
    pub user_id: UserId,
    /// Who removed them; themselves when they left.
    pub removed_by: UserId,
    #[serde(default = "Utc::now")]
    pub at: DateTime<Utc>,
}

/// Which details of a chat a [`ChatUpdated`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatField {
    Name,
    Description,
    Avatar,
    Members,
    Owner,
}

/// A chat's details after a change, with the list of what changed (a field can change to
/// nothing, which an `Option` alone could not tell apart from "unchanged").
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChatUpdated {
    pub chat_id: ChatId,
    pub changed: Vec<ChatField>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub avatar: Option<String>,
    pub member_count: usize,
    pub owner_id: Option<UserId>,
    pub updated_by: UserId,
    pub updated_at: DateTime<Utc>,
}

/// A message deleted for everyone (its content is gone), or for `deleted_by` alone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MessageDeleted {
    pub chat_id: ChatId,
    pub message_id: String,
    pub seq: i64,
    pub deleted_by: UserId,
    pub for_everyone: bool,
    pub at: DateTime<Utc>,
}

/// What the core tells connected clients about. Profiles encode each variant in their own
/// event names and shapes, or ignore it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Event {
    MessageCreated(Message),
    Receipt(Receipt),
    Typing(Typing),
    Presence(Presence),
    Call(CallSignal),
    Reaction(Reaction),
    Notification(Notification),
    MemberJoined(MemberJoined),
    MemberLeft(MemberLeft),
    ChatUpdated(ChatUpdated),
    /// A message's content changed; carries the message as it is now.
    MessageEdited(Message),
    MessageDeleted(MessageDeleted),
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
    /// The chat's room, plus every connection of these members whose dialect follows all of
    /// its user's chats without joining rooms (Spark clients have no join event).
    ChatFollowers(ChatId, Vec<UserId>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events cross instances as JSON (the Redis bus): the ones Spark added must survive it.
    #[test]
    fn edits_deletions_and_attachments_survive_the_bus() {
        let at = Utc::now();
        let message = Message {
            id: "m1".into(),
            chat_id: "c1".into(),
            seq: 7,
            sender_id: "u1".into(),
            kind: "image".into(),
            content: String::new(),
            reply_to_id: None,
            metadata: None,
            temp_id: None,
            created_at: at,
            edited_at: Some(at),
            deleted: false,
            reactions: None,
            encrypted: true,
            attachments: vec![AttachmentInfo {
                id: "a1".into(),
                kind: "image".into(),
                content_type: "image/png".into(),
                file_name: "p.png".into(),
                size: 42,
                width: Some(3),
                height: Some(2),
                has_thumbnail: true,
            }],
            sender: None,
        };
        let deleted = MessageDeleted {
            chat_id: "c1".into(),
            message_id: "m1".into(),
            seq: 7,
            deleted_by: "u1".into(),
            for_everyone: true,
            at,
        };
        let events = vec![
            (Audience::Users(vec!["u1".into()]), Event::MessageEdited(message)),
            (Audience::ChatFollowers("c1".into(), vec!["u1".into(), "u2".into()]), Event::MessageDeleted(deleted)),
        ];
        let json = serde_json::to_string(&events).expect("serialize");
        let back: Vec<(Audience, Event)> = serde_json::from_str(&json).expect("deserialize");
        match &back[0].1 {
            Event::MessageEdited(m) => {
                assert!(m.encrypted);
                assert_eq!(m.attachments[0].size, 42);
                assert_eq!(m.edited_at, Some(at));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            matches!(&back[1], (Audience::ChatFollowers(c, m), Event::MessageDeleted(d)) if c == "c1" && m.len() == 2 && d.for_everyone)
        );
    }
}
