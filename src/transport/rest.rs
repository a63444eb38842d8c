//! What every REST route shares: the caller from the token, JSON bodies and query strings
//! whose rejections are the SPEC §6 envelope, and that envelope for errors and results.

use std::sync::Arc;

use axum::{
    extract::{rejection::JsonRejection, FromRequestParts},
    http::{request::Parts, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use super::AppState;
use crate::{
    core::model::Actor,
    error::{AppError, Field},
};

/// REST errors: the envelope of SPEC §6 with the matching status, fields in neutral words (a
/// dialect's routes answer in its own, see [`error_response`]).
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        error_response(&self, Field::neutral_name)
    }
}

/// The SPEC §6 envelope of an error, with fields named as `words` says.
pub fn error_response(e: &AppError, words: fn(Field) -> &'static str) -> Response {
    e.log_if_internal("http");
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "success": false, "error": e.body_in(words) }))).into_response()
}

/// `{ "success": true, "data": … }`.
pub fn ok<T: serde::Serialize>(data: T) -> Json<serde_json::Value> {
    Json(json!({ "success": true, "data": data }))
}

/// The caller of a REST route, from `Authorization: Bearer` or `?token=`.
pub struct Authenticated(pub Actor);

impl Authenticated {
    /// A path that names the acting user (Socialink's `/api/v1/…/{user_id}/…`) must name the
    /// caller: anyone else is refused with 403 before anything is read or written.
    pub fn require_actor(&self, path_user: &str) -> Result<(), AppError> {
        if path_user == self.0.user_id {
            return Ok(());
        }
        Err(AppError::Forbidden("the path names another user".into()))
    }
}

impl FromRequestParts<Arc<AppState>> for Authenticated {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let token = crate::auth::token_from_request(&parts.headers, parts.uri.query());
        let identity = app.verifier.verify(token.as_deref())?;
        Ok(Authenticated(identity.actor(None)))
    }
}

/// A JSON body whose rejection is our error envelope rather than axum's plain text: a body
/// over the limit is 413 `CONTENT_TOO_LONG`, one that is not JSON 400 `INVALID_JSON`, one
/// without `Content-Type: application/json` 415, and one that is not a JSON object (or holds
/// an array where an object belongs) 422 `VALIDATION_FAILED` ([`crate::payload::object`]).
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<serde_json::Value>::from_request(req, state).await.map_err(json_rejection)?;
        crate::payload::object(&value).map(JsonBody)
    }
}

/// What went wrong reading a JSON body, in the envelope with the status that says it.
fn json_rejection(rejection: JsonRejection) -> AppError {
    let status = rejection.status();
    match rejection {
        JsonRejection::JsonSyntaxError(e) => AppError::InvalidJson(e.body_text()),
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            AppError::TooLarge("the request body is larger than REST_MAX_BODY_SIZE".into())
        }
        other => AppError::BadRequest { status: status.as_u16(), message: other.body_text() },
    }
}

/// Query parameters whose rejection is our error envelope (`VALIDATION_FAILED`).
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(rejection) => Err(AppError::validation(rejection.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_actor_must_be_the_caller() {
        let caller = Authenticated(Actor::rest("alice"));
        assert!(caller.require_actor("alice").is_ok());
        let refused = caller.require_actor("bob").expect_err("another user");
        assert_eq!(refused.http_status(), 403);
    }
}
