//! Chat rooms: which connections follow a chat live (typing) and which users are active in it,
//! across instances.

use super::{check_id, model::Actor, Core};
use crate::domain::UserId;
use crate::{
    error::{AppError, AppResult, Field},
    fanout::ConnId,
};

impl Core {
    /// Joins a connection to a chat's room; members only.
    pub async fn join_chat(&self, actor: &Actor, conn: ConnId, chat: &str) -> AppResult<()> {
        check_id(Field::Chat, chat)?;
        self.require_member(chat, &actor.user_id).await?;
        self.hub.join_chat(conn, chat);
        self.shared.join_room(chat, &actor.user_id).await.map_err(AppError::Internal)
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
