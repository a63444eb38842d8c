//! Creating conversations and managing their members.

use std::collections::BTreeSet;

use super::{
    check_id,
    model::{Actor, Conversation, ConversationKind, Member},
    Core,
};
use crate::{
    error::{AppError, AppResult},
    store::{
        self,
        conversations::{Created, NewConversation},
    },
};

#[derive(Debug, Clone)]
pub struct ConversationRequest {
    pub kind: ConversationKind,
    /// The other participants; the creator is implied.
    pub participant_ids: Vec<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub avatar: Option<String>,
    pub encrypted: bool,
}

pub const ROLE_OWNER: &str = "owner";
pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_MEMBER: &str = "member";

impl Core {
    /// Creates a conversation. A `direct` conversation for the same pair (and the `self`
    /// conversation of a user) is reused: the second call returns the first one, with
    /// `created == false`.
    pub async fn create_conversation(
        &self,
        actor: &Actor,
        req: ConversationRequest,
    ) -> AppResult<(Conversation, bool)> {
        let me = actor.user_id.clone();
        let mut others = BTreeSet::new();
        for id in &req.participant_ids {
            check_id("participantIds[]", id)?;
            if *id != me {
                others.insert(id.clone());
            }
        }
        for (field, value, max) in
            [("name", &req.name, 100), ("description", &req.description, 1000), ("avatar", &req.avatar, 2048)]
        {
            if value.as_ref().is_some_and(|v| v.chars().count() > max) {
                return Err(AppError::validation(format!("{field} is longer than {max} characters")));
            }
        }
        let direct_key = match req.kind {
            ConversationKind::Direct => {
                if others.len() != 1 {
                    return Err(AppError::validation("a direct conversation has exactly one other participant"));
                }
                let other = others.iter().next().cloned().unwrap_or_default();
                let (a, b) = if me < other { (me.clone(), other) } else { (other, me.clone()) };
                Some(format!("direct:{a}:{b}"))
            }
            ConversationKind::SelfNote => {
                if !others.is_empty() {
                    return Err(AppError::validation("a note-to-self conversation has no other participants"));
                }
                Some(format!("self:{me}"))
            }
            ConversationKind::Group => {
                if others.len() + 1 > self.config.max_group_size {
                    return Err(AppError::GroupFull(format!(
                        "a group holds at most {} members",
                        self.config.max_group_size
                    )));
                }
                None
            }
        };
        let mut members = vec![(me.clone(), ROLE_OWNER.to_string())];
        members.extend(others.into_iter().map(|u| (u, ROLE_MEMBER.to_string())));
        let ids: Vec<String> = members.iter().map(|(u, _)| u.clone()).collect();
        store::users::ensure(&self.db, &ids).await?;
        let created = store::conversations::create(
            &self.db,
            NewConversation {
                id: uuid::Uuid::now_v7().to_string(),
                kind: req.kind.as_str().to_string(),
                name: req.name,
                description: req.description,
                avatar: req.avatar,
                encrypted: req.encrypted,
                direct_key,
                created_by: me,
                members,
            },
        )
        .await?;
        let (model, is_new) = match created {
            Created::New(m) => (m, true),
            Created::Existing(m) => (m, false),
        };
        // A reused direct conversation must still be one the caller belongs to.
        let conversation = self.conversation(actor, &model.id).await?;
        Ok((conversation, is_new))
    }

    /// A conversation with its members, for a member.
    pub async fn conversation(&self, actor: &Actor, id: &str) -> AppResult<Conversation> {
        check_id("conversationId", id)?;
        self.require_member(id, &actor.user_id).await?;
        let model = store::conversations::get(&self.db, id)
            .await?
            .ok_or_else(|| AppError::NotFound("conversation not found".into()))?;
        let member_rows = store::conversations::members(&self.db, id).await?;
        let ids: Vec<String> = member_rows.iter().map(|m| m.user_id.clone()).collect();
        let users = store::users::get_many(&self.db, &ids).await?;
        let members = member_rows
            .into_iter()
            .map(|m| {
                let user = users.iter().find(|u| u.id == m.user_id);
                Member {
                    username: user.and_then(|u| u.username.clone()),
                    name: user.and_then(|u| u.name.clone()),
                    avatar: user.and_then(|u| u.avatar.clone()),
                    user_id: m.user_id,
                    role: m.role,
                    joined_at: m.joined_at,
                }
            })
            .collect();
        Ok(Conversation {
            id: model.id,
            kind: model.kind,
            name: model.name,
            description: model.description,
            avatar: model.avatar,
            encrypted: model.encrypted,
            created_by: model.created_by,
            last_seq: model.last_seq,
            created_at: model.created_at,
            updated_at: model.updated_at,
            members,
        })
    }

    /// Adds a member to a group. Only owners and admins may; the group size limit holds.
    pub async fn add_member(
        &self,
        actor: &Actor,
        chat: &str,
        user_id: &str,
        role: Option<&str>,
    ) -> AppResult<Conversation> {
        check_id("userId", user_id)?;
        let me = self.require_member(chat, &actor.user_id).await?;
        let conversation = self.conversation(actor, chat).await?;
        if conversation.kind != ConversationKind::Group.as_str() {
            return Err(AppError::validation("members can only be added to group conversations"));
        }
        if me.role != ROLE_OWNER && me.role != ROLE_ADMIN {
            return Err(AppError::Forbidden("only owners and admins may add members".into()));
        }
        let role = role.unwrap_or(ROLE_MEMBER);
        if role != ROLE_MEMBER && role != ROLE_ADMIN {
            return Err(AppError::validation("role must be member or admin"));
        }
        if conversation.members.iter().any(|m| m.user_id == user_id) {
            return Err(AppError::Conflict("user is already a member".into()));
        }
        if conversation.members.len() >= self.config.max_group_size {
            return Err(AppError::GroupFull(format!("a group holds at most {} members", self.config.max_group_size)));
        }
        store::users::ensure(&self.db, &[user_id.to_string()]).await?;
        store::conversations::add_member(&self.db, chat, user_id, role).await?;
        self.conversation(actor, chat).await
    }
}
