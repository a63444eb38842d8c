//! The delivery ledger: remembers what each connection was handed and moves the members'
//! delivered cursors forward in the background, so the hot path never waits on a write.
//!
//! A mark is written only once the connection's transport confirms that what it stands for
//! reached the client ([`Receipts`]); no amount of time makes it delivered. Each mark keeps
//! the position its transport must confirm, so the flush (every [`FLUSH_EVERY`]) writes
//! exactly what was confirmed. A connection that closes keeps its unconfirmed marks until its
//! transport says no receipt will come (a close answer can still confirm them); then they are
//! forgotten, and the user's next connection is pushed those messages again, under the same
//! ids. A graceful stop waits for the close answers before its last flush
//! ([`Ledger::settle`]), so a client that answered the close is pushed nothing twice.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use dashmap::DashMap;

use super::recall::CatchupMemory;
use crate::{
    core::model::{ChatId, DeviceId, Message, Profile, UserId},
    error::AppError,
    fanout::{Backlog, BoxFut, ConnId, DeliveryLedger, Receipts},
    store::{self, health::StorageHealth, Db},
};

#[derive(Default)]
struct Mark {
    /// Highest contiguous `seq` handed to the connection.
    handed: i64,
    /// Handed but not confirmed yet: `(seq, position)`, both increasing. A `seq` counts as
    /// delivered once its transport confirmed the position.
    unconfirmed: VecDeque<(i64, u64)>,
    written: i64,
    /// `seq`s handed above a gap, with the contiguous point when they were handed: a client's
    /// receipt for one of them vouches only for that point (what filled the gap was queued
    /// after it, and may not have reached the client). Pruned once written passes them.
    above_gap: VecDeque<(i64, i64)>,
    /// Entries dropped from a full `above_gap`: `(highest seq, lowest contiguous point)`;
    /// a receipt at or below that seq vouches for no more than that point.
    forgotten: Option<(i64, i64)>,
}

/// How many above-gap handings a mark remembers; gaps close within a bus hop, so a chat holds
/// a few at most, and past this a receipt only vouches for less (never for too much).
const ABOVE_GAP_KEPT: usize = 256;

impl Mark {
    /// The connection was handed `seq`, and has everything up to `contiguous`.
    fn note_handing(&mut self, seq: i64, contiguous: i64) {
        if seq > contiguous && !self.above_gap.iter().any(|(s, _)| *s == seq) {
            if self.above_gap.len() >= ABOVE_GAP_KEPT {
                if let Some((s, c)) = self.above_gap.pop_front() {
                    let (top, floor) = self.forgotten.unwrap_or((s, c));
                    self.forgotten = Some((top.max(s), floor.min(c)));
                }
            }
            self.above_gap.push_back((seq, contiguous));
        }
    }

    /// The highest `seq` a client's receipt for `seq` proves it has: `seq` itself when
    /// everything below it had been handed first; the contiguous point of its handing when it
    /// came above a gap; nothing when this connection never handed it (the client learned of
    /// it elsewhere, which proves nothing about what this connection queued).
    fn vouched_by_receipt(&self, seq: i64) -> Option<i64> {
        if let Some((_, contiguous)) = self.above_gap.iter().find(|(s, _)| *s == seq) {
            return Some(*contiguous);
        }
        if seq > self.handed {
            return None;
        }
        match self.forgotten {
            Some((top, floor)) if seq <= top => Some(seq.min(floor)),
            _ => Some(seq),
        }
    }

    /// Forgets what the durable cursor passed: a receipt can no longer move it.
    fn prune(&mut self) {
        let written = self.written;
        self.above_gap.retain(|(seq, _)| *seq > written);
        if self.forgotten.is_some_and(|(top, _)| top <= written) {
            self.forgotten = None;
        }
    }

    /// The highest `seq` this connection confirmed, given its transport's `confirmed` position.
    fn confirmed_up_to(&self, confirmed: u64) -> i64 {
        let newly = self.unconfirmed.iter().take_while(|(_, needs)| *needs <= confirmed).map(|(seq, _)| *seq).last();
        newly.map_or(self.written, |seq| seq.max(self.written))
    }
}

/// One connection's marks. Keyed by connection, so that recording a delivery (once per
/// recipient of every message) allocates nothing once the chat has a mark.
struct ConnMarks {
    user: UserId,
    device: DeviceId,
    receipts: Arc<dyn Receipts>,
    open: bool,
    chats: HashMap<ChatId, Mark>,
}

pub struct Ledger {
    db: Db,
    health: Arc<StorageHealth>,
    /// Answers a catch-up that owes nothing without a query; kept up to date by the flush.
    memory: Arc<CatchupMemory>,
    marks: DashMap<ConnId, ConnMarks>,
    /// The connections with marks of each device, so that a catch-up reads its device's marks
    /// without going through every connection's (a reconnect wave of N clients would be N²).
    by_device: DashMap<(UserId, DeviceId), Vec<ConnId>>,
    /// One flush at a time: a flush takes marks as written before its transaction commits,
    /// so a second one running meanwhile would find nothing to write and return early (the
    /// graceful stop's last flush would then let the listener close, and the background
    /// flush be aborted, before the marks were in the database).
    flushing: tokio::sync::Mutex<()>,
    /// Catch-up reads that run at once: three quarters of the pool. After a deploy every
    /// client reconnects and most catch-ups read; unbounded, 19,000 of them queued for the
    /// pool's connections, those that waited past the pool's timeout failed and tried again,
    /// and on PostgreSQL the wave took minutes. Here they queue without a timeout, and a
    /// quarter of the pool stays free for everything else. Not fewer: catch-ups that queue
    /// keep their tasks alive, and with half the pool a ramp of 900 new connections a second
    /// queued enough of them to raise the idle memory per connection from 21.1 to 25.0 KiB.
    catchup_reads: tokio::sync::Semaphore,
}

/// How often confirmed marks are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// How often a graceful stop looks whether every close was answered.
const SETTLE_POLL: Duration = Duration::from_millis(10);

impl Ledger {
    pub fn new(db: Db, health: Arc<StorageHealth>, memory: Arc<CatchupMemory>) -> Arc<Self> {
        Arc::new(Self {
            health,
            memory,
            marks: DashMap::new(),
            by_device: DashMap::new(),
            flushing: tokio::sync::Mutex::new(()),
            catchup_reads: tokio::sync::Semaphore::new((store::pool_size(&db) as usize * 3 / 4).max(1)),
            db,
        })
    }

    /// Writes the confirmed marks, and forgets connections that closed and will confirm
    /// nothing more.
    pub async fn flush(&self) {
        let _one_at_a_time = self.flushing.lock().await;
        let mut writes: HashMap<(UserId, DeviceId, ChatId), i64> = HashMap::new();
        let mut gone = Vec::new();
        for mut entry in self.marks.iter_mut() {
            let conn_id = *entry.key();
            let conn = entry.value_mut();
            // An open connection with nothing awaiting confirmation has nothing to write: skip
            // it before asking its transport (a lock per connection, 19,000 idle ones four times
            // a second, was a steady load of its own and slowed a reconnect wave).
            if conn.open && conn.chats.values().all(|mark| mark.unconfirmed.is_empty()) {
                continue;
            }
            // Read before `confirmed`: a connection that finished confirmed all it ever will.
            let finished = !conn.open && conn.receipts.finished();
            let confirmed = conn.receipts.confirmed();
            for (chat, mark) in conn.chats.iter_mut() {
                let mut due = mark.written;
                while let Some(&(seq, needs)) = mark.unconfirmed.front() {
                    if needs > confirmed {
                        break;
                    }
                    due = due.max(seq);
                    mark.unconfirmed.pop_front();
                }
                if due > mark.written {
                    let slot = writes.entry((conn.user.clone(), conn.device.clone(), chat.clone())).or_default();
                    *slot = (*slot).max(due);
                    mark.written = due;
                    mark.prune();
                }
            }
            if finished {
                gone.push(conn_id);
            }
        }
        let cursors: Vec<(&str, &str, &str, i64)> = writes
            .iter()
            .map(|((user, device, chat), seq)| (chat.as_str(), user.as_str(), device.as_str(), *seq))
            .collect();
        if !cursors.is_empty() {
            match store::devices::advance(&self.db, &cursors).await {
                // Unwritten marks only mean re-pushes: the next connections catch up from the
                // cursors as they are, so a message may arrive again (same id), never go missing.
                Err(e) => self.health.write_failed("delivery marks", &e),
                Ok(()) => {
                    self.health.write_succeeded();
                    self.memory.delivered(&cursors);
                }
            }
        }
        // Only now: until its cursors are written, a closed connection's marks are what tells
        // the user's next connection what it need not be pushed again (forgotten before the
        // write, a reconnect in between was pushed what the closed one had confirmed).
        for conn in gone {
            let Some((_, marks)) = self.marks.remove(&conn) else { continue };
            self.by_device.remove_if_mut(&(marks.user, marks.device), |_, conns| {
                conns.retain(|c| *c != conn);
                conns.is_empty()
            });
        }
    }

    /// Graceful stop, once every transport was closed: writes marks as their close answers
    /// confirm them, until no connection with unconfirmed marks is left or `deadline`
    /// passes; what is still unconfirmed then is forgotten.
    pub async fn settle(&self, deadline: tokio::time::Instant) -> Settled {
        // socketioxide reports no disconnect for the sockets it closes when the server closes.
        for mut conn in self.marks.iter_mut() {
            conn.open = false;
        }
        loop {
            self.flush().await;
            let waiting = self.marks.iter().filter(|e| e.chats.values().any(|m| !m.unconfirmed.is_empty())).count();
            if waiting == 0 || tokio::time::Instant::now() >= deadline {
                return Settled { unconfirmed_connections: waiting };
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    /// How far a client's receipt for `seq` of `chat`, sent on connection `conn`, moves its
    /// device's delivered cursor: only over what that connection had been handed before the
    /// message (see [`Mark::vouched_by_receipt`]). A receipt from another path (REST, a
    /// connection that never handed the message) moves nothing; the marks of the connections
    /// that did hand it move the cursor once their transports confirm.
    pub fn vouched_by_receipt(&self, conn: Option<ConnId>, chat: &str, seq: i64) -> Option<i64> {
        let marks = self.marks.get(&conn?)?;
        marks.chats.get(chat)?.vouched_by_receipt(seq)
    }

    /// A turn for a catch-up's reads (see `catchup_reads`); held until they are done.
    pub async fn catchup_read_turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, AppError> {
        // The semaphore is never closed.
        self.catchup_reads
            .acquire()
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("the queue of catch-up reads was closed")))
    }

    pub fn spawn_flusher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let ledger = self.clone();
        super::spawn_every(FLUSH_EVERY, move || {
            let ledger = ledger.clone();
            async move { ledger.flush().await }
        })
    }

    async fn load_missed(
        &self,
        user: &str,
        device: &str,
        cursors: HashMap<ChatId, i64>,
        ceilings: HashMap<ChatId, i64>,
        limit: usize,
    ) -> Result<Backlog, AppError> {
        // What this device's other open connections were handed counts as delivered; of a
        // closed one, only what it confirmed. Other devices' deliveries do not count.
        let mut handed: HashMap<ChatId, i64> = HashMap::new();
        let conns = self.by_device.get(&(UserId::from(user), DeviceId::from(device))).map(|c| c.clone());
        for id in conns.unwrap_or_default() {
            let Some(conn) = self.marks.get(&id) else { continue };
            // Read now rather than at the last flush: a receipt that came since counts.
            let confirmed = conn.receipts.confirmed();
            for (chat, mark) in &conn.chats {
                let had = if conn.open { mark.handed } else { mark.confirmed_up_to(confirmed) };
                let slot = handed.entry(chat.clone()).or_default();
                *slot = (*slot).max(had);
            }
        }
        if let Some(baselines) = self.memory.recall(user, device, &handed, &cursors, !ceilings.is_empty()) {
            return Ok(Backlog { messages: Vec::new(), baselines });
        }
        let _turn = self.catchup_read_turn().await?;
        let ticket = self.memory.before_query(&UserId::from(user));
        let rows = store::devices::cursors(&self.db, user, device).await?;
        self.memory.fill(ticket, user, device, &rows);
        let mut messages = Vec::new();
        let mut baselines = HashMap::new();
        for (chat, delivered, last_seq) in rows {
            let mut from = delivered
                .max(handed.get(chat.as_str()).copied().unwrap_or(0))
                .max(cursors.get(chat.as_str()).copied().unwrap_or(0));
            // What this connection is owed comes first, whatever other devices were handed.
            if let Some(ceiling) = ceilings.get(chat.as_str()) {
                from = from.min(*ceiling);
            }
            let room = limit.saturating_sub(messages.len());
            if last_seq > from && room > 0 {
                let rows = store::messages::after(&self.db, &chat, from, room as u64).await?;
                messages.extend(rows.into_iter().map(Message::from));
            }
            baselines.insert(ChatId::from(chat), from);
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
    let mut senders: Vec<UserId> = messages.iter().map(|m| m.sender_id.clone()).collect();
    senders.sort();
    senders.dedup();
    let profiles: HashMap<String, Profile> = store::users::get_many(db, &senders)
        .await?
        .iter()
        .map(|u| (u.id.clone(), store::convert::profile(u)))
        .collect();
    for m in messages {
        m.sender = Some(profiles.get(m.sender_id.as_str()).cloned().unwrap_or_default());
    }
    Ok(())
}

impl DeliveryLedger for Ledger {
    fn opened(&self, conn: ConnId, user: &str, device: &str, receipts: Arc<dyn Receipts>) {
        let marks = ConnMarks { user: user.into(), device: device.into(), receipts, open: true, chats: HashMap::new() };
        self.marks.insert(conn, marks);
        self.by_device.entry((user.into(), device.into())).or_default().push(conn);
    }

    fn pushed(&self, conn: ConnId, chat: &str, seq: i64, contiguous: i64) {
        let Some(mut conn) = self.marks.get_mut(&conn) else { return };
        // Taken after the message was queued: a later position only asks for more.
        let needs = conn.receipts.position();
        let mark = match conn.chats.get_mut(chat) {
            Some(mark) => mark,
            None => conn.chats.entry(chat.into()).or_default(),
        };
        mark.note_handing(seq, contiguous);
        // Delivery marks move over what the connection has without a hole, never over a gap.
        if contiguous <= mark.handed {
            return;
        }
        mark.handed = contiguous;
        // Marks that need the same receipt are one: a chat holds a handful at most.
        match mark.unconfirmed.back_mut() {
            Some(last) if last.1 == needs => last.0 = contiguous,
            _ => mark.unconfirmed.push_back((contiguous, needs)),
        }
    }

    fn closed(&self, conn: ConnId) {
        if let Some(mut conn) = self.marks.get_mut(&conn) {
            conn.open = false;
        }
    }

    fn missed<'a>(
        &'a self,
        user: &'a str,
        device: &'a str,
        cursors: HashMap<ChatId, i64>,
        ceilings: HashMap<ChatId, i64>,
        limit: usize,
    ) -> BoxFut<'a, Result<Backlog, AppError>> {
        Box::pin(self.load_missed(user, device, cursors, ceilings, limit))
    }

    fn between<'a>(&'a self, chat: &'a str, after: i64, upto: i64) -> BoxFut<'a, Result<Vec<Message>, AppError>> {
        Box::pin(async move {
            let limit = u64::try_from(upto - after).unwrap_or(0);
            let rows = store::messages::after(&self.db, chat, after, limit).await?;
            Ok(rows.into_iter().map(Message::from).collect())
        })
    }
}

/// What a graceful stop's last flush left unconfirmed.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    pub unconfirmed_connections: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark_after(handings: &[(i64, i64)]) -> Mark {
        let mut mark = Mark::default();
        for &(seq, contiguous) in handings {
            mark.note_handing(seq, contiguous);
            mark.handed = mark.handed.max(contiguous);
        }
        mark
    }

    #[test]
    fn a_receipt_vouches_for_its_message_when_nothing_below_was_missing() {
        let mark = mark_after(&[(1, 1), (2, 2), (3, 3)]);
        assert_eq!(mark.vouched_by_receipt(3), Some(3));
        assert_eq!(mark.vouched_by_receipt(2), Some(2));
    }

    #[test]
    fn a_receipt_for_a_message_above_a_gap_vouches_only_below_the_gap() {
        // 12 went out while 11 was still on its way from another instance; 11 came next.
        let mark = mark_after(&[(10, 10), (12, 10), (11, 12)]);
        assert_eq!(mark.handed, 12);
        assert_eq!(mark.vouched_by_receipt(12), Some(10), "11 was queued after 12: not proven");
        assert_eq!(mark.vouched_by_receipt(11), Some(11));
    }

    #[test]
    fn a_receipt_for_a_message_this_connection_never_handed_vouches_for_nothing() {
        let mark = mark_after(&[(5, 5)]);
        assert_eq!(mark.vouched_by_receipt(9), None);
    }

    #[test]
    fn written_marks_prune_what_they_passed() {
        let mut mark = mark_after(&[(10, 10), (12, 10), (11, 12)]);
        mark.written = 12;
        mark.prune();
        assert!(mark.above_gap.is_empty());
    }

    #[test]
    fn a_full_memory_of_gaps_vouches_for_less_never_for_more() {
        let mut handings = vec![(1, 1)];
        for seq in 3..(3 + ABOVE_GAP_KEPT as i64 + 10) {
            handings.push((seq, 1));
        }
        let mark = mark_after(&handings);
        assert_eq!(mark.above_gap.len(), ABOVE_GAP_KEPT);
        let mut mark = mark;
        mark.handed = 400; // 2 came at last
        for seq in 3..(3 + ABOVE_GAP_KEPT as i64 + 10) {
            assert_eq!(mark.vouched_by_receipt(seq), Some(1), "seq {seq}");
        }
    }
}
