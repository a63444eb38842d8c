//! Messages, what they carry, and what happens to them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    chat::Profile,
    ids::{ChatId, DeviceId, MessageId, UserId},
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub chat_id: ChatId,
    pub seq: i64,
    pub sender_id: UserId,
    /// The device it was sent from: that device has it from its ack; the sender's other
    /// devices are pushed it. `None` for messages stored before devices were tracked.
    #[serde(default)]
    pub sender_device: Option<DeviceId>,
    pub kind: String,
    pub content: String,
    pub reply_to_id: Option<MessageId>,
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
    /// The member it is addressed to; `None`: every member. Only the recipient and the
    /// sender are handed it; other members' connections only note its `seq` as passed (it
    /// is not theirs to read), so `seq` stays gapless for everyone.
    #[serde(default)]
    pub recipient: Option<UserId>,
    /// How `content` was written (each message keeps it, so bytes round-trip exactly).
    #[serde(default)]
    pub encoding: BodyEncoding,
    /// Socialink's ephemeral key, standard padded base64; `None` when empty.
    #[serde(default)]
    pub ephemeral_key: Option<String>,
    /// A self-destructing message: never read again after this time, then deleted.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// How a message's `content` is written. Text dialects (SUP, Spark, Mrezhen) write text;
/// Socialink writes bytes (ciphertext), kept as standard padded base64 text, which is also
/// what the text dialects show of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyEncoding {
    #[default]
    Text,
    Base64,
}

impl BodyEncoding {
    /// The stored marker: `None` for text.
    pub fn stored(self) -> Option<&'static str> {
        match self {
            BodyEncoding::Text => None,
            BodyEncoding::Base64 => Some("base64"),
        }
    }

    pub fn from_stored(marker: Option<&str>) -> Self {
        match marker {
            Some("base64") => BodyEncoding::Base64,
            _ => BodyEncoding::Text,
        }
    }
}

impl Message {
    /// Whether a self-destructing message has expired at `now`.
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether `user` may be handed this message: it is addressed to everyone or to them, or
    /// they sent it.
    pub fn is_for(&self, user: &str) -> bool {
        self.sender_id == user || self.recipient.as_deref().is_none_or(|r| r == user)
    }
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptKind {
    Delivered,
    Read,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub kind: ReceiptKind,
    pub chat_id: ChatId,
    pub message_id: MessageId,
    pub seq: i64,
    pub user_id: UserId,
    pub at: DateTime<Utc>,
}

/// A reaction added (`added`) or removed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reaction {
    pub message_id: MessageId,
    pub chat_id: ChatId,
    pub user_id: UserId,
    /// The reacting user's display name, when their token gave one.
    #[serde(default)]
    pub user_name: Option<String>,
    pub emoji: String,
    pub at: DateTime<Utc>,
    pub added: bool,
}

/// A message deleted for everyone (its content is gone), or for `deleted_by` alone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MessageDeleted {
    pub chat_id: ChatId,
    pub message_id: MessageId,
    pub seq: i64,
    pub deleted_by: UserId,
    pub for_everyone: bool,
    pub at: DateTime<Utc>,
    /// It self-destructed (its `expires_at` passed) rather than being deleted by someone.
    #[serde(default)]
    pub expired: bool,
}
