use sea_orm::entity::prelude::*;

/// A conversation: `direct`, `group`, `self` (note to self) or `session` (anonymous e2e).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub kind: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub avatar: Option<String>,
    pub encrypted: bool,
    /// For `direct` conversations: the two user ids sorted and joined, unique, so that the
    /// same pair always reuses one conversation even under concurrent creates.
    #[sea_orm(unique)]
    pub direct_key: Option<String>,
    pub created_by: String,
    /// Highest `seq` handed out; incremented in the same transaction as the message insert,
    /// which is what keeps `seq` gapless.
    pub last_seq: i64,
    /// Membership epoch of a group: bumped by one with every member added or removed, in the
    /// same transaction.
    pub epoch: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::member::Entity")]
    Member,
    #[sea_orm(has_many = "super::message::Entity")]
    Message,
}

impl Related<super::member::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Member.def()
    }
}

impl Related<super::message::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Message.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
