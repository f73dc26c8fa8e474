//! Projects: ids, names, descriptions and project roles as validated values; the project and
//! its members as services and adapters see them.

use crate::{
    domain::UserId,
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The id of a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ProjectId(pub Uuid);

impl ProjectId {
    /// Parses a project id from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        super::parse_uuid(field, raw).map(Self)
    }
}

/// A member's role in one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ProjectRole {
    /// Full control, including deletion and managing owners.
    Owner,
    /// Manages members (not owners), the project and all tasks.
    Manager,
    /// Creates and edits tasks.
    Member,
    /// Reads only.
    Viewer,
}

impl ProjectRole {
    /// The name stored in `project_members.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "OWNER",
            Self::Manager => "MANAGER",
            Self::Member => "MEMBER",
            Self::Viewer => "VIEWER",
        }
    }

    /// The role stored as `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "OWNER" => Some(Self::Owner),
            "MANAGER" => Some(Self::Manager),
            "MEMBER" => Some(Self::Member),
            "VIEWER" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// Free text without NUL (which PostgreSQL cannot store), at most `max` characters.
fn text(field: &str, raw: &str, max: usize) -> Result<String> {
    if raw.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if raw.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL characters"));
    }
    Ok(raw.to_owned())
}

/// A project name: 1 to 200 characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectName(String);

impl ProjectName {
    /// Checks a project name from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        if s.chars().any(char::is_control) {
            return Err(Error::invalid(field, "must not contain control characters"));
        }
        text(field, s, 200).map(Self)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A description: up to a limit of characters, no NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// Checks a description of at most `max` characters from request field `field`.
    pub fn parse(field: &str, raw: &str, max: usize) -> Result<Self> {
        text(field, raw, max).map(Self)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A project, with its member count and the viewer's role in it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Project {
    /// The id.
    pub id: ProjectId,
    /// The name.
    pub name: String,
    /// The description.
    pub description: String,
    /// The creator.
    pub owner_id: UserId,
    /// The viewer's role, when the viewer is a member.
    pub my_role: Option<ProjectRole>,
    /// How many members it has.
    pub member_count: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A member of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The user.
    pub user_id: UserId,
    /// Their role.
    pub role: ProjectRole,
    /// Their display name.
    pub display_name: String,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_and_descriptions_are_bounded_and_nul_free() {
        assert_eq!(
            ProjectName::parse("name", "  Apollo ").unwrap().as_str(),
            "Apollo"
        );
        assert!(ProjectName::parse("name", " ").is_err());
        assert!(ProjectName::parse("name", &"x".repeat(201)).is_err());
        assert!(Description::parse("description", "a\0b", 10).is_err());
        assert!(Description::parse("description", "", 10).is_ok());
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for r in [
            ProjectRole::Owner,
            ProjectRole::Manager,
            ProjectRole::Member,
            ProjectRole::Viewer,
        ] {
            assert_eq!(ProjectRole::from_name(r.as_str()), Some(r));
        }
    }
}
