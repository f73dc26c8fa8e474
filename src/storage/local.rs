//! The zero-configuration backend: files under the data directory, uploaded and downloaded
//! through this server's own URLs. Each URL is signed with HMAC-SHA256 over its method, key,
//! expiry and limits, checked in constant time. Uploads stream to a staging file (never
//! visible, removed when the upload fails) and are renamed into place only once exactly the
//! signed number of bytes (and checksum) arrived; downloads stream from disk.

use super::{GetTarget, Presigned, PutTarget};
use axum::{
    Router,
    body::Body,
    extract::{Path as UrlPath, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use object_store::{
    GetResultPayload, ObjectStoreExt, WriteMultipart, local::LocalFileSystem, path::Path,
};
use sha2::{Digest, Sha256};
use std::{collections::HashMap, sync::Arc};
use tokio_util::io::ReaderStream;

/// Bytes handed to the disk at a time, and how many such writes may be in flight: what an
/// upload holds in memory at most.
const CHUNK: usize = 4 << 20;
const IN_FLIGHT: usize = 2;
/// Bytes read from disk at a time for a download.
const READ_CHUNK: usize = 256 << 10;

/// Signs and checks this server's file URLs, and owns the directory they reach.
#[derive(Debug, Clone)]
pub struct UrlSigner {
    base: String,
    key: [u8; 32],
    store: Arc<LocalFileSystem>,
}

impl UrlSigner {
    pub(super) fn new(base: &str, key: [u8; 32], store: Arc<LocalFileSystem>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            key,
            store,
        }
    }

    fn mac(&self, fields: &[&str]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.key).expect("any key length");
        for f in fields {
            mac.update(f.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    fn url(&self, key: &str, params: &[(&str, &str)], fields: &[&str]) -> String {
        let signature = URL_SAFE_NO_PAD.encode(self.mac(fields).finalize().into_bytes());
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .append_pair("signature", &signature)
            .finish();
        format!("{}/{key}?{query}", self.base)
    }

    pub(super) fn put(&self, t: PutTarget<'_>, expires_at: DateTime<Utc>) -> Presigned {
        let (exp, size) = (expires_at.timestamp().to_string(), t.size.to_string());
        let sha = t.checksum_sha256.unwrap_or_default();
        let fields = ["PUT", t.key, &exp, &size, t.content_type, sha];
        let mut params = vec![
            ("expires", &*exp),
            ("size", &*size),
            ("type", t.content_type),
        ];
        if !sha.is_empty() {
            params.push(("sha256", sha));
        }
        Presigned {
            url: self.url(t.key, &params, &fields),
            method: "PUT",
            headers: vec![
                ("content-type".into(), t.content_type.into()),
                ("content-length".into(), size.clone()),
            ],
            expires_at,
        }
    }

    pub(super) fn get(&self, t: GetTarget<'_>, expires_at: DateTime<Utc>) -> Presigned {
        let exp = expires_at.timestamp().to_string();
        let fields = ["GET", t.key, &exp, t.file_name, t.content_type];
        let params = [
            ("expires", &*exp),
            ("name", t.file_name),
            ("type", t.content_type),
        ];
        Presigned {
            url: self.url(t.key, &params, &fields),
            method: "GET",
            headers: Vec::new(),
            expires_at,
        }
    }

    /// Checks `signature` over `fields` (constant time) and the expiry.
    fn check(&self, fields: &[&str], expires: &str, signature: &str) -> Result<(), Refusal> {
        let sig = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| Refusal::forbidden("the URL's signature is malformed"))?;
        self.mac(fields)
            .verify_slice(&sig)
            .map_err(|_| Refusal::forbidden("the URL's signature does not match"))?;
        match expires.parse::<i64>() {
            Ok(at) if at >= Utc::now().timestamp() => Ok(()),
            _ => Err(Refusal::forbidden("the URL expired")),
        }
    }

    /// Removes the directory of `dir` with everything in it (half-written uploads included).
    pub(super) async fn remove_dir(&self, dir: &str) -> object_store::Result<()> {
        let path = self.store.path_to_filesystem(&Path::from(dir))?;
        tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            // A file where the directory would be: an earlier version's object, deleted apart.
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(()),
            Err(e) => Err(object_store::Error::Generic {
                store: "local",
                source: Box::new(e),
            }),
        })
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "local",
            source: Box::new(e),
        })?
    }

    /// Removes staging files an interrupted upload of `key` left behind.
    pub(super) async fn remove_partials(&self, key: &str) -> object_store::Result<()> {
        let path = self.store.path_to_filesystem(&Path::from(key))?;
        tokio::task::spawn_blocking(move || {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                return;
            };
            let prefix = format!("{}#", name.to_string_lossy());
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        })
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "local",
            source: Box::new(e),
        })
    }
}

/// A refused file request: its status and a plain-text reason.
#[derive(Debug)]
struct Refusal(StatusCode, &'static str);

impl Refusal {
    fn forbidden(why: &'static str) -> Self {
        Self(StatusCode::FORBIDDEN, why)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, [(header::CONTENT_TYPE, "text/plain")], self.1).into_response()
    }
}

fn storage_failed(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "file storage failed");
    Refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "file storage is unavailable",
    )
}

/// `PUT` and `GET` of `/files/...`: the URLs [`UrlSigner`] hands out.
pub fn routes(signer: UrlSigner) -> Router {
    Router::new()
        .route(
            &format!("{}{{*rest}}", super::LOCAL_FILES_PREFIX),
            get(download).put(upload),
        )
        .with_state(signer)
}

fn query(uri: &Uri) -> HashMap<String, String> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn upload(
    State(s): State<UrlSigner>,
    UrlPath(rest): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match receive(&s, &format!("files/{rest}"), &uri, &headers, body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(r) => r.into_response(),
    }
}

async fn receive(
    s: &UrlSigner,
    key: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), Refusal> {
    let q = query(uri);
    let p = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let (exp, size, ty, sha) = (p("expires"), p("size"), p("type"), p("sha256"));
    s.check(&["PUT", key, exp, size, ty, sha], exp, p("signature"))?;
    let size: u64 = size
        .parse()
        .map_err(|_| Refusal::forbidden("the URL's size is malformed"))?;
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    if sent_type.as_deref() != Some(ty) {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "the content-type header must be the one the upload was signed for",
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(n) if n > size => return Err(too_large()),
        Some(n) if n < size => return Err(wrong_size()),
        _ => {}
    }
    let path = Path::from(key);
    let mut out = WriteMultipart::new_with_chunk_size(
        s.store.put_multipart(&path).await.map_err(storage_failed)?,
        CHUNK,
    );
    let mut hash = (!sha.is_empty()).then(Sha256::new);
    let mut received = 0u64;
    let mut frames = body.into_data_stream();
    // On any early return `out` is dropped, which removes the staging file.
    while let Some(frame) = frames.next().await {
        let bytes = frame.map_err(|_| Refusal(StatusCode::BAD_REQUEST, "the upload broke off"))?;
        received += bytes.len() as u64;
        if received > size {
            return Err(too_large());
        }
        if let Some(h) = hash.as_mut() {
            h.update(&bytes);
        }
        out.wait_for_capacity(IN_FLIGHT)
            .await
            .map_err(storage_failed)?;
        out.put(bytes);
    }
    if received != size {
        return Err(wrong_size());
    }
    if let Some(h) = hash {
        let got = base64::engine::general_purpose::STANDARD.encode(h.finalize());
        if got != sha {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "the bytes do not match the signed sha256",
            ));
        }
    }
    out.finish().await.map_err(storage_failed)?;
    Ok(())
}

fn too_large() -> Refusal {
    Refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the upload is larger than the size it was signed for",
    )
}

fn wrong_size() -> Refusal {
    Refusal(
        StatusCode::BAD_REQUEST,
        "the upload must have exactly the size it was signed for",
    )
}

async fn download(
    State(s): State<UrlSigner>,
    UrlPath(rest): UrlPath<String>,
    uri: Uri,
) -> Response {
    let key = format!("files/{rest}");
    let q = query(&uri);
    let p = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let (exp, name, ty) = (p("expires"), p("name"), p("type"));
    if let Err(r) = s.check(&["GET", &key, exp, name, ty], exp, p("signature")) {
        return r.into_response();
    }
    let found = match s.store.get(&Path::from(key.as_str())).await {
        Ok(found) => found,
        Err(object_store::Error::NotFound { .. }) => {
            return Refusal(StatusCode::NOT_FOUND, "the file is gone").into_response();
        }
        Err(e) => return storage_failed(e).into_response(),
    };
    let len = found.meta.size;
    // object_store's own stream reads 8 KiB per blocking call; larger reads of the file it
    // opened stream several times faster.
    let body = match found.payload {
        GetResultPayload::File(file, _) => Body::from_stream(ReaderStream::with_capacity(
            tokio::fs::File::from_std(file),
            READ_CHUNK,
        )),
        GetResultPayload::Stream(s) => Body::from_stream(s),
    };
    (
        [
            (header::CONTENT_TYPE, ty.to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                super::attachment_disposition(name),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".into(),
            ),
            (header::CACHE_CONTROL, "private, max-age=300".into()),
        ],
        body,
    )
        .into_response()
}
