//! The audit log on the wire: entries out, filters in.

use crate::{
    domain::{
        UserId,
        audit::{Action, AuditEntry, AuditFilter},
    },
    error::{Error, Result},
    grpc::convert::{json::json_to_struct, timestamp},
    pb,
};
use chrono::{DateTime, Utc};

/// An entry as the API shows it.
pub fn entry(e: AuditEntry) -> pb::AuditEntry {
    pb::AuditEntry {
        id: e.id,
        time: Some(timestamp(e.at)),
        action: e.action,
        actor_id: e.actor.map(|a| a.0.to_string()).unwrap_or_default(),
        target: e.target.unwrap_or_default(),
        client_ip: e.client_ip.unwrap_or_default(),
        details: Some(json_to_struct(&e.details)),
    }
}

/// The filter of a ListAuditLog request; each bad field is named.
pub fn filter(r: &pb::ListAuditLogRequest) -> Result<AuditFilter> {
    let action = match r.action.as_str() {
        "" => None,
        name => Some(
            Action::parse(name)
                .ok_or_else(|| Error::invalid("action", format!("`{name}` is no audit action")))?
                .as_str()
                .to_owned(),
        ),
    };
    let actor = match r.actor_id.as_str() {
        "" => None,
        raw => Some(UserId::parse("actor_id", raw)?),
    };
    // Compared as text by PostgreSQL, which cannot hold NUL.
    if r.target.contains('\0') || r.target.chars().count() > 200 {
        return Err(Error::invalid(
            "target",
            "must be at most 200 characters, without NUL",
        ));
    }
    let target = Some(r.target.trim().to_owned()).filter(|t| !t.is_empty());
    let since = time("start_time", r.start_time.as_ref())?;
    let until = time("end_time", r.end_time.as_ref())?;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(Error::invalid("end_time", "must not be before start_time"));
    }
    Ok(AuditFilter {
        action,
        actor,
        target,
        since,
        until,
    })
}

/// A timestamp from request field `field` (unset: `None`).
pub fn time(field: &str, t: Option<&prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>> {
    let Some(t) = t else { return Ok(None) };
    let nanos = u32::try_from(t.nanos).map_err(|_| Error::invalid(field, "has negative nanos"))?;
    DateTime::from_timestamp(t.seconds, nanos)
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "is out of range"))
}
