//! Typed ids, so a user id can never be passed where a division id is expected.

use crate::error::{Error, Result};
use uuid::Uuid;

/// Parses a UUID from request field `field`.
pub fn parse_uuid(field: &str, raw: &str) -> Result<Uuid> {
    if raw.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    Uuid::parse_str(raw).map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// The id of a user account.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct UserId(pub Uuid);

impl UserId {
    /// Parses a user id from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        parse_uuid(field, raw).map(Self)
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of a division.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DivisionId(pub i32);

impl DivisionId {
    /// Checks a division id from request field `field`.
    pub fn parse(field: &str, raw: i32) -> Result<Self> {
        if raw <= 0 {
            return Err(Error::invalid(field, "must be a positive division id"));
        }
        Ok(Self(raw))
    }
}
