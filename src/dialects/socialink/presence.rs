//! Socialink's presence (protocols/socialink.md §6): the core's presence, shared with every
//! dialect. REST `online` lasts `PRESENCE_TIMEOUT_SECONDS` unless renewed (or for as long as
//! the user has a connection of any dialect); `offline` ends it now.

use crate::domain::UserId;
use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    routing::{get, post, put},
    Json, Router,
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{body, decode_with, optional_body, parse_enum, time, Caller, IdList, Reply};
use crate::{
    core::model::{Event, Presence, PresenceStatus},
    error::AppError,
    transport::AppState,
};

pub fn router(_app: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route("/presence/online/{user_id}", put(online))
        .route("/presence/offline/{user_id}", put(offline))
        .route("/presence/status/{user_id}", put(status))
        .route("/presence/bulk", post(bulk))
        .route("/presence/online-count", get(online_count))
        .route("/presence/{user_id}", get(show))
}

/// Longest custom status, in characters.
const MAX_CUSTOM_STATUS: usize = 255;
/// Most users one bulk request may name.
const MAX_BULK: usize = 500;

/// The statuses a user may choose (`Offline` has its own endpoint).
const CHOSEN: [(&str, PresenceStatus); 3] =
    [("Online", PresenceStatus::Online), ("Away", PresenceStatus::Away), ("Busy", PresenceStatus::Busy)];

#[derive(Deserialize, Default)]
struct OnlineBody {
    /// The device going online; accepted and not needed (presence is per user).
    #[serde(default)]
    #[allow(dead_code)]
    device_id: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct StatusBody {
    #[serde(default)]
    custom_status: Option<String>,
    status: Option<String>,
}

/// A chosen status (`Online`, `Away`, `Busy`), when one is given.
fn chosen(status: Option<&str>) -> Reply<Option<PresenceStatus>> {
    status.map(|s| parse_enum(s, &CHOSEN, "status")).transpose()
}

/// A bulk request's ids, at most [`MAX_BULK`].
fn bulk_ids(value: Value) -> Reply<Vec<UserId>> {
    let IdList(ids) = IdList::from_json(value, "user_ids")?;
    if ids.len() > MAX_BULK {
        return Err(AppError::validation(format!("at most {MAX_BULK} user ids per request")).into());
    }
    Ok(ids.into_iter().map(UserId::from).collect())
}

/// The JSON bodies of these routes, each with the checks made before any lookup (see
/// `super::body_decoders`).
pub(super) fn bodies() -> Vec<(&'static str, crate::payload::Decoder)> {
    vec![
        ("PUT /presence/online/{user_id}", |v| decode_with(v, |b: OnlineBody| chosen(b.status.as_deref()).map(drop))),
        ("PUT /presence/status/{user_id}", |v| decode_with(v, |b: StatusBody| chosen(b.status.as_deref()).map(drop))),
        ("POST /presence/bulk", |v| bulk_ids(v).map(drop).map_err(|super::wire::Rejection(e)| e)),
    ]
}

/// `PUT /presence/online/{user_id}` `{device_id?, status?}`.
async fn online(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<String>,
    bytes: Bytes,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    let req: OnlineBody = optional_body(&bytes)?;
    let status = chosen(req.status.as_deref())?.unwrap_or(PresenceStatus::Online);
    app.core.online_for_a_while(actor, status).await?;
    Ok(Json(json!({ "success": true, "status": "online" })))
}

/// `PUT /presence/offline/{user_id}`.
async fn offline(State(app): State<Arc<AppState>>, caller: Caller, Path(user_id): Path<String>) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    app.core.go_offline(actor).await?;
    Ok(Json(json!({ "success": true, "status": "offline" })))
}

/// `PUT /presence/status/{user_id}` `{custom_status, status?}`: the custom status, and
/// optionally `Away`/`Busy` (or back to `Online`); without `status` the chosen one stays.
async fn status(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<String>,
    bytes: Bytes,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    let req: StatusBody = body(&bytes)?;
    let status = match chosen(req.status.as_deref())? {
        Some(status) => status,
        None => match app.core.chosen_presence(&actor.user_id).await? {
            // "Appear offline" (SUP's status, or Socialink's `offline` while connected) stays.
            Some((chosen, _)) => chosen,
            None => PresenceStatus::Online,
        },
    };
    app.core.update_presence_with(actor, status.as_str(), req.custom_status, MAX_CUSTOM_STATUS).await?;
    Ok(Json(json!({ "success": true })))
}

/// `GET /presence/{user_id}`: any authenticated user may ask; someone the caller may not see
/// (no shared conversation: the core's visibility rule) reads as an unknown user, `Offline`.
async fn show(State(app): State<Arc<AppState>>, Caller(me): Caller, Path(user_id): Path<String>) -> Reply<Json<Value>> {
    let found = app.core.presence_seen_by(&me, &[UserId::from(user_id)]).await?;
    let p = found.first().ok_or_else(|| AppError::Internal(anyhow::anyhow!("no presence for a user asked")))?;
    Ok(Json(presence_json(p)))
}

/// `POST /presence/bulk` `[user_id, …]` (or `{user_ids}`), at most 500, in request order.
async fn bulk(State(app): State<Arc<AppState>>, Caller(me): Caller, bytes: Bytes) -> Reply<Json<Value>> {
    let ids = bulk_ids(body(&bytes)?)?;
    let presences: Vec<Value> = app.core.presence_seen_by(&me, &ids).await?.iter().map(presence_json).collect();
    Ok(Json(json!({ "count": presences.len(), "presences": presences })))
}

/// `GET /presence/online-count`: users online in any dialect.
async fn online_count(State(app): State<Arc<AppState>>, Caller(_): Caller) -> Reply<Json<Value>> {
    Ok(Json(json!({ "online_count": app.core.online_count().await? })))
}

pub fn status_name(status: PresenceStatus) -> &'static str {
    match status {
        PresenceStatus::Online => "Online",
        PresenceStatus::Away => "Away",
        PresenceStatus::Busy => "Busy",
        PresenceStatus::Offline => "Offline",
    }
}

/// The Presence object of §6.
pub fn presence_json(p: &Presence) -> Value {
    json!({
        "user_id": p.user_id,
        "status": status_name(p.status),
        "last_seen": p.last_seen.as_ref().map(time),
        "custom_status": p.custom_status,
    })
}

/// The `presence` frame (§9) of a presence change; `None` for any other event.
pub fn frame(event: &Event) -> Option<Value> {
    let Event::Presence(p) = event else { return None };
    Some(json!({
        "type": "presence",
        "user_id": p.user_id,
        "status": status_name(p.status),
        "custom_status": p.custom_status,
        "last_seen": p.last_seen.as_ref().map(time),
        "timestamp": time(&Utc::now()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_changes_become_presence_frames() {
        let at = Utc::now();
        let event = Event::Presence(Presence {
            user_id: "alice".into(),
            status: PresenceStatus::Away,
            custom_status: Some("lunch".into()),
            last_seen: Some(at),
        });
        let out = frame(&event).expect("a frame");
        assert_eq!(out["type"], "presence");
        assert_eq!(out["user_id"], "alice");
        assert_eq!(out["status"], "Away");
        assert_eq!(out["custom_status"], "lunch");
        assert_eq!(out["last_seen"], time(&at));
        assert!(out["timestamp"].is_string());
        assert_eq!(frame(&Event::MessageDeleted(sample_deleted())), None);
    }

    fn sample_deleted() -> crate::core::model::MessageDeleted {
        crate::core::model::MessageDeleted {
            chat_id: "c".into(),
            message_id: "m".into(),
            seq: 1,
            deleted_by: "u".into(),
            for_everyone: true,
            expired: false,
            at: Utc::now(),
        }
    }
}
