//! An Engine.IO session's receipts, on whichever transport carries it.
//!
//! **Long-polling.** A client sends its next poll (GET) only once it has handled the previous
//! response, so poll `k + 1` arriving proves response `k` arrived. Which response carried a
//! message: when `a` polls have arrived, the message is carried by poll `a` (if that response
//! was not collected yet) or a later one. Poll `a + 1` starts after the message was queued and
//! takes everything queued, in order, unless engineioxide cut the response short at
//! `max_payload` (it stops at the first packet that does not fit, which then opens the next
//! response). So the message has arrived once some poll `k ≥ a + 1` that was not cut short
//! has been followed by poll `k + 1`. Whether poll `k` was cut short is known when poll
//! `k + 1` is answered: `len(k) + 1 + len(k + 1) ≤ max_payload` proves it was not, since the
//! packet that did not fit would be in response `k + 1`. A message's position is `a + 1`;
//! the confirmed position is the highest poll known whole.
//!
//! **Upgrade to WebSocket.** The upgrade request carries the session's `sid`; from then on
//! engineioxide answers polls with a noop instead of reading the queue, so counting polls
//! stops there and positions are the WebSocket's ([`Wire::position`]). Pong 2 on the new
//! WebSocket answers a ping queued after the upgrade request, which confirms everything
//! queued before as well (the client stops polling, having handled the last response, before
//! it switches). An upgrade that fails leaves the session's later deliveries unconfirmed:
//! they are pushed again, under the same id, after the client reconnects.
//!
//! **WebSocket from the start.** The session's receipts are those of its one connection.
//!
//! Sessions are found by `sid` from every request that names one; a record is kept from the
//! first such request until its Socket.IO connections are gone. Records that no connection
//! claims (a bogus `sid`, a session that never connected a namespace) are swept after a
//! minute.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use dashmap::DashMap;

use super::Wire;
use crate::fanout::Receipts;

/// How long a record nobody claimed is kept (socketioxide closes a session that connected no
/// namespace after 45 s).
const UNCLAIMED_TTL: Duration = Duration::from_secs(60);
/// A sweep of unclaimed records runs once per this many new records.
const SWEEP_EVERY: u64 = 256;

pub struct Sessions {
    by_sid: DashMap<String, Arc<SessionReceipts>>,
    max_payload: u64,
    created: AtomicU64,
}

pub struct SessionReceipts {
    sid: String,
    state: Mutex<State>,
    max_payload: u64,
    /// Socket.IO connections (one per namespace) of this session.
    claims: AtomicUsize,
    closed: AtomicBool,
    born: Instant,
}

#[derive(Default)]
struct State {
    /// Polls (GET) that arrived, and that were answered.
    arrived: u64,
    answered: u64,
    /// The last poll answered: its number and its body's length, while it is not known
    /// whether it was cut short.
    last: Option<(u64, u64)>,
    /// The highest poll known to have arrived whole at the client.
    whole: u64,
    /// The WebSocket the session upgraded to (or began on).
    wire: Option<Arc<Wire>>,
}

impl Sessions {
    pub fn new(max_payload: u64) -> Self {
        Self { by_sid: DashMap::new(), max_payload, created: AtomicU64::new(0) }
    }

    fn get_or_create(&self, sid: &str) -> Arc<SessionReceipts> {
        if let Some(s) = self.by_sid.get(sid) {
            return s.clone();
        }
        let created = self.by_sid.entry(sid.to_string()).or_insert_with(|| {
            Arc::new(SessionReceipts {
                sid: sid.to_string(),
                state: Mutex::default(),
                max_payload: self.max_payload,
                claims: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                born: Instant::now(),
            })
        });
        let session = created.clone();
        drop(created);
        if self.created.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        session
    }

    fn sweep(&self) {
        self.by_sid.retain(|_, s| s.claims.load(Ordering::SeqCst) > 0 || s.born.elapsed() < UNCLAIMED_TTL);
    }

    /// A poll request of session `sid` arrived. Answer it with [`Poll::answered`]; a poll
    /// dropped unanswered (its connection went away) counts as answered without a payload.
    pub fn poll_arrived(self: &Arc<Self>, sid: &str) -> Poll {
        let session = self.get_or_create(sid);
        let number = {
            let mut state = session.lock();
            state.arrived += 1;
            state.arrived
        };
        Poll { sessions: self.clone(), session, number, answered: false }
    }

    fn poll_answered(&self, session: &Arc<SessionReceipts>, poll: u64, len: Option<u64>) {
        let mut state = session.lock();
        state.answered += 1;
        // Once the session upgrades, polls no longer read the queue.
        if state.wire.is_none() {
            if let (Some((previous, previous_len)), Some(len)) = (state.last, len) {
                if previous + 1 == poll && len > 0 && previous_len + 1 + len <= session.max_payload {
                    state.whole = state.whole.max(previous);
                }
            }
            state.last = len.map(|len| (poll, len));
        }
        let unknown = len.is_none() && state.wire.is_none() && session.claims.load(Ordering::SeqCst) == 0;
        drop(state);
        if unknown {
            // Most likely a sid engineioxide does not know: nothing will claim it.
            self.by_sid.remove_if(&session.sid, |_, s| Arc::ptr_eq(s, session));
        }
    }

    /// Session `sid` asked to upgrade to WebSocket on the connection `wire` watches.
    pub fn upgrade_requested(&self, sid: &str, wire: &Arc<Wire>) {
        self.get_or_create(sid).attach(wire);
    }

    /// The receipts of session `sid`, for a Socket.IO connection that begins on it; `wire` is
    /// the WebSocket the session began on, if it did.
    pub fn claim(&self, sid: &str, websocket: Option<&Arc<Wire>>) -> Arc<SessionReceipts> {
        let session = self.get_or_create(sid);
        if let Some(wire) = websocket {
            session.attach(wire);
        }
        session.claims.fetch_add(1, Ordering::SeqCst);
        session
    }

    /// A Socket.IO connection of the session is gone.
    pub fn release(&self, session: &Arc<SessionReceipts>) {
        if session.claims.fetch_sub(1, Ordering::SeqCst) == 1 {
            session.closed.store(true, Ordering::SeqCst);
            self.by_sid.remove_if(&session.sid, |_, s| Arc::ptr_eq(s, session));
        }
    }

    /// Every session was closed (graceful stop): socketioxide reports no disconnect for the
    /// sockets it closes when the server closes, so nothing else will release them.
    pub fn close_all(&self) {
        for session in self.by_sid.iter() {
            session.closed.store(true, Ordering::SeqCst);
        }
    }

    /// Sessions known (for tests of the bookkeeping).
    pub fn len(&self) -> usize {
        self.by_sid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_sid.is_empty()
    }
}

/// A poll request in progress.
pub struct Poll {
    sessions: Arc<Sessions>,
    session: Arc<SessionReceipts>,
    number: u64,
    answered: bool,
}

impl Poll {
    /// The poll was answered, with a body of `len` bytes (`None`: not with a payload).
    pub fn answered(mut self, len: Option<u64>) {
        self.answered = true;
        self.sessions.poll_answered(&self.session, self.number, len);
    }
}

impl Drop for Poll {
    fn drop(&mut self) {
        if !self.answered {
            self.sessions.poll_answered(&self.session, self.number, None);
        }
    }
}

impl SessionReceipts {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain counters; usable after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn attach(&self, wire: &Arc<Wire>) {
        wire.expect_upgrade();
        // A later upgrade replaces one that failed: pong 2 on the new WebSocket still answers
        // a ping queued after everything the old one was handed.
        self.lock().wire = Some(wire.clone());
    }
}

impl Receipts for SessionReceipts {
    fn position(&self) -> u64 {
        let state = self.lock();
        match &state.wire {
            Some(wire) => wire.position(),
            None => state.arrived + 1,
        }
    }

    fn confirmed(&self) -> u64 {
        let state = self.lock();
        state.wire.as_ref().and_then(|w| w.confirmed()).unwrap_or(state.whole)
    }

    fn finished(&self) -> bool {
        let state = self.lock();
        match &state.wire {
            Some(wire) => wire.finished(),
            None => self.closed.load(Ordering::SeqCst) && state.answered == state.arrived,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 100;

    fn poll(sessions: &Arc<Sessions>, sid: &str, len: u64) {
        sessions.poll_arrived(sid).answered(Some(len));
    }

    #[test]
    fn a_message_is_confirmed_by_the_poll_after_a_whole_response_that_followed_it() {
        let sessions = Arc::new(Sessions::new(MAX));
        let s = sessions.claim("a", None);
        poll(&sessions, "a", 10);
        let need = s.position(); // queued now: in poll 1's response or poll 2's
        assert_eq!(need, 2);
        poll(&sessions, "a", 10);
        assert!(s.confirmed() < need, "poll 2 may still be on its way");
        poll(&sessions, "a", 1);
        assert!(s.confirmed() >= need, "poll 3 proves poll 2 whole and received");
    }

    #[test]
    fn a_response_cut_at_max_payload_confirms_nothing_queued_after_it_started() {
        let sessions = Arc::new(Sessions::new(MAX));
        let s = sessions.claim("b", None);
        let need = s.position();
        poll(&sessions, "b", 90); // cut short: the next response opens with 20 bytes
        poll(&sessions, "b", 20);
        assert!(s.confirmed() < need);
        poll(&sessions, "b", 5);
        assert!(s.confirmed() >= need);
    }

    #[test]
    fn an_error_answer_forgets_an_unclaimed_sid() {
        let sessions = Arc::new(Sessions::new(MAX));
        drop(sessions.poll_arrived("bogus"));
        assert!(sessions.is_empty());
        let claimed = sessions.claim("c", None);
        sessions.release(&claimed);
        assert!(sessions.is_empty());
        assert!(claimed.finished(), "closed with no poll in flight");
    }
}
