//! Changes to stored messages: edits with their history, deletion for everyone, and hiding a
//! message from one user's history. Each change locks the message row first (PostgreSQL; a
//! SQLite write transaction is exclusive anyway), so an edit racing a deletion cannot bring
//! deleted content back.

use chrono::{DateTime, Utc};
use entity::{hidden_message, message, message_attachment, message_edit, reaction};
use sea_orm::{
    sea_query::OnConflict, ActiveValue, ColumnTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::is_postgres;

async fn lock_message(txn: &DatabaseTransaction, id: &str) -> Result<Option<message::Model>, DbErr> {
    let mut query = message::Entity::find_by_id(id.to_string());
    if is_postgres(txn) {
        query = query.lock_exclusive();
    }
    query.one(txn).await
}

/// Replaces a message's content and records the edit. `None` when the message is gone or
/// was deleted meanwhile.
pub async fn edit(
    db: &DatabaseConnection,
    edit_id: &str,
    message_id: &str,
    editor: &str,
    content: &str,
    at: DateTime<Utc>,
) -> Result<Option<message::Model>, DbErr> {
    let txn = super::begin_write(db).await?;
    let Some(current) = lock_message(&txn, message_id).await?.filter(|m| m.deleted_at.is_none()) else {
        txn.rollback().await?;
        return Ok(None);
    };
    message_edit::Entity::insert(message_edit::ActiveModel {
        id: Set(edit_id.to_string()),
        message_id: Set(message_id.to_string()),
        conversation_id: Set(current.conversation_id.clone()),
        editor_id: Set(editor.to_string()),
        previous_content: Set(current.content.clone()),
        content: Set(content.to_string()),
        edited_at: Set(at),
    })
    .exec_without_returning(&txn)
    .await?;
    let updated = message::Entity::update(message::ActiveModel {
        id: ActiveValue::Unchanged(message_id.to_string()),
        content: Set(content.to_string()),
        edited_at: Set(Some(at)),
        ..Default::default()
    })
    .exec(&txn)
    .await?;
    txn.commit().await?;
    Ok(Some(updated))
}

/// Deletes a message for everyone: its content, metadata, attachments (links included, so
/// members can no longer download them), reactions and edit history go; the row stays as a
/// tombstone so `seq` stays gapless. `None` when it was already deleted or does not exist.
pub async fn delete_for_everyone(
    db: &DatabaseConnection,
    message_id: &str,
    at: DateTime<Utc>,
) -> Result<Option<message::Model>, DbErr> {
    let txn = super::begin_write(db).await?;
    if lock_message(&txn, message_id).await?.filter(|m| m.deleted_at.is_none()).is_none() {
        txn.rollback().await?;
        return Ok(None);
    }
    let updated = message::Entity::update(message::ActiveModel {
        id: ActiveValue::Unchanged(message_id.to_string()),
        content: Set(String::new()),
        metadata: Set(None),
        attachments: Set(None),
        deleted_at: Set(Some(at)),
        ..Default::default()
    })
    .exec(&txn)
    .await?;
    message_edit::Entity::delete_many().filter(message_edit::Column::MessageId.eq(message_id)).exec(&txn).await?;
    message_attachment::Entity::delete_many()
        .filter(message_attachment::Column::MessageId.eq(message_id))
        .exec(&txn)
        .await?;
    reaction::Entity::delete_many().filter(reaction::Column::MessageId.eq(message_id)).exec(&txn).await?;
    txn.commit().await?;
    Ok(Some(updated))
}

/// Hides a message from one user's history. False when it already was.
pub async fn hide(
    db: &DatabaseConnection,
    message_id: &str,
    conversation_id: &str,
    user: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let inserted = hidden_message::Entity::insert(hidden_message::ActiveModel {
        message_id: Set(message_id.to_string()),
        user_id: Set(user.to_string()),
        conversation_id: Set(conversation_id.to_string()),
        hidden_at: Set(at),
    })
    .on_conflict(
        OnConflict::columns([hidden_message::Column::MessageId, hidden_message::Column::UserId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(inserted > 0)
}

/// Which of these messages `user` hid.
pub async fn hidden_among(db: &DatabaseConnection, user: &str, message_ids: &[String]) -> Result<Vec<String>, DbErr> {
    if message_ids.is_empty() {
        return Ok(Vec::new());
    }
    hidden_message::Entity::find()
        .select_only()
        .column(hidden_message::Column::MessageId)
        .filter(hidden_message::Column::UserId.eq(user))
        .filter(hidden_message::Column::MessageId.is_in(message_ids.iter().cloned()))
        .into_tuple()
        .all(db)
        .await
}

/// A message's edits, oldest first.
pub async fn history(db: &DatabaseConnection, message_id: &str) -> Result<Vec<message_edit::Model>, DbErr> {
    message_edit::Entity::find()
        .filter(message_edit::Column::MessageId.eq(message_id))
        .order_by_asc(message_edit::Column::EditedAt)
        .order_by_asc(message_edit::Column::Id)
        .all(db)
        .await
}
