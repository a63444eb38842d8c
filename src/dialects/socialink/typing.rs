//! Socialink's typing indicators (protocols/socialink.md §7): the core's, which lapse after
//! `TYPING_TIMEOUT` unless renewed and are heard by every dialect.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    routing::put,
    Json, Router,
};
use serde_json::{json, Value};

use super::wire::{target_id, time, Caller, Reply};
use crate::{core::model::Event, transport::AppState};

pub fn router(_app: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route("/typing/{conversation_id}/{user_id}", put(start).delete(stop))
        .route("/typing/{conversation_id}", axum::routing::get(list))
}

/// `PUT /typing/{conversation_id}/{user_id}`: members only.
async fn start(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((conversation_id, user_id)): Path<(String, String)>,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    app.core.set_typing(actor, target_id(&conversation_id)?, true).await?;
    Ok(Json(json!({ "success": true })))
}

/// `DELETE /typing/{conversation_id}/{user_id}`: members only.
async fn stop(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((conversation_id, user_id)): Path<(String, String)>,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    app.core.set_typing(actor, target_id(&conversation_id)?, false).await?;
    Ok(Json(json!({ "success": true })))
}

/// `GET /typing/{conversation_id}`: who types there now, for members.
async fn list(
    State(app): State<Arc<AppState>>,
    Caller(actor): Caller,
    Path(conversation_id): Path<String>,
) -> Reply<Json<Value>> {
    let typing = app.core.typing_in(&actor, target_id(&conversation_id)?).await?;
    Ok(Json(json!({ "count": typing.len(), "typing_users": typing })))
}

/// The `typing` frame (§9) of a typing change; `None` for any other event.
pub fn frame(event: &Event) -> Option<Value> {
    let Event::Typing(t) = event else { return None };
    Some(json!({
        "type": "typing",
        "conversation_id": t.chat_id,
        "user_id": t.user_id,
        "is_typing": t.typing,
        "timestamp": time(&t.at),
    }))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::core::model::Typing;

    #[test]
    fn typing_changes_become_typing_frames() {
        let at = Utc::now();
        let event = Event::Typing(Typing {
            chat_id: "c1".into(),
            user_id: "bob".into(),
            username: Some("Bob".into()),
            typing: false,
            at,
        });
        assert_eq!(
            frame(&event),
            Some(json!({
                "type": "typing", "conversation_id": "c1", "user_id": "bob", "is_typing": false,
                "timestamp": time(&at),
            }))
        );
    }
}
