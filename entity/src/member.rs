use sea_orm::entity::prelude::*;

/// Membership of a user in a conversation, with the per-member receipt cursors.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub conversation_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    /// Every message with `seq <= delivered_seq` reached one of the member's devices.
    /// Cursors rather than per-message rows: "read covers earlier messages" for free, and
    /// offline catch-up is one range query.
    pub delivered_seq: i64,
    pub read_seq: i64,
    /// The member cleared the conversation for themselves up to here: their history and
    /// unread counts start after it.
    pub cleared_seq: i64,
    pub joined_at: DateTimeUtc,
    /// Who added the member; `None` for a conversation's creator (and rows from before this
    /// was recorded).
    pub added_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::conversation::Entity",
        from = "Column::ConversationId",
        to = "super::conversation::Column::Id"
    )]
    Conversation,
}

impl Related<super::conversation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Conversation.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
