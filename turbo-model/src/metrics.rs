//! Counters that show what the pipeline did: renders, frames, deliveries, kicks.
//!
//! They are cheap (relaxed atomic adds) and always on; read them with
//! [`Turbo::metrics`](crate::Turbo::metrics). Tests use them to prove that one broadcast
//! renders once whatever the number of subscribers.

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

    pub(crate) fn gap(&self) {
        self.gaps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unsubscribed(&self) {
        self.subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}
