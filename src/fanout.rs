//! The one fan-out mechanism: core events → rooms `user:{id}` / `chat:{id}` → every connection
//! of every profile and connection type. Profiles register a [`Connection`] that encodes events
//! in their own dialect; the hub decides who gets what, and owns the delivery guarantees that
//! do not depend on a wire format:
//!
//! * **No duplicates per connection.** Each connection remembers which `seq` of each chat it
//!   was handed, so a message that arrives both live and through catch-up is sent once.
//! * **Nothing silently skipped.** A new connection starts in *syncing* mode: live messages are
//!   held back (only noted) while the backlog is pushed from the database in `seq` order; when
//!   the backlog is drained and nothing new was noted, the connection goes live. A connection
//!   whose transport buffer is full (a slow consumer) drops back into syncing mode, and the
//!   same loop catches it up from the database once it drains, instead of losing the event.
//! * **Delivery marks.** What a connection was handed is reported to the [`DeliveryLedger`],
//!   which advances the member's delivered cursor, so the next connection of that user only
//!   gets what no device of theirs has seen.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use dashmap::DashMap;

use crate::core::model::{Audience, ChatId, Event, Message, UserId};
use crate::error::AppError;

pub type ConnId = u64;
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a connection could not take an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The transport buffer is full: the client is not reading fast enough.
    Full,
    /// The connection is gone.
    Closed,
}

/// One client connection of any profile. `send` must not block: it either queues the encoded
/// event on the transport or says why it cannot.
pub trait Connection: Send + Sync + 'static {
    fn user_id(&self) -> &str;
    fn send(&self, event: &Event) -> Result<(), SendFailure>;
}

/// The durable side of delivery, implemented by the core over the store.
pub trait DeliveryLedger: Send + Sync + 'static {
    /// Connection `conn` of `user` was handed every message of `chat` up to `seq`.
    fn pushed(&self, conn: ConnId, user: &str, chat: &str, seq: i64);
    /// The connection closed; what it was handed but not yet recorded may not have arrived.
    fn closed(&self, conn: ConnId);
    /// Messages this user has not been handed yet: per chat, after the larger of the durable
    /// delivered cursor and the given in-memory cursor; oldest first per chat.
    fn missed<'a>(
        &'a self,
        user: &'a str,
        cursors: HashMap<ChatId, i64>,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Message>, AppError>>;
}

/// What one connection was handed in one chat: everything up to `contiguous`, plus the
/// `seq`s above it (delivery across instances may arrive out of order).
#[derive(Default, Debug)]
struct Handed {
    contiguous: i64,
    above: BTreeSet<i64>,
}

impl Handed {
    fn starting_at(contiguous: i64) -> Self {
        Self {
            contiguous,
            above: BTreeSet::new(),
        }
    }

    fn contains(&self, seq: i64) -> bool {
        seq <= self.contiguous || self.above.contains(&seq)
    }

    fn insert(&mut self, seq: i64) {
        if seq <= self.contiguous {
            return;
        }
        self.above.insert(seq);
        while self.above.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
    }
}

#[derive(Default)]
struct SyncState {
    syncing: bool,
    /// A live message was held back (or failed) since the last backlog query.
    missed: bool,
    handed: HashMap<ChatId, Handed>,
}

struct Entry {
    user: UserId,
    conn: Arc<dyn Connection>,
    sync: Mutex<SyncState>,
    chats: Mutex<HashSet<ChatId>>,
    watching: Mutex<HashSet<UserId>>,
}

/// Counters the metrics endpoint reads.
#[derive(Default)]
pub struct HubStats {
    pub slow_consumer_resyncs: AtomicU64,
    pub held_back: AtomicU64,
}

pub struct Hub {
    next_id: AtomicU64,
    conns: DashMap<ConnId, Arc<Entry>>,
    users: DashMap<UserId, HashSet<ConnId>>,
    chats: DashMap<ChatId, HashSet<ConnId>>,
    watchers: DashMap<UserId, HashSet<ConnId>>,
    ledger: OnceLock<Arc<dyn DeliveryLedger>>,
    pub stats: HubStats,
}

/// How many backlog messages one catch-up query fetches.
const BACKLOG_PAGE: usize = 500;
/// How long a syncing connection waits for a full buffer to drain before retrying.
const DRAIN_WAIT: Duration = Duration::from_millis(25);

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            next_id: AtomicU64::new(1),
            conns: DashMap::new(),
            users: DashMap::new(),
            chats: DashMap::new(),
            watchers: DashMap::new(),
            ledger: OnceLock::new(),
            stats: HubStats::default(),
        }
    }

    pub fn set_ledger(&self, ledger: Arc<dyn DeliveryLedger>) {
        let _ = self.ledger.set(ledger);
    }

    /// Registers a connection in its user's room, in syncing mode: live messages for it are
    /// held back until [`Hub::start_sync`] has pushed the backlog. Register before the client
    /// can send anything, so no event of theirs can outrun the registration.
    pub fn register(&self, conn: Arc<dyn Connection>) -> ConnId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let user = conn.user_id().to_string();
        let entry = Arc::new(Entry {
            user: user.clone(),
            conn,
            sync: Mutex::new(SyncState {
                syncing: true,
                ..Default::default()
            }),
            chats: Mutex::new(HashSet::new()),
            watching: Mutex::new(HashSet::new()),
        });
        self.conns.insert(id, entry);
        self.users.entry(user).or_default().insert(id);
        id
    }

    /// Removes a connection from every room. Returns true when it was its user's last one here.
    pub fn unregister(&self, id: ConnId) -> bool {
        let Some((_, entry)) = self.conns.remove(&id) else {
            return false;
        };
        for chat in lock(&entry.chats).drain() {
            remove_member(&self.chats, &chat, id);
        }
        for user in lock(&entry.watching).drain() {
            remove_member(&self.watchers, &user, id);
        }
        remove_member(&self.users, &entry.user, id);
        if let Some(ledger) = self.ledger.get() {
            ledger.closed(id);
        }
        !self.users.contains_key(&entry.user)
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn is_online(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Starts (or restarts) catch-up for a connection; it goes live when the backlog is empty.
    pub fn start_sync(self: &Arc<Self>, id: ConnId) {
        let Some(entry) = self.conns.get(&id).map(|e| e.clone()) else {
            return;
        };
        let hub = self.clone();
        tokio::spawn(async move { hub.catch_up(id, entry).await });
    }

    pub fn join_chat(&self, id: ConnId, chat: &str) {
        if let Some(entry) = self.conns.get(&id) {
            lock(&entry.chats).insert(chat.to_string());
            self.chats.entry(chat.to_string()).or_default().insert(id);
        }
    }

    pub fn leave_chat(&self, id: ConnId, chat: &str) {
        if let Some(entry) = self.conns.get(&id) {
            lock(&entry.chats).remove(chat);
            remove_member(&self.chats, chat, id);
        }
    }

    /// Takes every connection of `user` out of the chat's room: they stopped being a member,
    /// so room events (typing) must stop reaching them.
    pub fn remove_user_from_chat(&self, user: &str, chat: &str) {
        let ids: Vec<ConnId> = self
            .users
            .get(user)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.leave_chat(id, chat);
        }
    }

    /// Distinct users with a connection in the chat's room on this instance.
    pub fn users_in_chat(&self, chat: &str) -> Vec<UserId> {
        let ids: Vec<ConnId> = self
            .chats
            .get(chat)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let mut users: Vec<UserId> = ids
            .iter()
            .filter_map(|id| self.conns.get(id).map(|e| e.user.clone()))
            .collect();
        users.sort();
        users.dedup();
        users
    }

    pub fn watch(&self, id: ConnId, users: &[UserId]) {
        if let Some(entry) = self.conns.get(&id) {
            let mut watching = lock(&entry.watching);
            for user in users {
                watching.insert(user.clone());
                self.watchers.entry(user.clone()).or_default().insert(id);
            }
        }
    }

    pub fn unwatch(&self, id: ConnId, users: &[UserId]) {
        if let Some(entry) = self.conns.get(&id) {
            let mut watching = lock(&entry.watching);
            for user in users {
                watching.remove(user);
                remove_member(&self.watchers, user, id);
            }
        }
    }

    /// Publishes an event to an audience. `origin` is the connection that caused it: it gets
    /// no echo (for messages it only records the `seq` as handed, since it has the ack).
    pub fn publish(self: &Arc<Self>, audience: &Audience, event: Event, origin: Option<ConnId>) {
        self.deliver_local(audience, &event, origin);
    }

    fn targets(&self, audience: &Audience) -> Vec<ConnId> {
        let from = |map: &DashMap<String, HashSet<ConnId>>, key: &str, out: &mut Vec<ConnId>| {
            if let Some(set) = map.get(key) {
                out.extend(set.iter().copied());
            }
        };
        let mut out = Vec::new();
        match audience {
            Audience::Users(users) => {
                for user in users {
                    from(&self.users, user, &mut out);
                }
            }
            Audience::Chat(chat) => from(&self.chats, chat, &mut out),
            Audience::PresenceWatchers(user) => from(&self.watchers, user, &mut out),
        }
        out
    }

    /// Delivers to the connections on this instance.
    pub fn deliver_local(
        self: &Arc<Self>,
        audience: &Audience,
        event: &Event,
        origin: Option<ConnId>,
    ) {
        for id in self.targets(audience) {
            let Some(entry) = self.conns.get(&id).map(|e| e.clone()) else {
                continue;
            };
            match event {
                Event::MessageCreated(msg) => {
                    self.deliver_message(id, &entry, msg, event, origin == Some(id))
                }
                _ if origin == Some(id) => {}
                _ => {
                    if entry.conn.send(event) == Err(SendFailure::Full) {
                        // Ephemeral events cannot be replayed; the messages after them can.
                        self.fall_behind(id, &entry);
                    }
                }
            }
        }
    }

    fn deliver_message(
        self: &Arc<Self>,
        id: ConnId,
        entry: &Arc<Entry>,
        msg: &Message,
        event: &Event,
        is_origin: bool,
    ) {
        let mut state = lock(&entry.sync);
        if state.syncing {
            state.missed = true;
            self.stats.held_back.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let handed = state
            .handed
            .entry(msg.chat_id.clone())
            .or_insert_with(|| Handed::starting_at(msg.seq - 1));
        if handed.contains(msg.seq) {
            return;
        }
        // The sending connection has the message in its ack; it only needs the bookkeeping.
        let result = if is_origin {
            Ok(())
        } else {
            entry.conn.send(event)
        };
        match result {
            Ok(()) => {
                handed.insert(msg.seq);
                let contiguous = handed.contiguous;
                drop(state);
                if let Some(ledger) = self.ledger.get() {
                    ledger.pushed(id, &entry.user, &msg.chat_id, contiguous);
                }
            }
            Err(SendFailure::Full) => {
                drop(state);
                self.fall_behind(id, entry);
            }
            Err(SendFailure::Closed) => {}
        }
    }

    /// A slow consumer: switch it to syncing mode and catch it up from the database.
    fn fall_behind(self: &Arc<Self>, id: ConnId, entry: &Arc<Entry>) {
        let mut state = lock(&entry.sync);
        state.missed = true;
        if state.syncing {
            return;
        }
        state.syncing = true;
        drop(state);
        self.stats
            .slow_consumer_resyncs
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(conn = id, user = %entry.user, "slow consumer: resyncing from the store");
        let hub = self.clone();
        let entry = entry.clone();
        tokio::spawn(async move { hub.catch_up(id, entry).await });
    }

    /// Pushes the backlog until none is left and no live message was held back meanwhile.
    async fn catch_up(self: Arc<Self>, id: ConnId, entry: Arc<Entry>) {
        let Some(ledger) = self.ledger.get().cloned() else {
            lock(&entry.sync).syncing = false;
            return;
        };
        loop {
            let cursors: HashMap<ChatId, i64> = {
                let mut state = lock(&entry.sync);
                state.missed = false;
                state
                    .handed
                    .iter()
                    .map(|(chat, h)| (chat.clone(), h.contiguous))
                    .collect()
            };
            let backlog = match ledger.missed(&entry.user, cursors, BACKLOG_PAGE).await {
                Ok(backlog) => backlog,
                Err(e) => {
                    e.log_if_internal("catch-up");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if !self.conns.contains_key(&id) {
                        return;
                    }
                    continue;
                }
            };
            let page_full = backlog.len() >= BACKLOG_PAGE;
            for msg in backlog {
                if !self.push_backlog(id, &entry, msg, &*ledger).await {
                    return; // connection closed
                }
            }
            if page_full {
                continue;
            }
            let mut state = lock(&entry.sync);
            if !state.missed {
                state.syncing = false;
                return;
            }
        }
    }

    /// Sends one backlog message, waiting for the transport to drain if it is full.
    /// Returns false when the connection is gone.
    async fn push_backlog(
        &self,
        id: ConnId,
        entry: &Entry,
        msg: Message,
        ledger: &dyn DeliveryLedger,
    ) -> bool {
        {
            let state = lock(&entry.sync);
            if state
                .handed
                .get(&msg.chat_id)
                .is_some_and(|h| h.contains(msg.seq))
            {
                return true;
            }
        }
        let own = msg.sender_id == entry.user;
        let chat = msg.chat_id.clone();
        let seq = msg.seq;
        let event = Event::MessageCreated(msg);
        // The user's own messages are not pushed back to them on reconnect (their device has
        // them from the ack); they only advance the cursor.
        if !own {
            loop {
                match entry.conn.send(&event) {
                    Ok(()) => break,
                    Err(SendFailure::Closed) => return false,
                    Err(SendFailure::Full) => tokio::time::sleep(DRAIN_WAIT).await,
                }
            }
        }
        let contiguous = {
            let mut state = lock(&entry.sync);
            let handed = state.handed.entry(chat.clone()).or_default();
            // A chat first seen in the backlog starts right below its first missed message.
            if handed.contiguous == 0 && handed.above.is_empty() {
                handed.contiguous = seq - 1;
            }
            handed.insert(seq);
            handed.contiguous
        };
        ledger.pushed(id, &entry.user, &chat, contiguous);
        true
    }
}

fn remove_member(map: &DashMap<String, HashSet<ConnId>>, key: &str, id: ConnId) {
    map.remove_if_mut(key, |_, set| {
        set.remove(&id);
        set.is_empty()
    });
}

/// A poisoned lock only means another thread panicked mid-update of plain bookkeeping; the
/// data is still usable, and refusing to deliver would be worse.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
