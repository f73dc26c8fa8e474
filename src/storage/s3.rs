//! S3 and S3-compatible servers (MinIO, ...): `object_store` for server-side calls, `rusty-s3`
//! for the presigned URLs handed to clients, signed for the public endpoint (SigV4 signs the
//! host, so a URL signed for an internal name fails from outside).

use super::{GetTarget, Presigned, PutTarget};
use anyhow::Context;
use chrono::{DateTime, Utc};
use object_store::{
    Certificate, ClientOptions,
    aws::{AmazonS3, AmazonS3Builder},
};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle, actions};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// Where the bucket is and how to reach it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// The endpoint the server calls (e.g. `http://minio:9000`); AWS's when unset.
    pub endpoint: Option<String>,
    /// The endpoint in URLs handed to clients; `endpoint` when unset.
    pub public_endpoint: Option<String>,
    /// The region.
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// Path-style URLs (`endpoint/bucket/key`, MinIO's default) instead of virtual hosts;
    /// when unset, path style with an endpoint, virtual hosts on AWS.
    pub path_style: Option<bool>,
    /// Extra PEM roots for an `https://` endpoint signed by a private CA.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Presigns client requests for one bucket.
#[derive(Debug)]
pub(super) struct Presigner {
    bucket: Bucket,
    credentials: Credentials,
}

pub(super) fn open(s: &S3Settings) -> anyhow::Result<(AmazonS3, Presigner)> {
    let aws = format!("https://s3.{}.amazonaws.com", s.region);
    let endpoint = s.endpoint.clone().unwrap_or(aws);
    let public = s
        .public_endpoint
        .clone()
        .unwrap_or_else(|| endpoint.clone());
    let path_style = s.path_style.unwrap_or(s.endpoint.is_some());
    let secret = s.secret_access_key.expose_secret();
    // First: the options replace whatever the builder held (allow_http included).
    let objects = AmazonS3Builder::new()
        .with_client_options(client_options(s.ca_file.as_deref())?)
        .with_bucket_name(&s.bucket)
        .with_region(&s.region)
        .with_endpoint(&endpoint)
        .with_access_key_id(&s.access_key_id)
        .with_secret_access_key(secret)
        .with_allow_http(endpoint.starts_with("http://"))
        .with_virtual_hosted_style_request(!path_style)
        .build()
        .context("cannot configure the S3 client (EPOP_S3_*)")?;
    let style = if path_style {
        UrlStyle::Path
    } else {
        UrlStyle::VirtualHost
    };
    let url = public
        .parse()
        .with_context(|| format!("EPOP_S3_PUBLIC_ENDPOINT is not a URL: {public}"))?;
    let bucket = Bucket::new(url, style, s.bucket.clone(), s.region.clone())
        .context("cannot configure the S3 bucket for presigned URLs")?;
    let credentials = Credentials::new(s.access_key_id.clone(), secret.to_owned());
    Ok((
        objects,
        Presigner {
            bucket,
            credentials,
        },
    ))
}

/// HTTP client settings: the extra roots of `ca_file`, if any.
fn client_options(ca_file: Option<&std::path::Path>) -> anyhow::Result<ClientOptions> {
    let mut options = ClientOptions::new();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("EPOP_S3_CA_FILE: cannot read {}", path.display()))?;
        let roots = Certificate::from_pem_bundle(&pem).with_context(|| {
            format!(
                "EPOP_S3_CA_FILE: {} holds no PEM certificate",
                path.display()
            )
        })?;
        if roots.is_empty() {
            anyhow::bail!(
                "EPOP_S3_CA_FILE: {} holds no PEM certificate",
                path.display()
            );
        }
        for root in roots {
            options = options.with_root_certificate(root);
        }
    }
    Ok(options)
}

impl Presigner {
    pub(super) fn put(
        &self,
        t: PutTarget<'_>,
        ttl: Duration,
        expires_at: DateTime<Utc>,
    ) -> Presigned {
        let size = t.size.to_string();
        let mut headers = vec![
            ("content-type".to_owned(), t.content_type.to_owned()),
            ("content-length".to_owned(), size),
        ];
        if let Some(sha) = t.checksum_sha256 {
            headers.push(("x-amz-checksum-sha256".into(), sha.into()));
        }
        let mut action = actions::PutObject::new(&self.bucket, Some(&self.credentials), t.key);
        // Signed, so the store refuses an upload of another size, type or content.
        for (k, v) in &headers {
            action.headers_mut().insert(k.clone(), v.clone());
        }
        Presigned {
            url: action.sign(ttl).to_string(),
            method: "PUT",
            headers,
            expires_at,
        }
    }

    pub(super) fn get(
        &self,
        t: GetTarget<'_>,
        ttl: Duration,
        expires_at: DateTime<Utc>,
    ) -> Presigned {
        let mut action = actions::GetObject::new(&self.bucket, Some(&self.credentials), t.key);
        let q = action.query_mut();
        q.insert(
            "response-content-disposition",
            super::attachment_disposition(t.file_name),
        );
        q.insert("response-content-type", t.content_type.to_owned());
        Presigned {
            url: action.sign(ttl).to_string(),
            method: "GET",
            headers: Vec::new(),
            expires_at,
        }
    }
}
