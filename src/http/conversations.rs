//! `POST /api/conversations`, `GET /api/conversations/{id}`, `PATCH /api/conversations/{id}`,
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

use super::{ok, Authenticated, JsonBody};
use crate::{
    app::AppState,
    core::{
        conversations::{ConversationRequest, DetailsChange},
        model::{Conversation, ConversationKind},
    },
    error::{AppError, AppResult},
    profiles::iso,
};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/conversations", post(create))
        .route("/api/conversations/{id}", get(show).patch(update))
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
) -> AppResult<impl IntoResponse> {
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
) -> AppResult<impl IntoResponse> {
    let conversation = app.core.conversation(&actor, &id).await?;
    Ok(ok(conversation_json(&conversation)))
}

/// `POST /api/conversations/{id}/members`.
async fn add_member(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AddMemberBody>,
) -> AppResult<impl IntoResponse> {
    let conversation = app.core.add_member(&actor, &id, &body.user_id, body.role.as_deref()).await?;
    Ok((StatusCode::CREATED, ok(conversation_json(&conversation))))
}

/// `PATCH /api/conversations/{id}`: name, description, avatar of a group (owners, admins).
async fn update(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> AppResult<impl IntoResponse> {
    let change = DetailsChange { name: body.name, description: body.description, avatar: body.avatar };
    let conversation = app.core.update_details(&actor, &id, change).await?;
    Ok(ok(conversation_json(&conversation)))
}

/// `DELETE /api/conversations/{id}/members/{userId}`: remove a member, or leave (own id).
async fn remove_member(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path((id, user_id)): Path<(String, String)>,
) -> AppResult<impl IntoResponse> {
    let conversation = app.core.remove_member(&actor, &id, &user_id).await?;
    Ok(ok(conversation_json(&conversation)))
}
