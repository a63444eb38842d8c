//! Socialink's groups (protocols/socialink.md §5, except `send`, which is messages'): create,
//! add, remove, get, members. A group is the core's `group` conversation (`group_id` =
//! `conversation_id`) under Socialink's rules: `SOCIALINK_MAX_GROUP_SIZE` members and an owner
//! who can neither be removed nor leave. Every add and remove bumps the group's epoch.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{delete, get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{body, decode_with, done, target_id, time, Bytes64, Caller, Reply};
use crate::{
    core::{
        conversations::{ConversationRequest, GroupRules},
        model::{Actor, Conversation, ConversationKind, Event, Role},
    },
    error::AppError,
    transport::AppState,
};

pub fn router(_app: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route("/groups/create/{creator_id}", post(create))
        .route("/groups/{group_id}", get(show))
        .route("/groups/{group_id}/members", get(members))
        .route("/groups/{group_id}/members/{user_id}", post(add))
        .route("/groups/{group_id}/members/{user_id}/{removed_by}", delete(remove))
}

/// Longest group name, in characters.
const MAX_NAME: usize = 100;

/// Socialink's group rules.
pub fn rules(app: &AppState) -> GroupRules {
    GroupRules { max_members: app.config.socialink_max_group_size, owner_stays: true }
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    description: Option<String>,
    #[serde(default)]
    member_ids: Vec<String>,
}

impl CreateBody {
    fn check(&self) -> Reply<()> {
        let length = self.name.chars().count();
        if self.name.trim().is_empty() || length > MAX_NAME {
            return Err(AppError::validation(format!("name must be 1 to {MAX_NAME} characters")).into());
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct AddBody {
    user_id: String,
}

impl AddBody {
    fn check(&self) -> Reply<()> {
        Ok(crate::core::check_id(crate::error::Field::User, &self.user_id)?)
    }
}

/// The JSON bodies of these routes, each with the checks made before any lookup (see
/// `super::body_decoders`).
pub(super) fn bodies() -> Vec<(&'static str, crate::payload::Decoder)> {
    vec![
        ("POST /groups/create/{creator_id}", |v| decode_with(v, |b: CreateBody| b.check())),
        ("POST /groups/{group_id}/members/{added_by}", |v| decode_with(v, |b: AddBody| b.check())),
    ]
}

/// `POST /groups/create/{creator_id}`: 201 with the group.
async fn create(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(creator_id): Path<String>,
    bytes: Bytes,
) -> Reply<impl IntoResponse> {
    let actor = caller.acting_as(&creator_id)?;
    let req: CreateBody = body(&bytes)?;
    req.check()?;
    let request = ConversationRequest {
        kind: ConversationKind::Group,
        participant_ids: req.member_ids,
        name: Some(req.name),
        description: req.description,
        avatar: None,
        encrypted: true,
    };
    let (group, _) = app.core.create_conversation_with(actor, request, rules(&app)).await?;
    Ok((StatusCode::CREATED, Json(group_json(&group, &app))))
}

/// `GET /groups/{group_id}`: members only.
async fn show(
    State(app): State<Arc<AppState>>,
    Caller(actor): Caller,
    Path(group_id): Path<String>,
) -> Reply<Json<Value>> {
    let group = group(&app, &actor, &group_id).await?;
    Ok(Json(group_json(&group, &app)))
}

/// `GET /groups/{group_id}/members`: members only, in the order they joined.
async fn members(
    State(app): State<Arc<AppState>>,
    Caller(actor): Caller,
    Path(group_id): Path<String>,
) -> Reply<Json<Value>> {
    let group = group(&app, &actor, &group_id).await?;
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|m| {
            json!({
                "group_id": group.id,
                "user_id": m.user_id,
                "role": role_name(m.role),
                "joined_at": time(&m.joined_at),
                "added_by": m.added_by,
                "is_muted": false,
            })
        })
        .collect();
    Ok(Json(json!({ "count": members.len(), "members": members })))
}

/// `POST /groups/{group_id}/members/{added_by}` `{user_id}`: owners and admins add plain
/// members.
async fn add(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((group_id, added_by)): Path<(String, String)>,
    bytes: Bytes,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&added_by)?;
    let req: AddBody = body(&bytes)?;
    req.check()?;
    group(&app, actor, &group_id).await?;
    app.core.add_member_with(actor, &group_id, &req.user_id, None, rules(&app)).await?;
    Ok(done("Member added"))
}

/// `DELETE /groups/{group_id}/members/{user_id}/{removed_by}`: owners remove anyone, admins
/// plain members, a member may leave; the owner stays.
async fn remove(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((group_id, user_id, removed_by)): Path<(String, String, String)>,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&removed_by)?;
    group(&app, actor, &group_id).await?;
    app.core.remove_member_with(actor, &group_id, &user_id, rules(&app)).await?;
    Ok(done(if user_id == removed_by { "Left the group" } else { "Member removed" }))
}

/// The group, for a member: `NOT_FOUND` unknown (or not a group), `FORBIDDEN` for others.
async fn group(app: &AppState, actor: &Actor, id: &str) -> Reply<Conversation> {
    let conversation = app.core.conversation(actor, target_id(id)?).await?;
    if conversation.kind != ConversationKind::Group {
        return Err(AppError::NotFound("no such group".into()).into());
    }
    Ok(conversation)
}

/// The Group object of §5.
pub fn group_json(g: &Conversation, app: &AppState) -> Value {
    json!({
        "id": g.id,
        "conversation_id": g.id,
        "name": g.name,
        "description": g.description,
        "avatar_url": g.avatar,
        "created_by": g.created_by,
        "member_count": g.members.len(),
        "max_members": app.config.socialink_max_group_size,
        "is_public": false,
        "invite_link": null,
        "mls_group_id": mls_group_id(&g.id),
        "current_epoch": g.epoch,
        "created_at": time(&g.created_at),
        "updated_at": time(&g.updated_at),
    })
}

/// The group id's 16 bytes in base64, as the real server set its MLS group id; `null` for an
/// id that is not a UUID (none the server mints).
fn mls_group_id(id: &str) -> Option<String> {
    uuid::Uuid::parse_str(id).ok().map(|u| Bytes64::encode(u.as_bytes()))
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Owner => "Owner",
        Role::Admin => "Admin",
        Role::Member => "Member",
    }
}

/// The `group_member` frame (§9) of a membership change, for the members' devices (the
/// removed one included); `None` for any other event.
pub fn frame(event: &Event) -> Option<Value> {
    let (group_id, user_id, action, by, epoch) = match event {
        Event::MemberJoined(j) => (&j.chat_id, &j.user_id, "added", &j.added_by, j.epoch),
        Event::MemberLeft(l) => (&l.chat_id, &l.user_id, "removed", &l.removed_by, l.epoch),
        _ => return None,
    };
    Some(json!({
        "type": "group_member",
        "group_id": group_id,
        "user_id": user_id,
        "action": action,
        "by": by,
        "current_epoch": epoch,
    }))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::core::model::{MemberJoined, MemberLeft};

    #[test]
    fn membership_changes_become_group_member_frames() {
        let joined = Event::MemberJoined(MemberJoined {
            chat_id: "g1".into(),
            user_id: "bob".into(),
            role: Role::Member,
            added_by: "alice".into(),
            at: Utc::now(),
            epoch: 3,
        });
        assert_eq!(
            frame(&joined),
            Some(json!({
                "type": "group_member", "group_id": "g1", "user_id": "bob", "action": "added",
                "by": "alice", "current_epoch": 3,
            }))
        );
        let left = Event::MemberLeft(MemberLeft {
            chat_id: "g1".into(),
            user_id: "bob".into(),
            removed_by: "bob".into(),
            at: Utc::now(),
            epoch: 4,
        });
        let out = frame(&left).expect("a frame");
        assert_eq!(out["action"], "removed");
        assert_eq!(out["by"], "bob");
        assert_eq!(out["current_epoch"], 4);
    }

    #[test]
    fn the_mls_group_id_is_the_uuids_sixteen_bytes() {
        let id = "0190f1d2-3c4b-7a89-8000-0123456789ab";
        let bytes = Bytes64::decode(&mls_group_id(id).expect("a UUID")).expect("base64");
        assert_eq!(bytes, uuid::Uuid::parse_str(id).expect("uuid").as_bytes().to_vec());
        assert_eq!(mls_group_id("not-a-uuid"), None);
    }
}
