//! One connection's sync state machine: what it was handed per chat, whether it is live or
//! catching up from the store, and what it is still owed. The hub drives it (and does the
//! I/O); every decision is made here, so it can be tested on its own.
//!
//! * **Syncing** (a new connection, or one that fell behind): live messages are held back
//!   and only noted as owed; catch-up rounds push the backlog from the store. A round that
//!   ends with nothing new owed makes the connection live.
//! * **Live**: a message is sent unless it was handed already (it may arrive both live and
//!   from the store, or twice from the bus). A full transport buffer owes the message and
//!   falls behind into syncing mode.
//! * **Owed**: per chat, the lowest `seq` the connection must still be sent. A catch-up starts
//!   no later than that, whatever the user's other connections were handed: their cursors only
//!   decide what a new connection need not be pushed, never what was meant for this one.
//! * **Gaps**: a live `seq` above a missing one (instances publish out of order) is kept; a
//!   gap that does not close in time is owed and caught up from the store.

use std::collections::{BTreeSet, HashMap};

use crate::domain::ChatId;

/// What one connection was handed in one chat: everything up to `contiguous`, plus the
/// `seq`s above it (delivery across instances may arrive out of order).
#[derive(Default, Debug)]
pub(super) struct Handed {
    pub(super) contiguous: i64,
    pub(super) above: BTreeSet<i64>,
}

impl Handed {
    fn starting_at(contiguous: i64) -> Self {
        Self { contiguous, above: BTreeSet::new() }
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

/// What to do with a live message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Live {
    /// The connection is catching up: the message is owed, the catch-up will bring it.
    HeldBack,
    /// It was handed already.
    Have,
    /// Send it, then report [`SyncState::sent`] or [`SyncState::failed`].
    Send,
}

#[derive(Debug)]
pub(super) struct SyncState {
    syncing: bool,
    /// A live message was held back (or failed) since the last backlog query.
    missed: bool,
    owed: HashMap<ChatId, i64>,
    handed: HashMap<ChatId, Handed>,
}

/// One catch-up round's question to the store: per chat, what this connection has, and the
/// latest point the backlog may start at (what it is owed).
pub(super) struct Round {
    pub(super) cursors: HashMap<ChatId, i64>,
    pub(super) ceilings: HashMap<ChatId, i64>,
}

impl SyncState {
    /// A new connection: syncing until its first catch-up is done.
    pub(super) fn new() -> Self {
        Self { syncing: true, missed: false, owed: HashMap::new(), handed: HashMap::new() }
    }

    pub(super) fn has(&self, chat: &str, seq: i64) -> bool {
        self.handed.get(chat).is_some_and(|h| h.contains(seq))
    }

    fn owe(&mut self, chat: &str, seq: i64) {
        self.missed = true;
        self.owed.entry(ChatId::from(chat)).and_modify(|s| *s = (*s).min(seq)).or_insert(seq);
    }

    /// A live message for this connection.
    pub(super) fn on_live(&mut self, chat: &str, seq: i64) -> Live {
        if self.syncing {
            if !self.has(chat, seq) {
                self.owe(chat, seq);
            }
            return Live::HeldBack;
        }
        let handed = self.handed.entry(ChatId::from(chat)).or_insert_with(|| Handed::starting_at(seq - 1));
        if handed.contains(seq) {
            Live::Have
        } else {
            Live::Send
        }
    }

    /// A message went out (live, from the backlog, or to close a gap). Returns the highest
    /// `seq` below which the connection has everything of the chat, and whether a gap is open
    /// above it. A chat without a baseline starts right below the message.
    pub(super) fn sent(&mut self, chat: &str, seq: i64) -> (i64, bool) {
        let handed = self.handed.entry(ChatId::from(chat)).or_insert_with(|| Handed::starting_at(seq - 1));
        handed.insert(seq);
        (handed.contiguous, !handed.above.is_empty())
    }

    /// The connection was handed everything of `chat` up to `seq` by other means (a history
    /// its dialect sends when it joins). Returns the new contiguous point.
    pub(super) fn handed_upto(&mut self, chat: &str, seq: i64) -> i64 {
        let handed = self.handed.entry(chat.to_string().into()).or_insert_with(|| Handed::starting_at(seq));
        if seq > handed.contiguous {
            handed.contiguous = seq;
            handed.above = handed.above.split_off(&(seq + 1));
            while handed.above.remove(&(handed.contiguous + 1)) {
                handed.contiguous += 1;
            }
        }
        handed.contiguous
    }

    /// A live message could not go out (a full buffer): it is owed. Returns true when the
    /// connection must start catching up (it was live).
    pub(super) fn failed(&mut self, chat: &str, seq: i64) -> bool {
        self.owe(chat, seq);
        self.fall_behind()
    }

    /// Live events may have been missed: catch up. Returns true when a catch-up must start
    /// (none is running).
    pub(super) fn fall_behind(&mut self) -> bool {
        self.missed = true;
        if self.syncing {
            return false;
        }
        self.syncing = true;
        true
    }

    /// The highest `seq` below which the connection has everything of `chat`.
    pub(super) fn contiguous(&self, chat: &str) -> Option<i64> {
        self.handed.get(chat).map(|h| h.contiguous)
    }

    /// A gap above `chat`'s contiguous point that has not moved since `before`: its start is
    /// owed. Returns true when there is such a gap (the caller falls behind).
    pub(super) fn gap_stuck(&mut self, chat: &str, before: Option<i64>) -> bool {
        let gap_at = self
            .handed
            .get(chat)
            .filter(|h| !h.above.is_empty() && Some(h.contiguous) == before)
            .map(|h| h.contiguous + 1);
        if let Some(seq) = gap_at {
            self.owe(chat, seq);
        }
        gap_at.is_some()
    }

    /// The open gaps: `(chat, contiguous, highest seq handed)`.
    pub(super) fn gaps(&self) -> Vec<(ChatId, i64, i64)> {
        self.handed
            .iter()
            .filter_map(|(chat, h)| h.above.last().map(|top| (chat.clone(), h.contiguous, *top)))
            .collect()
    }

    /// Starts a catch-up round: moves what is owed into `owed` (kept across the rounds of one
    /// catch-up) and asks for everything after what the connection has, but starting no later
    /// than what it is owed.
    pub(super) fn begin_round(&mut self, owed: &mut HashMap<ChatId, i64>) -> Round {
        self.missed = false;
        for (chat, seq) in std::mem::take(&mut self.owed) {
            owed.entry(chat).and_modify(|s| *s = (*s).min(seq)).or_insert(seq);
        }
        let cursors: HashMap<ChatId, i64> = self.handed.iter().map(|(chat, h)| (chat.clone(), h.contiguous)).collect();
        let ceilings = owed
            .iter()
            .map(|(chat, seq)| (chat.clone(), (seq - 1).max(cursors.get(chat).copied().unwrap_or(0))))
            .collect();
        Round { cursors, ceilings }
    }

    /// The store's baselines: per chat, the `seq` up to which nothing needs sending. A chat
    /// the connection already tracks keeps what it has.
    pub(super) fn set_baselines(&mut self, baselines: HashMap<ChatId, i64>) {
        for (chat, seq) in baselines {
            self.handed.entry(chat).or_insert_with(|| Handed::starting_at(seq));
        }
    }

    /// Ends a catch-up round: live again unless something was owed meanwhile (then another
    /// round runs). Returns true when the connection went live.
    pub(super) fn finish_round(&mut self) -> bool {
        if self.missed {
            return false;
        }
        self.syncing = false;
        true
    }

    /// Stops catching up without a store (no ledger): live at once.
    pub(super) fn go_live(&mut self) {
        self.syncing = false;
    }
}

/// Whether a backlog message is only bookkeeping for this connection: a device's own
/// message is not pushed back to it (it has it from its ack), unless it was sent while this
/// connection was catching up (then it is owed like any live message). The sender's other
/// devices are pushed it; messages stored before devices were tracked count as this device's.
pub(super) fn own_message(
    sender: &str,
    sender_device: Option<&str>,
    user: &str,
    device: &str,
    owed_from: Option<i64>,
    seq: i64,
) -> bool {
    let from_this_device = sender == user && sender_device.is_none_or(|d| d == device);
    from_this_device && owed_from.is_none_or(|floor| seq < floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> SyncState {
        let mut s = SyncState::new();
        let mut owed = HashMap::new();
        s.begin_round(&mut owed);
        s.set_baselines(HashMap::from([(ChatId::from("c"), 10)]));
        assert!(s.finish_round());
        s
    }

    #[test]
    fn a_history_handed_on_join_is_not_sent_again_and_later_messages_are() {
        let mut s = SyncState::new();
        s.sent("c", 9);
        assert_eq!(s.handed_upto("c", 5), 9, "never moves back");
        assert_eq!(s.handed_upto("d", 5), 5);
        assert!(s.has("d", 5) && !s.has("d", 6));
        s.sent("d", 7);
        assert_eq!(s.handed_upto("d", 6), 7, "what was above joins up");
    }

    #[test]
    fn a_new_connection_holds_live_messages_back_and_owes_them() {
        let mut s = SyncState::new();
        assert_eq!(s.on_live("c", 5), Live::HeldBack);
        assert_eq!(s.on_live("c", 4), Live::HeldBack);
        let mut owed = HashMap::new();
        let round = s.begin_round(&mut owed);
        assert_eq!(owed.get("c"), Some(&4), "the lowest owed seq");
        assert_eq!(round.ceilings.get("c"), Some(&3), "the backlog starts no later than what is owed");
    }

    #[test]
    fn a_round_with_nothing_owed_goes_live_and_one_with_a_miss_runs_again() {
        let mut s = SyncState::new();
        let mut owed = HashMap::new();
        s.begin_round(&mut owed);
        assert_eq!(s.on_live("c", 1), Live::HeldBack, "held back while the round runs");
        assert!(!s.finish_round(), "a message was owed meanwhile: another round");
        s.begin_round(&mut owed);
        assert!(s.finish_round());
        assert_eq!(s.on_live("c", 2), Live::Send);
    }

    #[test]
    fn what_was_handed_is_not_sent_again() {
        let mut s = live();
        assert_eq!(s.on_live("c", 10), Live::Have, "the baseline covers it");
        assert_eq!(s.on_live("c", 11), Live::Send);
        assert_eq!(s.sent("c", 11), (11, false));
        assert_eq!(s.on_live("c", 11), Live::Have, "the same message from the bus again");
    }

    #[test]
    fn a_full_buffer_owes_the_message_and_falls_behind_once() {
        let mut s = live();
        assert_eq!(s.on_live("c", 11), Live::Send);
        assert!(s.failed("c", 11), "the first failure starts a catch-up");
        assert_eq!(s.on_live("c", 12), Live::HeldBack);
        assert!(!s.fall_behind(), "a catch-up is running already");
        let mut owed = HashMap::new();
        let round = s.begin_round(&mut owed);
        assert_eq!(round.cursors.get("c"), Some(&10));
        assert_eq!(round.ceilings.get("c"), Some(&10), "from right below the failed message");
    }

    #[test]
    fn what_is_owed_wins_over_what_the_connection_already_has_only_downwards() {
        let mut s = live();
        s.sent("c", 11);
        s.sent("c", 12);
        assert!(s.failed("c", 13));
        let mut owed = HashMap::new();
        let round = s.begin_round(&mut owed);
        // Owed 13, has up to 12: start after 12 (nothing it has is pushed again).
        assert_eq!(round.ceilings.get("c"), Some(&12));
        // The owed floor survives the round, so the next one still starts no later than it.
        assert_eq!(owed.get("c"), Some(&13));
    }

    #[test]
    fn out_of_order_seqs_leave_a_gap_that_is_owed_once_it_stays_open() {
        let mut s = live();
        assert_eq!(s.on_live("c", 12), Live::Send);
        assert_eq!(s.sent("c", 12), (10, true), "11 is missing");
        assert_eq!(s.gaps(), vec![(ChatId::from("c"), 10, 12)]);
        let before = s.contiguous("c");
        assert!(s.gap_stuck("c", before), "nothing moved: 11 is owed");
        let mut owed = HashMap::new();
        s.begin_round(&mut owed);
        assert_eq!(owed.get("c"), Some(&11));
    }

    #[test]
    fn a_gap_that_closed_in_time_is_not_owed() {
        let mut s = live();
        s.sent("c", 12);
        let before = s.contiguous("c");
        assert_eq!(s.on_live("c", 11), Live::Send);
        assert_eq!(s.sent("c", 11), (12, false));
        assert!(!s.gap_stuck("c", before));
        assert!(s.gaps().is_empty());
    }

    #[test]
    fn a_chat_without_a_baseline_starts_below_its_first_message() {
        let mut s = live();
        assert_eq!(s.on_live("new-chat", 7), Live::Send);
        assert_eq!(s.sent("new-chat", 7), (7, false));
        assert!(s.has("new-chat", 6), "earlier messages of a chat it never tracked are history");
    }

    #[test]
    fn a_device_is_not_pushed_its_own_messages_but_the_users_other_devices_are() {
        assert!(own_message("u", Some("phone"), "u", "phone", None, 5));
        assert!(!own_message("u", Some("phone"), "u", "laptop", None, 5), "another device of the sender");
        assert!(!own_message("v", Some("phone"), "u", "phone", None, 5), "someone else's");
        assert!(own_message("u", None, "u", "laptop", None, 5), "stored before devices were tracked");
        assert!(!own_message("u", Some("phone"), "u", "phone", Some(4), 5), "sent while it caught up: owed");
    }
}
