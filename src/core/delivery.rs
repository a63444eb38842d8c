//! The delivery ledger: remembers what each user's connections were handed and moves the
//! members' delivered cursors forward in the background, so the hot path never waits on a
//! write for it. Marks still in memory when the process dies are the reason a message can be
//! pushed twice after a crash; a graceful stop flushes them first, so it never re-pushes.

use std::{collections::HashMap, sync::Arc, time::Duration};

use dashmap::DashMap;

use crate::{
    core::model::{ChatId, Message, UserId},
    error::AppError,
    fanout::{BoxFut, DeliveryLedger},
    store::{self, Db},
};

pub struct Ledger {
    db: Db,
    /// `(user, chat)` → highest contiguous `seq` handed to a connection, not yet written.
    pending: DashMap<(UserId, ChatId), i64>,
}

/// How often pending marks are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

impl Ledger {
    pub fn new(db: Db) -> Arc<Self> {
        Arc::new(Self {
            db,
            pending: DashMap::new(),
        })
    }

    /// Writes all pending marks. Called periodically and once more at shutdown.
    pub async fn flush(&self) {
        let keys: Vec<(UserId, ChatId)> = self.pending.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            let Some((key, seq)) = self.pending.remove(&key) else {
                continue;
            };
            if let Err(e) =
                store::conversations::advance_cursor(&self.db, &key.1, &key.0, seq, false).await
            {
                tracing::warn!(cause = %e, "could not record delivery; will retry");
                // Put it back unless a newer mark arrived meanwhile.
                self.pending
                    .entry(key)
                    .and_modify(|s| *s = (*s).max(seq))
                    .or_insert(seq);
                break;
            }
        }
    }

    pub fn spawn_flusher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let ledger = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                ledger.flush().await;
            }
        })
    }

    async fn load_missed(
        &self,
        user: &str,
        cursors: HashMap<ChatId, i64>,
        limit: usize,
    ) -> Result<Vec<Message>, AppError> {
        let mut out = Vec::new();
        for (chat, delivered) in store::conversations::with_backlog(&self.db, user).await? {
            let pending = self
                .pending
                .get(&(user.to_string(), chat.clone()))
                .map(|s| *s)
                .unwrap_or(0);
            let from = delivered
                .max(pending)
                .max(cursors.get(&chat).copied().unwrap_or(0));
            let room = limit.saturating_sub(out.len());
            if room == 0 {
                break;
            }
            let rows = store::messages::after(&self.db, &chat, from, room as u64).await?;
            out.extend(rows.into_iter().map(Message::from));
        }
        Ok(out)
    }
}

impl DeliveryLedger for Ledger {
    fn pushed(&self, user: &str, chat: &str, seq: i64) {
        self.pending
            .entry((user.to_string(), chat.to_string()))
            .and_modify(|s| *s = (*s).max(seq))
            .or_insert(seq);
    }

    fn missed<'a>(
        &'a self,
        user: &'a str,
        cursors: HashMap<ChatId, i64>,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Message>, AppError>> {
        Box::pin(self.load_missed(user, cursors, limit))
    }
}
