//! What Socialink's groups and calls need beyond the core's tables (protocols/socialink.md
//! §5, §8), usable by every dialect:
//!
//! * `conversations.epoch`: a group's membership epoch, bumped by one in the same transaction
//!   as every member added or removed (Socialink's `current_epoch`, an MLS group's epoch).
//! * `members.added_by`: who added the member (`null` for the creator and for rows older than
//!   this migration).
//! * `calls.offer` / `calls.answer`: the WebRTC offer and answer as the clients sent them
//!   (JSON text), so that a call read back later still carries them.
//! * `call_ice_candidates`: every ICE candidate relayed, with its sender, numbered per call in
//!   arrival order (`seq` from 1).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Epoch,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    AddedBy,
}

#[derive(DeriveIden)]
enum Calls {
    Table,
    Offer,
    Answer,
}

#[derive(DeriveIden)]
enum CallIceCandidates {
    Table,
    CallId,
    Seq,
    UserId,
    Candidate,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Conversations::Table)
                    .add_column(ColumnDef::new(Conversations::Epoch).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Members::Table)
                    .add_column(ColumnDef::new(Members::AddedBy).string().null())
                    .to_owned(),
            )
            .await?;
        // SQLite alters one column per statement.
        manager
            .alter_table(
                Table::alter().table(Calls::Table).add_column(ColumnDef::new(Calls::Offer).text().null()).to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(Calls::Table).add_column(ColumnDef::new(Calls::Answer).text().null()).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CallIceCandidates::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(CallIceCandidates::CallId).string().not_null())
                    .col(ColumnDef::new(CallIceCandidates::Seq).integer().not_null())
                    .col(ColumnDef::new(CallIceCandidates::UserId).string().not_null())
                    .col(ColumnDef::new(CallIceCandidates::Candidate).text().not_null())
                    .col(ColumnDef::new(CallIceCandidates::CreatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(CallIceCandidates::CallId).col(CallIceCandidates::Seq))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(CallIceCandidates::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Calls::Table).drop_column(Calls::Answer).to_owned()).await?;
        manager.alter_table(Table::alter().table(Calls::Table).drop_column(Calls::Offer).to_owned()).await?;
        manager.alter_table(Table::alter().table(Members::Table).drop_column(Members::AddedBy).to_owned()).await?;
        manager
            .alter_table(Table::alter().table(Conversations::Table).drop_column(Conversations::Epoch).to_owned())
            .await
    }
}
