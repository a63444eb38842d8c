use sea_orm::entity::prelude::*;

/// What a conversation of kind `session` (an anonymous e2e session) has besides its members
/// and messages.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub conversation_id: String,
    /// The id clients know it by (the conversation id is this, namespaced).
    pub name: String,
    /// SHA-256 of the auth key, hex; `None` for a session anyone may join.
    pub auth_key_hash: Option<String>,
    /// `group` or `private` (two members at most).
    pub mode: String,
    /// False while a reserved session waits for its creator.
    pub active: bool,
    pub created_at: DateTimeUtc,
    /// Joins, messages and notices move it; the idle sweep deletes sessions left alone.
    pub last_activity_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
