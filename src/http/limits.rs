//! Rate limits on what one client can take: seats held per minute, by identity and by IP
//! address, and identities made per minute, by IP address (governor's GCRA: the allowance
//! refills evenly over the minute, and may all be spent at once).
//!
//! A hold costs one unit per seat it asks for, whether or not it gets them, and releasing
//! gives nothing back: cycling hold and release spends the allowance as fast as holding does,
//! and minting identities does not add to the address's. So one address holds at most its
//! allowance times a hold's longest life (`MAX_HOLD_LIFETIME_SECS`) at once.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::AppState;
use crate::booking::Refusal;
use crate::config::RateLimits;
use crate::store::Store;

pub struct Limiter {
    seats_per_user: Option<DefaultKeyedRateLimiter<String>>,
    seats_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    identities_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted_proxies: Vec<IpAddr>,
    /// Checks since the limiters last forgot the clients whose allowance is full again.
    checks: AtomicU32,
}

/// How often the limiters forget clients with a full allowance, in checks.
const FORGET_EVERY: u32 = 4096;

fn limiter<K: std::hash::Hash + Eq + Clone>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| DefaultKeyedRateLimiter::hashmap(Quota::per_minute(n)))
}

impl Limiter {
    pub fn new(limits: &RateLimits) -> Self {
        Self {
            seats_per_user: limiter(limits.seats_per_user),
            seats_per_ip: limiter(limits.seats_per_ip),
            identities_per_ip: limiter(limits.identities_per_ip),
            trusted_proxies: limits.trusted_proxies.clone(),
            checks: AtomicU32::new(0),
        }
    }

    /// Spends `units` of the allowance of `user`, then of `client` (a hold spends its seats,
    /// a confirm or an extension one), or refuses with how long to wait. A refusal for the
    /// identity spends nothing; one for the address has spent the identity's (the address is
    /// the wider limit, and a client past it is held back anyway).
    pub fn spend(&self, user: &str, client: ClientIp, units: usize) -> Result<(), Refusal> {
        self.tidy();
        let units =
            NonZeroU32::new(u32::try_from(units).unwrap_or(u32::MAX).max(1)).expect("at least one");
        if let Some(limiter) = &self.seats_per_user {
            check(limiter.check_key_n(&user.to_owned(), units))?;
        }
        if let (Some(limiter), Some(ip)) = (&self.seats_per_ip, client.network()) {
            check(limiter.check_key_n(&ip, units))?;
        }
        Ok(())
    }

    /// Spends one identity of `client`'s allowance, or refuses.
    pub fn identity(&self, client: ClientIp) -> Result<(), Refusal> {
        self.tidy();
        match (&self.identities_per_ip, client.network()) {
            (Some(limiter), Some(ip)) => check(Ok(limiter.check_key(&ip))),
            _ => Ok(()),
        }
    }

    fn tidy(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            for limiter in [&self.seats_per_ip, &self.identities_per_ip]
                .into_iter()
                .flatten()
            {
                limiter.retain_recent();
            }
            if let Some(limiter) = &self.seats_per_user {
                limiter.retain_recent();
            }
        }
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
    /// address in `X-Forwarded-For` that is not one (read from the right, as each proxy
    /// appends the address it was reached from).
    fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = peer?;
        if !self.trusted_proxies.contains(&client) {
            return Some(client);
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        for hop in forwarded.iter().rev() {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.trusted_proxies.contains(&ip) {
                        break;
                    }
                }
                // Past what the trusted proxy wrote: the last address it vouched for stands.
                Err(_) => break,
            }
        }
        Some(client)
    }
}

fn check(
    outcome: Result<
        Result<(), governor::NotUntil<<DefaultClock as Clock>::Instant>>,
        governor::InsufficientCapacity,
    >,
) -> Result<(), Refusal> {
    let wait = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(not_until)) => not_until.wait_time_from(DefaultClock::default().now()),
        // More at once than the whole allowance: never allowed.
        Err(_) => Duration::from_secs(60),
    };
    Err(Refusal::RateLimited {
        retry_after: wait.as_secs().max(1),
    })
}

/// The address a request came from, as `Limiter::client_ip` tells it; `None` when the
/// server loop recorded no peer (a router called directly).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// What limits per address count by (`network`).
    pub fn network(self) -> Option<IpAddr> {
        self.0.map(network)
    }
}

/// What every limit per address counts by: an IPv4 address, or the /64 network of an IPv6
/// one (one subscriber's usual share, every address of which is theirs to use).
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

impl<S: Store> FromRequestParts<AppState<S>> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S>,
    ) -> Result<Self, Self::Rejection> {
        let limiter = &state.limiter;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Self(limiter.client_ip(peer, &parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(trusted: &[&str]) -> Limiter {
        Limiter::new(&RateLimits {
            seats_per_user: 4,
            seats_per_ip: 6,
            identities_per_ip: 2,
            trusted_proxies: trusted.iter().map(|ip| ip.parse().unwrap()).collect(),
        })
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let l = limiter(&["10.0.0.1", "10.0.0.2"]);
        let h = forwarded(&["203.0.113.9, 198.51.100.7", "10.0.0.2"]);
        // Straight from a client: its header is its own word, and ignored.
        assert_eq!(l.client_ip(ip("192.0.2.1"), &h), ip("192.0.2.1"));
        // From a trusted proxy: the nearest untrusted hop, not what the client wrote first.
        assert_eq!(l.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        let junk = forwarded(&["not-an-address, 10.0.0.2"]);
        assert_eq!(l.client_ip(ip("10.0.0.1"), &junk), ip("10.0.0.2"));
        assert_eq!(
            l.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        assert_eq!(l.client_ip(None, &h), None);
    }

    #[test]
    fn holds_spend_seats_of_the_user_and_of_the_address() {
        let l = limiter(&[]);
        let here = ClientIp(ip("192.0.2.1"));
        l.spend("alice", here, 3).unwrap();
        // alice has 1 seat left of 4 a minute.
        let refused = l.spend("alice", here, 2).unwrap_err();
        assert!(matches!(refused, Refusal::RateLimited { retry_after } if retry_after >= 1));
        // bob, from the same address, has 3 of its 6 left.
        l.spend("bob", here, 3).unwrap();
        assert!(l.spend("carol", here, 1).is_err());
        // Another address is not held back by this one.
        l.spend("carol", ClientIp(ip("192.0.2.2")), 1).unwrap();
        // More than a whole allowance at once is never allowed.
        assert!(l.spend("dave", ClientIp(None), 5).is_err());
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_network() {
        let network = |text: &str| ClientIp(ip(text)).network();
        assert_eq!(network("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2::"));
        assert_eq!(network("2001:db8:1:2:ffff::9"), ip("2001:db8:1:2::"));
        assert_eq!(network("2001:db8:1:3::1"), ip("2001:db8:1:3::"));
        assert_eq!(network("::ffff:192.0.2.7"), ip("192.0.2.7"));
        assert_eq!(network("192.0.2.7"), ip("192.0.2.7"));
        assert_eq!(ClientIp(None).network(), None);
        let l = limiter(&[]);
        for host in 1..=6 {
            l.spend(
                &format!("u{host}"),
                ClientIp(ip(&format!("2001:db8::{host}"))),
                1,
            )
            .unwrap_or_else(|_| panic!("seat {host} of the network's 6"));
        }
        assert!(l.spend("v", ClientIp(ip("2001:db8::ffff")), 1).is_err());
    }

    #[test]
    fn identities_are_limited_per_address() {
        let l = limiter(&[]);
        let here = ClientIp(ip("192.0.2.1"));
        l.identity(here).unwrap();
        l.identity(here).unwrap();
        assert!(l.identity(here).is_err());
        l.identity(ClientIp(ip("192.0.2.2"))).unwrap();
        l.identity(ClientIp(None)).unwrap();
    }
}
