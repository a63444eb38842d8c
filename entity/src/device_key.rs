use sea_orm::entity::prelude::*;

/// The public key of one device of a user. Uploading a different key for the device rotates
/// it: `created_at` restarts and the device must be verified again.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "device_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub device_id: String,
    pub public_key: String,
    /// SHA-256 of the key as uploaded, hex; verification codes are derived from it.
    pub fingerprint: String,
    pub verified_at: Option<DateTimeUtc>,
    /// When this key was first uploaded (rotation age).
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
