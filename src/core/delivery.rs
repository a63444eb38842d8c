//! The delivery ledger: remembers what each connection was handed and moves the members'
//! delivered cursors forward in the background, so the hot path never waits on a write.
//!
//! A mark is only written once it has *settled* for one flush period while its connection
//! stayed open. A transport that dies right after being handed a message may never have put
//! it on the wire; dropping the unsettled marks of a closed connection makes the user's next
//! connection get that message again (same id) instead of never. A graceful stop writes every
//! mark before it closes the transports, so it re-pushes nothing.

use std::{collections::HashMap, sync::Arc, time::Duration};

use dashmap::DashMap;

use crate::{
    core::model::{ChatId, Message, Profile, UserId},
    error::AppError,
    fanout::{Backlog, BoxFut, ConnId, DeliveryLedger},
    store::{self, health::StorageHealth, Db},
};

#[derive(Clone, Copy, Default)]
struct Mark {
    /// Highest contiguous `seq` handed to the connection.
    current: i64,
    /// `current` as it was at the previous flush: it has survived one period.
    settled: i64,
    written: i64,
}

/// One connection's marks. Keyed by connection, so that recording a delivery (once per
/// recipient of every message) allocates nothing once the chat has a mark.
struct ConnMarks {
    user: UserId,
    chats: HashMap<ChatId, Mark>,
}

pub struct Ledger {
    db: Db,
    health: Arc<StorageHealth>,
    marks: DashMap<ConnId, ConnMarks>,
}

/// How often settled marks are written (and so how long a mark must survive to be written).
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

impl Ledger {
    pub fn new(db: Db, health: Arc<StorageHealth>) -> Arc<Self> {
        Arc::new(Self { db, health, marks: DashMap::new() })
    }

    /// Writes settled marks and lets current ones settle.
    pub async fn flush_settled(&self) {
        self.flush(false).await;
    }

    /// Writes every mark, settled or not (graceful stop, after the last in-flight writes).
    pub async fn flush_all(&self) {
        self.flush(true).await;
    }

    async fn flush(&self, all: bool) {
        let mut writes: HashMap<(UserId, ChatId), i64> = HashMap::new();
        for mut entry in self.marks.iter_mut() {
            let conn = entry.value_mut();
            for (chat, mark) in conn.chats.iter_mut() {
                let due = if all { mark.current } else { mark.settled };
                if due > mark.written {
                    let slot = writes.entry((conn.user.clone(), chat.clone())).or_default();
                    *slot = (*slot).max(due);
                    mark.written = due;
                }
                mark.settled = mark.current;
            }
        }
        let cursors: Vec<(&str, &str, i64)> =
            writes.iter().map(|((user, chat), seq)| (chat.as_str(), user.as_str(), *seq)).collect();
        if cursors.is_empty() {
            return;
        }
        match store::conversations::advance_delivered(&self.db, &cursors).await {
            // Unwritten marks only mean re-pushes: the next connections catch up from the
            // cursors as they are, so a message may arrive again (same id), never go missing.
            Err(e) => self.health.write_failed("delivery marks", &e),
            Ok(()) => self.health.write_succeeded(),
        }
    }

    pub fn spawn_flusher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let ledger = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                ledger.flush_settled().await;
            }
        })
    }

    async fn load_missed(
        &self,
        user: &str,
        cursors: HashMap<ChatId, i64>,
        ceilings: HashMap<ChatId, i64>,
        limit: usize,
    ) -> Result<Backlog, AppError> {
        // What the user's other open connections were handed counts as delivered.
        let mut handed: HashMap<ChatId, i64> = HashMap::new();
        for entry in self.marks.iter().filter(|e| e.value().user == user) {
            for (chat, mark) in &entry.value().chats {
                let slot = handed.entry(chat.clone()).or_default();
                *slot = (*slot).max(mark.current);
            }
        }
        let mut messages = Vec::new();
        let mut baselines = HashMap::new();
        for (chat, delivered, last_seq) in store::conversations::cursors(&self.db, user).await? {
            let mut from =
                delivered.max(handed.get(&chat).copied().unwrap_or(0)).max(cursors.get(&chat).copied().unwrap_or(0));
            // What this connection is owed comes first, whatever other devices were handed.
            if let Some(ceiling) = ceilings.get(&chat) {
                from = from.min(*ceiling);
            }
            let room = limit.saturating_sub(messages.len());
            if last_seq > from && room > 0 {
                let rows = store::messages::after(&self.db, &chat, from, room as u64).await?;
                messages.extend(rows.into_iter().map(Message::from));
            }
            baselines.insert(chat, from);
        }
        with_senders(&self.db, &mut messages).await?;
        Ok(Backlog { messages, baselines })
    }
}

/// Fills in the senders' profiles, as live messages carry them: one read for the backlog.
async fn with_senders(db: &Db, messages: &mut [Message]) -> Result<(), AppError> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut senders: Vec<String> = messages.iter().map(|m| m.sender_id.clone()).collect();
    senders.sort();
    senders.dedup();
    let profiles: HashMap<String, Profile> =
        store::users::get_many(db, &senders).await?.iter().map(|u| (u.id.clone(), Profile::of(u))).collect();
    for m in messages {
        m.sender = Some(profiles.get(&m.sender_id).cloned().unwrap_or_default());
    }
    Ok(())
}

impl DeliveryLedger for Ledger {
    fn pushed(&self, conn: ConnId, user: &str, chat: &str, seq: i64) {
        let mut conn =
            self.marks.entry(conn).or_insert_with(|| ConnMarks { user: user.to_string(), chats: HashMap::new() });
        match conn.chats.get_mut(chat) {
            Some(mark) => mark.current = mark.current.max(seq),
            None => {
                conn.chats.insert(chat.to_string(), Mark { current: seq, ..Mark::default() });
            }
        }
    }

    fn closed(&self, conn: ConnId) {
        // Unsettled marks of a closed connection are forgotten; settled ones were written.
        self.marks.remove(&conn);
    }

    fn missed<'a>(
        &'a self,
        user: &'a str,
        cursors: HashMap<ChatId, i64>,
        ceilings: HashMap<ChatId, i64>,
        limit: usize,
    ) -> BoxFut<'a, Result<Backlog, AppError>> {
        Box::pin(self.load_missed(user, cursors, ceilings, limit))
    }
}
