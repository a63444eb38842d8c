//! Anonymous sessions: the `session` conversation, its `sessions` row and its members with
//! their keys, and the reads a session needs (history per member, the admin list). Deleting a
//! session removes everything it left behind, idempotently, so that every instance's sweeper
//! may try it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{conversation, member, message, session, session_member, user};
use sea_orm::{
    sea_query::{Expr, OnConflict},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement,
};

use super::is_postgres;

/// A session to create.
pub struct NewSession {
    pub chat_id: String,
    pub name: String,
    pub auth_key_hash: Option<String>,
    pub mode: String,
    pub active: bool,
    pub created_by: String,
}

/// Creates the session's conversation and row in one transaction. Returns false when a
/// conversation with that id already exists.
pub async fn create(db: &DatabaseConnection, new: NewSession) -> Result<bool, DbErr> {
    let now = Utc::now();
    let txn = super::begin_write(db).await?;
    let inserted = conversation::Entity::insert(conversation::ActiveModel {
        id: Set(new.chat_id.clone()),
        kind: Set("session".into()),
        name: Set(Some(new.name.clone())),
        description: Set(None),
        avatar: Set(None),
        encrypted: Set(true),
        direct_key: Set(None),
        created_by: Set(new.created_by),
        last_seq: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        epoch: Set(0),
    })
    .on_conflict(OnConflict::column(conversation::Column::Id).do_nothing().to_owned())
    .exec_without_returning(&txn)
    .await?;
    if inserted == 0 {
        txn.rollback().await?;
        return Ok(false);
    }
    session::Entity::insert(session::ActiveModel {
        conversation_id: Set(new.chat_id),
        name: Set(new.name),
        auth_key_hash: Set(new.auth_key_hash),
        mode: Set(new.mode),
        active: Set(new.active),
        created_at: Set(now),
        last_activity_at: Set(now),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(true)
}

pub async fn get(db: &DatabaseConnection, chat: &str) -> Result<Option<session::Model>, DbErr> {
    session::Entity::find_by_id(chat.to_string()).one(db).await
}

/// Marks a reserved session active (its creator joined).
pub async fn activate(db: &DatabaseConnection, chat: &str) -> Result<(), DbErr> {
    session::Entity::update_many()
        .col_expr(session::Column::Active, Expr::value(true))
        .col_expr(session::Column::LastActivityAt, Expr::value(Utc::now()))
        .filter(session::Column::ConversationId.eq(chat))
        .exec(db)
        .await
        .map(|_| ())
}

/// Something happened in the session: it is not idle.
pub async fn touch(db: &DatabaseConnection, chat: &str) -> Result<(), DbErr> {
    session::Entity::update_many()
        .col_expr(session::Column::LastActivityAt, Expr::value(Utc::now()))
        .filter(session::Column::ConversationId.eq(chat))
        .exec(db)
        .await
        .map(|_| ())
}

/// The session's members, in the order they joined.
pub async fn members(db: &DatabaseConnection, chat: &str) -> Result<Vec<session_member::Model>, DbErr> {
    session_member::Entity::find()
        .filter(session_member::Column::ConversationId.eq(chat))
        .order_by_asc(session_member::Column::JoinedAt)
        .order_by_asc(session_member::Column::UserId)
        .all(db)
        .await
}

pub async fn member(db: &DatabaseConnection, chat: &str, user: &str) -> Result<Option<session_member::Model>, DbErr> {
    session_member::Entity::find_by_id((chat.to_string(), user.to_string())).one(db).await
}

/// A member to add, or to update when they are already in.
pub struct Joining<'a> {
    pub chat: &'a str,
    pub user: &'a str,
    pub member_id: &'a str,
    pub display_name: Option<&'a str>,
    pub public_key: Option<&'a str>,
    /// Most members the session takes (`None`: no limit).
    pub capacity: Option<usize>,
}

pub enum Joined {
    /// A first join: the member was added, as a core member too.
    New(session_member::Model),
    /// Already a member: display name and key updated where given.
    Again(session_member::Model),
    /// The session is at its capacity.
    Full,
    /// The session is gone (deleted meanwhile).
    Gone,
}

/// Adds a member, or updates one who joins again, in one transaction that holds the
/// session's row: two joiners racing for the last seat of a private session cannot both win.
pub async fn join(db: &DatabaseConnection, j: Joining<'_>) -> Result<Joined, DbErr> {
    let now = Utc::now();
    let txn = super::begin_write(db).await?;
    let mut query = conversation::Entity::find_by_id(j.chat.to_string());
    if is_postgres(&txn) {
        query = query.lock_exclusive();
    }
    let Some(conversation) = query.one(&txn).await? else {
        txn.rollback().await?;
        return Ok(Joined::Gone);
    };
    let existing = session_member::Entity::find_by_id((j.chat.to_string(), j.user.to_string())).one(&txn).await?;
    let outcome = match existing {
        Some(mut found) => {
            if let Some(name) = j.display_name {
                found.display_name = Some(name.to_string());
            }
            if let Some(key) = j.public_key {
                found.public_key = Some(key.to_string());
            }
            session_member::Entity::update_many()
                .col_expr(session_member::Column::DisplayName, Expr::value(found.display_name.clone()))
                .col_expr(session_member::Column::PublicKey, Expr::value(found.public_key.clone()))
                .filter(session_member::Column::ConversationId.eq(j.chat))
                .filter(session_member::Column::UserId.eq(j.user))
                .exec(&txn)
                .await?;
            Joined::Again(found)
        }
        None => {
            let count = session_member::Entity::find()
                .filter(session_member::Column::ConversationId.eq(j.chat))
                .count(&txn)
                .await?;
            if j.capacity.is_some_and(|cap| count as usize >= cap) {
                txn.rollback().await?;
                return Ok(Joined::Full);
            }
            let model = session_member::Model {
                conversation_id: j.chat.to_string(),
                user_id: j.user.to_string(),
                member_id: j.member_id.to_string(),
                display_name: j.display_name.map(str::to_string),
                public_key: j.public_key.map(str::to_string),
                session_key: None,
                joined_at: now,
            };
            session_member::Entity::insert(session_member::ActiveModel::from(model.clone()))
                .exec_without_returning(&txn)
                .await?;
            // A core member too, starting at the end: the history is sent on join instead.
            let last_seq = conversation.last_seq;
            member::Entity::insert(member::ActiveModel {
                conversation_id: Set(j.chat.to_string()),
                user_id: Set(j.user.to_string()),
                role: Set("member".into()),
                delivered_seq: Set(last_seq),
                read_seq: Set(last_seq),
                cleared_seq: Set(0),
                joined_at: Set(now),
                added_by: Set(None),
            })
            .on_conflict(
                OnConflict::columns([member::Column::ConversationId, member::Column::UserId]).do_nothing().to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
            super::devices::start_member(&txn, j.chat, j.user, last_seq).await?;
            Joined::New(model)
        }
    };
    session::Entity::update_many()
        .col_expr(session::Column::LastActivityAt, Expr::value(now))
        .filter(session::Column::ConversationId.eq(j.chat))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(outcome)
}

/// Sets a member's public key (and display name when given). Returns false when they are not
/// a member.
pub async fn set_public_key(
    db: &DatabaseConnection,
    chat: &str,
    user: &str,
    key: Option<&str>,
    display_name: Option<&str>,
) -> Result<bool, DbErr> {
    let mut update = session_member::Entity::update_many()
        .col_expr(session_member::Column::PublicKey, Expr::value(key.map(str::to_string)))
        .filter(session_member::Column::ConversationId.eq(chat))
        .filter(session_member::Column::UserId.eq(user));
    if let Some(name) = display_name {
        update = update.col_expr(session_member::Column::DisplayName, Expr::value(name.to_string()));
    }
    Ok(update.exec(db).await?.rows_affected > 0)
}

/// Stores each member's entry of the session key map (core user id → key); members not in
/// the map keep theirs.
pub async fn set_session_keys(
    db: &DatabaseConnection,
    chat: &str,
    keys: &HashMap<String, String>,
) -> Result<(), DbErr> {
    let txn = super::begin_write(db).await?;
    for (user, key) in keys {
        session_member::Entity::update_many()
            .col_expr(session_member::Column::SessionKey, Expr::value(key.clone()))
            .filter(session_member::Column::ConversationId.eq(chat))
            .filter(session_member::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await
}

/// Removes a member (session and core membership). Returns the member as they were, if they
/// were one.
pub async fn leave(db: &DatabaseConnection, chat: &str, user: &str) -> Result<Option<session_member::Model>, DbErr> {
    let txn = super::begin_write(db).await?;
    let found = session_member::Entity::find_by_id((chat.to_string(), user.to_string())).one(&txn).await?;
    if found.is_some() {
        session_member::Entity::delete_many()
            .filter(session_member::Column::ConversationId.eq(chat))
            .filter(session_member::Column::UserId.eq(user))
            .exec(&txn)
            .await?;
        member::Entity::delete_many()
            .filter(member::Column::ConversationId.eq(chat))
            .filter(member::Column::UserId.eq(user))
            .exec(&txn)
            .await?;
        super::devices::forget_member(&txn, chat, user).await?;
    }
    txn.commit().await?;
    Ok(found)
}

/// The messages `user` may read in the session, oldest first: addressed to them, to everyone,
/// or sent by them; the newest `limit`.
pub async fn history_for(
    db: &DatabaseConnection,
    chat: &str,
    user: &str,
    limit: u64,
) -> Result<Vec<message::Model>, DbErr> {
    let mut rows = message::Entity::find()
        .filter(message::Column::ConversationId.eq(chat))
        .filter(super::messages::readable_by(user))
        .filter(message::Column::DeletedAt.is_null())
        .order_by_desc(message::Column::Seq)
        .limit(limit)
        .all(db)
        .await?;
    rows.reverse();
    Ok(rows)
}

/// Sessions whose last activity is before `before`, oldest first, at most `limit`.
pub async fn idle_since(db: &DatabaseConnection, before: DateTime<Utc>, limit: u64) -> Result<Vec<String>, DbErr> {
    session::Entity::find()
        .select_only()
        .column(session::Column::ConversationId)
        .filter(session::Column::LastActivityAt.lt(before))
        .order_by_asc(session::Column::LastActivityAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
}

/// Deletes a session and everything it left: messages, members and their cursors, keys, and
/// the users rows of its members (nobody outside the session). Deleting one that is gone does
/// nothing. Returns the member user ids it had.
pub async fn delete(db: &DatabaseConnection, chat: &str) -> Result<Vec<String>, DbErr> {
    let txn = super::begin_write(db).await?;
    let users: Vec<String> = member::Entity::find()
        .select_only()
        .column(member::Column::UserId)
        .filter(member::Column::ConversationId.eq(chat))
        .into_tuple()
        .all(&txn)
        .await?;
    let backend = txn.get_database_backend();
    let by_conversation = |table: &str| {
        Statement::from_sql_and_values(
            backend,
            format!("DELETE FROM {table} WHERE conversation_id = {}", super::placeholder(backend, 1)),
            [chat.into()],
        )
    };
    for table in ["messages", "device_cursors", "members", "session_members", "sessions"] {
        txn.execute_raw(by_conversation(table)).await?;
    }
    conversation::Entity::delete_by_id(chat.to_string()).exec(&txn).await?;
    if !users.is_empty() {
        let devices = Statement::from_sql_and_values(
            backend,
            format!(
                "DELETE FROM devices WHERE user_id IN ({})",
                (1..=users.len()).map(|n| super::placeholder(backend, n)).collect::<Vec<_>>().join(", ")
            ),
            users.iter().map(|u| u.as_str().into()).collect::<Vec<sea_orm::Value>>(),
        );
        txn.execute_raw(devices).await?;
        user::Entity::delete_many().filter(user::Column::Id.is_in(users.iter().cloned())).exec(&txn).await?;
    }
    txn.commit().await?;
    Ok(users)
}

/// How many sessions exist (reserved ones included).
pub async fn count(db: &DatabaseConnection) -> Result<u64, DbErr> {
    session::Entity::find().count(db).await
}

/// Every session with its members and how many messages it holds, newest activity first, at
/// most `limit` (the admin list).
pub async fn list(
    db: &DatabaseConnection,
    limit: u64,
) -> Result<Vec<(session::Model, Vec<session_member::Model>, u64)>, DbErr> {
    let sessions = session::Entity::find().order_by_desc(session::Column::LastActivityAt).limit(limit).all(db).await?;
    let mut out = Vec::with_capacity(sessions.len());
    for s in sessions {
        let members = members(db, &s.conversation_id).await?;
        let count =
            message::Entity::find().filter(message::Column::ConversationId.eq(&s.conversation_id)).count(db).await?;
        out.push((s, members, count));
    }
    Ok(out)
}
