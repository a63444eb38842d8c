//! The media directory: attachment bytes and thumbnails as files, named by attachment id
//! (server-chosen UUIDs, never client input). Files are written under a temporary name and
//! renamed into place, so a reader never sees half a file.

use std::path::{Path, PathBuf};

/// Where an attachment's bytes live. Spread over subdirectories by the id's last two
/// characters (the random end of a UUIDv7) so no directory grows huge.
pub fn path(dir: &Path, id: &str) -> PathBuf {
    let shard = id.get(id.len().saturating_sub(2)..).unwrap_or("00");
    dir.join(shard).join(id)
}

pub fn thumbnail_path(dir: &Path, id: &str) -> PathBuf {
    let mut p = path(dir, id).into_os_string();
    p.push(".thumb");
    PathBuf::from(p)
}

/// Stores an attachment and its thumbnail. On failure nothing is left behind.
pub async fn write(dir: &Path, id: &str, bytes: &[u8], thumbnail: Option<&[u8]>) -> std::io::Result<()> {
    let target = path(dir, id);
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let result = async {
        put(&target, bytes).await?;
        if let Some(thumb) = thumbnail {
            put(&thumbnail_path(dir, id), thumb).await?;
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        remove(dir, id).await;
    }
    result
}

async fn put(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    let written = async {
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, target).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    written
}

/// Removes an attachment's files (after its row could not be stored). Missing files are fine.
pub async fn remove(dir: &Path, id: &str) {
    for p in [path(dir, id), thumbnail_path(dir, id)] {
        if let Err(e) = tokio::fs::remove_file(&p).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %p.display(), cause = %e, "could not remove attachment file");
            }
        }
    }
}
