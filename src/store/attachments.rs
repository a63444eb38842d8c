//! Attachment rows and who may read them.

use entity::{attachment, member, message_attachment};
use sea_orm::{
    sea_query::{Expr, ExprTrait},
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect, QueryTrait, Set,
};

pub async fn insert(db: &DatabaseConnection, row: attachment::Model) -> Result<(), DbErr> {
    attachment::Entity::insert(attachment::ActiveModel {
        id: Set(row.id),
        uploader_id: Set(row.uploader_id),
        kind: Set(row.kind),
        content_type: Set(row.content_type),
        file_name: Set(row.file_name),
        size: Set(row.size),
        width: Set(row.width),
        height: Set(row.height),
        has_thumbnail: Set(row.has_thumbnail),
        created_at: Set(row.created_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn get(db: &DatabaseConnection, id: &str) -> Result<Option<attachment::Model>, DbErr> {
    attachment::Entity::find_by_id(id.to_string()).one(db).await
}

pub async fn get_many(db: &DatabaseConnection, ids: &[String]) -> Result<Vec<attachment::Model>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    attachment::Entity::find().filter(attachment::Column::Id.is_in(ids.iter().cloned())).all(db).await
}

/// Whether `user` is a member of a conversation the attachment was sent to.
pub async fn shared_with(db: &DatabaseConnection, attachment_id: &str, user: &str) -> Result<bool, DbErr> {
    let sent_to = message_attachment::Entity::find()
        .select_only()
        .column(message_attachment::Column::ConversationId)
        .filter(message_attachment::Column::AttachmentId.eq(attachment_id))
        .into_query();
    let membership = member::Entity::find()
        .filter(member::Column::UserId.eq(user))
        .filter(Expr::col((member::Entity, member::Column::ConversationId)).in_subquery(sent_to))
        .one(db)
        .await?;
    Ok(membership.is_some())
}
