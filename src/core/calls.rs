//! Call signaling and history. The server does not carry media: it rings the callees, relays
//! the WebRTC offer, answer and ICE candidates between the two parties, and keeps the call's
//! state machine (`ringing` → `active` → `ended`, or `rejected` / `missed`) in the database,
//! where it doubles as the call history.
//!
//! Every transition runs under the call's row lock (see `store::calls::modify`), so two
//! devices answering at once, or an answer racing the ring timeout, have exactly one winner;
//! the loser gets `CONFLICT`. A call rings every other member of the chat; the first callee
//! to answer is connected and the call stops ringing everywhere else.

use std::{collections::HashSet, future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    check_id,
    conversations::ConversationRequest,
    limits::Limit,
    model::{
        Actor, Audience, Call, CallChange, CallEndReason, CallKind, CallOrigin, CallSignal, CallStatus,
        ConversationKind, Event, IceCandidate, NotificationData, Profile, UserId,
    },
    Core, DEFAULT_PAGE, MAX_PAGE,
};
use crate::{
    error::{AppError, AppResult, Field},
    store::{
        self,
        calls::{CallRecord, IceAdded},
    },
};

/// Largest offer, answer or candidate, serialized. A video offer listing many codecs runs to
/// a few tens of kilobytes; anything far beyond that is not SDP.
const MAX_SIGNAL_BYTES: usize = 64 * 1024;
/// Longest `reason` a callee may give for declining.
const MAX_REASON_CHARS: usize = 200;
/// Most ICE candidates stored per call. A call gathers a few dozen; the cap bounds what one
/// call may store (at most this many times `MAX_SIGNAL_BYTES`).
pub const MAX_ICE_PER_CALL: u64 = 500;

const CALLER: &str = "caller";
const CALLEE: &str = "callee";
const RINGING: &str = "ringing";
const JOINED: &str = "joined";
const DECLINED: &str = "declined";
const LEFT: &str = "left";

/// A call as a client asks to start it: in a chat, or with one user (their direct chat).
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub chat_id: Option<String>,
    pub callee_id: Option<String>,
    pub kind: String,
    pub offer: Option<Value>,
    /// An id the client chose for the call. Used when it is well-formed and no call has it
    /// yet; otherwise the server picks one (the returned call says which).
    pub call_id: Option<String>,
}

/// What `call:end` did, which decides who hears what.
enum Ending {
    /// The caller gave up while it rang; these callees missed it.
    Cancelled(Vec<UserId>),
    /// A ringing callee hung up: the same as declining.
    Declined(CallStatus),
    HungUp,
}

impl Core {
    /// Starts a call and rings the callees' devices. Refused with `CONFLICT` "busy" when every
    /// callee is already ringing or talking, and when the caller is.
    pub async fn initiate_call(&self, actor: &Actor, req: CallRequest) -> AppResult<Call> {
        self.limits.check(Limit::CallInitiate, &actor.user_id)?;
        let kind = CallKind::parse(&req.kind).ok_or_else(|| AppError::validation("callType must be audio or video"))?;
        check_signal("offer", req.offer.as_ref())?;
        let chat_id = match (req.chat_id, req.callee_id) {
            (Some(chat), None) => {
                check_id(Field::Chat, &chat)?;
                self.require_member(&chat, &actor.user_id).await?;
                chat
            }
            (None, Some(callee)) => {
                check_id(Field::Callee, &callee)?;
                if callee == actor.user_id {
                    return Err(AppError::validation("you cannot call yourself"));
                }
                // The direct chat of the pair, created on first contact as REST would: anyone
                // may open a direct chat with anyone, so this grants nothing new.
                let (conversation, _) = self
                    .create_conversation(
                        actor,
                        ConversationRequest {
                            kind: ConversationKind::Direct,
                            participant_ids: vec![callee],
                            name: None,
                            description: None,
                            avatar: None,
                            encrypted: false,
                        },
                    )
                    .await?;
                conversation.id.into()
            }
            _ => return Err(AppError::validation("give either chatId or calleeId")),
        };
        let members = store::conversations::members(&self.db, &chat_id).await?;
        let callees: Vec<UserId> =
            members.into_iter().map(|m| UserId::from(m.user_id)).filter(|u| *u != actor.user_id).collect();
        if callees.is_empty() {
            return Err(AppError::validation("there is nobody else in this conversation to call"));
        }
        let mut everyone = callees.clone();
        everyone.push(actor.user_id.clone());
        let id = match req.call_id.filter(|id| check_id(Field::Call, id).is_ok()) {
            Some(proposed) if store::calls::get(&self.db, &proposed).await?.is_none() => proposed,
            _ => uuid::Uuid::now_v7().to_string(),
        };
        let new = entity::call::Model {
            id,
            conversation_id: chat_id,
            caller_id: actor.user_id.clone().into(),
            call_type: kind.as_str().to_string(),
            status: CallStatus::Ringing.as_str().to_string(),
            answered_by: None,
            ended_by: None,
            end_reason: None,
            started_at: Utc::now(),
            answered_at: None,
            ended_at: None,
            duration_ms: None,
            offer: req.offer.as_ref().map(Value::to_string),
            answer: None,
        };
        let caller = actor.user_id.clone();
        let record = store::calls::create(&self.db, new, &everyone, |busy: &HashSet<String>, chat_busy| {
            if chat_busy {
                return Err(AppError::Conflict("this conversation already has a call going on".into()));
            }
            if busy.contains(caller.as_str()) {
                return Err(AppError::Conflict("you are already in a call".into()));
            }
            let free: Vec<UserId> = callees.iter().filter(|u| !busy.contains(u.as_str())).cloned().collect();
            if free.is_empty() {
                return Err(AppError::Conflict("busy".into()));
            }
            Ok(free)
        })
        .await?;
        let call = to_call(&record)?;
        self.signal(
            call.callee_ids.clone(),
            CallSignal::Incoming { call: call.clone(), caller: actor.profile(), offer: req.offer },
            actor,
        );
        self.announce_call(CallChange::Initiated, &call).await;
        let id = call.id.clone();
        self.later(self.config.call_ring_timeout, move |core| async move { core.ring_timed_out(&id).await });
        Ok(call)
    }

    /// A callee picks up. The caller gets the answer; every other ringing device (the
    /// callee's other devices, the other members of a group) stops ringing.
    pub async fn answer_call(&self, actor: &Actor, call_id: &str, answer: Option<Value>) -> AppResult<Call> {
        check_id(Field::Call, call_id)?;
        check_signal("answer", answer.as_ref())?;
        let me = actor.user_id.clone();
        let now = Utc::now();
        let (record, ()) = store::calls::modify(&self.db, call_id, |rec| {
            let status = status_of(rec)?;
            ringing_callee(rec, &me, status)?;
            rec.call.status = CallStatus::Active.as_str().into();
            rec.call.answered_by = Some(me.clone().into());
            rec.call.answered_at = Some(now);
            rec.call.answer = answer.as_ref().map(Value::to_string);
            for p in &mut rec.participants {
                if p.user_id == me {
                    p.state = JOINED.into();
                } else if p.state == RINGING {
                    p.state = LEFT.into();
                }
            }
            Ok::<_, AppError>(())
        })
        .await?
        .ok_or_else(call_not_found)?;
        let call = to_call(&record)?;
        let origin = self.origin(&call).await;
        self.signal(
            vec![call.caller_id.clone()],
            CallSignal::Answered {
                call_id: call.id.clone(),
                chat_id: call.chat_id.clone(),
                origin: origin.clone(),
                user_id: me.clone(),
                answer,
            },
            actor,
        );
        self.signal(
            call.callee_ids.clone(),
            CallSignal::Ended {
                call_id: call.id.clone(),
                chat_id: call.chat_id.clone(),
                origin,
                reason: CallEndReason::AnsweredElsewhere,
                ended_by: None,
                answered_by: Some(me),
                duration_ms: None,
            },
            actor,
        );
        self.announce_call(CallChange::Answered, &call).await;
        Ok(call)
    }

    /// A callee declines. The call is `rejected` once every callee has declined.
    pub async fn reject_call(&self, actor: &Actor, call_id: &str, reason: Option<String>) -> AppResult<Call> {
        check_id(Field::Call, call_id)?;
        if reason.as_ref().is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
            return Err(AppError::validation(format!("reason is longer than {MAX_REASON_CHARS} characters")));
        }
        let me = actor.user_id.clone();
        let now = Utc::now();
        let (record, status) = store::calls::modify(&self.db, call_id, |rec| {
            let status = status_of(rec)?;
            ringing_callee(rec, &me, status)?;
            Ok::<_, AppError>(decline(rec, &me, now))
        })
        .await?
        .ok_or_else(call_not_found)?;
        let call = to_call(&record)?;
        let origin = self.origin(&call).await;
        self.announce_decline(&call, &origin, actor, reason, status);
        self.announce_call(CallChange::Declined, &call).await;
        Ok(call)
    }

    /// Hangs up. The caller of a call that still rings cancels it (the callees missed it); a
    /// ringing callee declines; a participant of an active call ends it for both.
    pub async fn end_call(&self, actor: &Actor, call_id: &str) -> AppResult<Call> {
        check_id(Field::Call, call_id)?;
        let me = actor.user_id.clone();
        let now = Utc::now();
        let (record, ending) = store::calls::modify(&self.db, call_id, |rec| {
            let status = status_of(rec)?;
            let mine =
                participant(rec, &me).cloned().ok_or_else(|| AppError::Forbidden("you are not in this call".into()))?;
            match status {
                CallStatus::Ringing if mine.role == CALLER => {
                    let missed = ringing_callees(rec);
                    finish(rec, CallStatus::Missed, CallEndReason::Cancelled, Some(&me), now);
                    Ok(Ending::Cancelled(missed))
                }
                CallStatus::Ringing if mine.state == RINGING => Ok(Ending::Declined(decline(rec, &me, now))),
                CallStatus::Ringing => Err(AppError::Conflict("you already declined this call".into())),
                CallStatus::Active if mine.state == JOINED => {
                    finish(rec, CallStatus::Ended, CallEndReason::Hangup, Some(&me), now);
                    Ok(Ending::HungUp)
                }
                CallStatus::Active => Err(AppError::Forbidden("you are not in this call".into())),
                other => Err(over(other)),
            }
        })
        .await?
        .ok_or_else(call_not_found)?;
        let call = to_call(&record)?;
        let origin = self.origin(&call).await;
        let change = match &ending {
            Ending::Cancelled(_) => CallChange::Missed,
            Ending::Declined(_) => CallChange::Declined,
            Ending::HungUp => CallChange::Ended,
        };
        match ending {
            Ending::Cancelled(missed) => {
                let mut everyone = call.callee_ids.clone();
                everyone.push(call.caller_id.clone());
                // The missed-call notification is stored before anyone hears the call ended, so
                // a callee who connects on that news finds it among their pending ones.
                self.notify_missed(&call, &missed).await;
                self.signal(everyone, ended(&call, &origin, CallEndReason::Cancelled), actor);
            }
            Ending::Declined(status) => self.announce_decline(&call, &origin, actor, None, status),
            Ending::HungUp => {
                let mut parties = vec![call.caller_id.clone()];
                parties.extend(call.answered_by.clone());
                self.signal(parties, ended(&call, &origin, CallEndReason::Hangup), actor);
            }
        }
        self.announce_call(change, &call).await;
        Ok(call)
    }

    /// Relays an ICE candidate to the other party: from the caller to the callee who answered
    /// (or to every ringing callee before that, since trickle ICE starts with the offer), and
    /// from a callee to the caller.
    pub async fn relay_ice(&self, actor: &Actor, call_id: &str, candidate: Value) -> AppResult<()> {
        check_id(Field::Call, call_id)?;
        if candidate.is_null() {
            return Err(AppError::validation("candidate is required"));
        }
        check_signal("candidate", Some(&candidate))?;
        let record = store::calls::get(&self.db, call_id).await?.ok_or_else(call_not_found)?;
        let status = status_of(&record)?;
        let mine = participant(&record, &actor.user_id)
            .ok_or_else(|| AppError::Forbidden("you are not in this call".into()))?;
        if !status.is_live() {
            return Err(over(status));
        }
        let to: Vec<UserId> = match (status, mine.role.as_str(), mine.state.as_str()) {
            (CallStatus::Ringing, CALLER, _) => ringing_callees(&record),
            (CallStatus::Ringing, CALLEE, RINGING) | (CallStatus::Active, CALLEE, JOINED) => {
                vec![UserId::from(&record.call.caller_id)]
            }
            (CallStatus::Active, CALLER, _) => record.call.answered_by.iter().map(UserId::from).collect(),
            _ => return Err(AppError::Forbidden("you are not in this call".into())),
        };
        // Stored before it is relayed, so that whoever hears of it can also list it.
        match store::calls::add_ice(&self.db, call_id, &actor.user_id, candidate.to_string(), MAX_ICE_PER_CALL).await? {
            IceAdded::Stored => {}
            IceAdded::Full => {
                return Err(AppError::Conflict(format!("a call holds at most {MAX_ICE_PER_CALL} ICE candidates")))
            }
        }
        self.signal(
            to,
            CallSignal::IceCandidate {
                call_id: record.call.id.clone(),
                chat_id: record.call.conversation_id.clone().into(),
                user_id: actor.user_id.clone(),
                candidate,
            },
            actor,
        );
        Ok(())
    }

    /// A chat's calls, newest first; `before` pages back by start time.
    pub async fn call_history(
        &self,
        actor: &Actor,
        chat: &str,
        limit: Option<u64>,
        before: Option<DateTime<Utc>>,
    ) -> AppResult<Vec<Call>> {
        check_id(Field::Chat, chat)?;
        self.require_member(chat, &actor.user_id).await?;
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        store::calls::history(&self.db, chat, before, limit).await?.iter().map(to_call).collect()
    }

    /// The user's last connection here closed. If they are in an active call and still have
    /// no connection after the grace period (`CALL_RING_TIMEOUT`), the server ends the call,
    /// so a vanished peer cannot leave the other one talking to nobody, or busy forever. A
    /// short network drop and reconnect keeps the call.
    pub(crate) async fn call_participant_offline(&self, user: &str) {
        // Most users who go offline are in no call: look first, and only then hold a timer
        // (otherwise every disconnect would keep a task and, later, a query alive).
        match store::calls::live_for_user(&self.db, user).await {
            Ok(live) if live.is_empty() => return,
            Ok(_) => {}
            Err(e) => return AppError::from(e).log_if_internal("absent call participant"),
        }
        let user = user.to_string();
        self.later(self.config.call_ring_timeout, move |core| async move { core.end_calls_of_absent(&user).await });
    }

    /// Picks up calls a previous run left live: ringing ones get their ring timeout back,
    /// active ones the absence check of their participants (who all lost their connection
    /// when the server stopped).
    pub(crate) fn resume_calls(&self) {
        let me = self.me.clone();
        tokio::spawn(async move {
            let Some(core) = me.upgrade() else { return };
            let live = match store::calls::live(&core.db).await {
                Ok(live) => live,
                Err(e) => return AppError::from(e).log_if_internal("resume calls"),
            };
            for record in live {
                match record.call.status.as_str() {
                    RINGING => {
                        let ends = record.call.started_at
                            + chrono::Duration::from_std(core.config.call_ring_timeout).unwrap_or_default();
                        let left = (ends - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                        let id = record.call.id.clone();
                        core.later(left, move |core| async move { core.ring_timed_out(&id).await });
                    }
                    _ => {
                        for p in record.participants.iter().filter(|p| p.state == JOINED) {
                            core.call_participant_offline(&p.user_id).await;
                        }
                    }
                }
            }
        });
    }

    async fn ring_timed_out(&self, call_id: &str) {
        let now = Utc::now();
        let result = store::calls::modify(&self.db, call_id, |rec| {
            if status_of(rec)? != CallStatus::Ringing {
                return Ok(None); // answered, declined or cancelled meanwhile
            }
            let missed = ringing_callees(rec);
            finish(rec, CallStatus::Missed, CallEndReason::Missed, None, now);
            Ok::<_, AppError>(Some(missed))
        })
        .await;
        let (record, missed) = match result {
            Ok(Some((record, Some(missed)))) => (record, missed),
            Ok(_) => return,
            Err(e) => return e.log_if_internal("ring timeout"),
        };
        let call = match to_call(&record) {
            Ok(call) => call,
            Err(e) => return e.log_if_internal("ring timeout"),
        };
        let mut everyone = call.callee_ids.clone();
        everyone.push(call.caller_id.clone());
        let origin = self.origin(&call).await;
        // Stored first, as for a cancelled call.
        self.notify_missed(&call, &missed).await;
        self.hub.publish(&Audience::Users(everyone), Event::Call(ended(&call, &origin, CallEndReason::Missed)), None);
        self.announce_call(CallChange::Missed, &call).await;
    }

    async fn end_calls_of_absent(&self, user: &str) {
        // Back on any instance means still in the call.
        match self.shared.online(&[UserId::from(user)]).await {
            Ok(online) if online.first().copied().unwrap_or(false) => return,
            Ok(_) => {}
            Err(e) => return tracing::warn!(cause = %e, "could not check presence of a call participant"),
        }
        let live = match store::calls::live_for_user(&self.db, user).await {
            Ok(live) => live,
            Err(e) => return AppError::from(e).log_if_internal("absent call participant"),
        };
        let now = Utc::now();
        for record in live {
            let result = store::calls::modify(&self.db, &record.call.id, |rec| {
                let joined = participant(rec, user).is_some_and(|p| p.state == JOINED);
                if status_of(rec)? != CallStatus::Active || !joined {
                    return Ok(false);
                }
                finish(rec, CallStatus::Ended, CallEndReason::Disconnected, Some(user), now);
                Ok::<_, AppError>(true)
            })
            .await;
            match result {
                Ok(Some((record, true))) => match to_call(&record) {
                    Ok(call) => {
                        let mut parties = vec![call.caller_id.clone()];
                        parties.extend(call.answered_by.clone());
                        let origin = self.origin(&call).await;
                        self.hub.publish(
                            &Audience::Users(parties),
                            Event::Call(ended(&call, &origin, CallEndReason::Disconnected)),
                            None,
                        );
                        self.announce_call(CallChange::Ended, &call).await;
                    }
                    Err(e) => e.log_if_internal("absent call participant"),
                },
                Ok(_) => {}
                Err(e) => e.log_if_internal("absent call participant"),
            }
        }
    }

    fn announce_decline(
        &self,
        call: &Call,
        origin: &CallOrigin,
        actor: &Actor,
        reason: Option<String>,
        status: CallStatus,
    ) {
        self.signal(
            vec![call.caller_id.clone()],
            CallSignal::Rejected {
                call_id: call.id.clone(),
                chat_id: call.chat_id.clone(),
                origin: origin.clone(),
                user_id: actor.user_id.clone(),
                reason,
                status,
            },
            actor,
        );
        // The decliner's other devices stop ringing.
        self.signal(
            vec![actor.user_id.clone()],
            CallSignal::Ended {
                call_id: call.id.clone(),
                chat_id: call.chat_id.clone(),
                origin: origin.clone(),
                reason: CallEndReason::RejectedElsewhere,
                ended_by: None,
                answered_by: None,
                duration_ms: None,
            },
            actor,
        );
    }

    async fn notify_missed(&self, call: &Call, missed: &[UserId]) {
        self.notify(
            missed,
            NotificationData::MissedCall {
                call_id: call.id.clone(),
                chat_id: call.chat_id.clone(),
                caller_id: call.caller_id.clone(),
                call_kind: call.kind,
            },
        )
        .await;
    }

    /// The call's caller and kind, as each of its signals repeats them: the caller's profile
    /// as last seen at a connect (the one answering or hanging up is usually someone else).
    async fn origin(&self, call: &Call) -> CallOrigin {
        let caller = match store::users::get_many(&self.db, &[call.caller_id.to_string()]).await {
            Ok(rows) => rows.first().map(store::convert::profile).unwrap_or_default(),
            Err(e) => {
                // The signal matters more than the name shown with it.
                tracing::warn!(cause = %e, "could not read the caller's profile");
                Profile::default()
            }
        };
        CallOrigin { caller_id: call.caller_id.clone(), caller, kind: call.kind }
    }

    /// A call for a member of its chat: `NOT_FOUND` unknown, `FORBIDDEN` for anyone else.
    pub async fn call_for_member(&self, actor: &Actor, call_id: &str) -> AppResult<Call> {
        check_id(Field::Call, call_id).map_err(|_| call_not_found())?;
        let record = store::calls::get(&self.db, call_id).await?.ok_or_else(call_not_found)?;
        self.require_member(&record.call.conversation_id, &actor.user_id).await?;
        to_call(&record)
    }

    /// A call's stored ICE candidates in arrival order (only `from`'s when given), for a
    /// member of its chat.
    pub async fn ice_candidates(
        &self,
        actor: &Actor,
        call_id: &str,
        from: Option<&str>,
    ) -> AppResult<Vec<IceCandidate>> {
        let call = self.call_for_member(actor, call_id).await?;
        let rows = store::calls::ice_candidates(&self.db, &call.id, from).await?;
        Ok(rows
            .into_iter()
            .map(|row| IceCandidate {
                call_id: row.call_id,
                user_id: row.user_id.into(),
                // Stored as the JSON text of what was sent; text that is not JSON (a row
                // written by hand) reads as a string.
                candidate: serde_json::from_str(&row.candidate).unwrap_or(Value::String(row.candidate)),
                at: row.created_at,
            })
            .collect())
    }

    /// Tells every member of the call's chat what just happened to it, with the whole call.
    async fn announce_call(&self, change: CallChange, call: &Call) {
        match store::conversations::members(&self.db, &call.chat_id).await {
            Ok(members) => {
                let users = members.into_iter().map(|m| UserId::from(m.user_id)).collect();
                self.hub.publish(&Audience::Users(users), Event::CallChanged(change, call.clone()), None);
            }
            // The parties were signalled already; only the members' overview misses this one.
            Err(e) => AppError::from(e).log_if_internal("announce call"),
        }
    }

    fn signal(&self, to: Vec<UserId>, signal: CallSignal, actor: &Actor) {
        if to.is_empty() {
            return;
        }
        self.hub.publish(&Audience::Users(to), Event::Call(signal), actor.conn);
    }

    /// Runs `task` after `delay`, unless the core is gone by then.
    pub(crate) fn later<F, Fut>(&self, delay: Duration, task: F)
    where
        F: FnOnce(Arc<Core>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let me = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(core) = me.upgrade() {
                task(core).await;
            }
        });
    }
}

fn call_not_found() -> AppError {
    AppError::NotFound("call not found".into())
}

/// The caller's participant row when they are a callee the call is still ringing for: what
/// answering and rejecting both require.
fn ringing_callee<'a>(
    rec: &'a CallRecord,
    me: &str,
    status: CallStatus,
) -> AppResult<&'a entity::call_participant::Model> {
    let mine = participant(rec, me)
        .filter(|p| p.role == CALLEE)
        .ok_or_else(|| AppError::Forbidden("you are not a callee of this call".into()))?;
    match status {
        CallStatus::Ringing => {}
        CallStatus::Active => return Err(AppError::Conflict("the call was already answered".into())),
        other => return Err(over(other)),
    }
    if mine.state != RINGING {
        return Err(AppError::Conflict("you already declined this call".into()));
    }
    Ok(mine)
}

fn over(status: CallStatus) -> AppError {
    AppError::Conflict(format!("the call is already over ({})", status.as_str()))
}

fn check_signal(field: &str, value: Option<&Value>) -> AppResult<()> {
    if value.is_some_and(|v| v.to_string().len() > MAX_SIGNAL_BYTES) {
        return Err(AppError::validation(format!("{field} is larger than {MAX_SIGNAL_BYTES} bytes")));
    }
    Ok(())
}

fn status_of(rec: &CallRecord) -> AppResult<CallStatus> {
    CallStatus::parse(&rec.call.status).ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!("stored call {} has status {:?}", rec.call.id, rec.call.status))
    })
}

fn participant<'a>(rec: &'a CallRecord, user: &str) -> Option<&'a entity::call_participant::Model> {
    rec.participants.iter().find(|p| p.user_id == user)
}

fn ringing_callees(rec: &CallRecord) -> Vec<UserId> {
    rec.participants
        .iter()
        .filter(|p| p.role == CALLEE && p.state == RINGING)
        .map(|p| UserId::from(&p.user_id))
        .collect()
}

/// Marks `user` as having declined; the call is rejected when nobody is left ringing.
fn decline(rec: &mut CallRecord, user: &str, now: DateTime<Utc>) -> CallStatus {
    for p in &mut rec.participants {
        if p.user_id == user {
            p.state = DECLINED.into();
        }
    }
    if ringing_callees(rec).is_empty() {
        finish(rec, CallStatus::Rejected, CallEndReason::Rejected, Some(user), now);
        CallStatus::Rejected
    } else {
        CallStatus::Ringing
    }
}

/// Ends the call: nobody is ringing or talking in it any more, and its duration is the talk
/// time (zero for a call that was never answered).
fn finish(rec: &mut CallRecord, status: CallStatus, reason: CallEndReason, by: Option<&str>, now: DateTime<Utc>) {
    rec.call.status = status.as_str().into();
    rec.call.end_reason = Some(reason.as_str().into());
    rec.call.ended_by = by.map(str::to_string);
    rec.call.ended_at = Some(now);
    rec.call.duration_ms = Some(rec.call.answered_at.map(|a| (now - a).num_milliseconds().max(0)).unwrap_or(0));
    for p in &mut rec.participants {
        if p.state == RINGING || p.state == JOINED {
            p.state = LEFT.into();
        }
    }
}

fn ended(call: &Call, origin: &CallOrigin, reason: CallEndReason) -> CallSignal {
    CallSignal::Ended {
        call_id: call.id.clone(),
        chat_id: call.chat_id.clone(),
        origin: origin.clone(),
        reason,
        ended_by: call.ended_by.clone(),
        answered_by: call.answered_by.clone(),
        duration_ms: call.duration_ms,
    }
}

fn to_call(rec: &CallRecord) -> AppResult<Call> {
    let bad = |what: &str| AppError::Internal(anyhow::anyhow!("stored call {} has a bad {what}", rec.call.id));
    Ok(Call {
        id: rec.call.id.clone(),
        chat_id: rec.call.conversation_id.clone().into(),
        caller_id: rec.call.caller_id.clone().into(),
        callee_ids: rec.participants.iter().filter(|p| p.role == CALLEE).map(|p| UserId::from(&p.user_id)).collect(),
        kind: CallKind::parse(&rec.call.call_type).ok_or_else(|| bad("call type"))?,
        status: status_of(rec)?,
        answered_by: rec.call.answered_by.clone().map(Into::into),
        ended_by: rec.call.ended_by.clone().map(Into::into),
        end_reason: rec
            .call
            .end_reason
            .as_deref()
            .map(|r| CallEndReason::parse(r).ok_or_else(|| bad("end reason")))
            .transpose()?,
        started_at: rec.call.started_at,
        answered_at: rec.call.answered_at,
        ended_at: rec.call.ended_at,
        duration_ms: rec.call.duration_ms,
        offer: rec.call.offer.as_deref().and_then(|text| serde_json::from_str(text).ok()),
        answer: rec.call.answer.as_deref().and_then(|text| serde_json::from_str(text).ok()),
    })
}
