//! Sign-in security values: the sessions a user sees, the sign-in policy, TOTP codes and
//! recovery codes as parsed from input.

use crate::{
    domain::{Role, UserId},
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A signed-in session, as its user (or an admin) sees it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The session (refresh-token family) id.
    pub id: Uuid,
    /// Its user.
    pub user: UserId,
    /// When it was signed in.
    pub created_at: DateTime<Utc>,
    /// When its refresh token was last used.
    pub last_used_at: DateTime<Utc>,
    /// When it ends at the latest.
    pub expires_at: DateTime<Utc>,
    /// The client's user agent.
    pub user_agent: String,
    /// The address it last came from.
    pub client_ip: Option<String>,
    /// How it signed in.
    pub method: String,
}

/// Where a sign-in comes from: kept with its session.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The user agent (clipped to [`ClientInfo::MAX_AGENT`] characters).
    pub user_agent: String,
    /// The client's address.
    pub ip: Option<std::net::IpAddr>,
}

impl ClientInfo {
    /// The most characters of a user agent kept.
    pub const MAX_AGENT: usize = 256;

    /// A client that said `user_agent`, from `ip`.
    pub fn new(user_agent: &str, ip: Option<std::net::IpAddr>) -> Self {
        Self {
            user_agent: user_agent.chars().take(Self::MAX_AGENT).collect(),
            ip,
        }
    }
}

/// A registered passkey, as its user sees it.
#[derive(Debug, Clone)]
pub struct PasskeyInfo {
    /// The credential id.
    pub id: Vec<u8>,
    /// The name its user gave it.
    pub name: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last signed in.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A passkey's name: 1 to 64 characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyName(String);

impl PasskeyName {
    /// The name in `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        let name = raw.trim();
        match name.chars().count() {
            0 => Err(Error::invalid(field, "is required")),
            1..=64 => Ok(Self(name.to_owned())),
            _ => Err(Error::invalid(field, "must be at most 64 characters")),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who must sign in with a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecondFactorPolicy {
    /// Nobody (a user may still turn it on).
    #[default]
    None,
    /// Admins.
    Admins,
    /// Everyone.
    Everyone,
}

impl SecondFactorPolicy {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Admins => "admins",
            Self::Everyone => "everyone",
        }
    }

    /// The policy named `value` in field `field`.
    pub fn parse(field: &str, value: &str) -> Result<Self> {
        match value {
            "none" | "" => Ok(Self::None),
            "admins" => Ok(Self::Admins),
            "everyone" => Ok(Self::Everyone),
            _ => Err(Error::invalid(field, "must be none, admins or everyone")),
        }
    }

    /// Whether it requires a second factor of someone with `role`.
    pub fn requires(self, role: Role) -> bool {
        match self {
            Self::None => false,
            Self::Admins => role == Role::Admin,
            Self::Everyone => true,
        }
    }
}

/// A second factor as given: a TOTP code or a recovery code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// Six digits from the authenticator.
    Code(String),
    /// A recovery code, normalised (upper case, no separators).
    Recovery(String),
    /// A passkey's assertion (`credential.toJSON()`, as JSON).
    Passkey(String),
}

impl Proof {
    /// The proof in `code`, `recovery_code` or `passkey_json` (exactly one of them); field
    /// errors name them.
    pub fn parse(code: &str, recovery_code: &str, passkey_json: &str) -> Result<Self> {
        if !passkey_json.trim().is_empty() {
            if !(code.trim().is_empty() && recovery_code.trim().is_empty()) {
                return Err(Error::invalid(
                    "passkey_json",
                    "give one of code, recovery_code and passkey_json",
                ));
            }
            return Ok(Self::Passkey(passkey_json.to_owned()));
        }
        match (code.trim(), recovery_code.trim()) {
            ("", "") => Err(Error::invalid("code", "is required (or recovery_code)")),
            (c, "") => Self::code("code", c),
            ("", r) => {
                let r: String = r
                    .chars()
                    .filter(|c| !matches!(c, '-' | ' '))
                    .map(|c| c.to_ascii_uppercase())
                    .collect();
                if r.len() != RECOVERY_CODE_LEN || !r.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(Error::invalid(
                        "recovery_code",
                        "must be 16 letters and digits",
                    ));
                }
                Ok(Self::Recovery(r))
            }
            _ => Err(Error::invalid(
                "recovery_code",
                "give either code or recovery_code, not both",
            )),
        }
    }

    /// A six-digit TOTP code in `field`.
    pub fn code(field: &str, code: &str) -> Result<Self> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid(field, "must be 6 digits"));
        }
        Ok(Self::Code(code.to_owned()))
    }

    /// How a second step with this proof is named in sessions and the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Code(_) => "totp",
            Self::Recovery(_) => "recovery_code",
            Self::Passkey(_) => "passkey",
        }
    }
}

/// The characters of a recovery code (base32: 80 bits).
pub const RECOVERY_CODE_LEN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_are_six_digits_or_a_sixteen_character_recovery_code() {
        assert_eq!(
            Proof::parse(" 123456 ", "", "").unwrap(),
            Proof::Code("123456".into())
        );
        assert_eq!(
            Proof::parse("", "abcd-efgh-ijkl-mnop", "").unwrap(),
            Proof::Recovery("ABCDEFGHIJKLMNOP".into())
        );
        for (c, r) in [("12345", ""), ("12345a", ""), ("", "short"), ("", "")] {
            assert!(Proof::parse(c, r, "").is_err(), "{c:?} {r:?}");
        }
        assert!(Proof::parse("123456", "ABCDEFGHIJKLMNOP", "").is_err());
        assert!(Proof::parse("123456", "", "{}").is_err());
    }

    #[test]
    fn the_policy_covers_admins_or_everyone() {
        let admins = SecondFactorPolicy::parse("p", "admins").unwrap();
        assert!(admins.requires(Role::Admin) && !admins.requires(Role::User));
        assert!(SecondFactorPolicy::Everyone.requires(Role::User));
        assert!(SecondFactorPolicy::parse("p", "all").is_err());
    }
}
