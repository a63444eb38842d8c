//! `POST /api/attachments` (multipart upload), `GET /api/attachments/{id}` and
//! `GET /api/attachments/{id}/thumbnail` (downloads, with range requests for audio and video).

use std::sync::Arc;

use axum::{
    extract::{multipart::MultipartError, DefaultBodyLimit, Multipart, Path, Request, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use serde_json::json;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::transport::rest::{ok, Authenticated};
use crate::{
    core::attachments::{AttachmentFile, Upload},
    dialects::{attachment_json, iso},
    error::{AppError, AppResult},
    transport::AppState,
};

/// How much of a request body is read at most: twice the largest file, plus room for the
/// multipart framing. An upload that turns out too large is read to its end (and thrown
/// away) so that its client gets the 413 instead of a connection reset mid-upload; past this
/// much, the connection is simply closed.
fn body_limit(media_max_size: u64) -> usize {
    let limit = media_max_size.saturating_mul(2).saturating_add(8 * 1024 * 1024);
    usize::try_from(limit).unwrap_or(usize::MAX)
}
/// Longest accepted text field (`type`).
const MAX_TEXT_FIELD: usize = 64;

pub fn router(media_max_size: u64) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/attachments", post(upload).layer(DefaultBodyLimit::max(body_limit(media_max_size))))
        .route("/api/attachments/{id}", get(download))
        .route("/api/attachments/{id}/thumbnail", get(thumbnail))
}

fn multipart_error(e: MultipartError) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::TooLarge("the upload is larger than MEDIA_MAX_SIZE".into())
    } else {
        AppError::validation(format!("multipart body: {}", e.body_text()))
    }
}

/// `POST /api/attachments`: a `multipart/form-data` body with the file in the field `file`
/// and, optionally, `type` (`image`, `video`, `audio`, `voice`, `file`: what the client
/// means to send, checked against the bytes). 201 with the attachment.
async fn upload(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> super::Reply<impl IntoResponse> {
    let mut multipart = multipart.map_err(|e| AppError::validation(e.body_text()))?;
    let upload = match read_upload(&mut multipart, app.config.media_max_size).await {
        Ok(upload) => upload,
        Err(e) => {
            drain(&mut multipart).await;
            return Err(e.into());
        }
    };
    let attachment = app.core.upload_attachment(&actor, upload).await?;
    let mut body = attachment_json(&attachment.info);
    body["uploaderId"] = json!(attachment.uploader_id);
    body["createdAt"] = json!(iso(&attachment.created_at));
    Ok((StatusCode::CREATED, ok(body)))
}

/// Reads what was not read of a refused upload, so the client is done sending when the
/// error arrives; stops at the body limit or the first broken part.
async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

/// The file (field `file`) and the kind the client says it is sending (field `type`).
async fn read_upload(multipart: &mut Multipart, max: u64) -> AppResult<Upload> {
    let mut file: Option<Upload> = None;
    let mut requested_kind = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("file") if file.is_none() => {
                let file_name = field.file_name().map(str::to_string);
                if let Some(name) = &file_name {
                    crate::error::refuse_nul_text(name)?;
                }
                let declared_type = field.content_type().map(str::to_string);
                let mut bytes = Vec::new();
                // Stop reading as soon as the file is too large, not after buffering it all.
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if (bytes.len() + chunk.len()) as u64 > max {
                        return Err(AppError::TooLarge(format!("the file is larger than {max} bytes")));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some(Upload { file_name, declared_type, requested_kind: None, bytes });
            }
            Some("type") => {
                let text = field.text().await.map_err(multipart_error)?;
                if text.len() > MAX_TEXT_FIELD {
                    return Err(AppError::validation("type is too long"));
                }
                crate::error::refuse_nul_text(&text)?;
                requested_kind = Some(text.trim().to_string());
            }
            // Anything else is drained: it must not be able to smuggle in a second file.
            _ => while field.chunk().await.map_err(multipart_error)?.is_some() {},
        }
    }
    let mut upload = file.ok_or_else(|| AppError::validation("the multipart field `file` is missing"))?;
    upload.requested_kind = requested_kind;
    Ok(upload)
}

/// `GET /api/attachments/{id}`: the file, for its uploader and the members of conversations
/// it was sent to (`Authorization: Bearer`, or `?token=` for `<img src>`).
async fn download(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
    req: Request,
) -> AppResult<Response> {
    let file = app.core.attachment_file(&actor, &id, false).await?;
    serve(file, req).await
}

/// `GET /api/attachments/{id}/thumbnail`: an image's preview, at most 320 pixels a side.
async fn thumbnail(
    State(app): State<Arc<AppState>>,
    Authenticated(actor): Authenticated,
    Path(id): Path<String>,
    req: Request,
) -> AppResult<Response> {
    let file = app.core.attachment_file(&actor, &id, true).await?;
    serve(file, req).await
}

/// Streams the file (tower-http answers range and conditional requests, which browsers
/// need to seek in audio and video), with the sniffed type and headers that keep a browser
/// from running an upload as a page.
async fn serve(file: AttachmentFile, req: Request) -> AppResult<Response> {
    let served = ServeFile::new(&file.path)
        .oneshot(req)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("reading an attachment: {e}")))?;
    if served.status() == StatusCode::NOT_FOUND {
        return Err(AppError::Internal(anyhow::anyhow!("attachment {} has no file in MEDIA_DIR", file.info.id)));
    }
    let mut response = served.map(axum::body::Body::new);
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(&file.content_type)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("stored content type: {e}")))?;
    headers.insert(header::CONTENT_TYPE, content_type);
    let inline = ["image", "audio", "video"].contains(&file.info.kind.as_str());
    let disposition = content_disposition(if inline { "inline" } else { "attachment" }, &file.info.file_name);
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    Ok(response)
}

/// `inline; filename="x"; filename*=UTF-8''…` (RFC 6266): an ASCII fallback and the exact
/// name percent-encoded.
fn content_disposition(kind: &str, name: &str) -> String {
    let ascii: String = name.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '_' }).collect();
    let ascii = ascii.replace(['"', '\\'], "_");
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn file_names_are_quoted_safely() {
        assert_eq!(
            content_disposition("attachment", "café menu.pdf"),
            "attachment; filename=\"caf_ menu.pdf\"; filename*=UTF-8''caf%C3%A9%20menu.pdf"
        );
    }
}
