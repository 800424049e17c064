//! Interest routing: this process listens to the channels of the streams its own
//! clients watch, and to no other.
//!
//! A stream's channel is subscribed when the hub first hands one of its subscriptions to
//! Redis (it had not learned the stream), before its position is read, so that nothing
//! published after that read is missed. It is unsubscribed once the hub has let the
//! stream go: nobody here watched it for [`LINGER`]. The hub then forgets the stream, so
//! that the next subscription asks Redis again, and subscribes again.
//!
//! When the Pub/Sub connection drops (on a cluster, its connection to one node), or this
//! process fell behind and its queue overflowed, every channel is subscribed again, then
//! every client resumes from the log: frames published meanwhile are there, or the client
//! gets the gap signal. A channel that cannot be subscribed (its node is down) stays
//! pending, retried every second; subscriptions to its stream are refused meanwhile and
//! clients retry. The other streams go on.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::link::{Listener, PushQueue, Target};
use super::{Announced, stopping};
use crate::hub::{Feed, Position, Publication};
use crate::name::{ConnectionId, StreamName};

/// How often the listener lets go of the streams nobody watches, at most and at least.
const RELEASE_EVERY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(10));

/// Messages received and not yet handed to the hub, at most.
pub(super) const PUSH_QUEUE: usize = 65_536;

/// How often channels that could not be subscribed again are retried.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Subscription requests waiting for the listener, at most.
pub(super) const REQUESTS: usize = 4096;

/// A subscription request: the stream, and where to say that its channel is subscribed.
pub(super) type Request = (StreamName, oneshot::Sender<Result<(), String>>);

/// What crossed from Redis to this process.
#[derive(Debug, Default)]
pub(super) struct Received {
    pub(super) messages: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) channels: AtomicU64,
}

/// The task that owns the Pub/Sub connection.
pub(super) struct Subscriber {
    pub(super) target: Arc<Target>,
    pub(super) channel: Arc<dyn Fn(&StreamName) -> String + Send + Sync>,
    pub(super) feed: Feed,
    pub(super) received: Arc<Received>,
    /// How long a stream nobody here watches stays subscribed.
    pub(super) linger: Duration,
    /// Streams whose channels are subscribed.
    pub(super) subscribed: HashSet<StreamName>,
    /// Streams whose channels were subscribed before an interruption and are not yet
    /// again.
    pub(super) pending: HashSet<StreamName>,
}

impl Subscriber {
    pub(super) async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let (queue, mut pushes) = PushQueue::new(PUSH_QUEUE);
        let Some(mut listener) = self.connect(&queue, &mut stopped).await else {
            return;
        };
        let every = (self.linger / 2).clamp(RELEASE_EVERY.0, RELEASE_EVERY.1);
        let mut release = tokio::time::interval(every);
        release.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry = tokio::time::interval(RETRY_EVERY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopping(&mut stopped) => return,
                request = requests.recv() => {
                    let Some((stream, reply)) = request else { return };
                    let _ = reply.send(self.subscribe(&mut listener, stream).await);
                }
                push = pushes.recv() => {
                    let Some(push) = push else { return };
                    let dropped = push.kind == PushKind::Disconnection;
                    self.take(push);
                    if dropped || queue.overflowed() {
                        self.recover(&mut listener, &queue).await;
                    }
                }
                _ = retry.tick(), if !self.pending.is_empty() => {
                    self.subscribe_pending(&mut listener).await;
                }
                _ = release.tick() => {
                    if queue.overflowed() {
                        self.recover(&mut listener, &queue).await;
                    }
                    self.release(&mut listener).await;
                }
            }
        }
    }

    /// Connects, retrying with backoff until it works or the backend stops.
    async fn connect(
        &self,
        queue: &PushQueue,
        stopped: &mut watch::Receiver<bool>,
    ) -> Option<Listener> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.target.listener(queue.clone()).await {
                Ok(listener) => return Some(listener),
                Err(error) => tracing::warn!(%error, "cannot reach Redis for Pub/Sub; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stopping(stopped) => return None,
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Subscribes to the stream's channel unless it is already.
    async fn subscribe(
        &mut self,
        listener: &mut Listener,
        stream: StreamName,
    ) -> Result<(), String> {
        if self.subscribed.contains(&stream) {
            return Ok(());
        }
        let channel = (self.channel)(&stream);
        match listener.subscribe(std::slice::from_ref(&channel)).await {
            Ok(()) => {
                self.pending.remove(&stream);
                self.subscribed.insert(stream);
                self.count_channels();
                Ok(())
            }
            Err(error) => Err(format!(
                "cannot subscribe to the stream's channel on Redis: {error}"
            )),
        }
    }

    /// Subscribes again to the channels that could not be subscribed after an
    /// interruption; each stays pending until Redis (its node, on a cluster) answers.
    async fn subscribe_pending(&mut self, listener: &mut Listener) {
        let pending: Vec<StreamName> = self.pending.iter().cloned().collect();
        for stream in pending {
            if self.subscribe(listener, stream).await.is_err() {
                // One server: all fail alike; try again on the next tick.
                if matches!(listener, Listener::Server(_)) {
                    return;
                }
            }
        }
    }

    /// After the connection (on a cluster, to one node) dropped or messages were lost:
    /// subscribes to every channel again (those that fail stay pending, retried every
    /// second, and refuse subscriptions meanwhile), then makes every client resume from
    /// the log, which holds what this process missed.
    async fn recover(&mut self, listener: &mut Listener, queue: &PushQueue) {
        tracing::warn!("the Redis subscription was interrupted; subscribing again");
        self.pending.extend(self.subscribed.drain());
        self.count_channels();
        self.subscribe_pending(listener).await;
        let _ = queue.overflowed();
        tracing::info!(
            pending = self.pending.len(),
            "clients resume from the Redis log"
        );
        let _ = self.feed.resync_all("the broker connection was lost");
    }

    fn count_channels(&self) {
        self.received
            .channels
            .store(self.subscribed.len() as u64, Ordering::Relaxed);
    }

    /// Unsubscribes from the channels of streams the hub let go.
    async fn release(&mut self, listener: &mut Listener) {
        // A pending stream nobody watches any more needs no channel.
        let linger = self.linger;
        let feed = self.feed.clone();
        self.pending
            .retain(|stream| !feed.release_if_idle(stream, linger));
        let idle: Vec<StreamName> = self
            .subscribed
            .iter()
            .filter(|stream| self.feed.release_if_idle(stream, linger))
            .cloned()
            .collect();
        if idle.is_empty() {
            return;
        }
        let channels: Vec<String> = idle.iter().map(|s| (self.channel)(s)).collect();
        // Forgotten by the hub either way: a failed unsubscribe only costs messages the
        // hub drops, and the channel is subscribed again when a client comes.
        if let Err(error) = listener.unsubscribe(&channels).await {
            tracing::debug!(%error, "cannot unsubscribe on Redis; the channels stay subscribed");
        }
        for stream in &idle {
            self.subscribed.remove(stream);
        }
        self.received
            .channels
            .store(self.subscribed.len() as u64, Ordering::Relaxed);
    }

    /// Hands a received message to the hub.
    fn take(&self, push: PushInfo) {
        if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
            return;
        }
        let Some(Value::BulkString(payload)) = push.data.get(1) else {
            return;
        };
        self.received.messages.fetch_add(1, Ordering::Relaxed);
        self.received
            .bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        deliver(&self.feed, payload);
    }
}

/// Hands one announced broadcast to the hub.
pub(super) fn deliver(feed: &Feed, payload: &[u8]) {
    let announced: Announced = match serde_json::from_slice(payload) {
        Ok(announced) => announced,
        Err(error) => {
            tracing::warn!(%error, "unreadable frame on a Redis channel");
            return;
        }
    };
    let (Ok(stream), Some(epoch), Ok(time)) = (
        StreamName::new(announced.s),
        u64::from_str_radix(&announced.e, 16).ok(),
        announced.t.parse::<u64>(),
    ) else {
        tracing::warn!("a frame on a Redis channel names no valid stream, epoch or time");
        return;
    };
    if announced.r != 0 {
        if let Err(error) = feed.reset(&stream, "a broadcast was lost; the stream has a new epoch")
        {
            tracing::error!(%error, "the hub refused a new epoch from Redis");
        }
        return;
    }
    // The id names its process: only that process has the connection.
    let except = ConnectionId::parse(&announced.x);
    let publication = Publication {
        stream,
        html: Arc::from(announced.h),
        except,
    };
    if let Err(error) = feed.deliver(publication, Position::new(epoch, announced.q), time) {
        tracing::error!(%error, "the hub refused a frame from Redis");
    }
}
