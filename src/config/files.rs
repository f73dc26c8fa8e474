//! The settings of file uploads and downloads, and of the S3/MinIO bucket when there is one.

use clap::Args;
use secrecy::SecretString;
use std::{path::PathBuf, time::Duration};

/// Settings of file uploads and downloads, and of the S3/MinIO bucket when there is one.
#[derive(Debug, Clone, Args)]
pub struct FilesArgs {
    /// The largest file accepted, in bytes (25 MiB).
    #[arg(long, env = "EPOP_FILES_MAX_BYTES", default_value_t = 25 << 20)]
    pub files_max_bytes: u64,

    /// MIME types accepted (comma-separated; `image/*` patterns allowed); empty accepts any.
    #[arg(long, env = "EPOP_FILES_ALLOWED_TYPES", value_delimiter = ',')]
    pub files_allowed_types: Vec<String>,

    /// MIME types stored and served as `application/octet-stream` because browsers would run
    /// them (any `+xml` type is too); comma-separated, replacing the default list.
    #[arg(long, env = "EPOP_FILES_INERT_TYPES", value_delimiter = ',')]
    pub files_inert_types: Option<Vec<String>>,

    /// How long an upload may stay unattached before it is deleted.
    #[arg(long, env = "EPOP_FILES_PENDING_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub files_pending_ttl: Duration,

    /// How long an upload URL works.
    #[arg(long, env = "EPOP_FILES_UPLOAD_URL_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub files_upload_url_ttl: Duration,

    /// Uploads a user may have reserved and not attached yet (0: no limit).
    #[arg(long, env = "EPOP_FILES_MAX_PENDING", default_value_t = 100)]
    pub files_max_pending: i64,

    /// Bytes a user may have reserved and not attached yet (0: no limit).
    #[arg(long, env = "EPOP_FILES_MAX_PENDING_BYTES", default_value_t = 1 << 30)]
    pub files_max_pending_bytes: i64,

    /// Bytes of files a user may store, attached and pending together (0: no quota).
    #[arg(long, env = "EPOP_FILES_QUOTA_BYTES", default_value_t = 0)]
    pub files_quota_bytes: i64,

    /// How long a download URL works.
    #[arg(long, env = "EPOP_FILES_DOWNLOAD_URL_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub files_download_url_ttl: Duration,

    /// Without S3: the base URL clients reach this server at, for the file URLs it serves
    /// (e.g. `https://chat.example.com`); unset means `http://<listen address>`.
    #[arg(long, env = "EPOP_FILES_URL")]
    pub files_url: Option<String>,

    /// Without S3: acknowledge an upload only once it is on disk (fsync of the file and its
    /// directory), as S3 does; `false` trades that for speed.
    #[arg(long, env = "EPOP_FILES_FSYNC", default_value_t = true, action = clap::ArgAction::Set)]
    pub files_fsync: bool,

    /// The S3/MinIO bucket; unset keeps files under `<data-dir>/files`, served by this server.
    #[arg(long, env = "EPOP_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// The S3 endpoint the server calls (e.g. `http://127.0.0.1:9000` for MinIO); AWS's
    /// regional endpoint when unset.
    #[arg(long, env = "EPOP_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// The S3 endpoint in URLs handed to clients, when they reach it by another name.
    #[arg(long, env = "EPOP_S3_PUBLIC_ENDPOINT")]
    pub s3_public_endpoint: Option<String>,

    /// The S3 region.
    #[arg(long, env = "EPOP_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// The S3 access key id.
    #[arg(long, env = "EPOP_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// The S3 secret access key.
    #[arg(long, env = "EPOP_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<SecretString>,

    /// Path-style bucket URLs (MinIO) instead of virtual hosts (AWS); by default path style
    /// when an endpoint is set.
    #[arg(long, env = "EPOP_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,

    /// PEM root certificates to trust for an `https://` S3 endpoint with a private CA (a
    /// MinIO of your own), besides the system's.
    #[arg(long, env = "EPOP_S3_CA_FILE")]
    pub s3_ca_file: Option<PathBuf>,
}
