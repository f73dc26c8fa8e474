//! Files: reserving uploads (size limit, type policy, a server-chosen key, an expiry job),
//! who may see a file and download it (members of its message's conversation, or the
//! uploader while it is pending; NOT_FOUND for everyone else), checking uploads against the
//! store before a message attaches them, and the cleanup jobs.

use crate::{
    auth::Caller,
    db,
    domain::{
        files::{File, FileId, TypePolicy, Upload},
        jobs::Job,
    },
    error::{Error, Result},
    service::{JobDeps, State},
    storage::{GetTarget, Presigned, PutTarget, Storage, StorageError},
};
use chrono::Utc;
use diesel_async::AsyncConnection;
use std::{collections::HashSet, time::Duration};
use uuid::Uuid;

/// Where files go and the rules they follow.
#[derive(Debug, Clone)]
pub struct Files {
    /// The object store.
    pub storage: Storage,
    /// The largest file accepted.
    pub max_bytes: u64,
    /// Which types are accepted, and which are served inert.
    pub policy: TypePolicy,
    /// How long an upload may stay unattached.
    pub pending_ttl: Duration,
    /// How long upload URLs work.
    pub upload_ttl: Duration,
    /// How long download URLs work.
    pub download_ttl: Duration,
    /// What one user may hold (0: no limit each).
    pub quota: Quota,
}

/// What one user may hold; 0 means no limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quota {
    /// Uploads reserved and not attached yet.
    pub pending: i64,
    /// Their bytes.
    pub pending_bytes: i64,
    /// Bytes of all their files, attached and pending.
    pub stored_bytes: i64,
}

impl Quota {
    /// Why reserving `size` more bytes is refused for someone holding `held` (pending,
    /// pending bytes, stored bytes), if it is.
    fn refusal(&self, held: (i64, i64, i64), size: i64) -> Option<(&'static str, String)> {
        let over = |limit: i64, now: i64, more: i64| limit > 0 && now + more > limit;
        if over(self.pending, held.0, 1) {
            let why = format!(
                "too many pending uploads: at most {} (attach them or let them expire)",
                self.pending
            );
            return Some(("pending_uploads", why));
        }
        if over(self.pending_bytes, held.1, size) {
            let why = format!(
                "pending uploads would exceed {} bytes (attach them or let them expire)",
                self.pending_bytes
            );
            return Some(("pending_bytes", why));
        }
        if over(self.stored_bytes, held.2, size) {
            let why = format!(
                "the storage quota of {} bytes would be exceeded",
                self.stored_bytes
            );
            return Some(("stored_bytes", why));
        }
        None
    }
}

fn unavailable(e: StorageError) -> Error {
    tracing::error!(error = %e, "file storage failed");
    Error::Unavailable("file storage is unavailable; retry shortly".into())
}

/// Reserves an upload of the caller's and presigns its PUT.
pub async fn presign_upload(
    state: &State,
    caller: &Caller,
    upload: Upload,
) -> Result<(File, Presigned)> {
    let files = &state.files;
    if upload.size < 0 {
        return Err(Error::invalid("size", "must not be negative"));
    }
    if upload.size as u64 > files.max_bytes {
        return Err(Error::invalid(
            "size",
            format!("must be at most {} bytes", files.max_bytes),
        ));
    }
    let content_type = files.policy.apply("content_type", &upload.content_type)?;
    let key = Storage::new_key();
    let checksum = upload.checksum.as_ref().map(|c| c.as_str());
    let expire_at = Utc::now() + files.pending_ttl;
    let mut conn = state.pool.get().await?;
    let file = conn
        .transaction::<_, Error, _>(async |conn| {
            let held = db::files::holdings(conn, caller.user_id).await?;
            if let Some((quota, why)) = files.quota.refusal(held, upload.size) {
                metrics::counter!("epop_files_quota_refusals_total", "quota" => quota).increment(1);
                return Err(Error::ResourceExhausted(why));
            }
            let new = db::files::NewFile {
                uploader: caller.user_id,
                key: &key,
                bucket: files.storage.bucket(),
                file_name: upload.file_name.as_str(),
                content_type: content_type.as_str(),
                size: upload.size,
                checksum_sha256: checksum,
            };
            let file = db::files::insert_pending(conn, new).await?;
            let job = Job::ExpireUpload { file_id: file.id };
            db::jobs::enqueue(conn, &job, Some(expire_at)).await?;
            Ok(file)
        })
        .await?;
    let target = PutTarget {
        key: &key,
        size: upload.size as u64,
        content_type: content_type.as_str(),
        checksum_sha256: checksum,
    };
    let presigned = files.storage.presign_put(target, files.upload_ttl);
    Ok((file, presigned))
}

/// A file the caller may see, with its object key; NOT_FOUND otherwise.
async fn visible(state: &State, caller: &Caller, id: FileId) -> Result<(File, String)> {
    let mut conn = state.pool.get().await?;
    db::files::visible(&mut conn, caller.user_id, id.0)
        .await?
        .ok_or(Error::NotFound("file"))
}

/// A file's metadata.
pub async fn get(state: &State, caller: &Caller, id: FileId) -> Result<File> {
    visible(state, caller, id).await.map(|(f, _)| f)
}

/// A short-lived URL that downloads a file as an attachment with its name and type.
pub async fn presign_download(
    state: &State,
    caller: &Caller,
    id: FileId,
) -> Result<(File, Presigned)> {
    let (file, key) = visible(state, caller, id).await?;
    let target = GetTarget {
        key: &key,
        file_name: &file.file_name,
        content_type: &file.content_type,
    };
    let presigned = state
        .files
        .storage
        .presign_get(target, state.files.download_ttl);
    Ok((file, presigned))
}

/// The caller's pending uploads `ids`, in order, each checked against the store: uploaded,
/// with the announced size. INVALID_ARGUMENT on `attachment_ids` naming the first id that is
/// not such an upload.
pub async fn check_uploads(state: &State, caller: &Caller, ids: &[Uuid]) -> Result<Vec<File>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen = HashSet::new();
    if let Some(dup) = ids.iter().find(|id| !seen.insert(**id)) {
        return Err(Error::invalid(
            "attachment_ids",
            format!("{dup} is named twice"),
        ));
    }
    let mut conn = state.pool.get().await?;
    let mut pending = db::files::pending_of(&mut conn, caller.user_id, ids).await?;
    drop(conn);
    let mut ordered = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(i) = pending.iter().position(|(f, _)| f.id == *id) else {
            return Err(Error::invalid(
                "attachment_ids",
                format!("{id} is not an upload of yours waiting to be attached"),
            ));
        };
        ordered.push(pending.swap_remove(i));
    }
    let storage = &state.files.storage;
    let sizes = futures::future::try_join_all(ordered.iter().map(|(_, key)| storage.size(key)))
        .await
        .map_err(unavailable)?;
    for ((file, _), size) in ordered.iter().zip(sizes) {
        let id = file.id;
        match size {
            None => {
                return Err(Error::invalid(
                    "attachment_ids",
                    format!("{id} was not uploaded (or its upload did not complete)"),
                ));
            }
            Some(n) if n != file.size as u64 => {
                return Err(Error::invalid(
                    "attachment_ids",
                    format!("{id} has {n} bytes, not the {} announced", file.size),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(ordered.into_iter().map(|(f, _)| f).collect())
}

/// Job: deletes an upload never attached (a no-op once attached). Safe to repeat: the row
/// is marked first, so a send can no longer attach it, then the object goes, then the row.
pub async fn expire_upload(deps: &JobDeps, id: Uuid) -> anyhow::Result<()> {
    let mut conn = deps.pool.get().await?;
    let Some(key) = db::files::release_pending(&mut conn, id).await? else {
        return Ok(());
    };
    deps.storage.delete(&key).await?;
    db::files::remove(&mut conn, id).await?;
    Ok(())
}

/// Job: deletes the files of a deleted message (marked when it was deleted).
pub async fn delete_message_files(deps: &JobDeps, message: Uuid) -> anyhow::Result<()> {
    let mut conn = deps.pool.get().await?;
    for (id, key) in db::files::deleting_of_message(&mut conn, message).await? {
        deps.storage.delete(&key).await?;
        db::files::remove(&mut conn, id).await?;
    }
    Ok(())
}
