//! Wall-clock time in microseconds, never going backwards within the process.
//!
//! Frames carry the time they were published and pages the time their request began;
//! a page subscribes from that time (see [`Since::Time`](crate::hub::Since::Time)). The
//! wall clock, not a monotonic one, because the two may be taken in different processes
//! (with a broker). A clock stepped back by NTP would reorder frames, so readings are
//! held at the largest seen so far.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static LAST: AtomicU64 = AtomicU64::new(0);

/// Microseconds since the Unix epoch, at least the previous reading.
pub(crate) fn now_micros() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let previous = LAST.fetch_max(now, Ordering::Relaxed);
    previous.max(now)
}

/// A wall-clock time as microseconds since the Unix epoch (0 before it).
pub(crate) fn micros_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_never_go_back() {
        let a = now_micros();
        let b = now_micros();
        assert!(b >= a);
        assert!(a > 1_700_000_000_000_000, "after 2023: {a}");
        assert_eq!(
            micros_of(UNIX_EPOCH + std::time::Duration::from_micros(5)),
            5
        );
    }
}
