//! Devices and their delivery cursors (see the `m20261216_000004_devices` migration): what
//! each device of a member was handed and confirmed, per conversation.
//!
//! Every (conversation, member, known device) has a cursor row: a device seen for the first
//! time gets one per conversation of its user, and a member who joins gets one per known
//! device. So a device that was off is pushed, on reconnect, what it has not had, also in a
//! conversation that was created while it was off.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};

/// The device of connections that name none.
pub const DEFAULT_DEVICE: &str = "";

/// Records a device. The first time, it starts in every conversation of its user where the
/// user's most advanced device is: a new device (a new install) is not pushed the whole
/// history, it asks for the history it wants. Returns true when the device is new.
pub async fn register(db: &DatabaseConnection, user: &str, device: &str) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let now = chrono::Utc::now();
    let inserted = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO devices (user_id, device_id, first_seen_at) VALUES ({}, {}, {}) ON CONFLICT DO NOTHING",
                p(backend, 1),
                p(backend, 2),
                p(backend, 3)
            ),
            [user.into(), device.into(), now.into()],
        ))
        .await?
        .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        format!(
            "INSERT INTO device_cursors (user_id, device_id, conversation_id, delivered_seq) \
             SELECT m.user_id, {device}, m.conversation_id, \
                    COALESCE(MAX(c.delivered_seq), m.delivered_seq) \
             FROM members m LEFT JOIN device_cursors c \
               ON c.user_id = m.user_id AND c.conversation_id = m.conversation_id \
             WHERE m.user_id = {user} \
             GROUP BY m.user_id, m.conversation_id, m.delivered_seq \
             ON CONFLICT DO NOTHING",
            device = p(backend, 1),
            user = p(backend, 2),
        ),
        [device.into(), user.into()],
    ))
    .await?;
    Ok(true)
}

/// Starts every known device of `user` at `seq` in a conversation they just joined (or that
/// was just created with them): earlier messages are history, not backlog.
pub async fn start_member<C: ConnectionTrait>(db: &C, conversation: &str, user: &str, seq: i64) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        format!(
            "INSERT INTO device_cursors (user_id, device_id, conversation_id, delivered_seq) \
             SELECT user_id, device_id, {conversation}, {seq} FROM devices WHERE user_id = {user} \
             ON CONFLICT DO NOTHING",
            conversation = p(backend, 1),
            seq = p(backend, 2),
            user = p(backend, 3),
        ),
        [conversation.into(), seq.into(), user.into()],
    ))
    .await?;
    Ok(())
}

/// Every conversation of `user` with this device's cursor and the conversation's last `seq`:
/// `(conversation id, delivered_seq, last_seq)`. A conversation without a row for the device
/// (a race between its first connection and a join) counts from the member's own cursor.
pub async fn cursors(db: &DatabaseConnection, user: &str, device: &str) -> Result<Vec<(String, i64, i64)>, DbErr> {
    let rows = db.query_all_raw(cursors_query(db.get_database_backend(), user, device)).await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String>("", "chat")?,
                r.try_get::<i64>("", "delivered")?,
                r.try_get::<i64>("", "last_seq")?,
            ))
        })
        .collect()
}

/// The statement of [`cursors`], which every catch-up runs (19,000 at once in a reconnect
/// wave). Its plan must not depend on table statistics: right after a bulk import, or while a
/// database grows quickly, PostgreSQL has none yet, and it planned a join with `conversations`
/// as a hash join over the whole table (6 ms a call at 19,000 conversations, against 0.2 ms).
/// Read per row, each `last_seq` is one primary-key lookup, whatever the planner knows; the
/// member's rows come from `idx_members_user` and the cursor from its primary key.
pub fn cursors_query(backend: DbBackend, user: &str, device: &str) -> Statement {
    Statement::from_sql_and_values(
        backend,
        format!(
            "SELECT m.conversation_id AS chat, COALESCE(c.delivered_seq, m.delivered_seq) AS delivered, \
                    COALESCE((SELECT v.last_seq FROM conversations v WHERE v.id = m.conversation_id), 0) AS last_seq \
             FROM members m \
             LEFT JOIN device_cursors c ON c.user_id = m.user_id AND c.device_id = {device} \
                  AND c.conversation_id = m.conversation_id \
             WHERE m.user_id = {user}",
            device = p(backend, 1),
            user = p(backend, 2),
        ),
        [device.into(), user.into()],
    )
}

/// Moves device cursors forward, never back, in one transaction: `(conversation, user,
/// device, seq)`. The delivery ledger's periodic write.
pub async fn advance(db: &DatabaseConnection, cursors: &[(&str, &str, &str, i64)]) -> Result<(), DbErr> {
    if cursors.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let greatest = match backend {
        DbBackend::Postgres => "GREATEST",
        _ => "MAX",
    };
    let txn = super::begin_write(db).await?;
    // Four values a row; 1,000 rows stay far below SQLite's limit of bound values.
    for chunk in cursors.chunks(1000) {
        let rows = chunk.iter().map(|(conversation, user, device, seq)| {
            [Value::from(*user), Value::from(*device), Value::from(*conversation), Value::from(*seq)]
        });
        let (list, values) = super::values_list(backend, Vec::new(), rows);
        // The rows exist (see the module doc); the upsert keeps a raced one too.
        let sql = format!(
            "INSERT INTO device_cursors (user_id, device_id, conversation_id, delivered_seq) \
             SELECT column1, column2, column3, column4 FROM (VALUES {list}) AS v \
             WHERE true \
             ON CONFLICT (user_id, device_id, conversation_id) \
             DO UPDATE SET delivered_seq = {greatest}(device_cursors.delivered_seq, excluded.delivered_seq)"
        );
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    txn.commit().await
}

/// Moves every device of `user` to at least `seq` in a conversation (they cleared it).
pub async fn advance_all<C: ConnectionTrait>(db: &C, conversation: &str, user: &str, seq: i64) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        format!(
            "UPDATE device_cursors SET delivered_seq = {seq} \
             WHERE conversation_id = {conversation} AND user_id = {user} AND delivered_seq < {seq}",
            seq = p(backend, 1),
            conversation = p(backend, 2),
            user = p(backend, 3),
        ),
        [seq.into(), conversation.into(), user.into()],
    ))
    .await?;
    Ok(())
}

/// Forgets a member's cursors in a conversation they left.
pub async fn forget_member<C: ConnectionTrait>(db: &C, conversation: &str, user: &str) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        format!("DELETE FROM device_cursors WHERE conversation_id = {} AND user_id = {}", p(backend, 1), p(backend, 2)),
        [conversation.into(), user.into()],
    ))
    .await?;
    Ok(())
}

fn p(backend: DbBackend, n: usize) -> String {
    super::placeholder(backend, n)
}
