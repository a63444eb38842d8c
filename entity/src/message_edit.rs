use sea_orm::entity::prelude::*;

/// One edit of a message: what it said before and after, who changed it and when. Kept so the
/// history of an edited message can be read back; removed when the message is deleted for
/// everyone.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "message_edits")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub message_id: String,
    pub conversation_id: String,
    pub editor_id: String,
    pub previous_content: String,
    pub content: String,
    pub edited_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
