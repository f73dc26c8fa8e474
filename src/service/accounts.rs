//! Creating accounts: shared by the admin RPC, the `epop user create` command and the
//! bootstrap admin of the first start.

use crate::{
    auth::password::Hasher,
    db::{self, Pool, users::User},
    domain::{
        DisplayName, DivisionId, Email, Password, Role, UserId,
        audit::{Action, NewAuditEntry},
    },
    error::{Error, Result},
};
use diesel_async::AsyncConnection;
use secrecy::{ExposeSecret, SecretString};

/// A validated account to create.
#[derive(Debug)]
pub struct NewAccount {
    /// The email address.
    pub email: Email,
    /// The display name.
    pub display_name: DisplayName,
    /// The initial password.
    pub password: Password,
    /// The role.
    pub role: Role,
    /// The divisions.
    pub divisions: Vec<DivisionId>,
}

/// Creates an account (the user, their divisions and the audit entry naming `by`, the admin
/// who asked, if any, in one transaction).
pub async fn create(
    pool: &Pool,
    hasher: &Hasher,
    new: NewAccount,
    by: Option<UserId>,
) -> Result<User> {
    let hash = hasher.hash(&new.password).await?;
    let mut conn = pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let id = db::users::insert(
            conn,
            db::users::NewUser {
                email: &new.email,
                display_name: &new.display_name,
                password_hash: &hash,
                role: new.role,
            },
        )
        .await?;
        db::users::set_divisions(conn, id, &new.divisions).await?;
        let entry = NewAuditEntry::new(Action::UserCreated, by)
            .on_user(id)
            .with(serde_json::json!({ "email": new.email.as_str(), "role": new.role.as_str() }));
        db::audit::append(conn, &entry).await?;
        db::users::get(conn, id)
            .await?
            .ok_or_else(|| Error::internal("the new user vanished"))
    })
    .await
}

/// A random password of 20 URL-safe characters.
pub fn generate_password() -> String {
    use rand::{Rng, distr::Alphanumeric};
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

/// On a start with no active admin, creates one with `email` and `password` (generated when
/// `None`). Returns the generated password, which the caller prints once.
pub async fn ensure_admin(
    pool: &Pool,
    hasher: &Hasher,
    email: &str,
    password: Option<&SecretString>,
) -> anyhow::Result<Option<String>> {
    if has_admin(pool).await? {
        return Ok(None);
    }
    let (raw, generated) = match password {
        Some(p) => (p.expose_secret().to_owned(), None),
        None => {
            let g = generate_password();
            (g.clone(), Some(g))
        }
    };
    let email = Email::parse("EPOP_ADMIN_EMAIL", email).map_err(anyhow_of)?;
    let account = NewAccount {
        display_name: DisplayName::parse("EPOP_ADMIN_EMAIL", email.local_part())
            .map_err(anyhow_of)?,
        email,
        password: Password::parse("EPOP_ADMIN_PASSWORD", &raw).map_err(anyhow_of)?,
        role: Role::Admin,
        divisions: vec![],
    };
    let user = match create(pool, hasher, account, None).await {
        Ok(user) => user,
        // Another instance starting at the same moment created it.
        Err(Error::AlreadyExists(_)) if has_admin(pool).await? => return Ok(None),
        Err(Error::AlreadyExists(_)) => anyhow::bail!(
            "there is no active admin, and EPOP_ADMIN_EMAIL belongs to an existing account: \
             choose another address, or promote it with `epop user create`"
        ),
        Err(e) => return Err(anyhow_of(e)),
    };
    tracing::info!(email = %user.email, "created the bootstrap admin");
    Ok(generated)
}

fn anyhow_of(e: Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn has_admin(pool: &Pool) -> anyhow::Result<bool> {
    let mut conn = pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = db::users::count_active_admins(&mut conn)
        .await
        .map_err(anyhow_of)?;
    Ok(n > 0)
}
