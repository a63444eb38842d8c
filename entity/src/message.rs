use sea_orm::entity::prelude::*;

/// A stored message. `(conversation_id, seq)` is unique and gapless; `(conversation_id,
/// sender_id, temp_id)` is unique so a resend is recognised instead of stored twice.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_id: String,
    /// `text`, `image`, `video`, `audio`, `file`, `voice`, `location`, …
    pub kind: String,
    /// Opaque to the server: plain text or ciphertext, as the client sent it.
    pub content: String,
    pub reply_to_id: Option<String>,
    pub metadata: Option<Json>,
    pub temp_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub edited_at: Option<DateTimeUtc>,
    pub deleted_at: Option<DateTimeUtc>,
    /// The client says `content` is ciphertext (Spark's `encrypted`); the server never looks.
    pub encrypted: bool,
    /// Summaries of the attachments sent with the message, as JSON (they never change after
    /// upload, so a copy here saves a join on every read); `message_attachments` links them
    /// for access checks.
    pub attachments: Option<Json>,
    /// The device it was sent from (`''` for a connection that named none); that device has
    /// it from its ack, the sender's other devices are pushed it.
    pub sender_device_id: Option<String>,
    /// The member it is addressed to (`''`: everyone). Only they, and the sender, get it;
    /// part of the resend key with `temp_id`, so one `temp_id` names one copy per recipient.
    pub recipient_id: String,
    /// How `content` is written: `None` is text; `base64` is bytes (Socialink's ciphertext) as
    /// standard padded base64, which other dialects show as is.
    pub content_encoding: Option<String>,
    /// Socialink's ephemeral key, standard base64 (`None`: empty).
    pub ephemeral_key: Option<String>,
    /// A self-destructing message: gone from every read after this, then deleted.
    pub expires_at: Option<DateTimeUtc>,
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
