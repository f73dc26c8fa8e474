//! The devices a user's pushes go to: registered with what each platform gives a client (a
//! Web Push subscription's endpoint and keys, an FCM registration token, an APNs device
//! token), checked at the boundary, listed and removed by their owner.

use crate::{
    auth::Caller,
    db::{
        self,
        push::{Device, NewDevice},
    },
    error::{Error, Result},
    service::State,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use diesel_async::AsyncConnection;
use uuid::Uuid;

/// Where a device's pushes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Web Push.
    Web,
    /// FCM.
    Fcm,
    /// APNs.
    Apns,
}

impl Platform {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Web => "web",
            Platform::Fcm => "fcm",
            Platform::Apns => "apns",
        }
    }
}

/// A device to register, as a client gives it.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The platform.
    pub platform: Platform,
    /// Its address.
    pub address: String,
    /// Web Push: the browser's public key.
    pub p256dh: String,
    /// Web Push: the browser's auth secret.
    pub auth: String,
    /// Its name.
    pub name: String,
}

fn decoded(field: &str, value: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| Error::invalid(field, "is not base64url"))
}

impl Registration {
    /// Checks what each platform needs; a Web Push endpoint must be `https` on a host that is
    /// not a loopback, private or link-local address, unless `insecure` allows it.
    fn check(&self, insecure: bool) -> Result<()> {
        if self.name.chars().count() > 100 || self.name.contains('\0') {
            return Err(Error::invalid(
                "name",
                "has at most 100 characters, and no NUL",
            ));
        }
        if self.address.contains('\0') {
            return Err(Error::invalid("address", "must not contain NUL"));
        }
        match self.platform {
            Platform::Web => {
                let url = url::Url::parse(&self.address)
                    .map_err(|_| Error::invalid("address", "is not a URL"))?;
                let internal = !crate::push::public::host_allowed(url.host());
                let scheme_ok = url.scheme() == "https" || (insecure && url.scheme() == "http");
                let uri_ok = self.address.parse::<http::Uri>().is_ok();
                if !scheme_ok || (internal && !insecure) || !uri_ok || self.address.len() > 2048 {
                    return Err(Error::invalid(
                        "address",
                        "must be the subscription's https endpoint at its push service",
                    ));
                }
                let key = decoded("p256dh", &self.p256dh)?;
                let on_curve = web_push_native::p256::PublicKey::from_sec1_bytes(&key).is_ok();
                if key.len() != 65 || key[0] != 4 || !on_curve {
                    return Err(Error::invalid(
                        "p256dh",
                        "must be an uncompressed P-256 point (65 bytes)",
                    ));
                }
                if decoded("auth", &self.auth)?.len() != 16 {
                    return Err(Error::invalid("auth", "must be 16 bytes"));
                }
            }
            Platform::Fcm => {
                if self.address.is_empty() || self.address.len() > 4096 {
                    return Err(Error::invalid(
                        "address",
                        "must be an FCM registration token",
                    ));
                }
            }
            Platform::Apns => {
                let hex = !self.address.is_empty()
                    && self.address.len() <= 200
                    && self.address.bytes().all(|b| b.is_ascii_hexdigit());
                if !hex {
                    return Err(Error::invalid(
                        "address",
                        "must be an APNs device token (hex)",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The most devices one user registers.
pub const MAX_DEVICES: usize = 20;

/// Registers a device of the caller (the same address again updates it).
pub async fn register(state: &State, caller: &Caller, r: Registration) -> Result<Device> {
    r.check(state.push.allow_insecure)?;
    let user = caller.user_id.0;
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        // One registration of a user at a time: the count holds until the insert.
        db::push::lock_owner(conn, user).await?;
        let mine = db::push::of_user(conn, user).await?;
        let again = mine
            .iter()
            .any(|d| d.platform == r.platform.as_str() && d.address == r.address);
        if mine.len() >= MAX_DEVICES && !again {
            return Err(Error::FailedPrecondition(format!(
                "at most {MAX_DEVICES} devices: remove one first"
            )));
        }
        let keys = (r.platform == Platform::Web).then_some((r.p256dh.as_str(), r.auth.as_str()));
        let new = NewDevice {
            platform: r.platform.as_str(),
            address: &r.address,
            keys,
            name: &r.name,
        };
        db::push::register(conn, user, new).await
    })
    .await
}

/// Removes a device of the caller; others' answer NOT_FOUND.
pub async fn unregister(state: &State, caller: &Caller, id: Uuid) -> Result<()> {
    let mut conn = state.pool.get().await?;
    match db::push::unregister(&mut conn, caller.user_id.0, id).await? {
        true => Ok(()),
        false => Err(Error::NotFound("device")),
    }
}

/// The caller's devices.
pub async fn list(state: &State, caller: &Caller) -> Result<Vec<Device>> {
    let mut conn = state.pool.get().await?;
    db::push::of_user(&mut conn, caller.user_id.0).await
}
