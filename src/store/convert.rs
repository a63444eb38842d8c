//! Rows to domain types: the only place that knows both.

use crate::domain::{Conversation, ConversationKind, Member, Membership, Message, Profile, Role};

/// How a user shows themselves: their `username` claim, else `name`, and `avatar`.
pub fn profile(user: &entity::user::Model) -> Profile {
    Profile { name: user.username.clone().or_else(|| user.name.clone()), avatar: user.avatar.clone() }
}

/// A member with the profile claims last seen for them (none when they never connected).
pub fn member(m: entity::member::Model, user: Option<&entity::user::Model>) -> Member {
    Member {
        username: user.and_then(|u| u.username.clone()),
        name: user.and_then(|u| u.name.clone()),
        avatar: user.and_then(|u| u.avatar.clone()),
        user_id: m.user_id.into(),
        role: role(&m.role),
        joined_at: m.joined_at,
        added_by: m.added_by.map(Into::into),
    }
}

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
            id: m.id.into(),
            chat_id: m.conversation_id.into(),
            seq: m.seq,
            sender_id: m.sender_id.into(),
            sender_device: m.sender_device_id.map(Into::into),
            kind: m.kind,
            content: m.content,
            reply_to_id: m.reply_to_id.map(Into::into),
            metadata: m.metadata,
            temp_id: m.temp_id,
            created_at: m.created_at,
            edited_at: m.edited_at,
            deleted: m.deleted_at.is_some(),
            reactions: None,
            encrypted: m.encrypted,
            attachments,
            sender: None,
            recipient: (Some(m.recipient_id).filter(|r| !r.is_empty())).map(Into::into),
            encoding: crate::domain::BodyEncoding::from_stored(m.content_encoding.as_deref()),
            ephemeral_key: m.ephemeral_key,
            expires_at: m.expires_at,
        }
    }
}

/// A role as stored; an unknown one (a hand-edited row) counts as the least privileged.
pub fn role(stored: &str) -> Role {
    Role::parse(stored).unwrap_or(Role::Member)
}

pub fn membership(m: entity::member::Model) -> Membership {
    Membership {
        role: role(&m.role),
        chat_id: m.conversation_id.into(),
        user_id: m.user_id.into(),
        read_seq: m.read_seq,
        cleared_seq: m.cleared_seq,
    }
}

/// A conversation with its members. An unknown stored kind (a hand-edited row) reads as a
/// group, the kind with the fewest assumptions about its members.
pub fn conversation(c: entity::conversation::Model, members: Vec<Member>) -> Conversation {
    Conversation {
        kind: ConversationKind::parse(&c.kind).unwrap_or(ConversationKind::Group),
        id: c.id.into(),
        name: c.name,
        description: c.description,
        avatar: c.avatar,
        encrypted: c.encrypted,
        created_by: c.created_by.into(),
        last_seq: c.last_seq,
        epoch: c.epoch,
        created_at: c.created_at,
        updated_at: c.updated_at,
        members,
    }
}
