//! What Spark needs on top of the core schema: edit history, messages deleted for one user,
//! attachments and their links to messages, device public keys, the `encrypted` flag and the
//! attachment summaries of a message, and the point up to which a member cleared a
//! conversation's history for themselves.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    Encrypted,
    Attachments,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    ClearedSeq,
}

#[derive(DeriveIden)]
enum MessageEdits {
    Table,
    Id,
    MessageId,
    ConversationId,
    EditorId,
    PreviousContent,
    Content,
    EditedAt,
}

#[derive(DeriveIden)]
enum HiddenMessages {
    Table,
    MessageId,
    UserId,
    ConversationId,
    HiddenAt,
}

#[derive(DeriveIden)]
enum Attachments {
    Table,
    Id,
    UploaderId,
    Kind,
    ContentType,
    FileName,
    Size,
    Width,
    Height,
    HasThumbnail,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MessageAttachments {
    Table,
    MessageId,
    AttachmentId,
    ConversationId,
}

#[derive(DeriveIden)]
enum DeviceKeys {
    Table,
    UserId,
    DeviceId,
    PublicKey,
    Fingerprint,
    VerifiedAt,
    CreatedAt,
    UpdatedAt,
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

/// Rows that only make sense with their message go when it goes.
fn to_message(from: (impl IntoIden, impl IntoIden)) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from.0, from.1)
        .to(Messages::Table, Messages::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE takes one change at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(ColumnDef::new(Messages::Encrypted).boolean().not_null().default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(ColumnDef::new(Messages::Attachments).json().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Members::Table)
                    .add_column(ColumnDef::new(Members::ClearedSeq).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MessageEdits::Table)
                    .if_not_exists()
                    .col(text(MessageEdits::Id).primary_key())
                    .col(text(MessageEdits::MessageId))
                    .col(text(MessageEdits::ConversationId))
                    .col(text(MessageEdits::EditorId))
                    .col(ColumnDef::new(MessageEdits::PreviousContent).text().not_null())
                    .col(ColumnDef::new(MessageEdits::Content).text().not_null())
                    .col(ts(MessageEdits::EditedAt))
                    .foreign_key(&mut to_message((MessageEdits::Table, MessageEdits::MessageId)))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_message_edits_message")
                    .table(MessageEdits::Table)
                    .col(MessageEdits::MessageId)
                    .col(MessageEdits::EditedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(HiddenMessages::Table)
                    .if_not_exists()
                    .col(text(HiddenMessages::MessageId))
                    .col(text(HiddenMessages::UserId))
                    .col(text(HiddenMessages::ConversationId))
                    .col(ts(HiddenMessages::HiddenAt))
                    .primary_key(Index::create().col(HiddenMessages::MessageId).col(HiddenMessages::UserId))
                    .foreign_key(&mut to_message((HiddenMessages::Table, HiddenMessages::MessageId)))
                    .to_owned(),
            )
            .await?;
        // History pages leave out what the reader hid: looked up per reader and conversation.
        manager
            .create_index(
                Index::create()
                    .name("idx_hidden_messages_user_conversation")
                    .table(HiddenMessages::Table)
                    .col(HiddenMessages::UserId)
                    .col(HiddenMessages::ConversationId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Attachments::Table)
                    .if_not_exists()
                    .col(text(Attachments::Id).primary_key())
                    .col(text(Attachments::UploaderId))
                    .col(text(Attachments::Kind))
                    .col(text(Attachments::ContentType))
                    .col(text(Attachments::FileName))
                    .col(ColumnDef::new(Attachments::Size).big_integer().not_null())
                    .col(ColumnDef::new(Attachments::Width).integer().null())
                    .col(ColumnDef::new(Attachments::Height).integer().null())
                    .col(ColumnDef::new(Attachments::HasThumbnail).boolean().not_null().default(false))
                    .col(ts(Attachments::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MessageAttachments::Table)
                    .if_not_exists()
                    .col(text(MessageAttachments::MessageId))
                    .col(text(MessageAttachments::AttachmentId))
                    .col(text(MessageAttachments::ConversationId))
                    .primary_key(
                        Index::create().col(MessageAttachments::MessageId).col(MessageAttachments::AttachmentId),
                    )
                    .foreign_key(&mut to_message((MessageAttachments::Table, MessageAttachments::MessageId)))
                    .foreign_key(
                        ForeignKey::create()
                            .from(MessageAttachments::Table, MessageAttachments::AttachmentId)
                            .to(Attachments::Table, Attachments::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // "May this user download it?" looks up the conversations an attachment was sent to.
        manager
            .create_index(
                Index::create()
                    .name("idx_message_attachments_attachment")
                    .table(MessageAttachments::Table)
                    .col(MessageAttachments::AttachmentId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeviceKeys::Table)
                    .if_not_exists()
                    .col(text(DeviceKeys::UserId))
                    .col(text(DeviceKeys::DeviceId))
                    .col(ColumnDef::new(DeviceKeys::PublicKey).text().not_null())
                    .col(text(DeviceKeys::Fingerprint))
                    .col(ts_null(DeviceKeys::VerifiedAt))
                    .col(ts(DeviceKeys::CreatedAt))
                    .col(ts(DeviceKeys::UpdatedAt))
                    .primary_key(Index::create().col(DeviceKeys::UserId).col(DeviceKeys::DeviceId))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DeviceKeys::Table.into_iden(),
            MessageAttachments::Table.into_iden(),
            Attachments::Table.into_iden(),
            HiddenMessages::Table.into_iden(),
            MessageEdits::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        manager.alter_table(Table::alter().table(Members::Table).drop_column(Members::ClearedSeq).to_owned()).await?;
        manager
            .alter_table(Table::alter().table(Messages::Table).drop_column(Messages::Attachments).to_owned())
            .await?;
        manager.alter_table(Table::alter().table(Messages::Table).drop_column(Messages::Encrypted).to_owned()).await
    }
}
