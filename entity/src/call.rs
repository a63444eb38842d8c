use sea_orm::entity::prelude::*;

/// A call: who rang whom in which conversation, how it went (`ringing` → `active` → `ended`,
/// or `rejected` / `missed`), and when. Stays as history once finished.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "calls")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub conversation_id: String,
    pub caller_id: String,
    /// `audio` or `video`.
    pub call_type: String,
    /// `ringing`, `active`, `ended`, `rejected` or `missed`.
    pub status: String,
    /// The callee who picked up (a group call connects the first one to answer).
    pub answered_by: Option<String>,
    pub ended_by: Option<String>,
    /// Why it finished: `hangup`, `cancelled`, `missed`, `rejected`, `disconnected`.
    pub end_reason: Option<String>,
    pub started_at: DateTimeUtc,
    pub answered_at: Option<DateTimeUtc>,
    pub ended_at: Option<DateTimeUtc>,
    /// Talk time, from answer to end; 0 for a call that was never answered.
    pub duration_ms: Option<i64>,
    /// The caller's WebRTC offer and the answer, as JSON text of what the clients sent.
    pub offer: Option<String>,
    pub answer: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::call_participant::Entity")]
    Participant,
}

impl Related<super::call_participant::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Participant.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
