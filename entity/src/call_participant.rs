use sea_orm::entity::prelude::*;

/// One user's part in a call. A row per participant (rather than a list on the call) so that
/// "is this user already in a call?" is an indexed lookup.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "call_participants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub call_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// `caller` or `callee`.
    pub role: String,
    /// `ringing` (a callee not answered yet), `joined` (caller, or the callee who answered),
    /// `declined`, or `left` (the call finished for them). Busy means ringing or joined.
    pub state: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(belongs_to = "super::call::Entity", from = "Column::CallId", to = "super::call::Column::Id")]
    Call,
}

impl Related<super::call::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Call.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
