//! User accounts and divisions as the services and adapters see them, and the filters of a
//! user listing.

use crate::domain::{DivisionId, Role, SearchText, UserId};
use chrono::{DateTime, Utc};

/// A user account, with its role and divisions.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// The id.
    pub id: UserId,
    /// The lower-cased email address.
    pub email: String,
    /// The display name.
    pub display_name: String,
    /// The system-wide role.
    pub role: Role,
    /// The divisions, ascending.
    pub division_ids: Vec<DivisionId>,
    /// True when disabled by an admin.
    pub disabled: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Filters of a user listing.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Case-insensitive text the email or display name contains.
    pub query: Option<SearchText>,
    /// Only this role.
    pub role: Option<Role>,
    /// Only members of this division.
    pub division: Option<DivisionId>,
    /// Leave out disabled users.
    pub active_only: bool,
    /// The sort order.
    pub order: Order,
}

/// The order of a user listing, which is also its paging key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// By email, then id (admin listing).
    Email,
    /// By display name, then id (directory).
    DisplayName,
}

/// A division with its number of active members.
#[derive(Debug, Clone, PartialEq)]
pub struct Division {
    /// The id.
    pub id: DivisionId,
    /// The unique name.
    pub name: String,
    /// Active (not disabled, not deleted) members.
    pub member_count: i32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}
