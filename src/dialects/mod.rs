//! Wire dialects. Each only translates: client events → core calls, and core events → its own
//! event names and shapes, over whichever transports it uses (`crate::transport`). Adding a
//! dialect adds a module here and touches nothing in `core`.

pub mod mrezhen;
pub mod spark;
pub mod sup;

use std::sync::Arc;

use axum::{extract::Request, http::header, middleware::Next, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::{
    core::model::AttachmentInfo,
    transport::{raw_ws, AppState},
};

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
pub fn mentions(metadata: Option<&Value>) -> Vec<String> {
    metadata
        .and_then(|m| m.get("mentions"))
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).take(MAX_MENTIONS).map(str::to_string).collect())
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

/// Serves the raw WebSocket dialects on `router`: `mrezhen` at `/ws`, and on WebSocket
/// upgrades to `/` (its browser client opens the root path; a plain `GET /` still reaches
/// the demo page, and Socket.IO keeps `/socket.io/`).
pub fn mount(router: Router, app: &Arc<AppState>) -> Router {
    let (app, mrezhen) = (app.clone(), Arc::new(mrezhen::Mrezhen::new(&app.core, &app.config)));
    router.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let (app, mrezhen) = (app.clone(), mrezhen.clone());
        async move {
            let path = req.uri().path();
            if path == "/ws" || (path == "/" && wants_websocket(&req)) {
                return raw_ws::accept(app, mrezhen, req, None).await;
            }
            next.run(req).await
        }
    }))
}

/// An HTTP/1.1 WebSocket upgrade request (`Upgrade: websocket`).
fn wants_websocket(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
}
