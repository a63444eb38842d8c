use sea_orm::entity::prelude::*;

/// An ICE candidate relayed during a call, kept so that a participant can list what it
/// missed. Numbered per call in arrival order.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "call_ice_candidates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub call_id: String,
    /// 1, 2, … in the order the server took them.
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i32,
    /// Who sent it.
    pub user_id: String,
    /// The candidate as the client sent it, as JSON text (a string for Socialink clients, an
    /// object for SUP's).
    pub candidate: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
