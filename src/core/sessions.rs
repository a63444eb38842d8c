//! Anonymous sessions (SPEC §7.3): reserved or opened by their creator, joined by whoever
//! knows the auth key, each member with a display name and a public key; messages are the
//! core's (durable, gapless, acknowledged after commit), addressed to one member or to all.
//! Nothing here knows a wire format: dialects (e2e) translate.
//!
//! A member is a core user namespaced by the session (`session:{name}:{member}`, see
//! `domain::session`), so that sending, typing and catch-up authorize them like any member,
//! and nobody outside the session can be them. A session with no activity for
//! `E2E_SESSION_IDLE_TIMEOUT` is deleted with its messages, members and keys by a sweeper that
//! runs on every instance (the deletes are idempotent).

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::Utc;
use sha2::{Digest, Sha256};

use super::{check_id, Core};
use crate::{
    domain::{
        session_chat_id, session_member_id, session_user_id, Actor, Audience, Event, Message, SessionInfo,
        SessionMember, SessionMode, SessionNotice, SessionNoticeKind, SessionSummary, UserId,
    },
    error::{AppError, AppResult, Field},
    store::{
        self,
        sessions::{Joined, Joining, NewSession},
    },
};

/// Longest display name, in characters.
const MAX_DISPLAY_NAME: usize = 100;
/// Largest public key or session key entry, in bytes (a PEM or JWK of a 4096-bit key fits).
const MAX_KEY_BYTES: usize = 16 * 1024;
/// Longest session name: its conversation id (`session:` + name) must pass [`check_id`].
const MAX_SESSION_NAME: usize = 120;
/// Most messages a member is sent as history on join (the newest).
pub const MAX_HISTORY: u64 = 1000;
/// Most sessions one `GET /sessions` lists.
const MAX_LISTED: u64 = 1000;
/// Most sessions one sweep deletes; the next sweep takes the rest.
const SWEEP_BATCH: u64 = 500;

/// Someone asks to join a session.
#[derive(Clone, Debug)]
pub struct JoinSession {
    pub name: String,
    pub auth_key: Option<String>,
    pub member_id: String,
    pub display_name: Option<String>,
    pub public_key: Option<String>,
    /// The joiner says they created the session: they may open it (when it does not exist)
    /// or activate it (when it was reserved).
    pub is_creator: bool,
    /// The mode of a session the join creates; ignored otherwise.
    pub mode: Option<SessionMode>,
}

/// Why a join was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinRefused {
    /// No such session, and the joiner is not its creator.
    NotFound,
    /// The session has a key and the joiner's is missing or wrong.
    InvalidKey,
    /// Reserved, and its creator has not joined yet.
    NotActive,
    /// Private, and two others are in it.
    Full,
}

/// A join that succeeded.
#[derive(Clone, Debug)]
pub struct SessionJoined {
    pub info: SessionInfo,
    pub member: SessionMember,
    /// The member's first join (not a rejoin after a reconnect).
    pub first: bool,
    /// The member's entry of the session key map, if one was set for them.
    pub session_key: Option<String>,
}

fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without an early exit, so that the time taken says nothing about the key.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_name(name: &str) -> AppResult<()> {
    check_id(Field::Chat, name)?;
    if name.len() > MAX_SESSION_NAME || name.contains(':') {
        return Err(AppError::validation(format!(
            "sessionId must be 1 to {MAX_SESSION_NAME} characters without a colon (a colon separates the auth key)"
        )));
    }
    Ok(())
}

fn check_key_text(what: &str, key: &str) -> AppResult<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(AppError::validation(format!("{what} is larger than {MAX_KEY_BYTES} bytes")));
    }
    Ok(())
}

fn info(s: entity::session::Model) -> SessionInfo {
    SessionInfo {
        chat_id: s.conversation_id.into(),
        name: s.name,
        mode: SessionMode::parse(&s.mode).unwrap_or(SessionMode::Group),
        active: s.active,
        keyed: s.auth_key_hash.is_some(),
        created_at: s.created_at,
        last_activity_at: s.last_activity_at,
    }
}

fn member(m: entity::session_member::Model) -> SessionMember {
    SessionMember {
        user_id: m.user_id.into(),
        member_id: m.member_id,
        display_name: m.display_name,
        public_key: m.public_key,
        joined_at: m.joined_at,
    }
}

impl Core {
    /// Reserves a session so that joiners can connect before its creator does; it is not
    /// active until the creator joins. `CONFLICT` when it exists.
    pub async fn reserve_session(&self, name: &str, auth_key: &str, mode: SessionMode) -> AppResult<SessionInfo> {
        check_name(name)?;
        if auth_key.is_empty() {
            return Err(AppError::validation("authKey is required"));
        }
        check_key_text("authKey", auth_key)?;
        let chat = session_chat_id(name);
        let created = store::sessions::create(
            &self.db,
            NewSession {
                chat_id: chat.clone().into(),
                name: name.to_string(),
                auth_key_hash: Some(hash_key(auth_key)),
                mode: mode.as_str().to_string(),
                active: false,
                created_by: String::new(),
            },
        )
        .await?;
        if !created {
            return Err(AppError::Conflict("session already exists".into()));
        }
        let stored = store::sessions::get(&self.db, &chat).await?;
        stored.map(info).ok_or_else(|| AppError::NotFound("session not found".into()))
    }

    /// Joins a session (opening it when the creator joins one that does not exist). The
    /// member is stored; announcing them is [`Core::session_member_arrived`], once their
    /// connection is registered, so that they hear the member list themselves.
    pub async fn join_session(&self, req: JoinSession) -> AppResult<Result<SessionJoined, JoinRefused>> {
        check_name(&req.name)?;
        check_id(Field::User, &req.member_id)?;
        if req.display_name.as_ref().is_some_and(|n| n.chars().count() > MAX_DISPLAY_NAME) {
            return Err(AppError::validation(format!("displayName is longer than {MAX_DISPLAY_NAME} characters")));
        }
        if let Some(key) = &req.public_key {
            check_key_text("publicKey", key)?;
        }
        if let Some(key) = &req.auth_key {
            check_key_text("authKey", key)?;
        }
        let chat = session_chat_id(&req.name);
        let user = session_user_id(&chat, &req.member_id);
        let session = match store::sessions::get(&self.db, &chat).await? {
            Some(s) => s,
            None if req.is_creator => {
                let opened = store::sessions::create(
                    &self.db,
                    NewSession {
                        chat_id: chat.clone().into(),
                        name: req.name.clone(),
                        auth_key_hash: req.auth_key.as_deref().filter(|k| !k.is_empty()).map(hash_key),
                        mode: req.mode.unwrap_or(SessionMode::Group).as_str().to_string(),
                        active: true,
                        created_by: user.clone().into(),
                    },
                )
                .await?;
                if !opened {
                    tracing::debug!(session = %req.name, "session opened concurrently");
                }
                match store::sessions::get(&self.db, &chat).await? {
                    Some(s) => s,
                    None => return Ok(Err(JoinRefused::NotFound)),
                }
            }
            None => return Ok(Err(JoinRefused::NotFound)),
        };
        if let Some(hash) = &session.auth_key_hash {
            let given = req.auth_key.as_deref().map(hash_key);
            if !given.is_some_and(|g| same(&g, hash)) {
                return Ok(Err(JoinRefused::InvalidKey));
            }
        }
        if !session.active {
            if !req.is_creator {
                return Ok(Err(JoinRefused::NotActive));
            }
            store::sessions::activate(&self.db, &chat).await?;
        }
        let mode = SessionMode::parse(&session.mode).unwrap_or(SessionMode::Group);
        let joined = store::sessions::join(
            &self.db,
            Joining {
                chat: &chat,
                user: &user,
                member_id: &req.member_id,
                display_name: req.display_name.as_deref(),
                public_key: req.public_key.as_deref(),
                capacity: mode.capacity(),
            },
        )
        .await?;
        let (row, first) = match joined {
            Joined::New(row) => (row, true),
            Joined::Again(row) => (row, false),
            Joined::Full => return Ok(Err(JoinRefused::Full)),
            Joined::Gone => return Ok(Err(JoinRefused::NotFound)),
        };
        let session_key = row.session_key.clone();
        let info = SessionInfo { active: true, ..info(session) };
        Ok(Ok(SessionJoined { info, member: member(row), first, session_key }))
    }

    /// The member's connection is registered: everyone (the member too) hears the member list,
    /// and on a first join the others hear of the newcomer.
    pub async fn session_member_arrived(&self, joined: &SessionJoined) -> AppResult<()> {
        let chat = &joined.info.chat_id;
        let members = self.session_members_unchecked(chat).await?;
        let everyone: Vec<UserId> = members.iter().map(|m| m.user_id.clone()).collect();
        self.publish_notice(chat, everyone.clone(), SessionNoticeKind::Members(members));
        if joined.first {
            let others = everyone.into_iter().filter(|u| *u != joined.member.user_id).collect();
            self.publish_notice(chat, others, SessionNoticeKind::Joined(joined.member.clone()));
        }
        Ok(())
    }

    /// Stores a message from the actor to one member (`to`, a member id) or to everyone, and
    /// hands it to them (SPEC §5: durable before the answer, gapless, a resend under the same
    /// `temp_id` and recipient is the same message).
    pub async fn send_session_message(
        &self,
        actor: &Actor,
        draft: super::messages::Draft,
        to: Option<&str>,
        max_len: usize,
        ticket: Option<super::SendTicket>,
    ) -> AppResult<Message> {
        let recipient = match to {
            Some(member) => {
                check_id(Field::Recipient, member)?;
                Some(session_user_id(&draft.chat_id, member))
            }
            None => None,
        };
        let chat = draft.chat_id.clone();
        let message = self.send_addressed(actor, draft, recipient, max_len, ticket).await?;
        self.session_active(&chat).await;
        Ok(message)
    }

    /// Whether the session exists.
    pub async fn session_exists(&self, chat: &str) -> AppResult<bool> {
        Ok(store::sessions::get(&self.db, chat).await?.is_some())
    }

    /// What the member may read of the session, oldest first, and the `seq` it reaches:
    /// everything after it comes live (or by catch-up), nothing twice.
    pub async fn session_history(&self, actor: &Actor, chat: &str) -> AppResult<(Vec<Message>, i64)> {
        self.require_member(chat, &actor.user_id).await?;
        let upto = store::conversations::get(&self.db, chat)
            .await?
            .map(|c| c.last_seq)
            .ok_or_else(|| AppError::NotFound("session not found".into()))?;
        let rows = store::sessions::history_for(&self.db, chat, &actor.user_id, MAX_HISTORY).await?;
        let messages = rows.into_iter().filter(|m| m.seq <= upto).map(Message::from).collect();
        Ok((messages, upto))
    }

    /// The members with their public keys, for a member.
    pub async fn session_members(&self, actor: &Actor, chat: &str) -> AppResult<Vec<SessionMember>> {
        self.require_member(chat, &actor.user_id).await?;
        self.session_members_unchecked(chat).await
    }

    async fn session_members_unchecked(&self, chat: &str) -> AppResult<Vec<SessionMember>> {
        Ok(store::sessions::members(&self.db, chat).await?.into_iter().map(member).collect())
    }

    /// Sets the actor's public key (and display name when given); everyone hears the list.
    pub async fn save_session_key(
        &self,
        actor: &Actor,
        chat: &str,
        public_key: Option<String>,
        display_name: Option<String>,
    ) -> AppResult<Vec<SessionMember>> {
        if let Some(key) = &public_key {
            check_key_text("publicKey", key)?;
        }
        if display_name.as_ref().is_some_and(|n| n.chars().count() > MAX_DISPLAY_NAME) {
            return Err(AppError::validation(format!("displayName is longer than {MAX_DISPLAY_NAME} characters")));
        }
        let stored = store::sessions::set_public_key(
            &self.db,
            chat,
            &actor.user_id,
            public_key.as_deref(),
            display_name.as_deref(),
        )
        .await?;
        if !stored {
            return Err(self.not_in_session(chat).await);
        }
        self.session_active(chat).await;
        let members = self.session_members_unchecked(chat).await?;
        let everyone = members.iter().map(|m| m.user_id.clone()).collect();
        self.publish_notice(chat, everyone, SessionNoticeKind::Members(members.clone()));
        Ok(members)
    }

    /// Stores the session key map (member id → the session key encrypted for them; group
    /// sessions only) and tells everyone it is there.
    pub async fn set_session_keys(&self, actor: &Actor, chat: &str, keys: HashMap<String, String>) -> AppResult<()> {
        let session = store::sessions::get(&self.db, chat).await?;
        let session = session.ok_or_else(|| AppError::NotFound("session not found".into()))?;
        self.require_member(chat, &actor.user_id).await?;
        if SessionMode::parse(&session.mode) != Some(SessionMode::Group) {
            return Err(AppError::validation("session keys are for group sessions; a private one has none"));
        }
        if keys.len() > 10_000 {
            return Err(AppError::validation("encryptedKeys names too many members"));
        }
        for key in keys.values() {
            check_key_text("encryptedKeys entry", key)?;
        }
        let by_user: HashMap<String, String> =
            keys.iter().map(|(member, key)| (session_user_id(chat, member).into_string(), key.clone())).collect();
        store::sessions::set_session_keys(&self.db, chat, &by_user).await?;
        self.session_active(chat).await;
        let everyone = self.members_of(chat, &actor.user_id).await?;
        self.publish_notice(chat, everyone, SessionNoticeKind::SessionKeys(keys.into_iter().collect()));
        Ok(())
    }

    /// Tells a file's sender that the actor downloaded it.
    pub async fn session_file_downloaded(
        &self,
        actor: &Actor,
        chat: &str,
        sender: &str,
        file_name: String,
    ) -> AppResult<()> {
        if file_name.chars().count() > 1000 {
            return Err(AppError::validation("fileName is longer than 1000 characters"));
        }
        check_id(Field::User, sender)?;
        let members = self.members_of(chat, &actor.user_id).await?;
        let sender = session_user_id(chat, sender);
        if !members.contains(&sender) {
            return Err(AppError::invalid(Field::Recipient, "is not a member of this session"));
        }
        self.session_active(chat).await;
        let by = session_member_id(chat, &actor.user_id).to_string();
        self.publish_notice(chat, vec![sender], SessionNoticeKind::FileDownloaded { by, file_name });
        Ok(())
    }

    /// The actor leaves the session for good: the others hear it and get the new member list.
    pub async fn leave_session(&self, actor: &Actor, chat: &str) -> AppResult<()> {
        let Some(left) = store::sessions::leave(&self.db, chat, &actor.user_id).await? else {
            return Err(self.not_in_session(chat).await);
        };
        self.hub.remove_user_from_chat(&actor.user_id, chat);
        self.session_active(chat).await;
        let members = self.session_members_unchecked(chat).await?;
        let others: Vec<UserId> = members.iter().map(|m| m.user_id.clone()).collect();
        self.publish_notice(chat, others.clone(), SessionNoticeKind::Left(member(left)));
        self.publish_notice(chat, others, SessionNoticeKind::Members(members));
        Ok(())
    }

    /// A member's connection went (they stay a member and may rejoin): the others hear it.
    pub async fn session_member_gone(&self, actor: &Actor, chat: &str) -> AppResult<()> {
        let Some(row) = store::sessions::member(&self.db, chat, &actor.user_id).await? else {
            return Ok(()); // they left, or the session is gone
        };
        let members = self.session_members_unchecked(chat).await?;
        let others = members.iter().map(|m| m.user_id.clone()).filter(|u| *u != actor.user_id).collect();
        self.publish_notice(chat, others, SessionNoticeKind::Left(member(row)));
        Ok(())
    }

    /// Something happened in the session (a message, a notice): it is not idle. Best effort:
    /// a failed write only makes the session look idle earlier.
    pub async fn session_active(&self, chat: &str) {
        if let Err(e) = store::sessions::touch(&self.db, chat).await {
            tracing::warn!(cause = %e, "could not record session activity");
        }
    }

    /// How many sessions exist, reserved ones included (for `/health`).
    pub async fn session_count(&self) -> AppResult<u64> {
        Ok(store::sessions::count(&self.db).await?)
    }

    /// Every session with its members and message count (the admin list; no content).
    pub async fn list_sessions(&self) -> AppResult<Vec<SessionSummary>> {
        let rows = store::sessions::list(&self.db, MAX_LISTED).await?;
        Ok(rows
            .into_iter()
            .map(|(s, members, messages)| SessionSummary {
                info: info(s),
                members: members.into_iter().map(member).collect(),
                messages,
            })
            .collect())
    }

    /// Deletes the sessions idle for longer than `idle`, with everything they hold. Returns
    /// how many it deleted.
    pub async fn sweep_idle_sessions(&self, idle: Duration) -> AppResult<usize> {
        let idle = chrono::Duration::from_std(idle).map_err(|e| AppError::Internal(e.into()))?;
        let stale = store::sessions::idle_since(&self.db, Utc::now() - idle, SWEEP_BATCH).await?;
        for chat in &stale {
            let users = store::sessions::delete(&self.db, chat).await?;
            for user in &users {
                self.hub.remove_user_from_chat(user, chat);
            }
            tracing::info!(session = %chat, members = users.len(), "idle session deleted");
        }
        Ok(stale.len())
    }

    /// `NOT_FOUND` for a session that is gone, else `FORBIDDEN`.
    async fn not_in_session(&self, chat: &str) -> AppError {
        match store::sessions::get(&self.db, chat).await {
            Ok(Some(_)) => AppError::not_member(),
            Ok(None) => AppError::NotFound("session not found".into()),
            Err(e) => e.into(),
        }
    }

    fn publish_notice(&self, chat: &str, audience: Vec<UserId>, kind: SessionNoticeKind) {
        if audience.is_empty() {
            return;
        }
        let notice = SessionNotice { chat_id: chat.to_string().into(), at: Utc::now(), kind };
        self.hub.publish(&Audience::Users(audience), Event::Session(notice), None);
    }
}

/// Runs the idle sweep on this instance every so often (a tenth of the timeout, between a
/// second and a minute); every instance runs one, and deleting a deleted session does nothing.
pub fn spawn_sweeper(core: &Arc<Core>) -> tokio::task::JoinHandle<()> {
    let idle = core.config.session_idle_timeout;
    let period = (idle / 10).clamp(Duration::from_millis(200), Duration::from_secs(60));
    let core = Arc::downgrade(core);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(core) = core.upgrade() else { return };
            if let Err(e) = core.sweep_idle_sessions(idle).await {
                e.log_if_internal("session sweep");
            }
        }
    })
}
