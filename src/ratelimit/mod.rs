//! Rate limits (governor), in front of every protocol: per client address on sign-in, token
//! refresh and password reset; per user on message sends, typing and upload presigning. A
//! refused call is RESOURCE_EXHAUSTED with `retry-after` (whole seconds) on gRPC and gRPC-Web,
//! and 429 with `Retry-After` on REST. The client address is the connection's peer or, when
//! the peer is a configured trusted proxy, the nearest address in `X-Forwarded-For` that is
//! not one. With Redis configured the limits hold across instances (counted there, see
//! [`shared`]); each instance also keeps its own count, which alone decides while Redis is
//! unreachable.

pub mod leases;
pub mod shared;

use crate::auth::Caller;
use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use http::HeaderMap;
use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    str::FromStr,
    sync::Arc,
    time::Duration,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The peer of the connection a request came on (put there by the accept loop).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The client's address, as the limits saw it (on the calls limited per address).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The metadata by which the REST edge passes its request's peer to the in-process call.
/// Believed only on in-process calls (which have no [`ClientAddr`]).
pub const PEER_METADATA: &str = "x-epop-peer";

const PER_ADDRESS: [&str; 14] = [
    "/epop.v1.SecurityService/DeletePasskey",
    "/epop.v1.SecurityService/FinishPasskeyRegistration",
    "/epop.v1.AuthService/Login",
    "/epop.v1.AuthService/StartPasskeySignIn",
    "/epop.v1.AuthService/FinishPasskeySignIn",
    "/epop.v1.SecurityService/ConfirmTotp",
    "/epop.v1.SecurityService/DisableTotp",
    "/epop.v1.SecurityService/RegenerateRecoveryCodes",
    "/epop.v1.AuthService/VerifySecondFactor",
    "/epop.v1.AuthService/StartOidcSignIn",
    "/epop.v1.AuthService/FinishOidcSignIn",
    "/epop.v1.AuthService/Refresh",
    "/epop.v1.AuthService/RequestPasswordReset",
    "/epop.v1.AuthService/ConfirmPasswordReset",
];
const PER_USER: [&str; 8] = [
    "/epop.v1.ConversationService/SendMessage",
    "/epop.v1.ConversationService/SendTyping",
    "/epop.v1.FileService/PresignUpload",
    "/epop.v1.ConversationService/UpdateMessage",
    "/epop.v1.ConversationService/AddReaction",
    "/epop.v1.ConversationService/RemoveReaction",
    "/epop.v1.ConversationService/PinMessage",
    "/epop.v1.ConversationService/UnpinMessage",
];

/// A rate: at most `count` calls per `period` (in bursts of up to `count`), written
/// `count/period` (`10/1m`), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Calls per period (0: no limit).
    pub count: u32,
    /// The period.
    pub period: Duration,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(Self {
                count: 0,
                period: Duration::from_secs(1),
            });
        }
        let bad = || format!("{s:?}: expected COUNT/PERIOD (e.g. 10/1m) or off");
        let (count, period) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let period = humantime::parse_duration(period.trim()).map_err(|_| bad())?;
        if count == 0 || period.is_zero() {
            return Err(bad());
        }
        Ok(Self { count, period })
    }
}

impl Rate {
    fn limiter<K: std::hash::Hash + Eq + Clone>(self) -> Option<DefaultKeyedRateLimiter<K>> {
        let burst = NonZeroU32::new(self.count)?;
        let quota = Quota::with_period(self.period / self.count)?.allow_burst(burst);
        Some(RateLimiter::keyed(quota))
    }
}

/// The group `ip` is counted in: an IPv4 address alone (an IPv4-mapped IPv6 address as its
/// IPv4 address), an IPv6 address with every bit past `prefix` cleared.
pub fn address_group(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(prefix.min(128)))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        },
    }
}

/// The limiters of one instance, and the ones every instance shares when Redis is configured.
pub struct RateLimits {
    trusted: Vec<IpAddr>,
    ipv6_prefix: u8,
    by_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    by_user: Option<DefaultKeyedRateLimiter<Uuid>>,
    rates: (Rate, Rate),
    shared: Option<shared::Counter>,
}

impl RateLimits {
    /// `auth` per client address (IPv6 per `ipv6_prefix`), `writes` per user; `trusted`:
    /// proxies whose `X-Forwarded-For` is believed.
    pub fn new(auth: Rate, writes: Rate, trusted: Vec<IpAddr>, ipv6_prefix: u8) -> Self {
        Self {
            trusted,
            ipv6_prefix,
            by_address: auth.limiter(),
            by_user: writes.limiter(),
            rates: (auth, writes),
            shared: None,
        }
    }

    /// These limits, counted across instances in the Redis at `url` too (keys under
    /// `prefix`).
    pub async fn shared_through(mut self, url: &str, prefix: &str) -> anyhow::Result<Self> {
        self.shared = Some(shared::Counter::new(url, prefix).await?);
        Ok(self)
    }

    /// The wait before another call of `key` under `rate` across instances, if it must wait;
    /// None when it may go, or when Redis cannot answer (then this instance's count decided).
    async fn shared_wait(&self, rate: Rate, key: String) -> Option<Duration> {
        let counter = self.shared.as_ref()?;
        let limit = shared::Shared::of(rate)?;
        counter.take(limit, &key).await.filter(|w| !w.is_zero())
    }

    /// Forgets idle clients every minute until `stop`.
    pub fn spawn_cleanup(self: &Arc<Self>, stop: CancellationToken) {
        let limits = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
                if let Some(l) = &limits.by_address {
                    l.retain_recent();
                }
                if let Some(l) = &limits.by_user {
                    l.retain_recent();
                }
            }
        });
    }

    /// The client address of a request with `headers`, from peer `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(&self.trusted, peer, headers)
    }
}

/// `peer`, or when it is a trusted proxy, the nearest untrusted hop of `X-Forwarded-For`
/// (the leftmost when all are trusted).
fn client_ip(trusted: &[IpAddr], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let mut ip = peer;
    if !trusted.contains(&ip) {
        return ip;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    for hop in hops.into_iter().rev() {
        ip = hop;
        if !trusted.contains(&hop) {
            break;
        }
    }
    ip
}

/// The peer of a request: its connection's, or on an in-process call from the REST edge,
/// the one the edge passed on.
fn peer(req: &Request) -> Option<IpAddr> {
    match req.extensions().get::<ClientAddr>() {
        Some(a) => Some(a.0.ip()),
        None => req
            .headers()
            .get(PEER_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
    }
}

/// The middleware (inside authentication, which names the caller).
pub async fn limit(
    State(limits): State<Arc<RateLimits>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let refused = if PER_ADDRESS.contains(&path) {
        let ip = peer(&req).map(|p| limits.client_ip(p, req.headers()));
        if let Some(ip) = ip {
            req.extensions_mut().insert(ClientIp(ip));
        }
        let what = ("attempts from this address", "address");
        match (&limits.by_address, ip) {
            (Some(l), Some(ip)) => {
                let group = address_group(ip, limits.ipv6_prefix);
                match l.check_key(&group) {
                    Err(n) => Some((n.wait_time_from(l.clock().now()), what)),
                    Ok(()) => limits
                        .shared_wait(limits.rates.0, format!("a:{}", hashed(&group.to_string())))
                        .await
                        .map(|w| (w, what)),
                }
            }
            _ => None,
        }
    } else if PER_USER.contains(&path) {
        let user = req.extensions().get::<Caller>().map(|c| c.user_id.0);
        let what = ("writes", "user");
        match (&limits.by_user, user) {
            (Some(l), Some(user)) => match l.check_key(&user) {
                Err(n) => Some((n.wait_time_from(l.clock().now()), what)),
                Ok(()) => limits
                    .shared_wait(limits.rates.1, format!("u:{user}"))
                    .await
                    .map(|w| (w, what)),
            },
            _ => None,
        }
    } else {
        None
    };
    match refused {
        Some((wait, (what, limit))) => {
            crate::metrics::rate_limited(limit);
            refuse(wait, what)
        }
        None => next.run(req).await,
    }
}

/// A key's hash (so Redis holds no client address).
fn hashed(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn refuse(wait: Duration, what: &str) -> Response {
    tracing::info!(what, ?wait, "rate limit: call refused");
    crate::error::retry_later(&format!("too many {what}"), wait).into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_bad_ones_say_what_is_expected() {
        let r: Rate = "10/1m".parse().unwrap();
        assert_eq!((r.count, r.period), (10, Duration::from_secs(60)));
        assert_eq!("off".parse::<Rate>().unwrap().count, 0);
        for bad in ["10", "x/1m", "0/1m", "10/0s", "10/soon"] {
            assert!(
                bad.parse::<Rate>().unwrap_err().contains("COUNT/PERIOD"),
                "{bad}"
            );
        }
    }

    #[test]
    fn ipv6_addresses_group_by_prefix_and_ipv4_ones_stand_alone() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            address_group(ip("2001:db8:1:2:3:4:5:6"), 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            address_group(ip("2001:db8:1:2:3:4:5:6"), 48),
            ip("2001:db8:1::")
        );
        assert_eq!(address_group(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(address_group(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(address_group(ip("::ffff:1.2.3.4"), 64), ip("1.2.3.4"));
        assert_eq!(address_group(ip("1.2.3.4"), 64), ip("1.2.3.4"));
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 1.2.3.4, 10.0.0.2".parse().unwrap(),
        );
        let direct: IpAddr = "9.9.9.9".parse().unwrap();
        assert_eq!(client_ip(&[proxy], direct, &h), direct, "an untrusted peer");
        let two = ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        assert_eq!(
            client_ip(&two, proxy, &h),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(&[proxy], proxy, &HeaderMap::new()), proxy);
    }
}
