//! Counting what a client does in fixed windows of time, in memory only: statistics batches
//! per installation, enrolments per address and per licence key, failed admin tokens per
//! address.
//!
//! All clients share the window's boundaries: when a window ends its counts are dropped at
//! once, so each request costs one hash-map operation (the review found the former limiter
//! scanning its whole table on every request past 100,000 ids). The map holds at most
//! `max_entries` clients; past that, clients it does not know yet are refused until the
//! window ends, so a flood of made-up identities costs a bounded amount of memory.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Windowed {
    window: Duration,
    max_entries: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    started: Instant,
    counts: HashMap<u64, u32>,
}

impl Windowed {
    pub fn new(window: Duration, max_entries: usize) -> Windowed {
        Windowed {
            window,
            max_entries,
            state: Mutex::new(State {
                started: Instant::now(),
                counts: HashMap::new(),
            }),
        }
    }

    /// Counts one event of `client` if it has had fewer than `limit` in this window;
    /// otherwise answers the seconds until the window ends.
    pub fn take(&self, client: u64, limit: u32, now: Instant) -> Result<(), u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *state;
        if now.saturating_duration_since(state.started) >= self.window {
            state.started = now;
            state.counts = HashMap::new();
        }
        let left = || self.seconds_left(state.started, now);
        let known = state.counts.len();
        match state.counts.get_mut(&client) {
            Some(count) if *count >= limit => Err(left()),
            Some(count) => {
                *count += 1;
                Ok(())
            }
            None if limit == 0 || known >= self.max_entries => Err(left()),
            None => {
                state.counts.insert(client, 1);
                Ok(())
            }
        }
    }
}

impl Windowed {
    /// Whether `client` has had `limit` events in this window already (counting nothing);
    /// if so, the seconds until the window ends.
    pub fn exhausted(&self, client: u64, limit: u32, now: Instant) -> Result<(), u64> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(state.started) >= self.window {
            return Ok(());
        }
        match state.counts.get(&client) {
            Some(count) if *count >= limit => Err(self.seconds_left(state.started, now)),
            _ => Ok(()),
        }
    }

    /// The seconds until the window that began at `started` ends, rounded up:
    /// `Retry-After` must not invite a retry too early.
    fn seconds_left(&self, started: Instant, now: Instant) -> u64 {
        let left = self
            .window
            .saturating_sub(now.saturating_duration_since(started));
        (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
    }
}

/// A client address as a limiter's key: IPv6 addresses by their /64 network (one host gets
/// a whole /64), keyed with `secret` so that the map never holds an address.
pub fn address_key(secret: &[u8; 32], address: std::net::IpAddr) -> u64 {
    let mut input = secret.to_vec();
    match address {
        std::net::IpAddr::V4(v4) => input.extend_from_slice(&v4.octets()),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => input.extend_from_slice(&v4.octets()),
            None => input.extend_from_slice(&v6.octets()[..8]),
        },
    }
    let digest = repnet_model::Sha256::digest(&input);
    u64::from_le_bytes(digest.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_client_and_window() {
        let limiter = Windowed::new(Duration::from_secs(60), 3);
        let start = Instant::now();
        assert_eq!(limiter.take(1, 2, start), Ok(()));
        assert_eq!(limiter.take(1, 2, start), Ok(()));
        assert_eq!(limiter.take(1, 2, start), Err(60));
        assert_eq!(limiter.take(2, 2, start), Ok(()));
        assert_eq!(limiter.take(3, 2, start), Ok(()));
        // The map is full: a new client waits for the next window.
        assert!(limiter.take(4, 2, start).is_err());
        let later = start + Duration::from_secs(61);
        assert_eq!(limiter.take(4, 2, later), Ok(()));
        assert_eq!(limiter.take(1, 2, later), Ok(()));
    }

    #[test]
    fn an_ipv6_host_is_its_network() {
        let secret = [7; 32];
        let a: std::net::IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(&secret, a), address_key(&secret, b));
        assert_ne!(address_key(&secret, a), address_key(&secret, c));
        let v4: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(&secret, v4), address_key(&secret, mapped));
    }
}
