//! Per-user notifications. Every query is scoped by the owner's id, so one user can never read
//! or change another's.

use chrono::Utc;
use entity::notification;
use sea_orm::{
    sea_query::Expr, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

pub async fn insert_many(db: &DatabaseConnection, rows: &[notification::Model]) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    notification::Entity::insert_many(rows.iter().map(|n| notification::ActiveModel {
        id: Set(n.id.clone()),
        user_id: Set(n.user_id.clone()),
        kind: Set(n.kind.clone()),
        data: Set(n.data.clone()),
        read: Set(n.read),
        created_at: Set(n.created_at),
        read_at: Set(n.read_at),
    }))
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Marks one of `user`'s notifications read and returns it; `None` when `user` has no
/// notification with that id.
pub async fn mark_read(db: &DatabaseConnection, user: &str, id: &str) -> Result<Option<notification::Model>, DbErr> {
    notification::Entity::update_many()
        .col_expr(notification::Column::Read, Expr::value(true))
        .col_expr(notification::Column::ReadAt, Expr::value(Utc::now()))
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::UserId.eq(user))
        .filter(notification::Column::Read.eq(false))
        .exec(db)
        .await?;
    notification::Entity::find_by_id(id.to_string()).filter(notification::Column::UserId.eq(user)).one(db).await
}

/// Deletes one of `user`'s notifications; false when `user` has none with that id.
pub async fn delete(db: &DatabaseConnection, user: &str, id: &str) -> Result<bool, DbErr> {
    let deleted = notification::Entity::delete_many()
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::UserId.eq(user))
        .exec(db)
        .await?
        .rows_affected;
    Ok(deleted > 0)
}

/// Deletes all of `user`'s notifications; returns how many.
pub async fn delete_all(db: &DatabaseConnection, user: &str) -> Result<u64, DbErr> {
    Ok(notification::Entity::delete_many().filter(notification::Column::UserId.eq(user)).exec(db).await?.rows_affected)
}

/// How many unread notifications each of `users` has (users with none are left out).
pub async fn count_unread(db: &DatabaseConnection, users: &[impl AsRef<str>]) -> Result<Vec<(String, u64)>, DbErr> {
    let rows: Vec<(String, i64)> = notification::Entity::find()
        .select_only()
        .column(notification::Column::UserId)
        .column_as(notification::Column::Id.count(), "unread")
        .filter(notification::Column::UserId.is_in(users.iter().map(|u| u.as_ref())))
        .filter(notification::Column::Read.eq(false))
        .group_by(notification::Column::UserId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(user, count)| (user, count.max(0) as u64)).collect())
}

/// `user`'s unread notifications, newest first.
pub async fn unread(db: &DatabaseConnection, user: &str, limit: u64) -> Result<Vec<notification::Model>, DbErr> {
    notification::Entity::find()
        .filter(notification::Column::UserId.eq(user))
        .filter(notification::Column::Read.eq(false))
        .order_by_desc(notification::Column::CreatedAt)
        .order_by_desc(notification::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
