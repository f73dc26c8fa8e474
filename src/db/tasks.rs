//! Queries on `tasks`: insert, get, versioned update, delete, and filtered keyset listing.

pub use crate::domain::tasks::{Filter, NewTask, Sort, SortKey, Task, TaskChanges};
use crate::{
    db::schema::tasks,
    domain::{ProjectId, TaskId, TaskStatus, UserId},
    error::{Error, Result},
};
use chrono::{DateTime, NaiveDate, Utc};
use diesel::{
    dsl::{now, sql},
    prelude::*,
    sql_types::{Date, Integer},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Queryable, Selectable)]
#[diesel(table_name = tasks, check_for_backend(diesel::pg::Pg))]
struct Row {
    id: Uuid,
    project_id: Uuid,
    title: String,
    description: String,
    status: String,
    assignee_id: Option<Uuid>,
    due_date: Option<NaiveDate>,
    creator_id: Uuid,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Task {
    type Error = Error;
    fn try_from(r: Row) -> Result<Self> {
        Ok(Task {
            id: TaskId(r.id),
            project_id: ProjectId(r.project_id),
            title: r.title,
            description: r.description,
            status: TaskStatus::from_name(&r.status)
                .ok_or_else(|| Error::internal(format!("unknown task status {}", r.status)))?,
            assignee_id: r.assignee_id.map(UserId),
            due_date: r.due_date,
            creator_id: UserId(r.creator_id),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Inserts a task.
pub async fn insert(conn: &mut AsyncPgConnection, t: NewTask) -> Result<Task> {
    let row: Row = diesel::insert_into(tasks::table)
        .values((
            tasks::project_id.eq(t.project_id.0),
            tasks::title.eq(t.title.as_str()),
            tasks::description.eq(t.description.as_str()),
            tasks::status.eq(t.status.as_str()),
            tasks::assignee_id.eq(t.assignee_id.map(|u| u.0)),
            tasks::due_date.eq(t.due_date),
            tasks::creator_id.eq(t.creator_id.0),
        ))
        .returning(Row::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// One task, locked for the rest of the transaction when `lock`.
pub async fn get(conn: &mut AsyncPgConnection, id: TaskId, lock: bool) -> Result<Option<Task>> {
    let q = tasks::table.find(id.0).select(Row::as_select());
    let row: Option<Row> = if lock {
        q.for_update().first(conn).await.optional()?
    } else {
        q.first(conn).await.optional()?
    };
    row.map(Task::try_from).transpose()
}

/// Applies `changes` and bumps the version.
pub async fn update(conn: &mut AsyncPgConnection, id: TaskId, c: TaskChanges) -> Result<Task> {
    let row: Row = diesel::update(tasks::table.find(id.0))
        .set((
            tasks::version.eq(tasks::version + 1),
            tasks::updated_at.eq(now),
            c.title.as_ref().map(|t| tasks::title.eq(t.as_str())),
            c.description
                .as_ref()
                .map(|d| tasks::description.eq(d.as_str())),
            c.status.map(|s| tasks::status.eq(s.as_str())),
            c.assignee_id.map(|a| tasks::assignee_id.eq(a.map(|u| u.0))),
            c.due_date.map(|d| tasks::due_date.eq(d)),
        ))
        .returning(Row::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// Deletes a task.
pub async fn delete(conn: &mut AsyncPgConnection, id: TaskId) -> Result<()> {
    diesel::delete(tasks::table.find(id.0))
        .execute(conn)
        .await?;
    Ok(())
}

/// The position after which a page starts: the sort it belongs to, the last row's sort
/// value and id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The sort the token was made for.
    pub sort: Sort,
    /// The sort value of the last row.
    pub value: CursorValue,
    /// The id of the last row.
    pub id: Uuid,
}

impl crate::domain::PageKey for Cursor {
    fn in_range(&self) -> bool {
        use crate::domain::year_in_range;
        use chrono::Datelike;
        match &self.value {
            CursorValue::Time(t) => year_in_range(t.year()),
            CursorValue::Date(d) => year_in_range(d.year()),
            CursorValue::Text(_) | CursorValue::Rank(_) => true,
        }
    }
}

/// A sort value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CursorValue {
    /// A time.
    Time(DateTime<Utc>),
    /// A date.
    Date(NaiveDate),
    /// A text.
    Text(String),
    /// A rank.
    Rank(i32),
}

/// Tasks without a due date sort as if due on this day (last).
const NO_DUE_DATE: &str = "9999-12-31";

fn due_key() -> diesel::expression::SqlLiteral<Date> {
    sql::<Date>(&format!("coalesce(tasks.due_date, DATE '{NO_DUE_DATE}')"))
}

fn status_rank() -> diesel::expression::SqlLiteral<Integer> {
    let cases: String = TaskStatus::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| format!(" WHEN '{}' THEN {i}", s.as_str()))
        .collect();
    sql::<Integer>(&format!("(CASE tasks.status{cases} END)"))
}

/// The cursor after `t` in `sort`.
pub fn cursor_after(t: &Task, sort: Sort) -> Cursor {
    let value = match sort.key {
        SortKey::CreateTime => CursorValue::Time(t.created_at),
        SortKey::DueDate => CursorValue::Date(t.due_date.unwrap_or_else(|| {
            NaiveDate::parse_from_str(NO_DUE_DATE, "%Y-%m-%d").unwrap_or_default()
        })),
        SortKey::Title => CursorValue::Text(t.title.clone()),
        SortKey::Status => CursorValue::Rank(
            TaskStatus::ALL
                .iter()
                .position(|s| *s == t.status)
                .unwrap_or(0) as i32,
        ),
    };
    Cursor {
        sort,
        value,
        id: t.id.0,
    }
}

/// Up to `limit` tasks of a project, filtered and sorted, after `cursor`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    project: ProjectId,
    f: &Filter,
    sort: Sort,
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Task>> {
    let mut q = tasks::table
        .filter(tasks::project_id.eq(project.0))
        .select(Row::as_select())
        .into_boxed();
    if !f.statuses.is_empty() {
        q = q.filter(
            tasks::status.eq_any(f.statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
        );
    }
    if let Some(a) = f.assignee {
        q = q.filter(tasks::assignee_id.eq(a.0));
    }
    if let Some(d) = f.due_before {
        q = q.filter(tasks::due_date.le(d));
    }
    if let Some(d) = f.due_after {
        q = q.filter(tasks::due_date.ge(d));
    }
    if let Some(text) = &f.query {
        let p = crate::db::users::contains_pattern(text.as_str());
        q = q.filter(
            tasks::title
                .ilike(p.clone())
                .or(tasks::description.ilike(p)),
        );
    }
    // Keyset paging: rows strictly after (value, id) in the sort's direction.
    macro_rules! after {
        ($q:expr, $key:expr, $v:expr, $id:expr, $desc:expr) => {
            if $desc {
                $q.filter($key.lt($v.clone()).or($key.eq($v).and(tasks::id.lt($id))))
            } else {
                $q.filter($key.gt($v.clone()).or($key.eq($v).and(tasks::id.gt($id))))
            }
        };
    }
    if let Some(c) = cursor {
        let bad = || Error::invalid("page_token", "is not a token from a previous page");
        q = match (sort.key, c.value) {
            (SortKey::CreateTime, CursorValue::Time(v)) => {
                after!(q, tasks::created_at, v, c.id, sort.desc)
            }
            (SortKey::DueDate, CursorValue::Date(v)) => after!(q, due_key(), v, c.id, sort.desc),
            (SortKey::Title, CursorValue::Text(v)) => after!(q, tasks::title, v, c.id, sort.desc),
            (SortKey::Status, CursorValue::Rank(v)) => after!(q, status_rank(), v, c.id, sort.desc),
            _ => return Err(bad()),
        };
    }
    macro_rules! order {
        ($q:expr, $key:expr, $desc:expr) => {
            if $desc {
                $q.order(($key.desc(), tasks::id.desc()))
            } else {
                $q.order(($key.asc(), tasks::id.asc()))
            }
        };
    }
    q = match sort.key {
        SortKey::CreateTime => order!(q, tasks::created_at, sort.desc),
        SortKey::DueDate => order!(q, due_key(), sort.desc),
        SortKey::Title => order!(q, tasks::title, sort.desc),
        SortKey::Status => order!(q, status_rank(), sort.desc),
    };
    let rows: Vec<Row> = q.limit(limit).load(conn).await?;
    rows.into_iter().map(Task::try_from).collect()
}

/// Unassigns `user` from every task of a project (they left it); returns those tasks.
pub async fn unassign_all(
    conn: &mut AsyncPgConnection,
    project: ProjectId,
    user: UserId,
) -> Result<Vec<TaskId>> {
    let ids: Vec<Uuid> = diesel::update(
        tasks::table
            .filter(tasks::project_id.eq(project.0))
            .filter(tasks::assignee_id.eq(user.0)),
    )
    .set((
        tasks::assignee_id.eq(None::<Uuid>),
        tasks::version.eq(tasks::version + 1),
        tasks::updated_at.eq(now),
    ))
    .returning(tasks::id)
    .get_results(conn)
    .await?;
    Ok(ids.into_iter().map(TaskId).collect())
}
