//! Per-user, per-event rate limits (governor's GCRA), and connection attempts per client IP.
//! Each event bucket is shared by the equivalent event of every profile: Spark's
//! `send_message` and SUP's `message:new` draw on the same one. Keyed state is pruned
//! periodically so it stays bounded by the users and addresses active in a window.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{clock::Clock, clock::DefaultClock, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::{
    config::{RateLimits, RateSpec},
    error::AppError,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    MessageNew,
    Typing,
    Delivered,
    Read,
    PresenceUpdate,
    CallInitiate,
    Reactions,
    /// Socialink prekey bundles fetched, per requester (`RATE_LIMIT_KEY_BUNDLE`), so that one
    /// account cannot drain another's one-time prekeys.
    KeyBundle,
    /// Ids named in subscription-like requests (presence watches, chat room joins).
    Subscriptions,
}

impl Limit {
    /// What the bucket counts, for the error message (in no dialect's words: the equivalent
    /// events of every dialect draw on the same bucket).
    pub fn what(self) -> &'static str {
        match self {
            Limit::MessageNew => "messages",
            Limit::Typing => "typing indicators",
            Limit::Delivered => "delivered receipts",
            Limit::Read => "read receipts",
            Limit::PresenceUpdate => "presence updates",
            Limit::CallInitiate => "calls",
            Limit::Reactions => "reactions",
            Limit::KeyBundle => "key bundle requests",
            Limit::Subscriptions => "subscriptions",
        }
    }
}

pub struct Limiters {
    clock: DefaultClock,
    message_new: DefaultKeyedRateLimiter<String>,
    typing: DefaultKeyedRateLimiter<String>,
    delivered: DefaultKeyedRateLimiter<String>,
    read: DefaultKeyedRateLimiter<String>,
    presence_update: DefaultKeyedRateLimiter<String>,
    call_initiate: DefaultKeyedRateLimiter<String>,
    reactions: DefaultKeyedRateLimiter<String>,
    key_bundle: DefaultKeyedRateLimiter<String>,
    subscriptions: DefaultKeyedRateLimiter<String>,
    /// The burst of `subscriptions`: the most ids one request may name.
    subscriptions_burst: u32,
    connections: DefaultKeyedRateLimiter<IpAddr>,
    session_joins: DefaultKeyedRateLimiter<IpAddr>,
}

fn keyed<K: std::hash::Hash + Eq + Clone>(spec: RateSpec) -> DefaultKeyedRateLimiter<K> {
    let burst = NonZeroU32::new(spec.count).unwrap_or(NonZeroU32::MIN);
    // `count` events per `window`, all of them allowed at once: the seed's fixed-window table
    // read as a token bucket that refills one token every window/count.
    let period = (spec.window / spec.count.max(1)).max(Duration::from_nanos(1));
    let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(burst)).allow_burst(burst);
    RateLimiter::keyed(quota)
}

impl Limiters {
    pub fn new(limits: &RateLimits) -> Arc<Self> {
        Arc::new(Self {
            clock: DefaultClock::default(),
            message_new: keyed(limits.message_new),
            typing: keyed(limits.typing),
            delivered: keyed(limits.delivered),
            read: keyed(limits.read),
            presence_update: keyed(limits.presence_update),
            call_initiate: keyed(limits.call_initiate),
            reactions: keyed(limits.reactions),
            key_bundle: keyed(limits.key_bundle),
            subscriptions: keyed(limits.subscriptions),
            subscriptions_burst: limits.subscriptions.count,
            connections: keyed(limits.connections),
            session_joins: keyed(limits.session_joins),
        })
    }

    /// Takes one connection attempt for `ip`, or says how long until the next is allowed.
    pub fn check_connection(&self, ip: IpAddr) -> Result<(), Duration> {
        self.connections.check_key(&ip).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Takes one session join attempt for `ip` (anonymous sessions are guarded by their key
    /// alone, which must not be guessable by trying).
    pub fn check_session_join(&self, ip: IpAddr) -> Result<(), AppError> {
        self.session_joins.check_key(&ip).map_err(|not_until| AppError::RateLimited {
            what: "session join attempts",
            retry_after_ms: not_until.wait_time_from(self.clock.now()).as_millis() as u64,
        })
    }

    fn limiter(&self, limit: Limit) -> &DefaultKeyedRateLimiter<String> {
        match limit {
            Limit::MessageNew => &self.message_new,
            Limit::Typing => &self.typing,
            Limit::Delivered => &self.delivered,
            Limit::Read => &self.read,
            Limit::PresenceUpdate => &self.presence_update,
            Limit::CallInitiate => &self.call_initiate,
            Limit::Reactions => &self.reactions,
            Limit::KeyBundle => &self.key_bundle,
            Limit::Subscriptions => &self.subscriptions,
        }
    }

    /// Takes one token for `user`, or says how long to wait.
    pub fn check(&self, limit: Limit, user: &str) -> Result<(), AppError> {
        // Allocates a key only on the first event of a user; lookups borrow.
        let key = user.to_string();
        self.limiter(limit).check_key(&key).map_err(|not_until| AppError::RateLimited {
            what: limit.what(),
            retry_after_ms: not_until.wait_time_from(self.clock.now()).as_millis() as u64,
        })
    }

    /// Takes `n` tokens at once for `user` (a request naming `n` ids), or says how long to
    /// wait. A request naming more than the whole bucket can never pass, and is refused as
    /// too large rather than told to wait.
    pub fn check_n(&self, limit: Limit, user: &str, n: usize) -> Result<(), AppError> {
        let Some(n) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            return if n == 0 { Ok(()) } else { Err(AppError::validation("too many ids in one request")) };
        };
        let key = user.to_string();
        match self.limiter(limit).check_key_n(&key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(AppError::RateLimited {
                what: limit.what(),
                retry_after_ms: not_until.wait_time_from(self.clock.now()).as_millis() as u64,
            }),
            Err(_) => Err(AppError::validation(format!(
                "one request may name at most {} ids (RATE_LIMIT_SUBSCRIPTIONS)",
                self.subscriptions_burst
            ))),
        }
    }

    /// Forgets users whose buckets are full again; run periodically.
    pub fn prune(&self) {
        for l in [
            &self.message_new,
            &self.typing,
            &self.delivered,
            &self.read,
            &self.presence_update,
            &self.call_initiate,
            &self.reactions,
            &self.key_bundle,
            &self.subscriptions,
        ] {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for l in [&self.connections, &self.session_joins] {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    pub fn spawn_pruner(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                me.prune();
            }
        })
    }
}
