use sea_orm::entity::prelude::*;

/// An uploaded file. The bytes live in the media directory under the id; this row says what
/// they are (the sniffed type, not the client's claim) and who uploaded them.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "attachments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub uploader_id: String,
    /// `image`, `video`, `audio` or `file`.
    pub kind: String,
    pub content_type: String,
    /// The client's file name, sanitised; only ever used in `Content-Disposition`.
    pub file_name: String,
    pub size: i64,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub has_thumbnail: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
