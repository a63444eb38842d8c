//! Presence: online while a user has a connection, with a chosen status (online, away, busy,
//! offline for "invisible") and custom status; last seen is kept durably on disconnect.
//! Watchers (`presence:subscribe`) hear every change.

use chrono::Utc;
use dashmap::DashMap;

use super::{
    limits::Limit,
    model::{Actor, Audience, Event, Presence, PresenceStatus, UserId},
    Core,
};
use crate::{
    error::{AppError, AppResult},
    store,
};

/// Largest `customStatus`, in characters.
const MAX_CUSTOM_STATUS: usize = 140;
/// Most users one subscribe call may name.
pub const MAX_WATCH: usize = 1000;

#[derive(Default)]
pub struct PresenceBook {
    entries: DashMap<UserId, Presence>,
}

/// The identity claims a connection brings.
#[derive(Clone, Debug)]
pub struct Identity {
    pub user_id: UserId,
    pub username: Option<String>,
    pub name: Option<String>,
    pub avatar: Option<String>,
}

impl Core {
    /// Records the user from their token and marks them online.
    pub async fn user_connected(&self, who: &Identity) -> AppResult<()> {
        store::users::upsert(
            &self.db,
            &who.user_id,
            who.username.as_deref(),
            who.name.as_deref(),
            who.avatar.as_deref(),
        )
        .await?;
        let changed = {
            let mut entry = self
                .presence
                .entries
                .entry(who.user_id.clone())
                .or_insert_with(|| Presence {
                    user_id: who.user_id.clone(),
                    status: PresenceStatus::Offline,
                    custom_status: None,
                    last_seen: None,
                });
            let was_offline = entry.status == PresenceStatus::Offline;
            if was_offline {
                entry.status = PresenceStatus::Online;
            }
            entry.last_seen = Some(Utc::now());
            was_offline.then(|| entry.clone())
        };
        if let Some(p) = changed {
            self.announce(p);
        }
        Ok(())
    }

    /// Called when one of the user's connections closed; `was_last` when none is left here.
    pub async fn user_disconnected(&self, user: &str, was_last: bool) {
        if !was_last {
            return;
        }
        self.call_participant_offline(user);
        let now = Utc::now();
        let p = Presence {
            user_id: user.to_string(),
            status: PresenceStatus::Offline,
            custom_status: None,
            last_seen: Some(now),
        };
        self.presence.entries.insert(user.to_string(), p.clone());
        self.announce(p);
        if let Err(e) = store::users::set_last_seen(&self.db, user, now).await {
            tracing::warn!(cause = %e, "could not store last seen");
        }
    }

    pub fn update_presence(
        &self,
        actor: &Actor,
        status: &str,
        custom_status: Option<String>,
    ) -> AppResult<Presence> {
        self.limits.check(Limit::PresenceUpdate, &actor.user_id)?;
        let status = PresenceStatus::parse(status).ok_or_else(|| {
            AppError::validation("status must be one of online, away, busy, offline")
        })?;
        if custom_status
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_CUSTOM_STATUS)
        {
            return Err(AppError::validation(format!(
                "customStatus is longer than {MAX_CUSTOM_STATUS} characters"
            )));
        }
        let p = Presence {
            user_id: actor.user_id.clone(),
            status,
            custom_status,
            last_seen: Some(Utc::now()),
        };
        self.presence
            .entries
            .insert(actor.user_id.clone(), p.clone());
        self.announce(p.clone());
        Ok(p)
    }

    /// Current presence of each user; users never seen here are offline with their stored
    /// last seen.
    pub async fn presence_of(&self, users: &[UserId]) -> AppResult<Vec<Presence>> {
        let mut out = Vec::with_capacity(users.len());
        let mut unknown = Vec::new();
        for user in users {
            match self.presence.entries.get(user) {
                Some(p) => out.push(p.clone()),
                None => unknown.push(user.clone()),
            }
        }
        if !unknown.is_empty() {
            let rows = store::users::get_many(&self.db, &unknown).await?;
            for user in unknown {
                let last_seen = rows
                    .iter()
                    .find(|r| r.id == user)
                    .and_then(|r| r.last_seen_at);
                out.push(Presence {
                    user_id: user,
                    status: PresenceStatus::Offline,
                    custom_status: None,
                    last_seen,
                });
            }
        }
        Ok(out)
    }

    fn announce(&self, p: Presence) {
        self.hub.publish(
            &Audience::PresenceWatchers(p.user_id.clone()),
            Event::Presence(p),
            None,
        );
    }
}
