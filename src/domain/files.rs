//! Files as the services and adapters see them: the attachment record, the checked parts of
//! an upload request (name, type, size, checksum) and the content-type policy.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of a file (an `attachments` row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId(pub Uuid);

impl FileId {
    /// Parses a file id from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        super::parse_uuid(field, raw).map(Self)
    }
}

/// Where a file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Reserved, not attached to a message yet.
    Pending,
    /// Attached to a message.
    Attached,
    /// Its object is being deleted.
    Deleting,
}

impl FileState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Attached => "attached",
            Self::Deleting => "deleting",
        }
    }

    /// The state stored as `raw`.
    pub fn from_stored(raw: &str) -> Self {
        match raw {
            "pending" => Self::Pending,
            "attached" => Self::Attached,
            _ => Self::Deleting,
        }
    }
}

/// A file: what readers of a message and of FileService see (never its storage key). Its
/// serde form is part of the message events in the conversation log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// The id.
    pub id: Uuid,
    /// The original name.
    pub file_name: String,
    /// The type it is served with.
    pub content_type: String,
    /// The size in bytes.
    pub size: i64,
    /// Who uploaded it.
    pub uploader_id: Option<Uuid>,
    /// The message it is attached to.
    pub message_id: Option<Uuid>,
    /// Where it is in its life.
    pub state: FileState,
    /// The uploader's SHA-256 (base64), if given.
    #[serde(default)]
    pub checksum_sha256: Option<String>,
    /// When it was reserved.
    pub created_at: DateTime<Utc>,
}

/// A file name shown to downloaders: 1 to 255 characters, no path separators, no control
/// characters, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

impl FileName {
    /// Checks a name from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        let n = raw.chars().count();
        if n == 0 || n > 255 {
            return Err(Error::invalid(field, "must have 1 to 255 characters"));
        }
        if raw.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
            return Err(Error::invalid(
                field,
                "must not contain path separators or control characters",
            ));
        }
        if raw == "." || raw == ".." {
            return Err(Error::invalid(field, "must name a file"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A MIME type, `type/subtype` in lower case, parameters dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType(String);

/// What files of unknown or inert type are stored as.
pub const OCTET_STREAM: &str = "application/octet-stream";

impl ContentType {
    /// Checks a type from request field `field` (empty means `application/octet-stream`).
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        let essence = raw.split(';').next().unwrap_or_default().trim();
        if essence.is_empty() {
            return Ok(Self(OCTET_STREAM.into()));
        }
        let token = |s: &str| {
            !s.is_empty()
                && s.len() <= 127
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
        };
        match essence.split_once('/') {
            Some((t, s)) if token(t) && token(s) => Ok(Self(essence.to_ascii_lowercase())),
            _ => Err(Error::invalid(field, "must be a MIME type (type/subtype)")),
        }
    }

    /// The type.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A SHA-256 given by the uploader: base64 of 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum(String);

impl Checksum {
    /// Checks a checksum from request field `field`; `None` when empty.
    pub fn parse(field: &str, raw: &str) -> Result<Option<Self>> {
        use base64::{Engine, engine::general_purpose::STANDARD};
        if raw.is_empty() {
            return Ok(None);
        }
        match STANDARD.decode(raw) {
            Ok(bytes) if bytes.len() == 32 => Ok(Some(Self(raw.to_owned()))),
            _ => Err(Error::invalid(
                field,
                "must be the base64 of a SHA-256 (44 characters)",
            )),
        }
    }

    /// The base64 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A checked upload request.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The name.
    pub file_name: FileName,
    /// The type asked for (the policy decides what it is stored as).
    pub content_type: ContentType,
    /// The exact size.
    pub size: i64,
    /// The uploader's checksum.
    pub checksum: Option<Checksum>,
}

/// Which types may be uploaded and which are served as plain bytes.
#[derive(Debug, Clone)]
pub struct TypePolicy {
    /// Types accepted (`image/*` patterns allowed); empty accepts any.
    pub allowed: Vec<String>,
    /// Types stored as `application/octet-stream` because browsers would run them.
    pub inert: Vec<String>,
}

/// The types browsers execute or render as active documents.
pub const ACTIVE_TYPES: &[&str] = &[
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "application/xml",
    "text/xml",
    "text/xsl",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "text/javascript",
    "text/ecmascript",
    "application/wasm",
    "application/x-shockwave-flash",
    "multipart/x-mixed-replace",
];

impl Default for TypePolicy {
    fn default() -> Self {
        Self {
            allowed: Vec::new(),
            inert: ACTIVE_TYPES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

fn matches(pattern: &str, ty: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    match pattern.strip_suffix("/*") {
        Some(major) => ty.split('/').next() == Some(major),
        None => pattern == ty || pattern == "*/*" || pattern == "*",
    }
}

impl TypePolicy {
    /// The type a file of type `ty` is stored and served with; INVALID_ARGUMENT on `field`
    /// when the allow-list refuses it.
    pub fn apply(&self, field: &str, ty: &ContentType) -> Result<ContentType> {
        let ty = ty.as_str();
        if !self.allowed.is_empty() && !self.allowed.iter().any(|p| matches(p, ty)) {
            return Err(Error::invalid(
                field,
                format!(
                    "{ty} is not accepted here (allowed: {})",
                    self.allowed.join(", ")
                ),
            ));
        }
        // Any XML can carry script (XSLT, XHTML namespaces).
        if self.inert.iter().any(|p| matches(p, ty)) || ty.ends_with("+xml") {
            return Ok(ContentType(OCTET_STREAM.into()));
        }
        Ok(ContentType(ty.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_without_paths_or_controls() {
        assert!(FileName::parse("f", "report 2026.pdf").is_ok());
        assert!(FileName::parse("f", "übersicht.txt").is_ok());
        for bad in [
            "",
            "a/b",
            "..\\x",
            "a\0b",
            "a\nb",
            ".",
            "..",
            &"x".repeat(256),
        ] {
            assert!(FileName::parse("f", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn types_are_normalised_and_active_ones_made_inert() {
        let p = TypePolicy::default();
        let t = |s| {
            p.apply("t", &ContentType::parse("t", s).unwrap())
                .unwrap()
                .0
        };
        assert_eq!(t("Image/PNG; q=1"), "image/png");
        assert_eq!(t(""), OCTET_STREAM);
        assert_eq!(t("text/html; charset=utf-8"), OCTET_STREAM);
        assert_eq!(t("image/svg+xml"), OCTET_STREAM);
        assert_eq!(t("application/atom+xml"), OCTET_STREAM);
        assert_eq!(t("text/plain"), "text/plain");
        assert!(ContentType::parse("t", "nonsense").is_err());
        assert!(ContentType::parse("t", "a/b c").is_err());
    }

    #[test]
    fn the_allow_list_refuses_others() {
        let p = TypePolicy {
            allowed: vec!["image/*".into(), "application/pdf".into()],
            ..Default::default()
        };
        let ct = |s| ContentType::parse("t", s).unwrap();
        assert!(p.apply("t", &ct("image/jpeg")).is_ok());
        assert!(p.apply("t", &ct("application/pdf")).is_ok());
        assert!(p.apply("t", &ct("text/plain")).is_err());
    }

    #[test]
    fn checksums_are_sha256_in_base64() {
        let ok = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert!(Checksum::parse("c", ok).unwrap().is_some());
        assert!(Checksum::parse("c", "").unwrap().is_none());
        assert!(Checksum::parse("c", "abc").is_err());
    }
}
