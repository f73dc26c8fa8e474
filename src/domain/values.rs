//! Validated values: email addresses, passwords, names and roles.

use crate::error::{Error, Result};
use secrecy::SecretString;

/// A syntactically valid, lower-cased email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Trims, lower-cases and checks an address from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        if s.len() > 254 {
            return Err(Error::invalid(field, "must be at most 254 characters"));
        }
        let valid = match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if !valid {
            return Err(Error::invalid(field, "must be an email address"));
        }
        Ok(Self(s))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`, used as a default display name.
    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or(&self.0)
    }
}

/// A new password: 8 to 256 characters. Kept secret so it never reaches a log.
pub struct Password(SecretString);

impl Password {
    /// The shortest accepted password, in characters.
    pub const MIN_CHARS: usize = 8;
    /// The longest accepted password, in characters (bounds hashing work).
    pub const MAX_CHARS: usize = 256;

    /// Checks a new password from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        let n = raw.chars().count();
        if n < Self::MIN_CHARS {
            return Err(Error::invalid(field, "must be at least 8 characters"));
        }
        if n > Self::MAX_CHARS {
            return Err(Error::invalid(field, "must be at most 256 characters"));
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }

    /// The secret.
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

fn parse_name(field: &str, raw: &str, max: usize) -> Result<String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if s.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(s.to_owned())
}

/// A display name: 1 to 100 characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Checks a display name from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        parse_name(field, raw, 100).map(Self)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A division name: 1 to 100 characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DivisionName(String);

impl DivisionName {
    /// Checks a division name from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        parse_name(field, raw, 100).map(Self)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Search text for a listing: trimmed, at most 200 characters, no control characters;
/// `None` when blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText(String);

impl SearchText {
    /// Checks optional search text from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Option<Self>> {
        if raw.trim().is_empty() {
            return Ok(None);
        }
        parse_name(field, raw, 200).map(|s| Some(Self(s)))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A system-wide role; the names are those of the `roles` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// May manage users, roles and divisions.
    Admin,
    /// A regular user.
    User,
}

impl Role {
    /// The name in the `roles` table and in access tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::User => "USER",
        }
    }

    /// The role named `name` in the `roles` table.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ADMIN" => Some(Role::Admin),
            "USER" => Some(Role::User),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        let e = Email::parse("email", "  Ada@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "ada@example.com");
        assert_eq!(e.local_part(), "ada");
    }

    #[test]
    fn malformed_emails_name_the_field() {
        for bad in ["", "ada", "@x.org", "ada@", "a b@x.org", "a@b@c", "a@.x"] {
            match Email::parse("email", bad) {
                Err(Error::InvalidArgument(v)) => assert_eq!(v[0].field, "email", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn passwords_must_be_8_to_256_characters() {
        assert!(Password::parse("p", "short").is_err());
        assert!(Password::parse("p", "long enough").is_ok());
        assert!(Password::parse("p", &"x".repeat(257)).is_err());
    }

    #[test]
    fn search_text_is_optional_and_rejects_control_characters() {
        assert_eq!(SearchText::parse("query", "  ").unwrap(), None);
        assert_eq!(
            SearchText::parse("query", " ab ")
                .unwrap()
                .unwrap()
                .as_str(),
            "ab"
        );
        assert!(SearchText::parse("query", "a\u{0}b").is_err());
    }

    #[test]
    fn names_reject_blank_and_control_characters() {
        assert!(DisplayName::parse("n", "   ").is_err());
        assert!(DisplayName::parse("n", "a\u{0}b").is_err());
        assert_eq!(DisplayName::parse("n", " Ada ").unwrap().as_str(), "Ada");
    }
}
