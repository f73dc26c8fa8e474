//! Authentication: access tokens (JWT), password hashing, refresh-token cookies, the layer
//! that authenticates every non-public RPC, and the [`Caller`] it leaves in the request.

pub mod cookie;
pub mod grants;
pub mod jwt;
pub mod key_file;
pub mod keyring;
pub mod layer;
pub mod lockout;
pub mod oidc;
pub mod passkeys;
pub mod password;
pub mod totp;

use crate::{
    domain::{Role, UserId},
    error::{Error, Result},
};
use uuid::Uuid;

/// The authenticated caller of an RPC, taken from a verified access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The signed-in user.
    pub user_id: UserId,
    /// Their role now (the authentication layer reads it from the live user, not the token).
    pub role: Role,
    /// The session (refresh-token family) the token belongs to.
    pub session: Uuid,
    /// When the token expires (an event stream ends then).
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl Caller {
    /// The caller of `request`, put there by the authentication layer.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Self> {
        request
            .extensions()
            .get::<Caller>()
            .copied()
            .ok_or_else(|| Error::Unauthenticated("sign in first".into()))
    }

    /// Fails with PERMISSION_DENIED unless the caller is an admin.
    pub fn require_admin(&self) -> Result<()> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(Error::PermissionDenied("this needs the ADMIN role".into()))
        }
    }
}
