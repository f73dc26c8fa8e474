//! The embedded cluster's serving role: created once, and reachable by the server's OS user
//! through a peer-authentication user map (see `db::roles`).

use super::{DATABASE, EmbeddedPostgres, SERVING_ROLE};
use anyhow::Context;
use std::{path::Path, time::Duration};

/// The peer-authentication map that lets the server's OS user sign in as either role.
const IDENT_MAP: &str = "epop";

impl EmbeddedPostgres {
    /// Creates the serving role if missing, and lets the server's OS user sign in as it:
    /// peer authentication gets a user map naming both roles (clusters of earlier versions
    /// that trust local connections need none).
    pub(super) async fn ensure_serving_role(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
    ) -> anyhow::Result<()> {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        diesel::sql_query(format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SERVING_ROLE}') \
             THEN CREATE ROLE {SERVING_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; \
             END IF; END $$"
        ))
        .execute(conn)
        .await
        .context("cannot create the serving role")?;
        if self.map_peer_logins()? {
            diesel::sql_query("SELECT pg_reload_conf()")
                .execute(conn)
                .await?;
            // The postmaster reloads on its own time: wait until the serving role gets in.
            let serve = self.url_for(DATABASE, SERVING_ROLE);
            for _ in 0..50 {
                if AsyncPgConnection::establish(&serve).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Adds the user map to the cluster's peer rules (once); true when it changed them.
    fn map_peer_logins(&self) -> anyhow::Result<bool> {
        let hba_path = self.pgdata.join("pg_hba.conf");
        let hba = std::fs::read_to_string(&hba_path)
            .with_context(|| format!("cannot read {}", hba_path.display()))?;
        let mut changed = false;
        let rules: Vec<String> = hba
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let peer = fields.first() == Some(&"local") && fields.last() == Some(&"peer");
                if peer {
                    changed = true;
                    format!("{line} map={IDENT_MAP}")
                } else {
                    line.to_owned()
                }
            })
            .collect();
        if !changed {
            return Ok(false);
        }
        let who = &self.superuser;
        let ident_path = self.pgdata.join("pg_ident.conf");
        let mut ident = std::fs::read_to_string(&ident_path).unwrap_or_default();
        ident.push_str(&format!(
            "{IDENT_MAP} {who} {who}\n{IDENT_MAP} {who} {SERVING_ROLE}\n"
        ));
        replace(&ident_path, &ident)?;
        replace(&hba_path, &(rules.join("\n") + "\n"))?;
        Ok(true)
    }
}

/// Replaces the file at `path` with `text` at once (a crash leaves the old or the new file),
/// keeping its owner and mode (the postgres user's, when run as root).
fn replace(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    let tmp = path.with_extension("epop-new");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, meta.permissions())?;
    nix::unistd::chown(&tmp, Some(meta.uid().into()), Some(meta.gid().into()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}
