//! Anonymous sessions (the `e2e` dialect, SPEC §7.3) and messages addressed to one member.
//!
//! * `sessions`: a conversation of kind `session` with what only sessions have: the hash of
//!   its auth key, its mode (`group` or `private`), whether its creator has joined yet
//!   (a reserved session is not active before), and its last activity (for the idle sweep).
//! * `session_members`: who joined, under which display name, with which public key and
//!   their entry of the session key map. The core membership (`members`) is kept beside it, so
//!   that sending, typing and catch-up authorize session members like any other.
//! * `messages.recipient_id`: the member a message is addressed to; `''` for everyone. Part of
//!   the resend key, so one `tempId` names one copy per recipient (e2e sends a copy per member,
//!   each encrypted for its reader). Not nullable: NULLs never collide in a unique index, and a
//!   resend to everyone must.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    ConversationId,
    Name,
    AuthKeyHash,
    Mode,
    Active,
    CreatedAt,
    LastActivityAt,
}

#[derive(DeriveIden)]
enum SessionMembers {
    Table,
    ConversationId,
    UserId,
    MemberId,
    DisplayName,
    PublicKey,
    SessionKey,
    JoinedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    ConversationId,
    SenderId,
    TempId,
    RecipientId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Sessions::ConversationId).string().not_null().primary_key())
                    .col(ColumnDef::new(Sessions::Name).string().not_null())
                    .col(ColumnDef::new(Sessions::AuthKeyHash).string().null())
                    .col(ColumnDef::new(Sessions::Mode).string().not_null())
                    .col(ColumnDef::new(Sessions::Active).boolean().not_null())
                    .col(ColumnDef::new(Sessions::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Sessions::LastActivityAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        // The idle sweep looks for the sessions idle the longest.
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_last_activity")
                    .table(Sessions::Table)
                    .col(Sessions::LastActivityAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SessionMembers::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(SessionMembers::ConversationId).string().not_null())
                    .col(ColumnDef::new(SessionMembers::UserId).string().not_null())
                    .col(ColumnDef::new(SessionMembers::MemberId).string().not_null())
                    .col(ColumnDef::new(SessionMembers::DisplayName).string().null())
                    .col(ColumnDef::new(SessionMembers::PublicKey).text().null())
                    .col(ColumnDef::new(SessionMembers::SessionKey).text().null())
                    .col(ColumnDef::new(SessionMembers::JoinedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(SessionMembers::ConversationId).col(SessionMembers::UserId))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(ColumnDef::new(Messages::RecipientId).string().not_null().default(""))
                    .to_owned(),
            )
            .await?;
        manager.drop_index(Index::drop().name("uq_messages_sender_temp_id").table(Messages::Table).to_owned()).await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_messages_sender_temp_id_recipient")
                    .table(Messages::Table)
                    .col(Messages::ConversationId)
                    .col(Messages::SenderId)
                    .col(Messages::TempId)
                    .col(Messages::RecipientId)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("uq_messages_sender_temp_id_recipient").table(Messages::Table).to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_messages_sender_temp_id")
                    .table(Messages::Table)
                    .col(Messages::ConversationId)
                    .col(Messages::SenderId)
                    .col(Messages::TempId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(Table::alter().table(Messages::Table).drop_column(Messages::RecipientId).to_owned())
            .await?;
        manager.drop_table(Table::drop().table(SessionMembers::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Sessions::Table).to_owned()).await
    }
}
