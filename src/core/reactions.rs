//! Reactions to messages: one per user, message and emoji, visible to the conversation's
//! members. A second identical reaction is refused with `CONFLICT` rather than silently
//! accepted, so a client that shows an optimistic reaction learns its state was stale.

use crate::domain::MessageId;
use crate::domain::UserId;
use chrono::Utc;

use super::{
    check_id,
    limits::Limit,
    model::{Actor, Audience, Event, Message, Reaction, ReactionSummary},
    Core,
};
use crate::{
    error::{AppError, AppResult, Field},
    store,
};

/// Longest emoji (or short code) in characters: room for ZWJ sequences with skin tones.
const MAX_EMOJI_CHARS: usize = 32;

impl Core {
    /// Adds (`add`) or removes the caller's reaction and tells every member's devices.
    pub async fn react(&self, actor: &Actor, message_id: &str, emoji: &str, add: bool) -> AppResult<Reaction> {
        self.limits.check(Limit::Reactions, &actor.user_id)?;
        check_id(Field::Message, message_id)?;
        validate_emoji(emoji)?;
        let msg = store::messages::get(&self.db, message_id)
            .await?
            .filter(|m| m.deleted_at.is_none())
            .ok_or_else(|| AppError::NotFound("message not found".into()))?;
        self.require_member(&msg.conversation_id, &actor.user_id).await?;
        let at = Utc::now();
        if add {
            let stored =
                store::reactions::add(&self.db, &msg.id, &msg.conversation_id, &actor.user_id, emoji, at).await?;
            if !stored {
                return Err(AppError::Conflict("you already reacted to this message with this emoji".into()));
            }
        } else if !store::reactions::remove(&self.db, &msg.id, &actor.user_id, emoji).await? {
            return Err(AppError::NotFound("you have not reacted to this message with this emoji".into()));
        }
        let reaction = Reaction {
            message_id: msg.id.into(),
            chat_id: msg.conversation_id.clone().into(),
            user_id: actor.user_id.clone(),
            user_name: actor.username.clone(),
            emoji: emoji.to_string(),
            at,
            added: add,
        };
        let members = store::conversations::members(&self.db, &msg.conversation_id).await?;
        self.hub.publish(
            &Audience::Users(members.into_iter().map(|m| UserId::from(m.user_id)).collect()),
            Event::Reaction(reaction.clone()),
            actor.conn,
        );
        Ok(reaction)
    }

    /// A message's reactions, for a member of its chat: its chat id, and who reacted with
    /// what, in the order they reacted.
    pub async fn reactions_of(&self, actor: &Actor, message_id: &str) -> AppResult<(String, ReactionSummary)> {
        check_id(Field::Message, message_id)?;
        let msg = store::messages::get(&self.db, message_id)
            .await?
            .filter(|m| m.deleted_at.is_none())
            .ok_or_else(|| AppError::NotFound("message not found".into()))?;
        self.require_member(&msg.conversation_id, &actor.user_id).await?;
        let chat = msg.conversation_id.clone();
        let summary =
            self.with_reactions(vec![Message::from(msg)]).await?.pop().and_then(|m| m.reactions).unwrap_or_default();
        Ok((chat, summary))
    }

    /// Fills in the reactions of messages read from history.
    pub(crate) async fn with_reactions(&self, mut messages: Vec<Message>) -> AppResult<Vec<Message>> {
        let ids: Vec<MessageId> = messages.iter().map(|m| m.id.clone()).collect();
        let rows = store::reactions::for_messages(&self.db, &ids).await?;
        for m in &mut messages {
            let mut summary = ReactionSummary::new();
            for r in rows.iter().filter(|r| r.message_id == m.id) {
                summary.entry(r.emoji.clone()).or_default().push(r.user_id.clone().into());
            }
            m.reactions = Some(summary);
        }
        Ok(messages)
    }
}

fn validate_emoji(emoji: &str) -> AppResult<()> {
    let chars = emoji.chars().count();
    if chars == 0 || chars > MAX_EMOJI_CHARS {
        return Err(AppError::validation(format!("emoji must be 1 to {MAX_EMOJI_CHARS} characters")));
    }
    if emoji.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AppError::validation("emoji must not contain spaces or control characters"));
    }
    Ok(())
}
