//! A connection's end of the hub, and the hub's handle on it.
//!
//! A connection's frames wait in its queue. Where the connection has a socket the hub
//! may write to (an [`Outlet`]), the hub's writer (see `writer`) writes the queue
//! straight out when the socket has room: no wake-up of the connection's task, which
//! only steps in when the socket is full, when its own replies must go first, or when it
//! has frames to sift (see [`Out::held`]).

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::task::AtomicWaker;

use super::{Frame, Hub, Position, Since, Subscribed};
use crate::name::{ConnectionId, StreamName};

/// Pieces written with one vectored write, at most.
const MAX_SLICES: usize = 64;

/// The hub's handle on a connection: where its frames go.
#[derive(Clone, Debug)]
pub(super) struct Subscriber {
    pub(super) id: ConnectionId,
    pub(super) shared: Arc<ConnectionShared>,
}

/// What the hub and a connection share: the connection's outgoing side and its kick.
///
/// The queue is a deque behind a lock that is held to push, to pop, or to write to the
/// socket without waiting; one waker: publishers push, the hub's writer or one task
/// (the connection's) pops or writes. Bounded by `queue_frames` frames and by the
/// connection's byte budget; past either, the connection is kicked (it reconnects and
/// resumes). One allocation per connection for all of it.
#[derive(Debug, Default)]
pub(super) struct ConnectionShared {
    /// Raised when the hub kicks the connection.
    kicked: Flag,
    queued_bytes: AtomicUsize,
    out: Mutex<Out>,
    /// The connection's task, waiting for a frame.
    arrived: AtomicWaker,
    /// The connection is gone: nothing more is queued.
    closed: AtomicBool,
    /// Bytes written to the socket so far, by the task or the hub's writer: how a
    /// stalled write is told from a slow one.
    written: AtomicU64,
    /// The hub's writer has this connection due: it is not added twice.
    due: AtomicBool,
}

/// A socket the hub's writer may write to without waiting, and how a frame is written
/// on it. Set by the transport with [`Connection::attach`].
#[derive(Clone)]
pub(crate) struct Outlet {
    /// The socket, written only when it has room.
    pub(crate) socket: Arc<dyn TryWrite>,
    /// A frame's bytes on this socket, encoded once per frame.
    pub(crate) encode: fn(&Frame) -> &Bytes,
}

impl std::fmt::Debug for Outlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outlet")
    }
}

/// A socket written without waiting: what it takes now, or `WouldBlock`.
pub(crate) trait TryWrite: Send + Sync {
    /// Writes as much of `pieces`, in order, as the socket takes now.
    fn try_write_vectored(&self, pieces: &[IoSlice<'_>]) -> io::Result<usize>;

    /// As [`try_write_vectored`](Self::try_write_vectored), `Pending` for `WouldBlock`
    /// (no waker is registered: the caller wakes whoever waits on the socket).
    fn write_now(&self, pieces: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.try_write_vectored(pieces) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            result => Poll::Ready(result),
        }
    }
}

/// A connection's outgoing side, behind one lock.
#[derive(Debug, Default)]
pub(super) struct Out {
    /// Frames the hub queued, in order.
    frames: VecDeque<Arc<Frame>>,
    /// Bytes that go out before `frames`: the rest of a frame a write cut off midway,
    /// the connection's own replies, frames sifted by its task. Bounded by what one
    /// request answers and one batch of frames: the task writes it all before it reads
    /// again.
    first: VecDeque<Bytes>,
    /// Where the hub's writer may write the queue.
    outlet: Option<Outlet>,
    /// The connection's task holds the hub's writer off: it has replies to put before
    /// the queued frames (a subscription's replay), or frames to sift (held back or
    /// already replayed by a broker). Publishers queue and wake it; the writer writes
    /// nothing.
    held: bool,
    /// The last write found the socket full: the connection's task waits for room and
    /// then writes everything queued, so the hub's writer neither tries nor wakes it
    /// for each frame meanwhile (a stalled client costs a queue push per frame).
    blocked: bool,
}

/// How a write went: `Pending` when the socket took less than everything.
type WriteFn<'a> = dyn FnMut(&[IoSlice<'_>]) -> Poll<io::Result<usize>> + 'a;

impl Out {
    /// Writes `first`, then up to `max_frames` queued frames, through `write`, for as long
    /// as it takes them. A frame cut off midway leaves its rest at the front of `first`,
    /// so the socket always carries whole frames in order, whoever writes next. Notes
    /// whether the socket was left full ([`blocked`](Self::blocked)).
    fn write_out(
        &mut self,
        shared: &ConnectionShared,
        encode: fn(&Frame) -> &Bytes,
        max_frames: usize,
        write: &mut WriteFn<'_>,
    ) -> Poll<io::Result<()>> {
        let written = self.write_some(shared, encode, max_frames, write);
        self.blocked = written.is_pending();
        written
    }

    fn write_some(
        &mut self,
        shared: &ConnectionShared,
        encode: fn(&Frame) -> &Bytes,
        mut max_frames: usize,
        write: &mut WriteFn<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let firsts = self.first.iter().map(|piece| &piece[..]);
                let frames = self
                    .frames
                    .iter()
                    .take(max_frames)
                    .map(|frame| &encode(frame)[..]);
                let mut count = 0;
                for (slice, piece) in slices.iter_mut().zip(firsts.chain(frames)) {
                    *slice = IoSlice::new(piece);
                    count += 1;
                }
                if count == 0 {
                    return Poll::Ready(Ok(()));
                }
                match write(&slices[..count]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(written)) => written,
                    other => return other.map_ok(|_| ()),
                }
            };
            shared.written.fetch_add(written as u64, Ordering::Relaxed);
            let mut left = written;
            while left > 0 {
                if let Some(piece) = self.first.front_mut() {
                    if left < piece.len() {
                        piece.advance(left);
                        break;
                    }
                    left -= piece.len();
                    self.first.pop_front();
                    continue;
                }
                let Some(frame) = self.frames.pop_front() else {
                    break;
                };
                shared.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
                max_frames = max_frames.saturating_sub(1);
                let bytes = encode(&frame);
                if left < bytes.len() {
                    self.first.push_back(bytes.slice(left..));
                    break;
                }
                left -= bytes.len();
            }
            self.shrink();
        }
    }

    /// A burst's room is given back once it has gone out.
    fn shrink(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > IDLE_QUEUE_CAPACITY {
            self.frames.shrink_to(IDLE_QUEUE_CAPACITY);
        }
    }
}

impl ConnectionShared {
    fn out(&self) -> std::sync::MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pop(&self) -> Option<Arc<Frame>> {
        let mut out = self.out();
        let frame = out.frames.pop_front();
        out.shrink();
        frame
    }
}

/// Frames' room a connection keeps while its queue is empty.
pub(super) const IDLE_QUEUE_CAPACITY: usize = 8;

impl Subscriber {
    /// Queues `frame` or kicks the connection.
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
        let mut out = self.shared.out();
        if out.frames.len() >= max_frames {
            drop(out);
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return self.kick();
        }
        out.frames.push_back(Arc::clone(frame));
        if out.blocked && !out.held {
            // The task waits for the socket to have room, and then writes this too.
            return Push::Queued;
        }
        let direct = out.outlet.is_some() && !out.held;
        let due = direct && self.shared.due.swap(true, Ordering::AcqRel);
        drop(out);
        if due {
            // Its write will take this frame too.
            return Push::Queued;
        }
        if direct {
            return Push::Write;
        }
        self.shared.arrived.wake();
        Push::Queued
    }

    /// Writes what is queued straight to the connection's socket, as far as it has room;
    /// wakes the connection's task for the rest (or for an error, which it meets on its
    /// own). Called with none of the hub's locks held.
    pub(super) fn write(&self) {
        // Cleared first: a frame queued from now on makes the connection due again.
        self.shared.due.store(false, Ordering::Release);
        let mut out = self.shared.out();
        let Some(outlet) = out.outlet.clone().filter(|_| !out.held) else {
            drop(out);
            self.shared.arrived.wake();
            return;
        };
        let mut write = |pieces: &[IoSlice<'_>]| outlet.socket.write_now(pieces);
        let done = out.write_out(&self.shared, outlet.encode, usize::MAX, &mut write);
        drop(out);
        if !matches!(done, Poll::Ready(Ok(()))) {
            self.shared.arrived.wake();
        }
    }

    pub(super) fn kick(&self) -> Push {
        self.shared.kicked.raise();
        Push::Kicked
    }
}

pub(super) enum Push {
    /// Queued, and the connection's task woken, or a write of its queue is already due.
    Queued,
    /// Queued; the connection is due for a write ([`Subscriber::write`]), which whoever
    /// queued it asks for once it has let go of the hub's locks.
    Write,
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
    /// The connection's task asked to hold the hub's writer off (see [`Out::held`]).
    holding: bool,
    /// Whether `Out::held` is set, as last told: the lock is taken only to change it.
    held_off: bool,
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
            holding: false,
            held_off: false,
        }
    }

    /// Lets the hub's writer write this connection's frames to `outlet` while the
    /// connection does not hold them off; its task then writes with
    /// [`poll_send`](Self::poll_send), through the same queue. Called from the runtime
    /// that serves the socket: the hub's writer runs there.
    pub(crate) fn attach(&mut self, outlet: Outlet) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.hub.writer.serve_from(runtime);
        }
        self.subscriber.shared.out().outlet = Some(outlet);
    }

    /// Holds the hub's writer off: frames queue for the task, which has replies to put
    /// first. Call before a request can subscribe, so that nothing of the new stream
    /// goes out before its reply and replay.
    pub(crate) fn hold(&mut self) {
        self.holding = true;
        self.sync_held();
    }

    /// Puts `pieces` (whole frames) to go out next, before the queued frames.
    pub(crate) fn send_first(&mut self, pieces: Vec<Bytes>) {
        if !pieces.is_empty() {
            self.subscriber.shared.out().first.extend(pieces);
        }
    }

    /// Lets the hub's writer write again, once the replies are in place (see
    /// [`hold`](Self::hold)), unless frames must be sifted.
    pub(crate) fn release(&mut self) {
        self.holding = false;
        self.sync_held();
    }

    /// Whether the hub's writer must stay off (frames only queue): the task asked, or
    /// frames are to be sifted.
    fn must_hold(&self) -> bool {
        self.holding || self.sifting()
    }

    fn sync_held(&mut self) {
        let held = self.must_hold();
        if held != self.held_off {
            self.held_off = held;
            self.subscriber.shared.out().held = held;
        }
    }

    /// Writes what goes out first, then up to `max_frames` queued frames, through
    /// `write`, encoded with `encode`; `Pending` when `write` is. Cancel-safe: the
    /// socket always carries whole frames in order, and what is not written stays for
    /// the next call, the hub's writer's or the task's.
    pub(crate) fn poll_send(
        &mut self,
        encode: fn(&Frame) -> &Bytes,
        max_frames: usize,
        write: &mut dyn FnMut(&[IoSlice<'_>]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<()>> {
        let mut left = max_frames;
        while self.sifting() {
            let shared = &self.subscriber.shared;
            // One batch at a time: what was sifted goes out before more is.
            ready!(shared.out().write_out(shared, encode, 0, write))?;
            if left == 0 {
                return Poll::Ready(Ok(()));
            }
            // Frames held back or already replayed are sifted here, into what goes out
            // first.
            let mut sifted = Vec::new();
            while sifted.len() < left.min(MAX_SLICES) {
                let Some(frame) = self.try_next_frame() else {
                    break;
                };
                sifted.push(encode(&frame).clone());
            }
            left -= sifted.len();
            let queue_empty = sifted.is_empty();
            self.send_first(sifted);
            self.sync_held();
            if queue_empty {
                break;
            }
        }
        let shared = &self.subscriber.shared;
        shared.out().write_out(shared, encode, left, write)
    }

    /// Whether queued frames must go through [`dequeued`](Self::dequeued) first.
    fn sifting(&self) -> bool {
        !self.held.is_empty() || !self.floors.is_empty()
    }

    /// Resolves when something waits to be written by the task: queued frames, or the
    /// rest of a write. Cancel-safe.
    pub(crate) async fn ready(&self) {
        let shared = &self.subscriber.shared;
        let waiting = || {
            let out = shared.out();
            !out.frames.is_empty() || !out.first.is_empty()
        };
        std::future::poll_fn(|cx| {
            if waiting() {
                return Poll::Ready(());
            }
            shared.arrived.register(cx.waker());
            // Queued before the waker was in place: not missed.
            if waiting() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
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
        self.subscriber.shared.out().frames.capacity()
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
        // Its replay floor goes too, once no frame of it is left to sift: a floor kept
        // for a stream that sends nothing more would hold the hub's writer off for good.
        if self.floors.contains_key(stream) {
            let queued = self
                .subscriber
                .shared
                .out()
                .frames
                .iter()
                .any(|frame| frame.stream() == stream);
            if !queued {
                self.floors.remove(stream);
            }
        }
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

    /// Bytes written to the connection's socket so far, by its task or the hub's
    /// threads: how a stalled write is told from a slow one.
    pub(crate) fn bytes_written(&self) -> u64 {
        self.0.written.load(Ordering::Relaxed)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.subscriber.shared.closed.store(true, Ordering::Release);
        let mut out = self.subscriber.shared.out();
        out.frames.clear();
        out.first.clear();
        // The hub's writer no longer writes to the socket; it closes with its last
        // holder.
        out.outlet = None;
        drop(out);
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

#[cfg(test)]
mod tests {
    use super::super::{HubSettings, Numbering};
    use super::*;

    /// A socket that takes `room` bytes, then would block.
    #[derive(Default)]
    struct Pipe {
        taken: Mutex<Vec<u8>>,
        room: AtomicUsize,
        writes: AtomicUsize,
        /// Writes tried, those that would block included.
        tries: AtomicUsize,
    }

    impl Pipe {
        fn with_room(room: usize) -> Arc<Self> {
            let pipe = Arc::new(Self::default());
            pipe.room.store(room, Ordering::SeqCst);
            pipe
        }

        /// Waits (10 s at most) until another thread has written something.
        fn wait_for_bytes(&self) {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while self.taken().is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }

        fn taken(&self) -> String {
            String::from_utf8(self.taken.lock().expect("lock").clone()).expect("text")
        }
    }

    impl TryWrite for Pipe {
        fn try_write_vectored(&self, pieces: &[IoSlice<'_>]) -> io::Result<usize> {
            self.tries.fetch_add(1, Ordering::SeqCst);
            let room = self.room.load(Ordering::SeqCst);
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut taken = self.taken.lock().expect("lock");
            let mut written = 0;
            for piece in pieces {
                let take = piece.len().min(room - written);
                taken.extend_from_slice(&piece[..take]);
                written += take;
            }
            self.room.fetch_sub(written, Ordering::SeqCst);
            self.writes.fetch_add(1, Ordering::SeqCst);
            Ok(written)
        }
    }

    fn encode(frame: &Frame) -> &Bytes {
        frame.encoded(0, |frame| format!("[{}]", frame.html()).into_bytes())
    }

    /// A hub, and a connection subscribed to `room:1` whose socket is `pipe`.
    fn attached(pipe: &Arc<Pipe>) -> (Arc<Hub>, Connection, StreamName) {
        let hub = Arc::new(Hub::new(
            HubSettings::default(),
            Arc::default(),
            Numbering::Local,
        ));
        let room = StreamName::new("room:1").expect("valid");
        let mut connection = hub.connect();
        connection.subscribe(&room, None);
        connection.attach(Outlet {
            socket: Arc::clone(pipe) as Arc<dyn TryWrite>,
            encode,
        });
        (hub, connection, room)
    }

    /// A runtime that serves sockets: its thread runs on its own.
    fn serving_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("a runtime")
    }

    /// A job runner's runtime: driven while it runs a job (`block_on`), idle after.
    fn jobs_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    }

    fn publish(hub: &Hub, room: &StreamName, html: &str) {
        assert_eq!(hub.publish(room, Arc::from(html), None), 1);
    }

    #[test]
    fn the_publisher_writes_to_a_socket_with_room_and_nothing_waits() {
        let pipe = Pipe::with_room(1 << 20);
        let (hub, mut connection, room) = attached(&pipe);
        for html in ["a", "b", "c"] {
            publish(&hub, &room, html);
        }
        assert_eq!(pipe.taken(), "[a][b][c]");
        assert_eq!(pipe.writes.load(Ordering::SeqCst), 3);
        assert!(connection.try_next_frame().is_none());
        assert_eq!(connection.queued_bytes(), 0);
        assert_eq!(connection.kick_signal().bytes_written(), 9);
    }

    #[test]
    fn a_full_socket_keeps_whole_frames_in_order_whoever_writes_next() {
        let pipe = Pipe::with_room(5);
        let (hub, mut connection, room) = attached(&pipe);
        publish(&hub, &room, "hello");
        assert_eq!(
            pipe.taken(),
            "[hell",
            "the socket took what it had room for"
        );
        // Full: queued for the task, which waits for room.
        publish(&hub, &room, "x");
        assert_eq!(pipe.taken(), "[hell");
        // It finishes the cut frame before the next ones.
        pipe.room.store(100, Ordering::SeqCst);
        let mut write = |pieces: &[IoSlice<'_>]| pipe.write_now(pieces);
        assert!(connection.poll_send(encode, 64, &mut write).is_ready());
        assert_eq!(pipe.taken(), "[hello][x]");
        // With room, the publisher writes again; a frame it cuts off, the task finishes.
        publish(&hub, &room, "y");
        assert_eq!(pipe.taken(), "[hello][x][y]");
        pipe.room.store(3, Ordering::SeqCst);
        publish(&hub, &room, "zz");
        publish(&hub, &room, "w");
        assert_eq!(pipe.taken(), "[hello][x][y][zz");
        let mut write = |pieces: &[IoSlice<'_>]| pipe.write_now(pieces);
        assert!(connection.poll_send(encode, 64, &mut write).is_pending());
        pipe.room.store(100, Ordering::SeqCst);
        let mut write = |pieces: &[IoSlice<'_>]| pipe.write_now(pieces);
        assert!(matches!(
            connection.poll_send(encode, 64, &mut write),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(pipe.taken(), "[hello][x][y][zz][w]");
        assert_eq!(connection.queued_bytes(), 0);
    }

    #[test]
    fn a_full_socket_is_not_tried_again_until_its_task_writes() {
        let pipe = Pipe::with_room(0);
        let (hub, mut connection, room) = attached(&pipe);
        publish(&hub, &room, "a");
        assert_eq!(pipe.tries.load(Ordering::SeqCst), 1, "found full");
        // A stalled client costs a queue push per frame: no write tried, no wake-up.
        for html in ["b", "c"] {
            publish(&hub, &room, html);
        }
        assert_eq!(pipe.tries.load(Ordering::SeqCst), 1);
        assert_eq!(connection.subscriber.shared.out().frames.len(), 3);
        // Its task, once the socket has room, writes them all in one write.
        pipe.room.store(100, Ordering::SeqCst);
        let mut write = |pieces: &[IoSlice<'_>]| pipe.write_now(pieces);
        assert!(matches!(
            connection.poll_send(encode, 64, &mut write),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(pipe.taken(), "[a][b][c]");
        assert_eq!(pipe.tries.load(Ordering::SeqCst), 2);
        // And the hub writes straight to the socket again.
        publish(&hub, &room, "d");
        assert_eq!(pipe.taken(), "[a][b][c][d]");
        assert_eq!(connection.queued_bytes(), 0);
    }

    #[test]
    fn held_off_the_publisher_queues_and_the_replies_go_first() {
        let pipe = Pipe::with_room(1 << 20);
        let (hub, mut connection, room) = attached(&pipe);
        connection.hold();
        publish(&hub, &room, "a");
        assert_eq!(pipe.taken(), "", "held off: nothing written");
        connection.send_first(vec![Bytes::from_static(b"<subscribed>")]);
        connection.release();
        let mut write = |pieces: &[IoSlice<'_>]| pipe.write_now(pieces);
        assert!(connection.poll_send(encode, 64, &mut write).is_ready());
        assert_eq!(pipe.taken(), "<subscribed>[a]");
        publish(&hub, &room, "b");
        assert_eq!(
            pipe.taken(),
            "<subscribed>[a][b]",
            "released: written at once"
        );
    }

    #[test]
    fn frames_to_sift_wait_for_the_task_which_drops_those_already_sent() {
        let pipe = Pipe::with_room(1 << 20);
        let (hub, mut connection, room) = attached(&pipe);
        // A broker's replay went up to 2: frames up to it are not sent twice.
        connection.floors.insert(room.clone(), 2);
        connection.sync_held();
        for html in ["1", "2", "3"] {
            publish(&hub, &room, html);
        }
        assert_eq!(pipe.taken(), "");
        let mut write = |pieces: &[IoSlice<'_>]| pipe.write_now(pieces);
        assert!(connection.poll_send(encode, 64, &mut write).is_ready());
        assert_eq!(pipe.taken(), "[3]");
        // Past the floor, nothing is left to sift: the publisher writes again.
        publish(&hub, &room, "4");
        assert_eq!(pipe.taken(), "[3][4]");
    }

    #[tokio::test]
    async fn frames_queued_before_the_writer_runs_go_out_in_one_write() {
        let pipe = Pipe::with_room(1 << 20);
        let (hub, connection, room) = attached(&pipe);
        for html in ["a", "b", "c"] {
            publish(&hub, &room, html);
        }
        assert_eq!(pipe.taken(), "", "the writer has not run yet");
        assert_eq!(hub.writer.due(), 1, "due once, however many frames");
        tokio::task::yield_now().await;
        assert_eq!(pipe.taken(), "[a][b][c]");
        assert_eq!(pipe.writes.load(Ordering::SeqCst), 1);
        assert_eq!(connection.queued_bytes(), 0);
    }

    #[test]
    fn a_hub_that_outlives_its_first_runtime_still_writes() {
        let pipe = Pipe::with_room(1 << 20);
        let (hub, _connection, room) = attached(&pipe);
        for (html, expected) in [("a", "[a]"), ("b", "[a][b]")] {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                publish(&hub, &room, html);
                tokio::task::yield_now().await;
            });
            // The runtime, and the writer's task with it, is gone.
            drop(runtime);
            assert_eq!(pipe.taken(), expected);
        }
    }

    #[test]
    fn sifting_a_slow_socket_keeps_one_batch_out_and_the_rest_queued() {
        let pipe = Pipe::with_room(0);
        let (hub, mut connection, room) = attached(&pipe);
        // A replay floor on a quiet stream: the frames of the busy one are sifted.
        let quiet = StreamName::new("room:2").expect("valid");
        connection.subscribe(&quiet, None);
        connection.floors.insert(quiet, 5);
        connection.sync_held();
        for i in 0..200 {
            publish(&hub, &room, &i.to_string());
        }
        // Woken again and again while the socket takes nothing: one batch is sifted,
        // the rest stays queued, counted against the connection's limits.
        for _ in 0..5 {
            let mut write = |pieces: &[IoSlice<'_>]| pipe.write_now(pieces);
            assert!(connection.poll_send(encode, 64, &mut write).is_pending());
        }
        assert_eq!(connection.subscriber.shared.out().first.len(), 64);
        assert_eq!(connection.subscriber.shared.out().frames.len(), 136);
        // Room again, and a shutdown's flush: everything, in order.
        pipe.room.store(1 << 20, Ordering::SeqCst);
        let mut write = |pieces: &[IoSlice<'_>]| pipe.write_now(pieces);
        assert!(
            connection
                .poll_send(encode, usize::MAX, &mut write)
                .is_ready()
        );
        let all: String = (0..200).map(|i| format!("[{i}]")).collect();
        assert_eq!(pipe.taken(), all);
        assert_eq!(connection.queued_bytes(), 0);
    }

    #[test]
    fn a_floor_goes_with_its_stream_and_the_writer_writes_again() {
        let pipe = Pipe::with_room(1 << 20);
        let (hub, mut connection, room) = attached(&pipe);
        let other = StreamName::new("room:2").expect("valid");
        connection.subscribe(&other, None);
        connection.floors.insert(other.clone(), 5);
        connection.sync_held();
        publish(&hub, &room, "a");
        assert_eq!(pipe.taken(), "", "held off while a floor is kept");
        assert!(connection.unsubscribe(&other));
        connection.sync_held();
        let mut write = |pieces: &[IoSlice<'_>]| pipe.write_now(pieces);
        assert!(connection.poll_send(encode, 64, &mut write).is_ready());
        publish(&hub, &room, "b");
        assert_eq!(pipe.taken(), "[a][b]", "written at once again");
    }

    #[test]
    fn connections_due_when_the_runtime_went_away_are_written_by_the_next_one() {
        let pipe = Pipe::with_room(1 << 20);
        let (hub, _connection, room) = attached(&pipe);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        // The writer is started but never runs: the runtime goes first.
        runtime.block_on(async { publish(&hub, &room, "a") });
        drop(runtime);
        assert_eq!(pipe.taken(), "");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            publish(&hub, &room, "b");
            tokio::task::yield_now().await;
        });
        assert_eq!(pipe.taken(), "[a][b]");
    }

    #[test]
    fn a_publisher_on_a_runtime_driven_now_and_then_leaves_the_writes_to_the_serving_one() {
        let pipe = Pipe::with_room(1 << 20);
        let serving = serving_runtime();
        let (hub, _connection, room) = serving.block_on(async { attached(&pipe) });
        // Kept after its job, idle.
        let jobs = jobs_runtime();
        jobs.block_on(async { publish(&hub, &room, "a") });
        pipe.wait_for_bytes();
        assert_eq!(pipe.taken(), "[a]", "written by the serving runtime");
        drop(jobs);
    }

    #[test]
    fn the_writer_moves_to_the_serving_runtime_with_what_is_due() {
        let pipe = Pipe::with_room(1 << 20);
        let (hub, _connection, room) = attached(&pipe);
        let jobs = jobs_runtime();
        // The writer starts on the publisher's runtime, which then idles: "a" waits.
        jobs.block_on(async { publish(&hub, &room, "a") });
        assert_eq!(pipe.taken(), "");
        let serving = serving_runtime();
        let other = Pipe::with_room(1 << 20);
        let _served = serving.block_on(async {
            let mut connection = hub.connect();
            connection.attach(Outlet {
                socket: Arc::clone(&other) as Arc<dyn TryWrite>,
                encode,
            });
            connection
        });
        pipe.wait_for_bytes();
        assert_eq!(pipe.taken(), "[a]", "written from the serving runtime");
        drop(jobs);
    }

    #[test]
    fn a_serving_runtime_that_is_gone_leaves_the_writes_to_the_next_publisher() {
        let pipe = Pipe::with_room(1 << 20);
        let serving = serving_runtime();
        let (hub, _connection, room) = serving.block_on(async { attached(&pipe) });
        // The server stops, its runtime with it; the hub and the connection live on.
        drop(serving);
        let next = jobs_runtime();
        next.block_on(async {
            publish(&hub, &room, "a");
            tokio::task::yield_now().await;
        });
        assert_eq!(pipe.taken(), "[a]", "written on the publisher's runtime");
    }

    #[test]
    fn a_closed_connection_is_no_longer_written_to() {
        let pipe = Pipe::with_room(1 << 20);
        let (hub, connection, room) = attached(&pipe);
        let writes = Subscriber {
            id: connection.id(),
            shared: Arc::clone(&connection.subscriber.shared),
        };
        drop(connection);
        assert_eq!(hub.publish(&room, Arc::from("a"), None), 0);
        writes.write();
        assert_eq!(pipe.taken(), "");
    }
}
