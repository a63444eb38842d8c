//! `spark` (Exprsn Spark, SPEC §7.2): its snake_case Socket.IO events (`socket`) and its REST
//! API (`conversations`, `messages`, `attachments`, `encryption`), both translating to the
//! same core calls.

pub mod attachments;
pub mod conversations;
pub mod encryption;
pub mod messages;
mod socket;

use std::sync::Arc;

pub use socket::*;

use crate::transport::AppState;

/// Spark's REST routes.
pub fn routes(app: &AppState) -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .merge(conversations::router())
        .merge(messages::router())
        .merge(attachments::router(app.config.media_max_size))
        .merge(encryption::router())
}
