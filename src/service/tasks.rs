//! Tasks: the work items of a project, with filters, keyset paging, optimistic concurrency
//! (etag = version) and due-date reminders sent through the jobs table.
//!
//! Who may do what follows the project's roles (see `service::projects`): members read,
//! everyone but viewers writes, outsiders get NOT_FOUND for a task whatever its id.

use crate::{
    auth::Caller,
    db::{
        self,
        jobs::Claimed,
        tasks::{Cursor, Filter, NewTask, Sort, Task, TaskChanges},
    },
    domain::{
        Page, PageSize, PageToken, ProjectId, TaskId, UserId,
        jobs::{self, Job},
        notifications::Kind,
    },
    error::{Error, Result},
    realtime::BoardChange,
    service::{
        JobDeps, State, notifications,
        projects::{Access, access, board_event},
    },
};
use chrono::{NaiveDate, NaiveTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

/// The longest task description, in characters.
pub const MAX_DESCRIPTION: usize = 20_000;

/// The caller's access to the project of a task; NOT_FOUND("task") when they may not see it.
async fn task_access(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    id: TaskId,
    lock: bool,
) -> Result<(Task, Access)> {
    let task = db::tasks::get(conn, id, lock)
        .await?
        .ok_or(Error::NotFound("task"))?;
    match access(conn, caller, task.project_id).await {
        Ok(a) => Ok((task, a)),
        Err(Error::NotFound(_)) => Err(Error::NotFound("task")),
        Err(e) => Err(e),
    }
}

/// INVALID_ARGUMENT unless `user` is a member of the project.
async fn require_member(
    conn: &mut AsyncPgConnection,
    project: ProjectId,
    user: Option<UserId>,
) -> Result<()> {
    if let Some(u) = user
        && !matches!(db::projects::access(conn, project, u).await?, Some(Some(_)))
    {
        return Err(Error::invalid(
            "assignee_id",
            "must be a member of the project",
        ));
    }
    Ok(())
}

/// A page of a project's tasks.
pub async fn list(
    state: &State,
    caller: &Caller,
    project: ProjectId,
    filter: Filter,
    sort: Sort,
    size: PageSize,
    token: PageToken<Cursor>,
) -> Result<Page<Task>> {
    if token.0.as_ref().is_some_and(|c| c.sort != sort) {
        return Err(Error::invalid(
            "page_token",
            "was made for another order_by",
        ));
    }
    let mut conn = state.pool.get().await?;
    access(&mut conn, caller, project).await?;
    let rows = db::tasks::list(&mut conn, project, &filter, sort, token.0, size.0 + 1).await?;
    Ok(Page::from_rows(rows, size, |t| {
        db::tasks::cursor_after(t, sort)
    }))
}

/// Creates a task (and its reminder).
pub async fn create(state: &State, caller: &Caller, new: NewTask) -> Result<Task> {
    let mut conn = state.pool.get().await?;
    let task = conn
        .transaction::<_, Error, _>(async |conn| {
            Access::require(
                access(conn, caller, new.project_id)
                    .await?
                    .can_write_tasks(),
                "writing tasks",
            )?;
            require_member(conn, new.project_id, new.assignee_id).await?;
            let task = db::tasks::insert(conn, new).await?;
            schedule_reminder(conn, state, &task).await?;
            let event = task_changed(conn, &task).await?;
            let actor = Some(caller.user_id.0);
            let told =
                notifications::task(conn, state.notify, Kind::TaskAssigned, &task, actor).await?;
            Ok((task, event, told))
        })
        .await?;
    state.wake_jobs.notify_one();
    state.broker.publish(task.1);
    notifications::publish(&state.broker, task.2);
    Ok(task.0)
}

/// One task.
pub async fn get(state: &State, caller: &Caller, id: TaskId) -> Result<Task> {
    let mut conn = state.pool.get().await?;
    Ok(task_access(&mut conn, caller, id, false).await?.0)
}

/// Updates a task. With `etag`, the update applies only to that version (ABORTED otherwise).
/// A new due date or assignee reschedules the reminder; closing the task cancels it.
pub async fn update(
    state: &State,
    caller: &Caller,
    id: TaskId,
    etag: Option<i64>,
    changes: TaskChanges,
) -> Result<Task> {
    let mut conn = state.pool.get().await?;
    let task = conn
        .transaction::<_, Error, _>(async |conn| {
            let (current, a) = task_access(conn, caller, id, true).await?;
            Access::require(a.can_write_tasks(), "writing tasks")?;
            if etag.is_some_and(|e| e != current.version) {
                return Err(Error::Aborted(
                    "the task was changed by someone else since you read it: reload it and retry"
                        .into(),
                ));
            }
            if let Some(assignee) = changes.assignee_id {
                require_member(conn, current.project_id, assignee).await?;
            }
            let task = db::tasks::update(conn, id, changes).await?;
            let reminder_changed = task.due_date != current.due_date
                || task.assignee_id != current.assignee_id
                || task.status.is_open() != current.status.is_open();
            if reminder_changed {
                schedule_reminder(conn, state, &task).await?;
            }
            let event = task_changed(conn, &task).await?;
            let kind = match task.assignee_id == current.assignee_id {
                true => Kind::TaskChanged,
                false => Kind::TaskAssigned,
            };
            let actor = Some(caller.user_id.0);
            let told = notifications::task(conn, state.notify, kind, &task, actor).await?;
            Ok((task, event, told))
        })
        .await?;
    state.wake_jobs.notify_one();
    state.broker.publish(task.1);
    notifications::publish(&state.broker, task.2);
    Ok(task.0)
}

/// Deletes a task (and its reminder).
pub async fn delete(state: &State, caller: &Caller, id: TaskId) -> Result<()> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let (task, a) = task_access(conn, caller, id, true).await?;
        Access::require(a.can_write_tasks(), "writing tasks")?;
        cancel_reminder(conn, id).await?;
        db::tasks::delete(conn, id).await?;
        let change = BoardChange::TaskDeleted {
            project_id: task.project_id.0,
            task_id: id.0,
        };
        board_event(conn, task.project_id, change, &[]).await
    })
    .await
    .map(|event| state.broker.publish(event))
}

/// The board event of a created or changed task, for the project's members.
async fn task_changed(
    conn: &mut AsyncPgConnection,
    task: &Task,
) -> Result<crate::realtime::Published> {
    board_event(
        conn,
        task.project_id,
        BoardChange::Task(Box::new(task.clone())),
        &[],
    )
    .await
}

/// Cancels a task's pending reminder.
pub async fn cancel_reminder(conn: &mut AsyncPgConnection, id: TaskId) -> Result<()> {
    db::jobs::cancel(conn, jobs::TASK_REMINDER, &Job::reminder_key(id.0)).await?;
    Ok(())
}

/// Replaces the task's pending reminder: one for an open task with a due date and an
/// assignee, `reminder_lead` before the start of the due day (UTC), at once if that is past.
/// A task already overdue gets none.
async fn schedule_reminder(conn: &mut AsyncPgConnection, state: &State, task: &Task) -> Result<()> {
    cancel_reminder(conn, task.id).await?;
    let (Some(assignee), Some(due)) = (task.assignee_id, task.due_date) else {
        return Ok(());
    };
    if !task.status.is_open() || due < Utc::now().date_naive() {
        return Ok(());
    }
    let due_at = due.and_time(NaiveTime::MIN).and_utc();
    let run_at = (due_at - state.reminder_lead).max(Utc::now());
    let job = Job::TaskReminder {
        task_id: task.id.0,
        assignee_id: assignee.0,
        due_date: due,
    };
    db::jobs::enqueue(conn, &job, Some(run_at)).await?;
    Ok(())
}

/// The job that emails a reminder to the assignee, if the task still matches what it was
/// scheduled for.
pub async fn send_reminder(
    deps: &JobDeps,
    job: &Claimed,
    task_id: Uuid,
    assignee_id: Uuid,
    due_date: NaiveDate,
) -> anyhow::Result<()> {
    let mut conn = deps.pool.get().await?;
    let Some(task) = db::tasks::get(&mut conn, TaskId(task_id), false).await? else {
        return Ok(());
    };
    let still = task.status.is_open()
        && task.due_date == Some(due_date)
        && task.assignee_id == Some(UserId(assignee_id));
    let Some(user) = db::users::get(&mut conn, UserId(assignee_id)).await? else {
        return Ok(());
    };
    if !still || user.disabled {
        return Ok(());
    }
    // In the inbox (and pushed) once, whatever the email's retries.
    if job.attempts == 1 {
        let told = conn
            .transaction::<_, Error, _>(async |conn| {
                notifications::task(conn, deps.notify, Kind::TaskDue, &task, None).await
            })
            .await?;
        notifications::publish(&deps.broker, told);
    }
    drop(conn);
    let body = format!(
        "Hello {},\n\nA task assigned to you is due on {}:\n\n  {}\n\nOpen EPOP to update it: {}/tasks/{}\n",
        user.display_name,
        due_date,
        task.title,
        deps.public_url.trim_end_matches('/'),
        task.id.0
    );
    let subject = format!("Reminder: \"{}\" is due {}", task.title, due_date);
    deps.mailer.send(job.id, &user.email, &subject, body).await
}
