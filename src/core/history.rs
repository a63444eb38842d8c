//! History as one member sees it: pages of a conversation newest first, the conversation list
//! with last messages and unread counts, and leaving or clearing a conversation.

use crate::domain::UserId;
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{
    check_id,
    model::{Actor, Conversation, ConversationKind, Member, Message},
    Core,
};
use crate::{
    error::{AppError, AppResult, Field},
    store,
};

/// Default messages per history page, and the most one page holds.
pub const DEFAULT_HISTORY_PAGE: u64 = 50;
pub const MAX_HISTORY_PAGE: u64 = 100;
/// Default conversations per list page, and the most one page holds.
pub const DEFAULT_LIST_PAGE: u64 = 100;
pub const MAX_LIST_PAGE: u64 = 500;

/// One page of history, newest first.
pub struct Page {
    pub messages: Vec<Message>,
    /// The `seq` to continue below, when there is more.
    pub next_before: Option<i64>,
}

/// A conversation in the caller's list.
pub struct Summary {
    pub conversation: Conversation,
    pub last_message: Option<Message>,
    pub unread_count: u64,
}

/// Where a conversation list page ends: the `updatedAt` and id of its last entry. Written
/// as `{nanoseconds}.{id}`, opaque to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListCursor {
    pub updated_at: DateTime<Utc>,
    pub id: String,
}

impl std::fmt::Display for ListCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.updated_at.timestamp_nanos_opt().unwrap_or_default(), self.id)
    }
}

impl std::str::FromStr for ListCursor {
    type Err = AppError;
    fn from_str(s: &str) -> AppResult<Self> {
        let bad = || AppError::validation("cursor is not one this server gave out");
        let (nanos, id) = s.split_once('.').ok_or_else(bad)?;
        let nanos: i64 = nanos.parse().map_err(|_| bad())?;
        check_id(Field::Cursor, id).map_err(|_| bad())?;
        Ok(ListCursor { updated_at: DateTime::from_timestamp_nanos(nanos), id: id.to_string() })
    }
}

/// What `DELETE /api/conversations/{id}` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The caller left a group.
    Left,
    /// A direct conversation or note to self: its history was cleared for the caller, and it
    /// leaves their list until a new message arrives. The other side keeps everything.
    Cleared,
}

impl Core {
    /// A page of history, newest first: the newest messages without `before`, then the ones
    /// below the previous page's `next_before`. Messages the caller deleted for themselves
    /// (or cleared) are left out; ones deleted for everyone stay as tombstones.
    pub async fn message_page(
        &self,
        actor: &Actor,
        chat: &str,
        before: Option<i64>,
        limit: Option<u64>,
    ) -> AppResult<Page> {
        check_id(Field::Chat, chat)?;
        let me = self.require_member(chat, &actor.user_id).await?;
        let limit = limit.unwrap_or(DEFAULT_HISTORY_PAGE);
        if limit == 0 {
            return Err(AppError::validation("limit must be at least 1"));
        }
        let limit = limit.min(MAX_HISTORY_PAGE);
        // One extra row tells whether another page follows.
        let mut rows = store::history::page(&self.db, chat, &actor.user_id, me.cleared_seq, before, limit + 1).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_before = if more { rows.last().map(|m| m.seq) } else { None };
        let messages = self.with_reactions(rows.into_iter().map(Message::from).collect()).await?;
        Ok(Page { messages, next_before })
    }

    /// The caller's conversations, most recently active first, with participants, the last
    /// message they can see and how many messages from others they have not read.
    pub async fn list_conversations(
        &self,
        actor: &Actor,
        after: Option<ListCursor>,
        limit: Option<u64>,
    ) -> AppResult<(Vec<Summary>, Option<ListCursor>)> {
        let me = &actor.user_id;
        let limit = limit.unwrap_or(DEFAULT_LIST_PAGE);
        if limit == 0 {
            return Err(AppError::validation("limit must be at least 1"));
        }
        let limit = limit.min(MAX_LIST_PAGE);
        let after = after.map(|c| (c.updated_at, c.id));
        let mut rows = store::history::conversations_of(&self.db, me, after, limit + 1).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next = if more {
            rows.last().map(|(c, _)| ListCursor { updated_at: c.updated_at, id: c.id.clone() })
        } else {
            None
        };

        let ids: Vec<String> = rows.iter().map(|(c, _)| c.id.clone()).collect();
        let member_rows = store::history::members_of(&self.db, &ids).await?;
        let mut user_ids: Vec<String> = member_rows.iter().map(|m| m.user_id.clone()).collect();
        user_ids.sort();
        user_ids.dedup();
        let users: HashMap<String, entity::user::Model> =
            store::users::get_many(&self.db, &user_ids).await?.into_iter().map(|u| (u.id.clone(), u)).collect();
        let unread: HashMap<String, i64> =
            store::history::unread_counts(&self.db, me, &ids).await?.into_iter().collect();
        let last = self.last_visible(me, &rows).await?;

        let mut members: HashMap<String, Vec<Member>> = HashMap::new();
        for m in member_rows {
            let user = users.get(&m.user_id);
            members.entry(m.conversation_id.clone()).or_default().push(store::convert::member(m, user));
        }
        let summaries = rows
            .into_iter()
            .map(|(c, _)| Summary {
                unread_count: unread.get(&c.id).copied().unwrap_or(0).max(0) as u64,
                last_message: last.get(&c.id).cloned(),
                conversation: {
                    let members = members.remove(&c.id).unwrap_or_default();
                    store::convert::conversation(c, members)
                },
            })
            .collect();
        Ok((summaries, next))
    }

    /// The newest message of each conversation that `user` can see: usually the one at
    /// `last_seq` (one query for all); when they hid that one, the newest before it.
    async fn last_visible(
        &self,
        user: &str,
        rows: &[(entity::conversation::Model, entity::member::Model)],
    ) -> AppResult<HashMap<String, Message>> {
        let positions: Vec<(String, i64)> =
            rows.iter().filter(|(c, m)| c.last_seq > m.cleared_seq).map(|(c, _)| (c.id.clone(), c.last_seq)).collect();
        let found = store::history::at_positions(&self.db, &positions).await?;
        let ids: Vec<String> = found.iter().map(|m| m.id.clone()).collect();
        let hidden = store::edits::hidden_among(&self.db, user, &ids).await?;
        let mut out = HashMap::new();
        for msg in found {
            if hidden.contains(&msg.id) {
                let cleared = rows.iter().find(|(c, _)| c.id == msg.conversation_id).map_or(0, |(_, m)| m.cleared_seq);
                let earlier =
                    store::history::page(&self.db, &msg.conversation_id, user, cleared, Some(msg.seq), 1).await?;
                if let Some(m) = earlier.into_iter().next() {
                    out.insert(m.conversation_id.clone(), Message::from(m));
                }
            } else {
                out.insert(msg.conversation_id.clone(), Message::from(msg));
            }
        }
        Ok(out)
    }

    /// Leaves a group, or clears a direct conversation (or note to self) for the caller.
    pub async fn remove_conversation(&self, actor: &Actor, chat: &str) -> AppResult<Removal> {
        check_id(Field::Chat, chat)?;
        self.require_member(chat, &actor.user_id).await?;
        let conversation = store::conversations::get(&self.db, chat)
            .await?
            .ok_or_else(|| AppError::NotFound("conversation not found".into()))?;
        if conversation.kind == ConversationKind::Group.as_str() {
            self.remove_member(actor, chat, &actor.user_id).await?;
            return Ok(Removal::Left);
        }
        store::history::clear(&self.db, chat, &actor.user_id, conversation.last_seq).await?;
        Ok(Removal::Cleared)
    }
}

impl Core {
    /// Up to `limit` people who share a conversation with the caller (whose presence a
    /// Spark client follows).
    pub async fn contacts(&self, actor: &Actor, limit: usize) -> AppResult<Vec<UserId>> {
        Ok(store::history::contacts(&self.db, &actor.user_id, limit as u64)
            .await?
            .into_iter()
            .map(UserId::from)
            .collect())
    }
}
