//! The audit log's entries: what was done (a closed set of actions, stored by name), by whom,
//! to what, from where.

use crate::domain::UserId;
use chrono::{DateTime, Utc};
use std::net::IpAddr;

/// What an audit entry records. The stored names are part of the log's format: never rename
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A sign-in succeeded.
    SignIn,
    /// A sign-in failed (wrong email or password, a disabled account).
    SignInFailed,
    /// A sign-in was refused by the lockout.
    SignInLockedOut,
    /// A password reset was asked for (the email is in the details).
    PasswordResetRequested,
    /// A password was set with a reset token.
    PasswordReset,
    /// A user changed their own password.
    PasswordChanged,
    /// A rotated refresh token was presented again: its session was revoked.
    RefreshTokenReused,
    /// An admin created a user.
    UserCreated,
    /// An admin changed a user (the changed fields are in the details).
    UserUpdated,
    /// An admin changed a user's role.
    RoleChanged,
    /// An admin disabled a user.
    UserDisabled,
    /// An admin re-enabled a user.
    UserEnabled,
    /// An admin deleted a user.
    UserDeleted,
    /// An admin created a division.
    DivisionCreated,
    /// An admin renamed a division.
    DivisionRenamed,
    /// An admin deleted a division.
    DivisionDeleted,
    /// An admin added a user to a division.
    DivisionMemberAdded,
    /// An admin removed a user from a division.
    DivisionMemberRemoved,
    /// A new signing key was added (`epop keys rotate`).
    SigningKeyRotated,
    /// An admin changed the default notification preferences.
    NotificationDefaultsChanged,
    /// A user turned a second factor on.
    SecondFactorEnabled,
    /// A user turned their second factor off.
    SecondFactorDisabled,
    /// An admin removed a user's second factor.
    SecondFactorReset,
    /// A user replaced their recovery codes.
    RecoveryCodesRegenerated,
    /// An admin changed who must use a second factor.
    SignInPolicyChanged,
    /// A single sign-on identity was linked to an account (created or existing).
    SsoLinked,
    /// A single sign-on was refused (the reason is in the details).
    SsoRefused,
    /// A session was ended by its user or an admin.
    SessionEnded,
    /// A user registered a passkey.
    PasskeyAdded,
    /// A user removed a passkey.
    PasskeyRemoved,
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 30] = [
        Self::SignIn,
        Self::SignInFailed,
        Self::SignInLockedOut,
        Self::PasswordResetRequested,
        Self::PasswordReset,
        Self::PasswordChanged,
        Self::RefreshTokenReused,
        Self::UserCreated,
        Self::UserUpdated,
        Self::RoleChanged,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::UserDeleted,
        Self::DivisionCreated,
        Self::DivisionRenamed,
        Self::DivisionDeleted,
        Self::DivisionMemberAdded,
        Self::DivisionMemberRemoved,
        Self::SigningKeyRotated,
        Self::NotificationDefaultsChanged,
        Self::SecondFactorEnabled,
        Self::SecondFactorDisabled,
        Self::SecondFactorReset,
        Self::RecoveryCodesRegenerated,
        Self::SignInPolicyChanged,
        Self::SsoLinked,
        Self::SsoRefused,
        Self::SessionEnded,
        Self::PasskeyAdded,
        Self::PasskeyRemoved,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::SignInFailed => "sign_in_failed",
            Self::SignInLockedOut => "sign_in_locked_out",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::UserCreated => "user_created",
            Self::UserUpdated => "user_updated",
            Self::RoleChanged => "role_changed",
            Self::UserDisabled => "user_disabled",
            Self::UserEnabled => "user_enabled",
            Self::UserDeleted => "user_deleted",
            Self::DivisionCreated => "division_created",
            Self::DivisionRenamed => "division_renamed",
            Self::DivisionDeleted => "division_deleted",
            Self::DivisionMemberAdded => "division_member_added",
            Self::DivisionMemberRemoved => "division_member_removed",
            Self::SigningKeyRotated => "signing_key_rotated",
            Self::NotificationDefaultsChanged => "notification_defaults_changed",
            Self::SecondFactorEnabled => "second_factor_enabled",
            Self::SecondFactorDisabled => "second_factor_disabled",
            Self::SecondFactorReset => "second_factor_reset",
            Self::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            Self::SignInPolicyChanged => "sign_in_policy_changed",
            Self::SsoLinked => "sso_linked",
            Self::SsoRefused => "sso_refused",
            Self::SessionEnded => "session_ended",
            Self::PasskeyAdded => "passkey_added",
            Self::PasskeyRemoved => "passkey_removed",
        }
    }

    /// The action stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// An entry to append.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    /// What was done.
    pub action: Action,
    /// Who did it, when known.
    pub actor: Option<UserId>,
    /// What it was done to, e.g. `user:<uuid>`.
    pub target: Option<String>,
    /// The client's address, when known.
    pub client_ip: Option<IpAddr>,
    /// Anything else worth keeping (never a password or a token).
    pub details: serde_json::Value,
}

impl NewAuditEntry {
    /// `action` by `actor`, with no target, address or details yet.
    pub fn new(action: Action, actor: Option<UserId>) -> Self {
        Self {
            action,
            actor,
            target: None,
            client_ip: None,
            details: serde_json::json!({}),
        }
    }

    /// Done to user `user`.
    pub fn on_user(mut self, user: UserId) -> Self {
        self.target = Some(format!("user:{}", user.0));
        self
    }

    /// Done to `target`.
    pub fn on(mut self, target: String) -> Self {
        self.target = Some(target);
        self
    }

    /// From `ip`.
    pub fn from_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.client_ip = ip;
        self
    }

    /// With `details`.
    pub fn with(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// A stored entry.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Its position in the log.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// What (an [`Action`]'s name).
    pub action: String,
    /// Who, when known.
    pub actor: Option<UserId>,
    /// To what.
    pub target: Option<String>,
    /// From where.
    pub client_ip: Option<String>,
    /// The details.
    pub details: serde_json::Value,
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this action.
    pub action: Option<String>,
    /// Only by this actor.
    pub actor: Option<UserId>,
    /// Only on this target.
    pub target: Option<String>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_parses_back_from_its_stored_name() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("nope"), None);
    }
}
