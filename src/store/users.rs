//! Users as seen in verified tokens.

use chrono::{DateTime, Utc};
use entity::user;
use sea_orm::{
    sea_query::OnConflict, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set,
    Statement, Value,
};

/// Inserts the user or refreshes the profile claims (only those present in the token).
/// Writes nothing when the stored profile already says what the token says: most connects
/// are reconnects, and a write transaction (an fsync on SQLite) per connect is what a
/// reconnect storm would otherwise pay.
pub async fn upsert(
    db: &DatabaseConnection,
    id: &str,
    username: Option<&str>,
    name: Option<&str>,
    avatar: Option<&str>,
) -> Result<(), DbErr> {
    if let Some(stored) = user::Entity::find_by_id(id.to_string()).one(db).await? {
        let same = |claim: Option<&str>, kept: &Option<String>| claim.is_none_or(|c| kept.as_deref() == Some(c));
        if same(username, &stored.username) && same(name, &stored.name) && same(avatar, &stored.avatar) {
            return Ok(());
        }
    }
    let now = Utc::now();
    let row = user::ActiveModel {
        id: Set(id.to_string()),
        username: Set(username.map(str::to_string)),
        name: Set(name.map(str::to_string)),
        avatar: Set(avatar.map(str::to_string)),
        last_seen_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let mut update = vec![user::Column::UpdatedAt];
    if username.is_some() {
        update.push(user::Column::Username);
    }
    if name.is_some() {
        update.push(user::Column::Name);
    }
    if avatar.is_some() {
        update.push(user::Column::Avatar);
    }
    user::Entity::insert(row)
        .on_conflict(OnConflict::column(user::Column::Id).update_columns(update).to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Makes sure users exist before they are made members (they may never have connected yet).
pub async fn ensure(db: &DatabaseConnection, ids: &[impl AsRef<str>]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let rows = ids.iter().map(|id| user::ActiveModel {
        id: Set(id.as_ref().to_string()),
        username: Set(None),
        name: Set(None),
        avatar: Set(None),
        last_seen_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    });
    user::Entity::insert_many(rows)
        .on_conflict(OnConflict::column(user::Column::Id).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn get_many(db: &DatabaseConnection, ids: &[impl AsRef<str>]) -> Result<Vec<user::Model>, DbErr> {
    user::Entity::find().filter(user::Column::Id.is_in(ids.iter().map(|id| id.as_ref()))).all(db).await
}

/// Writes last-seen times, `(user, at)`, in one write transaction: a disconnect no longer
/// costs a transaction (an fsync on SQLite) of its own (see `core::last_seen`).
pub async fn set_last_seen_many(db: &DatabaseConnection, seen: &[(&str, DateTime<Utc>)]) -> Result<(), DbErr> {
    if seen.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let txn = super::begin_write(db).await?;
    for chunk in seen.chunks(1000) {
        let rows = chunk.iter().map(|(id, at)| [Value::from(*id), Value::from(*at)]);
        let (list, values) = super::values_list(backend, Vec::new(), rows);
        let sql =
            format!("UPDATE users SET last_seen_at = v.column2 FROM (VALUES {list}) AS v WHERE users.id = v.column1");
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    txn.commit().await
}
