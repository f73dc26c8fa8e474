//! Tasks: ids, statuses, titles and due dates as validated values; the task as services and
//! adapters see it, its creation, changes, listing filters and sorts.

use crate::{
    domain::{Description, ProjectId, SearchText, UserId},
    error::{Error, Result},
};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TaskId(pub Uuid);

impl TaskId {
    /// Parses a task id from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        super::parse_uuid(field, raw).map(Self)
    }
}

/// Where a task stands; the names are those of `tasks.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TaskStatus {
    /// Not started.
    Todo,
    /// Being worked on.
    InProgress,
    /// Waiting for review.
    InReview,
    /// Finished.
    Done,
    /// Dropped.
    Cancelled,
}

impl TaskStatus {
    /// Every status, in workflow order (the order of `order_by=status`).
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Todo,
        TaskStatus::InProgress,
        TaskStatus::InReview,
        TaskStatus::Done,
        TaskStatus::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Todo => "TODO",
            Self::InProgress => "IN_PROGRESS",
            Self::InReview => "IN_REVIEW",
            Self::Done => "DONE",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// The status stored as `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True while the task still needs doing (reminders apply).
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Done | Self::Cancelled)
    }
}

/// A task title: 1 to 300 characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTitle(String);

impl TaskTitle {
    /// Checks a title from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        if s.chars().count() > 300 {
            return Err(Error::invalid(field, "must be at most 300 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(Error::invalid(field, "must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The title.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A date as `YYYY-MM-DD` from request field `field`; empty is `None`.
pub fn parse_date(field: &str, raw: &str) -> Result<Option<NaiveDate>> {
    if raw.is_empty() {
        return Ok(None);
    }
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(d) if crate::domain::year_in_range(d.year()) => Ok(Some(d)),
        Ok(_) => Err(Error::invalid(
            field,
            "must be a date from 0001-01-01 to 9999-12-31",
        )),
        Err(_) => Err(Error::invalid(field, "must be a date as YYYY-MM-DD")),
    }
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The id.
    pub id: TaskId,
    /// Its project.
    pub project_id: ProjectId,
    /// The title.
    pub title: String,
    /// The description.
    pub description: String,
    /// The status.
    pub status: TaskStatus,
    /// The assignee, if any.
    pub assignee_id: Option<UserId>,
    /// The due date, if any.
    pub due_date: Option<NaiveDate>,
    /// Who created it.
    pub creator_id: UserId,
    /// Bumped by every update: the etag.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A task to create.
#[derive(Debug)]
pub struct NewTask {
    /// Its project.
    pub project_id: ProjectId,
    /// The title.
    pub title: TaskTitle,
    /// The description.
    pub description: Description,
    /// The status.
    pub status: TaskStatus,
    /// The assignee.
    pub assignee_id: Option<UserId>,
    /// The due date.
    pub due_date: Option<NaiveDate>,
    /// Who creates it.
    pub creator_id: UserId,
}

/// Changes to a task; `None` leaves a column as it is.
#[derive(Debug, Default)]
pub struct TaskChanges {
    /// A new title.
    pub title: Option<TaskTitle>,
    /// A new description.
    pub description: Option<Description>,
    /// A new status.
    pub status: Option<TaskStatus>,
    /// A new assignee (`Some(None)` unassigns).
    pub assignee_id: Option<Option<UserId>>,
    /// A new due date (`Some(None)` clears it).
    pub due_date: Option<Option<NaiveDate>>,
}

/// The sort of a listing (always followed by the id, so the order is total and stable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortKey {
    /// Creation time.
    CreateTime,
    /// Due date, tasks without one last.
    DueDate,
    /// Title.
    Title,
    /// Workflow order of the status.
    Status,
}

/// A sort: key and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sort {
    /// The key.
    pub key: SortKey,
    /// Descending when true.
    pub desc: bool,
}

/// Filters of a listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Any of these statuses (all when empty).
    pub statuses: Vec<TaskStatus>,
    /// Assigned to this user.
    pub assignee: Option<UserId>,
    /// Due on or before.
    pub due_before: Option<NaiveDate>,
    /// Due on or after.
    pub due_after: Option<NaiveDate>,
    /// Title or description contains.
    pub query: Option<SearchText>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_iso_days_or_empty() {
        assert_eq!(parse_date("due_date", "").unwrap(), None);
        assert_eq!(
            parse_date("due_date", "2026-12-01").unwrap(),
            NaiveDate::from_ymd_opt(2026, 12, 1)
        );
        assert!(parse_date("due_date", "2026-13-01").is_err());
        assert!(parse_date("due_date", "tomorrow").is_err());
        assert!(parse_date("due_date", "-5000-01-01").is_err());
        assert!(parse_date("due_date", "0000-12-31").is_err());
        assert!(parse_date("due_date", "9999-12-31").is_ok());
    }

    #[test]
    fn statuses_round_trip_and_only_done_or_cancelled_are_closed() {
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::from_name(s.as_str()), Some(s));
        }
        assert!(TaskStatus::InReview.is_open() && !TaskStatus::Done.is_open());
    }

    #[test]
    fn titles_are_required_and_bounded() {
        assert!(TaskTitle::parse("title", " ").is_err());
        assert!(TaskTitle::parse("title", &"x".repeat(301)).is_err());
        assert_eq!(
            TaskTitle::parse("title", " Ship ").unwrap().as_str(),
            "Ship"
        );
    }
}
