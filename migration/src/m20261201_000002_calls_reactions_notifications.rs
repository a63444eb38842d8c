//! Calls with their participants (state machine and history), reactions (one per user,
//! message and emoji) and per-user notifications.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Calls {
    Table,
    Id,
    ConversationId,
    CallerId,
    CallType,
    Status,
    AnsweredBy,
    EndedBy,
    EndReason,
    StartedAt,
    AnsweredAt,
    EndedAt,
    DurationMs,
}

#[derive(DeriveIden)]
enum CallParticipants {
    Table,
    CallId,
    UserId,
    Role,
    State,
}

#[derive(DeriveIden)]
enum Reactions {
    Table,
    MessageId,
    UserId,
    Emoji,
    ConversationId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    UserId,
    Kind,
    Data,
    Read,
    CreatedAt,
    ReadAt,
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().not_null().to_owned()
}

fn ts_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().null().to_owned()
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().to_owned()
}

fn text_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Calls::Table)
                    .if_not_exists()
                    .col(text(Calls::Id).primary_key())
                    .col(text(Calls::ConversationId))
                    .col(text(Calls::CallerId))
                    .col(text(Calls::CallType))
                    .col(text(Calls::Status))
                    .col(text_null(Calls::AnsweredBy))
                    .col(text_null(Calls::EndedBy))
                    .col(text_null(Calls::EndReason))
                    .col(ts(Calls::StartedAt))
                    .col(ts_null(Calls::AnsweredAt))
                    .col(ts_null(Calls::EndedAt))
                    .col(ColumnDef::new(Calls::DurationMs).big_integer().null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Calls::Table, Calls::ConversationId)
                            .to(Conversations::Table, Conversations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Call history of a chat, newest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_calls_conversation_started")
                    .table(Calls::Table)
                    .col(Calls::ConversationId)
                    .col(Calls::StartedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Calls still ringing or active, found again after a restart.
        manager
            .create_index(
                Index::create()
                    .name("idx_calls_status")
                    .table(Calls::Table)
                    .col(Calls::Status)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CallParticipants::Table)
                    .if_not_exists()
                    .col(text(CallParticipants::CallId))
                    .col(text(CallParticipants::UserId))
                    .col(text(CallParticipants::Role))
                    .col(text(CallParticipants::State))
                    .primary_key(Index::create().col(CallParticipants::CallId).col(CallParticipants::UserId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CallParticipants::Table, CallParticipants::CallId)
                            .to(Calls::Table, Calls::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // "Is this user in a call?" (busy) looks up live participations by user.
        manager
            .create_index(
                Index::create()
                    .name("idx_call_participants_user_state")
                    .table(CallParticipants::Table)
                    .col(CallParticipants::UserId)
                    .col(CallParticipants::State)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Reactions::Table)
                    .if_not_exists()
                    .col(text(Reactions::MessageId))
                    .col(text(Reactions::UserId))
                    .col(text(Reactions::Emoji))
                    .col(text(Reactions::ConversationId))
                    .col(ts(Reactions::CreatedAt))
                    // One reaction per user, message and emoji: the key itself is the unique
                    // index that decides concurrent double reactions.
                    .primary_key(Index::create().col(Reactions::MessageId).col(Reactions::UserId).col(Reactions::Emoji))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Reactions::Table, Reactions::MessageId)
                            .to(Messages::Table, Messages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .if_not_exists()
                    .col(text(Notifications::Id).primary_key())
                    .col(text(Notifications::UserId))
                    .col(text(Notifications::Kind))
                    .col(ColumnDef::new(Notifications::Data).json().not_null())
                    .col(ColumnDef::new(Notifications::Read).boolean().not_null().default(false))
                    .col(ts(Notifications::CreatedAt))
                    .col(ts_null(Notifications::ReadAt))
                    .to_owned(),
            )
            .await?;
        // A user's unread notifications, newest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_notifications_user_read_created")
                    .table(Notifications::Table)
                    .col(Notifications::UserId)
                    .col(Notifications::Read)
                    .col(Notifications::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Notifications::Table.into_iden(),
            Reactions::Table.into_iden(),
            CallParticipants::Table.into_iden(),
            Calls::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
