//! Users, conversations, members with receipt cursors, and messages with a gapless per
//! conversation `seq` and a unique client `tempId` per sender and conversation.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    Name,
    Avatar,
    LastSeenAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    Kind,
    Name,
    Description,
    Avatar,
    Encrypted,
    DirectKey,
    CreatedBy,
    LastSeq,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    ConversationId,
    UserId,
    Role,
    DeliveredSeq,
    ReadSeq,
    JoinedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
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
    EditedAt,
    DeletedAt,
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().not_null().to_owned()
}

fn ts_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Users::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Users::Username).string().null())
                    .col(ColumnDef::new(Users::Name).string().null())
                    .col(ColumnDef::new(Users::Avatar).string().null())
                    .col(ts_null(Users::LastSeenAt))
                    .col(ts(Users::CreatedAt))
                    .col(ts(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Conversations::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Conversations::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Conversations::Kind).string().not_null())
                    .col(ColumnDef::new(Conversations::Name).string().null())
                    .col(ColumnDef::new(Conversations::Description).text().null())
                    .col(ColumnDef::new(Conversations::Avatar).string().null())
                    .col(ColumnDef::new(Conversations::Encrypted).boolean().not_null().default(false))
                    .col(ColumnDef::new(Conversations::DirectKey).string().null().unique_key())
                    .col(ColumnDef::new(Conversations::CreatedBy).string().not_null())
                    .col(ColumnDef::new(Conversations::LastSeq).big_integer().not_null().default(0))
                    .col(ts(Conversations::CreatedAt))
                    .col(ts(Conversations::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Members::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Members::ConversationId).string().not_null())
                    .col(ColumnDef::new(Members::UserId).string().not_null())
                    .col(ColumnDef::new(Members::Role).string().not_null())
                    .col(ColumnDef::new(Members::DeliveredSeq).big_integer().not_null().default(0))
                    .col(ColumnDef::new(Members::ReadSeq).big_integer().not_null().default(0))
                    .col(ts(Members::JoinedAt))
                    .primary_key(Index::create().col(Members::ConversationId).col(Members::UserId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Members::Table, Members::ConversationId)
                            .to(Conversations::Table, Conversations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_members_user")
                    .table(Members::Table)
                    .col(Members::UserId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Messages::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Messages::ConversationId).string().not_null())
                    .col(ColumnDef::new(Messages::Seq).big_integer().not_null())
                    .col(ColumnDef::new(Messages::SenderId).string().not_null())
                    .col(ColumnDef::new(Messages::Kind).string().not_null())
                    .col(ColumnDef::new(Messages::Content).text().not_null())
                    .col(ColumnDef::new(Messages::ReplyToId).string().null())
                    .col(ColumnDef::new(Messages::Metadata).json().null())
                    .col(ColumnDef::new(Messages::TempId).string().null())
                    .col(ts(Messages::CreatedAt))
                    .col(ts_null(Messages::EditedAt))
                    .col(ts_null(Messages::DeletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Messages::Table, Messages::ConversationId)
                            .to(Conversations::Table, Conversations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_messages_conversation_seq")
                    .table(Messages::Table)
                    .col(Messages::ConversationId)
                    .col(Messages::Seq)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // NULL temp ids never collide (both databases treat NULLs as distinct in unique indexes).
        manager
            .create_index(
                Index::create()
                    .name("uq_messages_sender_temp_id")
                    .table(Messages::Table)
                    .col(Messages::ConversationId)
                    .col(Messages::SenderId)
                    .col(Messages::TempId)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Messages::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Members::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Conversations::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Users::Table).to_owned()).await
    }
}
