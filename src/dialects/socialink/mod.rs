//! `socialink` (SPEC §7.5, protocols/socialink.md): Socialink's REST surface under `/api/v1`
//! (keys, messages and per-device queues, groups, presence, typing, calls) and its per-device
//! WebSocket `/ws/{user_id}/{device_id}`, translated to the core's calls and events. Bodies and
//! errors follow `wire`; each section of the contract is a module.

pub mod calls;
pub mod groups;
pub mod keys;
pub mod messages;
pub mod openapi;
pub mod presence;
pub mod socket;
pub mod typing;
pub mod wire;

use std::sync::Arc;

use axum::Router;

use crate::{error::AppError, transport::AppState};

/// Each REST route that reads a JSON body, with the decoder of that body and the route's
/// checks of it before any lookup, for the decoder property test (`tests/decoders.rs`).
pub fn body_decoders() -> Vec<(&'static str, crate::payload::Decoder)> {
    let mut all = keys::bodies();
    all.extend(messages::bodies());
    all.extend(groups::bodies());
    all.extend(presence::bodies());
    all.extend(calls::bodies());
    all
}

/// Socialink's REST routes, all under `/api/v1`; an unknown route there is 404 in Socialink's
/// body, not the server's default.
pub fn routes(app: &AppState) -> Router<Arc<AppState>> {
    let api = Router::new()
        .merge(keys::router(app))
        .merge(messages::router(app))
        .merge(groups::router(app))
        .merge(presence::router(app))
        .merge(typing::router(app))
        .merge(calls::router(app))
        .merge(openapi::router(app))
        .fallback(|| async { wire::Rejection(AppError::NotFound("no such route".into())) });
    Router::new().nest("/api/v1", api).merge(socket::router(app))
}
