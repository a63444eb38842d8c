//! Socialink (protocols/socialink.md): Signal-style device keys and per-device queues.
//!
//! * `socialink_devices`: a device registered through `keys/register`, with its identity key
//!   and registration id; `is_active` false once deactivated. `(user_id, device_id)` is the
//!   same device the core's per-device delivery knows (`devices`).
//! * `socialink_signed_prekeys`: every signed prekey a device uploaded; the newest is served.
//! * `socialink_prekeys`: one-time prekeys, oldest upload first (`id`), each handed out at most
//!   once (`used`), claimed by one atomic statement.
//! * `socialink_queue`: one entry per (registered active device, message) made in the
//!   transaction that stores the message; an entry leaves on acknowledgement, expiry,
//!   deletion, deactivation or the queue TTL.
//! * `messages`: `content_encoding` (`base64` when `content` holds bytes written by a
//!   byte-speaking dialect, else text), `ephemeral_key` (base64) and `expires_at`
//!   (self-destruct).
//!
//! The new tables are written in SQL per backend: their ordering keys are auto-incremented
//! integers (`INTEGER PRIMARY KEY AUTOINCREMENT` on SQLite, `BIGSERIAL` on PostgreSQL).

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    ContentEncoding,
    EphemeralKey,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        let (serial, ts, boolean, blob) = if postgres {
            ("BIGSERIAL PRIMARY KEY", "TIMESTAMPTZ", "BOOLEAN", "TEXT")
        } else {
            ("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT", "BOOLEAN", "TEXT")
        };
        let db = manager.get_connection();
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS socialink_devices (\
                   id VARCHAR(36) PRIMARY KEY, user_id VARCHAR(255) NOT NULL, device_id VARCHAR(255) NOT NULL, \
                   device_name VARCHAR(255) NOT NULL, registration_id BIGINT NOT NULL, identity_key {blob} NOT NULL, \
                   is_active {boolean} NOT NULL, last_seen {ts} NOT NULL, created_at {ts} NOT NULL, \
                   registered_at {ts} NOT NULL, UNIQUE (user_id, device_id))"
            ),
            "CREATE INDEX IF NOT EXISTS idx_socialink_devices_user ON socialink_devices (user_id, is_active)".into(),
            format!(
                "CREATE TABLE IF NOT EXISTS socialink_signed_prekeys (\
                   id {serial}, device_row VARCHAR(36) NOT NULL, key_id BIGINT NOT NULL, public_key {blob} NOT NULL, \
                   signature {blob} NOT NULL, created_at {ts} NOT NULL)"
            ),
            "CREATE INDEX IF NOT EXISTS idx_socialink_signed_prekeys_device ON socialink_signed_prekeys (device_row, id)"
                .into(),
            format!(
                "CREATE TABLE IF NOT EXISTS socialink_prekeys (\
                   id {serial}, device_row VARCHAR(36) NOT NULL, key_id BIGINT NOT NULL, public_key {blob} NOT NULL, \
                   used {boolean} NOT NULL DEFAULT FALSE, used_at {ts} NULL, UNIQUE (device_row, key_id))"
            ),
            "CREATE INDEX IF NOT EXISTS idx_socialink_prekeys_unused ON socialink_prekeys (device_row, used, id)".into(),
            format!(
                "CREATE TABLE IF NOT EXISTS socialink_queue (\
                   id {serial}, device_row VARCHAR(36) NOT NULL, message_id VARCHAR(64) NOT NULL, \
                   conversation_id VARCHAR(255) NOT NULL, queued_at {ts} NOT NULL, UNIQUE (device_row, message_id))"
            ),
            "CREATE INDEX IF NOT EXISTS idx_socialink_queue_device ON socialink_queue (device_row, id)".into(),
            "CREATE INDEX IF NOT EXISTS idx_socialink_queue_message ON socialink_queue (message_id)".into(),
            "CREATE INDEX IF NOT EXISTS idx_socialink_queue_age ON socialink_queue (queued_at)".into(),
        ];
        for sql in statements {
            db.execute_unprepared(&sql).await?;
        }
        // SQLite alters one column per statement.
        for column in [
            ColumnDef::new(Messages::ContentEncoding).string().null().to_owned(),
            ColumnDef::new(Messages::EphemeralKey).text().null().to_owned(),
            ColumnDef::new(Messages::ExpiresAt).timestamp_with_time_zone().null().to_owned(),
        ] {
            let mut column = column;
            manager.alter_table(Table::alter().table(Messages::Table).add_column(&mut column).to_owned()).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_expires_at")
                    .table(Messages::Table)
                    .col(Messages::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("idx_messages_expires_at").table(Messages::Table).to_owned()).await?;
        for column in [Messages::ExpiresAt, Messages::EphemeralKey, Messages::ContentEncoding] {
            manager.alter_table(Table::alter().table(Messages::Table).drop_column(column).to_owned()).await?;
        }
        let db = manager.get_connection();
        for table in ["socialink_queue", "socialink_prekeys", "socialink_signed_prekeys", "socialink_devices"] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}")).await?;
        }
        Ok(())
    }
}
