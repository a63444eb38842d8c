//! Who acts, conversations and their members.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{ChatId, ConnId, DeviceId, UserId};

/// Who is acting: the verified token subject, and the connection it came through (so that
/// a live event is not echoed to the connection that caused it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: UserId,
    /// The device acting (`''`, the default device, when the connection named none).
    pub device: DeviceId,
    pub username: Option<String>,
    /// The avatar claim of the token, shown with what the actor sends.
    #[serde(default)]
    pub avatar: Option<String>,
    pub conn: Option<ConnId>,
}

impl Actor {
    pub fn rest(user_id: impl Into<String>) -> Self {
        Self { user_id: UserId::new(user_id), device: DeviceId::default(), username: None, avatar: None, conn: None }
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationKind {
    Direct,
    Group,
    /// Note-to-self: one member.
    #[serde(rename = "self")]
    SelfNote,
    /// An anonymous e2e session: members are who joined it, messages may be addressed to one.
    Session,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Direct => "direct",
            ConversationKind::Group => "group",
            ConversationKind::SelfNote => "self",
            ConversationKind::Session => "session",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(ConversationKind::Direct),
            "group" => Some(ConversationKind::Group),
            "self" => Some(ConversationKind::SelfNote),
            "session" => Some(ConversationKind::Session),
            _ => None,
        }
    }
}

/// A member's role: owners and admins manage a group, owners also its admins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Role::Owner, Role::Admin, Role::Member].into_iter().find(|r| r.as_str() == s)
    }

    /// Owners and admins manage a group (members, details).
    pub fn manages(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// The acting user's own membership of a conversation: what authorizes them there.
#[derive(Clone, Debug)]
pub struct Membership {
    pub chat_id: ChatId,
    pub user_id: UserId,
    pub role: Role,
    /// Their read receipts reach this far.
    pub read_seq: i64,
    /// They cleared the history for themselves up to here.
    pub cleared_seq: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ChatId,
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub description: Option<String>,
    pub avatar: Option<String>,
    pub encrypted: bool,
    pub created_by: UserId,
    pub last_seq: i64,
    /// Membership epoch: one more with every member added or removed.
    #[serde(default)]
    pub epoch: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Member {
    pub user_id: UserId,
    pub role: Role,
    pub username: Option<String>,
    pub name: Option<String>,
    pub avatar: Option<String>,
    pub joined_at: DateTime<Utc>,
    /// Who added them (`None` for the creator).
    #[serde(default)]
    pub added_by: Option<UserId>,
}
