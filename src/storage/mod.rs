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

    /// A new object key: random, never derived from anything a client sent.
    pub fn new_key() -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        // Spread over 256 directories (the local backend lists one to clean up).
        format!("files/{}/{id}", &id[..2])
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
