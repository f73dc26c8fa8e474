//! Wire forms of files and presigned requests.

use super::timestamp;
use crate::{
    domain::files::{File, FileState},
    pb,
    storage::Presigned,
};

/// The wire form of a file.
pub fn file_info(f: File) -> pb::FileInfo {
    let state = match f.state {
        FileState::Pending => pb::FileState::Pending,
        FileState::Attached => pb::FileState::Attached,
        FileState::Deleting => pb::FileState::Unspecified,
    };
    pb::FileInfo {
        id: f.id.to_string(),
        file_name: f.file_name,
        content_type: f.content_type,
        size: f.size,
        uploader_id: f.uploader_id.map(|u| u.to_string()).unwrap_or_default(),
        message_id: f.message_id.map(|m| m.to_string()).unwrap_or_default(),
        create_time: Some(timestamp(f.created_at)),
        state: state.into(),
        checksum_sha256: f.checksum_sha256.unwrap_or_default(),
    }
}

/// The answer to PresignUpload.
pub fn upload(f: File, p: Presigned) -> pb::PresignUploadResponse {
    pb::PresignUploadResponse {
        file: Some(file_info(f)),
        upload_url: p.url,
        method: p.method.into(),
        headers: p.headers.into_iter().collect(),
        expire_time: Some(timestamp(p.expires_at)),
    }
}

/// The answer to PresignDownload.
pub fn download(f: File, p: Presigned) -> pb::PresignDownloadResponse {
    pb::PresignDownloadResponse {
        download_url: p.url,
        expire_time: Some(timestamp(p.expires_at)),
        file: Some(file_info(f)),
    }
}
