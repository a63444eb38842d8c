//! Messages: the batched, gapless append and the reads by `seq`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{conversation, message, message_attachment};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::is_postgres;

/// A message to append; `id` and `created_at` are chosen by the caller.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    pub kind: String,
    pub content: String,
    pub reply_to_id: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub temp_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub encrypted: bool,
    /// The attachment summaries stored with the message (JSON, see the entity).
    pub attachments: Option<serde_json::Value>,
    /// The attachments to link to the message (and so to its conversation's members), in
    /// the same transaction as the insert.
    pub attachment_ids: Vec<String>,
}

pub enum Appended {
    New(message::Model),
    /// The same sender already stored this `temp_id` in this conversation.
    Duplicate(message::Model),
}

/// Appends a batch in one transaction (one fsync for many messages). Each conversation row
/// is locked before its `temp_id` is looked up, so two instances racing on one resend cannot
/// both insert, and `seq` is taken from the locked row so it stays gapless: a rollback undoes
/// the increment with the insert.
pub async fn append_batch(db: &DatabaseConnection, batch: &[NewMessage]) -> Result<Vec<Appended>, DbErr> {
    let txn = super::begin_write(db).await?;
    let mut out = Vec::with_capacity(batch.len());
    let mut last_seq: HashMap<&str, i64> = HashMap::new();
    // Lock conversations in one global order so concurrent batches cannot deadlock.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by(|a, b| batch[*a].conversation_id.cmp(&batch[*b].conversation_id));
    let mut results: Vec<Option<Appended>> = (0..batch.len()).map(|_| None).collect();
    for i in order {
        let new = &batch[i];
        let seq_before = match last_seq.get(new.conversation_id.as_str()) {
            Some(seq) => *seq,
            None => lock_conversation(&txn, &new.conversation_id).await?,
        };
        if let Some(temp_id) = &new.temp_id {
            let existing = message::Entity::find()
                .filter(message::Column::ConversationId.eq(&new.conversation_id))
                .filter(message::Column::SenderId.eq(&new.sender_id))
                .filter(message::Column::TempId.eq(temp_id))
                .one(&txn)
                .await?;
            if let Some(existing) = existing {
                last_seq.insert(&new.conversation_id, seq_before);
                results[i] = Some(Appended::Duplicate(existing));
                continue;
            }
        }
        let seq = seq_before + 1;
        conversation::Entity::update_many()
            .col_expr(conversation::Column::LastSeq, sea_orm::sea_query::Expr::value(seq))
            .col_expr(conversation::Column::UpdatedAt, sea_orm::sea_query::Expr::value(new.created_at))
            .filter(conversation::Column::Id.eq(&new.conversation_id))
            .exec(&txn)
            .await?;
        let row = message::ActiveModel {
            id: Set(new.id.clone()),
            conversation_id: Set(new.conversation_id.clone()),
            seq: Set(seq),
            sender_id: Set(new.sender_id.clone()),
            kind: Set(new.kind.clone()),
            content: Set(new.content.clone()),
            reply_to_id: Set(new.reply_to_id.clone()),
            metadata: Set(new.metadata.clone()),
            temp_id: Set(new.temp_id.clone()),
            created_at: Set(new.created_at),
            edited_at: Set(None),
            deleted_at: Set(None),
            encrypted: Set(new.encrypted),
            attachments: Set(new.attachments.clone()),
        };
        message::Entity::insert(row).exec_without_returning(&txn).await?;
        if !new.attachment_ids.is_empty() {
            let links = new.attachment_ids.iter().map(|attachment| message_attachment::ActiveModel {
                message_id: Set(new.id.clone()),
                attachment_id: Set(attachment.clone()),
                conversation_id: Set(new.conversation_id.clone()),
            });
            message_attachment::Entity::insert_many(links).exec_without_returning(&txn).await?;
        }
        last_seq.insert(&new.conversation_id, seq);
        results[i] = Some(Appended::New(message::Model {
            id: new.id.clone(),
            conversation_id: new.conversation_id.clone(),
            seq,
            sender_id: new.sender_id.clone(),
            kind: new.kind.clone(),
            content: new.content.clone(),
            reply_to_id: new.reply_to_id.clone(),
            metadata: new.metadata.clone(),
            temp_id: new.temp_id.clone(),
            created_at: new.created_at,
            edited_at: None,
            deleted_at: None,
            encrypted: new.encrypted,
            attachments: new.attachments.clone(),
        }));
    }
    txn.commit().await?;
    for r in results {
        out.push(r.ok_or_else(|| DbErr::Custom("batch item left unprocessed".into()))?);
    }
    Ok(out)
}

/// Returns the conversation's current `last_seq`, holding its row lock (PostgreSQL) until the
/// transaction ends. SQLite has one writer at a time, which gives the same guarantee.
async fn lock_conversation(txn: &DatabaseTransaction, id: &str) -> Result<i64, DbErr> {
    let mut query =
        conversation::Entity::find_by_id(id.to_string()).select_only().column(conversation::Column::LastSeq);
    if is_postgres(txn) {
        query = query.lock_exclusive();
    }
    query.into_tuple::<i64>().one(txn).await?.ok_or_else(|| DbErr::RecordNotFound(format!("conversation {id}")))
}

/// Messages with `seq > after`, oldest first.
pub async fn after(
    db: &DatabaseConnection,
    conversation_id: &str,
    after: i64,
    limit: u64,
) -> Result<Vec<message::Model>, DbErr> {
    message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation_id))
        .filter(message::Column::Seq.gt(after))
        .order_by_asc(message::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

pub async fn get(db: &DatabaseConnection, id: &str) -> Result<Option<message::Model>, DbErr> {
    message::Entity::find_by_id(id.to_string()).one(db).await
}
