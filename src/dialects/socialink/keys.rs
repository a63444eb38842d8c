//! Socialink's keys (protocols/socialink.md §3): register a device with its Ed25519 identity
//! key, a signed prekey and one-time prekeys; fetch a prekey bundle (each one-time prekey is
//! handed out at most once); rotate the signed prekey; top up one-time prekeys; deactivate;
//! list devices; count prekeys. Translation only: the checks live in `core::prekeys`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{delete, get, post, put},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{body, decode_with, from_json, time, Bytes64, Caller, Rejection, Reply};
use crate::{
    core::prekeys::{check_registration, DeviceRegistration, KeyUpload, SignedUpload},
    domain::{DeviceId, KeyedDevice, PrekeyBundle, UserId},
    payload::Decoder,
    transport::AppState,
};

pub fn router(_app: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route("/keys/register/{user_id}", post(register))
        .route("/keys/bundle/{user_id}", get(bundle))
        .route("/keys/rotate/{user_id}/{device_id}", put(rotate))
        .route("/keys/prekeys/{user_id}/{device_id}", post(prekeys))
        .route("/keys/deactivate/{user_id}/{device_id}", delete(deactivate))
        .route("/keys/devices/{user_id}", get(devices))
        .route("/keys/stats/{user_id}/{device_id}", get(stats))
}

#[derive(Deserialize)]
struct PrekeyIn {
    id: i64,
    public_key: Bytes64,
}

impl From<PrekeyIn> for KeyUpload {
    fn from(k: PrekeyIn) -> Self {
        KeyUpload { id: k.id, public_key: k.public_key.0 }
    }
}

#[derive(Deserialize)]
struct SignedIn {
    id: i64,
    public_key: Bytes64,
    signature: Bytes64,
}

impl From<SignedIn> for SignedUpload {
    fn from(k: SignedIn) -> Self {
        SignedUpload { id: k.id, public_key: k.public_key.0, signature: k.signature.0 }
    }
}

#[derive(Deserialize)]
struct RegisterIn {
    device_id: String,
    device_name: String,
    registration_id: i64,
    identity_key: Bytes64,
    signed_prekey: SignedIn,
    #[serde(default)]
    onetime_prekeys: Vec<PrekeyIn>,
}

/// `{onetime_prekeys: [...]}`, the wrapped spelling of a `prekeys` body.
#[derive(Deserialize)]
struct WrappedPrekeys {
    onetime_prekeys: Vec<PrekeyIn>,
}

/// A `prekeys` body: `[{id, public_key}]`, or `{onetime_prekeys: [...]}`. Told apart by the
/// JSON's shape rather than serde's `untagged`, which would read a prekey from an array by
/// position.
fn prekeys_in(value: &Value) -> Reply<Vec<PrekeyIn>> {
    if value.is_array() {
        return from_json(value);
    }
    Ok(from_json::<WrappedPrekeys>(value)?.onetime_prekeys)
}

impl RegisterIn {
    fn registration(self) -> DeviceRegistration {
        DeviceRegistration {
            device_id: self.device_id,
            device_name: self.device_name,
            registration_id: self.registration_id,
            identity_key: self.identity_key.0,
            signed_prekey: self.signed_prekey.into(),
            onetime_prekeys: self.onetime_prekeys.into_iter().map(KeyUpload::from).collect(),
        }
    }
}

/// The JSON bodies of these routes, each with the checks made before any lookup (see
/// `super::body_decoders`).
pub(super) fn bodies() -> Vec<(&'static str, Decoder)> {
    vec![
        ("POST /keys/register/{user_id}", |v| {
            decode_with(v, |r: RegisterIn| Ok(check_registration(&r.registration()).map(drop)?))
        }),
        ("PUT /keys/rotate/{user_id}/{device_id}", |v| decode_with(v, |_: SignedIn| Ok(()))),
        ("POST /keys/prekeys/{user_id}/{device_id}", |v| prekeys_in(&v).map(drop).map_err(|Rejection(e)| e)),
    ]
}

/// A device as Socialink shows it.
pub fn device_json(d: &KeyedDevice) -> Value {
    json!({
        "id": d.row_id,
        "user_id": d.user_id,
        "device_id": d.device_id,
        "device_name": d.device_name,
        "registration_id": d.registration_id,
        "identity_key": d.identity_key,
        "is_active": d.is_active,
        "last_seen": time(&d.last_seen),
        "created_at": time(&d.created_at),
    })
}

fn bundle_json(b: &PrekeyBundle) -> Value {
    json!({
        "user_id": b.device.user_id,
        "device_id": b.device.device_id,
        "registration_id": b.device.registration_id,
        "identity_key": b.device.identity_key,
        "signed_prekey_id": b.signed_prekey.id,
        "signed_prekey": b.signed_prekey.public_key,
        "signed_prekey_signature": b.signed_prekey.signature,
        "onetime_prekey_id": b.onetime_prekey.as_ref().map(|k| k.id),
        "onetime_prekey": b.onetime_prekey.as_ref().map(|k| k.public_key.clone()),
    })
}

async fn register(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<UserId>,
    bytes: Bytes,
) -> Reply<(StatusCode, Json<Value>)> {
    let actor = caller.acting_as(&user_id)?;
    let input: RegisterIn = body(&bytes)?;
    let device = app.core.register_keyed_device(actor, input.registration()).await?;
    Ok((StatusCode::CREATED, Json(device_json(&device))))
}

async fn bundle(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<UserId>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply<Json<Value>> {
    let device = query.get("device_id").map(String::as_str).filter(|d| !d.is_empty());
    let bundle = app.core.prekey_bundle(&caller.0, &user_id, device).await?;
    Ok(Json(bundle_json(&bundle)))
}

async fn rotate(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((user_id, device_id)): Path<(UserId, DeviceId)>,
    bytes: Bytes,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    let key: SignedIn = body(&bytes)?;
    app.core.rotate_signed_prekey(actor, &device_id, key.into()).await?;
    Ok(Json(json!({ "success": true, "message": "Signed pre-key rotated" })))
}

async fn prekeys(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((user_id, device_id)): Path<(UserId, DeviceId)>,
    bytes: Bytes,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    let keys = prekeys_in(&body(&bytes)?)?;
    let stored = app.core.add_prekeys(actor, &device_id, keys.into_iter().map(KeyUpload::from).collect()).await?;
    Ok(Json(json!({ "success": true, "message": format!("Stored {stored} pre-keys"), "stored": stored })))
}

async fn deactivate(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((user_id, device_id)): Path<(UserId, DeviceId)>,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    app.core.deactivate_keyed_device(actor, &device_id).await?;
    Ok(Json(json!({ "success": true, "message": "Device deactivated" })))
}

async fn devices(State(app): State<Arc<AppState>>, _caller: Caller, Path(user_id): Path<UserId>) -> Reply<Json<Value>> {
    let devices: Vec<Value> = app.core.keyed_devices(&user_id).await?.iter().map(device_json).collect();
    Ok(Json(json!({ "count": devices.len(), "devices": devices })))
}

async fn stats(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((user_id, device_id)): Path<(UserId, DeviceId)>,
) -> Reply<Json<Value>> {
    let actor = caller.acting_as(&user_id)?;
    let counts = app.core.prekey_counts(actor, &device_id).await?;
    Ok(Json(json!({
        "unused_prekeys": counts.unused,
        "used_prekeys": counts.used,
        "total_prekeys": counts.unused + counts.used,
    })))
}
