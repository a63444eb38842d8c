//! Per-device delivery (SPEC §4, §5.4): what was handed to each *device* of a member, so a
//! laptop that was off is pushed what the phone already had.
//!
//! * `devices`: every device a user connected with. A connection that names no device is the
//!   user's default device, `''`.
//! * `device_cursors`: per conversation, member and device, every message with
//!   `seq <= delivered_seq` was handed to that device and it confirmed it.
//! * `messages.sender_device_id`: the device a message was sent from; that device has it from
//!   its ack, the sender's other devices are pushed it.
//!
//! Today's per-user cursors (`members.delivered_seq`) become the default device's, so nothing
//! is lost or pushed twice across the upgrade. `members.delivered_seq` stays the per-user
//! "delivered" receipt cursor (read receipts stay per user too).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Devices {
    Table,
    UserId,
    DeviceId,
    FirstSeenAt,
}

#[derive(DeriveIden)]
enum DeviceCursors {
    Table,
    UserId,
    DeviceId,
    ConversationId,
    DeliveredSeq,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    SenderDeviceId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Devices::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Devices::UserId).string().not_null())
                    .col(ColumnDef::new(Devices::DeviceId).string().not_null())
                    .col(ColumnDef::new(Devices::FirstSeenAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(Devices::UserId).col(Devices::DeviceId))
                    .to_owned(),
            )
            .await?;
        // Keyed by user and device first: a connecting device reads all of its cursors at once.
        manager
            .create_table(
                Table::create()
                    .table(DeviceCursors::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(DeviceCursors::UserId).string().not_null())
                    .col(ColumnDef::new(DeviceCursors::DeviceId).string().not_null())
                    .col(ColumnDef::new(DeviceCursors::ConversationId).string().not_null())
                    .col(ColumnDef::new(DeviceCursors::DeliveredSeq).big_integer().not_null().default(0))
                    .primary_key(
                        Index::create()
                            .col(DeviceCursors::UserId)
                            .col(DeviceCursors::DeviceId)
                            .col(DeviceCursors::ConversationId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_device_cursors_conversation")
                    .table(DeviceCursors::Table)
                    .col(DeviceCursors::ConversationId)
                    .col(DeviceCursors::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(ColumnDef::new(Messages::SenderDeviceId).string().null())
                    .to_owned(),
            )
            .await?;
        // Today's per-user cursors carry over as the default device's.
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO devices (user_id, device_id, first_seen_at) \
             SELECT DISTINCT user_id, '', CURRENT_TIMESTAMP FROM members",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO device_cursors (user_id, device_id, conversation_id, delivered_seq) \
             SELECT user_id, '', conversation_id, delivered_seq FROM members",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Messages::Table).drop_column(Messages::SenderDeviceId).to_owned())
            .await?;
        manager.drop_table(Table::drop().table(DeviceCursors::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Devices::Table).to_owned()).await
    }
}
