//! Conversations, membership and the per-member receipt cursors.

use chrono::Utc;
use entity::{conversation, member};
use sea_orm::{
    sea_query::{Expr, ExprTrait, OnConflict},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

pub struct NewConversation {
    pub id: String,
    pub kind: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub avatar: Option<String>,
    pub encrypted: bool,
    pub direct_key: Option<String>,
    pub created_by: String,
    /// `(user id, role)`; the creator is included by the caller.
    pub members: Vec<(String, String)>,
}

pub enum Created {
    New(conversation::Model),
    /// A direct conversation for the same pair already existed.
    Existing(conversation::Model),
}

/// Creates a conversation with its members in one transaction. For direct conversations the
/// unique `direct_key` decides races: the loser gets the winner's conversation.
pub async fn create(db: &DatabaseConnection, new: NewConversation) -> Result<Created, DbErr> {
    if let Some(key) = &new.direct_key {
        if let Some(found) = find_direct(db, key).await? {
            return Ok(Created::Existing(found));
        }
    }
    let now = Utc::now();
    let txn = super::begin_write(db).await?;
    let inserted = conversation::Entity::insert(conversation::ActiveModel {
        id: Set(new.id.clone()),
        kind: Set(new.kind),
        name: Set(new.name),
        description: Set(new.description),
        avatar: Set(new.avatar),
        encrypted: Set(new.encrypted),
        direct_key: Set(new.direct_key.clone()),
        created_by: Set(new.created_by.clone()),
        last_seq: Set(0),
        epoch: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(OnConflict::column(conversation::Column::DirectKey).do_nothing().to_owned())
    .exec_without_returning(&txn)
    .await?;
    if inserted == 0 {
        txn.rollback().await?;
        let key = new.direct_key.unwrap_or_default();
        return match find_direct(db, &key).await? {
            Some(found) => Ok(Created::Existing(found)),
            None => Err(DbErr::RecordNotFound(format!("direct conversation {key}"))),
        };
    }
    for (user_id, _) in &new.members {
        super::devices::start_member(&txn, &new.id, user_id, 0).await?;
    }
    let creator = new.created_by.clone();
    let rows = new.members.into_iter().map(|(user_id, role)| member::ActiveModel {
        conversation_id: Set(new.id.clone()),
        // The creator added everyone else.
        added_by: Set((user_id != creator).then(|| creator.clone())),
        user_id: Set(user_id),
        role: Set(role),
        delivered_seq: Set(0),
        read_seq: Set(0),
        cleared_seq: Set(0),
        joined_at: Set(now),
    });
    member::Entity::insert_many(rows).exec_without_returning(&txn).await?;
    let model = conversation::Entity::find_by_id(new.id.clone())
        .one(&txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(new.id.clone()))?;
    txn.commit().await?;
    Ok(Created::New(model))
}

/// The direct conversation with this `direct_key`, if the pair ever talked.
pub async fn find_direct(db: &DatabaseConnection, key: &str) -> Result<Option<conversation::Model>, DbErr> {
    conversation::Entity::find().filter(conversation::Column::DirectKey.eq(key)).one(db).await
}

pub async fn get(db: &DatabaseConnection, id: &str) -> Result<Option<conversation::Model>, DbErr> {
    conversation::Entity::find_by_id(id.to_string()).one(db).await
}

pub async fn members(db: &DatabaseConnection, conversation_id: &str) -> Result<Vec<member::Model>, DbErr> {
    member::Entity::find()
        .filter(member::Column::ConversationId.eq(conversation_id))
        .order_by_asc(member::Column::JoinedAt)
        .all(db)
        .await
}

pub async fn member(
    db: &DatabaseConnection,
    conversation_id: &str,
    user_id: &str,
) -> Result<Option<member::Model>, DbErr> {
    member::Entity::find_by_id((conversation_id.to_string(), user_id.to_string())).one(db).await
}

/// What [`add_member`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// Added; the conversation's membership epoch is now this.
    Added {
        epoch: i64,
    },
    AlreadyMember,
    /// The conversation already has `max_members` members.
    Full,
    NoSuchConversation,
}

/// Which of `chats` have `user` as a member, and which of the others exist at all: two
/// queries however many chats are named (a client joining hundreds of rooms at once).
pub async fn memberships(
    db: &DatabaseConnection,
    user_id: &str,
    chats: &[String],
) -> Result<(Vec<String>, Vec<String>), DbErr> {
    if chats.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let member_of: Vec<String> = member::Entity::find()
        .select_only()
        .column(member::Column::ConversationId)
        .filter(member::Column::UserId.eq(user_id))
        .filter(member::Column::ConversationId.is_in(chats.iter().cloned()))
        .into_tuple()
        .all(db)
        .await?;
    let others: Vec<String> = chats.iter().filter(|c| !member_of.contains(c)).cloned().collect();
    let existing: Vec<String> = if others.is_empty() {
        Vec::new()
    } else {
        conversation::Entity::find()
            .select_only()
            .column(conversation::Column::Id)
            .filter(conversation::Column::Id.is_in(others))
            .into_tuple()
            .all(db)
            .await?
    };
    Ok((member_of, existing))
}

/// Adds a member whose cursors start at the current end of the conversation: a newcomer reads
/// history on request instead of having the whole backlog pushed at them. One transaction that
/// first bumps the conversation's epoch (which also locks its row on PostgreSQL), so that the
/// size check, the insert and the epoch cannot race another add or remove.
pub async fn add_member(
    db: &DatabaseConnection,
    conversation_id: &str,
    user_id: &str,
    role: &str,
    added_by: &str,
    max_members: usize,
) -> Result<Added, DbErr> {
    let txn = super::begin_write(db).await?;
    let Some(epoch) = bump_epoch(&txn, conversation_id).await? else {
        return Ok(Added::NoSuchConversation);
    };
    let count = member::Entity::find().filter(member::Column::ConversationId.eq(conversation_id)).count(&txn).await?;
    if count >= max_members as u64 {
        txn.rollback().await?;
        return Ok(Added::Full);
    }
    let last_seq =
        conversation::Entity::find_by_id(conversation_id.to_string()).one(&txn).await?.map(|c| c.last_seq).unwrap_or(0);
    let inserted = member::Entity::insert(member::ActiveModel {
        conversation_id: Set(conversation_id.to_string()),
        user_id: Set(user_id.to_string()),
        role: Set(role.to_string()),
        delivered_seq: Set(last_seq),
        read_seq: Set(last_seq),
        // History starts at the beginning: a newcomer may read back (it is only not pushed).
        cleared_seq: Set(0),
        joined_at: Set(Utc::now()),
        added_by: Set(Some(added_by.to_string())),
    })
    .on_conflict(OnConflict::columns([member::Column::ConversationId, member::Column::UserId]).do_nothing().to_owned())
    .exec_without_returning(&txn)
    .await?;
    if inserted == 0 {
        txn.rollback().await?;
        return Ok(Added::AlreadyMember);
    }
    super::devices::start_member(&txn, conversation_id, user_id, last_seq).await?;
    txn.commit().await?;
    Ok(Added::Added { epoch })
}

/// Adds one to the conversation's epoch and touches it; the new epoch, `None` when there is no
/// such conversation.
async fn bump_epoch<C: ConnectionTrait>(db: &C, conversation_id: &str) -> Result<Option<i64>, DbErr> {
    let updated = conversation::Entity::update_many()
        .col_expr(conversation::Column::Epoch, Expr::col(conversation::Column::Epoch).add(1))
        .col_expr(conversation::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(conversation::Column::Id.eq(conversation_id))
        .exec(db)
        .await?
        .rows_affected;
    if updated == 0 {
        return Ok(None);
    }
    let epoch = conversation::Entity::find_by_id(conversation_id.to_string()).one(db).await?.map(|c| c.epoch);
    Ok(epoch)
}

/// Moves a cursor forward, never back. Read also moves delivered (read implies delivered).
/// Returns true when something changed.
pub async fn advance_cursor(
    db: &DatabaseConnection,
    conversation_id: &str,
    user_id: &str,
    seq: i64,
    read: bool,
) -> Result<bool, DbErr> {
    let key = (member::Column::ConversationId.eq(conversation_id), member::Column::UserId.eq(user_id));
    let delivered = member::Entity::update_many()
        .col_expr(member::Column::DeliveredSeq, Expr::value(seq))
        .filter(key.0.clone())
        .filter(key.1.clone())
        .filter(member::Column::DeliveredSeq.lt(seq))
        .exec(db)
        .await?
        .rows_affected;
    if !read {
        return Ok(delivered > 0);
    }
    let read_rows = member::Entity::update_many()
        .col_expr(member::Column::ReadSeq, Expr::value(seq))
        .filter(key.0)
        .filter(key.1)
        .filter(member::Column::ReadSeq.lt(seq))
        .exec(db)
        .await?
        .rows_affected;
    Ok(read_rows > 0 || delivered > 0)
}

/// Moves many members' delivered cursors forward (never back) in one transaction, with one
/// statement per chunk: the delivery ledger's periodic write, which would otherwise cost a
/// transaction (and an fsync) per member.
pub async fn advance_delivered(db: &DatabaseConnection, cursors: &[(&str, &str, i64)]) -> Result<(), DbErr> {
    if cursors.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let txn = super::begin_write(db).await?;
    // Three values a row; 1,000 rows stay far below SQLite's limit of bound values.
    for chunk in cursors.chunks(1000) {
        let rows =
            chunk.iter().map(|(conversation, user, seq)| [(*conversation).into(), (*user).into(), (*seq).into()]);
        let (list, values) = super::values_list(backend, Vec::new(), rows);
        let sql = format!(
            "UPDATE members SET delivered_seq = v.column3 FROM (VALUES {list}) AS v \
             WHERE members.conversation_id = v.column1 AND members.user_id = v.column2 \
             AND members.delivered_seq < v.column3"
        );
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    txn.commit().await
}

/// Every conversation of this user with their delivered cursor and the conversation's last
/// `seq`: `(conversation id, delivered_seq, last_seq)`.
pub async fn cursors(db: &DatabaseConnection, user_id: &str) -> Result<Vec<(String, i64, i64)>, DbErr> {
    member::Entity::find()
        .select_only()
        .column(member::Column::ConversationId)
        .column(member::Column::DeliveredSeq)
        .column_as(Expr::col((conversation::Entity, conversation::Column::LastSeq)), "last_seq")
        .inner_join(conversation::Entity)
        .filter(member::Column::UserId.eq(user_id))
        .into_tuple()
        .all(db)
        .await
}

/// Removes a member; when `promote` names another member, they become `owner` in the same
/// transaction (a group never loses its last owner). The conversation's epoch goes up by one
/// in that transaction. Returns the new epoch, `None` when the user was not a member.
pub async fn remove_member(
    db: &DatabaseConnection,
    conversation_id: &str,
    user_id: &str,
    promote: Option<&str>,
) -> Result<Option<i64>, DbErr> {
    let txn = super::begin_write(db).await?;
    let deleted = member::Entity::delete_many()
        .filter(member::Column::ConversationId.eq(conversation_id))
        .filter(member::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?
        .rows_affected;
    if deleted == 0 {
        return Ok(None);
    }
    super::devices::forget_member(&txn, conversation_id, user_id).await?;
    if let Some(heir) = promote {
        member::Entity::update_many()
            .col_expr(member::Column::Role, Expr::value("owner"))
            .filter(member::Column::ConversationId.eq(conversation_id))
            .filter(member::Column::UserId.eq(heir))
            .exec(&txn)
            .await?;
    }
    let epoch = bump_epoch(&txn, conversation_id).await?;
    txn.commit().await?;
    Ok(epoch)
}

/// New values for a conversation's details; `None` leaves a field as it is, `Some(None)`
/// clears it.
#[derive(Default)]
pub struct DetailsUpdate {
    pub name: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub avatar: Option<Option<String>>,
}

pub async fn update_details(
    db: &DatabaseConnection,
    conversation_id: &str,
    update: DetailsUpdate,
) -> Result<Option<conversation::Model>, DbErr> {
    let mut active = conversation::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(conversation_id.to_string()),
        updated_at: Set(Utc::now()),
        ..Default::default()
    };
    if let Some(name) = update.name {
        active.name = Set(name);
    }
    if let Some(description) = update.description {
        active.description = Set(description);
    }
    if let Some(avatar) = update.avatar {
        active.avatar = Set(avatar);
    }
    conversation::Entity::update(active).exec(db).await?;
    get(db, conversation_id).await
}
