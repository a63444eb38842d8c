//! The hub: which connection is in which room (`user:{id}`, `chat:{id}`, presence watchers),
//! delivery to them, and each connection's catch-up from the store (the decisions are
//! `super::sync`'s).

use std::{
    borrow::Borrow,
    collections::{HashMap, HashSet},
    hash::Hash,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use dashmap::DashMap;

use super::{
    sync::{own_message, Live, SyncState},
    Backlog, Bus, ConnId, Connection, DeliveryLedger, Departure, EncodeCache, Envelope, Published, SendFailure,
    EVERYONE,
};
use crate::domain::{Audience, ChatId, DeviceId, Event, Message, UserId};

struct Entry {
    user: UserId,
    device: DeviceId,
    conn: Arc<dyn Connection>,
    sync: Mutex<SyncState>,
    chats: Mutex<HashSet<ChatId>>,
    watching: Mutex<HashSet<UserId>>,
}

/// Counters the metrics endpoint reads.
#[derive(Default)]
pub struct HubStats {
    pub slow_consumer_resyncs: AtomicU64,
    pub gap_resyncs: AtomicU64,
    pub held_back: AtomicU64,
}

pub struct Hub {
    next_id: AtomicU64,
    conns: DashMap<ConnId, Arc<Entry>>,
    users: DashMap<UserId, HashSet<ConnId>>,
    chats: DashMap<ChatId, HashSet<ConnId>>,
    watchers: DashMap<UserId, HashSet<ConnId>>,
    ledger: OnceLock<Arc<dyn DeliveryLedger>>,
    bus: OnceLock<Arc<dyn Bus>>,
    instance: String,
    /// Set at graceful shutdown: nothing more is handed to connections, so nothing more is
    /// marked delivered; the user's next connection (elsewhere) catches up from the store.
    frozen: std::sync::atomic::AtomicBool,
    /// Deliveries in progress, so that [`Hub::freeze`] can wait for the last one to be queued.
    handing: AtomicU64,
    pub stats: HubStats,
    /// The server's runtime. Messages are published from the writer's own thread (see
    /// `core::writer`); the catch-ups and gap checks a delivery starts belong on the server's
    /// runtime, beside the connections they serve, not on the writer's.
    runtime: Option<tokio::runtime::Handle>,
}

/// How many backlog messages one catch-up query fetches.
const BACKLOG_PAGE: usize = 500;
/// How long a gap in live `seq`s may last before the connection catches up from the store.
const GAP_WAIT: Duration = Duration::from_secs(1);
/// How long a syncing connection waits for a full buffer to drain before retrying.
const DRAIN_WAIT: Duration = Duration::from_millis(25);

impl Hub {
    pub fn new(instance: impl Into<String>) -> Self {
        Self {
            bus: OnceLock::new(),
            instance: instance.into(),
            frozen: std::sync::atomic::AtomicBool::new(false),
            handing: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            conns: DashMap::new(),
            users: DashMap::new(),
            chats: DashMap::new(),
            watchers: DashMap::new(),
            ledger: OnceLock::new(),
            stats: HubStats::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        match &self.runtime {
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    pub fn set_ledger(&self, ledger: Arc<dyn DeliveryLedger>) {
        let _ = self.ledger.set(ledger);
    }

    pub fn set_bus(&self, bus: Arc<dyn Bus>) {
        let _ = self.bus.set(bus);
    }

    /// Waits until everything queued on the bus has left (graceful shutdown).
    pub async fn flush_bus(&self) {
        if let Some(bus) = self.bus.get() {
            let _ = tokio::time::timeout(Duration::from_secs(5), bus.flush()).await;
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Stops handing events to connections (graceful shutdown), and returns once nothing
    /// more will be queued on any: a transport closed after this carries everything that was
    /// ever marked as handed to it.
    pub async fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
        // Deliveries are short and never wait while they hold a pass.
        while self.handing.load(Ordering::SeqCst) > 0 {
            tokio::task::yield_now().await;
        }
    }

    fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Permission to hand events out, held while they are queued; none once frozen.
    fn pass(&self) -> Option<Pass<'_>> {
        self.handing.fetch_add(1, Ordering::SeqCst);
        if self.is_frozen() {
            self.handing.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Pass(self))
    }

    /// Graceful stop, once frozen: a connection that was handed messages above one it did not
    /// get (deliveries from other instances arrive out of order, and one may have been on the
    /// bus at the freeze) is handed the missing ones from the store. Its mark is the highest
    /// `seq` below which it has everything; with a hole left, its next connection, on another
    /// instance, would be pushed everything above the hole again. A connection whose buffer
    /// stays full until `deadline` keeps its hole. Returns how many holes are left.
    pub async fn close_gaps(&self, deadline: tokio::time::Instant) -> usize {
        let Some(ledger) = self.ledger.get().cloned() else { return 0 };
        let entries: Vec<(ConnId, Arc<Entry>)> = self.conns.iter().map(|e| (*e.key(), e.value().clone())).collect();
        let left = futures_util::future::join_all(
            entries.into_iter().map(|(id, entry)| close_gaps_of(id, entry, ledger.clone(), deadline)),
        )
        .await;
        left.into_iter().sum()
    }

    /// Delivers an envelope that arrived from the bus; our own come back too and are skipped.
    pub fn deliver_remote(self: &Arc<Self>, envelope: Envelope) {
        if envelope.instance != self.instance {
            self.deliver_local(&envelope.audience, &envelope.event, None);
        }
    }

    /// Makes every local connection catch up from the store (after live events may have been
    /// missed, e.g. while the bus subscription was down).
    pub fn resync_all(self: &Arc<Self>) {
        let entries: Vec<(ConnId, Arc<Entry>)> = self.conns.iter().map(|e| (*e.key(), e.value().clone())).collect();
        for (id, entry) in entries {
            self.fall_behind(id, &entry);
        }
    }

    /// Users with a connection here (for renewing shared entries).
    pub fn local_users(&self) -> Vec<UserId> {
        self.users.iter().map(|e| e.key().clone()).collect()
    }

    /// `(chat, user)` pairs with a connection in the chat's room here.
    pub fn local_rooms(&self) -> Vec<(ChatId, UserId)> {
        let mut pairs: Vec<(ChatId, UserId)> = self
            .chats
            .iter()
            .flat_map(|e| {
                let chat = e.key().clone();
                e.value()
                    .iter()
                    .filter_map(|id| self.conns.get(id).map(|c| c.user.clone()))
                    .map(|u| (chat.clone(), u))
                    .collect::<Vec<_>>()
            })
            .collect();
        pairs.sort();
        pairs.dedup();
        pairs
    }

    /// Whether `user` has another connection in `chat`'s room here, besides `except`.
    fn user_in_room(&self, chat: &str, user: &str, except: ConnId) -> bool {
        self.chats
            .get(chat)
            .is_some_and(|set| set.iter().any(|id| *id != except && self.conns.get(id).is_some_and(|c| c.user == user)))
    }

    /// Registers a connection in its user's room, in syncing mode: live messages for it are
    /// held back until [`Hub::start_sync`] has pushed the backlog. Register before the client
    /// can send anything, so no event of theirs can outrun the registration.
    pub fn register(&self, conn: Arc<dyn Connection>) -> ConnId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let user = UserId::from(conn.user_id());
        let entry = Arc::new(Entry {
            user: user.clone(),
            device: DeviceId::from(conn.device_id()),
            conn,
            sync: Mutex::new(SyncState::new()),
            chats: Mutex::new(HashSet::new()),
            watching: Mutex::new(HashSet::new()),
        });
        if let Some(ledger) = self.ledger.get() {
            ledger.opened(id, &user, &entry.device, entry.conn.receipts());
        }
        self.conns.insert(id, entry);
        self.users.entry(user).or_default().insert(id);
        id
    }

    /// Removes a connection from every room.
    pub fn unregister(&self, id: ConnId) -> Option<Departure> {
        let (_, entry) = self.conns.remove(&id)?;
        let mut rooms_left = Vec::new();
        for chat in lock(&entry.chats).drain() {
            remove_member(&self.chats, &chat, id);
            if !self.user_in_room(&chat, &entry.user, id) {
                rooms_left.push(chat);
            }
        }
        for user in lock(&entry.watching).drain() {
            remove_member(&self.watchers, &user, id);
        }
        remove_member(&self.users, &entry.user, id);
        if let Some(ledger) = self.ledger.get() {
            ledger.closed(id);
        }
        Some(Departure { last_here: !self.users.contains_key(&entry.user), user: entry.user.clone(), rooms_left })
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
        self.spawn(async move { hub.catch_up(id, entry).await });
    }

    /// Connection `id` was handed every message of `chat` up to `seq` by its dialect (a
    /// history sent on join, before [`Hub::start_sync`]): its catch-up starts after it, and the
    /// delivery mark moves once the transport confirms it, like for any message handed.
    pub fn handed(&self, id: ConnId, chat: &str, seq: i64) {
        let Some(entry) = self.conns.get(&id).map(|e| e.clone()) else { return };
        let contiguous = lock(&entry.sync).handed_upto(chat, seq);
        if let Some(ledger) = self.ledger.get() {
            ledger.pushed(id, chat, contiguous, contiguous);
        }
    }

    pub fn join_chat(&self, id: ConnId, chat: &str) {
        if let Some(entry) = self.conns.get(&id) {
            lock(&entry.chats).insert(ChatId::from(chat));
            self.chats.entry(ChatId::from(chat)).or_default().insert(id);
        }
    }

    /// Leaves the chat's room. Returns true when the user has no connection left in it here.
    pub fn leave_chat(&self, id: ConnId, chat: &str) -> bool {
        let Some(entry) = self.conns.get(&id).map(|e| e.clone()) else { return false };
        lock(&entry.chats).remove(chat);
        remove_member(&self.chats, chat, id);
        !self.user_in_room(chat, &entry.user, id)
    }

    /// Takes every connection of `user` out of the chat's room: they stopped being a member,
    /// so room events (typing) must stop reaching them.
    pub fn remove_user_from_chat(&self, user: &str, chat: &str) {
        let ids: Vec<ConnId> = self.users.get(user).map(|s| s.iter().copied().collect()).unwrap_or_default();
        for id in ids {
            self.leave_chat(id, chat);
        }
    }

    /// Joins the chat's room unless the connection is already in `cap` rooms. Returns false
    /// when refused (the connection is not in the room).
    pub fn join_chat_bounded(&self, id: ConnId, chat: &str, cap: usize) -> bool {
        let Some(entry) = self.conns.get(&id).map(|e| e.clone()) else { return false };
        let mut chats = lock(&entry.chats);
        if !chats.contains(chat) && chats.len() >= cap {
            return false;
        }
        chats.insert(chat.to_string().into());
        self.chats.entry(chat.to_string().into()).or_default().insert(id);
        true
    }

    /// Follows the presence of `users`, unless the connection would then follow more than
    /// `cap` users: then nothing changes and the error says how many it follows.
    pub fn watch_bounded(&self, id: ConnId, users: &[UserId], cap: usize) -> Result<(), usize> {
        let Some(entry) = self.conns.get(&id).map(|e| e.clone()) else { return Ok(()) };
        let mut watching = lock(&entry.watching);
        let new = users.iter().filter(|u| !watching.contains(*u)).collect::<HashSet<_>>().len();
        if watching.len() + new > cap {
            return Err(watching.len());
        }
        for user in users {
            if watching.insert(user.clone()) {
                self.watchers.entry(user.clone()).or_default().insert(id);
            }
        }
        Ok(())
    }

    /// Whose presence the connection follows.
    pub fn watching(&self, id: ConnId) -> HashSet<UserId> {
        self.conns.get(&id).map(|e| lock(&e.watching).clone()).unwrap_or_default()
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
    /// Returns the bus confirmation when there is a bus: message acks wait for it, so that an
    /// acknowledged message has left this instance even if the instance dies right after.
    pub fn publish(self: &Arc<Self>, audience: &Audience, event: Event, origin: Option<ConnId>) -> Option<Published> {
        self.deliver_local(audience, &event, origin);
        let bus = self.bus.get()?;
        Some(bus.publish(&Envelope { instance: self.instance.clone(), audience: audience.clone(), event }))
    }

    fn targets(&self, audience: &Audience) -> Vec<ConnId> {
        fn from<K: Hash + Eq + Borrow<str>>(map: &DashMap<K, HashSet<ConnId>>, key: &str, out: &mut Vec<ConnId>) {
            if let Some(set) = map.get(key) {
                out.extend(set.iter().copied());
            }
        }
        let mut out = Vec::new();
        match audience {
            Audience::Users(users) => {
                for user in users {
                    from(&self.users, user, &mut out);
                }
            }
            Audience::Chat(chat) => from(&self.chats, chat, &mut out),
            Audience::PresenceWatchers(user) => {
                from(&self.watchers, user, &mut out);
                from(&self.watchers, EVERYONE, &mut out);
            }
            Audience::ChatFollowers(chat, members) => {
                from(&self.chats, chat, &mut out);
                for user in members {
                    if let Some(set) = self.users.get(user) {
                        let following = |id: &&ConnId| self.conns.get(*id).is_some_and(|e| e.conn.follows_all_chats());
                        out.extend(set.iter().filter(following).copied());
                    }
                }
                // A follower that also joined the room explicitly is one target, not two.
                out.sort_unstable();
                out.dedup();
            }
        }
        out
    }

    /// Delivers to the connections on this instance.
    pub fn deliver_local(self: &Arc<Self>, audience: &Audience, event: &Event, origin: Option<ConnId>) {
        let Some(_pass) = self.pass() else {
            return;
        };
        // A member who left stops hearing the chat's room on every instance, not only on the
        // one that removed them: each instance applies it when the event passes through.
        if let Event::MemberLeft(left) = event {
            self.remove_user_from_chat(&left.user_id, &left.chat_id);
        }
        let cache = EncodeCache::default();
        for id in self.targets(audience) {
            let Some(entry) = self.conns.get(&id).map(|e| e.clone()) else {
                continue;
            };
            match event {
                Event::MessageCreated(msg) => self.deliver_message(id, &entry, msg, event, origin == Some(id), &cache),
                _ if origin == Some(id) => {}
                _ => {
                    if entry.conn.send(event, &cache) == Err(SendFailure::Full) {
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
        cache: &EncodeCache,
    ) {
        let mut state = lock(&entry.sync);
        match state.on_live(&msg.chat_id, msg.seq) {
            Live::HeldBack => {
                self.stats.held_back.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Live::Have => return,
            Live::Send => {}
        }
        // The sending connection has the message in its ack, and a message addressed to
        // another member is not this one's to read: both only need the bookkeeping.
        let not_for_it = !msg.is_for(&entry.user);
        let result = if is_origin || not_for_it { Ok(()) } else { entry.conn.send(event, cache) };
        match result {
            Ok(()) => {
                let (contiguous, gap) = state.sent(&msg.chat_id, msg.seq);
                drop(state);
                // The sender's own message moves their delivered cursor only when something
                // else is next recorded for them (or at their next catch-up): a mark per sent
                // message would cost a cursor write per message for nothing anyone reads.
                // Unless it filled a hole below messages of others the connection already has
                // (their delivery from another instance overtook its publication here): then
                // the mark moves over those, or the next connection would get them again.
                let passes_others = contiguous > msg.seq;
                if let Some(ledger) = self.ledger.get().filter(|_| !is_origin || passes_others || not_for_it) {
                    ledger.pushed(id, &msg.chat_id, msg.seq, contiguous);
                }
                if gap {
                    self.check_gap_later(id, entry, &msg.chat_id);
                }
            }
            Err(SendFailure::Full) => {
                let start = state.failed(&msg.chat_id, msg.seq);
                drop(state);
                if start {
                    self.start_catch_up(id, entry);
                }
            }
            Err(SendFailure::Closed) => {}
        }
    }

    /// A later message arrived before an earlier one. Usually the earlier one is a moment
    /// behind (another instance published it); if it has not come after [`GAP_WAIT`], it was
    /// lost on the way, and the connection catches up from the store.
    fn check_gap_later(self: &Arc<Self>, id: ConnId, entry: &Arc<Entry>, chat: &str) {
        let (hub, entry, chat) = (self.clone(), entry.clone(), chat.to_string());
        self.spawn(async move {
            let before = lock(&entry.sync).contiguous(&chat);
            tokio::time::sleep(GAP_WAIT).await;
            let still = lock(&entry.sync).gap_stuck(&chat, before);
            if still && hub.conns.contains_key(&id) {
                hub.stats.gap_resyncs.fetch_add(1, Ordering::Relaxed);
                tracing::info!(conn = id, %chat, "gap in live messages: resyncing from the store");
                hub.fall_behind(id, &entry);
            }
        });
    }

    /// A slow consumer: switch it to syncing mode and catch it up from the database.
    fn fall_behind(self: &Arc<Self>, id: ConnId, entry: &Arc<Entry>) {
        if lock(&entry.sync).fall_behind() {
            self.start_catch_up(id, entry);
        }
    }

    fn start_catch_up(self: &Arc<Self>, id: ConnId, entry: &Arc<Entry>) {
        self.stats.slow_consumer_resyncs.fetch_add(1, Ordering::Relaxed);
        tracing::info!(conn = id, user = %entry.user, "slow consumer: resyncing from the store");
        let hub = self.clone();
        let entry = entry.clone();
        self.spawn(async move { hub.catch_up(id, entry).await });
    }

    /// Pushes the backlog until none is left and no live message was held back meanwhile.
    async fn catch_up(self: Arc<Self>, id: ConnId, entry: Arc<Entry>) {
        let Some(ledger) = self.ledger.get().cloned() else {
            lock(&entry.sync).go_live();
            return;
        };
        let mut owed: HashMap<ChatId, i64> = HashMap::new();
        loop {
            let round = lock(&entry.sync).begin_round(&mut owed);
            let Backlog { messages: backlog, baselines } =
                match ledger.missed(&entry.user, &entry.device, round.cursors, round.ceilings, BACKLOG_PAGE).await {
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
            lock(&entry.sync).set_baselines(baselines);
            let page_full = backlog.len() >= BACKLOG_PAGE;
            for msg in backlog {
                if !self.push_backlog(id, &entry, msg, &owed, &*ledger).await {
                    return; // connection closed
                }
            }
            if page_full {
                continue;
            }
            let live = lock(&entry.sync).finish_round();
            if live {
                entry.conn.caught_up();
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
        owed: &HashMap<ChatId, i64>,
        ledger: &dyn DeliveryLedger,
    ) -> bool {
        if lock(&entry.sync).has(&msg.chat_id, msg.seq) {
            return true;
        }
        let chat = msg.chat_id.clone();
        let seq = msg.seq;
        // Own messages only advance the cursor (see `own_message`).
        // Messages addressed to another member only advance the cursor too.
        let skip = !msg.is_for(&entry.user)
            || own_message(
                &msg.sender_id,
                msg.sender_device.as_deref(),
                &entry.user,
                &entry.device,
                owed.get(&chat).copied(),
                seq,
            );
        let event = Event::MessageCreated(msg);
        if !skip {
            loop {
                let sent = match self.pass() {
                    Some(_pass) => entry.conn.send(&event, &EncodeCache::default()),
                    None => return false, // frozen: the next connection catches up
                };
                match sent {
                    Ok(()) => break,
                    Err(SendFailure::Closed) => return false,
                    Err(SendFailure::Full) => tokio::time::sleep(DRAIN_WAIT).await,
                }
            }
        } else if self.is_frozen() {
            return false;
        }
        // The baseline was set before the backlog was pushed; a chat without one starts right
        // below its first missed message.
        let (contiguous, _) = lock(&entry.sync).sent(&chat, seq);
        ledger.pushed(id, &chat, seq, contiguous);
        true
    }
}

/// A delivery in progress (see [`Hub::pass`]).
struct Pass<'a>(&'a Hub);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.handing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Fills one connection's holes from the store (see [`Hub::close_gaps`]), waiting while its
/// buffer is full until `deadline`. Returns how many holes are left.
async fn close_gaps_of(
    id: ConnId,
    entry: Arc<Entry>,
    ledger: Arc<dyn DeliveryLedger>,
    deadline: tokio::time::Instant,
) -> usize {
    let gaps = lock(&entry.sync).gaps();
    let mut left = 0;
    'chats: for (chat, contiguous, top) in gaps {
        let missing = match ledger.between(&chat, contiguous, top).await {
            Ok(missing) => missing,
            Err(e) => {
                e.log_if_internal("closing a gap at shutdown");
                left += 1;
                continue;
            }
        };
        for msg in missing {
            if lock(&entry.sync).has(&chat, msg.seq) {
                continue;
            }
            let seq = msg.seq;
            let for_it = msg.is_for(&entry.user);
            let event = Event::MessageCreated(msg);
            // A message addressed to another member is only noted as passed.
            if for_it {
                loop {
                    match entry.conn.send(&event, &EncodeCache::default()) {
                        Ok(()) => break,
                        // The transport writes what it has queued meanwhile.
                        Err(SendFailure::Full) if tokio::time::Instant::now() < deadline => {
                            tokio::time::sleep(DRAIN_WAIT).await
                        }
                        Err(_) => {
                            left += 1;
                            continue 'chats;
                        }
                    }
                }
            }
            let (contiguous, _) = lock(&entry.sync).sent(&chat, seq);
            ledger.pushed(id, &chat, seq, contiguous);
        }
    }
    left
}

fn remove_member<K: Hash + Eq + Borrow<str>>(map: &DashMap<K, HashSet<ConnId>>, key: &str, id: ConnId) {
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
