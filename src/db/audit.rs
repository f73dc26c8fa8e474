//! Queries on `audit_log`: append (in the caller's transaction where there is one) and page
//! through, newest first. The table refuses updates and deletes (a trigger).

pub use crate::domain::audit::{AuditEntry, AuditFilter, NewAuditEntry};
use crate::{db::schema::audit_log, domain::UserId, error::Result};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// Appends `entry`.
pub async fn append(conn: &mut AsyncPgConnection, entry: &NewAuditEntry) -> Result<()> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::action.eq(entry.action.as_str()),
            audit_log::actor_id.eq(entry.actor.map(|a| a.0)),
            audit_log::target.eq(entry.target.as_deref()),
            audit_log::client_ip.eq(entry.client_ip.map(|ip| ip.to_string())),
            audit_log::details.eq(&entry.details),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

type Row = (
    i64,
    DateTime<Utc>,
    String,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    serde_json::Value,
);

/// Up to `limit` entries matching `filter`, newest first, after `(at, id)` when given.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &AuditFilter,
    after: Option<(DateTime<Utc>, i64)>,
    limit: i64,
) -> Result<Vec<AuditEntry>> {
    let mut query = audit_log::table.into_boxed();
    if let Some(action) = &filter.action {
        query = query.filter(audit_log::action.eq(action.clone()));
    }
    if let Some(actor) = filter.actor {
        query = query.filter(audit_log::actor_id.eq(actor.0));
    }
    if let Some(target) = &filter.target {
        query = query.filter(audit_log::target.eq(target.clone()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_log::at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_log::at.lt(until));
    }
    if let Some((at, id)) = after {
        query = query.filter(
            audit_log::at
                .lt(at)
                .or(audit_log::at.eq(at).and(audit_log::id.lt(id))),
        );
    }
    let rows: Vec<Row> = query
        .order((audit_log::at.desc(), audit_log::id.desc()))
        .limit(limit)
        .select((
            audit_log::id,
            audit_log::at,
            audit_log::action,
            audit_log::actor_id,
            audit_log::target,
            audit_log::client_ip,
            audit_log::details,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, at, action, actor, target, client_ip, details)| AuditEntry {
                id,
                at,
                action,
                actor: actor.map(UserId),
                target,
                client_ip,
                details,
            },
        )
        .collect())
}
