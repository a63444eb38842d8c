//! Presence: online while a user has a connection on any instance, with a chosen status
//! (online, away, busy, or offline to appear invisible) and custom status; last seen is kept
//! durably on disconnect. Watchers (`presence:subscribe`) hear every change, on every instance.

use crate::domain::DeviceId;
use chrono::Utc;

use super::{
    limits::Limit,
    model::{Actor, Audience, ConnId, Event, Presence, PresenceStatus, UserId},
    Core,
};
use crate::{
    error::{AppError, AppResult},
    fanout::Departure,
    store::{self, shared::PresenceRecord},
};

/// Largest `customStatus`, in characters.
const MAX_CUSTOM_STATUS: usize = 140;
/// Most users one subscribe call may name.
pub const MAX_WATCH: usize = 1000;

/// The identity claims a connection brings.
#[derive(Clone, Debug)]
pub struct Identity {
    pub user_id: UserId,
    /// The device the token names (`deviceId`), if any; a connection without one is its
    /// user's default device.
    pub device_id: Option<DeviceId>,
    pub username: Option<String>,
    pub name: Option<String>,
    pub avatar: Option<String>,
}

impl Identity {
    /// This identity acting through connection `conn` (`None`: a REST request).
    pub fn actor(&self, conn: Option<ConnId>) -> Actor {
        Actor {
            user_id: self.user_id.clone(),
            device: self.device().into(),
            username: self.username.clone().or_else(|| self.name.clone()),
            avatar: self.avatar.clone(),
            conn,
        }
    }

    /// The device connections of this identity are delivered to: the named one, else the
    /// user's default device (`''`).
    pub fn device(&self) -> &str {
        self.device_id.as_deref().unwrap_or(store::devices::DEFAULT_DEVICE)
    }

    /// A device id a client named at connect (Socket.IO `auth.deviceId`): a string of 1 to 128
    /// characters without control characters.
    pub fn device_from_handshake(value: &serde_json::Value) -> AppResult<String> {
        match value.as_str() {
            Some(id) if !id.is_empty() && id.chars().count() <= 128 && !id.chars().any(char::is_control) => {
                Ok(id.to_string())
            }
            _ => Err(AppError::validation("auth.deviceId must be 1 to 128 characters without control characters")),
        }
    }
}

fn record(p: &Presence) -> PresenceRecord {
    PresenceRecord {
        status: p.status.as_str().to_string(),
        custom_status: p.custom_status.clone(),
        last_seen: p.last_seen,
    }
}

impl Core {
    /// Records the user from their token and marks them online (announced when they were
    /// offline everywhere).
    pub async fn user_connected(&self, who: &Identity) -> AppResult<()> {
        store::users::upsert(
            &self.db,
            &who.user_id,
            who.username.as_deref(),
            who.name.as_deref(),
            who.avatar.as_deref(),
        )
        .await?;
        self.device_seen(&who.user_id, who.device()).await?;
        let came_online = self.shared.user_here(&who.user_id).await.map_err(AppError::Internal)?;
        if came_online {
            // A status chosen earlier (away, busy, invisible) survives reconnects.
            let kept = self.shared.presence(std::slice::from_ref(&who.user_id)).await.map_err(AppError::Internal)?;
            let previous = kept.into_iter().next().flatten();
            let status =
                previous.as_ref().and_then(|r| PresenceStatus::parse(&r.status)).unwrap_or(PresenceStatus::Online);
            let p = Presence {
                user_id: who.user_id.clone(),
                status,
                custom_status: previous.and_then(|r| r.custom_status),
                last_seen: Some(Utc::now()),
            };
            self.shared.set_presence(&who.user_id, &record(&p)).await.map_err(AppError::Internal)?;
            self.announce(p);
        }
        Ok(())
    }

    /// Called when a connection closed: leaves its rooms and, when it was the user's last
    /// connection anywhere, announces them offline and stores last seen.
    pub async fn connection_closed(&self, departure: Departure) {
        for chat in &departure.rooms_left {
            if let Err(e) = self.shared.leave_room(chat, &departure.user).await {
                tracing::warn!(cause = %e, "could not leave shared room");
            }
        }
        if !departure.last_here {
            return;
        }
        let offline = match self.shared.user_gone(&departure.user).await {
            Ok(offline) => offline,
            Err(e) => {
                tracing::warn!(cause = %e, "could not update shared presence");
                return;
            }
        };
        if !offline {
            return;
        }
        self.call_participant_offline(&departure.user).await;
        let now = Utc::now();
        let p = Presence {
            user_id: departure.user.clone(),
            status: PresenceStatus::Offline,
            custom_status: None,
            last_seen: Some(now),
        };
        self.announce(p);
        if let Err(e) = store::users::set_last_seen(&self.db, &departure.user, now).await {
            tracing::warn!(cause = %e, "could not store last seen");
        }
    }

    pub async fn update_presence(
        &self,
        actor: &Actor,
        status: &str,
        custom_status: Option<String>,
    ) -> AppResult<Presence> {
        self.update_presence_with(actor, status, custom_status, MAX_CUSTOM_STATUS).await
    }

    /// [`Core::update_presence`] with a dialect's own longest custom status (Socialink: 255).
    pub async fn update_presence_with(
        &self,
        actor: &Actor,
        status: &str,
        custom_status: Option<String>,
        max_custom_status: usize,
    ) -> AppResult<Presence> {
        self.limits.check(Limit::PresenceUpdate, &actor.user_id)?;
        let status = PresenceStatus::parse(status)
            .ok_or_else(|| AppError::validation("status must be one of online, away, busy, offline"))?;
        if custom_status.as_ref().is_some_and(|c| c.chars().count() > max_custom_status) {
            return Err(AppError::validation(format!("custom status is longer than {max_custom_status} characters")));
        }
        let p = Presence { user_id: actor.user_id.clone(), status, custom_status, last_seen: Some(Utc::now()) };
        self.shared.set_presence(&actor.user_id, &record(&p)).await.map_err(AppError::Internal)?;
        self.announce(p.clone());
        Ok(p)
    }

    /// Current presence of each user. Users with no live connection anywhere are offline,
    /// with their last seen from the store when no instance knows better.
    pub async fn presence_of(&self, users: &[UserId]) -> AppResult<Vec<Presence>> {
        let online = self.shared.online(users).await.map_err(AppError::Internal)?;
        let records = self.shared.presence(users).await.map_err(AppError::Internal)?;
        let rows = store::users::get_many(&self.db, users).await?;
        let out = users
            .iter()
            .zip(online)
            .zip(records)
            .map(|((user, online), rec)| {
                let stored_last_seen = rows.iter().find(|r| &r.id == user).and_then(|r| r.last_seen_at);
                let last_seen = rec.as_ref().and_then(|r| r.last_seen).max(stored_last_seen);
                if online {
                    let rec = rec.unwrap_or_default();
                    Presence {
                        user_id: user.clone(),
                        status: PresenceStatus::parse(&rec.status).unwrap_or(PresenceStatus::Online),
                        custom_status: rec.custom_status,
                        last_seen,
                    }
                } else {
                    Presence { user_id: user.clone(), status: PresenceStatus::Offline, custom_status: None, last_seen }
                }
            })
            .collect();
        Ok(out)
    }

    /// The user's chosen status and custom status as last set (`None`: never set).
    pub async fn chosen_presence(&self, user: &str) -> AppResult<Option<(PresenceStatus, Option<String>)>> {
        let kept = self.shared.presence(&[user.to_string().into()]).await.map_err(AppError::Internal)?;
        Ok(kept
            .into_iter()
            .next()
            .flatten()
            .map(|r| (PresenceStatus::parse(&r.status).unwrap_or(PresenceStatus::Online), r.custom_status)))
    }

    /// Online without a connection (Socialink's REST `online`): the user counts as online, with
    /// `status`, for `PRESENCE_TIMEOUT_SECONDS` unless renewed, or for as long as they have a
    /// connection. When it lapses without a connection left, they are announced offline.
    pub async fn online_for_a_while(&self, actor: &Actor, status: PresenceStatus) -> AppResult<Presence> {
        self.limits.check(Limit::PresenceUpdate, &actor.user_id)?;
        store::users::ensure(&self.db, std::slice::from_ref(&actor.user_id)).await?;
        let now = Utc::now();
        let timeout = self.config.presence_timeout;
        let until = now + chrono::Duration::from_std(timeout).unwrap_or_default();
        self.shared.online_until(&actor.user_id, until).await.map_err(AppError::Internal)?;
        let custom_status = self.chosen_presence(&actor.user_id).await?.and_then(|(_, custom)| custom);
        let p = Presence { user_id: actor.user_id.clone(), status, custom_status, last_seen: Some(now) };
        self.shared.set_presence(&actor.user_id, &record(&p)).await.map_err(AppError::Internal)?;
        self.announce(p.clone());
        let user = actor.user_id.clone();
        // A little after the end, so that the entry has surely lapsed when it is checked.
        self.later(timeout + std::time::Duration::from_millis(50), move |core| async move {
            core.online_lapsed(&user).await
        });
        Ok(p)
    }

    /// Offline now (Socialink's REST `offline`): ends "online for a while"; a user who still
    /// has connections appears offline from then on (as SUP's `offline` status), until they
    /// choose another status.
    pub async fn go_offline(&self, actor: &Actor) -> AppResult<Presence> {
        self.limits.check(Limit::PresenceUpdate, &actor.user_id)?;
        let now = Utc::now();
        let offline_everywhere = self.shared.clear_online_until(&actor.user_id).await.map_err(AppError::Internal)?;
        let custom_status = self.chosen_presence(&actor.user_id).await?.and_then(|(_, custom)| custom);
        let p = Presence {
            user_id: actor.user_id.clone(),
            status: PresenceStatus::Offline,
            custom_status: if offline_everywhere { None } else { custom_status },
            last_seen: Some(now),
        };
        if !offline_everywhere {
            self.shared.set_presence(&actor.user_id, &record(&p)).await.map_err(AppError::Internal)?;
        }
        store::users::set_last_seen(&self.db, &actor.user_id, now).await?;
        self.announce(p.clone());
        Ok(p)
    }

    /// How many users are online, in any dialect.
    pub async fn online_count(&self) -> AppResult<usize> {
        Ok(self.shared.online_users().await.map_err(AppError::Internal)?.len())
    }

    /// An "online for a while" may have lapsed: announce the user offline if nothing keeps
    /// them online any more (a renewal, a connection).
    async fn online_lapsed(&self, user: &str) {
        match self.shared.online(&[user.to_string().into()]).await {
            Ok(online) if online.first().copied().unwrap_or(false) => {}
            Ok(_) => {
                let now = Utc::now();
                let p = Presence {
                    user_id: user.to_string().into(),
                    status: PresenceStatus::Offline,
                    custom_status: None,
                    last_seen: Some(now),
                };
                self.announce(p);
                if let Err(e) = store::users::set_last_seen(&self.db, user, now).await {
                    tracing::warn!(cause = %e, "could not store last seen");
                }
            }
            Err(e) => tracing::warn!(cause = %e, "could not check presence"),
        }
    }

    fn announce(&self, p: Presence) {
        self.hub.publish(&Audience::PresenceWatchers(p.user_id.clone()), Event::Presence(p), None);
    }
}
