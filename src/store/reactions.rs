//! Reactions: one row per user, message and emoji.

use chrono::{DateTime, Utc};
use entity::reaction;
use sea_orm::{
    sea_query::OnConflict, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, Set,
};

/// Stores a reaction. False when the user already reacted to the message with this emoji (the
/// primary key decides, also between concurrent requests).
pub async fn add(
    db: &DatabaseConnection,
    message_id: &str,
    conversation_id: &str,
    user_id: &str,
    emoji: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let inserted = reaction::Entity::insert(reaction::ActiveModel {
        message_id: Set(message_id.to_string()),
        user_id: Set(user_id.to_string()),
        emoji: Set(emoji.to_string()),
        conversation_id: Set(conversation_id.to_string()),
        created_at: Set(at),
    })
    .on_conflict(
        OnConflict::columns([reaction::Column::MessageId, reaction::Column::UserId, reaction::Column::Emoji])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(inserted > 0)
}

/// Removes a reaction; false when there was none.
pub async fn remove(db: &DatabaseConnection, message_id: &str, user_id: &str, emoji: &str) -> Result<bool, DbErr> {
    let deleted = reaction::Entity::delete_many()
        .filter(reaction::Column::MessageId.eq(message_id))
        .filter(reaction::Column::UserId.eq(user_id))
        .filter(reaction::Column::Emoji.eq(emoji))
        .exec(db)
        .await?
        .rows_affected;
    Ok(deleted > 0)
}

/// Every reaction to these messages, oldest first.
pub async fn for_messages(
    db: &DatabaseConnection,
    message_ids: &[impl AsRef<str>],
) -> Result<Vec<reaction::Model>, DbErr> {
    if message_ids.is_empty() {
        return Ok(Vec::new());
    }
    reaction::Entity::find()
        .filter(reaction::Column::MessageId.is_in(message_ids.iter().map(|id| id.as_ref())))
        .order_by_asc(reaction::Column::CreatedAt)
        .order_by_asc(reaction::Column::UserId)
        .all(db)
        .await
}
