//! Chat rooms: which connections follow a chat live (typing) and which users are active in it,
//! across instances.
//!
//! Joining is subscription-like: every chat named draws one token from the user's
//! `subscriptions` bucket (a join costs a lookup whether or not the chat exists), and one
//! connection joins at most `MAX_SUBSCRIPTIONS_PER_CONNECTION` rooms.

use super::{check_id, limits::Limit, model::Actor, Core};
use crate::domain::UserId;
use crate::{
    error::{AppError, AppResult, Field},
    fanout::ConnId,
    store,
};

/// The most chats one `join_chats` call takes.
pub const MAX_JOIN_AT_ONCE: usize = 500;

impl Core {
    /// Joins a connection to a chat's room; members only.
    pub async fn join_chat(&self, actor: &Actor, conn: ConnId, chat: &str) -> AppResult<()> {
        let mut results = self.join_chats(actor, conn, &[chat.to_string()]).await?;
        results.pop().map_or(Ok(()), |(_, result)| result)
    }

    /// Joins a connection to the rooms of `chats` it is a member of, answering for each chat
    /// on its own (`FORBIDDEN`, `NOT_FOUND`, or the connection's room cap). The whole call is
    /// refused when it names more than [`MAX_JOIN_AT_ONCE`] chats, a malformed id, or more ids
    /// than the user's `subscriptions` bucket holds now. Membership is read in two queries,
    /// however many chats are named.
    pub async fn join_chats(
        &self,
        actor: &Actor,
        conn: ConnId,
        chats: &[String],
    ) -> AppResult<Vec<(String, AppResult<()>)>> {
        if chats.len() > MAX_JOIN_AT_ONCE {
            return Err(AppError::invalid(Field::Chat, format!("lists take at most {MAX_JOIN_AT_ONCE} ids")));
        }
        for chat in chats {
            check_id(Field::Chat, chat)?;
        }
        self.limits.check_n(Limit::Subscriptions, &actor.user_id, chats.len())?;
        let (member_of, existing) = store::conversations::memberships(&self.db, &actor.user_id, chats).await?;
        let cap = self.config.max_subscriptions_per_connection;
        let mut results = Vec::with_capacity(chats.len());
        for chat in chats {
            let result = if member_of.contains(chat) {
                if self.hub.join_chat_bounded(conn, chat, cap) {
                    self.shared.join_room(chat, &actor.user_id).await.map_err(AppError::Internal)
                } else {
                    Err(AppError::validation(format!(
                        "this connection is in {cap} chat rooms, the most it may join \
                         (MAX_SUBSCRIPTIONS_PER_CONNECTION): leave some first"
                    )))
                }
            } else if existing.contains(chat) {
                Err(AppError::not_member())
            } else {
                Err(AppError::NotFound("conversation not found".into()))
            };
            results.push((chat.clone(), result));
        }
        Ok(results)
    }

    pub async fn leave_chat(&self, actor: &Actor, conn: ConnId, chat: &str) -> AppResult<()> {
        check_id(Field::Chat, chat)?;
        if self.hub.leave_chat(conn, chat) {
            self.shared.leave_room(chat, &actor.user_id).await.map_err(AppError::Internal)?;
        }
        Ok(())
    }

    /// Users with a connection in the chat's room on any instance; members only.
    pub async fn active_members(&self, actor: &Actor, chat: &str) -> AppResult<Vec<UserId>> {
        check_id(Field::Chat, chat)?;
        self.require_member(chat, &actor.user_id).await?;
        self.shared.room_users(chat).await.map_err(AppError::Internal)
    }
}
