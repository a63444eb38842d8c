//! What every Socialink route shares (protocols/socialink.md §1–§2): the caller and its actor
//! ids, bodies parsed whatever their `Content-Type`, errors as `{error, code}` with the status
//! of §1, byte fields as base64 (or arrays of byte values on input), and PascalCase enums.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::json;

use crate::{
    core::model::Actor,
    error::{AppError, Field},
    transport::{rest::Authenticated, AppState},
};

/// A Socialink answer: errors as the real server's body plus a stable code.
pub type Reply<T> = Result<T, Rejection>;

/// An error of a Socialink route: `{"error": "<text>", "code": "<CODE>"}` with the status of
/// §1 (`Retry-After` on 429).
#[derive(Debug)]
pub struct Rejection(pub AppError);

impl<E: Into<AppError>> From<E> for Rejection {
    fn from(e: E) -> Self {
        Rejection(e.into())
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let e = self.0;
        e.log_if_internal("socialink");
        let status = StatusCode::from_u16(status_of(&e)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = e.body_in(field_name);
        let mut response = (status, Json(json!({ "error": body.message, "code": body.code }))).into_response();
        if let AppError::RateLimited { retry_after_ms, .. } = e {
            let seconds = retry_after_ms.div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// §1's statuses: input errors are 400 here (the core's REST default is 422).
fn status_of(e: &AppError) -> u16 {
    match e.http_status() {
        422 => 400,
        status => status,
    }
}

/// Socialink's names of request fields, in error messages: snake_case, as its bodies and
/// paths spell them.
pub fn field_name(field: Field) -> &'static str {
    match field {
        Field::Chat => "conversation_id",
        Field::Message => "message_id",
        Field::User | Field::Peer => "user_id",
        Field::Users => "user_ids[]",
        Field::Call => "call_id",
        Field::Callee | Field::Recipient => "recipient_id",
        Field::Device => "device_id",
        Field::Attachment => "attachment_id",
        Field::Attachments => "attachments[]",
        Field::Participants => "member_ids[]",
        Field::ReplyTo => "reply_to_id",
        Field::TempId => "client_message_id",
        Field::Notification => "notification_id",
        Field::Cursor => "before_sequence",
    }
}

/// The caller of a Socialink route, from `Authorization: Bearer` or `?token=`; a missing or
/// bad token is refused in Socialink's body.
pub struct Caller(pub Actor);

impl Caller {
    /// Step (2) of §1's order of checks: an *actor* id in the path must be the token's
    /// subject, refused before the body is read or anything is looked up.
    pub fn acting_as(&self, path_user: &str) -> Result<&Actor, Rejection> {
        if path_user == self.0.user_id {
            return Ok(&self.0);
        }
        Err(Rejection(AppError::Forbidden("the path names another user".into())))
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let Authenticated(actor) = Authenticated::from_request_parts(parts, app).await?;
        Ok(Caller(actor))
    }
}

/// Step (3): the body, read only after the actor check. Any `Content-Type`; not JSON →
/// `INVALID_JSON`, JSON of the wrong shape → `VALIDATION_FAILED`.
pub fn body<T: DeserializeOwned>(bytes: &Bytes) -> Reply<T> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Rejection(AppError::InvalidJson(format!("the body is not JSON: {e}"))))?;
    from_json(&value)
}

/// A body already parsed as JSON: no NUL anywhere, and every struct read from an object only
/// (`crate::payload::strict`: an array is never read by position into a request's fields;
/// bodies that are lists, such as `prekeys` or `DELETE queue`, say so in their types).
pub fn from_json<T: DeserializeOwned>(value: &serde_json::Value) -> Reply<T> {
    crate::error::refuse_nul(value)?;
    crate::payload::strict(value).map_err(|e| Rejection(AppError::validation(e.to_string())))
}

/// A route's body decoder for the decoder property test (`tests/decoders.rs`): the body as
/// the route reads it, then the route's own checks of it (`check`), before any lookup.
pub fn decode_with<T: DeserializeOwned>(
    value: serde_json::Value,
    check: impl FnOnce(T) -> Reply<()>,
) -> crate::error::AppResult<()> {
    from_json(&value).and_then(check).map_err(|Rejection(e)| e)
}

/// A byte field (key, signature, ciphertext). In: a base64 string (standard or URL-safe
/// alphabet, padding optional) or an array of byte values. Out: standard padded base64.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bytes64(pub Vec<u8>);

impl Bytes64 {
    pub fn encode(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Decodes base64 in either alphabet, with or without padding.
    pub fn decode(text: &str) -> Option<Vec<u8>> {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let trimmed = text.trim_end_matches('=');
        STANDARD_NO_PAD.decode(trimmed).or_else(|_| URL_SAFE_NO_PAD.decode(trimmed)).ok()
    }

    /// Exactly `n` bytes, or a `VALIDATION_FAILED` naming `what`.
    pub fn exactly(&self, n: usize, what: &str) -> Result<&[u8], Rejection> {
        if self.0.len() == n {
            return Ok(&self.0);
        }
        Err(Rejection(AppError::validation(format!("{what} must be {n} bytes, not {}", self.0.len()))))
    }
}

impl Serialize for Bytes64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Self::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Array(Vec<u8>),
        }
        match Either::deserialize(d) {
            Ok(Either::Text(text)) => Self::decode(&text)
                .map(Bytes64)
                .ok_or_else(|| serde::de::Error::custom("expected base64 (standard or URL-safe alphabet)")),
            Ok(Either::Array(bytes)) => Ok(Bytes64(bytes)),
            Err(_) => Err(serde::de::Error::custom("expected a base64 string or an array of byte values")),
        }
    }
}

/// An input enum matched case-insensitively against its PascalCase names (§1): `"text"`,
/// `"TEXT"` and `"Text"` are all `Text`.
pub fn parse_enum<T: Copy>(input: &str, variants: &[(&'static str, T)], what: &str) -> Result<T, Rejection> {
    variants.iter().find(|(name, _)| name.eq_ignore_ascii_case(input)).map(|(_, v)| *v).ok_or_else(|| {
        let names: Vec<&str> = variants.iter().map(|(name, _)| *name).collect();
        Rejection(AppError::validation(format!("{what} must be one of {}", names.join(", "))))
    })
}

/// Times on the wire: RFC 3339 in UTC.
pub fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

// --- Conventions added for groups, presence, typing and calls (branch sl-social) ---

/// A path id that names something to look up (group, conversation, call): one that could not
/// name anything (empty, over 128 characters, control characters) is `NOT_FOUND`, as an
/// unknown one is (§1: "malformed minted id").
pub fn target_id(id: &str) -> Result<&str, Rejection> {
    crate::core::check_id(Field::Chat, id).map_err(|_| Rejection(AppError::NotFound("no such id".into())))?;
    Ok(id)
}

/// A body that may be left out entirely (an empty body is `T::default()`), read as [`body`].
pub fn optional_body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Reply<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    body(bytes)
}

/// A list of ids sent bare (`[...]`) or wrapped (`{"<key>": [...]}`), as the real server
/// accepted both for its list bodies.
#[derive(Debug, Default)]
pub struct IdList(pub Vec<String>);

impl IdList {
    pub fn read(bytes: &Bytes, key: &str) -> Reply<Self> {
        Self::from_json(body(bytes)?, key)
    }

    /// The list from a parsed body.
    pub fn from_json(value: serde_json::Value, key: &str) -> Reply<Self> {
        let list = match value {
            serde_json::Value::Array(items) => items,
            serde_json::Value::Object(mut fields) => match fields.remove(key) {
                Some(serde_json::Value::Array(items)) => items,
                _ => return Err(Rejection(AppError::validation(format!("{key} must be an array of ids")))),
            },
            _ => {
                return Err(Rejection(AppError::validation(format!(
                    "the body must be an array of ids or {{{key}: [...]}}"
                ))))
            }
        };
        let ids = list
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(id) => Ok(id),
                _ => Err(Rejection(AppError::validation(format!("{key} must hold strings")))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(IdList(ids))
    }
}

/// Query parameters; ill-typed ones are `VALIDATION_FAILED` (400) in Socialink's body.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(rejection) => Err(Rejection(AppError::validation(rejection.body_text()))),
        }
    }
}

/// `{"success": true, "message": "<text>"}`.
pub fn done(message: &str) -> Json<serde_json::Value> {
    Json(json!({ "success": true, "message": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_read_in_every_spelling_and_written_as_standard_base64() {
        let raw: Vec<u8> = (0u8..=255).collect();
        let standard = base64::engine::general_purpose::STANDARD.encode(&raw);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        for text in [standard.clone(), url_safe, standard.trim_end_matches('=').to_string()] {
            let read: Bytes64 = serde_json::from_value(json!(text)).expect("base64 text");
            assert_eq!(read.0, raw);
        }
        let array: Bytes64 = serde_json::from_value(json!([1, 2, 255])).expect("byte array");
        assert_eq!(array.0, vec![1, 2, 255]);
        assert_eq!(serde_json::to_value(Bytes64(raw)).expect("serialize"), json!(standard));
        assert!(serde_json::from_value::<Bytes64>(json!("not base64!")).is_err());
        assert!(serde_json::from_value::<Bytes64>(json!([256])).is_err());
        assert!(serde_json::from_value::<Bytes64>(json!({})).is_err());
    }

    #[test]
    fn enums_match_case_insensitively() {
        let kinds = [("Text", 1), ("Media", 2)];
        assert_eq!(parse_enum("text", &kinds, "message_type").ok(), Some(1));
        assert_eq!(parse_enum("MEDIA", &kinds, "message_type").ok(), Some(2));
        assert!(parse_enum("Poll", &kinds, "message_type").is_err());
    }

    #[test]
    fn input_errors_are_400_and_carry_the_code() {
        let response = Rejection(AppError::validation("bad")).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let limited = Rejection(AppError::RateLimited { what: "bundles", retry_after_ms: 1500 }).into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("2"));
    }
}
