//! The hub: who is subscribed to what, and the fan-out of one frame to all of them.
//!
//! # Ordering
//!
//! Each stream has a sequence number, raised by one per broadcast under the stream's
//! lock; frames enter every subscriber's queue in that order, and a connection writes its
//! queue in order. So on one stream, every subscriber sees broadcasts in the order they
//! were published, numbered without gaps while it stays subscribed.
//!
//! # Cost
//!
//! A broadcast is rendered once by its sender and serialized here once into a JSON text
//! frame; every subscriber receives a clone of the same shared bytes (a reference count).
//! Per subscriber, a broadcast costs one non-blocking queue push. A stream with no
//! subscribers costs a hash lookup: nothing is serialized.
//!
//! # Slow consumers
//!
//! Each connection has a bounded queue ([`Builder::queue_capacity`], default 256 frames).
//! A connection whose queue is full when a frame arrives is *kicked*: the frame is not
//! queued, and the connection closes with code 1013 ("try again later") so the client
//! reconnects. Other subscribers never wait for it.
//!
//! [`Builder::queue_capacity`]: crate::Builder::queue_capacity

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use crate::metrics::Metrics;
use crate::stream::StreamName;

/// Identifies one client connection for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The number, for logs.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The hub's handle on a connection: where its frames go.
#[derive(Clone, Debug)]
struct Subscriber {
    id: ConnectionId,
    queue: mpsc::Sender<Utf8Bytes>,
    shared: Arc<ConnectionShared>,
}

#[derive(Debug, Default)]
struct ConnectionShared {
    kicked: AtomicBool,
    kick: Notify,
}

/// A connection's end of the hub: its queue of frames and its kick signal.
///
/// Dropping it unsubscribes the connection from every stream.
#[derive(Debug)]
pub struct Connection {
    hub: Arc<Hub>,
    subscriber: Subscriber,
    queue: mpsc::Receiver<Utf8Bytes>,
    streams: Vec<StreamName>,
}

impl Connection {
    /// This connection's id.
    pub fn id(&self) -> ConnectionId {
        self.subscriber.id
    }

    /// The next frame for this connection, in order. `None` only once the hub is gone.
    ///
    /// Cancel-safe: a frame is never lost when the future is dropped.
    pub async fn next_frame(&mut self) -> Option<Utf8Bytes> {
        self.queue.recv().await
    }

    /// The next frame if one is queued, without waiting.
    pub fn try_next_frame(&mut self) -> Option<Utf8Bytes> {
        self.queue.try_recv().ok()
    }

    /// A handle that resolves when the hub kicks this connection for falling behind.
    /// Separate from the connection so that a task can wait on both at once.
    pub fn kick_signal(&self) -> KickSignal {
        KickSignal(Arc::clone(&self.subscriber.shared))
    }

    /// Whether the hub has kicked this connection.
    pub fn is_kicked(&self) -> bool {
        self.subscriber.shared.kicked.load(Ordering::Acquire)
    }

    /// Subscribes to `stream`. Returns the stream's current sequence number (the last
    /// frame published before this subscription), or `None` if already subscribed.
    pub fn subscribe(&mut self, stream: &StreamName) -> Option<u64> {
        if self.streams.contains(stream) {
            return None;
        }
        let seq = self.hub.add(stream, &self.subscriber);
        self.streams.push(stream.clone());
        Some(seq)
    }

    /// Unsubscribes from `stream`; returns whether it was subscribed.
    pub fn unsubscribe(&mut self, stream: &StreamName) -> bool {
        let Some(at) = self.streams.iter().position(|s| s == stream) else {
            return false;
        };
        self.streams.swap_remove(at);
        self.hub.remove(stream, self.subscriber.id);
        true
    }

    /// The streams this connection is subscribed to.
    pub fn streams(&self) -> &[StreamName] {
        &self.streams
    }
}

/// Resolves when the hub has kicked its connection; see [`Connection::kick_signal`].
#[derive(Clone, Debug)]
pub struct KickSignal(Arc<ConnectionShared>);

impl KickSignal {
    /// Waits for the kick. Cancel-safe; returns at once if it already happened.
    pub async fn kicked(&self) {
        loop {
            let notified = self.0.kick.notified();
            if self.0.kicked.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for stream in self.streams.drain(..) {
            self.hub.remove(&stream, self.subscriber.id);
        }
        self.hub.metrics.connection_closed();
    }
}

#[derive(Debug, Default)]
struct StreamState {
    seq: u64,
    subscribers: Vec<Subscriber>,
}

#[derive(Debug, Default)]
struct Shard {
    streams: HashMap<StreamName, StreamState>,
}

/// Subscriptions and fan-out for the connections of this process.
#[derive(Debug)]
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    next_connection: AtomicU64,
    queue_capacity: usize,
    metrics: Arc<Metrics>,
}

/// Streams are spread over this many locks, so that unrelated streams rarely contend.
const SHARDS: usize = 16;

/// The wire form of one broadcast, as every subscriber receives it.
#[derive(Serialize)]
struct MessageFrame<'a> {
    r#type: &'static str,
    stream: &'a str,
    seq: u64,
    html: &'a str,
}

impl Hub {
    /// A hub whose connections queue at most `queue_capacity` frames each.
    pub(crate) fn new(queue_capacity: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            next_connection: AtomicU64::new(1),
            queue_capacity: queue_capacity.max(1),
            metrics,
        }
    }

    fn shard(&self, stream: &StreamName) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(stream) % SHARDS as u64) as usize;
        // A panic while holding a shard lock leaves the map consistent (no partial
        // updates span an unwind point), so a poisoned lock is still usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a connection: a queue and an id. Subscribe it with
    /// [`Connection::subscribe`]; drop it to leave every stream.
    pub fn connect(self: &Arc<Self>) -> Connection {
        let id = ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed));
        let (queue_tx, queue) = mpsc::channel(self.queue_capacity);
        self.metrics.connection_opened();
        Connection {
            hub: Arc::clone(self),
            subscriber: Subscriber {
                id,
                queue: queue_tx,
                shared: Arc::default(),
            },
            queue,
            streams: Vec::new(),
        }
    }

    fn add(&self, stream: &StreamName, subscriber: &Subscriber) -> u64 {
        let mut shard = self.shard(stream);
        let state = shard.streams.entry(stream.clone()).or_default();
        state.subscribers.push(subscriber.clone());
        self.metrics.subscribed();
        state.seq
    }

    fn remove(&self, stream: &StreamName, id: ConnectionId) {
        let mut shard = self.shard(stream);
        let Some(state) = shard.streams.get_mut(stream) else {
            return;
        };
        if let Some(at) = state.subscribers.iter().position(|s| s.id == id) {
            state.subscribers.swap_remove(at);
            self.metrics.unsubscribed();
        }
        if state.subscribers.is_empty() {
            shard.streams.remove(stream);
        }
    }

    /// The last sequence number published on `stream` while it had subscribers here.
    pub fn last_seq(&self, stream: &StreamName) -> u64 {
        self.shard(stream).streams.get(stream).map_or(0, |s| s.seq)
    }

    /// Number of connections subscribed to `stream` in this process.
    pub fn subscriber_count(&self, stream: &StreamName) -> usize {
        self.shard(stream)
            .streams
            .get(stream)
            .map_or(0, |s| s.subscribers.len())
    }

    /// Publishes a rendered `<turbo-stream>` element to every local subscriber of
    /// `stream`: assigns the next sequence number, serializes the frame once, and pushes
    /// it onto each subscriber's queue. Returns the number of queues it reached.
    pub fn deliver(&self, stream: &StreamName, html: &str) -> usize {
        let mut shard = self.shard(stream);
        let Some(state) = shard.streams.get_mut(stream) else {
            return 0;
        };
        state.seq += 1;
        let frame = MessageFrame {
            r#type: "message",
            stream: stream.as_str(),
            seq: state.seq,
            html,
        };
        let frame = match serde_json::to_string(&frame) {
            Ok(json) => Utf8Bytes::from(json),
            Err(error) => {
                tracing::error!(%stream, %error, "could not serialize a frame");
                return 0;
            }
        };
        self.metrics.frame_built();
        let mut delivered = 0;
        state.subscribers.retain(
            |subscriber| match subscriber.queue.try_send(frame.clone()) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    subscriber.shared.kicked.store(true, Ordering::Release);
                    subscriber.shared.kick.notify_waiters();
                    self.metrics.slow_consumer_kicked();
                    self.metrics.unsubscribed();
                    tracing::warn!(
                        connection = subscriber.id.0,
                        %stream,
                        "connection fell behind; closing it so that it reconnects"
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.metrics.unsubscribed();
                    false
                }
            },
        );
        if state.subscribers.is_empty() {
            shard.streams.remove(stream);
        }
        self.metrics.delivered(delivered);
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(capacity: usize) -> Arc<Hub> {
        Arc::new(Hub::new(capacity, Arc::default()))
    }

    fn name(s: &str) -> StreamName {
        StreamName::new(s).expect("valid")
    }

    #[tokio::test]
    async fn every_subscriber_gets_the_same_numbered_frame() {
        let hub = hub(8);
        let room = name("room:1");
        let mut a = hub.connect();
        let mut b = hub.connect();
        assert_eq!(a.subscribe(&room), Some(0));
        assert_eq!(b.subscribe(&room), Some(0));
        assert_eq!(hub.deliver(&room, "<p>1</p>"), 2);
        let expected = r#"{"type":"message","stream":"room:1","seq":1,"html":"<p>1</p>"}"#;
        assert_eq!(a.next_frame().await.expect("frame").as_str(), expected);
        assert_eq!(b.next_frame().await.expect("frame").as_str(), expected);
    }

    #[tokio::test]
    async fn streams_are_isolated() {
        let hub = hub(8);
        let mut a = hub.connect();
        a.subscribe(&name("room:1"));
        assert_eq!(hub.deliver(&name("room:2"), "x"), 0);
        assert_eq!(hub.deliver(&name("room:1"), "y"), 1);
        let frame = a.next_frame().await.expect("frame");
        assert!(frame.as_str().contains(r#""html":"y""#), "{frame}");
    }

    #[tokio::test]
    async fn dropping_a_connection_unsubscribes_it() {
        let hub = hub(8);
        let room = name("room:1");
        let mut a = hub.connect();
        a.subscribe(&room);
        assert_eq!(hub.subscriber_count(&room), 1);
        drop(a);
        assert_eq!(hub.subscriber_count(&room), 0);
        assert_eq!(hub.deliver(&room, "x"), 0);
    }

    #[tokio::test]
    async fn double_subscribe_and_unsubscribe_are_reported() {
        let hub = hub(8);
        let room = name("room:1");
        let mut a = hub.connect();
        assert_eq!(a.subscribe(&room), Some(0));
        assert_eq!(a.subscribe(&room), None);
        assert!(a.unsubscribe(&room));
        assert!(!a.unsubscribe(&room));
        assert_eq!(hub.subscriber_count(&room), 0);
    }

    #[tokio::test]
    async fn a_full_queue_kicks_only_that_connection() {
        let hub = hub(2);
        let room = name("room:1");
        let mut slow = hub.connect();
        let mut fast = hub.connect();
        slow.subscribe(&room);
        fast.subscribe(&room);
        for i in 0..3 {
            hub.deliver(&room, &i.to_string());
            fast.next_frame().await.expect("fast keeps up");
        }
        assert!(slow.is_kicked());
        slow.kick_signal().kicked().await;
        assert!(!fast.is_kicked());
        assert_eq!(hub.subscriber_count(&room), 1);
        assert_eq!(hub.metrics.snapshot().slow_consumers_kicked, 1);
    }

    #[tokio::test]
    async fn json_in_html_is_escaped_once() {
        let hub = hub(1);
        let room = name("r");
        let mut a = hub.connect();
        a.subscribe(&room);
        hub.deliver(&room, "\"quoted\"\n");
        assert_eq!(
            a.next_frame().await.expect("frame").as_str(),
            r#"{"type":"message","stream":"r","seq":1,"html":"\"quoted\"\n"}"#
        );
    }
}
