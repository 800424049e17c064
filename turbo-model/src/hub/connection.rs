//! A connection's end of the hub, and the hub's handle on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;

use super::{Frame, Hub, Position, Since, Subscribed};
use crate::name::{ConnectionId, StreamName};

/// The hub's handle on a connection: where its frames go.
#[derive(Clone, Debug)]
pub(super) struct Subscriber {
    pub(super) id: ConnectionId,
    pub(super) queue: mpsc::Sender<Arc<Frame>>,
    pub(super) shared: Arc<ConnectionShared>,
}

#[derive(Debug, Default)]
pub(super) struct ConnectionShared {
    kicked: AtomicBool,
    /// The connection's task, waiting for the kick: one waiter, no lock.
    kick: AtomicWaker,
    queued_bytes: AtomicUsize,
}

impl Subscriber {
    /// Queues `frame` or kicks the connection. Returns whether it was queued.
    pub(super) fn push(&self, frame: &Arc<Frame>, max_bytes: usize) -> Push {
        let len = frame.len();
        let before = self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before + len > max_bytes {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return self.kick();
        }
        match self.queue.try_send(Arc::clone(frame)) {
            Ok(()) => Push::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                self.kick()
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Push::Gone,
        }
    }

    pub(super) fn kick(&self) -> Push {
        self.shared.kicked.store(true, Ordering::Release);
        self.shared.kick.wake();
        Push::Kicked
    }
}

pub(super) enum Push {
    Queued,
    Kicked,
    Gone,
}

/// A connection's end of the hub: its queue of frames and its kick signal.
///
/// Dropping it unsubscribes the connection from every stream.
#[derive(Debug)]
pub struct Connection {
    hub: Arc<Hub>,
    subscriber: Subscriber,
    queue: mpsc::Receiver<Arc<Frame>>,
    streams: Vec<StreamName>,
    /// Per stream, the last sequence number already sent by other means (a broker's
    /// replay): queued frames up to it are dropped, not sent twice.
    floors: HashMap<StreamName, u64>,
    /// Per stream whose subscription waits for the broker's answer, the frames that
    /// came through the queue meanwhile: held back until the answer, so that none goes
    /// out before the `subscribed` reply and the replay.
    held: HashMap<StreamName, Vec<Arc<Frame>>>,
    /// Frames a connection may hold, as it may queue.
    queue_frames: usize,
}

impl Connection {
    pub(super) fn new(hub: Arc<Hub>, id: ConnectionId, queue_frames: usize) -> Self {
        let (queue_tx, queue) = mpsc::channel(queue_frames);
        Self {
            hub,
            subscriber: Subscriber {
                id,
                queue: queue_tx,
                shared: Arc::default(),
            },
            queue,
            streams: Vec::new(),
            floors: HashMap::new(),
            held: HashMap::new(),
            queue_frames,
        }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnectionId {
        self.subscriber.id
    }

    /// The next frame for this connection, in order. `None` only once the hub is gone.
    ///
    /// Cancel-safe: a frame is never lost when the future is dropped.
    pub async fn next_frame(&mut self) -> Option<Arc<Frame>> {
        loop {
            let frame = self.queue.recv().await?;
            if self.dequeued(&frame) {
                return Some(frame);
            }
        }
    }

    /// The next frame if one is queued, without waiting.
    pub fn try_next_frame(&mut self) -> Option<Arc<Frame>> {
        loop {
            let frame = self.queue.try_recv().ok()?;
            if self.dequeued(&frame) {
                return Some(frame);
            }
        }
    }

    /// Accounts for a frame leaving the queue; `false` if it was already sent, or is
    /// held until the broker answers.
    fn dequeued(&mut self, frame: &Arc<Frame>) -> bool {
        self.subscriber
            .shared
            .queued_bytes
            .fetch_sub(frame.len(), Ordering::AcqRel);
        if let Some(held) = self.held.get_mut(frame.stream()) {
            if held.len() < self.queue_frames {
                held.push(Arc::clone(frame));
            } else {
                // As if the queue were full: the client reconnects and resumes.
                self.subscriber.kick();
            }
            return false;
        }
        match self.floors.get(frame.stream()) {
            Some(&floor) if frame.seq() <= floor => false,
            Some(_) => {
                self.floors.remove(frame.stream());
                true
            }
            None => true,
        }
    }

    /// The broker answered the subscription to `stream` at `position`; its replay goes
    /// up to it. Queued frames up to it are dropped, not sent twice; the frames held
    /// while the answer was awaited that come after it are returned, to be sent right
    /// after the replay. `None` when one of them is of another epoch than the answer:
    /// the connection must resume again.
    pub(crate) fn answered(
        &mut self,
        stream: &StreamName,
        position: Position,
    ) -> Option<Vec<Arc<Frame>>> {
        self.floors.insert(stream.clone(), position.seq);
        let held = self.held.remove(stream).unwrap_or_default();
        if held.iter().any(|frame| frame.epoch() != position.epoch) {
            return None;
        }
        Some(
            held.into_iter()
                .filter(|frame| frame.seq() > position.seq)
                .collect(),
        )
    }

    /// Bytes waiting in this connection's queue.
    pub fn queued_bytes(&self) -> usize {
        self.subscriber.shared.queued_bytes.load(Ordering::Acquire)
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

    /// Subscribes to `stream`, resuming after `since` when given (see the
    /// [hub docs](super)).
    pub fn subscribe(&mut self, stream: &StreamName, since: Option<Since>) -> Subscribed {
        let already = self.streams.contains(stream);
        let subscribed = self.hub.add(stream, &self.subscriber, since, !already);
        if !already {
            self.streams.push(stream.clone());
        }
        if subscribed.ask_broker {
            // Its frames wait for the broker's answer (see `answered`).
            self.held.entry(stream.clone()).or_default();
        }
        subscribed
    }

    /// Unsubscribes from `stream`; returns whether it was subscribed.
    pub fn unsubscribe(&mut self, stream: &StreamName) -> bool {
        let Some(at) = self.streams.iter().position(|s| s == stream) else {
            return false;
        };
        self.streams.swap_remove(at);
        self.held.remove(stream);
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
    /// Waits for the kick. Cancel-safe; returns at once if it already happened. One task
    /// waits at a time (the connection's): polling costs an atomic load and, while it
    /// waits, registering its waker, never a lock.
    pub async fn kicked(&self) {
        std::future::poll_fn(|cx| {
            if self.0.kicked.load(Ordering::Acquire) {
                return std::task::Poll::Ready(());
            }
            self.0.kick.register(cx.waker());
            if self.0.kicked.load(Ordering::Acquire) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
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
