use sea_orm::entity::prelude::*;

/// A member of an anonymous session, as the session shows them to the others.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "session_members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub conversation_id: String,
    /// The core's user id of the member (namespaced by the session).
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// The id the member chose, as clients know it.
    pub member_id: String,
    pub display_name: Option<String>,
    pub public_key: Option<String>,
    /// This member's entry of the session key map (group mode), encrypted for them.
    pub session_key: Option<String>,
    pub joined_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
