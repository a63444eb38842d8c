//! Calls and their participants. Every state change happens in one write transaction with the
//! call row locked (PostgreSQL `FOR UPDATE`; SQLite has one writer at a time), so two devices
//! answering at once, or an answer racing the ring timeout, cannot both win.

use crate::domain::UserId;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use entity::{call, call_ice_candidate, call_participant, user};
use sea_orm::{
    ActiveValue::{Set, Unchanged},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::is_postgres;

/// A call with its participants, as stored.
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub call: call::Model,
    pub participants: Vec<call_participant::Model>,
}

/// Participant states in which a user counts as busy.
pub const LIVE_STATES: [&str; 2] = ["ringing", "joined"];

/// Creates a call in one write transaction. The rows of `users` (caller and candidate callees)
/// are locked first, so two calls to the same person cannot both find them free; `plan` gets
/// the users among them who are already in a live call, and whether the conversation has a
/// live call, and returns the callees to ring, or refuses. The caller is stored as `joined`,
/// the callees as `ringing`.
pub async fn create<E>(
    db: &DatabaseConnection,
    new: call::Model,
    users: &[UserId],
    plan: impl FnOnce(&HashSet<String>, bool) -> Result<Vec<UserId>, E>,
) -> Result<CallRecord, E>
where
    E: From<DbErr>,
{
    let txn = super::begin_write(db).await?;
    if is_postgres(&txn) {
        let mut sorted: Vec<&str> = users.iter().map(UserId::as_str).collect();
        sorted.sort();
        sorted.dedup();
        // Locks in one global order, so concurrent calls between the same people cannot
        // deadlock.
        user::Entity::find()
            .select_only()
            .column(user::Column::Id)
            .filter(user::Column::Id.is_in(sorted))
            .order_by_asc(user::Column::Id)
            .lock_exclusive()
            .into_tuple::<String>()
            .all(&txn)
            .await?;
    }
    let busy: HashSet<String> = busy_among(&txn, users).await?;
    let chat_busy = call::Entity::find()
        .filter(call::Column::ConversationId.eq(new.conversation_id.clone()))
        .filter(call::Column::Status.is_in(["ringing", "active"]))
        .count(&txn)
        .await?
        > 0;
    let callees = plan(&busy, chat_busy)?;
    call::Entity::insert(call::ActiveModel {
        id: Set(new.id.clone()),
        conversation_id: Set(new.conversation_id.clone()),
        caller_id: Set(new.caller_id.clone()),
        call_type: Set(new.call_type.clone()),
        status: Set(new.status.clone()),
        answered_by: Set(None),
        ended_by: Set(None),
        end_reason: Set(None),
        started_at: Set(new.started_at),
        answered_at: Set(None),
        ended_at: Set(None),
        duration_ms: Set(None),
        offer: Set(new.offer.clone()),
        answer: Set(None),
    })
    .exec_without_returning(&txn)
    .await?;
    let mut participants = vec![call_participant::Model {
        call_id: new.id.clone(),
        user_id: new.caller_id.clone(),
        role: "caller".into(),
        state: "joined".into(),
    }];
    participants.extend(callees.into_iter().map(|u| call_participant::Model {
        call_id: new.id.clone(),
        user_id: u.into_string(),
        role: "callee".into(),
        state: "ringing".into(),
    }));
    call_participant::Entity::insert_many(participants.iter().map(|p| call_participant::ActiveModel {
        call_id: Set(p.call_id.clone()),
        user_id: Set(p.user_id.clone()),
        role: Set(p.role.clone()),
        state: Set(p.state.clone()),
    }))
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(CallRecord { call: new, participants })
}

async fn busy_among(db: &impl ConnectionTrait, users: &[UserId]) -> Result<HashSet<String>, DbErr> {
    let rows: Vec<String> = call_participant::Entity::find()
        .select_only()
        .column(call_participant::Column::UserId)
        .filter(call_participant::Column::UserId.is_in(users.iter().map(UserId::as_str)))
        .filter(call_participant::Column::State.is_in(LIVE_STATES))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Applies `change` to a call under its lock and writes back what it changed. `None` when
/// there is no such call; an error from `change` rolls everything back.
pub async fn modify<T, E>(
    db: &DatabaseConnection,
    id: &str,
    change: impl FnOnce(&mut CallRecord) -> Result<T, E>,
) -> Result<Option<(CallRecord, T)>, E>
where
    E: From<DbErr>,
{
    let txn = super::begin_write(db).await?;
    let mut query = call::Entity::find_by_id(id.to_string());
    if is_postgres(&txn) {
        query = query.lock_exclusive();
    }
    let Some(found) = query.one(&txn).await? else {
        return Ok(None);
    };
    let participants = participants_of(&txn, std::slice::from_ref(&found.id)).await?;
    let before = CallRecord { call: found, participants };
    let mut record = before.clone();
    let out = change(&mut record)?;
    if record.call != before.call {
        let c = record.call.clone();
        call::Entity::update(call::ActiveModel {
            id: Unchanged(c.id),
            conversation_id: Set(c.conversation_id),
            caller_id: Set(c.caller_id),
            call_type: Set(c.call_type),
            status: Set(c.status),
            answered_by: Set(c.answered_by),
            ended_by: Set(c.ended_by),
            end_reason: Set(c.end_reason),
            started_at: Set(c.started_at),
            answered_at: Set(c.answered_at),
            ended_at: Set(c.ended_at),
            duration_ms: Set(c.duration_ms),
            offer: Set(c.offer),
            answer: Set(c.answer),
        })
        .exec(&txn)
        .await?;
    }
    for p in &record.participants {
        let unchanged = before.participants.iter().any(|old| old.user_id == p.user_id && old == p);
        if unchanged {
            continue;
        }
        call_participant::Entity::update(call_participant::ActiveModel {
            call_id: Unchanged(p.call_id.clone()),
            user_id: Unchanged(p.user_id.clone()),
            role: Set(p.role.clone()),
            state: Set(p.state.clone()),
        })
        .exec(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(Some((record, out)))
}

async fn participants_of(
    db: &impl ConnectionTrait,
    call_ids: &[String],
) -> Result<Vec<call_participant::Model>, DbErr> {
    call_participant::Entity::find()
        .filter(call_participant::Column::CallId.is_in(call_ids.iter().cloned()))
        .order_by_asc(call_participant::Column::CallId)
        .order_by_asc(call_participant::Column::Role)
        .order_by_asc(call_participant::Column::UserId)
        .all(db)
        .await
}

async fn with_participants(db: &impl ConnectionTrait, calls: Vec<call::Model>) -> Result<Vec<CallRecord>, DbErr> {
    let ids: Vec<String> = calls.iter().map(|c| c.id.clone()).collect();
    let mut participants = participants_of(db, &ids).await?;
    Ok(calls
        .into_iter()
        .map(|call| {
            let (mine, rest): (Vec<_>, Vec<_>) =
                std::mem::take(&mut participants).into_iter().partition(|p| p.call_id == call.id);
            participants = rest;
            CallRecord { call, participants: mine }
        })
        .collect())
}

pub async fn get(db: &DatabaseConnection, id: &str) -> Result<Option<CallRecord>, DbErr> {
    let Some(found) = call::Entity::find_by_id(id.to_string()).one(db).await? else {
        return Ok(None);
    };
    Ok(with_participants(db, vec![found]).await?.pop())
}

/// A conversation's calls, newest first, started before `before` when given.
pub async fn history(
    db: &DatabaseConnection,
    conversation_id: &str,
    before: Option<DateTime<Utc>>,
    limit: u64,
) -> Result<Vec<CallRecord>, DbErr> {
    let mut query = call::Entity::find().filter(call::Column::ConversationId.eq(conversation_id));
    if let Some(before) = before {
        query = query.filter(call::Column::StartedAt.lt(before));
    }
    let calls =
        query.order_by_desc(call::Column::StartedAt).order_by_desc(call::Column::Id).limit(limit).all(db).await?;
    with_participants(db, calls).await
}

/// Calls still ringing or active (to resume their timers after a restart).
pub async fn live(db: &DatabaseConnection) -> Result<Vec<CallRecord>, DbErr> {
    let calls = call::Entity::find().filter(call::Column::Status.is_in(["ringing", "active"])).all(db).await?;
    with_participants(db, calls).await
}

/// Live calls in which `user` is ringing or joined.
pub async fn live_for_user(db: &DatabaseConnection, user: &str) -> Result<Vec<CallRecord>, DbErr> {
    let ids: Vec<String> = call_participant::Entity::find()
        .select_only()
        .column(call_participant::Column::CallId)
        .filter(call_participant::Column::UserId.eq(user))
        .filter(call_participant::Column::State.is_in(LIVE_STATES))
        .into_tuple()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let calls = call::Entity::find().filter(call::Column::Id.is_in(ids)).all(db).await?;
    with_participants(db, calls).await
}

/// What [`add_ice`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum IceAdded {
    Stored,
    /// The call already holds `max` candidates.
    Full,
}

/// Stores an ICE candidate after the call's others, numbered in arrival order. One write
/// transaction with the call row locked (PostgreSQL), so concurrent candidates of one call
/// get distinct numbers.
pub async fn add_ice(
    db: &DatabaseConnection,
    call_id: &str,
    user_id: &str,
    candidate: String,
    max: u64,
) -> Result<IceAdded, DbErr> {
    let txn = super::begin_write(db).await?;
    if is_postgres(&txn) {
        call::Entity::find_by_id(call_id.to_string()).lock_exclusive().one(&txn).await?;
    }
    let last: Option<i32> = call_ice_candidate::Entity::find()
        .select_only()
        .column_as(call_ice_candidate::Column::Seq.max(), "last")
        .filter(call_ice_candidate::Column::CallId.eq(call_id))
        .into_tuple::<Option<i32>>()
        .one(&txn)
        .await?
        .flatten();
    let last = last.unwrap_or(0);
    if last as u64 >= max {
        txn.rollback().await?;
        return Ok(IceAdded::Full);
    }
    call_ice_candidate::Entity::insert(call_ice_candidate::ActiveModel {
        call_id: Set(call_id.to_string()),
        seq: Set(last + 1),
        user_id: Set(user_id.to_string()),
        candidate: Set(candidate),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(IceAdded::Stored)
}

/// A call's ICE candidates in arrival order, only `from`'s when given.
pub async fn ice_candidates(
    db: &DatabaseConnection,
    call_id: &str,
    from: Option<&str>,
) -> Result<Vec<call_ice_candidate::Model>, DbErr> {
    let mut query = call_ice_candidate::Entity::find().filter(call_ice_candidate::Column::CallId.eq(call_id));
    if let Some(from) = from {
        query = query.filter(call_ice_candidate::Column::UserId.eq(from));
    }
    query.order_by_asc(call_ice_candidate::Column::Seq).all(db).await
}
