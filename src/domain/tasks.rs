//! Validated values of tasks: ids, statuses, titles and due dates.

use crate::error::{Error, Result};
use chrono::NaiveDate;
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
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| Error::invalid(field, "must be a date as YYYY-MM-DD"))
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
