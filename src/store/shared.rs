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
    /// Every user online on any live instance (a connection, or online until a time), sorted.
    async fn online_users(&self) -> SharedResult<Vec<UserId>>;
    /// `user` is online until `until` without a connection (Socialink's REST `online`), or
    /// until their connections say otherwise, whichever is later. True when the user was
    /// offline everywhere. [`SharedState::online`] and [`SharedState::user_gone`] count it.
    async fn online_until(&self, user: &str, until: DateTime<Utc>) -> SharedResult<bool>;
    /// Drops the user's "online until" entry. True when the user is now offline everywhere.
    async fn clear_online_until(&self, user: &str) -> SharedResult<bool>;
    /// The users with a typing indicator in `chat`, sorted.
    async fn typers(&self, chat: &str) -> SharedResult<Vec<String>>;
    /// Takes a slot in the sliding window `key`, which holds at most `limit` slots taken in the
    /// last `window`. `None` when taken; when full, how long until its oldest slot frees.
    async fn take_slot(&self, key: &str, limit: u32, window: Duration) -> SharedResult<Option<Duration>>;
}

/// The in-process implementation: one instance; only "online until" entries expire.
#[derive(Default)]
pub struct MemoryState {
    online: DashSet<String>,
    presence: DashMap<String, PresenceRecord>,
    rooms: DashMap<String, DashSet<String>>,
    typing: DashMap<(String, String), u64>,
    /// Users online until a time without a connection; lapsed entries go at the next renew.
    online_until: DashMap<String, DateTime<Utc>>,
    /// Sliding windows: their length, and when each slot in them was taken.
    windows: DashMap<String, (Duration, VecDeque<Instant>)>,
}

impl MemoryState {
    /// Whether the user is online until a time still to come.
    fn lasts(&self, user: &str) -> bool {
        self.online_until.get(user).is_some_and(|until| *until > Utc::now())
    }
}

#[async_trait]
impl SharedState for MemoryState {
    async fn user_here(&self, user: &str) -> SharedResult<bool> {
        let until = self.lasts(user);
        Ok(self.online.insert(user.to_string()) && !until)
    }

    async fn user_gone(&self, user: &str) -> SharedResult<bool> {
        Ok(self.online.remove(user).is_some() && !self.lasts(user))
    }

    async fn online(&self, users: &[UserId]) -> SharedResult<Vec<bool>> {
        Ok(users.iter().map(|u| self.online.contains(u.as_str()) || self.lasts(u)).collect())
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
        let now = Utc::now();
        self.online_until.retain(|_, until| *until > now);
        Ok(())
    }

    async fn online_users(&self) -> SharedResult<Vec<UserId>> {
        let mut users: Vec<UserId> = self.online.iter().map(|u| UserId::from(u.as_str())).collect();
        let now = Utc::now();
        users.extend(self.online_until.iter().filter(|e| *e.value() > now).map(|e| UserId::from(e.key().as_str())));
        users.sort();
        users.dedup();
        Ok(users)
    }

    async fn online_until(&self, user: &str, until: DateTime<Utc>) -> SharedResult<bool> {
        let was_online = self.online.contains(user) || self.lasts(user);
        self.online_until.insert(user.to_string(), until);
        Ok(!was_online)
    }

    async fn clear_online_until(&self, user: &str) -> SharedResult<bool> {
        self.online_until.remove(user);
        Ok(!self.online.contains(user))
    }

    async fn typers(&self, chat: &str) -> SharedResult<Vec<String>> {
        let mut users: Vec<String> =
            self.typing.iter().filter(|e| e.key().0 == chat).map(|e| e.key().1.clone()).collect();
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
