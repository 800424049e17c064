//! Counters that show what the pipeline did: renders, frames, deliveries, kicks.
//!
//! They are cheap (relaxed atomic adds) and always on; read them with
//! [`Turbo::metrics`](crate::Turbo::metrics), or scrape them in Prometheus's format
//! from [`Turbo::metrics_router`](crate::Turbo::metrics_router). Tests use them to prove
//! that one broadcast renders once whatever the number of subscribers.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by the hub, the renderer and the connections.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    renders: AtomicU64,
    broadcasts: AtomicU64,
    frames: AtomicU64,
    deliveries: AtomicU64,
    slow_consumers_kicked: AtomicU64,
    connections: AtomicU64,
    subscriptions: AtomicU64,
    replayed: AtomicU64,
    gaps: AtomicU64,
    suppressed: AtomicU64,
    /// By [`REFUSALS`].
    refusals: [AtomicU64; REFUSALS.len()],
    /// By [`KICKS`].
    kicks: [AtomicU64; KICKS.len()],
}

/// Why a request or a stream connection was refused: the reasons counted, as the
/// `reason` label says them. The first six are the codes of `error` frames.
pub(crate) const REFUSALS: [&str; 10] = [
    "bad_request",
    "binary_not_supported",
    "invalid_token",
    "too_many_subscriptions",
    "rate_limited",
    "forbidden",
    "origin",
    "connection_limit",
    "address_limit",
    "shutting_down",
];

/// Why a connection was closed by the server: too slow to keep up (its queue filled),
/// a write that made no progress, no heartbeat from the client, or its streams must be
/// resumed from the broker (the broker connection was lost, or a stream moved to a new
/// epoch).
pub(crate) const KICKS: [&str; 4] = ["slow_consumer", "write_timeout", "heartbeat", "resync"];

/// A histogram of durations in seconds, with fixed buckets: cheap to record (two atomic
/// adds), read at scrape time.
#[derive(Debug, Default)]
pub struct Latencies {
    counts: [AtomicU64; LATENCY_BUCKETS.len()],
    /// Beyond the last bucket.
    over: AtomicU64,
    sum_micros: AtomicU64,
}

/// The upper bounds of [`Latencies`]' buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Latencies {
    /// Records one duration.
    pub fn record(&self, took: std::time::Duration) {
        let seconds = took.as_secs_f64();
        match LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The count in each bucket (with its upper bound; the last is `+Inf`), the count of
    /// all and their sum in seconds.
    pub fn read(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .zip(&self.counts)
            .map(|(bound, count)| (*bound, count.load(Ordering::Relaxed)))
            .collect();
        buckets.push((f64::INFINITY, self.over.load(Ordering::Relaxed)));
        let total = buckets.iter().map(|(_, n)| n).sum();
        #[allow(
            clippy::cast_precision_loss,
            reason = "a sum of microseconds, shown in seconds"
        )]
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (buckets, total, sum)
    }
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Templates and components rendered for broadcasts.
    pub renders: u64,
    /// Broadcasts published.
    pub broadcasts: u64,
    /// Frames serialized (one per broadcast that had local subscribers).
    pub frames: u64,
    /// Frames pushed onto connection queues.
    pub deliveries: u64,
    /// Connections closed because their queue was full.
    pub slow_consumers_kicked: u64,
    /// Connections open now.
    pub connections: u64,
    /// Subscriptions open now, over all connections.
    pub subscriptions: u64,
    /// Frames replayed to clients that resumed.
    pub replayed: u64,
    /// Resumes that history could not serve (the client was told to refresh).
    pub gaps: u64,
    /// Broadcasts dropped inside [`suppress`](crate::suppress).
    pub suppressed: u64,
}

impl Metrics {
    /// Reads every counter.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            renders: get(&self.renders),
            broadcasts: get(&self.broadcasts),
            frames: get(&self.frames),
            deliveries: get(&self.deliveries),
            slow_consumers_kicked: get(&self.slow_consumers_kicked),
            connections: get(&self.connections),
            subscriptions: get(&self.subscriptions),
            replayed: get(&self.replayed),
            gaps: get(&self.gaps),
            suppressed: get(&self.suppressed),
        }
    }

    pub(crate) fn rendered(&self) {
        self.renders.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn broadcast(&self) {
        self.broadcasts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn frame_built(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn delivered(&self, n: usize) {
        self.deliveries.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn slow_consumer_kicked(&self) {
        self.slow_consumers_kicked.fetch_add(1, Ordering::Relaxed);
        self.kicked("slow_consumer");
    }

    pub(crate) fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn subscribed(&self) {
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn replayed(&self, n: usize) {
        self.replayed.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn suppressed(&self) {
        self.suppressed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refusal; `reason` is one of [`REFUSALS`].
    pub(crate) fn refused(&self, reason: &str) {
        if let Some(i) = REFUSALS.iter().position(|r| *r == reason) {
            self.refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a connection the server closed; `reason` is one of [`KICKS`].
    pub(crate) fn kicked(&self, reason: &str) {
        if let Some(i) = KICKS.iter().position(|r| *r == reason) {
            self.kicks[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refusals by reason, in [`REFUSALS`] order.
    pub(crate) fn refusals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REFUSALS
            .iter()
            .zip(&self.refusals)
            .map(|(reason, n)| (*reason, n.load(Ordering::Relaxed)))
    }

    /// Kicks by reason, in [`KICKS`] order.
    pub(crate) fn kicks(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KICKS
            .iter()
            .zip(&self.kicks)
            .map(|(reason, n)| (*reason, n.load(Ordering::Relaxed)))
    }

    pub(crate) fn gap(&self) {
        self.gaps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unsubscribed(&self) {
        self.subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}
