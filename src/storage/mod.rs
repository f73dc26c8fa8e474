//! Object storage for files: the S3/MinIO bucket when configured, otherwise a directory under
//! the data dir that this server serves itself. Server-side work (HEAD, delete, local writes
//! and reads) goes through `object_store`; clients get presigned URLs: S3's (signed with
//! `rusty-s3`) or this server's HMAC-signed ones.

pub mod local;
mod s3;

use anyhow::Context;
use chrono::{DateTime, Utc};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};
use std::{sync::Arc, time::Duration};

/// Where the server itself serves the local backend's upload and download URLs.
pub const LOCAL_FILES_PREFIX: &str = "/files/";

pub use s3::S3Settings;

/// A presigned request for a client to make.
#[derive(Debug, Clone)]
pub struct Presigned {
    /// The URL.
    pub url: String,
    /// The HTTP method.
    pub method: &'static str,
    /// Headers the request must carry (signed).
    pub headers: Vec<(String, String)>,
    /// When the URL stops working.
    pub expires_at: DateTime<Utc>,
}

/// What an upload URL allows: exactly `size` bytes of `content_type` to `key`.
#[derive(Debug, Clone, Copy)]
pub struct PutTarget<'a> {
    /// The object key (server-chosen).
    pub key: &'a str,
    /// The exact size.
    pub size: u64,
    /// The type the client must send.
    pub content_type: &'a str,
    /// The SHA-256 (base64) the bytes must have, if given.
    pub checksum_sha256: Option<&'a str>,
}

/// What a download URL serves the object as.
#[derive(Debug, Clone, Copy)]
pub struct GetTarget<'a> {
    /// The object key.
    pub key: &'a str,
    /// The name in `Content-Disposition: attachment`.
    pub file_name: &'a str,
    /// The `Content-Type`.
    pub content_type: &'a str,
}

#[derive(Debug)]
enum Signer {
    Local(local::UrlSigner),
    S3(s3::Presigner),
}

/// Where files live.
#[derive(Debug, Clone)]
pub struct Storage {
    objects: Arc<dyn ObjectStore>,
    bucket: String,
    signer: Arc<Signer>,
}

/// An object store failure, as the services see it.
#[derive(Debug, thiserror::Error)]
#[error("file storage: {0}")]
pub struct StorageError(#[from] object_store::Error);

impl Storage {
    /// The S3 bucket of `s3`.
    pub fn s3(s3: &S3Settings) -> anyhow::Result<Self> {
        let (objects, presigner) = s3::open(s3)?;
        Ok(Self {
            objects: Arc::new(objects),
            bucket: s3.bucket.clone(),
            signer: Arc::new(Signer::S3(presigner)),
        })
    }

    /// The directory `dir` (created, mode 0700), served by this server under `base_url`
    /// (`http://host:port`) with URLs signed by `key`; `fsync`: an upload is on disk (file
    /// and directory entry) before it is acknowledged.
    pub fn local(
        dir: &std::path::Path,
        base_url: &str,
        key: [u8; 32],
        fsync: bool,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the files directory {}", dir.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?
            .with_fsync(fsync)
            .with_automatic_cleanup(true);
        let store = Arc::new(store);
        Ok(Self {
            objects: store.clone(),
            bucket: "local".into(),
            signer: Arc::new(Signer::Local(local::UrlSigner::new(base_url, key, store))),
        })
    }

    /// The bucket name recorded with each file (`local` for the directory).
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// A new file's place: a random prefix, never derived from anything a client sent, under
    /// which all of its objects live (see [`staging_key`](Self::staging_key)).
    pub fn new_key() -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        // Spread over 256 directories.
        format!("files/{}/{id}", &id[..2])
    }

    /// Where the upload URL of the file at `dir` writes. Only this key is ever writable by a
    /// client; attaching copies it to [`sealed_key`](Self::sealed_key), which nothing writes.
    pub fn staging_key(dir: &str) -> String {
        format!("{dir}/upload")
    }

    /// A new key for the bytes of the file at `dir` as attached: one per attempt, so that two
    /// sends racing to attach the same upload never write the same object.
    pub fn sealed_key(dir: &str) -> String {
        format!("{dir}/{}", uuid::Uuid::new_v4().simple())
    }

    /// Copies the object at `from` to `to` (a new key); false when there is none at `from`.
    pub async fn copy(&self, from: &str, to: &str) -> Result<bool, StorageError> {
        match self.objects.copy(&Path::from(from), &Path::from(to)).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The size and SHA-256 (base64) of the object at `key`, read through.
    pub async fn digest(&self, key: &str) -> Result<(u64, String), StorageError> {
        use futures::StreamExt;
        use sha2::{Digest, Sha256};
        let mut stream = self.objects.get(&Path::from(key)).await?.into_stream();
        let (mut hash, mut size) = (Sha256::new(), 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            hash.update(&chunk);
        }
        use base64::Engine;
        let sum = base64::engine::general_purpose::STANDARD.encode(hash.finalize());
        Ok((size, sum))
    }

    /// Deletes every object under `dir` (a file's upload and its attached copies).
    pub async fn purge(&self, dir: &str) -> Result<(), StorageError> {
        use futures::TryStreamExt;
        if let Signer::Local(s) = &*self.signer {
            return Ok(s.remove_dir(dir).await?);
        }
        let prefix = Path::from(format!("{dir}/"));
        let keys: Vec<Path> = self
            .objects
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        for key in keys {
            match self.objects.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// A URL to upload `target` with, valid for `ttl`.
    pub fn presign_put(&self, target: PutTarget<'_>, ttl: Duration) -> Presigned {
        let expires_at = Utc::now() + ttl;
        match &*self.signer {
            Signer::Local(s) => s.put(target, expires_at),
            Signer::S3(s) => s.put(target, ttl, expires_at),
        }
    }

    /// A URL to download `target` with, valid for `ttl`.
    pub fn presign_get(&self, target: GetTarget<'_>, ttl: Duration) -> Presigned {
        let expires_at = Utc::now() + ttl;
        match &*self.signer {
            Signer::Local(s) => s.get(target, expires_at),
            Signer::S3(s) => s.get(target, ttl, expires_at),
        }
    }

    /// The size of the object at `key`, `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self.objects.head(&Path::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the object at `key` (and, locally, any upload of it left half-written by a
    /// crash); an object already gone is no error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.objects.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if let Signer::Local(s) = &*self.signer {
            s.remove_partials(key).await?;
        }
        Ok(())
    }

    /// The routes that serve this server's signed URLs (local backend only).
    pub fn routes(&self) -> Option<axum::Router> {
        match &*self.signer {
            Signer::Local(s) => Some(local::routes(s.clone())),
            Signer::S3(_) => None,
        }
    }
}

/// `Content-Disposition: attachment` for `name`: an ASCII fallback and the exact UTF-8 name
/// (RFC 6266).
pub fn attachment_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_keep_the_name_and_quote_nothing_dangerous() {
        assert_eq!(
            attachment_disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b%2Etxt"
        );
        let d = attachment_disposition("x\";evil.html");
        assert!(
            d.starts_with("attachment; filename=\"x_;evil.html\";"),
            "{d}"
        );
        assert!(attachment_disposition("ü.pdf").contains("UTF-8''%C3%BC%2Epdf"));
    }

    #[test]
    fn keys_are_random_and_spread() {
        let (a, b) = (Storage::new_key(), Storage::new_key());
        assert_ne!(a, b);
        assert!(
            a.starts_with("files/") && a.len() == "files/xx/".len() + 32,
            "{a}"
        );
    }
}
