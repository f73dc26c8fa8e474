//! Typed ids and validated values: built once by `parse`, trusted everywhere after. No IO.

pub mod ai;
pub mod audit;
pub mod conversations;
pub mod files;
mod ids;
pub mod jobs;
pub mod notifications;
mod paging;
pub mod projects;
pub mod reactions;
mod rich_text;
pub mod security;
pub mod tasks;
pub mod threads;
pub mod users;
mod values;

pub use ids::{DivisionId, UserId, parse_uuid};
pub use paging::{Page, PageKey, PageSize, PageToken, year_in_range};
pub use projects::{Description, ProjectId, ProjectName, ProjectRole};
pub use rich_text::RichText;
pub use tasks::{TaskId, TaskStatus, TaskTitle, parse_date};
pub use values::{DisplayName, DivisionName, Email, Password, Role, SearchText};
