//! Attachments: uploads checked (size, sniffed type on an allow-list), images scaled with a
//! thumbnail, files kept in the media directory; downloads for the uploader and the members
//! of conversations the file was sent to; and the checks when a message names attachments.

use std::{path::PathBuf, sync::OnceLock};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use super::{
    check_id,
    media::{self, MediaKind},
    model::{Actor, AttachmentInfo},
    Core,
};
use crate::{
    error::{AppError, AppResult, Field},
    store,
};

/// An upload as the client sent it.
pub struct Upload {
    pub file_name: Option<String>,
    /// The `Content-Type` the client gave the file.
    pub declared_type: Option<String>,
    /// What the client says it is sending (`image`, `video`, `audio`, `voice`, `file`).
    pub requested_kind: Option<String>,
    pub bytes: Vec<u8>,
}

/// A stored attachment.
pub struct Attachment {
    pub info: AttachmentInfo,
    pub uploader_id: String,
    pub created_at: DateTime<Utc>,
}

/// A file to serve.
pub struct AttachmentFile {
    pub info: AttachmentInfo,
    pub path: PathBuf,
    pub content_type: String,
}

/// Longest kept file name, in characters.
const MAX_FILE_NAME: usize = 200;

/// Image work is CPU-bound: at most one job per core at a time, so a burst of uploads queues
/// instead of starving the blocking pool that database and file I/O also use.
fn image_jobs() -> &'static Semaphore {
    static JOBS: OnceLock<Semaphore> = OnceLock::new();
    JOBS.get_or_init(|| Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)))
}

fn info(row: &entity::attachment::Model) -> AttachmentInfo {
    AttachmentInfo {
        id: row.id.clone(),
        kind: row.kind.clone(),
        content_type: row.content_type.clone(),
        file_name: row.file_name.clone(),
        size: row.size.max(0) as u64,
        width: row.width.map(|w| w.max(0) as u32),
        height: row.height.map(|h| h.max(0) as u32),
        has_thumbnail: row.has_thumbnail,
    }
}

/// Only the last path segment of a client's file name, without control characters or
/// quotes (it ends up in a `Content-Disposition` header).
fn clean_file_name(name: Option<&str>) -> String {
    let base = name.unwrap_or_default().rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(MAX_FILE_NAME)
        .collect::<String>()
        .trim()
        .to_string();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "attachment".into()
    } else {
        cleaned
    }
}

impl Core {
    /// Checks, processes and stores an upload of `actor`.
    pub async fn upload_attachment(&self, actor: &Actor, upload: Upload) -> AppResult<Attachment> {
        let max = self.config.media_max_size;
        if upload.bytes.len() as u64 > max {
            return Err(AppError::TooLarge(format!("the file is larger than {max} bytes")));
        }
        if upload.bytes.is_empty() {
            return Err(AppError::validation("the file is empty"));
        }
        let requested = match upload.requested_kind.as_deref() {
            None | Some("") => None,
            Some(kind) => Some(
                MediaKind::parse(kind)
                    .ok_or_else(|| AppError::validation("type must be image, video, audio, voice or file"))?,
            ),
        };
        let sniffed = media::sniff(&upload.bytes, upload.declared_type.as_deref(), requested)?;
        let (bytes, width, height, thumbnail) = match sniffed.image {
            Some(format) => {
                let limits = media::ImageLimits {
                    max_width: self.config.image_max_width,
                    max_height: self.config.image_max_height,
                    max_pixels: self.config.image_max_pixels,
                    decode_max_bytes: self.config.image_decode_max_bytes,
                };
                let _turn = image_jobs()
                    .acquire()
                    .await
                    .map_err(|e| AppError::Internal(anyhow::anyhow!("image job queue closed: {e}")))?;
                let original = upload.bytes;
                let done = tokio::task::spawn_blocking(move || media::process_image(&original, format, &limits))
                    .await
                    .map_err(|e| AppError::Internal(anyhow::anyhow!("image processing task failed: {e}")))??;
                (done.bytes, Some(done.width), Some(done.height), Some(done.thumbnail))
            }
            None => (upload.bytes, None, None, None),
        };
        let row = entity::attachment::Model {
            id: uuid::Uuid::now_v7().to_string(),
            uploader_id: actor.user_id.clone().into(),
            kind: sniffed.kind.as_str().to_string(),
            content_type: sniffed.content_type.to_string(),
            file_name: clean_file_name(upload.file_name.as_deref()),
            size: bytes.len() as i64,
            width: width.map(|w| w as i32),
            height: height.map(|h| h as i32),
            has_thumbnail: thumbnail.is_some(),
            created_at: Utc::now(),
        };
        let dir = &self.config.media_dir;
        store::media::write(dir, &row.id, &bytes, thumbnail.as_deref())
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("writing to the media directory: {e}")))?;
        if let Err(e) = store::attachments::insert(&self.db, row.clone()).await {
            store::media::remove(dir, &row.id).await;
            return Err(e.into());
        }
        Ok(Attachment { info: info(&row), uploader_id: row.uploader_id, created_at: row.created_at })
    }

    /// The file of an attachment (or its thumbnail), for its uploader and for members of a
    /// conversation it was sent to.
    pub async fn attachment_file(&self, actor: &Actor, id: &str, thumbnail: bool) -> AppResult<AttachmentFile> {
        check_id(Field::Attachment, id)?;
        let row = store::attachments::get(&self.db, id)
            .await?
            .ok_or_else(|| AppError::NotFound("attachment not found".into()))?;
        if row.uploader_id != actor.user_id && !store::attachments::shared_with(&self.db, id, &actor.user_id).await? {
            return Err(AppError::Forbidden("this attachment was not shared with you".into()));
        }
        let dir = &self.config.media_dir;
        let (path, content_type) = if thumbnail {
            if !row.has_thumbnail {
                return Err(AppError::NotFound("this attachment has no thumbnail".into()));
            }
            (store::media::thumbnail_path(dir, id), media::thumbnail_type(&row.content_type).to_string())
        } else {
            (store::media::path(dir, id), row.content_type.clone())
        };
        Ok(AttachmentFile { info: info(&row), path, content_type })
    }

    /// The attachments a message of `actor` names: at most `MAX_ATTACHMENTS_PER_MESSAGE`,
    /// each once, each uploaded by the sender (a file someone else uploaded could otherwise be
    /// leaked into a conversation by guessing its id).
    pub(crate) async fn attachments_to_send(&self, actor: &Actor, ids: &[String]) -> AppResult<Vec<AttachmentInfo>> {
        let max = self.config.max_attachments_per_message;
        if ids.len() > max {
            return Err(AppError::validation(format!("a message carries at most {max} attachments")));
        }
        for (i, id) in ids.iter().enumerate() {
            check_id(Field::Attachments, id)?;
            if ids[..i].contains(id) {
                return Err(AppError::validation(format!("attachment {id} is listed twice")));
            }
        }
        let rows = store::attachments::get_many(&self.db, ids).await?;
        ids.iter()
            .map(|id| {
                let row = rows
                    .iter()
                    .find(|r| &r.id == id)
                    .ok_or_else(|| AppError::NotFound(format!("attachment {id} not found")))?;
                if row.uploader_id != actor.user_id {
                    return Err(AppError::Forbidden(format!("attachment {id} was uploaded by someone else")));
                }
                Ok(info(row))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::clean_file_name;

    #[test]
    fn file_names_lose_paths_quotes_and_control_characters() {
        assert_eq!(clean_file_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_file_name(Some("C:\\Users\\me\\photo \"1\".jpg")), "photo 1.jpg");
        assert_eq!(clean_file_name(Some("a\r\nb.txt")), "ab.txt");
        assert_eq!(clean_file_name(Some("..")), "attachment");
        assert_eq!(clean_file_name(None), "attachment");
    }
}
