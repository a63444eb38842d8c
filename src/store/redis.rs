//! Redis: shared state for several instances ([`RedisState`]) and the event bus that carries
//! core events between them ([`RedisBus`]). Keys start with `REDIS_PREFIX`.
//!
//! Instance-owned entries are sorted-set members scored with their expiry time (ms), renewed
//! by their instance every [`RENEW_EVERY`]; readers ignore members whose score has passed. A
//! crashed instance's users therefore fall offline within [`ENTRY_TTL`].

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use deadpool_redis::{
    redis::{self, AsyncCommands, Script},
    Pool, Runtime,
};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::shared::{PresenceRecord, SharedResult, SharedState};
use crate::domain::{ChatId, UserId};

/// How long an instance's entry lives without renewal.
pub const ENTRY_TTL: Duration = Duration::from_secs(30);
/// How often an instance renews its entries.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

pub fn pool(url: &str) -> anyhow::Result<Pool> {
    Ok(deadpool_redis::Config::from_url(url).create_pool(Some(Runtime::Tokio1))?)
}

/// Answers whether Redis responds, for `/health`.
pub async fn ping(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(mut conn) => redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok(),
        Err(_) => false,
    }
}

pub struct RedisState {
    pool: Pool,
    prefix: String,
    instance: String,
    /// Makes this instance's sliding-window slots distinct members of their sorted set.
    slots: std::sync::atomic::AtomicU64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Adds an instance-owned member with a fresh expiry, dropping expired ones; returns how many
/// live members there were before.
const JOIN: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return before
";

/// Removes a member, drops expired ones, returns how many live members remain.
const LEAVE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
";

/// A sliding window: drops slots older than the window, then takes one unless `limit` are
/// taken; returns 0 when taken, else the milliseconds until the oldest slot frees.
const TAKE_SLOT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + ARGV[2] - ARGV[1])
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
";

/// Deletes the typing key only if it still holds the expected generation, and takes the user
/// off the chat's list of typers.
const CLEAR_IF: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// "Online until": drops lapsed entries, records the user's (KEYS[1] scored by expiry, ms),
/// keeps the set alive at least as long; returns 1 when the user was offline everywhere
/// (no live instance in KEYS[2], no entry of their own still running).
const ONLINE_UNTIL: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local had = redis.call('ZSCORE', KEYS[1], ARGV[3])
local here = redis.call('ZCOUNT', KEYS[2], ARGV[1], '+inf')
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
if had or here > 0 then return 0 end
return 1
";

impl RedisState {
    pub fn new(pool: Pool, prefix: &str, instance: &str) -> Arc<Self> {
        Arc::new(Self {
            pool,
            prefix: prefix.to_string(),
            instance: instance.to_string(),
            slots: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        k.push_str(&parts.join(":"));
        k
    }

    fn room_member(&self, user: &str) -> String {
        format!("{user}\u{1f}{}", self.instance)
    }

    async fn join(&self, key: &str, member: &str) -> SharedResult<i64> {
        let mut conn = self.pool.get().await?;
        let expiry = now_ms() + ENTRY_TTL.as_millis() as i64;
        let before: i64 = Script::new(JOIN)
            .key(key)
            .arg(now_ms())
            .arg(expiry)
            .arg(member)
            .arg(2 * ENTRY_TTL.as_millis() as i64)
            .invoke_async(&mut conn)
            .await?;
        Ok(before)
    }

    async fn leave(&self, key: &str, member: &str) -> SharedResult<i64> {
        let mut conn = self.pool.get().await?;
        let remaining: i64 = Script::new(LEAVE).key(key).arg(now_ms()).arg(member).invoke_async(&mut conn).await?;
        Ok(remaining)
    }
}

#[async_trait]
impl SharedState for RedisState {
    async fn user_here(&self, user: &str) -> SharedResult<bool> {
        self.join(&self.key(&["online-users"]), &self.room_member(user)).await?;
        let first = self.join(&self.key(&["online", user]), &self.instance).await? == 0;
        Ok(first && !self.lasts(user).await?)
    }

    async fn user_gone(&self, user: &str) -> SharedResult<bool> {
        self.leave(&self.key(&["online-users"]), &self.room_member(user)).await?;
        let last = self.leave(&self.key(&["online", user]), &self.instance).await? == 0;
        Ok(last && !self.lasts(user).await?)
    }

    async fn online(&self, users: &[UserId]) -> SharedResult<Vec<bool>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await?;
        let mut pipe = redis::pipe();
        let now = now_ms();
        let until = self.key(&["online-until"]);
        for user in users {
            pipe.cmd("ZCOUNT").arg(self.key(&["online", user])).arg(now).arg("+inf");
            pipe.cmd("ZSCORE").arg(&until).arg(user.as_str());
        }
        let answers: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        Ok(answers
            .chunks(2)
            .map(|pair| {
                let here: i64 = pair.first().and_then(|v| redis::from_redis_value(v.clone()).ok()).unwrap_or(0);
                let until: Option<f64> =
                    pair.get(1).and_then(|v| redis::from_redis_value::<Option<f64>>(v.clone()).ok()).flatten();
                here > 0 || until.is_some_and(|t| t > now as f64)
            })
            .collect())
    }

    async fn set_presence(&self, user: &str, record: &PresenceRecord) -> SharedResult<()> {
        let mut conn = self.pool.get().await?;
        let _: () = conn.set(self.key(&["presence", user]), serde_json::to_string(record)?).await?;
        Ok(())
    }

    async fn presence(&self, users: &[UserId]) -> SharedResult<Vec<Option<PresenceRecord>>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await?;
        let keys: Vec<String> = users.iter().map(|u| self.key(&["presence", u])).collect();
        let raw: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        Ok(raw.into_iter().map(|r| r.and_then(|s| serde_json::from_str(&s).ok())).collect())
    }

    async fn join_room(&self, chat: &str, user: &str) -> SharedResult<()> {
        self.join(&self.key(&["room", chat]), &self.room_member(user)).await.map(|_| ())
    }

    async fn leave_room(&self, chat: &str, user: &str) -> SharedResult<()> {
        self.leave(&self.key(&["room", chat]), &self.room_member(user)).await.map(|_| ())
    }

    async fn room_users(&self, chat: &str) -> SharedResult<Vec<UserId>> {
        let mut conn = self.pool.get().await?;
        let members: Vec<String> = conn.zrangebyscore(self.key(&["room", chat]), now_ms(), "+inf").await?;
        let mut users: Vec<UserId> =
            members.into_iter().filter_map(|m| m.split_once('\u{1f}').map(|(u, _)| UserId::from(u))).collect();
        users.sort();
        users.dedup();
        Ok(users)
    }

    async fn set_typing(&self, chat: &str, user: &str, generation: u64, ttl_ms: u64) -> SharedResult<()> {
        let mut conn = self.pool.get().await?;
        let ttl_ms = ttl_ms.max(1);
        let typers = self.key(&["typers", chat]);
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(self.key(&["typing", chat, user]))
            .arg(generation)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("ZADD")
            .arg(&typers)
            .arg(now_ms() + ttl_ms as i64)
            .arg(user)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&typers)
            .arg(ttl_ms)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn clear_typing(&self, chat: &str, user: &str, generation: Option<u64>) -> SharedResult<bool> {
        let mut conn = self.pool.get().await?;
        let key = self.key(&["typing", chat, user]);
        let typers = self.key(&["typers", chat]);
        let removed: i64 = match generation {
            Some(g) => Script::new(CLEAR_IF).key(&key).key(&typers).arg(g).arg(user).invoke_async(&mut conn).await?,
            None => {
                let _: i64 = conn.zrem(&typers, user).await?;
                conn.del(&key).await?
            }
        };
        Ok(removed > 0)
    }

    async fn renew(&self, users: &[UserId], rooms: &[(ChatId, UserId)]) -> SharedResult<()> {
        if users.is_empty() && rooms.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.get().await?;
        let expiry = now_ms() + ENTRY_TTL.as_millis() as i64;
        let ttl = 2 * ENTRY_TTL.as_millis() as i64;
        let mut pipe = redis::pipe();
        let roster = self.key(&["online-users"]);
        for user in users {
            let key = self.key(&["online", user]);
            pipe.zadd(&key, &self.instance, expiry).ignore().pexpire(&key, ttl).ignore();
            pipe.zadd(&roster, self.room_member(user), expiry).ignore();
        }
        if !users.is_empty() {
            pipe.pexpire(&roster, ttl).ignore();
        }
        for (chat, user) in rooms {
            let key = self.key(&["room", chat]);
            pipe.zadd(&key, self.room_member(user), expiry).ignore().pexpire(&key, ttl).ignore();
        }
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    async fn online_users(&self) -> SharedResult<Vec<UserId>> {
        let mut users = self.roster().await?;
        let mut conn = self.pool.get().await?;
        let until: Vec<String> = conn.zrangebyscore(self.key(&["online-until"]), now_ms(), "+inf").await?;
        users.extend(until);
        users.sort();
        users.dedup();
        Ok(users.into_iter().map(UserId::from).collect())
    }

    async fn online_until(&self, user: &str, until: chrono::DateTime<chrono::Utc>) -> SharedResult<bool> {
        let mut conn = self.pool.get().await?;
        let now = now_ms();
        let expiry = until.timestamp_millis();
        let keep = (expiry - now).max(1) + ENTRY_TTL.as_millis() as i64;
        let was_offline: i64 = Script::new(ONLINE_UNTIL)
            .key(self.key(&["online-until"]))
            .key(self.key(&["online", user]))
            .arg(now)
            .arg(expiry)
            .arg(user)
            .arg(keep)
            .invoke_async(&mut conn)
            .await?;
        Ok(was_offline == 1)
    }

    async fn clear_online_until(&self, user: &str) -> SharedResult<bool> {
        let mut conn = self.pool.get().await?;
        let _: i64 = conn.zrem(self.key(&["online-until"]), user).await?;
        let here: i64 = conn.zcount(self.key(&["online", user]), now_ms(), "+inf").await?;
        Ok(here == 0)
    }

    async fn typers(&self, chat: &str) -> SharedResult<Vec<String>> {
        let mut conn = self.pool.get().await?;
        let mut users: Vec<String> = conn.zrangebyscore(self.key(&["typers", chat]), now_ms(), "+inf").await?;
        users.sort();
        Ok(users)
    }

    async fn take_slot(&self, key: &str, limit: u32, window: Duration) -> SharedResult<Option<Duration>> {
        self.slot(key, limit, window).await
    }
}

/// Reads of the roster and sliding windows (kept apart from the trait impl above for review).
impl RedisState {
    /// Whether the user is online until a time still to come.
    async fn lasts(&self, user: &str) -> SharedResult<bool> {
        let mut conn = self.pool.get().await?;
        let until: Option<f64> = conn.zscore(self.key(&["online-until"]), user).await?;
        Ok(until.is_some_and(|t| t > now_ms() as f64))
    }

    async fn roster(&self) -> SharedResult<Vec<String>> {
        let mut conn = self.pool.get().await?;
        let members: Vec<String> = conn.zrangebyscore(self.key(&["online-users"]), now_ms(), "+inf").await?;
        let mut users: Vec<String> =
            members.into_iter().filter_map(|m| m.split_once('\u{1f}').map(|(u, _)| u.to_string())).collect();
        users.sort();
        users.dedup();
        Ok(users)
    }

    async fn slot(&self, key: &str, limit: u32, window: Duration) -> SharedResult<Option<Duration>> {
        let mut conn = self.pool.get().await?;
        let n = self.slots.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wait: i64 = Script::new(TAKE_SLOT)
            .key(self.key(&["window", key]))
            .arg(now_ms())
            .arg(window.as_millis().max(1) as i64)
            .arg(limit)
            .arg(format!("{}:{n}", self.instance))
            .invoke_async(&mut conn)
            .await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait as u64)))
    }
}

/// Publishes serialized envelopes to one channel; every instance subscribes to it.
pub struct RedisBus {
    tx: mpsc::UnboundedSender<Outgoing>,
}

enum Outgoing {
    /// A payload, and who waits for Redis to have taken it.
    Publish(String, oneshot::Sender<()>),
    /// Answered when everything queued before it was published.
    Marker(oneshot::Sender<()>),
}

/// Most envelopes one pipeline carries to Redis.
const PUBLISH_PIPELINE: usize = 512;

impl RedisBus {
    /// Starts the publisher task. Publishing never blocks the caller: envelopes queue in order
    /// and leave in that order, as many as are waiting in one pipeline (one round trip), so the
    /// bus keeps up with the writer: one round trip per envelope capped every instance at a
    /// few thousand events per second, and acks waited behind it.
    pub fn start(pool: Pool, channel: String) -> Arc<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        tokio::spawn(async move {
            let mut queued = Vec::with_capacity(PUBLISH_PIPELINE);
            while rx.recv_many(&mut queued, PUBLISH_PIPELINE).await > 0 {
                let mut pipe = redis::pipe();
                let mut payloads = 0;
                let mut waiting = Vec::with_capacity(queued.len());
                for item in queued.drain(..) {
                    match item {
                        Outgoing::Publish(payload, done) => {
                            pipe.publish(&channel, payload).ignore();
                            payloads += 1;
                            waiting.push(done);
                        }
                        // Answered with the envelopes queued before it, once they left.
                        Outgoing::Marker(done) => waiting.push(done),
                    }
                }
                // Retry until Redis takes them: dropping them would lose live events elsewhere.
                // A pipeline that failed half-way is sent again whole; receivers drop what they
                // already had (a message by its `seq`).
                let mut backoff = Duration::from_millis(50);
                // Nothing to send when only markers were queued.
                if payloads > 0 {
                    loop {
                        let sent = match pool.get().await {
                            Ok(mut conn) => pipe.query_async::<()>(&mut conn).await.map_err(anyhow::Error::from),
                            Err(e) => Err(e.into()),
                        };
                        match sent {
                            Ok(()) => break,
                            Err(e) => {
                                tracing::warn!(cause = %e, "redis publish failed; retrying");
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(Duration::from_secs(2));
                            }
                        }
                    }
                }
                for done in waiting {
                    let _ = done.send(());
                }
            }
        });
        Arc::new(Self { tx })
    }

    /// Queues a payload; the receiver resolves once Redis has taken it.
    pub fn publish(&self, payload: String) -> oneshot::Receiver<()> {
        let (done, published) = oneshot::channel();
        let _ = self.tx.send(Outgoing::Publish(payload, done));
        published
    }

    /// Resolves once everything queued so far has been published.
    pub fn flush(&self) -> oneshot::Receiver<()> {
        let (done, flushed) = oneshot::channel();
        let _ = self.tx.send(Outgoing::Marker(done));
        flushed
    }
}

/// Subscribes to the bus channel and hands every payload to `deliver`. After the subscription
/// was lost and restored, `resubscribed` is called: events published meanwhile were missed,
/// and the caller must make its connections catch up from the store.
pub fn subscribe(
    url: String,
    channel: String,
    deliver: impl Fn(String) + Send + Sync + 'static,
    resubscribed: impl Fn() + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let session = async {
                let client = redis::Client::open(url.as_str())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, anyhow::Error>(pubsub)
            };
            match session.await {
                Ok(mut pubsub) => {
                    if !first {
                        tracing::warn!("redis bus subscription restored; resyncing local connections");
                        resubscribed();
                    }
                    let mut stream = pubsub.on_message();
                    while let Some(msg) = stream.next().await {
                        match msg.get_payload::<String>() {
                            Ok(payload) => deliver(payload),
                            Err(e) => tracing::warn!(cause = %e, "unreadable bus payload"),
                        }
                    }
                    tracing::warn!("redis bus subscription ended");
                }
                Err(e) => tracing::warn!(cause = %e, "redis bus subscribe failed"),
            }
            first = false;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}
