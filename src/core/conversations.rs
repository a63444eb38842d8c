//! Creating conversations and managing their members.

use crate::domain::UserId;
use std::collections::BTreeSet;

use chrono::Utc;

use super::{
    check_id,
    model::{
        Actor, Audience, ChatField, ChatUpdated, Conversation, ConversationKind, Event, MemberJoined, MemberLeft,
        NotificationData, Role,
    },
    Core,
};
use crate::{
    error::{AppError, AppResult, Field},
    store::{
        self,
        conversations::{Added, Created, DetailsUpdate, NewConversation},
    },
};

/// New details for a conversation; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct DetailsChange {
    pub name: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub avatar: Option<Option<String>>,
}

/// The rules of a dialect's groups: how many members they hold (the creator included), and
/// whether their owner is fixed. SUP and Spark use [`Core::group_rules`]; Socialink holds up
/// to `SOCIALINK_MAX_GROUP_SIZE` and its owner can neither be removed nor leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRules {
    pub max_members: usize,
    /// The owner may not leave (no heir is chosen); nobody may remove them anyway.
    pub owner_stays: bool,
}

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

impl Core {
    /// The group rules of `MAX_GROUP_SIZE`, with an owner who may leave (an heir takes over).
    pub fn group_rules(&self) -> GroupRules {
        GroupRules { max_members: self.config.max_group_size, owner_stays: false }
    }

    /// Creates a conversation. A `direct` conversation for the same pair (and the `self`
    /// conversation of a user) is reused: the second call returns the first one, with
    /// `created == false`.
    pub async fn create_conversation(
        &self,
        actor: &Actor,
        req: ConversationRequest,
    ) -> AppResult<(Conversation, bool)> {
        self.create_conversation_with(actor, req, self.group_rules()).await
    }

    /// [`Core::create_conversation`] with a dialect's own group rules.
    pub async fn create_conversation_with(
        &self,
        actor: &Actor,
        req: ConversationRequest,
        rules: GroupRules,
    ) -> AppResult<(Conversation, bool)> {
        let me = actor.user_id.clone();
        let mut others = BTreeSet::new();
        for id in &req.participant_ids {
            check_id(Field::Participants, id)?;
            if *id != me {
                others.insert(id.clone());
            }
        }
        check_details(&req.name, &req.description, &req.avatar)?;
        let direct_key = match req.kind {
            ConversationKind::Direct => {
                if others.len() != 1 {
                    return Err(AppError::validation("a direct conversation has exactly one other participant"));
                }
                let other = others.iter().next().cloned().unwrap_or_default();
                Some(super::direct::direct_key(&me, &other))
            }
            // Sessions are opened by joining one (the e2e dialect), never created by a user.
            ConversationKind::Session => {
                return Err(AppError::validation("a session is opened by joining it, not created"));
            }
            ConversationKind::SelfNote => {
                if !others.is_empty() {
                    return Err(AppError::validation("a note-to-self conversation has no other participants"));
                }
                Some(format!("self:{me}"))
            }
            ConversationKind::Group => {
                if others.len() + 1 > rules.max_members {
                    return Err(group_full(rules));
                }
                None
            }
        };
        let mut members = vec![(me.to_string(), Role::Owner.as_str().to_string())];
        members.extend(others.into_iter().map(|u| (u, Role::Member.as_str().to_string())));
        let ids: Vec<String> = members.iter().map(|(u, _)| u.clone()).collect();
        store::users::ensure(&self.db, &ids).await?;
        let _changing = self.catchup.membership_changing(ids.iter().map(String::as_str));
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
                created_by: me.into(),
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
        if is_new && req.kind == ConversationKind::Group {
            // Everyone but the creator joins as a plain member: one batch.
            let added: Vec<UserId> =
                conversation.members.iter().filter(|m| m.user_id != actor.user_id).map(|m| m.user_id.clone()).collect();
            let data = NotificationData::AddedToChat {
                chat_id: conversation.id.clone(),
                added_by: actor.user_id.clone(),
                role: Role::Member,
            };
            self.notify(&added, data).await;
        }
        Ok((conversation, is_new))
    }

    /// A conversation with its members, for a member.
    pub async fn conversation(&self, actor: &Actor, id: &str) -> AppResult<Conversation> {
        check_id(Field::Chat, id)?;
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
                store::convert::member(m, user)
            })
            .collect();
        Ok(store::convert::conversation(model, members))
    }

    /// Adds a member to a group. Only owners and admins may; the group size limit holds.
    pub async fn add_member(
        &self,
        actor: &Actor,
        chat: &str,
        user_id: &str,
        role: Option<&str>,
    ) -> AppResult<Conversation> {
        self.add_member_with(actor, chat, user_id, role, self.group_rules()).await
    }

    /// [`Core::add_member`] with a dialect's own group rules. The size check, the insert and
    /// the epoch bump are one transaction.
    pub async fn add_member_with(
        &self,
        actor: &Actor,
        chat: &str,
        user_id: &str,
        role: Option<&str>,
        rules: GroupRules,
    ) -> AppResult<Conversation> {
        check_id(Field::User, user_id)?;
        let me = self.require_member(chat, &actor.user_id).await?;
        let conversation = self.conversation(actor, chat).await?;
        if conversation.kind != ConversationKind::Group {
            return Err(AppError::validation("members can only be added to group conversations"));
        }
        if !me.role.manages() {
            return Err(AppError::Forbidden("only owners and admins may add members".into()));
        }
        let role = match role.map(Role::parse) {
            None => Role::Member,
            Some(Some(role @ (Role::Member | Role::Admin))) => role,
            Some(_) => return Err(AppError::validation("role must be member or admin")),
        };
        if conversation.members.iter().any(|m| m.user_id == user_id) {
            return Err(AppError::Conflict("user is already a member".into()));
        }
        if conversation.members.len() >= rules.max_members {
            return Err(group_full(rules));
        }
        store::users::ensure(&self.db, &[user_id.to_string()]).await?;
        let _changing = self.catchup.membership_changing([user_id]);
        let epoch = match store::conversations::add_member(
            &self.db,
            chat,
            user_id,
            role.as_str(),
            &actor.user_id,
            rules.max_members,
        )
        .await?
        {
            Added::Added { epoch } => epoch,
            Added::AlreadyMember => return Err(AppError::Conflict("user is already a member".into())),
            Added::Full => return Err(group_full(rules)),
            Added::NoSuchConversation => return Err(AppError::NotFound("conversation not found".into())),
        };
        let conversation = self.conversation(actor, chat).await?;
        self.publish_to_members(
            &conversation,
            None,
            Event::MemberJoined(MemberJoined {
                chat_id: chat.into(),
                user_id: user_id.into(),
                role,
                added_by: actor.user_id.clone(),
                at: Utc::now(),
                epoch,
            }),
            actor,
        );
        self.announce_update(&conversation, vec![ChatField::Members], actor);
        self.notify(
            &[user_id.into()],
            NotificationData::AddedToChat { chat_id: chat.into(), added_by: actor.user_id.clone(), role },
        )
        .await;
        Ok(conversation)
    }

    /// Removes a member from a group, or lets a member leave (`user_id` is the caller).
    /// Owners remove anyone, admins remove plain members, everyone may leave. When the owner
    /// leaves, the longest-standing admin (else member) becomes owner.
    pub async fn remove_member(&self, actor: &Actor, chat: &str, user_id: &str) -> AppResult<Conversation> {
        self.remove_member_with(actor, chat, user_id, self.group_rules()).await
    }

    /// [`Core::remove_member`] with a dialect's own group rules (an owner who stays cannot
    /// leave). The removal and the epoch bump are one transaction.
    pub async fn remove_member_with(
        &self,
        actor: &Actor,
        chat: &str,
        user_id: &str,
        rules: GroupRules,
    ) -> AppResult<Conversation> {
        check_id(Field::User, user_id)?;
        let me = self.require_member(chat, &actor.user_id).await?;
        let before = self.conversation(actor, chat).await?;
        if before.kind != ConversationKind::Group {
            return Err(AppError::validation("members can only be removed from group conversations"));
        }
        let target = before
            .members
            .iter()
            .find(|m| m.user_id == user_id)
            .ok_or_else(|| AppError::NotFound("user is not a member".into()))?;
        let leaving = user_id == actor.user_id;
        if rules.owner_stays && target.role == Role::Owner {
            return Err(AppError::Forbidden("the owner of a group cannot be removed or leave".into()));
        }
        let allowed = leaving || me.role == Role::Owner || (me.role == Role::Admin && target.role == Role::Member);
        if !allowed {
            return Err(AppError::Forbidden("only owners, and admins for plain members, may remove members".into()));
        }
        // Members are ordered by when they joined, so the first match is the longest-standing.
        let heir = (target.role == Role::Owner)
            .then(|| {
                let others = || before.members.iter().filter(|m| m.user_id != user_id);
                others().find(|m| m.role == Role::Admin).or_else(|| others().next()).map(|m| m.user_id.clone())
            })
            .flatten();
        let changing = self.catchup.membership_changing([user_id]);
        let removed = store::conversations::remove_member(&self.db, chat, user_id, heir.as_deref()).await;
        drop(changing);
        let Some(epoch) = removed? else {
            return Err(AppError::NotFound("user is not a member".into()));
        };
        // The hub takes the user out of the chat's room on every instance when MemberLeft
        // passes through it; the shared room entry of this instance goes now, the others'
        // expire when their instances stop renewing them.
        if let Err(e) = self.shared.leave_room(chat, user_id).await {
            tracing::warn!(cause = %e, "could not leave shared room");
        }
        let left = Event::MemberLeft(MemberLeft {
            chat_id: chat.into(),
            user_id: user_id.into(),
            removed_by: actor.user_id.clone(),
            at: Utc::now(),
            epoch,
        });
        let mut changed = vec![ChatField::Members];
        if heir.is_some() {
            changed.push(ChatField::Owner);
        }
        // The caller may no longer be a member: read as the system, not as them.
        let after = match before.members.iter().find(|m| m.user_id != user_id) {
            Some(remaining) => self.conversation(&Actor::rest(remaining.user_id.clone()), chat).await?,
            None => Conversation { members: Vec::new(), epoch, ..before.clone() },
        };
        // The removed user hears it too, so their devices can drop the chat.
        self.publish_to_members(&after, Some(user_id), left, actor);
        self.announce_update(&after, changed, actor);
        Ok(after)
    }

    /// Changes a group's name, description or avatar (owners and admins).
    pub async fn update_details(&self, actor: &Actor, chat: &str, change: DetailsChange) -> AppResult<Conversation> {
        let me = self.require_member(chat, &actor.user_id).await?;
        let flat = |v: &Option<Option<String>>| v.clone().flatten();
        check_details(&flat(&change.name), &flat(&change.description), &flat(&change.avatar))?;
        let before = self.conversation(actor, chat).await?;
        if before.kind != ConversationKind::Group {
            return Err(AppError::validation("only group conversations have editable details"));
        }
        if !me.role.manages() {
            return Err(AppError::Forbidden("only owners and admins may change a group".into()));
        }
        let mut changed = Vec::new();
        for (field, value, old) in [
            (ChatField::Name, &change.name, &before.name),
            (ChatField::Description, &change.description, &before.description),
            (ChatField::Avatar, &change.avatar, &before.avatar),
        ] {
            if value.as_ref().is_some_and(|v| v != old) {
                changed.push(field);
            }
        }
        if changed.is_empty() {
            return Ok(before);
        }
        store::conversations::update_details(
            &self.db,
            chat,
            DetailsUpdate { name: change.name, description: change.description, avatar: change.avatar },
        )
        .await?;
        let after = self.conversation(actor, chat).await?;
        self.announce_update(&after, changed, actor);
        Ok(after)
    }

    /// Publishes to every member's devices (plus `also`, e.g. a member who just left).
    fn publish_to_members(&self, conversation: &Conversation, also: Option<&str>, event: Event, actor: &Actor) {
        let mut users: Vec<UserId> = conversation.members.iter().map(|m| m.user_id.clone()).collect();
        users.extend(also.map(UserId::from));
        self.hub.publish(&Audience::Users(users), event, actor.conn);
    }

    fn announce_update(&self, conversation: &Conversation, changed: Vec<ChatField>, actor: &Actor) {
        let update = ChatUpdated {
            chat_id: conversation.id.clone(),
            changed,
            name: conversation.name.clone(),
            description: conversation.description.clone(),
            avatar: conversation.avatar.clone(),
            member_count: conversation.members.len(),
            owner_id: conversation.members.iter().find(|m| m.role == Role::Owner).map(|m| m.user_id.clone()),
            updated_by: actor.user_id.clone(),
            updated_at: Utc::now(),
        };
        self.publish_to_members(conversation, None, Event::ChatUpdated(update), actor);
    }
}

fn group_full(rules: GroupRules) -> AppError {
    AppError::GroupFull(format!("a group holds at most {} members", rules.max_members))
}

fn check_details(name: &Option<String>, description: &Option<String>, avatar: &Option<String>) -> AppResult<()> {
    for (field, value, max) in [("name", name, 100), ("description", description, 1000), ("avatar", avatar, 2048)] {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(AppError::validation(format!("{field} is longer than {max} characters")));
        }
    }
    Ok(())
}
