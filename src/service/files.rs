//! Files: reserving uploads (size limit, type policy, a server-chosen key, an expiry job),
//! who may see a file and download it (members of its message's conversation, or the
//! uploader while it is pending; NOT_FOUND for everyone else), sealing uploads before a
//! message attaches them, and the cleanup jobs.
//!
//! A file's bytes cannot change once it is attached: its upload URL writes a staging object
//! only, and attaching copies that object to a new key no URL can write, checks the copy's
//! size and SHA-256 (against the checksum the uploader declared, if any) and records the
//! checksum. After the URL expires, a job deletes the staging object unless the upload is
//! still pending, so a late PUT (after the file was attached, or deleted) leaves nothing.

use crate::{
    auth::Caller,
    db::{self, files::Sealed},
    domain::{
        files::{File, FileId, FileState, TypePolicy, Upload},
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

/// How long after an upload URL's expiry its staging object is swept.
const SWEEP_GRACE: Duration = Duration::from_secs(5);

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
    let staging_key = Storage::staging_key(&key);
    let checksum = upload.checksum.as_ref().map(|c| c.as_str());
    let expire_at = Utc::now() + files.pending_ttl;
    // Signed first, so the sweep follows the URL's own expiry (checked by clocks that may
    // differ a little); the URL writes nothing of use until the row below exists.
    let target = PutTarget {
        key: &staging_key,
        size: upload.size as u64,
        content_type: content_type.as_str(),
        checksum_sha256: checksum,
    };
    let presigned = files.storage.presign_put(target, files.upload_ttl);
    let sweep_at = presigned.expires_at + SWEEP_GRACE;
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
                staging_key: &staging_key,
                bucket: files.storage.bucket(),
                file_name: upload.file_name.as_str(),
                content_type: content_type.as_str(),
                size: upload.size,
                checksum_sha256: checksum,
            };
            let file = db::files::insert_pending(conn, new).await?;
            let job = Job::ExpireUpload { file_id: file.id };
            db::jobs::enqueue(conn, &job, Some(expire_at)).await?;
            let sweep = Job::SweepUpload {
                file_id: file.id,
                staging_key: staging_key.clone(),
            };
            db::jobs::enqueue(conn, &sweep, Some(sweep_at)).await?;
            Ok(file)
        })
        .await?;
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

/// The caller's pending uploads `ids`, in order, each sealed: its uploaded bytes copied to a
/// key nothing writes, with the announced size and (if declared) checksum. INVALID_ARGUMENT
/// on `attachment_ids` naming the first id that is not such an upload. Give the result to
/// [`settle`] once the send is over.
pub async fn seal_uploads(state: &State, caller: &Caller, ids: &[Uuid]) -> Result<Vec<Sealed>> {
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
    let sealed = futures::future::join_all(ordered.into_iter().map(|(f, o)| seal(storage, f, o)));
    let sealed: Vec<Result<Sealed>> = sealed.await;
    if sealed.iter().any(Result::is_err) {
        let (done, failed): (Vec<_>, Vec<_>) = sealed.into_iter().partition(Result::is_ok);
        let err = failed.into_iter().find_map(Result::err);
        let err = err.unwrap_or_else(|| Error::internal("a seal failed without an error"));
        let done: Vec<Sealed> = done.into_iter().flatten().collect();
        release(storage, &done, false).await;
        return Err(err);
    }
    Ok(sealed.into_iter().flatten().collect())
}

/// Seals one upload (see [`seal_uploads`]).
async fn seal(storage: &Storage, mut file: File, objects: db::files::Objects) -> Result<Sealed> {
    let id = file.id;
    let not_uploaded = || {
        Error::invalid(
            "attachment_ids",
            format!("{id} was not uploaded (or its upload did not complete)"),
        )
    };
    // Files reserved by earlier versions: their URL wrote the object itself.
    let Some(staging) = &objects.staging else {
        return match storage.size(&objects.key).await.map_err(unavailable)? {
            None => Err(not_uploaded()),
            Some(n) if n != file.size as u64 => Err(wrong_size(id, n, file.size)),
            Some(_) => Ok(Sealed {
                file,
                key: objects.key,
                staging: None,
            }),
        };
    };
    let key = Storage::sealed_key(objects.dir());
    if !storage.copy(staging, &key).await.map_err(unavailable)? {
        return Err(not_uploaded());
    }
    let checked = async {
        let (size, sum) = storage.digest(&key).await.map_err(unavailable)?;
        if size != file.size as u64 {
            return Err(wrong_size(id, size, file.size));
        }
        if file.checksum_sha256.as_ref().is_some_and(|c| *c != sum) {
            return Err(Error::invalid(
                "attachment_ids",
                format!("{id} does not have the SHA-256 declared for it"),
            ));
        }
        Ok(sum)
    };
    match checked.await {
        Ok(sum) => {
            file.checksum_sha256 = Some(sum);
            Ok(Sealed {
                file,
                key,
                staging: objects.staging,
            })
        }
        Err(e) => {
            if let Err(d) = storage.delete(&key).await {
                tracing::warn!(error = %d, %key, "a refused copy was not deleted (its file's cleanup will)");
            }
            Err(e)
        }
    }
}

fn wrong_size(id: Uuid, got: u64, announced: i64) -> Error {
    Error::invalid(
        "attachment_ids",
        format!("{id} has {got} bytes, not the {announced} announced"),
    )
}

/// After a send with `sealed` files: once attached, their staging objects are no longer
/// needed; once refused for sure, the copies are (not when the outcome of its commit is
/// unknown). Best effort: what is left here is deleted with its file.
pub async fn settle<T>(storage: &Storage, sealed: &[Sealed], sent: &Result<T>) {
    match sent {
        Ok(_) => release(storage, sealed, true).await,
        Err(Error::InvalidArgument(_) | Error::NotFound(_) | Error::AlreadyExists(_)) => {
            release(storage, sealed, false).await;
        }
        Err(_) => {}
    }
}

/// Deletes the staging objects of `sealed` files (`attached`) or their copies (not).
async fn release(storage: &Storage, sealed: &[Sealed], attached: bool) {
    for s in sealed {
        // Files reserved by earlier versions have no copy to settle.
        let Some(staging) = &s.staging else { continue };
        let key = if attached { staging } else { &s.key };
        if let Err(e) = storage.delete(key).await {
            tracing::warn!(error = %e, %key, "not deleted after a send (its file's cleanup will)");
        }
    }
}

/// Deletes the objects of a file.
async fn remove_objects(storage: &Storage, objects: &db::files::Objects) -> anyhow::Result<()> {
    match &objects.staging {
        Some(_) => storage.purge(objects.dir()).await?,
        None => storage.delete(&objects.key).await?,
    }
    Ok(())
}

/// Job: deletes an upload never attached (a no-op once attached). Safe to repeat: the row
/// is marked first, so a send can no longer attach it, then the objects go, then the row.
pub async fn expire_upload(deps: &JobDeps, id: Uuid) -> anyhow::Result<()> {
    let mut conn = deps.pool.get().await?;
    let Some(objects) = db::files::release_pending(&mut conn, id).await? else {
        return Ok(());
    };
    remove_objects(&deps.storage, &objects).await?;
    db::files::remove(&mut conn, id).await?;
    Ok(())
}

/// Job: deletes the files of a deleted message (marked when it was deleted).
pub async fn delete_message_files(deps: &JobDeps, message: Uuid) -> anyhow::Result<()> {
    let mut conn = deps.pool.get().await?;
    for (id, objects) in db::files::deleting_of_message(&mut conn, message).await? {
        remove_objects(&deps.storage, &objects).await?;
        db::files::remove(&mut conn, id).await?;
    }
    Ok(())
}

/// Job: after an upload URL expired, deletes the object it wrote unless it is a pending
/// upload's (then [`expire_upload`] or attaching takes care of it).
pub async fn sweep_upload(deps: &JobDeps, id: Uuid, staging_key: &str) -> anyhow::Result<()> {
    let mut conn = deps.pool.get().await?;
    if db::files::state_of(&mut conn, id).await? == Some(FileState::Pending) {
        return Ok(());
    }
    drop(conn);
    deps.storage.delete(staging_key).await?;
    Ok(())
}
