//! What a reconnect can be told without asking the database.
//!
//! Most connects are reconnects of a client whose token says what it said last time and who
//! owes nothing; each used to cost a `SELECT` of the user and the catch-up query. Two memories
//! answer those cases, and anything they are not sure of still goes to the database:
//!
//! * [`RecordedClaims`]: users whose profile claims (username, name, avatar) were recorded
//!   from a token recently (at most [`CLAIMS_TTL`] ago, [`CLAIMS_CAP`] users). A connect whose
//!   claims are the same writes nothing and reads nothing; any other claim is recorded as
//!   before. Two connects of one user recording at once are both written and neither is
//!   remembered, so what is remembered is always what the last write stored.
//! * [`CatchupMemory`]: the last `seq` of each conversation (set by the message writer when it
//!   commits, and from catch-up queries) and, per device, the conversations of its user with
//!   what the device was delivered there (from its last catch-up query, moved by the delivery
//!   marks written since). When no conversation has a `seq` above what the device has, the
//!   catch-up is answered from memory: nothing is owed.
//!
//! Why the catch-up answer is right. The connection is registered with the hub before its
//! catch-up asks (see `core::connections`), so a message published after that reaches it
//! live (held back while it catches up). A message published before is committed before, and
//! the writer records a conversation's new `seq` between its commit and its publication; it
//! marks the conversation as being written while its batch is open, and a conversation whose
//! batch failed (its commit may or may not have happened) stays unknown until the writer
//! commits there again. Unknown or being written means: ask the database. A device's list of
//! conversations is dropped when its user's membership changes, from before the change until
//! after its commit (a query that ran meanwhile is not kept), so a conversation joined while
//! away is never missed. Delivered positions only move up; the memory keeps lower bounds of
//! them (so it can only say "ask" too often, never "nothing owed" wrongly).
//!
//! Only for one instance: with `REDIS_URL` another instance commits messages this one does not
//! see, so every catch-up asks the database. Anonymous session members (`e2e`) are not
//! remembered either: their rows are deleted with their session.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        RwLock,
    },
    time::{Duration, Instant},
};

use dashmap::DashMap;

use super::presence::Identity;
use crate::domain::{is_session_user, ChatId, DeviceId, UserId};

/// How long recorded claims are trusted: another instance may have recorded other claims of
/// the same user since, and this bounds how long its write may stand against an older token.
pub const CLAIMS_TTL: Duration = Duration::from_secs(300);
/// Most users whose claims are remembered; past it the memory starts over.
pub const CLAIMS_CAP: usize = 200_000;
/// Most conversations whose last `seq` is remembered, and most users whose devices' catch-up
/// state is; past either, that memory starts over.
pub const SEQS_CAP: usize = 500_000;
pub const USERS_CAP: usize = 200_000;

/// A unique, increasing number: generations are never reused, even after a memory started over.
fn next(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

#[derive(PartialEq, Eq)]
struct Claims {
    username: Option<String>,
    name: Option<String>,
    avatar: Option<String>,
}

impl Claims {
    fn of(who: &Identity) -> Self {
        Self { username: who.username.clone(), name: who.name.clone(), avatar: who.avatar.clone() }
    }

    fn same_as(&self, who: &Identity) -> bool {
        self.username == who.username && self.name == who.name && self.avatar == who.avatar
    }
}

struct Recorded {
    /// What the last write recorded; `None` while unknown (a write is under way, or two raced).
    claims: Option<Claims>,
    at: Instant,
    /// Writes under way for this user.
    writing: u32,
    /// Changes whenever a write starts.
    generation: u64,
}

/// Users whose token claims were recorded (see the module documentation).
pub struct RecordedClaims {
    users: DashMap<UserId, Recorded>,
    generations: AtomicU64,
    ttl: Duration,
    cap: usize,
}

/// A write of a user's claims under way; see [`RecordedClaims::recording`].
pub struct Recording<'a> {
    memory: &'a RecordedClaims,
    user: UserId,
    generation: u64,
    /// Another write of the same user was under way when this one started.
    overlapped: bool,
    done: bool,
}

impl RecordedClaims {
    pub fn new(ttl: Duration, cap: usize) -> Self {
        Self { users: DashMap::new(), generations: AtomicU64::new(0), ttl, cap }
    }

    /// Whether these exact claims were recorded for this user, recently, and nothing is
    /// being written for them now.
    pub fn known(&self, who: &Identity) -> bool {
        if is_session_user(&who.user_id) {
            return false;
        }
        self.users.get(who.user_id.as_str()).is_some_and(|r| {
            r.writing == 0 && r.at.elapsed() < self.ttl && r.claims.as_ref().is_some_and(|c| c.same_as(who))
        })
    }

    /// A write of `user`'s claims starts; [`Recording::recorded`] once it committed. Dropped
    /// without that (the write failed, or the connect was abandoned), nothing is remembered.
    pub fn recording(&self, user: &UserId) -> Recording<'_> {
        let generation = next(&self.generations);
        // Anonymous session members are never remembered (their rows go with their session):
        // no entry, so nothing is kept for them when the write ends.
        if is_session_user(user) {
            return Recording { memory: self, user: user.clone(), generation, overlapped: true, done: false };
        }
        if self.users.len() >= self.cap && !self.users.contains_key(user.as_str()) {
            self.users.retain(|_, r| r.writing > 0);
        }
        let mut entry = self.users.entry(user.clone()).or_insert_with(|| Recorded {
            claims: None,
            at: Instant::now(),
            writing: 0,
            generation,
        });
        let overlapped = entry.writing > 0;
        entry.writing += 1;
        entry.generation = generation;
        entry.claims = None;
        Recording { memory: self, user: user.clone(), generation, overlapped, done: false }
    }

    fn finish(&self, user: &str, generation: u64, remember: Option<Claims>) {
        if let Some(mut entry) = self.users.get_mut(user) {
            entry.writing = entry.writing.saturating_sub(1);
            // Remembered only when no other write of this user overlapped this one: then
            // this write is the last one, and the database holds what it wrote.
            if let Some(claims) = remember.filter(|_| entry.generation == generation && entry.writing == 0) {
                entry.claims = Some(claims);
                entry.at = Instant::now();
            }
        }
    }

    /// How many users are remembered (for tests).
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl Recording<'_> {
    /// The claims of `who` are in the database.
    pub fn recorded(mut self, who: &Identity) {
        self.done = true;
        let remember = (!self.overlapped).then(|| Claims::of(who));
        self.memory.finish(&self.user, self.generation, remember);
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.memory.finish(&self.user, self.generation, None);
        }
    }
}

/// One conversation's last `seq`, as far as this instance knows.
#[derive(Default)]
struct LastSeq {
    /// The last committed `seq`; `None`: unknown.
    seq: Option<i64>,
    /// Batches under way that write into the conversation.
    writing: u32,
    /// A batch into it failed: its commit may have happened. Unknown until a batch commits
    /// into the conversation again.
    doubtful: bool,
}

/// A user's conversations as each of their devices last learned them, and what each device
/// was delivered there.
struct UserView {
    /// Changes with every membership change of the user.
    generation: u64,
    /// Membership changes of the user under way.
    changing: u32,
    devices: HashMap<DeviceId, HashMap<ChatId, i64>>,
}

/// What a catch-up query may record afterwards (taken before it ran).
pub struct FillTicket {
    generation: u64,
    seq_epoch: u64,
}

/// See the module documentation.
pub struct CatchupMemory {
    enabled: bool,
    seqs: DashMap<ChatId, LastSeq>,
    /// Changes whenever `seqs` starts over; a query that ran across it records no `seq`.
    seq_epoch: AtomicU64,
    /// Held (shared) while a query's `seq`s are recorded, (exclusive) while `seqs` starts over.
    seq_fill: RwLock<()>,
    users: DashMap<UserId, UserView>,
    generations: AtomicU64,
    seqs_cap: usize,
    users_cap: usize,
    /// Catch-ups answered from memory, and by the database.
    pub recalled: AtomicU64,
    pub queried: AtomicU64,
}

/// A membership change under way for some users: no catch-up of theirs is answered from
/// memory, and no query's result is kept, until it is dropped (after the change committed or
/// failed).
pub struct MembershipChange<'a> {
    memory: &'a CatchupMemory,
    users: Vec<UserId>,
}

impl Drop for MembershipChange<'_> {
    fn drop(&mut self) {
        for user in &self.users {
            if let Some(mut view) = self.memory.users.get_mut(user.as_str()) {
                view.changing = view.changing.saturating_sub(1);
                view.generation = next(&self.memory.generations);
                view.devices.clear();
            }
        }
    }
}

impl CatchupMemory {
    /// `enabled` false (several instances): nothing is remembered and every catch-up asks.
    pub fn new(enabled: bool) -> Self {
        Self::with_caps(enabled, SEQS_CAP, USERS_CAP)
    }

    pub fn with_caps(enabled: bool, seqs_cap: usize, users_cap: usize) -> Self {
        Self {
            enabled,
            seqs: DashMap::new(),
            seq_epoch: AtomicU64::new(0),
            seq_fill: RwLock::new(()),
            users: DashMap::new(),
            generations: AtomicU64::new(0),
            seqs_cap,
            users_cap,
            recalled: AtomicU64::new(0),
            queried: AtomicU64::new(0),
        }
    }

    fn remembers(&self, user: &str) -> bool {
        self.enabled && !is_session_user(user)
    }

    /// The catch-up of a connection of `user`'s `device` when nothing is owed: per
    /// conversation, where its backlog would start (what the device has). `None` when
    /// something may be owed or anything is unknown: ask the database. `handed`: what the
    /// device's connections were handed (see `Ledger::load_missed`); `cursors` what this
    /// connection has; with `owed` ceilings (a connection that fell behind), it always asks.
    pub fn recall(
        &self,
        user: &str,
        device: &str,
        handed: &HashMap<ChatId, i64>,
        cursors: &HashMap<ChatId, i64>,
        owed: bool,
    ) -> Option<HashMap<ChatId, i64>> {
        if owed || !self.remembers(user) {
            return None;
        }
        let view = self.users.get(user)?;
        if view.changing > 0 {
            return None;
        }
        let chats = view.devices.get(device)?;
        let mut baselines = HashMap::with_capacity(chats.len());
        for (chat, delivered) in chats {
            let from = (*delivered)
                .max(handed.get(chat.as_str()).copied().unwrap_or(0))
                .max(cursors.get(chat.as_str()).copied().unwrap_or(0));
            let last = self.seqs.get(chat.as_str())?;
            if last.writing > 0 || last.doubtful || last.seq.is_none_or(|seq| seq > from) {
                return None;
            }
            baselines.insert(chat.clone(), from);
        }
        self.recalled.fetch_add(1, Ordering::Relaxed);
        Some(baselines)
    }

    /// Before a catch-up query of `user`: what its result may be recorded under, or `None`
    /// when it may not be (a membership change is under way, or nothing is remembered).
    pub fn before_query(&self, user: &UserId) -> Option<FillTicket> {
        self.queried.fetch_add(1, Ordering::Relaxed);
        if !self.remembers(user) {
            return None;
        }
        if self.users.len() >= self.users_cap && !self.users.contains_key(user.as_str()) {
            // Views with a change under way stay: their change must still end.
            self.users.retain(|_, view| view.changing > 0);
        }
        let seq_epoch = self.seq_epoch.load(Ordering::SeqCst);
        let view = self.users.entry(user.clone()).or_insert_with(|| UserView {
            generation: next(&self.generations),
            changing: 0,
            devices: HashMap::new(),
        });
        (view.changing == 0).then_some(FillTicket { generation: view.generation, seq_epoch })
    }

    /// Records a catch-up query's rows `(conversation, delivered, last seq)` for `user`'s
    /// `device`, unless the user's membership changed since [`CatchupMemory::before_query`]
    /// (then the rows may lack a conversation), and each conversation's last `seq` unless the
    /// memory of them started over meanwhile. Values only ever move up.
    pub fn fill(&self, ticket: Option<FillTicket>, user: &str, device: &str, rows: &[(String, i64, i64)]) {
        let Some(ticket) = ticket else { return };
        {
            let _shared = self.seq_fill.read().unwrap_or_else(|p| p.into_inner());
            if self.seq_epoch.load(Ordering::SeqCst) == ticket.seq_epoch {
                for (chat, _, last) in rows {
                    let mut entry = self.seqs.entry(ChatId::from(chat.as_str())).or_default();
                    if !entry.doubtful {
                        entry.seq = Some(entry.seq.map_or(*last, |seq| seq.max(*last)));
                    }
                }
            }
        }
        if let Some(mut view) = self.users.get_mut(user) {
            if view.generation != ticket.generation || view.changing > 0 {
                return;
            }
            let known = view.devices.remove(device).unwrap_or_default();
            let chats = rows
                .iter()
                .map(|(chat, delivered, _)| {
                    let had = known.get(chat.as_str()).copied().unwrap_or(*delivered);
                    (ChatId::from(chat.as_str()), had.max(*delivered))
                })
                .collect();
            view.devices.insert(DeviceId::from(device), chats);
        }
    }

    /// The message writer opens a batch into these conversations.
    pub fn writing<'c>(&self, chats: impl IntoIterator<Item = &'c str>) {
        if !self.enabled {
            return;
        }
        if self.seqs.len() >= self.seqs_cap {
            let _exclusive = self.seq_fill.write().unwrap_or_else(|p| p.into_inner());
            self.seq_epoch.fetch_add(1, Ordering::SeqCst);
            // What is being written or in doubt stays: forgetting it would make it known.
            self.seqs.retain(|_, last| last.writing > 0 || last.doubtful);
        }
        for chat in chats {
            let mut entry = self.seqs.entry(ChatId::from(chat)).or_default();
            entry.writing += 1;
        }
    }

    /// The batch opened by [`CatchupMemory::writing`] ended: committed, with each
    /// conversation's new last `seq` where it has one (`committed` `Some`), or failed.
    pub fn written<'c>(&self, chats: impl IntoIterator<Item = &'c str>, committed: Option<&HashMap<&str, i64>>) {
        if !self.enabled {
            return;
        }
        for chat in chats {
            let Some(mut entry) = self.seqs.get_mut(chat) else { continue };
            entry.writing = entry.writing.saturating_sub(1);
            match committed {
                Some(last) => {
                    if let Some(seq) = last.get(chat) {
                        // The batch held the conversation's lock: its last seq is exact.
                        entry.seq = Some(entry.seq.map_or(*seq, |known| known.max(*seq)));
                        entry.doubtful = false;
                    }
                }
                None => {
                    entry.seq = None;
                    entry.doubtful = true;
                }
            }
        }
    }

    /// A change of these users' memberships starts; see [`MembershipChange`].
    pub fn membership_changing<'a>(&'a self, users: impl IntoIterator<Item = &'a str>) -> MembershipChange<'a> {
        let mut changing = Vec::new();
        if self.enabled {
            for user in users {
                let mut view = self.users.entry(UserId::from(user)).or_insert_with(|| UserView {
                    generation: 0,
                    changing: 0,
                    devices: HashMap::new(),
                });
                view.changing += 1;
                view.generation = next(&self.generations);
                view.devices.clear();
                changing.push(UserId::from(user));
            }
        }
        MembershipChange { memory: self, users: changing }
    }

    /// Delivery marks were written: `(conversation, user, device, seq)`.
    pub fn delivered(&self, cursors: &[(&str, &str, &str, i64)]) {
        if !self.enabled {
            return;
        }
        for (chat, user, device, seq) in cursors {
            let Some(mut view) = self.users.get_mut(*user) else { continue };
            if let Some(had) = view.devices.get_mut(*device).and_then(|chats| chats.get_mut(*chat)) {
                *had = (*had).max(*seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str, name: Option<&str>) -> Identity {
        Identity {
            user_id: user.into(),
            device_id: None,
            username: None,
            name: name.map(str::to_string),
            avatar: None,
            expires_at: None,
        }
    }

    #[test]
    fn claims_are_known_once_recorded_and_only_those() {
        let m = RecordedClaims::new(CLAIMS_TTL, 10);
        let alice = who("alice", Some("Alice"));
        assert!(!m.known(&alice));
        m.recording(&alice.user_id).recorded(&alice);
        assert!(m.known(&alice));
        assert!(!m.known(&who("alice", Some("Alicia"))), "a changed name is written");
        assert!(!m.known(&who("alice", None)), "other claims: written as before");
    }

    #[test]
    fn overlapping_writes_are_not_remembered_and_a_failed_one_forgets() {
        let m = RecordedClaims::new(CLAIMS_TTL, 10);
        let (a, b) = (who("u", Some("A")), who("u", Some("B")));
        let first = m.recording(&a.user_id);
        let second = m.recording(&b.user_id);
        second.recorded(&b);
        first.recorded(&a);
        assert!(!m.known(&a) && !m.known(&b), "which write landed last is unknown");
        m.recording(&a.user_id).recorded(&a);
        assert!(m.known(&a));
        drop(m.recording(&a.user_id));
        assert!(!m.known(&a), "a write that did not finish leaves the claims unknown");
    }

    #[test]
    fn expired_or_session_claims_are_not_trusted() {
        let m = RecordedClaims::new(Duration::ZERO, 10);
        let alice = who("alice", Some("Alice"));
        m.recording(&alice.user_id).recorded(&alice);
        assert!(!m.known(&alice));
        let m = RecordedClaims::new(CLAIMS_TTL, 10);
        let member = who(&crate::domain::session_user_id(&crate::domain::session_chat_id("s"), "m"), None);
        m.recording(&member.user_id).recorded(&member);
        assert!(!m.known(&member));
        assert!(m.is_empty(), "a session member leaves nothing behind");
    }

    fn rows(r: &[(&str, i64, i64)]) -> Vec<(String, i64, i64)> {
        r.iter().map(|(c, d, l)| (c.to_string(), *d, *l)).collect()
    }

    fn recall(m: &CatchupMemory, handed: &[(&str, i64)]) -> Option<HashMap<ChatId, i64>> {
        let handed = handed.iter().map(|(c, s)| (ChatId::from(*c), *s)).collect();
        m.recall("u", "d", &handed, &HashMap::new(), false)
    }

    #[test]
    fn nothing_owed_is_answered_from_memory_and_a_new_message_asks() {
        let m = CatchupMemory::new(true);
        assert_eq!(recall(&m, &[]), None, "nothing known yet");
        let ticket = m.before_query(&"u".into());
        m.fill(ticket, "u", "d", &rows(&[("a", 3, 3), ("b", 0, 0)]));
        let baselines = recall(&m, &[]).expect("nothing owed");
        assert_eq!(baselines.get("a"), Some(&3));
        m.writing(["a"]);
        assert_eq!(recall(&m, &[]), None, "a batch into it is under way");
        m.written(["a"], Some(&HashMap::from([("a", 4)])));
        assert_eq!(recall(&m, &[]), None, "seq 4 is owed");
        assert!(recall(&m, &[("a", 4)]).is_some(), "handed to another connection of the device");
        m.delivered(&[("a", "u", "d", 4)]);
        assert!(recall(&m, &[]).is_some(), "the mark was written");
        assert_eq!(m.recall("u", "d", &HashMap::new(), &HashMap::new(), true), None, "owed ceilings ask");
    }

    #[test]
    fn a_failed_batch_leaves_the_conversation_unknown_until_a_commit() {
        let m = CatchupMemory::new(true);
        m.fill(m.before_query(&"u".into()), "u", "d", &rows(&[("a", 3, 3)]));
        m.writing(["a"]);
        m.written(["a"], None);
        assert_eq!(recall(&m, &[]), None);
        m.fill(m.before_query(&"u".into()), "u", "d", &rows(&[("a", 3, 3)]));
        assert_eq!(recall(&m, &[]), None, "a query does not settle a doubt");
        m.writing(["a"]);
        m.written(["a"], Some(&HashMap::from([("a", 4)])));
        m.delivered(&[("a", "u", "d", 4)]);
        assert!(recall(&m, &[]).is_some());
    }

    #[test]
    fn a_membership_change_drops_the_view_and_a_query_across_it_is_not_kept() {
        let m = CatchupMemory::new(true);
        m.fill(m.before_query(&"u".into()), "u", "d", &rows(&[("a", 3, 3)]));
        assert!(recall(&m, &[]).is_some());
        let ticket = m.before_query(&"u".into());
        let change = m.membership_changing(["u"]);
        assert_eq!(recall(&m, &[]), None, "dropped while it changes");
        assert!(m.before_query(&"u".into()).is_none(), "no query is kept while it changes");
        drop(change);
        m.fill(ticket, "u", "d", &rows(&[("a", 3, 3)]));
        assert_eq!(recall(&m, &[]), None, "the query ran before the change: not kept");
        m.fill(m.before_query(&"u".into()), "u", "d", &rows(&[("a", 3, 3), ("new", 0, 2)]));
        assert_eq!(recall(&m, &[]), None, "the new conversation owes 1 and 2");
    }

    #[test]
    fn starting_over_keeps_what_is_written_or_in_doubt_and_voids_queries_across_it() {
        let m = CatchupMemory::with_caps(true, 2, 10);
        m.writing(["x"]);
        m.written(["x"], None);
        let ticket = m.before_query(&"u".into());
        m.writing(["y"]);
        m.writing(["z"]); // over the cap: starts over
        m.fill(ticket, "u", "d", &rows(&[("x", 0, 0)]));
        assert_eq!(recall(&m, &[]), None, "x is in doubt, and the query ran across a restart");
    }

    #[test]
    fn disabled_remembers_nothing() {
        let m = CatchupMemory::new(false);
        m.fill(m.before_query(&"u".into()), "u", "d", &rows(&[("a", 0, 0)]));
        assert_eq!(recall(&m, &[]), None);
        assert_eq!(m.queried.load(Ordering::Relaxed), 1);
    }
}
