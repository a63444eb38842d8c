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

use axum::response::{IntoResponse, Response};

use crate::{
    error::{AppError, Field},
    transport::{rest::error_response, AppState},
};

/// Spark's names of request fields, in error messages (its REST API and its socket events).
pub fn field_name(field: Field) -> &'static str {
    crate::dialects::camel_case_field(field, "conversationId")
}

/// A Spark REST answer: errors in Spark's words.
pub type Reply<T> = Result<T, Rejection>;

/// An error of a Spark REST route, answered with the SPEC §6 envelope in Spark's words.
pub struct Rejection(AppError);

impl From<AppError> for Rejection {
    fn from(e: AppError) -> Self {
        Rejection(e)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        error_response(&self.0, field_name)
    }
}

/// Each REST route that reads a JSON body, with the decoder of that body (as `JsonBody`
/// reads it), for the decoder property test.
pub fn body_decoders() -> Vec<(&'static str, crate::payload::Decoder)> {
    use crate::payload::decoder;
    let mut all = conversations::bodies();
    all.extend(messages::bodies());
    all.extend(encryption::bodies());
    all.push(("POST /api/conversations/{id}/messages", decoder::<SendMessage>()));
    all
}

/// Spark's REST routes.
pub fn routes(app: &AppState) -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .merge(conversations::router())
        .merge(messages::router())
        .merge(attachments::router(app.config.media_max_size))
        .merge(encryption::router())
}
