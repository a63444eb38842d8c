//! Spark's encryption routes: `POST /api/encryption/keys`, `GET /api/encryption/keys/{userId}`,
//! `POST /api/encryption/verify`. How verification works is described in `core::keys`.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
    Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::transport::rest::{ok, Authenticated, JsonBody};
use crate::{core::keys::DeviceKey, dialects::iso, transport::AppState};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/encryption/keys", post(upload))
        .route("/api/encryption/keys/{user_id}", get(list))
        .route("/api/encryption/verify", post(verify))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadBody {
    public_key: String,
    device_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerifyBody {
    device_id: String,
    verification_code: String,
}

fn key_json(k: &DeviceKey) -> Value {
    json!({
        "userId": k.user_id,
        "deviceId": k.device_id,
        "publicKey": k.public_key,
        "fingerprint": k.fingerprint,
        "verified": k.verified,
        "verifiedAt": k.verified_at.as_ref().map(iso),
        "createdAt": iso(&k.created_at),
        "updatedAt": iso(&k.updated_at),
        "rotateAfter": k.rotate_after.as_ref().map(iso),
        "rotationDue": k.rotation_due,
    })
}

/// `POST /api/encryption/keys`: `{publicKey, deviceId}` for one of the caller's devices; 201
/// when stored or rotated, 200 when the device already had this key.
async fn upload(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    JsonBody(body): JsonBody<UploadBody>,
) -> super::Reply<impl IntoResponse> {
    let uploaded = app.core.upload_key(&actor, &body.device_id, &body.public_key).await?;
    let status = if uploaded.changed { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, ok(key_json(&uploaded.key))))
}

/// `GET /api/encryption/keys/{userId}`: the user's device keys.
async fn list(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(user_id): Path<String>,
) -> super::Reply<impl IntoResponse> {
    let keys = app.core.device_keys(&actor, &user_id).await?;
    Ok(ok(json!({ "userId": user_id, "keys": keys.iter().map(key_json).collect::<Vec<_>>() })))
}

/// `POST /api/encryption/verify`: `{deviceId, verificationCode}` for one of the caller's devices.
async fn verify(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    JsonBody(body): JsonBody<VerifyBody>,
) -> super::Reply<impl IntoResponse> {
    let key = app.core.verify_device(&actor, &body.device_id, &body.verification_code).await?;
    Ok(ok(key_json(&key)))
}

/// The JSON bodies this module's routes read, with their decoders (see `super::body_decoders`).
pub(super) fn bodies() -> Vec<(&'static str, crate::payload::Decoder)> {
    use crate::payload::decoder;
    vec![
        ("POST /api/encryption/keys", decoder::<UploadBody>()),
        ("POST /api/encryption/verify", decoder::<VerifyBody>()),
    ]
}
