//! `GET` / `POST /api/conversations`, `GET` / `PATCH` / `PUT` / `DELETE /api/conversations/{id}`,
//! `POST /api/conversations/{id}/members`, `DELETE /api/conversations/{id}/members/{userId}`,
//! in Spark's shapes.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{delete, get, post},
    Router,
};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::transport::rest::{ok, Authenticated, JsonBody, QueryParams};
use crate::{
    core::{
        conversations::{ConversationRequest, DetailsChange},
        history::{ListCursor, Removal},
        model::{Conversation, ConversationKind},
    },
    dialects::{iso, spark::message_json},
    error::AppError,
    transport::AppState,
};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/conversations", get(list).post(create))
        .route("/api/conversations/{id}", get(show).patch(update).put(update).delete(remove))
        .route("/api/conversations/{id}/members", post(add_member))
        .route("/api/conversations/{id}/members/{user_id}", delete(remove_member))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateBody {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    avatar: Option<Option<String>>,
}

/// Tells a field sent as `null` (clear it: `Some(None)`) from one not sent (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    participant_ids: Vec<String>,
    name: Option<String>,
    description: Option<String>,
    avatar: Option<String>,
    #[serde(default)]
    encrypted: bool,
}

#[derive(Deserialize)]
struct ListQuery {
    cursor: Option<String>,
    limit: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddMemberBody {
    user_id: String,
    role: Option<String>,
}

pub fn conversation_json(c: &Conversation) -> Value {
    json!({
        "id": c.id,
        "type": c.kind,
        "name": c.name,
        "description": c.description,
        "avatar": c.avatar,
        "encrypted": c.encrypted,
        "createdBy": c.created_by,
        "participants": c.members.iter().map(|m| json!({
            "userId": m.user_id,
            "username": m.username,
            "name": m.name,
            "avatar": m.avatar,
            "role": m.role,
            "joinedAt": iso(&m.joined_at),
        })).collect::<Vec<_>>(),
        "lastSeq": c.last_seq,
        "createdAt": iso(&c.created_at),
        "updatedAt": iso(&c.updated_at),
    })
}

/// `POST /api/conversations`: 201 with the new conversation, 200 with a reused direct one.
async fn create(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    JsonBody(body): JsonBody<CreateBody>,
) -> super::Reply<impl IntoResponse> {
    let kind = ConversationKind::parse(&body.kind)
        .ok_or_else(|| AppError::validation("type must be direct, group or self"))?;
    let req = ConversationRequest {
        kind,
        participant_ids: body.participant_ids,
        name: body.name,
        description: body.description,
        avatar: body.avatar,
        encrypted: body.encrypted,
    };
    let (conversation, created) = app.core.create_conversation(&actor, req).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, ok(conversation_json(&conversation))))
}

/// `GET /api/conversations/{id}`.
async fn show(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
) -> super::Reply<impl IntoResponse> {
    let conversation = app.core.conversation(&actor, &id).await?;
    Ok(ok(conversation_json(&conversation)))
}

/// `POST /api/conversations/{id}/members`.
async fn add_member(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AddMemberBody>,
) -> super::Reply<impl IntoResponse> {
    let conversation = app.core.add_member(&actor, &id, &body.user_id, body.role.as_deref()).await?;
    Ok((StatusCode::CREATED, ok(conversation_json(&conversation))))
}

/// `PATCH` or `PUT /api/conversations/{id}`: name, description, avatar of a group (owners,
/// admins); fields left out stay as they are.
async fn update(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> super::Reply<impl IntoResponse> {
    let change = DetailsChange { name: body.name, description: body.description, avatar: body.avatar };
    let conversation = app.core.update_details(&actor, &id, change).await?;
    Ok(ok(conversation_json(&conversation)))
}

/// `DELETE /api/conversations/{id}/members/{userId}`: remove a member, or leave (own id).
async fn remove_member(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path((id, user_id)): Path<(String, String)>,
) -> super::Reply<impl IntoResponse> {
    let conversation = app.core.remove_member(&actor, &id, &user_id).await?;
    Ok(ok(conversation_json(&conversation)))
}

/// `GET /api/conversations`: the caller's conversations, most recently active first, with
/// `lastMessage` and `unreadCount`; `?limit=` (default 100, at most 500) and `?cursor=` from
/// the previous page's `nextCursor`.
async fn list(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    QueryParams(query): QueryParams<ListQuery>,
) -> super::Reply<impl IntoResponse> {
    let after = query.cursor.filter(|c| !c.is_empty()).map(|c| c.parse::<ListCursor>()).transpose()?;
    let (summaries, next) = app.core.list_conversations(&actor, after, query.limit).await?;
    let conversations: Vec<Value> = summaries
        .iter()
        .map(|s| {
            let mut item = conversation_json(&s.conversation);
            item["lastMessage"] = s.last_message.as_ref().map(message_json).unwrap_or(Value::Null);
            item["unreadCount"] = json!(s.unread_count);
            item
        })
        .collect();
    Ok(ok(json!({
        "conversations": conversations,
        "hasMore": next.is_some(),
        "nextCursor": next.map(|c| c.to_string()),
    })))
}

/// `DELETE /api/conversations/{id}`: leave a group; for a direct conversation or a note to
/// self, clear it for the caller (it comes back with the next message).
async fn remove(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
) -> super::Reply<impl IntoResponse> {
    let action = match app.core.remove_conversation(&actor, &id).await? {
        Removal::Left => "left",
        Removal::Cleared => "cleared",
    };
    Ok(ok(json!({ "conversationId": id, "action": action })))
}

/// The JSON bodies this module's routes read, with their decoders (see `super::body_decoders`).
pub(super) fn bodies() -> Vec<(&'static str, crate::payload::Decoder)> {
    use crate::payload::decoder;
    vec![
        ("POST /api/conversations", decoder::<CreateBody>()),
        ("POST /api/conversations/{id}/members", decoder::<AddMemberBody>()),
        ("PATCH /api/conversations/{id}", decoder::<UpdateBody>()),
    ]
}
