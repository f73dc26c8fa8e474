//! Least privilege on the database: migrations run as the schema's owner, the server serves
//! as a role that can only read and write rows. After migrating, the owner grants the serving
//! role exactly that on every table and sequence (again at every start, so tables of later
//! migrations are covered); the audit log gets SELECT and INSERT only. A serving role cannot
//! drop or disable the audit log's append-only trigger, nor change the schema.

use anyhow::Context;
use diesel::{QueryableByName, sql_types::Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The two connection strings: the role the server serves as, and the owner that applies
/// migrations. The same when only `DATABASE_URL` is set (then one role does both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls {
    /// The serving role's.
    pub serve: String,
    /// The owner's.
    pub owner: String,
}

impl Urls {
    /// One role for both.
    pub fn single(url: &str) -> Self {
        Self {
            serve: url.to_owned(),
            owner: url.to_owned(),
        }
    }
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// The role a connection acts as.
pub async fn current_role(conn: &mut AsyncPgConnection) -> anyhow::Result<String> {
    let n: Name = diesel::sql_query("SELECT current_user::text AS name")
        .get_result(conn)
        .await?;
    Ok(n.name)
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// As the owner (`owner`), grants `role` reading and writing the rows of every table (the
/// audit log: reading and appending), using every sequence, and nothing else.
pub async fn grant_serving(owner: &mut AsyncPgConnection, role: &str) -> anyhow::Result<()> {
    #[derive(QueryableByName)]
    struct Powers {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        more: bool,
    }
    let powers: Powers = diesel::sql_query(
        "SELECT (r.rolsuper OR pg_has_role(r.oid, current_user, 'MEMBER')) AS more \
         FROM pg_roles r WHERE r.rolname = $1",
    )
    .bind::<Text, _>(role)
    .get_result(owner)
    .await?;
    if powers.more {
        tracing::warn!(
            role,
            "the serving role is a superuser or a member of the owner: it can do more than read \
             and write rows (give DATABASE_URL a plain login role)"
        );
    }
    let r = ident(role);
    let statements = [
        format!("GRANT USAGE ON SCHEMA public TO {r}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r}"),
        format!("REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {r}"),
        format!("REVOKE ALL ON __diesel_schema_migrations FROM {r}"),
        format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {r}"),
    ];
    for sql in statements {
        diesel::sql_query(&sql)
            .execute(owner)
            .await
            .with_context(|| format!("cannot grant the serving role its rights: {sql}"))?;
    }
    Ok(())
}
