//! Queries on `sessions`: the signed-in devices of a user (one row per refresh-token family),
//! listed and ended by their user or an admin.

use crate::{
    db::schema::{refresh_tokens, sessions},
    domain::{
        UserId,
        security::{ClientInfo, SessionInfo},
    },
    error::Result,
};
use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

#[derive(Queryable, Selectable)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
struct Row {
    id: Uuid,
    user_id: Uuid,
    created_at: DateTime<Utc>,
    last_used_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    user_agent: String,
    client_ip: Option<String>,
    method: String,
}

impl From<Row> for SessionInfo {
    fn from(r: Row) -> Self {
        Self {
            id: r.id,
            user: UserId(r.user_id),
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            user_agent: r.user_agent,
            client_ip: r.client_ip,
            method: r.method,
        }
    }
}

/// Records a new session `id` of `user`, which ends at `expires_at`.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    user: UserId,
    expires_at: DateTime<Utc>,
    client: &ClientInfo,
    method: &str,
) -> Result<()> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(id),
            sessions::user_id.eq(user.0),
            sessions::expires_at.eq(expires_at),
            sessions::user_agent.eq(&client.user_agent),
            sessions::client_ip.eq(client.ip.map(|ip| ip.to_string())),
            sessions::method.eq(method),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Notes that session `id` was used now, from `ip` (a refresh).
pub async fn touch(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    ip: Option<std::net::IpAddr>,
) -> Result<()> {
    diesel::update(sessions::table.find(id))
        .set((
            sessions::last_used_at.eq(now),
            sessions::client_ip.eq(ip.map(|ip| ip.to_string())),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The most sessions listed (a user rarely has more than a few dozen).
const MAX_LISTED: i64 = 500;

/// The open sessions of `user` (none of its tokens revoked, not expired), most recently used
/// first.
pub async fn list_open(conn: &mut AsyncPgConnection, user: UserId) -> Result<Vec<SessionInfo>> {
    let revoked = diesel::dsl::exists(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(sessions::id))
            .filter(refresh_tokens::revoked_at.is_not_null()),
    );
    let rows: Vec<Row> = sessions::table
        .filter(sessions::user_id.eq(user.0))
        .filter(sessions::expires_at.gt(now))
        .filter(diesel::dsl::not(revoked))
        .order((sessions::last_used_at.desc(), sessions::id))
        .limit(MAX_LISTED)
        .select(Row::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Whether `id` is a session of `user`.
pub async fn belongs_to(conn: &mut AsyncPgConnection, id: Uuid, user: UserId) -> Result<bool> {
    diesel::select(diesel::dsl::exists(
        sessions::table
            .filter(sessions::id.eq(id))
            .filter(sessions::user_id.eq(user.0)),
    ))
    .get_result(conn)
    .await
    .map_err(Into::into)
}
