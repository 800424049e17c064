//! A connection's end of the hub, and the hub's handle on it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use super::{Frame, Hub, Position, Since, Subscribed};
use crate::name::{ConnectionId, StreamName};

/// The hub's handle on a connection: where its frames go.
#[derive(Clone, Debug)]
pub(super) struct Subscriber {
    pub(super) id: ConnectionId,
    pub(super) shared: Arc<ConnectionShared>,
}

/// What the hub and a connection share: the connection's queue of frames and its kick.
///
/// The queue is a deque behind a lock that is held only to push or pop one frame, with
/// one waker: the hub's threads push, one task (the connection's) pops. Bounded by
/// `queue_frames` frames and by the connection's byte budget; past either, the
/// connection is kicked (it reconnects and resumes). One allocation per connection for
/// all of it, where a channel took two and about three times the memory.
#[derive(Debug, Default)]
pub(super) struct ConnectionShared {
    /// Raised when the hub kicks the connection.
    kicked: Flag,
    queued_bytes: AtomicUsize,
    frames: Mutex<VecDeque<Arc<Frame>>>,
    /// The connection's task, waiting for a frame.
    arrived: AtomicWaker,
    /// The connection is gone: nothing more is queued.
    closed: AtomicBool,
}

impl ConnectionShared {
    fn frames(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Frame>>> {
        self.frames.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pop(&self) -> Option<Arc<Frame>> {
        let mut frames = self.frames();
        let frame = frames.pop_front();
        // A burst's room is given back once it has gone out.
        if frames.is_empty() && frames.capacity() > IDLE_QUEUE_CAPACITY {
            frames.shrink_to(IDLE_QUEUE_CAPACITY);
        }
        frame
    }
}

/// Frames' room a connection keeps while its queue is empty.
pub(super) const IDLE_QUEUE_CAPACITY: usize = 8;

impl Subscriber {
    /// Queues `frame` or kicks the connection. Returns whether it was queued.
    pub(super) fn push(&self, frame: &Arc<Frame>, max_bytes: usize, max_frames: usize) -> Push {
        let len = frame.len();
        let before = self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before + len > max_bytes {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return self.kick();
        }
        if self.shared.closed.load(Ordering::Acquire) {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return Push::Gone;
        }
        let mut frames = self.shared.frames();
        if frames.len() >= max_frames {
            drop(frames);
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return self.kick();
        }
        frames.push_back(Arc::clone(frame));
        drop(frames);
        self.shared.arrived.wake();
        Push::Queued
    }

    pub(super) fn kick(&self) -> Push {
        self.shared.kicked.raise();
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
        Self {
            hub,
            subscriber: Subscriber {
                id,
                shared: Arc::default(),
            },
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

    /// The next frame for this connection, in order. `None` only once the hub is gone
    /// (never while the connection holds it, as it does: the option is for callers that
    /// treat the end of the queue as the end of the connection).
    ///
    /// Cancel-safe: a frame is never lost when the future is dropped.
    pub async fn next_frame(&mut self) -> Option<Arc<Frame>> {
        loop {
            let shared = &self.subscriber.shared;
            let frame = std::future::poll_fn(|cx| {
                if let Some(frame) = shared.pop() {
                    return Poll::Ready(frame);
                }
                shared.arrived.register(cx.waker());
                // A frame pushed before the waker was in place is not missed.
                shared.pop().map_or(Poll::Pending, Poll::Ready)
            })
            .await;
            if self.dequeued(&frame) {
                return Some(frame);
            }
        }
    }

    /// The next frame if one is queued, without waiting.
    pub fn try_next_frame(&mut self) -> Option<Arc<Frame>> {
        loop {
            let frame = self.subscriber.shared.pop()?;
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
        // Most connections hold nothing back and have no floor: no hashing for them.
        if self.held.is_empty() && self.floors.is_empty() {
            return true;
        }
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

    /// Room for frames in this connection's queue.
    #[cfg(test)]
    pub(super) fn queue_capacity(&self) -> usize {
        self.subscriber.shared.frames().capacity()
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
        self.subscriber.shared.kicked.is_raised()
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
        self.0.kicked.raised().await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.subscriber.shared.closed.store(true, Ordering::Release);
        self.subscriber.shared.frames().clear();
        for stream in self.streams.drain(..) {
            self.hub.remove(&stream, self.subscriber.id);
        }
        self.hub.metrics.connection_closed();
    }
}

/// A one-way signal for one waiting task: raised once, awaited without a lock.
///
/// Waiting costs an atomic load and, while it is not raised, registering the task's
/// waker: cheap enough for a connection's loop to poll on every wake-up.
#[derive(Debug, Default)]
pub(crate) struct Flag {
    raised: AtomicBool,
    waiter: AtomicWaker,
}

impl Flag {
    /// Raises it and wakes the waiting task, if any.
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.waiter.wake();
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Resolves once it is raised (at once if it already is). Cancel-safe; one task
    /// waits at a time.
    pub(crate) async fn raised(&self) {
        std::future::poll_fn(|cx| {
            if self.is_raised() {
                return Poll::Ready(());
            }
            self.waiter.register(cx.waker());
            // Raised before the waker was in place: not missed.
            if self.is_raised() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}
