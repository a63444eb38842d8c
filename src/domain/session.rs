//! Anonymous sessions (SPEC §7.3): a conversation of kind `session` whose members are whoever
//! joined it with its auth key, under an id and display name of their choosing, each with the
//! public key the others encrypt for.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{ChatId, UserId};

/// Prefix of the conversation ids of sessions: `session:{name}`. No other conversation id has
/// a colon (they are UUIDs), so a client-chosen session name cannot take another's id.
pub const SESSION_CHAT_PREFIX: &str = "session:";

/// The conversation id of the session clients call `name`.
pub fn session_chat_id(name: &str) -> ChatId {
    ChatId::new(format!("{SESSION_CHAT_PREFIX}{name}"))
}

/// The core user id of the member clients call `member` in session `chat`: namespaced by the
/// session, so that a member is nobody outside it and never a JWT user
/// (`session:{name}:{member}`; names have no colon).
pub fn session_user_id(chat: &str, member: &str) -> UserId {
    UserId::new(format!("{chat}:{member}"))
}

/// The member id clients know, from a member's core user id in session `chat`; a user id of
/// another session or none is returned whole.
pub fn session_member_id<'a>(chat: &str, user: &'a str) -> &'a str {
    user.strip_prefix(chat).and_then(|rest| rest.strip_prefix(':')).unwrap_or(user)
}

/// Whether a core user id is an anonymous session member's. They have no presence: nobody
/// outside their session may learn that they exist.
pub fn is_session_user(user: &str) -> bool {
    user.starts_with(SESSION_CHAT_PREFIX)
}

/// The session a member's core user id belongs to, if it is a member's.
pub fn session_of_user(user: &str) -> Option<ChatId> {
    let name = user.strip_prefix(SESSION_CHAT_PREFIX)?;
    let (name, _member) = name.split_once(':')?;
    Some(session_chat_id(name))
}

/// Who may be in a session: any number (`group`), or two (`private`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    Group,
    Private,
}

impl SessionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::Group => "group",
            SessionMode::Private => "private",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "group" => Some(SessionMode::Group),
            "private" => Some(SessionMode::Private),
            _ => None,
        }
    }

    /// Most members a session of this mode takes.
    pub fn capacity(self) -> Option<usize> {
        match self {
            SessionMode::Group => None,
            SessionMode::Private => Some(2),
        }
    }
}

/// A session as the core knows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionInfo {
    pub chat_id: ChatId,
    /// The id clients know the session by.
    pub name: String,
    pub mode: SessionMode,
    /// False while a reserved session waits for its creator.
    pub active: bool,
    pub keyed: bool,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
}

/// A member of a session, as the others see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMember {
    /// The member's core user id (namespaced by the session).
    pub user_id: UserId,
    /// The id the member chose, as clients know it.
    pub member_id: String,
    pub display_name: Option<String>,
    pub public_key: Option<String>,
    pub joined_at: DateTime<Utc>,
}

/// What happened in a session, for its members' connections.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionNotice {
    pub chat_id: ChatId,
    pub at: DateTime<Utc>,
    pub kind: SessionNoticeKind,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SessionNoticeKind {
    /// A member joined for the first time (to the others).
    Joined(SessionMember),
    /// A member left, or their connection went (to the others).
    Left(SessionMember),
    /// The members and their public keys, after a join, a key change or a leave (to all).
    Members(Vec<SessionMember>),
    /// The session key map changed: member id → the session key encrypted for them (to all).
    SessionKeys(BTreeMap<String, String>),
    /// A member downloaded a file (to the file's sender only).
    FileDownloaded { by: String, file_name: String },
}

/// What an admin sees of a session (`GET /sessions`): counts, never content.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionSummary {
    pub info: SessionInfo,
    pub members: Vec<SessionMember>,
    pub messages: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_namespaced_by_their_session_and_read_back() {
        let chat = session_chat_id("abc");
        let user = session_user_id(&chat, "alice:1");
        assert_eq!(user, "session:abc:alice:1");
        assert_eq!(session_member_id(&chat, &user), "alice:1");
        assert_eq!(session_of_user(&user).as_deref(), Some(chat.as_str()));
        assert_eq!(session_member_id(&session_chat_id("ab"), &user), user, "another session's member stays whole");
        assert_eq!(session_of_user("alice"), None);
    }
}
