//! Where Web Push may post: endpoints come from users, so the server must not be made to post
//! to its own network. Addresses that are not global (loopback, private, link-local, shared,
//! unique-local, IPv4-mapped forms of those) are refused, both as literals at registration
//! and after DNS resolution at send time (a name that resolves inward gets no connection);
//! redirects are not followed.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};

/// True when `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                // 100.64.0.0/10, carrier-grade NAT (shared address space).
                || (a == 100 && (64..128).contains(&b))
                || a >= 224)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || v6.is_multicast()
                // 64:ff9b::/96 (NAT64) reaches IPv4 behind it.
                || (first == 0x64 && v6.segments()[1] == 0xff9b))
        }
    }
}

/// True when a URL's host may be posted to: a public address, or a name (checked when it
/// is resolved).
pub fn host_allowed(host: Option<url::Host<&str>>) -> bool {
    match host {
        Some(url::Host::Ipv4(ip)) => is_public(ip.into()),
        Some(url::Host::Ipv6(ip)) => is_public(ip.into()),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d != "localhost" && !d.ends_with(".localhost")
        }
        None => false,
    }
}

/// A resolver that answers only public addresses.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{} resolves to no public address", name.as_str()).into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inward_addresses_are_refused_in_every_form() {
        for inward in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::ffff:169.254.169.254",
            "fd00::1",
            "fe80::1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(inward.parse().unwrap()), "{inward}");
        }
        for public in ["8.8.8.8", "2606:4700::1111", "142.250.0.1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        assert!(!host_allowed(Some(url::Host::Domain("LOCALHOST."))));
        assert!(host_allowed(Some(url::Host::Domain("fcm.googleapis.com"))));
    }
}
