//! Messages: the batched, gapless append and the reads by `seq`.

use crate::domain::UserId;
use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use entity::{conversation, member, message, message_attachment};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, IdenStatic, ModelTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, Statement, Value,
};

use super::is_postgres;

/// A message to append; `id` is chosen by the caller, `seq` and the time by the append.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    /// The sending device (`''` for the user's default device).
    pub sender_device_id: String,
    pub kind: String,
    pub content: String,
    pub reply_to_id: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub temp_id: Option<String>,
    pub encrypted: bool,
    /// The attachment summaries stored with the message (JSON, see the entity).
    pub attachments: Option<serde_json::Value>,
    /// The attachments to link to the message (and so to its conversation's members), in
    /// the same transaction as the insert.
    pub attachment_ids: Vec<String>,
    /// The member it is addressed to (`None`: everyone).
    pub recipient_id: Option<String>,
    /// `base64` when `content` holds bytes (see `BodyEncoding`); `None` for text.
    pub content_encoding: Option<String>,
    pub ephemeral_key: Option<String>,
    /// A self-destructing message expires this long after it is stored.
    pub expires_after: Option<chrono::Duration>,
}

pub enum Appended {
    /// Stored, with the conversation's members as the transaction saw them: who must hear of it.
    New {
        message: message::Model,
        members: Arc<[UserId]>,
    },
    /// The same sender already stored this `temp_id` for the same recipient in this conversation.
    Duplicate(message::Model),
    NoConversation,
    /// The sender is not a member of the conversation.
    NotMember,
}

/// Appends a batch in one transaction (one fsync for many messages), with a fixed number of
/// statements however large the batch: the conversations are locked together (in id order,
/// so concurrent batches cannot deadlock), their members are read together (which both
/// authorizes each sender and names each message's audience), resent `temp_id`s are found
/// with one query, the new messages go in with one multi-row insert, and every
/// conversation's `last_seq` is written by one `UPDATE`. The locks come first, so two
/// instances racing on one resend cannot both insert, and `seq` is taken from the locked rows
/// so it stays gapless: a rollback undoes it all.
///
/// Resends are rare, so a batch is first written without looking for earlier sends: the
/// unique index on `(conversation, sender, temp_id)` refuses a resend's row, and only then is
/// the transaction rolled back and the batch written again, looking each `temp_id` up.
pub async fn append_batch(db: &DatabaseConnection, batch: &[&NewMessage]) -> Result<Vec<Appended>, DbErr> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(results) = append(db, batch, Resends::Unexpected).await? {
        return Ok(results);
    }
    append(db, batch, Resends::LookedUp).await?.ok_or_else(|| DbErr::Custom("a resend was not found".into()))
}

#[derive(Clone, Copy, PartialEq)]
enum Resends {
    /// Write as if no message of the batch was sent before; give up (`None`) if one was.
    Unexpected,
    /// Look earlier sends up first and answer them with the stored original.
    LookedUp,
}

async fn append(
    db: &DatabaseConnection,
    batch: &[&NewMessage],
    resends: Resends,
) -> Result<Option<Vec<Appended>>, DbErr> {
    let txn = super::begin_write(db).await?;
    let mut conversation_ids: Vec<&str> = batch.iter().map(|m| m.conversation_id.as_str()).collect();
    conversation_ids.sort_unstable();
    conversation_ids.dedup();
    let mut last_seq = lock_conversations(&txn, &conversation_ids).await?;
    // A message's time is taken under its conversation's lock, like its `seq`: a later `seq`
    // never has an earlier time, also between instances (up to their clocks' skew). The time
    // a request was made would not do: two senders race to the lock.
    let stamped = Utc::now();
    let before = last_seq.clone();
    let members = members_of(&txn, &conversation_ids).await?;

    // Earlier sends of the same (conversation, sender, temp_id, recipient): in the store (looked
    // up only on the second attempt) or earlier in this batch. Keys borrow from both.
    let earlier = match resends {
        Resends::LookedUp => sent_before(&txn, batch).await?,
        Resends::Unexpected => Vec::new(),
    };
    let mut sent: HashMap<ResendKey<'_>, Sent> = HashMap::new();
    for (i, m) in earlier.iter().enumerate() {
        if let Some(temp_id) = m.temp_id.as_deref() {
            sent.insert((&m.conversation_id, &m.sender_id, temp_id, &m.recipient_id), Sent::Stored(i));
        }
    }

    let mut results = Vec::with_capacity(batch.len());
    let mut links = Vec::new();
    for new in batch {
        let conversation = new.conversation_id.as_str();
        let (Some(seq), Some(audience)) = (last_seq.get_mut(conversation), members.get(conversation)) else {
            results.push(Appended::NoConversation);
            continue;
        };
        if !audience.iter().any(|m| *m == new.sender_id) {
            results.push(Appended::NotMember);
            continue;
        }
        let recipient = new.recipient_id.as_deref().unwrap_or_default();
        let key = new.temp_id.as_deref().map(|t| (conversation, new.sender_id.as_str(), t, recipient));
        let original = match key.and_then(|k| sent.get(&k)) {
            Some(Sent::Stored(i)) => earlier.get(*i).cloned(),
            Some(Sent::InBatch(i)) => match results.get(*i) {
                Some(Appended::New { message, .. }) => Some(message.clone()),
                _ => None,
            },
            None => None,
        };
        if let Some(original) = original {
            results.push(Appended::Duplicate(original));
            continue;
        }
        *seq += 1;
        let model = message::Model {
            id: new.id.clone(),
            conversation_id: new.conversation_id.clone(),
            seq: *seq,
            sender_id: new.sender_id.clone(),
            kind: new.kind.clone(),
            content: new.content.clone(),
            reply_to_id: new.reply_to_id.clone(),
            metadata: new.metadata.clone(),
            temp_id: new.temp_id.clone(),
            created_at: stamped,
            edited_at: None,
            deleted_at: None,
            encrypted: new.encrypted,
            attachments: new.attachments.clone(),
            sender_device_id: Some(new.sender_device_id.clone()),
            recipient_id: recipient.to_string(),
            content_encoding: new.content_encoding.clone(),
            ephemeral_key: new.ephemeral_key.clone(),
            expires_at: new.expires_after.map(|after| stamped + after),
        };
        links.extend(new.attachment_ids.iter().map(|attachment| message_attachment::ActiveModel {
            message_id: Set(new.id.clone()),
            attachment_id: Set(attachment.clone()),
            conversation_id: Set(new.conversation_id.clone()),
        }));
        if let Some(key) = key {
            sent.insert(key, Sent::InBatch(results.len()));
        }
        results.push(Appended::New { message: model, members: audience.clone() });
    }

    let stored: Vec<&message::Model> = results
        .iter()
        .filter_map(|r| match r {
            Appended::New { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    // SQLite allows 32,766 bound values per statement; a chunk of 500 rows stays well below.
    for chunk in stored.chunks(500) {
        let inserted = insert_rows(&txn, chunk, resends).await?;
        if inserted < chunk.len() as u64 {
            // A resend: nothing of this attempt may stay, or `seq` would have a gap.
            txn.rollback().await?;
            return Ok(None);
        }
    }
    for chunk in links.chunks(1000) {
        message_attachment::Entity::insert_many(chunk.to_vec()).exec_without_returning(&txn).await?;
    }
    super::queues::enqueue(&txn, &stored).await?;
    let now = stamped;
    let advanced: Vec<(&str, i64)> =
        last_seq.iter().filter(|(id, seq)| before.get(*id) != Some(*seq)).map(|(id, seq)| (*id, *seq)).collect();
    set_last_seqs(&txn, &advanced, now).await?;
    txn.commit().await?;
    Ok(Some(results))
}

/// A resend's identity: conversation, sender, `temp_id`, recipient (`''`: everyone).
type ResendKey<'a> = (&'a str, &'a str, &'a str, &'a str);

/// Where an earlier send of a [`ResendKey`] is.
enum Sent {
    /// In the store: its index among the looked-up messages.
    Stored(usize),
    /// Earlier in this batch: its index among the batch's results.
    InBatch(usize),
}

/// The columns a new message is written with; `edited_at` and `deleted_at` are left to their
/// default (NULL).
const INSERTED_COLUMNS: [message::Column; 17] = {
    use message::Column::*;
    [
        Id,
        ConversationId,
        Seq,
        SenderId,
        Kind,
        Content,
        ReplyToId,
        Metadata,
        TempId,
        CreatedAt,
        Encrypted,
        Attachments,
        SenderDeviceId,
        RecipientId,
        ContentEncoding,
        EphemeralKey,
        ExpiresAt,
    ]
};

/// Inserts new messages with one multi-row `INSERT`, built straight from the models: each
/// value as the model gives it (`ModelTrait::get`, what SeaORM binds for it too). SeaORM's
/// `insert_many` turned each row into an `ActiveModel` and a tree of expressions first, which
/// cost more than the database's own work per message (callgrind). Returns how many rows went
/// in: on the first attempt a resend's row is skipped by its unique index instead of failing
/// the statement, so the caller sees fewer rows than it gave.
async fn insert_rows(txn: &DatabaseTransaction, rows: &[&message::Model], resends: Resends) -> Result<u64, DbErr> {
    let backend = txn.get_database_backend();
    let (list, values) =
        super::values_list(backend, Vec::new(), rows.iter().map(|m| INSERTED_COLUMNS.map(|c| m.get(c))));
    let on_conflict = match resends {
        Resends::Unexpected => " ON CONFLICT (conversation_id, sender_id, temp_id, recipient_id) DO NOTHING",
        Resends::LookedUp => "",
    };
    let names = INSERTED_COLUMNS.map(|c| c.as_str()).join(", ");
    let sql = format!("INSERT INTO messages ({names}) VALUES {list}{on_conflict}");
    Ok(txn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?.rows_affected())
}

/// Returns each existing conversation's current `last_seq`, holding the rows' locks
/// (PostgreSQL) until the transaction ends. SQLite has one writer at a time, which gives the
/// same guarantee.
async fn lock_conversations<'a>(txn: &DatabaseTransaction, ids: &[&'a str]) -> Result<HashMap<&'a str, i64>, DbErr> {
    let mut query = conversation::Entity::find()
        .select_only()
        .column(conversation::Column::Id)
        .column(conversation::Column::LastSeq)
        .filter(conversation::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(conversation::Column::Id);
    if is_postgres(txn) {
        query = query.lock_exclusive();
    }
    let found: HashMap<String, i64> = query.into_tuple::<(String, i64)>().all(txn).await?.into_iter().collect();
    Ok(ids.iter().filter_map(|id| found.get(*id).map(|seq| (*id, *seq))).collect())
}

/// The stored messages that a batch's `temp_id`s name: one index probe per message with a
/// `temp_id` (a join with the batch's keys), where `conversation IN (…) AND temp_id IN (…)`
/// would compare every message of every conversation in the batch with every `temp_id`.
async fn sent_before(txn: &DatabaseTransaction, batch: &[&NewMessage]) -> Result<Vec<message::Model>, DbErr> {
    let keys: Vec<(&str, &str, &str, &str)> = batch
        .iter()
        .filter_map(|m| {
            let recipient = m.recipient_id.as_deref().unwrap_or_default();
            m.temp_id.as_deref().map(|t| (m.conversation_id.as_str(), m.sender_id.as_str(), t, recipient))
        })
        .collect();
    let backend = txn.get_database_backend();
    let mut found = Vec::new();
    // Four values a key; 1,000 keys stay far below SQLite's limit of bound values.
    for chunk in keys.chunks(1000) {
        let rows = chunk.iter().map(|(conversation, sender, temp_id, recipient)| {
            [Value::from(*conversation), Value::from(*sender), Value::from(*temp_id), Value::from(*recipient)]
        });
        let (list, values) = super::values_list(backend, Vec::new(), rows);
        let sql = format!(
            "SELECT messages.* FROM messages JOIN (VALUES {list}) AS v \
             ON messages.conversation_id = v.column1 AND messages.sender_id = v.column2 \
             AND messages.temp_id = v.column3 AND messages.recipient_id = v.column4"
        );
        let statement = Statement::from_sql_and_values(backend, sql, values);
        found.extend(message::Entity::find().from_raw_sql(statement).all(txn).await?);
    }
    Ok(found)
}

/// The members of each conversation, in the order they joined.
async fn members_of(txn: &DatabaseTransaction, ids: &[&str]) -> Result<HashMap<String, Arc<[UserId]>>, DbErr> {
    let rows: Vec<(String, String)> = member::Entity::find()
        .select_only()
        .column(member::Column::ConversationId)
        .column(member::Column::UserId)
        .filter(member::Column::ConversationId.is_in(ids.iter().copied()))
        .order_by_asc(member::Column::ConversationId)
        .order_by_asc(member::Column::JoinedAt)
        .into_tuple()
        .all(txn)
        .await?;
    let mut grouped: HashMap<String, Vec<UserId>> = HashMap::with_capacity(ids.len());
    for (conversation, user) in rows {
        grouped.entry(conversation).or_default().push(user.into());
    }
    Ok(grouped.into_iter().map(|(c, users)| (c, users.into())).collect())
}

/// Writes each conversation's new `last_seq` (and `updated_at`) with one statement per chunk.
async fn set_last_seqs(txn: &DatabaseTransaction, seqs: &[(&str, i64)], now: DateTime<Utc>) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    for chunk in seqs.chunks(1000) {
        let rows = chunk.iter().map(|(id, seq)| [Value::from(*id), Value::from(*seq)]);
        let (list, values) = super::values_list(backend, vec![now.into()], rows);
        let sql = format!(
            "UPDATE conversations SET last_seq = v.column2, updated_at = {} FROM (VALUES {list}) AS v \
             WHERE conversations.id = v.column1",
            super::placeholder(backend, 1),
        );
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    Ok(())
}

/// The messages `reader` may read: addressed to everyone or to them, or sent by them.
pub(crate) fn readable_by(reader: &str) -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(message::Column::RecipientId.eq(""))
        .add(message::Column::RecipientId.eq(reader))
        .add(message::Column::SenderId.eq(reader))
}

/// Messages with `seq > after`, oldest first (every one: the hub's catch-up notes the `seq`s
/// of messages addressed to others too).
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

/// Messages with `seq > after` that `reader` may read, oldest first.
pub async fn readable_after(
    db: &DatabaseConnection,
    conversation_id: &str,
    reader: &str,
    after: i64,
    limit: u64,
) -> Result<Vec<message::Model>, DbErr> {
    message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation_id))
        .filter(readable_by(reader))
        .filter(message::Column::Seq.gt(after))
        .order_by_asc(message::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

pub async fn get(db: &DatabaseConnection, id: &str) -> Result<Option<message::Model>, DbErr> {
    message::Entity::find_by_id(id.to_string()).one(db).await
}

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;

    use super::*;
    use crate::store::{self, conversations::NewConversation};

    #[test]
    fn every_column_is_written_or_left_to_its_default() {
        let mut expected: Vec<&str> = message::Column::iter().map(|c| c.as_str()).collect();
        let mut written: Vec<&str> =
            INSERTED_COLUMNS.iter().map(|c| c.as_str()).chain(["edited_at", "deleted_at"]).collect();
        expected.sort_unstable();
        written.sort_unstable();
        assert_eq!(written, expected, "the batch insert and the messages entity name different columns");
    }

    fn new_message(id: &str, chat: &str, sender: &str, temp_id: &str) -> NewMessage {
        NewMessage {
            id: id.into(),
            conversation_id: chat.into(),
            sender_id: sender.into(),
            sender_device_id: "phone".into(),
            kind: "text".into(),
            content: format!("hello from {id}"),
            reply_to_id: None,
            metadata: None,
            temp_id: Some(temp_id.into()),
            encrypted: false,
            attachments: None,
            attachment_ids: Vec::new(),
            recipient_id: None,
            content_encoding: None,
            ephemeral_key: None,
            expires_after: None,
        }
    }

    async fn chat_of(db: &DatabaseConnection, id: &str, members: &[&str]) {
        store::users::ensure(db, members).await.expect("users");
        store::conversations::create(
            db,
            NewConversation {
                id: id.into(),
                kind: "group".into(),
                name: None,
                description: None,
                avatar: None,
                encrypted: false,
                direct_key: None,
                created_by: members[0].into(),
                members: members.iter().map(|m| (m.to_string(), "member".to_string())).collect(),
            },
        )
        .await
        .expect("a conversation");
    }

    /// Every field the batch insert binds comes back as written, `seq` counts on per
    /// conversation, and a resend (in the same batch or a later one) is answered with the
    /// original instead of being stored again.
    #[tokio::test]
    async fn a_batch_stores_every_field_and_answers_resends_with_the_original() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("append.db").display());
        let db = store::connect(&store::Settings::new(&url)).await.expect("connects");
        chat_of(&db, "chat-a", &["ann", "bob"]).await;
        chat_of(&db, "chat-b", &["ann"]).await;

        let mut full = new_message("m1", "chat-a", "ann", "t1");
        full.reply_to_id = Some("m0".into());
        full.metadata = Some(serde_json::json!({ "mentions": ["bob"], "n": 1 }));
        full.encrypted = true;
        full.attachments = Some(serde_json::json!([{ "id": "att-1", "kind": "image" }]));
        full.recipient_id = Some("bob".into());
        full.content_encoding = Some("base64".into());
        full.ephemeral_key = Some("a2V5".into());
        full.expires_after = Some(chrono::Duration::seconds(60));
        let second = new_message("m2", "chat-a", "bob", "t2");
        let resent_in_batch = new_message("m3", "chat-a", "bob", "t2");
        let other_chat = new_message("m4", "chat-b", "ann", "t1");
        let stranger = new_message("m5", "chat-b", "bob", "t5");

        let results =
            append_batch(&db, &[&full, &second, &resent_in_batch, &other_chat, &stranger]).await.expect("appends");
        let stored: Vec<message::Model> = results
            .iter()
            .filter_map(|r| match r {
                Appended::New { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            stored.iter().map(|m| (m.id.as_str(), m.seq)).collect::<Vec<_>>(),
            [("m1", 1), ("m2", 2), ("m4", 1)]
        );
        assert!(matches!(&results[2], Appended::Duplicate(m) if m.id == "m2"), "the in-batch resend is m2");
        assert!(matches!(&results[4], Appended::NotMember), "bob is not in chat-b");
        for written in &stored {
            let read = get(&db, &written.id).await.expect("reads").expect("stored");
            assert_eq!(&read, written, "read back differs from what the append returned");
        }
        let read = get(&db, "m1").await.expect("reads").expect("stored");
        assert_eq!(read.recipient_id, "bob");
        assert_eq!(read.metadata, full.metadata);
        assert_eq!(read.expires_at, Some(read.created_at + chrono::Duration::seconds(60)));
        assert_eq!(read.sender_device_id.as_deref(), Some("phone"));

        // A later batch: the resend of m1 takes the looked-up path, the new message goes on.
        let resent = new_message("m6", "chat-a", "ann", "t1");
        let mut resent = resent;
        resent.recipient_id = Some("bob".into());
        let next = new_message("m7", "chat-a", "ann", "t7");
        let results = append_batch(&db, &[&resent, &next]).await.expect("appends again");
        assert!(matches!(&results[0], Appended::Duplicate(m) if m.id == "m1"), "the resend is answered with m1");
        assert!(matches!(&results[1], Appended::New { message, .. } if message.seq == 3), "no gap in seq");
        assert!(get(&db, "m6").await.expect("reads").is_none(), "the resend was stored again");
    }
}
