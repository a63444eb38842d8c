//! Wire dialects. Each only translates: client events → core calls, and core events → its own
//! event names and shapes, over whichever transports it uses (`crate::transport`). Adding a
//! dialect adds a module here and touches nothing in `core`.

pub mod e2e;
pub mod mrezhen;
pub mod socialink;
pub mod spark;
pub mod sup;

use std::sync::Arc;

use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use socketioxide::SocketIo;

use crate::{
    core::model::AttachmentInfo,
    error::Field,
    transport::{socketio::mount, AppState},
};

/// Serves a Socket.IO dialect on a namespace.
pub type MountSocketIo = fn(&SocketIo, &'static str);
/// A dialect's REST routes.
pub type Routes = fn(&AppState) -> Router<Arc<AppState>>;
/// Wraps the finished router: requests a dialect takes before any route.
pub type Intercept = fn(Router, &Arc<AppState>) -> Router;

/// A dialect and the transports that carry it.
pub struct Dialect {
    /// Its name, as `DEFAULT_PROFILE` names it.
    pub name: &'static str,
    /// Its Socket.IO namespace, and how to serve it on one (also on `/` when it is the
    /// default).
    pub socket_io: Option<(&'static str, MountSocketIo)>,
    /// Its REST routes.
    pub routes: Option<Routes>,
    /// Requests it takes before any route sees them (raw WebSocket upgrades).
    pub intercept: Option<Intercept>,
}

/// Every dialect. A new dialect is a module above and one entry here; nothing else changes.
pub const DIALECTS: &[Dialect] = &[
    Dialect { name: "sup", socket_io: Some(("/sup", mount::<sup::Sup>)), routes: None, intercept: None },
    Dialect {
        name: "spark",
        socket_io: Some(("/spark", mount::<spark::Spark>)),
        routes: Some(spark::routes),
        intercept: None,
    },
    Dialect { name: "mrezhen", socket_io: None, routes: None, intercept: Some(mrezhen::intercept) },
    Dialect { name: "socialink", socket_io: None, routes: Some(socialink::routes), intercept: None },
    Dialect { name: "e2e", socket_io: Some(("/e2e", mount::<e2e::E2e>)), routes: Some(e2e::routes), intercept: None },
];

/// Mounts every Socket.IO dialect on its namespace, and `default` also on `/`. Returns the
/// namespaces served, or why `default` cannot be the default.
pub fn mount_socket_io(io: &SocketIo, default: &str) -> Result<Vec<&'static str>, String> {
    let socket_io = || DIALECTS.iter().filter_map(|d| d.socket_io.map(|s| (d.name, s)));
    let Some((_, (_, mount_default))) = socket_io().find(|(name, _)| *name == default) else {
        let names: Vec<&str> = socket_io().map(|(name, _)| name).collect();
        return Err(format!("must be one of {}", names.join(", ")));
    };
    let mut namespaces = vec!["/"];
    mount_default(io, "/");
    for (_, (namespace, mount)) in socket_io() {
        mount(io, namespace);
        namespaces.push(namespace);
    }
    Ok(namespaces)
}

/// The dialects' REST routes, on the router before its state is set.
pub fn routes(mut router: Router<Arc<AppState>>, app: &AppState) -> Router<Arc<AppState>> {
    for routes in DIALECTS.iter().filter_map(|d| d.routes) {
        router = router.merge(routes(app));
    }
    router
}

/// The dialects that take requests before any route (raw WebSocket endpoints).
pub fn intercept(mut router: Router, app: &Arc<AppState>) -> Router {
    for intercept in DIALECTS.iter().filter_map(|d| d.intercept) {
        router = intercept(router, app);
    }
    router
}

/// The camelCase names of request fields that SUP and Spark share; they differ only in what
/// they call a chat (`chat`).
pub fn camel_case_field(field: Field, chat: &'static str) -> &'static str {
    match field {
        Field::Chat => chat,
        Field::Message => "messageId",
        Field::User | Field::Peer => "userId",
        Field::Users => "userIds[]",
        Field::Call => "callId",
        Field::Callee | Field::Recipient => "calleeId",
        Field::Device => "deviceId",
        Field::Attachment => "attachmentId",
        Field::Attachments => "attachments[]",
        Field::Participants => "participantIds[]",
        Field::ReplyTo => "replyToId",
        Field::TempId => "tempId",
        Field::Notification => "notificationId",
        Field::Cursor => "cursor",
    }
}

/// Timestamps on the wire: RFC 3339 in UTC with milliseconds, as JavaScript's `toISOString`.
pub fn iso(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An attachment as every dialect shows it; the file is at `url`, a preview (images) at
/// `thumbnailUrl`, both for `Authorization: Bearer` or `?token=`.
pub fn attachment_json(a: &AttachmentInfo) -> Value {
    json!({
        "id": a.id,
        "type": a.kind,
        "contentType": a.content_type,
        "fileName": a.file_name,
        "size": a.size,
        "width": a.width,
        "height": a.height,
        "url": format!("/api/attachments/{}", a.id),
        "thumbnailUrl": a.has_thumbnail.then(|| format!("/api/attachments/{}/thumbnail", a.id)),
    })
}

/// Most mentions one message may carry; members beyond a group's size cannot be mentioned.
const MAX_MENTIONS: usize = 1000;

/// `metadata.mentions`: the user ids a message mentions (anything else there is ignored).
pub fn mentions(metadata: Option<&Value>) -> Vec<crate::domain::UserId> {
    metadata
        .and_then(|m| m.get("mentions"))
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).take(MAX_MENTIONS).map(Into::into).collect())
        .unwrap_or_default()
}

/// A chat's change as both dialects send it: who and when, and only the fields that changed.
/// Only the name of the id field differs (`chatId` in sup, `conversationId` in spark).
pub fn chat_changes_json(u: &crate::core::model::ChatUpdated, id_key: &str) -> serde_json::Value {
    use crate::core::model::ChatField;
    use serde_json::json;
    let mut out = json!({ "updatedBy": u.updated_by, "updatedAt": iso(&u.updated_at) });
    out[id_key] = json!(u.chat_id);
    for field in &u.changed {
        match field {
            ChatField::Name => out["name"] = json!(u.name),
            ChatField::Description => out["description"] = json!(u.description),
            ChatField::Avatar => out["avatar"] = json!(u.avatar),
            ChatField::Members => out["memberCount"] = json!(u.member_count),
            ChatField::Owner => out["ownerId"] = json!(u.owner_id),
        }
    }
    out
}
