//! What the core tells connected clients about, and who hears it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{calls::*, chat::Role, ids::*, message::*, prekeys::DeviceNews, presence::*, session::SessionNotice};

/// What a notification is about. Stored as JSON (serde's shape of this enum is the storage
/// format; profiles choose the wire shape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotificationData {
    Mention { chat_id: ChatId, message_id: MessageId, sender_id: UserId },
    MissedCall { call_id: String, chat_id: ChatId, caller_id: UserId, call_kind: CallKind },
    AddedToChat { chat_id: ChatId, added_by: UserId, role: Role },
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
    pub role: Role,
    pub added_by: UserId,
    #[serde(default = "Utc::now")]
    pub at: DateTime<Utc>,
    /// The conversation's membership epoch after the change.
    #[serde(default)]
    pub epoch: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberLeft {
    pub chat_id: ChatId,
    pub user_id: UserId,
    /// Who removed them; themselves when they left.
    pub removed_by: UserId,
    #[serde(default = "Utc::now")]
    pub at: DateTime<Utc>,
    /// The conversation's membership epoch after the change.
    #[serde(default)]
    pub epoch: i64,
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

/// What the core tells connected clients about. Profiles encode each variant in their own
/// event names and shapes, or ignore it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Event {
    MessageCreated(Message),
    Receipt(Receipt),
    Typing(Typing),
    Presence(Presence),
    Call(CallSignal),
    /// A call changed state (or started): to every member of its chat.
    CallChanged(CallChange, Call),
    Reaction(Reaction),
    Notification(Notification),
    MemberJoined(MemberJoined),
    MemberLeft(MemberLeft),
    ChatUpdated(ChatUpdated),
    /// A message's content changed; carries the message as it is now.
    MessageEdited(Message),
    MessageDeleted(MessageDeleted),
    /// Something happened in an anonymous session (joins, leaves, keys, typing, downloads).
    Session(SessionNotice),
    /// About one keyed device (Socialink), for its owner's connections.
    Device(DeviceNews),
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
            sender_device: Some("phone".into()),
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
            recipient: None,
            encoding: Default::default(),
            ephemeral_key: None,
            expires_at: None,
        };
        let deleted = MessageDeleted {
            chat_id: "c1".into(),
            message_id: "m1".into(),
            seq: 7,
            deleted_by: "u1".into(),
            for_everyone: true,
            at,
            expired: false,
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
