//! Notifications: what is notable becomes a notification for each person concerned (in the
//! transaction of the change, or by the job that reads a conversation's events), listed in
//! their inbox and told live to their streams; a push job is queued for those who want
//! pushes and have a device. Reading the inbox, or the messages themselves, clears them on
//! every device.

pub mod devices;
pub mod produce;
pub mod push;
pub mod settings;

use crate::{
    auth::Caller,
    db,
    domain::{
        Page, PageSize, PageToken,
        jobs::Job,
        notifications::{Change, Kind, NewNotification, Notification, Read},
    },
    error::{Error, Result},
    realtime::{Broker, Published},
    service::State,
};
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use std::{collections::BTreeSet, time::Duration};
use uuid::Uuid;

/// The most notifications one MarkNotificationsRead names.
pub const MAX_MARKED: usize = 500;

/// How long a read notification stays in the inbox.
pub const KEPT_READ: Duration = Duration::from_secs(30 * 24 * 3600);

/// When notifications are pushed and emailed.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A notification waits this long before it is pushed (`EPOP_PUSH_DELAY`).
    pub push: Duration,
    /// It waits this long for the email digest (`EPOP_DIGEST_DELAY`).
    pub digest: Duration,
}

/// Stores `new` in the caller's transaction, as each user's preferences say (the inbox; a
/// push job due after `timing.push` for those who want pushes of its kind and have a device,
/// one pending job per user and topic collecting the rest; the user's email digest for
/// those who want it by email). Answers the notifications to tell live (those shown in the
/// inbox), to [`publish`] after commit.
pub async fn record(
    conn: &mut AsyncPgConnection,
    new: Vec<NewNotification>,
    timing: Timing,
) -> Result<Vec<Notification>> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let users: Vec<Uuid> = new
        .iter()
        .map(|n| n.user_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let settings = db::preferences::settings_of(conn, &users).await?;
    // The channels `user` wants for `kind` (everyone has settings in force: theirs or the
    // admin's default).
    let wants = |user: &Uuid, kind: Kind| {
        settings
            .get(user)
            .map_or_else(|| kind.default_channels(), |s| s.channels(kind))
    };
    let rows: Vec<(NewNotification, bool)> = new
        .into_iter()
        .map(|n| {
            let in_app = wants(&n.user_id, n.kind).in_app;
            (n, in_app)
        })
        .collect();
    let stored = db::notifications::insert(conn, &rows).await?;
    let wanting: Vec<Uuid> = stored
        .iter()
        .filter(|n| wants(&n.user_id, n.kind).push)
        .map(|n| n.user_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let devices = db::push::with_devices(conn, &wanting).await?;
    let (pushed, silent): (Vec<&Notification>, Vec<&Notification>) = stored
        .iter()
        .partition(|n| devices.contains(&n.user_id) && wants(&n.user_id, n.kind).push);
    let silent: Vec<Uuid> = silent.iter().map(|n| n.id).collect();
    if !silent.is_empty() {
        db::notifications::set_pushed(conn, &silent).await?;
    }
    let jobs: BTreeSet<(Uuid, Uuid)> = pushed.iter().map(|n| (n.user_id, n.topic)).collect();
    let jobs: Vec<Job> = jobs
        .into_iter()
        .map(|(user_id, topic)| Job::Push { user_id, topic })
        .collect();
    if !jobs.is_empty() {
        let at = Utc::now() + timing.push;
        let queued = db::jobs::enqueue_once(conn, &jobs, at).await?;
        // A pending push of the same topic will carry them: collapsed.
        metrics::counter!("epop_notifications_collapsed_total")
            .increment((jobs.len() - queued) as u64);
    }
    let emailed: BTreeSet<Uuid> = stored
        .iter()
        .filter(|n| wants(&n.user_id, n.kind).email)
        .map(|n| n.user_id)
        .collect();
    if !emailed.is_empty() {
        let digests: Vec<Job> = emailed
            .into_iter()
            .map(|user_id| Job::MessageDigest { user_id })
            .collect();
        db::jobs::enqueue_once(conn, &digests, Utc::now() + timing.digest).await?;
    }
    for n in &stored {
        metrics::counter!("epop_notifications_created_total", "kind" => n.kind.as_str())
            .increment(1);
    }
    Ok(stored
        .into_iter()
        .filter(|n| wants(&n.user_id, n.kind).in_app)
        .collect())
}

/// Tells each notification's user's streams, on every instance.
pub fn publish(broker: &Broker, stored: Vec<Notification>) {
    for n in stored {
        broker.publish(Published::Inbox {
            recipients: vec![n.user_id].into(),
            change: Change::New(Box::new(n)),
        });
    }
}

/// A page of the caller's inbox, newest first, and how many are unread.
pub async fn list(
    state: &State,
    caller: &Caller,
    unread_only: bool,
    size: PageSize,
    token: PageToken<(DateTime<Utc>, Uuid)>,
) -> Result<(Page<Notification>, i64)> {
    let user = caller.user_id.0;
    let mut conn = state.pool.get().await?;
    let rows = db::notifications::list(&mut conn, user, unread_only, token.0, size.0 + 1).await?;
    let unread = db::notifications::unread(&mut conn, user).await?;
    Ok((
        Page::from_rows(rows, size, |n| (n.created_at, n.id)),
        unread,
    ))
}

/// Marks the caller's notifications read (`ids`, or all); their streams are told. Answers
/// how many stay unread.
pub async fn mark_read(state: &State, caller: &Caller, ids: Option<Vec<Uuid>>) -> Result<i64> {
    if ids.as_ref().is_some_and(|ids| ids.len() > MAX_MARKED) {
        return Err(Error::invalid(
            "notification_ids",
            format!("names at most {MAX_MARKED} notifications"),
        ));
    }
    let user = caller.user_id.0;
    let mut conn = state.pool.get().await?;
    let changed = db::notifications::mark_read(&mut conn, user, ids.as_deref()).await?;
    let unread = db::notifications::unread(&mut conn, user).await?;
    // What was read a month ago leaves the inbox: it does not grow for good.
    db::notifications::prune_read(&mut conn, user, Utc::now() - KEPT_READ).await?;
    if !changed.is_empty() {
        let all = ids.is_none();
        tell_read(
            &state.broker,
            user,
            if all { Vec::new() } else { changed },
            all,
            unread,
        );
    }
    Ok(unread)
}

/// `user` read `conversation` up to `seq`: what its messages caused for them is read too,
/// on every device (on the caller's connection: a call never holds two).
pub async fn read_conversation(
    conn: &mut AsyncPgConnection,
    broker: &Broker,
    user: Uuid,
    conversation: Uuid,
    seq: i64,
) -> Result<()> {
    let changed = db::notifications::mark_read_up_to(conn, user, conversation, seq).await?;
    if !changed.is_empty() {
        let unread = db::notifications::unread(conn, user).await?;
        tell_read(broker, user, changed, false, unread);
    }
    Ok(())
}

fn tell_read(broker: &Broker, user: Uuid, ids: Vec<Uuid>, all: bool, unread: i64) {
    broker.publish(Published::Inbox {
        recipients: vec![user].into(),
        change: Change::Read(Read { ids, all, unread }),
    });
}

/// Where people were added: a group conversation or a project, with its title.
#[derive(Debug, Clone, Copy)]
pub enum AddedTo<'a> {
    /// A group conversation.
    Conversation(Uuid, &'a str),
    /// A project.
    Project(Uuid, &'a str),
}

/// Notifies `added` (the actor aside) that `actor` added them, in the caller's transaction;
/// answers what to [`publish`] after commit.
pub async fn added(
    conn: &mut AsyncPgConnection,
    timing: Timing,
    to: AddedTo<'_>,
    actor: Uuid,
    added: &[Uuid],
) -> Result<Vec<Notification>> {
    let added: Vec<Uuid> = added.iter().copied().filter(|u| *u != actor).collect();
    if added.is_empty() {
        return Ok(Vec::new());
    }
    let who = db::notable::names(conn, &[actor])
        .await?
        .remove(&actor)
        .unwrap_or_default();
    let (kind, topic, title, conversation, project) = match to {
        AddedTo::Conversation(id, title) => (Kind::AddedToConversation, id, title, Some(id), None),
        AddedTo::Project(id, title) => (Kind::AddedToProject, id, title, None, Some(id)),
    };
    let new = added
        .into_iter()
        .map(|user_id| NewNotification {
            user_id,
            kind,
            topic,
            conversation_id: conversation,
            message: None,
            project_id: project,
            task_id: None,
            actor_id: Some(actor),
            title: title.to_owned(),
            body: format!("{who} added you to {title}"),
        })
        .collect();
    record(conn, new, timing).await
}

/// Notifies a task's assignee (unless they did it themselves) in the caller's transaction:
/// `kind` is assigned, changed or due; answers what to [`publish`] after commit.
pub async fn task(
    conn: &mut AsyncPgConnection,
    timing: Timing,
    kind: crate::domain::notifications::Kind,
    task: &crate::domain::tasks::Task,
    actor: Option<Uuid>,
) -> Result<Vec<Notification>> {
    let Some(assignee) = task.assignee_id.map(|a| a.0) else {
        return Ok(Vec::new());
    };
    if actor == Some(assignee) {
        return Ok(Vec::new());
    }
    let who = match actor {
        Some(a) => db::notable::names(conn, &[a])
            .await?
            .remove(&a)
            .unwrap_or_default(),
        None => String::new(),
    };
    let body = match kind {
        Kind::TaskAssigned => format!("{who} assigned this task to you"),
        Kind::TaskDue => match task.due_date {
            Some(d) => format!("Due on {d}"),
            None => "Due soon".to_owned(),
        },
        _ => format!("{who} changed this task"),
    };
    if kind == Kind::TaskChanged {
        // One unread "changed" per task: a burst of edits is one notification, the newest.
        db::notifications::drop_unread(conn, assignee, task.id.0, kind.as_str()).await?;
    }
    let new = NewNotification {
        user_id: assignee,
        kind,
        topic: task.project_id.0,
        conversation_id: None,
        message: None,
        project_id: Some(task.project_id.0),
        task_id: Some(task.id.0),
        actor_id: actor,
        title: task.title.clone(),
        body,
    };
    record(conn, vec![new], timing).await
}
