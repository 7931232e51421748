//! One client address's share of something the server has a fixed number of (connections,
//! event streams): counted while held, refused past the share. An IPv6 client's share is its
//! /64's (`limits::network`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::limits::network;

/// How many of a thing each address holds, against a share of `limit` each.
pub struct Shares {
    limit: usize,
    /// Addresses without a share (trusted proxies, through which many clients come).
    exempt: Vec<IpAddr>,
    held: Counts,
}

/// How many each address that holds any holds.
type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

impl Shares {
    /// A share of `limit` per address; `0`: no limit.
    pub fn new(limit: usize, exempt: Vec<IpAddr>) -> Self {
        Self {
            limit,
            exempt,
            held: Counts::default(),
        }
    }

    /// One more for `ip`, counted until the `Share` is dropped, or `None` if `ip` holds its
    /// whole share already.
    pub fn take(&self, ip: IpAddr) -> Option<Share> {
        if self.limit == 0 || self.exempt.contains(&ip) {
            return Some(Share(None));
        }
        let ip = network(ip);
        let mut held = self.held.lock().expect("shares poisoned");
        let count = held.entry(ip).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Share(Some((ip, Arc::clone(&self.held)))))
    }
}

/// One of an address's share; given back when dropped (and the address forgotten with its
/// last one).
pub struct Share(Option<(IpAddr, Counts)>);

impl Drop for Share {
    fn drop(&mut self) {
        let Some((ip, held)) = self.0.take() else {
            return;
        };
        let mut held = held.lock().expect("shares poisoned");
        if let Some(count) = held.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_share_and_gets_it_back() {
        let (a, b, proxy): (IpAddr, IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
        );
        let shares = Shares::new(2, vec![proxy]);
        let first = shares.take(a).unwrap();
        let _second = shares.take(a).unwrap();
        assert!(shares.take(a).is_none());
        assert!(shares.take(b).is_some(), "another address has its own");
        let _many: Vec<Share> = (0..5).map(|_| shares.take(proxy).unwrap()).collect();
        drop(first);
        assert!(shares.take(a).is_some(), "given back when dropped");
        assert!(Shares::new(0, Vec::new()).take(a).is_some(), "0: no limit");
    }

    #[test]
    fn an_ipv6_network_has_one_share() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let shares = Shares::new(2, Vec::new());
        let _one = shares.take(ip("2001:db8::1")).unwrap();
        let _two = shares.take(ip("2001:db8::ffff:2")).unwrap();
        assert!(shares.take(ip("2001:db8::3")).is_none(), "the same /64");
        assert!(shares.take(ip("2001:db8:0:1::1")).is_some(), "the next /64");
    }
}
