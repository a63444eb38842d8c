//! Reads of history as one member sees it: pages of a conversation (without what they hid
//! or cleared), and the conversation list with last messages and unread counts, each in a
//! fixed number of queries however many conversations there are.

use chrono::{DateTime, Utc};
use entity::{conversation, hidden_message, member, message};

use crate::domain::UserId;
use sea_orm::{
    sea_query::{Alias, Expr, ExprTrait, Query, SelectStatement},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};

/// Ids of the messages `user` hid in `chat`, as a subquery.
fn hidden_by(user: &str, chat: &str) -> SelectStatement {
    Query::select()
        .column((hidden_message::Entity, hidden_message::Column::MessageId))
        .from(hidden_message::Entity)
        .and_where(Expr::col((hidden_message::Entity, hidden_message::Column::UserId)).eq(user))
        .and_where(Expr::col((hidden_message::Entity, hidden_message::Column::ConversationId)).eq(chat))
        .to_owned()
}

/// Up to `limit` messages of `chat` with `cleared_seq < seq < before`, newest first, leaving
/// out those `user` hid. Keyed on `seq`, so messages arriving meanwhile never shift a page.
pub async fn page(
    db: &DatabaseConnection,
    chat: &str,
    user: &str,
    cleared_seq: i64,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<message::Model>, DbErr> {
    let mut query = message::Entity::find()
        .filter(message::Column::ConversationId.eq(chat))
        .filter(message::Column::Seq.gt(cleared_seq))
        .filter(super::messages::readable_by(user))
        .filter(Expr::col((message::Entity, message::Column::Id)).not_in_subquery(hidden_by(user, chat)));
    if let Some(before) = before {
        query = query.filter(message::Column::Seq.lt(before));
    }
    query.order_by_desc(message::Column::Seq).limit(limit).all(db).await
}

/// The conversations of `user` with their membership, most recently active first, after
/// the `(updated_at, id)` of the previous page. A conversation the user cleared is left out
/// until something new arrives in it.
pub async fn conversations_of(
    db: &DatabaseConnection,
    user: &str,
    after: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<Vec<(conversation::Model, member::Model)>, DbErr> {
    let cleared = Expr::col((member::Entity, member::Column::ClearedSeq));
    let last_seq = Expr::col((conversation::Entity, conversation::Column::LastSeq));
    let mut query = member::Entity::find()
        .find_also_related(conversation::Entity)
        .filter(member::Column::UserId.eq(user))
        .filter(Condition::any().add(cleared.clone().eq(0)).add(cleared.lt(last_seq)));
    if let Some((updated_at, id)) = after {
        query = query.filter(Condition::any().add(conversation::Column::UpdatedAt.lt(updated_at)).add(
            Condition::all().add(conversation::Column::UpdatedAt.eq(updated_at)).add(conversation::Column::Id.lt(id)),
        ));
    }
    let rows = query
        .order_by_desc(conversation::Column::UpdatedAt)
        .order_by_desc(conversation::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(|(m, c)| c.map(|c| (c, m))).collect())
}

/// Every member of these conversations, in the order they joined.
pub async fn members_of(db: &DatabaseConnection, chats: &[String]) -> Result<Vec<member::Model>, DbErr> {
    if chats.is_empty() {
        return Ok(Vec::new());
    }
    member::Entity::find()
        .filter(member::Column::ConversationId.is_in(chats.iter().cloned()))
        .order_by_asc(member::Column::JoinedAt)
        .all(db)
        .await
}

/// The messages at these `(conversation, seq)` positions.
pub async fn at_positions(db: &DatabaseConnection, positions: &[(String, i64)]) -> Result<Vec<message::Model>, DbErr> {
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    let mut any = Condition::any();
    for (chat, seq) in positions {
        any = any.add(
            Condition::all().add(message::Column::ConversationId.eq(chat.clone())).add(message::Column::Seq.eq(*seq)),
        );
    }
    message::Entity::find().filter(any).all(db).await
}

/// Per conversation, how many messages from others `user` has not read: after their read
/// and cleared cursors, not deleted, not hidden by them. Conversations with none are absent.
pub async fn unread_counts(db: &DatabaseConnection, user: &str, chats: &[String]) -> Result<Vec<(String, i64)>, DbErr> {
    if chats.is_empty() {
        return Ok(Vec::new());
    }
    let msg = |c: message::Column| Expr::col((message::Entity, c));
    let mem = |c: member::Column| Expr::col((member::Entity, c));
    let hidden = Query::select()
        .column((hidden_message::Entity, hidden_message::Column::MessageId))
        .from(hidden_message::Entity)
        .and_where(Expr::col((hidden_message::Entity, hidden_message::Column::UserId)).eq(user))
        .to_owned();
    let query = Query::select()
        .expr_as(msg(message::Column::ConversationId), Alias::new("chat"))
        .expr_as(msg(message::Column::Id).count(), Alias::new("unread"))
        .from(message::Entity)
        .inner_join(
            member::Entity,
            mem(member::Column::ConversationId)
                .equals((message::Entity, message::Column::ConversationId))
                .and(mem(member::Column::UserId).eq(user)),
        )
        .and_where(msg(message::Column::ConversationId).is_in(chats.iter().cloned()))
        .and_where(msg(message::Column::Seq).gt(mem(member::Column::ReadSeq)))
        .and_where(msg(message::Column::Seq).gt(mem(member::Column::ClearedSeq)))
        .and_where(msg(message::Column::SenderId).ne(user))
        .and_where(msg(message::Column::DeletedAt).is_null())
        .and_where(msg(message::Column::Id).not_in_subquery(hidden))
        .group_by_col((message::Entity, message::Column::ConversationId))
        .to_owned();
    let rows = db.query_all(&query).await?;
    rows.iter().map(|r| Ok((r.try_get::<String>("", "chat")?, r.try_get::<i64>("", "unread")?))).collect()
}

/// Clears a conversation's history for one member up to `seq`: it is delivered and read,
/// and their history pages start after it.
pub async fn clear(db: &DatabaseConnection, chat: &str, user: &str, seq: i64) -> Result<(), DbErr> {
    let txn = super::begin_write(db).await?;
    super::devices::advance_all(&txn, chat, user, seq).await?;
    for column in [member::Column::ClearedSeq, member::Column::ReadSeq, member::Column::DeliveredSeq] {
        member::Entity::update_many()
            .col_expr(column, Expr::value(seq))
            .filter(member::Column::ConversationId.eq(chat))
            .filter(member::Column::UserId.eq(user))
            .filter(column.lt(seq))
            .exec(&txn)
            .await?;
    }
    txn.commit().await
}

/// Whether two users are members of one conversation.
pub async fn share_a_conversation(db: &DatabaseConnection, a: &str, b: &str) -> Result<bool, DbErr> {
    let of_b = Query::select()
        .column((member::Entity, member::Column::ConversationId))
        .from(member::Entity)
        .and_where(Expr::col((member::Entity, member::Column::UserId)).eq(b))
        .to_owned();
    let found = member::Entity::find()
        .filter(member::Column::UserId.eq(a))
        .filter(Expr::col((member::Entity, member::Column::ConversationId)).in_subquery(of_b))
        .one(db)
        .await?;
    Ok(found.is_some())
}

/// Which of `candidates` share a conversation with `user` (one query, however many).
pub async fn shared_with(db: &DatabaseConnection, user: &str, candidates: &[UserId]) -> Result<Vec<UserId>, DbErr> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let rows = db.query_all_raw(shared_with_query(db.get_database_backend(), user, candidates)).await?;
    rows.iter().map(|r| r.try_get::<String>("", "user_id").map(UserId::from)).collect()
}

/// The statement of [`shared_with`].
pub fn shared_with_query(backend: DbBackend, user: &str, candidates: &[UserId]) -> Statement {
    let mine = Query::select()
        .column((member::Entity, member::Column::ConversationId))
        .from(member::Entity)
        .and_where(Expr::col((member::Entity, member::Column::UserId)).eq(user))
        .to_owned();
    let query = member::Entity::find()
        .select_only()
        .column(member::Column::UserId)
        .distinct()
        .filter(Expr::col((member::Entity, member::Column::ConversationId)).in_subquery(mine))
        .filter(member::Column::UserId.is_in(candidates.iter().map(UserId::as_str)));
    sea_orm::QueryTrait::build(&query, backend)
}

/// Up to `limit` other users sharing a conversation with `user`, by id.
pub async fn contacts(db: &DatabaseConnection, user: &str, limit: u64) -> Result<Vec<String>, DbErr> {
    let rows = db.query_all_raw(contacts_query(db.get_database_backend(), user, limit)).await?;
    rows.iter().map(|r| r.try_get::<String>("", "user_id")).collect()
}

/// The statement of [`contacts`]: the presence circle that SUP, Spark and Mrezhen read at
/// every connect. Its plan must not depend on table statistics (see
/// `devices::cursors_query`). Without them PostgreSQL ran `conversation_id IN (subquery)` as
/// a hash join over every membership (9.5 ms a call at 38,000 memberships), and the generic
/// plan of a prepared statement walked the whole `idx_members_user` index in `user_id` order
/// to serve `ORDER BY … LIMIT` (14 ms); a reconnect wave on a database not yet analyzed spent a
/// minute in those scans. So on PostgreSQL the user's conversations are read first, as an array
/// (`= ANY(ARRAY(…))`: an init plan), their members looked up in the primary key, and only that
/// circle is then ordered and capped (`MATERIALIZED` keeps the `ORDER BY` from reaching into
/// the plan of the circle): 0.3 ms whatever the statistics. SQLite already plans the `IN`
/// that way.
pub fn contacts_query(backend: DbBackend, user: &str, limit: u64) -> Statement {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match backend {
        DbBackend::Postgres => Statement::from_sql_and_values(
            backend,
            "WITH circle AS MATERIALIZED ( \
                 SELECT DISTINCT o.user_id FROM members o \
                 WHERE o.conversation_id = ANY(ARRAY(SELECT conversation_id FROM members WHERE user_id = $1)) \
                   AND o.user_id <> $1) \
             SELECT user_id FROM circle ORDER BY user_id LIMIT $2",
            [user.into(), limit.into()],
        ),
        // Positional parameters: the user is bound once per `?`.
        _ => Statement::from_sql_and_values(
            backend,
            "SELECT DISTINCT o.user_id FROM members o \
             WHERE o.conversation_id IN (SELECT conversation_id FROM members WHERE user_id = ?) \
               AND o.user_id <> ? \
             ORDER BY o.user_id LIMIT ?",
            [user.into(), user.into(), limit.into()],
        ),
    }
}
