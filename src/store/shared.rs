//! Shared, short-lived state: presence, which users are active in which chat rooms, and typing
//! indicators. In-process by default; in Redis when `REDIS_URL` is set, so that every instance
//! sees the same answers. Entries written by an instance carry an expiry that the instance
//! keeps renewing, so a crashed instance's users do not stay "online" forever.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::{DashMap, DashSet};

use crate::domain::{ChatId, UserId};

pub type SharedResult<T> = Result<T, anyhow::Error>;

/// A user's chosen presence; "online or not" is derived from connections, not stored here.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PresenceRecord {
    pub status: String,
    pub custom_status: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait SharedState: Send + Sync + 'static {
    /// This instance now has a connection of `user`. True when the user was offline everywhere.
    async fn user_here(&self, user: &str) -> SharedResult<bool>;
    /// This instance has no connection of `user` left. True when the user is offline everywhere.
    async fn user_gone(&self, user: &str) -> SharedResult<bool>;
    /// Whether each user has a connection on any live instance.
    async fn online(&self, users: &[UserId]) -> SharedResult<Vec<bool>>;
    async fn set_presence(&self, user: &str, record: &PresenceRecord) -> SharedResult<()>;
    async fn presence(&self, users: &[UserId]) -> SharedResult<Vec<Option<PresenceRecord>>>;
    /// `user` has a connection in the room of `chat` on this instance.
    async fn join_room(&self, chat: &str, user: &str) -> SharedResult<()>;
    async fn leave_room(&self, chat: &str, user: &str) -> SharedResult<()>;
    /// Users with a connection in the chat's room on any live instance.
    async fn room_users(&self, chat: &str) -> SharedResult<Vec<UserId>>;
    /// Records a typing indicator that lapses after `ttl_ms` unless renewed.
    async fn set_typing(&self, chat: &str, user: &str, generation: u64, ttl_ms: u64) -> SharedResult<()>;
    /// Removes the indicator if it still has this generation (or any, with `None`); true if removed.
    async fn clear_typing(&self, chat: &str, user: &str, generation: Option<u64>) -> SharedResult<bool>;
    /// Renews this instance's entries for its connected users and their rooms.
    async fn renew(&self, users: &[UserId], rooms: &[(ChatId, UserId)]) -> SharedResult<()>;
    /// Every user with a connection on any live instance, sorted.
    async fn online_users(&self) -> SharedResult<Vec<UserId>>;
    /// Takes a slot in the sliding window `key`, which holds at most `limit` slots taken in the
    /// last `window`. `None` when taken; when full, how long until its oldest slot frees.
    async fn take_slot(&self, key: &str, limit: u32, window: Duration) -> SharedResult<Option<Duration>>;
}

/// The in-process implementation: one instance, nothing to expire.
#[derive(Default)]
pub struct MemoryState {
    online: DashSet<String>,
    presence: DashMap<String, PresenceRecord>,
    rooms: DashMap<String, DashSet<String>>,
    typing: DashMap<(String, String), u64>,
    /// Sliding windows: their length, and when each slot in them was taken.
    windows: DashMap<String, (Duration, VecDeque<Instant>)>,
}

#[async_trait]
impl SharedState for MemoryState {
    async fn user_here(&self, user: &str) -> SharedResult<bool> {
        Ok(self.online.insert(user.to_string()))
    }

    async fn user_gone(&self, user: &str) -> SharedResult<bool> {
        Ok(self.online.remove(user).is_some())
    }

    async fn online(&self, users: &[UserId]) -> SharedResult<Vec<bool>> {
        Ok(users.iter().map(|u| self.online.contains(u.as_str())).collect())
    }

    async fn set_presence(&self, user: &str, record: &PresenceRecord) -> SharedResult<()> {
        self.presence.insert(user.to_string(), record.clone());
        Ok(())
    }

    async fn presence(&self, users: &[UserId]) -> SharedResult<Vec<Option<PresenceRecord>>> {
        Ok(users.iter().map(|u| self.presence.get(u.as_str()).map(|p| p.clone())).collect())
    }

    async fn join_room(&self, chat: &str, user: &str) -> SharedResult<()> {
        self.rooms.entry(chat.to_string()).or_default().insert(user.to_string());
        Ok(())
    }

    async fn leave_room(&self, chat: &str, user: &str) -> SharedResult<()> {
        self.rooms.remove_if(chat, |_, users| {
            users.remove(user);
            users.is_empty()
        });
        Ok(())
    }

    async fn room_users(&self, chat: &str) -> SharedResult<Vec<UserId>> {
        let mut users: Vec<UserId> =
            self.rooms.get(chat).map(|set| set.iter().map(|u| UserId::from(u.as_str())).collect()).unwrap_or_default();
        users.sort();
        Ok(users)
    }

    async fn set_typing(&self, chat: &str, user: &str, generation: u64, _ttl_ms: u64) -> SharedResult<()> {
        self.typing.insert((chat.to_string(), user.to_string()), generation);
        Ok(())
    }

    async fn clear_typing(&self, chat: &str, user: &str, generation: Option<u64>) -> SharedResult<bool> {
        let key = (chat.to_string(), user.to_string());
        Ok(self.typing.remove_if(&key, |_, g| generation.is_none_or(|want| *g == want)).is_some())
    }

    async fn renew(&self, _users: &[UserId], _rooms: &[(ChatId, UserId)]) -> SharedResult<()> {
        // Nothing expires here, but windows whose slots have all freed are forgotten, so the
        // map stays bounded by the users active in one window.
        self.windows.retain(|_, (window, slots)| slots.back().is_some_and(|t| t.elapsed() < *window));
        Ok(())
    }

    async fn online_users(&self) -> SharedResult<Vec<UserId>> {
        let mut users: Vec<UserId> = self.online.iter().map(|u| UserId::from(u.as_str())).collect();
        users.sort();
        Ok(users)
    }

    async fn take_slot(&self, key: &str, limit: u32, window: Duration) -> SharedResult<Option<Duration>> {
        let now = Instant::now();
        let mut entry = self.windows.entry(key.to_string()).or_insert_with(|| (window, VecDeque::new()));
        let (length, slots) = &mut *entry;
        *length = window;
        while slots.front().is_some_and(|t| now.duration_since(*t) >= window) {
            slots.pop_front();
        }
        if slots.len() >= limit as usize {
            let oldest = slots.front().copied().unwrap_or(now);
            return Ok(Some((oldest + window).saturating_duration_since(now).max(Duration::from_millis(1))));
        }
        slots.push_back(now);
        Ok(None)
    }
}
