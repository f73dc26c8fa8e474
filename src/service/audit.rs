//! The audit log: security events appended as they happen, and the admins' view of it.
//! Admin changes append in their own transaction (no change without its entry); sign-in
//! events, which change nothing else, append on their own.

use crate::{
    db::{
        self,
        audit::{AuditEntry, AuditFilter, NewAuditEntry},
    },
    domain::{Page, PageSize, PageToken},
    error::Result,
    service::{State, admin::Admin},
};
use chrono::{DateTime, Utc};

/// Appends `entry` on a connection of its own. The event it records already happened, so a
/// failure is logged, not answered.
pub async fn record(state: &State, entry: NewAuditEntry) {
    let written = async {
        let mut conn = state.pool.get().await?;
        db::audit::append(&mut conn, &entry).await
    };
    if let Err(e) = written.await {
        tracing::error!(action = entry.action.as_str(), error = %e, "audit entry not written");
    }
}

/// A page of the log, newest first.
pub async fn list(
    state: &State,
    _admin: &Admin,
    filter: AuditFilter,
    size: PageSize,
    token: PageToken<(DateTime<Utc>, i64)>,
) -> Result<Page<AuditEntry>> {
    let mut conn = state.pool.get().await?;
    let rows = db::audit::list(&mut conn, &filter, token.0, size.0 + 1).await?;
    Ok(Page::from_rows(rows, size, |e| (e.at, e.id)))
}
