//! Socialink's per-device queues (see the `m20261220_000005_socialink` migration): one row per
//! (registered active device, message), made in the transaction that stores the message, and
//! removed on acknowledgement, deletion, expiry, deactivation or the queue TTL.

use chrono::{DateTime, Utc};
use entity::message;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, FromQueryResult, Statement, Value};

use super::prekeys::statement;

/// Queues each newly stored message for every active keyed device of every member of its
/// conversation, except the device that sent it: one statement for the whole batch, in the
/// batch's transaction, so a message is queued exactly when it is stored. Entries are numbered
/// in batch order, which is `seq` order per conversation.
pub async fn enqueue(txn: &DatabaseTransaction, stored: &[&message::Model]) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    // Six values a row; 1,000 rows stay far below SQLite's limit of bound values.
    for (chunk_no, chunk) in stored.chunks(1000).enumerate() {
        let rows = chunk.iter().enumerate().map(|(i, m)| {
            [
                Value::from(m.id.clone()),
                Value::from(m.conversation_id.clone()),
                Value::from(m.sender_id.clone()),
                Value::from(m.sender_device_id.clone().unwrap_or_default()),
                Value::from(m.created_at),
                Value::from((chunk_no * 1000 + i) as i64),
            ]
        });
        let (list, values) = super::values_list(backend, Vec::new(), rows);
        let sql = format!(
            "INSERT INTO socialink_queue (device_row, message_id, conversation_id, queued_at) \
             SELECT d.id, v.column1, v.column2, v.column5 \
             FROM (VALUES {list}) AS v \
             JOIN members m ON m.conversation_id = v.column2 \
             JOIN socialink_devices d ON d.user_id = m.user_id AND d.is_active = TRUE \
             WHERE NOT (d.user_id = v.column3 AND d.device_id = v.column4) \
             ORDER BY v.column6, d.id"
        );
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    Ok(())
}

/// A queued message with its place in the queue.
pub struct Queued {
    pub position: i64,
    pub message: message::Model,
}

#[derive(FromQueryResult)]
struct Position {
    queue_position: i64,
}

/// Up to `limit` entries of a device's queue after `after` (a position), in queue order,
/// leaving out what expired, was deleted for everyone, or is older than `oldest`.
pub async fn list(
    db: &DatabaseConnection,
    device_row: &str,
    after: i64,
    limit: u64,
    now: DateTime<Utc>,
    oldest: DateTime<Utc>,
) -> Result<Vec<Queued>, DbErr> {
    let backend = db.get_database_backend();
    let stmt = statement(
        backend,
        "SELECT q.id AS queue_position, m.* FROM socialink_queue q JOIN messages m ON m.id = q.message_id \
         WHERE q.device_row = $1 AND q.id > $2 AND m.deleted_at IS NULL \
           AND (m.expires_at IS NULL OR m.expires_at > $3) AND q.queued_at > $4 \
         ORDER BY q.id LIMIT $5",
        vec![device_row.into(), after.into(), now.into(), oldest.into(), (limit as i64).into()],
    );
    let rows = db.query_all_raw(stmt).await?;
    rows.iter()
        .map(|row| {
            Ok(Queued {
                position: Position::from_query_result(row, "")?.queue_position,
                message: message::Model::from_query_result(row, "")?,
            })
        })
        .collect()
}

/// Whether a device's queue holds a message.
pub async fn holds(db: &DatabaseConnection, device_row: &str, message_id: &str) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(statement(
            backend,
            "SELECT 1 AS one FROM socialink_queue WHERE device_row = $1 AND message_id = $2",
            vec![device_row.into(), message_id.into()],
        ))
        .await?;
    Ok(row.is_some())
}

/// Removes the listed messages from one device's queue. Returns (removed, remaining).
pub async fn acknowledge(
    db: &DatabaseConnection,
    device_row: &str,
    message_ids: &[String],
) -> Result<(u64, u64), DbErr> {
    let backend = db.get_database_backend();
    let mut removed = 0;
    for chunk in message_ids.chunks(500) {
        let mut values: Vec<Value> = vec![device_row.into()];
        let mut marks = Vec::with_capacity(chunk.len());
        for id in chunk {
            values.push(id.clone().into());
            marks.push(format!("${}", values.len()));
        }
        let text =
            format!("DELETE FROM socialink_queue WHERE device_row = $1 AND message_id IN ({})", marks.join(", "));
        removed += db.execute_raw(statement(backend, &text, values)).await?.rows_affected();
    }
    Ok((removed, remaining(db, device_row).await?))
}

/// Entries left in a device's queue.
pub async fn remaining(db: &DatabaseConnection, device_row: &str) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(statement(
            backend,
            "SELECT COUNT(*) AS n FROM socialink_queue WHERE device_row = $1",
            vec![device_row.into()],
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0).max(0) as u64)
}

/// Drops a message from every queue (deleted for everyone, or expired).
pub async fn drop_message<C: ConnectionTrait>(db: &C, message_id: &str) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    db.execute_raw(statement(backend, "DELETE FROM socialink_queue WHERE message_id = $1", vec![message_id.into()]))
        .await?;
    Ok(())
}

/// Drops a message from the queues of one user's devices (they deleted it for themselves).
pub async fn drop_for_user(db: &DatabaseConnection, message_id: &str, user: &str) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    db.execute_raw(statement(
        backend,
        "DELETE FROM socialink_queue WHERE message_id = $1 \
         AND device_row IN (SELECT id FROM socialink_devices WHERE user_id = $2)",
        vec![message_id.into(), user.into()],
    ))
    .await?;
    Ok(())
}

/// Drops every entry queued before `oldest` (`OFFLINE_QUEUE_TTL_DAYS`).
pub async fn drop_older_than(db: &DatabaseConnection, oldest: DateTime<Utc>) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    Ok(db
        .execute_raw(statement(backend, "DELETE FROM socialink_queue WHERE queued_at <= $1", vec![oldest.into()]))
        .await?
        .rows_affected())
}

/// A message that self-destructed, as the statement that deleted it returned it.
pub struct Expired {
    pub message_id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_id: String,
}

/// Deletes the messages whose `expires_at` passed: their content goes, the row stays as a
/// tombstone (so `seq` stays gapless for other dialects), and their queue entries go, in one
/// transaction. The `UPDATE … RETURNING` decides which instance deleted each message, so each
/// is announced exactly once however many instances sweep.
pub async fn sweep_expired(db: &DatabaseConnection, now: DateTime<Utc>, limit: u64) -> Result<Vec<Expired>, DbErr> {
    let backend = db.get_database_backend();
    let txn = super::begin_write(db).await?;
    let rows = txn
        .query_all_raw(statement(
            backend,
            "UPDATE messages SET content = '', metadata = NULL, attachments = NULL, ephemeral_key = NULL, \
                    deleted_at = $1 \
             WHERE id IN (SELECT id FROM messages WHERE expires_at IS NOT NULL AND expires_at <= $1 \
                          AND deleted_at IS NULL ORDER BY expires_at LIMIT $2) \
               AND deleted_at IS NULL \
             RETURNING id, conversation_id, seq, sender_id",
            vec![now.into(), (limit as i64).into()],
        ))
        .await?;
    let expired: Vec<Expired> = rows
        .iter()
        .map(|r| {
            Ok(Expired {
                message_id: r.try_get("", "id")?,
                conversation_id: r.try_get("", "conversation_id")?,
                seq: r.try_get("", "seq")?,
                sender_id: r.try_get("", "sender_id")?,
            })
        })
        .collect::<Result<_, DbErr>>()?;
    for e in &expired {
        drop_message(&txn, &e.message_id).await?;
    }
    txn.commit().await?;
    Ok(expired)
}

/// A page of a conversation as `user` sees it for Socialink: without messages they hid or
/// cleared, deleted for everyone, or expired. `before`: the newest `limit` below it, newest
/// first; `after`: the oldest `limit` above it, oldest first.
#[allow(clippy::too_many_arguments)]
pub async fn history(
    db: &DatabaseConnection,
    chat: &str,
    user: &str,
    cleared_seq: i64,
    before: Option<i64>,
    after: Option<i64>,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<Vec<message::Model>, DbErr> {
    let backend = db.get_database_backend();
    let (bound, order) = match (after, before) {
        (Some(after), _) => (format!("AND m.seq > {}", after.max(0)), "ASC"),
        (None, Some(before)) => (format!("AND m.seq < {before}"), "DESC"),
        (None, None) => (String::new(), "DESC"),
    };
    let text = format!(
        "SELECT m.* FROM messages m WHERE m.conversation_id = $1 AND m.seq > $2 {bound} \
           AND m.deleted_at IS NULL AND (m.expires_at IS NULL OR m.expires_at > $3) \
           AND m.id NOT IN (SELECT h.message_id FROM hidden_messages h WHERE h.user_id = $4 AND h.conversation_id = $1) \
         ORDER BY m.seq {order} LIMIT $5"
    );
    let rows = db
        .query_all_raw(statement(
            backend,
            &text,
            vec![chat.into(), cleared_seq.into(), now.into(), user.into(), (limit as i64).into()],
        ))
        .await?;
    rows.iter().map(|row| message::Model::from_query_result(row, "")).collect()
}
