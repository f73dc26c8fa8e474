//! Wire forms of projects, their members and tasks, and their roles and statuses.

use super::timestamp;
use crate::{
    domain::{
        ProjectId, ProjectRole, TaskStatus,
        projects::{Member, Project},
        tasks::Task,
    },
    error::{Error, Result},
    pb,
};

/// The wire form of a project role.
pub fn project_role_to_pb(r: ProjectRole) -> pb::ProjectRole {
    match r {
        ProjectRole::Owner => pb::ProjectRole::Owner,
        ProjectRole::Manager => pb::ProjectRole::Manager,
        ProjectRole::Member => pb::ProjectRole::Member,
        ProjectRole::Viewer => pb::ProjectRole::Viewer,
    }
}

/// A project role from request field `field`; unspecified is `None`.
pub fn project_role_from_pb(field: &str, raw: i32) -> Result<Option<ProjectRole>> {
    match pb::ProjectRole::try_from(raw) {
        Ok(pb::ProjectRole::Unspecified) => Ok(None),
        Ok(pb::ProjectRole::Owner) => Ok(Some(ProjectRole::Owner)),
        Ok(pb::ProjectRole::Manager) => Ok(Some(ProjectRole::Manager)),
        Ok(pb::ProjectRole::Member) => Ok(Some(ProjectRole::Member)),
        Ok(pb::ProjectRole::Viewer) => Ok(Some(ProjectRole::Viewer)),
        Err(_) => Err(Error::invalid(field, "is not a known project role")),
    }
}

/// The wire form of a project.
pub fn project(p: Project) -> pb::Project {
    pb::Project {
        id: p.id.0.to_string(),
        name: p.name,
        description: p.description,
        owner_id: p.owner_id.0.to_string(),
        my_role: p
            .my_role
            .map_or(pb::ProjectRole::Unspecified, project_role_to_pb)
            .into(),
        member_count: i32::try_from(p.member_count).unwrap_or(i32::MAX),
        create_time: Some(timestamp(p.created_at)),
        update_time: Some(timestamp(p.updated_at)),
    }
}

pub fn member(project_id: ProjectId, m: Member) -> pb::ProjectMember {
    pb::ProjectMember {
        project_id: project_id.0.to_string(),
        user_id: m.user_id.0.to_string(),
        role: project_role_to_pb(m.role).into(),
        display_name: m.display_name,
        join_time: Some(timestamp(m.joined_at)),
    }
}

pub fn status_to_pb(s: TaskStatus) -> pb::TaskStatus {
    match s {
        TaskStatus::Todo => pb::TaskStatus::Todo,
        TaskStatus::InProgress => pb::TaskStatus::InProgress,
        TaskStatus::InReview => pb::TaskStatus::InReview,
        TaskStatus::Done => pb::TaskStatus::Done,
        TaskStatus::Cancelled => pb::TaskStatus::Cancelled,
    }
}

/// A status from request field `field`; unspecified is `None`.
pub fn status_from_pb(field: &str, raw: i32) -> Result<Option<TaskStatus>> {
    Ok(match pb::TaskStatus::try_from(raw) {
        Ok(pb::TaskStatus::Unspecified) => None,
        Ok(pb::TaskStatus::Todo) => Some(TaskStatus::Todo),
        Ok(pb::TaskStatus::InProgress) => Some(TaskStatus::InProgress),
        Ok(pb::TaskStatus::InReview) => Some(TaskStatus::InReview),
        Ok(pb::TaskStatus::Done) => Some(TaskStatus::Done),
        Ok(pb::TaskStatus::Cancelled) => Some(TaskStatus::Cancelled),
        Err(_) => return Err(Error::invalid(field, "is not a known task status")),
    })
}

/// The wire form of a task.
pub fn task(t: Task) -> pb::Task {
    pb::Task {
        id: t.id.0.to_string(),
        project_id: t.project_id.0.to_string(),
        title: t.title,
        description: t.description,
        status: status_to_pb(t.status).into(),
        assignee_id: t.assignee_id.map(|u| u.0.to_string()).unwrap_or_default(),
        due_date: t.due_date.map(|d| d.to_string()).unwrap_or_default(),
        creator_id: t.creator_id.0.to_string(),
        etag: t.version.to_string(),
        create_time: Some(timestamp(t.created_at)),
        update_time: Some(timestamp(t.updated_at)),
    }
}
