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
    error::{AppError, AppResult, Field},
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
    /// When the token this identity came from stops being valid (its `exp`, plus the leeway
    /// the verifier allows); `None` for identities that do not expire (anonymous sessions).
    /// A connection is closed when it passes, and refuses what its client sends afterwards.
    pub expires_at: Option<chrono::DateTime<Utc>>,
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

    /// Whether the token behind this identity has expired.
    pub fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= Utc::now())
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
        // A reconnect with the claims recorded last time reads and writes nothing.
        if !self.claims.known(who) {
            let recording = self.claims.recording(&who.user_id);
            store::users::upsert(
                &self.db,
                &who.user_id,
                who.username.as_deref(),
                who.name.as_deref(),
                who.avatar.as_deref(),
            )
            .await?;
            recording.recorded(who);
        }
        self.device_seen(&who.user_id, who.device()).await?;
        if crate::domain::is_session_user(&who.user_id) {
            return Ok(()); // anonymous session members have no presence
        }
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
        if !departure.last_here || crate::domain::is_session_user(&departure.user) {
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
        self.last_seen.note(&departure.user, now);
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
                let stored_last_seen = stored_last_seen.max(self.last_seen.noted(user));
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
        self.last_seen.note(&actor.user_id, now);
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
                self.last_seen.note(&user.into(), now);
            }
            Err(e) => tracing::warn!(cause = %e, "could not check presence"),
        }
    }

    fn announce(&self, p: Presence) {
        self.hub.publish(&Audience::PresenceWatchers(p.user_id.clone()), Event::Presence(p), None);
    }
}

/// What [`Core::watch_presence`] did.
pub struct Watched {
    /// The current presence of the users now followed.
    pub presence: Vec<Presence>,
    /// The users named whose presence the caller may not see (see [`Core::visible_to`]).
    pub hidden: Vec<UserId>,
}

/// Presence visibility, the one rule every dialect and transport goes through: a user's
/// presence (status, custom status, last seen) is visible to themselves and to the users who
/// share a conversation with them, of any kind. There is no separate allow-list: opening a
/// direct conversation with someone is how two users let each other see their presence.
impl Core {
    /// Which of `users` the caller may see the presence of, in the order named, each once.
    pub async fn visible_to(&self, actor: &Actor, users: &[UserId]) -> AppResult<Vec<UserId>> {
        let others: Vec<UserId> = users.iter().filter(|u| **u != actor.user_id).cloned().collect();
        let shared = store::history::shared_with(&self.db, &actor.user_id, &others).await?;
        let mut seen = std::collections::HashSet::new();
        Ok(users
            .iter()
            .filter(|u| **u == actor.user_id || shared.contains(u))
            .filter(|u| seen.insert((*u).clone()))
            .cloned()
            .collect())
    }

    /// Follows the presence of `users` on connection `conn` (SUP's `presence:subscribe`):
    /// at most [`MAX_WATCH`] ids a call, each id drawn from the user's `subscriptions` bucket,
    /// only users the caller may see (the others are returned as `hidden`), and at most
    /// `MAX_SUBSCRIPTIONS_PER_CONNECTION` followed by one connection in all.
    pub async fn watch_presence(&self, actor: &Actor, conn: ConnId, users: &[UserId]) -> AppResult<Watched> {
        check_ids(users)?;
        self.limits.check_n(Limit::Subscriptions, &actor.user_id, users.len())?;
        let visible = self.visible_to(actor, users).await?;
        let cap = self.config.max_subscriptions_per_connection;
        self.hub.watch_bounded(conn, &visible, cap).map_err(|following| {
            AppError::validation(format!(
                "this connection follows the presence of {following} users; at most {cap} \
                 (MAX_SUBSCRIPTIONS_PER_CONNECTION): unsubscribe from some first"
            ))
        })?;
        let hidden = users.iter().filter(|u| !visible.contains(u)).cloned().collect();
        Ok(Watched { presence: self.presence_of(&visible).await?, hidden })
    }

    /// The presence of `users` as `actor` may see it (REST reads): someone the caller may not
    /// see reads as an unknown user does, offline with no custom status or last seen, so a
    /// lookup tells nothing about them.
    pub async fn presence_seen_by(&self, actor: &Actor, users: &[UserId]) -> AppResult<Vec<Presence>> {
        check_ids(users)?;
        let visible = self.visible_to(actor, users).await?;
        let known = self.presence_of(&visible).await?;
        Ok(users
            .iter()
            .map(|u| {
                known.iter().find(|p| p.user_id == *u).cloned().unwrap_or_else(|| Presence {
                    user_id: u.clone(),
                    status: PresenceStatus::Offline,
                    custom_status: None,
                    last_seen: None,
                })
            })
            .collect())
    }

    /// Stops following the presence of `users` on connection `conn`.
    pub fn unwatch_presence(&self, conn: ConnId, users: &[UserId]) -> AppResult<()> {
        check_ids(users)?;
        self.hub.unwatch(conn, users);
        Ok(())
    }

    /// The users a connection of `user` follows from its start, by the visibility rule: the
    /// people who share a conversation with them (up to `MAX_SUBSCRIPTIONS_PER_CONNECTION`),
    /// and the user themselves when `with_self` (a dialect that announces a user's own
    /// arrival to them).
    pub async fn presence_circle(&self, user: &str, with_self: bool) -> AppResult<Vec<UserId>> {
        let cap = self.config.max_subscriptions_per_connection;
        // Not queued with the catch-ups (`Ledger::catchup_read_turn`): a connect waits for this
        // read, and behind a wave's catch-ups on PostgreSQL connects waited past 30 s.
        let mut circle = store::history::contacts(&self.db, user, cap as u64).await?;
        if with_self {
            circle.push(user.to_string());
        }
        Ok(circle.into_iter().map(Into::into).collect())
    }

    /// Connection `conn` of `actor` starts following the presence of `peer` when the rule
    /// lets it (they now share a conversation: a first direct message), within the cap.
    pub async fn follow_peer(&self, actor: &Actor, conn: ConnId, peer: &str) -> AppResult<()> {
        if self.hub.watching(conn).contains(peer) {
            return Ok(());
        }
        if store::history::share_a_conversation(&self.db, &actor.user_id, peer).await? {
            let cap = self.config.max_subscriptions_per_connection;
            // A connection at its cap simply does not follow one more.
            let _ = self.hub.watch_bounded(conn, &[peer.to_string().into()], cap);
        }
        Ok(())
    }

    /// The users online on any instance whose presence connection `conn` of `user` may see
    /// and follows (and the user), sorted: who is online, by the visibility rule.
    pub async fn visible_online(&self, conn: ConnId, user: &str) -> AppResult<Vec<UserId>> {
        let mut followed = self.hub.watching(conn);
        followed.insert(user.to_string().into());
        let online = self.online_users().await?;
        Ok(filter_followed(online, &followed))
    }
}

/// `online` (sorted) restricted to `followed`.
pub fn filter_followed(online: Vec<UserId>, followed: &std::collections::HashSet<UserId>) -> Vec<UserId> {
    online.into_iter().filter(|u| followed.contains(u)).collect()
}

fn check_ids(users: &[UserId]) -> AppResult<()> {
    if users.len() > MAX_WATCH {
        return Err(AppError::invalid(Field::Users, format!("takes at most {MAX_WATCH} ids")));
    }
    for id in users {
        super::check_id(Field::Users, id)?;
    }
    Ok(())
}
