//! Spark's message routes: `GET` / `POST /api/conversations/{id}/messages`,
//! `PUT` / `DELETE /api/messages/{id}`, `GET /api/messages/{id}/edits`,
//! `POST /api/messages/{id}/reactions`, `DELETE /api/messages/{id}/reactions/{emoji}`.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{delete, get, post, put},
    Router,
};
use serde::Deserialize;
use serde_json::json;

use crate::transport::rest::{ok, Authenticated, JsonBody, QueryParams};
use crate::{
    dialects::{
        iso,
        spark::{delete_for, deleted_json, message_json, reaction_json, SendMessage},
    },
    error::AppError,
    transport::AppState,
};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/conversations/{id}/messages", get(page).post(send))
        .route("/api/messages/{id}", put(edit).delete(remove))
        .route("/api/messages/{id}/edits", get(edits))
        .route("/api/messages/{id}/reactions", post(react))
        .route("/api/messages/{id}/reactions/{emoji}", delete(unreact))
}

#[derive(Deserialize)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteQuery {
    delete_for: Option<String>,
}

#[derive(Deserialize)]
struct EditBody {
    content: String,
}

#[derive(Deserialize)]
struct ReactBody {
    emoji: String,
}

/// `GET /api/conversations/{id}/messages?cursor=&limit=`: newest first; `limit` defaults to
/// 50 and is capped at 100; `nextCursor` (opaque) continues with older messages.
async fn page(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<PageQuery>,
) -> super::Reply<impl IntoResponse> {
    // The cursor is the `seq` to continue below; clients only hand back what they got.
    let before = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|seq| *seq > 0)
                .ok_or_else(|| AppError::validation("cursor is not one this server gave out"))?,
        ),
    };
    let page = app.core.message_page(&actor, &id, before, query.limit).await?;
    Ok(ok(json!({
        "messages": page.messages.iter().map(message_json).collect::<Vec<_>>(),
        "nextCursor": page.next_before.map(|seq| seq.to_string()),
        "hasMore": page.next_before.is_some(),
    })))
}

/// `POST /api/conversations/{id}/messages`: `{content, encrypted?, replyToId?, attachments?,
/// type?, location?, tempId?}`; 201 with the stored message.
async fn send(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
    JsonBody(mut body): JsonBody<SendMessage>,
) -> super::Reply<impl IntoResponse> {
    body.conversation_id = id;
    let (draft, extras) = body.into_parts();
    let msg = app.core.send_message_with(&actor, draft, extras, None).await?;
    Ok((StatusCode::CREATED, ok(message_json(&msg))))
}

/// `PUT /api/messages/{id}`: `{content}`, by the sender within the edit window.
async fn edit(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EditBody>,
) -> super::Reply<impl IntoResponse> {
    let msg = app.core.edit_message(&actor, &id, &body.content).await?;
    Ok(ok(message_json(&msg)))
}

/// `DELETE /api/messages/{id}?deleteFor=self|everyone` (default `self`).
async fn remove(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<DeleteQuery>,
) -> super::Reply<impl IntoResponse> {
    let everyone = delete_for(query.delete_for.as_deref())?;
    let deleted = app.core.delete_message(&actor, &id, everyone).await?;
    Ok(ok(deleted_json(&deleted)))
}

/// `GET /api/messages/{id}/edits`: the message and its edits, oldest first.
async fn edits(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
) -> super::Reply<impl IntoResponse> {
    let (message, edits) = app.core.message_edits(&actor, &id).await?;
    Ok(ok(json!({
        "messageId": message.id,
        "conversationId": message.chat_id,
        "content": message.content,
        "editedAt": message.edited_at.as_ref().map(iso),
        "edits": edits.iter().map(|e| json!({
            "previousContent": e.previous_content,
            "content": e.content,
            "editorId": e.editor_id,
            "editedAt": iso(&e.edited_at),
        })).collect::<Vec<_>>(),
    })))
}

/// `POST /api/messages/{id}/reactions`: `{emoji}`; 201 with the reaction.
async fn react(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReactBody>,
) -> super::Reply<impl IntoResponse> {
    let reaction = app.core.react(&actor, &id, &body.emoji, true).await?;
    Ok((StatusCode::CREATED, ok(reaction_json(&reaction))))
}

/// `DELETE /api/messages/{id}/reactions/{emoji}` (the emoji percent-encoded).
async fn unreact(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path((id, emoji)): Path<(String, String)>,
) -> super::Reply<impl IntoResponse> {
    let reaction = app.core.react(&actor, &id, &emoji, false).await?;
    Ok(ok(reaction_json(&reaction)))
}

/// The JSON bodies this module's routes read, with their decoders (see `super::body_decoders`).
pub(super) fn bodies() -> Vec<(&'static str, crate::payload::Decoder)> {
    use crate::payload::decoder;
    vec![
        ("PUT /api/messages/{id}", decoder::<EditBody>()),
        ("POST /api/messages/{id}/reactions", decoder::<ReactBody>()),
    ]
}
