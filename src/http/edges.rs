//! The edges of the HTTP surface answer in the SPEC §6 envelope, like every route: requests
//! no route takes (404, 405), URIs that are too long (414) or not UTF-8 once decoded (400),
//! and `%00` anywhere in a path or query (422). They are refused here, before routing, once
//! for every route a dialect adds.
//!
//! One edge is not ours: a request line longer than hyper's own limit (64 KiB) is answered by
//! hyper itself, with an empty 414, before any of this code runs. [`MAX_URI_LEN`] is far
//! below it, so every URI a client could mean to send gets the envelope.

use axum::{
    extract::Request,
    http::{Method, Uri},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::error::AppError;

/// Longest URI (path and query) a request may have, in bytes: nginx's default for a request
/// line. Ids are short, and tokens in `?token=` a few hundred bytes.
pub const MAX_URI_LEN: usize = 8 * 1024;

/// Refuses URIs too long, not UTF-8 once percent-decoded, or carrying a `%00`.
pub async fn check_uri(req: Request, next: Next) -> Response {
    if let Err(e) = refuse_uri(req.uri()) {
        return e.into_response();
    }
    next.run(req).await
}

fn refuse_uri(uri: &Uri) -> Result<(), AppError> {
    let len = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if len > MAX_URI_LEN {
        return Err(AppError::BadRequest {
            status: 414,
            message: format!("the URI is {len} bytes; at most {MAX_URI_LEN} are accepted"),
        });
    }
    // A raw NUL cannot be in a URI (hyper refuses it); `%00` is its only spelling there. Path
    // ids and query values reach statements, and PostgreSQL cannot store a NUL.
    let encoded_nul = |part: &str| part.contains("%00");
    if encoded_nul(uri.path()) || uri.query().is_some_and(encoded_nul) {
        return Err(AppError::contains_nul());
    }
    // Path segments are decoded into ids; bytes that are not UTF-8 (`%FF`) name nothing.
    let decoded = percent_decoded(uri.path());
    if std::str::from_utf8(&decoded).is_err() {
        return Err(AppError::BadRequest {
            status: 400,
            message: "the path is not valid UTF-8 once percent-decoded".into(),
        });
    }
    Ok(())
}

/// The bytes a percent-encoded string stands for (an invalid escape stays as written).
fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// No route has this path: 404 `NOT_FOUND` naming it.
pub async fn no_route(method: Method, uri: Uri) -> AppError {
    AppError::NoRoute { status: 404, message: format!("no route for {method} {}", shown(&uri)) }
}

/// A route has this path but not this method: 405 `NOT_FOUND` (axum adds `Allow`).
pub async fn method_not_allowed(method: Method, uri: Uri) -> AppError {
    AppError::NoRoute { status: 405, message: format!("{} does not take {method}", shown(&uri)) }
}

/// The path as an error message shows it: bounded, whatever a client sent.
fn shown(uri: &Uri) -> String {
    let path = uri.path();
    match path.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &path[..cut]),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(uri: &str) -> Option<(u16, &'static str)> {
        let uri: Uri = uri.parse().expect("uri");
        refuse_uri(&uri).err().map(|e| (e.http_status(), e.code()))
    }

    #[test]
    fn uris_that_name_nothing_are_refused_in_the_envelope() {
        assert_eq!(refused("/api/conversations/abc?limit=5"), None);
        assert_eq!(refused("/api/messages/%F0%9F%91%8D/reactions"), None, "UTF-8 percent-encoded is fine");
        assert_eq!(refused("/api/conversations/%FF"), Some((400, "VALIDATION_FAILED")));
        assert_eq!(refused("/api/conversations/a%00b"), Some((422, "VALIDATION_FAILED")));
        let long = format!("/api/conversations/{}", "a".repeat(MAX_URI_LEN));
        assert_eq!(refused(&long), Some((414, "VALIDATION_FAILED")));
        assert_eq!(refused("/x/%"), None, "a broken escape is left to the route");
        assert_eq!(refused("/x/%4"), None);
    }
}
