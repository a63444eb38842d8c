//! Last-seen times, written in batches.
//!
//! Every disconnect that takes a user offline records when they were last seen. Written one
//! by one, that was a write transaction per disconnect (an fsync on SQLite), the costliest
//! part of a reconnect; during a reconnect storm those transactions queued behind each other
//! for SQLite's one write lock. Here a disconnect only notes the time, and a flusher writes
//! what was noted every [`FLUSH_EVERY`] in one transaction, as the delivery ledger does with
//! its cursors.
//!
//! Reads on this instance see noted times before they are written ([`LastSeen::noted`]). What
//! a crash can lose is the last second's last-seen times (the stored ones are a little older),
//! never a message; a graceful stop writes them before it ends.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use crate::{
    domain::UserId,
    store::{self, Db},
};

/// How often noted times are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

pub struct LastSeen {
    db: Db,
    noted: std::sync::Mutex<HashMap<UserId, DateTime<Utc>>>,
    /// One flush at a time, so that the graceful stop's flush ends after any running one.
    flushing: tokio::sync::Mutex<()>,
}

impl LastSeen {
    pub fn new(db: Db) -> Arc<Self> {
        Arc::new(Self { db, noted: Default::default(), flushing: tokio::sync::Mutex::new(()) })
    }

    /// `user` was last seen `at`; written at the next flush.
    pub fn note(&self, user: &UserId, at: DateTime<Utc>) {
        let mut noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
        let entry = noted.entry(user.clone()).or_insert(at);
        *entry = (*entry).max(at);
    }

    /// The time noted for `user` and not written yet, if any.
    pub fn noted(&self, user: &str) -> Option<DateTime<Utc>> {
        self.noted.lock().unwrap_or_else(|p| p.into_inner()).get(user).copied()
    }

    /// Writes what was noted. An entry stays readable until its write committed; one noted
    /// again meanwhile stays for the next flush. After a failed write everything stays, to
    /// be written by the next flush.
    pub async fn flush(&self) {
        let _one_at_a_time = self.flushing.lock().await;
        let mut batch: Vec<(UserId, DateTime<Utc>)> = {
            let noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
            noted.iter().map(|(user, at)| (user.clone(), *at)).collect()
        };
        if batch.is_empty() {
            return;
        }
        // The same row order in every transaction: no two writers wait on each other's rows.
        batch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let rows: Vec<(&str, DateTime<Utc>)> = batch.iter().map(|(user, at)| (user.as_str(), *at)).collect();
        if let Err(e) = store::users::set_last_seen_many(&self.db, &rows).await {
            tracing::warn!(cause = %e, users = rows.len(), "could not store last-seen times; trying again");
            return;
        }
        let mut noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
        for (user, at) in &batch {
            if noted.get(user) == Some(at) {
                noted.remove(user);
            }
        }
    }

    pub fn spawn_flusher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        super::spawn_every(FLUSH_EVERY, move || {
            let me = me.clone();
            async move { me.flush().await }
        })
    }
}
