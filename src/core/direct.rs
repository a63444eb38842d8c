//! Direct messaging between two users, as dialects without conversation ids speak it (a
//! recipient's user id instead of a chat id): the pair's direct conversation is the same one
//! every other dialect and REST use, opened on first use; who is online, on any instance.

use super::{
    check_id,
    conversations::ConversationRequest,
    messages::Draft,
    model::{Actor, ChatId, ConversationKind, Message, UserId},
    Core, SendTicket, MAX_PAGE,
};
use crate::{
    error::{AppError, AppResult, Field},
    store,
};

/// What [`Core::send_direct`] did.
pub struct DirectSent {
    pub message: Message,
    /// The recipient had an open connection (on any instance) when the message was stored.
    pub recipient_online: bool,
}

impl Core {
    /// Stores a text message from `actor` to `to` in their direct conversation (opened when
    /// they never talked) and publishes it like any message. Checks, in this order: the text
    /// (`EMPTY_CONTENT`, `CONTENT_TOO_LONG` against `max_len`), then `SELF_MESSAGE`, then the
    /// shared `message:new` bucket.
    pub async fn send_direct(
        &self,
        actor: &Actor,
        to: &str,
        content: String,
        max_len: usize,
        temp_id: Option<String>,
        ticket: Option<SendTicket>,
    ) -> AppResult<DirectSent> {
        check_id(Field::Recipient, to)?;
        if content.trim().is_empty() {
            return Err(AppError::EmptyContent("message content is empty".into()));
        }
        let len = content.chars().count();
        if len > max_len {
            return Err(AppError::ContentTooLong(format!("message is {len} characters; the limit is {max_len}")));
        }
        if to == actor.user_id {
            return Err(AppError::SelfMessage("you cannot send a message to yourself".into()));
        }
        let chat_id = self.direct_conversation(actor, to).await?;
        let draft = Draft {
            chat_id: chat_id.into(),
            content,
            kind: "text".into(),
            reply_to_id: None,
            metadata: None,
            temp_id,
            mentions: Vec::new(),
        };
        let message = self.send_message_limited(actor, draft, max_len, ticket).await?;
        let recipient_online = self.is_online(to).await?;
        Ok(DirectSent { message, recipient_online })
    }

    /// The direct conversation of `actor` and `other`, opened when there is none yet.
    pub async fn direct_conversation(&self, actor: &Actor, other: &str) -> AppResult<ChatId> {
        let request = ConversationRequest {
            kind: ConversationKind::Direct,
            participant_ids: vec![other.to_string()],
            name: None,
            description: None,
            avatar: None,
            encrypted: false,
        };
        Ok(self.create_conversation(actor, request).await?.0.id)
    }

    /// The last `limit` messages (at most [`MAX_PAGE`]) of the direct conversation of `actor`
    /// and `other`, oldest first, as `actor` sees them (without what they hid or cleared, and
    /// without messages deleted for everyone). Empty when the two never talked; reading opens
    /// nothing.
    pub async fn direct_history(&self, actor: &Actor, other: &str, limit: u64) -> AppResult<Vec<Message>> {
        check_id(Field::Peer, other)?;
        let key = direct_key(&actor.user_id, other);
        let Some(chat) = store::conversations::find_direct(&self.db, &key).await? else {
            return Ok(Vec::new());
        };
        let Some(me) = store::conversations::member(&self.db, &chat.id, &actor.user_id).await? else {
            return Ok(Vec::new());
        };
        let rows =
            store::history::page(&self.db, &chat.id, &actor.user_id, me.cleared_seq, None, limit.clamp(1, MAX_PAGE))
                .await?;
        let mut messages: Vec<Message> = rows.into_iter().map(Message::from).filter(|m| !m.deleted).collect();
        messages.reverse();
        Ok(messages)
    }

    /// The other member of `chat` when it is a direct conversation of `user`; `None` for any
    /// other kind of conversation (a group, a note to self).
    pub async fn direct_peer(&self, chat: &str, user: &str) -> AppResult<Option<UserId>> {
        let Some(model) = store::conversations::get(&self.db, chat).await? else {
            return Ok(None);
        };
        if model.kind != ConversationKind::Direct.as_str() {
            return Ok(None);
        }
        let members = store::conversations::members(&self.db, chat).await?;
        if !members.iter().any(|m| m.user_id == user) {
            return Ok(None);
        }
        Ok((members.into_iter().map(|m| m.user_id).find(|m| m != user)).map(Into::into))
    }

    /// Whether `user` has an open connection on any instance.
    pub async fn is_online(&self, user: &str) -> AppResult<bool> {
        let online = self.shared.online(&[UserId::from(user)]).await.map_err(AppError::Internal)?;
        Ok(online.first().copied().unwrap_or(false))
    }

    /// Every user with an open connection on any instance, sorted.
    pub async fn online_users(&self) -> AppResult<Vec<UserId>> {
        self.shared.online_users().await.map_err(AppError::Internal)
    }
}

/// The unique key of a pair's direct conversation: both ids, sorted.
pub(crate) fn direct_key(a: &str, b: &str) -> String {
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    format!("direct:{a}:{b}")
}
