//! Editing and deleting messages. An edit is the sender's, within the edit window, and keeps
//! the previous text in the edit history. Deleting for everyone is the sender's and leaves a
//! tombstone (the `seq` stays, the content goes); deleting for oneself hides the message from
//! one's own history only. Both are announced live to every profile.

use chrono::{DateTime, Utc};

use super::{
    check_id,
    limits::Limit,
    model::{Actor, Audience, Event, Message, MessageDeleted},
    Core,
};
use crate::{
    error::{AppError, AppResult, Field},
    store,
};

/// One change in a message's edit history.
#[derive(Clone, Debug)]
pub struct Edit {
    pub editor_id: String,
    pub previous_content: String,
    pub content: String,
    pub edited_at: DateTime<Utc>,
}

impl Core {
    /// Replaces the text of one's own message while the edit window is open.
    pub async fn edit_message(&self, actor: &Actor, message_id: &str, content: &str) -> AppResult<Message> {
        // Edits are sends in all but name: they draw on the same bucket.
        self.limits.check(Limit::MessageNew, &actor.user_id)?;
        let current = self.visible_message(actor, message_id).await?;
        if current.sender_id != actor.user_id {
            return Err(AppError::Forbidden("only the sender may edit a message".into()));
        }
        let window = self.config.message_edit_window;
        let age = (Utc::now() - current.created_at).to_std().unwrap_or_default();
        if window.is_zero() || age > window {
            return Err(AppError::EditWindowExpired(format!(
                "messages can be edited for {} minutes after sending",
                window.as_secs() / 60
            )));
        }
        let may_be_empty = !current.attachments.is_empty() || current.kind == "location";
        if content.trim().is_empty() && !may_be_empty {
            return Err(AppError::EmptyContent("message content is empty".into()));
        }
        let (len, max) = (content.chars().count(), self.config.max_message_length);
        if len > max {
            return Err(AppError::ContentTooLong(format!("message is {len} characters; the limit is {max}")));
        }
        if content == current.content {
            return Ok(current);
        }
        let edit_id = uuid::Uuid::now_v7().to_string();
        let row = store::edits::edit(&self.db, &edit_id, message_id, &actor.user_id, content, Utc::now())
            .await?
            .ok_or_else(|| AppError::NotFound("message not found".into()))?;
        let edited = self.with_reactions(vec![Message::from(row)]).await?.into_iter().next();
        let edited = edited.ok_or_else(|| AppError::Internal(anyhow::anyhow!("edited message vanished")))?;
        let members = self.members_of(&edited.chat_id, &actor.user_id).await?;
        self.hub.publish(&Audience::Users(members), Event::MessageEdited(edited.clone()), actor.conn);
        Ok(edited)
    }

    /// A message with its edit history, oldest edit first; for members of its conversation.
    pub async fn message_edits(&self, actor: &Actor, message_id: &str) -> AppResult<(Message, Vec<Edit>)> {
        let message = self.visible_message(actor, message_id).await?;
        let edits = store::edits::history(&self.db, message_id)
            .await?
            .into_iter()
            .map(|e| Edit {
                editor_id: e.editor_id,
                previous_content: e.previous_content,
                content: e.content,
                edited_at: e.edited_at,
            })
            .collect();
        Ok((message, edits))
    }

    /// Deletes a message for everyone (its sender only) or hides it from the caller's own
    /// history. Deleting again is not an error and announces nothing new.
    pub async fn delete_message(
        &self,
        actor: &Actor,
        message_id: &str,
        for_everyone: bool,
    ) -> AppResult<MessageDeleted> {
        check_id(Field::Message, message_id)?;
        let row = store::messages::get(&self.db, message_id)
            .await?
            .ok_or_else(|| AppError::NotFound("message not found".into()))?;
        let members = self.members_of(&row.conversation_id, &actor.user_id).await?;
        let now = Utc::now();
        let mut deleted = MessageDeleted {
            chat_id: row.conversation_id.clone().into(),
            message_id: row.id.clone().into(),
            seq: row.seq,
            deleted_by: actor.user_id.clone(),
            for_everyone,
            at: now,
            expired: false,
        };
        if for_everyone {
            if row.sender_id != actor.user_id {
                return Err(AppError::Forbidden("only the sender may delete a message for everyone".into()));
            }
            if store::edits::delete_for_everyone(&self.db, message_id, now).await?.is_some() {
                // Gone from every Socialink device queue too.
                store::queues::drop_message(&self.db, message_id).await?;
                self.hub.publish(&Audience::Users(members), Event::MessageDeleted(deleted.clone()), actor.conn);
            } else {
                deleted.at = row.deleted_at.unwrap_or(now);
            }
        } else if store::edits::hide(&self.db, message_id, &row.conversation_id, &actor.user_id, now).await? {
            // Gone from the caller's Socialink device queues too.
            store::queues::drop_for_user(&self.db, message_id, &actor.user_id).await?;
            // Only the caller's other devices need to drop it.
            let me = Audience::Users(vec![actor.user_id.clone()]);
            self.hub.publish(&me, Event::MessageDeleted(deleted.clone()), actor.conn);
        }
        Ok(deleted)
    }

    /// A message that exists, is not deleted, and whose conversation the caller belongs to.
    async fn visible_message(&self, actor: &Actor, message_id: &str) -> AppResult<Message> {
        check_id(Field::Message, message_id)?;
        let row = store::messages::get(&self.db, message_id)
            .await?
            .ok_or_else(|| AppError::NotFound("message not found".into()))?;
        self.require_member(&row.conversation_id, &actor.user_id).await?;
        if row.deleted_at.is_some() {
            return Err(AppError::NotFound("message was deleted".into()));
        }
        Ok(Message::from(row))
    }
}
