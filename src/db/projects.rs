//! Queries on `projects` and `project_members`.

pub use crate::domain::projects::{Member, Project};
use crate::{
    db::schema::{project_members, projects, users},
    domain::{Description, ProjectId, ProjectName, ProjectRole, SearchText, UserId},
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

type Row = (Uuid, String, String, Uuid, DateTime<Utc>, DateTime<Utc>);

const COLUMNS: (
    projects::id,
    projects::name,
    projects::description,
    projects::owner_id,
    projects::created_at,
    projects::updated_at,
) = (
    projects::id,
    projects::name,
    projects::description,
    projects::owner_id,
    projects::created_at,
    projects::updated_at,
);

fn role(name: &str) -> Result<ProjectRole> {
    ProjectRole::from_name(name)
        .ok_or_else(|| Error::internal(format!("unknown project role {name}")))
}

/// Completes rows with member counts and the viewer's role.
async fn complete(
    conn: &mut AsyncPgConnection,
    rows: Vec<Row>,
    viewer: UserId,
) -> Result<Vec<Project>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let counts: Vec<(Uuid, i64)> = project_members::table
        .filter(project_members::project_id.eq_any(&ids))
        .group_by(project_members::project_id)
        .select((project_members::project_id, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    let mine: Vec<(Uuid, String)> = project_members::table
        .filter(project_members::project_id.eq_any(&ids))
        .filter(project_members::user_id.eq(viewer.0))
        .select((project_members::project_id, project_members::role))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|(id, name, description, owner, created_at, updated_at)| {
            let my_role = match mine.iter().find(|(p, _)| *p == id) {
                Some((_, r)) => Some(role(r)?),
                None => None,
            };
            Ok(Project {
                id: ProjectId(id),
                name,
                description,
                owner_id: UserId(owner),
                my_role,
                member_count: counts.iter().find(|(p, _)| *p == id).map_or(0, |(_, n)| *n),
                created_at,
                updated_at,
            })
        })
        .collect()
}

/// Creates a project with its creator as the only member, an OWNER.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    name: &ProjectName,
    description: &Description,
    owner: UserId,
) -> Result<ProjectId> {
    let id: Uuid = diesel::insert_into(projects::table)
        .values((
            projects::name.eq(name.as_str()),
            projects::description.eq(description.as_str()),
            projects::owner_id.eq(owner.0),
        ))
        .returning(projects::id)
        .get_result(conn)
        .await?;
    add_member(conn, ProjectId(id), owner, ProjectRole::Owner).await?;
    Ok(ProjectId(id))
}

/// True when the project exists; locks its row until the transaction ends, so membership
/// changes of one project are serialised (the last-owner rule depends on it).
pub async fn lock(conn: &mut AsyncPgConnection, id: ProjectId) -> Result<bool> {
    let found: Option<Uuid> = projects::table
        .find(id.0)
        .select(projects::id)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    Ok(found.is_some())
}

/// Whether the project exists, and the user's role in it.
pub async fn access(
    conn: &mut AsyncPgConnection,
    id: ProjectId,
    user: UserId,
) -> Result<Option<Option<ProjectRole>>> {
    let found: Option<(Uuid, Option<String>)> = projects::table
        .left_join(
            project_members::table.on(project_members::project_id
                .eq(projects::id)
                .and(project_members::user_id.eq(user.0))),
        )
        .filter(projects::id.eq(id.0))
        .select((projects::id, project_members::role.nullable()))
        .first(conn)
        .await
        .optional()?;
    match found {
        None => Ok(None),
        Some((_, None)) => Ok(Some(None)),
        Some((_, Some(r))) => Ok(Some(Some(role(&r)?))),
    }
}

/// One project as `viewer` sees it.
pub async fn get(conn: &mut AsyncPgConnection, id: ProjectId, viewer: UserId) -> Result<Project> {
    let row: Row = projects::table
        .find(id.0)
        .select(COLUMNS)
        .first(conn)
        .await
        .optional()?
        .ok_or(Error::NotFound("project"))?;
    complete(conn, vec![row], viewer)
        .await?
        .pop()
        .ok_or(Error::NotFound("project"))
}

/// Up to `limit` projects by name, after (name, id): the viewer's own, or all of them.
pub async fn list(
    conn: &mut AsyncPgConnection,
    viewer: UserId,
    all: bool,
    query: Option<&SearchText>,
    after: Option<(String, Uuid)>,
    limit: i64,
) -> Result<Vec<Project>> {
    let mut q = projects::table.select(COLUMNS).into_boxed();
    if !all {
        q = q.filter(
            projects::id.eq_any(
                project_members::table
                    .filter(project_members::user_id.eq(viewer.0))
                    .select(project_members::project_id),
            ),
        );
    }
    if let Some(text) = query {
        let p = crate::db::users::contains_pattern(text.as_str());
        q = q.filter(
            projects::name
                .ilike(p.clone())
                .or(projects::description.ilike(p)),
        );
    }
    if let Some((name, id)) = after {
        q = q.filter(
            projects::name
                .gt(name.clone())
                .or(projects::name.eq(name).and(projects::id.gt(id))),
        );
    }
    let rows: Vec<Row> = q
        .order((projects::name, projects::id))
        .limit(limit)
        .load(conn)
        .await?;
    complete(conn, rows, viewer).await
}

/// Changes the name and/or description.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: ProjectId,
    name: Option<&ProjectName>,
    description: Option<&Description>,
) -> Result<()> {
    diesel::update(projects::table.find(id.0))
        .set((
            projects::updated_at.eq(now),
            name.map(|n| projects::name.eq(n.as_str())),
            description.map(|d| projects::description.eq(d.as_str())),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes a project; its tasks and memberships go with it (foreign keys cascade).
pub async fn delete(conn: &mut AsyncPgConnection, id: ProjectId) -> Result<()> {
    diesel::delete(projects::table.find(id.0))
        .execute(conn)
        .await?;
    Ok(())
}

/// The members, by display name.
pub async fn members(conn: &mut AsyncPgConnection, id: ProjectId) -> Result<Vec<Member>> {
    let rows: Vec<(Uuid, String, String, DateTime<Utc>)> = project_members::table
        .inner_join(users::table)
        .filter(project_members::project_id.eq(id.0))
        .order((users::display_name, users::id))
        .select((
            project_members::user_id,
            project_members::role,
            users::display_name,
            project_members::created_at,
        ))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|(u, r, display_name, joined_at)| {
            Ok(Member {
                user_id: UserId(u),
                role: role(&r)?,
                display_name,
                joined_at,
            })
        })
        .collect()
}

/// One member.
pub async fn member(conn: &mut AsyncPgConnection, id: ProjectId, user: UserId) -> Result<Member> {
    members(conn, id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user)
        .ok_or(Error::NotFound("member"))
}

/// Adds a member; ALREADY_EXISTS when they are one.
pub async fn add_member(
    conn: &mut AsyncPgConnection,
    id: ProjectId,
    user: UserId,
    role: ProjectRole,
) -> Result<()> {
    diesel::insert_into(project_members::table)
        .values((
            project_members::project_id.eq(id.0),
            project_members::user_id.eq(user.0),
            project_members::role.eq(role.as_str()),
        ))
        .execute(conn)
        .await
        .map_err(|e| {
            crate::error::on_unique(e, "project_members_pkey", "the user is already a member")
        })?;
    Ok(())
}

/// Changes a member's role.
pub async fn set_role(
    conn: &mut AsyncPgConnection,
    id: ProjectId,
    user: UserId,
    role: ProjectRole,
) -> Result<()> {
    diesel::update(
        project_members::table
            .filter(project_members::project_id.eq(id.0))
            .filter(project_members::user_id.eq(user.0)),
    )
    .set(project_members::role.eq(role.as_str()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes a member.
pub async fn remove_member(
    conn: &mut AsyncPgConnection,
    id: ProjectId,
    user: UserId,
) -> Result<()> {
    diesel::delete(
        project_members::table
            .filter(project_members::project_id.eq(id.0))
            .filter(project_members::user_id.eq(user.0)),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How many owners the project has.
pub async fn owner_count(conn: &mut AsyncPgConnection, id: ProjectId) -> Result<i64> {
    project_members::table
        .filter(project_members::project_id.eq(id.0))
        .filter(project_members::role.eq(ProjectRole::Owner.as_str()))
        .count()
        .get_result(conn)
        .await
        .map_err(Into::into)
}
