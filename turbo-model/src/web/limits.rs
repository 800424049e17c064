//! How many stream connections a process takes: in all, and from one client address.
//!
//! Each WebSocket or Server-Sent Events connection holds a socket (a file descriptor), a
//! task and its buffers. Past either limit a new connection is refused with `503` and
//! `Retry-After`, which the client element and `EventSource` both retry later; the open
//! connections are not disturbed.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

use super::PeerAddr;

/// The limits, and the connections they count.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    total: usize,
    per_address: usize,
    open: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    all: AtomicUsize,
    /// Open connections by client address; an address leaves the map with its last.
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Total(usize),
    Address(IpAddr, usize),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Total(limit) => write!(
                f,
                "this server holds {limit} stream connections, its limit; retry later"
            ),
            Self::Address(address, limit) => {
                write!(
                    f,
                    "{address} holds {limit} stream connections, the limit per address; retry later"
                )
            }
        }
    }
}

/// A connection's place among the open ones: released when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    counts: Arc<Counts>,
    address: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.all.fetch_sub(1, Ordering::AcqRel);
        if let Some(address) = self.address {
            let mut by_address = self
                .counts
                .by_address
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(count) = by_address.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    by_address.remove(&address);
                }
            }
        }
    }
}

impl ConnectionLimits {
    pub(crate) fn new(total: usize, per_address: usize) -> Self {
        Self {
            total: total.max(1),
            per_address: per_address.max(1),
            open: Arc::default(),
        }
    }

    /// Takes a place for a connection from `address` (unknown when the server was not
    /// told the client's address: then only the total counts).
    pub(crate) fn admit(&self, address: Option<IpAddr>) -> Result<Slot, Refused> {
        let before = self.open.all.fetch_add(1, Ordering::AcqRel);
        if before >= self.total {
            self.open.all.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total(self.total));
        }
        if let Some(address) = address {
            let mut by_address = self
                .open
                .by_address
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let count = by_address.entry(address).or_insert(0);
            if *count >= self.per_address {
                self.open.all.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::Address(address, self.per_address));
            }
            *count += 1;
        }
        Ok(Slot {
            counts: Arc::clone(&self.open),
            address,
        })
    }
}

/// The client's address, if the server was told it (`ConnectInfo` of [`PeerAddr`] or
/// of a `SocketAddr`).
pub(crate) fn peer_of(request: &Parts) -> Option<IpAddr> {
    request
        .extensions
        .get::<ConnectInfo<PeerAddr>>()
        .map(|info| info.0.0.ip())
        .or_else(|| {
            request
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip())
        })
}

/// Raises this process's soft limit on open files to its hard limit (once; logged) and
/// returns the soft limit, or `None` where it cannot be read.
pub(crate) fn open_file_limit() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(raise_open_file_limit)
}

#[cfg(unix)]
fn raise_open_file_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= hard {
        tracing::info!(soft, hard, "open-file limit");
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(
                was = soft,
                now = hard,
                hard,
                "raised the open-file limit to its hard limit"
            );
            Some(hard)
        }
        Err(error) => {
            tracing::warn!(soft, hard, %error, "cannot raise the open-file limit");
            Some(soft)
        }
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn the_total_and_each_address_are_limited_and_places_come_back() {
        let limits = ConnectionLimits::new(3, 2);
        let a1 = limits.admit(ip(1)).expect("first");
        let _a2 = limits.admit(ip(1)).expect("second from the address");
        assert_eq!(
            limits.admit(ip(1)).map(|_| ()),
            Err(Refused::Address(IpAddr::from([10, 0, 0, 1]), 2))
        );
        let _b = limits.admit(ip(2)).expect("another address");
        assert_eq!(limits.admit(ip(3)).map(|_| ()), Err(Refused::Total(3)));
        assert_eq!(limits.admit(None).map(|_| ()), Err(Refused::Total(3)));
        drop(a1);
        let _again = limits.admit(ip(1)).expect("a place came back");
        assert_eq!(limits.open.all.load(Ordering::Acquire), 3);
    }

    #[test]
    fn refusals_say_what_was_reached() {
        assert_eq!(
            Refused::Address(IpAddr::from([10, 0, 0, 1]), 2).to_string(),
            "10.0.0.1 holds 2 stream connections, the limit per address; retry later"
        );
    }
}
