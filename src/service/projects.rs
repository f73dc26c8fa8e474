//! Projects and their members, with these rules:
//!
//! | who | read | update | delete | members | tasks |
//! |---|---|---|---|---|---|
//! | not a member (and not admin) | NOT_FOUND | NOT_FOUND | NOT_FOUND | NOT_FOUND | NOT_FOUND |
//! | VIEWER | yes | no | no | leave only | read |
//! | MEMBER | yes | no | no | leave only | write |
//! | MANAGER | yes | yes | no | add/change/remove non-owners | write |
//! | OWNER, ADMIN | yes | yes | yes | everything | write |
//!
//! Forbidden actions on a visible project are PERMISSION_DENIED. A project always keeps at
//! least one owner: membership changes lock the project row and check it.

use crate::{
    auth::Caller,
    db::{
        self,
        projects::{Member, Project},
    },
    domain::{
        Description, Page, PageSize, PageToken, ProjectId, ProjectName, ProjectRole, Role,
        SearchText, UserId,
    },
    error::{Error, Result},
    realtime::{BoardChange, Published},
    service::State,
};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

/// The longest project description, in characters.
pub const MAX_DESCRIPTION: usize = 10_000;

/// What the caller may do in one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A system admin: everything, member or not.
    Admin,
    /// A member with this role.
    Member(ProjectRole),
}

impl Access {
    /// Owners, managers and admins manage the project and its members.
    pub fn can_manage(self) -> bool {
        matches!(
            self,
            Access::Admin | Access::Member(ProjectRole::Owner | ProjectRole::Manager)
        )
    }

    /// Owners and admins delete the project and manage owners.
    pub fn is_owner(self) -> bool {
        matches!(self, Access::Admin | Access::Member(ProjectRole::Owner))
    }

    /// Everyone but viewers writes tasks.
    pub fn can_write_tasks(self) -> bool {
        !matches!(self, Access::Member(ProjectRole::Viewer))
    }

    /// PERMISSION_DENIED unless `allowed`.
    pub fn require(allowed: bool, what: &str) -> Result<()> {
        if allowed {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "your project role does not allow {what}"
            )))
        }
    }
}

/// The caller's access to a project; NOT_FOUND when it does not exist or they may not see it.
pub async fn access(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    id: ProjectId,
) -> Result<Access> {
    match db::projects::access(conn, id, caller.user_id).await? {
        Some(Some(role)) => Ok(Access::Member(role)),
        Some(None) if caller.role == Role::Admin => Ok(Access::Admin),
        _ => Err(Error::NotFound("project")),
    }
}

/// The caller's projects (admins: all of them with `all`), by name.
pub async fn list(
    state: &State,
    caller: &Caller,
    all: bool,
    query: Option<SearchText>,
    size: PageSize,
    token: PageToken<(String, Uuid)>,
) -> Result<Page<Project>> {
    if all {
        caller.require_admin()?;
    }
    let mut conn = state.pool.get().await?;
    let rows = db::projects::list(
        &mut conn,
        caller.user_id,
        all,
        query.as_ref(),
        token.0,
        size.0 + 1,
    )
    .await?;
    Ok(Page::from_rows(rows, size, |p| (p.name.clone(), p.id.0)))
}

/// Creates a project owned by the caller.
pub async fn create(
    state: &State,
    caller: &Caller,
    name: ProjectName,
    description: Description,
) -> Result<Project> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let id = db::projects::insert(conn, &name, &description, caller.user_id).await?;
        db::projects::get(conn, id, caller.user_id).await
    })
    .await
}

/// One project.
pub async fn get(state: &State, caller: &Caller, id: ProjectId) -> Result<Project> {
    let mut conn = state.pool.get().await?;
    access(&mut conn, caller, id).await?;
    db::projects::get(&mut conn, id, caller.user_id).await
}

/// Renames or re-describes a project (managers, owners, admins).
pub async fn update(
    state: &State,
    caller: &Caller,
    id: ProjectId,
    name: Option<ProjectName>,
    description: Option<Description>,
) -> Result<Project> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        Access::require(
            access(conn, caller, id).await?.can_manage(),
            "editing the project",
        )?;
        db::projects::update(conn, id, name.as_ref(), description.as_ref()).await?;
        let event = project_changed(conn, id, &[]).await?;
        Ok((db::projects::get(conn, id, caller.user_id).await?, event))
    })
    .await
    .map(|(p, event)| published(state, p, event))
}

/// Deletes a project with its tasks and memberships (owners, admins).
pub async fn delete(state: &State, caller: &Caller, id: ProjectId) -> Result<()> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        Access::require(
            access(conn, caller, id).await?.is_owner(),
            "deleting the project",
        )?;
        let change = BoardChange::ProjectDeleted { project_id: id.0 };
        let event = board_event(conn, id, change, &[]).await?;
        db::projects::delete(conn, id).await?;
        Ok(event)
    })
    .await
    .map(|event| state.broker.publish(event))
}

/// The members.
pub async fn members(state: &State, caller: &Caller, id: ProjectId) -> Result<Vec<Member>> {
    let mut conn = state.pool.get().await?;
    access(&mut conn, caller, id).await?;
    db::projects::members(&mut conn, id).await
}

/// Adds an active user as a member. Only owners and admins add owners.
pub async fn add_member(
    state: &State,
    caller: &Caller,
    id: ProjectId,
    user: UserId,
    role: ProjectRole,
) -> Result<Member> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let me = access(conn, caller, id).await?;
        Access::require(me.can_manage(), "adding members")?;
        Access::require(role != ProjectRole::Owner || me.is_owner(), "adding owners")?;
        match db::users::get(conn, user).await? {
            Some(u) if !u.disabled => {}
            _ => return Err(Error::NotFound("user")),
        }
        db::projects::lock(conn, id).await?;
        db::projects::add_member(conn, id, user, role).await?;
        let event = project_changed(conn, id, &[]).await?;
        let name = match &event {
            Published::Board {
                change: crate::realtime::BoardChange::Project(p),
                ..
            } => p.name.clone(),
            _ => String::new(),
        };
        let to = crate::service::notifications::AddedTo::Project(id.0, &name);
        let told = crate::service::notifications::added(
            conn,
            state.notify,
            to,
            caller.user_id.0,
            &[user.0],
        )
        .await?;
        Ok((db::projects::member(conn, id, user).await?, event, told))
    })
    .await
    .map(|(m, event, told)| {
        crate::service::notifications::publish(&state.broker, told);
        published(state, m, event)
    })
}

/// Changes a member's role. Managers cannot touch owners or make owners; the last owner
/// cannot be demoted.
pub async fn set_role(
    state: &State,
    caller: &Caller,
    id: ProjectId,
    user: UserId,
    role: ProjectRole,
) -> Result<Member> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let me = access(conn, caller, id).await?;
        Access::require(me.can_manage(), "changing roles")?;
        db::projects::lock(conn, id).await?;
        let current = db::projects::member(conn, id, user).await?;
        let touches_owner = current.role == ProjectRole::Owner || role == ProjectRole::Owner;
        Access::require(!touches_owner || me.is_owner(), "changing owners")?;
        if current.role == ProjectRole::Owner && role != ProjectRole::Owner {
            keep_an_owner(conn, id).await?;
        }
        db::projects::set_role(conn, id, user, role).await?;
        Ok((
            db::projects::member(conn, id, user).await?,
            project_changed(conn, id, &[]).await?,
        ))
    })
    .await
    .map(|(m, event)| published(state, m, event))
}

/// Removes a member; anyone may leave. Managers cannot remove owners; the last owner cannot
/// be removed.
pub async fn remove_member(
    state: &State,
    caller: &Caller,
    id: ProjectId,
    user: UserId,
) -> Result<()> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let me = access(conn, caller, id).await?;
        let leaving = user == caller.user_id;
        Access::require(leaving || me.can_manage(), "removing members")?;
        db::projects::lock(conn, id).await?;
        let current = db::projects::member(conn, id, user).await?;
        if current.role == ProjectRole::Owner {
            Access::require(leaving || me.is_owner(), "removing owners")?;
            keep_an_owner(conn, id).await?;
        }
        db::projects::remove_member(conn, id, user).await?;
        // Their tasks become unassigned, and their reminders go with them.
        for task in db::tasks::unassign_all(conn, id, user).await? {
            crate::service::tasks::cancel_reminder(conn, task).await?;
        }
        project_changed(conn, id, &[user]).await
    })
    .await
    .map(|event| state.broker.publish(event))
}

/// What to publish once a change to a project's board commits: the change, for the
/// project's members now (and `also`, e.g. who was just removed).
pub(crate) async fn board_event(
    conn: &mut AsyncPgConnection,
    project: ProjectId,
    change: BoardChange,
    also: &[UserId],
) -> Result<Published> {
    let mut recipients: Vec<Uuid> = db::projects::members(conn, project)
        .await?
        .into_iter()
        .map(|m| m.user_id.0)
        .collect();
    recipients.extend(also.iter().map(|u| u.0));
    Ok(Published::Board {
        change,
        recipients: recipients.into(),
    })
}

/// Publishes `event` (committed by now) and passes `value` on.
fn published<T>(state: &State, value: T, event: Published) -> T {
    state.broker.publish(event);
    value
}

/// The project as everyone sees it (no viewer role), as a board change.
async fn project_changed(
    conn: &mut AsyncPgConnection,
    id: ProjectId,
    also: &[UserId],
) -> Result<Published> {
    let p = db::projects::get(conn, id, UserId(Uuid::nil())).await?;
    board_event(conn, id, BoardChange::Project(Box::new(p)), also).await
}

async fn keep_an_owner(conn: &mut AsyncPgConnection, id: ProjectId) -> Result<()> {
    if db::projects::owner_count(conn, id).await? <= 1 {
        return Err(Error::FailedPrecondition(
            "a project must keep at least one owner: make someone else an owner first".into(),
        ));
    }
    Ok(())
}
