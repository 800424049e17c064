//! The hub: who is subscribed to what, the fan-out of one frame to all of them, and the
//! bounded history that lets a reconnecting client resume.
//!
//! # Ordering
//!
//! Each stream has a sequence number, raised by one per broadcast under the stream's
//! lock; frames enter every subscriber's queue in that order, and a connection writes its
//! queue in order. On one stream every subscriber sees broadcasts in publish order,
//! numbered without gaps.
//!
//! # Resume
//!
//! While a stream has subscribers, and for [`history_age`](HubSettings::history_age)
//! after its last one left, the hub keeps its last
//! [`history_len`](HubSettings::history_len) frames (defaults: 100 frames, 5 minutes)
//! and an *epoch*: a random number fixed when the stream's record is created. A client
//! that reconnects subscribes with the epoch and the last sequence number it applied
//! ([`Since::Position`]); a page's first subscription names the time its request began
//! ([`Since::Time`]). The hub replays the frames after it, then the client is live.
//! Adding the subscriber and copying the replay happen under one lock, so nothing is
//! lost or repeated at the seam. If the frames are gone (trimmed by count or age, or the
//! record was dropped or the process restarted, which changes the epoch), the hub
//! answers with a [`Gap`] instead, and the client recovers (by default the page
//! refreshes). There is never a silent hole.
//!
//! # Cost
//!
//! A broadcast is rendered once by its sender; the hub makes one shared [`Frame`] of it
//! and each transport encodes that frame once; every subscriber receives the same shared
//! bytes through one non-blocking queue push. Sockets that the hub may write to (those
//! accepted by [`web::Listener`](crate::web::Listener)) are then written by one writer
//! task, without waking each connection's task: as many frames as each socket has room
//! for, those that gathered in its queue meanwhile in one write; a connection's task
//! writes only when its socket was full, or its own replies must go first.
//!
//! A broadcast to a stream nobody watches is kept for [`COLD_WINDOW`] (10 s), so that a
//! page rendered meanwhile still gets it when it connects; then the stream's record is
//! dropped.
//!
//! # Slow consumers
//!
//! Each connection's queue is bounded by frames ([`queue_frames`](HubSettings::queue_frames),
//! default 256) and bytes ([`queue_bytes`](HubSettings::queue_bytes), default 1 MiB). A
//! connection whose queue would overflow is *kicked*: the frame is not queued and the
//! connection closes with code 1013 so that its client reconnects and resumes from
//! history. Other subscribers never wait for it.
//!
//! # Brokers
//!
//! With a broker backend ([`Numbering::Broker`]), the broker numbers broadcasts and
//! feeds them to the hub of every process through a [`Feed`]; a stream's position is
//! unknown to a hub until it has learned it, and a subscription the hub cannot answer is
//! handed to the broker.

mod connection;
mod frame;
mod history;
mod writer;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use connection::{Connection, KickSignal};
pub(crate) use connection::{Flag, Outlet, TryWrite};
use connection::{Push, Subscriber};
pub use frame::{Frame, Gap, Position, Since};
pub(crate) use frame::{Record, Resolution, UNKNOWN, resolve};
use history::History;

use crate::clock;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::name::{ConnectionId, StreamName};

/// Limits of the hub, set through the [`Builder`](crate::Builder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubSettings {
    /// Frames a connection may have queued before it is kicked.
    pub queue_frames: usize,
    /// Bytes a connection may have queued before it is kicked.
    pub queue_bytes: usize,
    /// Frames of history kept per stream.
    pub history_len: usize,
    /// How long frames are kept, and how long a stream's record outlives its last
    /// subscriber.
    pub history_age: Duration,
    /// Bytes of history kept over all streams; past it, the oldest frames go first.
    pub history_bytes: usize,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            queue_frames: 256,
            queue_bytes: 1024 * 1024,
            history_len: 100,
            history_age: Duration::from_secs(300),
            history_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Who numbers a stream's broadcasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbering {
    /// This process's hub: one process, nothing else running.
    Local,
    /// A broker shared by several processes; the hub learns positions from it.
    Broker,
}

/// The outcome of a subscription.
#[derive(Debug)]
#[non_exhaustive]
pub struct Subscribed {
    /// Where the stream is now; live frames continue from `position.seq + 1`.
    pub position: Position,
    /// Frames the client missed, in order, to write before any queued frame.
    pub replay: Vec<Arc<Frame>>,
    /// Set when the client asked to resume and the hub could not fill the gap.
    pub gap: Option<Gap>,
    /// `false` when the connection was already subscribed (nothing changed).
    pub new: bool,
    /// With a broker: this hub cannot answer (it has not learned the stream's position,
    /// or does not keep what the client missed); the broker must.
    pub(crate) ask_broker: bool,
}

#[derive(Debug)]
struct StreamState {
    /// Where the stream is; `None` with a broker until the hub has learned it.
    position: Option<Position>,
    history: History,
    /// When this record was made (microseconds since the Unix epoch).
    created: u64,
    subscribers: Vec<Subscriber>,
    /// When the last subscriber left (or when the record was made without one); the
    /// record is dropped `history_age` later, or [`COLD_WINDOW`] later if it never had a
    /// subscriber.
    idle_since: Option<Instant>,
    /// Whether anyone ever subscribed.
    watched: bool,
}

#[derive(Debug)]
struct Shard {
    streams: HashMap<StreamName, StreamState>,
    last_sweep: Instant,
    /// Bytes of history kept by this shard's streams.
    bytes: usize,
    /// No kept frame of this shard is older than this (`u64::MAX`: none is kept). Kept
    /// low when frames are trimmed; made exact when the shard is evicted from.
    oldest: u64,
}

impl Shard {
    /// Drops the oldest kept frame of the shard's streams; returns the bytes freed and
    /// updates the shard's `oldest`.
    fn evict_oldest(&mut self) -> usize {
        let oldest = self
            .streams
            .iter()
            .filter_map(|(name, state)| Some((state.history.oldest_time()?, name)))
            .min_by_key(|(time, _)| *time)
            .map(|(_, name)| name.clone());
        let freed = match oldest.and_then(|stream| self.streams.get_mut(&stream)) {
            Some(state) => state.history.pop_front(),
            None => 0,
        };
        self.bytes -= freed;
        self.oldest = self
            .streams
            .values()
            .filter_map(|state| state.history.oldest_time())
            .min()
            .unwrap_or(u64::MAX);
        freed
    }
}

/// Subscriptions, fan-out and history for the connections of this process.
#[derive(Debug)]
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// This process's identity among those sharing a broker; part of every connection id.
    process: u64,
    next_connection: AtomicU64,
    settings: HubSettings,
    pub(crate) metrics: Arc<Metrics>,
    numbering: Numbering,
    /// A record dropped (or lost with a previous process) may have held frames up to
    /// this time: pages rendered before it cannot be sure of a new record.
    forgotten_until: AtomicU64,
    /// Bytes of history kept over all shards.
    history_bytes: AtomicUsize,
    /// Writes queued broadcasts to the sockets that have room.
    writer: Arc<writer::Writer>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.writer.close();
    }
}

/// Streams are spread over this many locks, so that unrelated streams rarely contend.
const SHARDS: usize = 16;

/// How often a shard looks for idle stream records to drop.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How long broadcasts to a stream that nobody has subscribed to are kept: long enough
/// for a page rendered meanwhile to connect and replay them.
pub const COLD_WINDOW: Duration = Duration::from_secs(10);

/// A fresh epoch: random, never 0. Stream records get one when they are made, here or
/// in a broker.
pub(crate) fn new_epoch() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes).max(1);
    }
    // Without OS randomness, the clock still makes restarts differ; the counter makes
    // records of one process differ.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    clock::now_micros()
        .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .max(1)
}

impl Hub {
    /// A hub with these limits, numbering streams itself or learning positions from a
    /// broker.
    pub(crate) fn new(settings: HubSettings, metrics: Arc<Metrics>, numbering: Numbering) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        streams: HashMap::new(),
                        last_sweep: Instant::now(),
                        bytes: 0,
                        oldest: u64::MAX,
                    })
                })
                .collect(),
            hasher: RandomState::new(),
            process: new_epoch(),
            next_connection: AtomicU64::new(1),
            settings: HubSettings {
                queue_frames: settings.queue_frames.max(1),
                ..settings
            },
            metrics,
            numbering,
            // Whatever a previous process kept is gone.
            forgotten_until: AtomicU64::new(clock::now_micros()),
            history_bytes: AtomicUsize::new(0),
            writer: Arc::default(),
        }
    }

    /// Bytes of history kept now, over all streams.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes.load(Ordering::Relaxed)
    }

    /// The limits this hub runs with.
    pub fn settings(&self) -> HubSettings {
        self.settings
    }

    fn shard(&self, stream: &StreamName) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(stream) % SHARDS as u64) as usize;
        // A panic while holding a shard lock leaves the map consistent (no partial
        // updates span an unwind point), so a poisoned lock is still usable.
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if now.duration_since(shard.last_sweep) >= SWEEP_EVERY {
            shard.last_sweep = now;
            let age = self.settings.history_age;
            let mut forgotten = 0;
            let mut freed = 0;
            shard.streams.retain(|_, state| {
                let keep_for = if state.watched { age } else { COLD_WINDOW };
                let keep = state
                    .idle_since
                    .is_none_or(|idle| now.duration_since(idle) < keep_for);
                if !keep {
                    if let Some(last) = state.history.newest_time() {
                        forgotten = forgotten.max(last);
                    }
                    freed += state.history.bytes();
                }
                keep
            });
            self.freed(&mut shard, freed);
            self.forgotten_until.fetch_max(forgotten, Ordering::Relaxed);
        }
        shard
    }

    /// Opens a connection: a queue and an id. Subscribe it with
    /// [`Connection::subscribe`]; drop it to leave every stream.
    pub fn connect(self: &Arc<Self>) -> Connection {
        let id = ConnectionId::new(
            self.process,
            self.next_connection.fetch_add(1, Ordering::Relaxed),
        );
        self.metrics.connection_opened();
        Connection::new(Arc::clone(self), id, self.settings.queue_frames)
    }

    /// A record for a stream nobody watches yet.
    fn new_state(&self) -> StreamState {
        StreamState {
            position: match self.numbering {
                Numbering::Local => Some(Position::new(new_epoch(), 0)),
                Numbering::Broker => None,
            },
            history: History::default(),
            created: clock::now_micros(),
            subscribers: Vec::new(),
            idle_since: Some(Instant::now()),
            watched: false,
        }
    }

    /// The stream's record, made if there is none: the one place records are made.
    fn state<'s>(&self, shard: &'s mut Shard, stream: &StreamName) -> &'s mut StreamState {
        shard
            .streams
            .entry(stream.clone())
            .or_insert_with(|| self.new_state())
    }

    fn add(
        &self,
        stream: &StreamName,
        subscriber: &Subscriber,
        since: Option<Since>,
        new: bool,
    ) -> Subscribed {
        let mut shard = self.shard(stream);
        let freed = self.state(&mut shard, stream).history.trim(self.settings);
        self.freed(&mut shard, freed);
        let state = self.state(&mut shard, stream);
        if new {
            state.subscribers.push(subscriber.clone());
            state.idle_since = None;
            state.watched = true;
            self.metrics.subscribed();
        }
        let Some(position) = state.position else {
            // A broker's stream this hub has not learned yet.
            return Subscribed {
                position: UNKNOWN,
                replay: Vec::new(),
                gap: None,
                new,
                ask_broker: new,
            };
        };
        let resolution = match since {
            Some(since) if new => resolve(
                since,
                &Record {
                    position,
                    kept: &state.history.positions(),
                    trimmed_until: state.history.trimmed_until(),
                    created: state.created,
                    forgotten_until: self.forgotten_until.load(Ordering::Relaxed),
                },
            ),
            _ => Resolution::After(position.seq),
        };
        if self.numbering == Numbering::Broker && new {
            // This hub's record starts when it learned the stream: older frames, and
            // what it trimmed, are the broker's to answer for.
            let learned_late = matches!(since, Some(Since::Time(t)) if state.created > t);
            if learned_late || resolution == Resolution::Gap(Gap::History) {
                return Subscribed {
                    position,
                    replay: Vec::new(),
                    gap: None,
                    new,
                    ask_broker: true,
                };
            }
        }
        let (replay, gap) = match resolution {
            Resolution::After(seq) => (
                state.history.frames_after(seq, stream, position.epoch),
                None,
            ),
            Resolution::Gap(gap) => (Vec::new(), Some(gap)),
        };
        if gap.is_some() {
            self.metrics.gap();
        } else if !replay.is_empty() {
            self.metrics.replayed(replay.len());
        }
        Subscribed {
            position,
            replay,
            gap,
            new,
            ask_broker: false,
        }
    }

    fn remove(&self, stream: &StreamName, id: ConnectionId) {
        let mut shard = self.shard(stream);
        let Some(state) = shard.streams.get_mut(stream) else {
            return;
        };
        if let Some(at) = state.subscribers.iter().position(|s| s.id == id) {
            state.subscribers.swap_remove(at);
            self.metrics.unsubscribed();
            if state.subscribers.is_empty() {
                state.idle_since = Some(Instant::now());
            }
        }
    }

    /// Number of connections subscribed to `stream` in this process.
    pub fn subscriber_count(&self, stream: &StreamName) -> usize {
        self.shard(stream)
            .streams
            .get(stream)
            .map_or(0, |s| s.subscribers.len())
    }

    /// Numbers a rendered `<turbo-stream>` element in `stream`, keeps it in the history
    /// and pushes it onto each local subscriber's queue (`except` gets a `skip` in its
    /// place: its page already shows the change). Returns the number of queues it
    /// reached.
    fn publish(&self, stream: &StreamName, html: Arc<str>, except: Option<ConnectionId>) -> usize {
        let mut shard = self.shard(stream);
        let state = self.state(&mut shard, stream);
        let position = state.position.map_or_else(
            || Position::new(new_epoch(), 1),
            |p| Position::new(p.epoch, p.seq + 1),
        );
        state.position = Some(position);
        let frame = Frame::message(stream, position, clock::now_micros(), html);
        let mut writes = Vec::new();
        let delivered = self.fan_out(&mut shard, stream, &frame, except, &mut writes);
        drop(shard);
        self.writer.schedule(writes);
        self.evict_over_budget();
        delivered
    }

    /// Keeps `frame` in the history (within the byte budget) and pushes it onto every
    /// subscriber's queue (a skip for `except`); adds to `writes` the subscribers whose
    /// sockets the caller writes to once the shard is unlocked.
    fn fan_out(
        &self,
        shard: &mut Shard,
        stream: &StreamName,
        frame: &Arc<Frame>,
        except: Option<ConnectionId>,
        writes: &mut Vec<Subscriber>,
    ) -> usize {
        self.metrics.frame_built();
        let state = self.state(shard, stream);
        let added = state.history.push(frame);
        let freed = state.history.trim(self.settings);
        let delivered = self.push_to_subscribers(state, stream, frame, except, writes);
        shard.bytes += added;
        shard.oldest = shard.oldest.min(frame.time());
        self.history_bytes.fetch_add(added, Ordering::AcqRel);
        self.freed(shard, freed);
        delivered
    }

    /// Accounts for history bytes a shard no longer keeps.
    fn freed(&self, shard: &mut Shard, bytes: usize) {
        shard.bytes -= bytes;
        self.history_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// While the history passes its byte budget, drops the oldest kept frames, over all
    /// shards (with room to spare, so that a burst does not evict frame by frame). Called
    /// with no shard locked.
    fn evict_over_budget(&self) {
        let budget = self.settings.history_bytes;
        if self.history_bytes.load(Ordering::Acquire) <= budget {
            return;
        }
        let target = budget - budget / 8;
        // Bounded, like everything else: a pass frees at most this many frames.
        for _ in 0..100_000 {
            if self.history_bytes.load(Ordering::Acquire) <= target {
                return;
            }
            let oldest = self
                .shards
                .iter()
                .enumerate()
                .map(|(i, shard)| {
                    let shard = shard
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    (shard.oldest, i)
                })
                .min();
            let Some((time, index)) = oldest else {
                return;
            };
            if time == u64::MAX {
                return;
            }
            let mut shard = self.shards[index]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let freed = shard.evict_oldest();
            self.history_bytes.fetch_sub(freed, Ordering::AcqRel);
        }
    }

    /// Pushes `frame` onto every subscriber's queue (a skip for `except`); drops the
    /// subscribers that are gone or too slow. Those whose sockets the caller is to write
    /// go into `writes`.
    fn push_to_subscribers(
        &self,
        state: &mut StreamState,
        stream: &StreamName,
        frame: &Arc<Frame>,
        except: Option<ConnectionId>,
        writes: &mut Vec<Subscriber>,
    ) -> usize {
        let (max_bytes, max_frames) = (self.settings.queue_bytes, self.settings.queue_frames);
        let mut skip: Option<Arc<Frame>> = None;
        let mut delivered = 0;
        let mut lost = 0;
        state.subscribers.retain(|subscriber| {
            let this = if Some(subscriber.id) == except {
                skip.get_or_insert_with(|| Frame::skip(frame))
            } else {
                frame
            };
            match subscriber.push(this, max_bytes, max_frames) {
                Push::Queued => {
                    delivered += 1;
                    true
                }
                Push::Write => {
                    delivered += 1;
                    writes.push(subscriber.clone());
                    true
                }
                Push::Kicked => {
                    self.metrics.slow_consumer_kicked();
                    tracing::warn!(
                        connection = subscriber.id.get(),
                        %stream,
                        "connection fell behind; closing it so that it reconnects and resumes"
                    );
                    lost += 1;
                    false
                }
                Push::Gone => {
                    lost += 1;
                    false
                }
            }
        });
        for _ in 0..lost {
            self.metrics.unsubscribed();
        }
        if lost > 0 && state.subscribers.is_empty() {
            state.idle_since = Some(Instant::now());
        }
        self.metrics.delivered(delivered);
        delivered
    }

    /// Delivers a frame a broker numbered. Frames it already has are ignored; when the
    /// broker's epoch changes or frames are missing (a lost broker connection), the
    /// stream's subscribers are closed so that they reconnect and resume from the
    /// broker (which replays or tells them of the gap).
    fn deliver_numbered(
        &self,
        stream: &StreamName,
        position: Position,
        time: u64,
        html: Arc<str>,
        except: Option<ConnectionId>,
    ) -> usize {
        let mut shard = self.shard(stream);
        // A stream with no record here is watched by nobody here: the broker keeps its
        // frames, and a subscription asks the broker first.
        if !shard.streams.contains_key(stream) {
            return 0;
        }
        let state = self.state(&mut shard, stream);
        let mut freed = 0;
        if let Some(known) = state.position {
            if known.epoch == position.epoch && position.seq <= known.seq {
                return 0;
            }
            if known.epoch != position.epoch || position.seq > known.seq + 1 {
                self.kick_all_of(
                    state,
                    stream,
                    "the broker's stream moved on without this process",
                );
                freed = state.history.drop_all();
            }
        }
        state.position = Some(position);
        self.freed(&mut shard, freed);
        let frame = Frame::message(stream, position, time, html);
        let mut writes = Vec::new();
        let delivered = self.fan_out(&mut shard, stream, &frame, except, &mut writes);
        drop(shard);
        self.writer.schedule(writes);
        self.evict_over_budget();
        delivered
    }

    /// Records a position learned from the broker (when answering a subscription), if
    /// this hub had not learned one yet.
    fn learn(&self, stream: &StreamName, position: Position) {
        let mut shard = self.shard(stream);
        if let Some(state) = shard.streams.get_mut(stream)
            && state.position.is_none()
        {
            state.position = Some(position);
        }
    }

    /// Closes every connection (they reconnect and resume) and forgets every position:
    /// after the broker connection was lost, frames may have been missed.
    fn resync_all(&self, why: &str) {
        self.forgotten_until
            .fetch_max(clock::now_micros(), Ordering::Relaxed);
        for shard in &self.shards {
            let mut shard = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut freed = 0;
            for (stream, state) in &mut shard.streams {
                self.kick_all_of(state, stream, why);
                freed += state.history.reset();
                state.position = None;
                state.created = clock::now_micros();
            }
            self.freed(&mut shard, freed);
        }
    }

    /// Drops the record of `stream` if nobody here subscribed to it for `linger`; returns
    /// whether the hub keeps no record of it now.
    fn release_if_idle(&self, stream: &StreamName, linger: Duration) -> bool {
        let mut shard = self.shard(stream);
        let Some(state) = shard.streams.get(stream) else {
            return true;
        };
        let idle = state.subscribers.is_empty()
            && state
                .idle_since
                .is_some_and(|since| since.elapsed() >= linger);
        if !idle {
            return false;
        }
        let forgotten = state.history.newest_time().unwrap_or(0);
        let freed = state.history.bytes();
        shard.streams.remove(stream);
        self.freed(&mut shard, freed);
        self.forgotten_until.fetch_max(forgotten, Ordering::Relaxed);
        true
    }

    /// Forgets one stream's position and history and closes its subscribers.
    fn reset(&self, stream: &StreamName, why: &str) {
        let mut shard = self.shard(stream);
        let mut freed = 0;
        if let Some(state) = shard.streams.get_mut(stream) {
            self.kick_all_of(state, stream, why);
            freed = state.history.reset();
            state.position = None;
            state.created = clock::now_micros();
        }
        self.freed(&mut shard, freed);
    }

    fn kick_all_of(&self, state: &mut StreamState, stream: &StreamName, why: &str) {
        if state.subscribers.is_empty() {
            return;
        }
        tracing::info!(%stream, subscribers = state.subscribers.len(), "{why}: subscribers reconnect and resume");
        for subscriber in state.subscribers.drain(..) {
            subscriber.kick();
            self.metrics.unsubscribed();
            self.metrics.kicked("resync");
        }
        state.idle_since = Some(Instant::now());
    }
}

/// What a backend may do to this process's hub: the narrow capability it gets at start.
///
/// A hub numbers its streams itself ([`Numbering::Local`]) or learns positions from a
/// broker ([`Numbering::Broker`]), fixed when it is made. Each method belongs to one of
/// the two; calling one of the other kind is an error, never a silent drop.
#[derive(Clone, Debug)]
pub struct Feed {
    hub: Arc<Hub>,
}

/// One rendered broadcast for the hub or the backend to carry.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Publication {
    /// The stream.
    pub stream: StreamName,
    /// The `<turbo-stream>` element.
    pub html: Arc<str>,
    /// A connection that gets a `skip` in its place (the sender's page).
    pub except: Option<ConnectionId>,
}

impl Feed {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// How the hub numbers streams.
    pub fn numbering(&self) -> Numbering {
        self.hub.numbering
    }

    /// The hub's limits (a broker keeps as much history as the hub would).
    pub fn settings(&self) -> HubSettings {
        self.hub.settings
    }

    /// Frames published up to this time (microseconds since the Unix epoch) may have
    /// been lost to this process: it started then, or lost its broker connection then.
    /// A page rendered before it cannot trust a stream record made after it.
    pub fn forgotten_until(&self) -> u64 {
        self.hub.forgotten_until.load(Ordering::Relaxed)
    }

    fn expect(&self, numbering: Numbering, what: &str, stream: &StreamName) -> Result<()> {
        if self.hub.numbering == numbering {
            Ok(())
        } else {
            Err(Error::backend(
                "feed the hub",
                stream.as_str(),
                format!("{what} needs a hub with {numbering:?} numbering"),
            ))
        }
    }

    /// Numbers and delivers a broadcast ([`Numbering::Local`]). Returns the number of
    /// local queues it reached.
    ///
    /// # Errors
    ///
    /// When the hub's positions come from a broker.
    pub fn publish(&self, publication: Publication) -> Result<usize> {
        self.expect(Numbering::Local, "publish", &publication.stream)?;
        Ok(self
            .hub
            .publish(&publication.stream, publication.html, publication.except))
    }

    /// Delivers a broadcast the broker numbered at `position`, published at `time`
    /// (microseconds since the Unix epoch) ([`Numbering::Broker`]). Returns the number
    /// of local queues it reached.
    ///
    /// # Errors
    ///
    /// When the hub numbers its own streams.
    pub fn deliver(
        &self,
        publication: Publication,
        position: Position,
        time: u64,
    ) -> Result<usize> {
        self.expect(Numbering::Broker, "deliver", &publication.stream)?;
        Ok(self.hub.deliver_numbered(
            &publication.stream,
            position,
            time,
            publication.html,
            publication.except,
        ))
    }

    /// Tells the hub where a stream is, learned from the broker ([`Numbering::Broker`]).
    ///
    /// # Errors
    ///
    /// When the hub numbers its own streams.
    pub fn learn(&self, stream: &StreamName, position: Position) -> Result<()> {
        self.expect(Numbering::Broker, "learn", stream)?;
        self.hub.learn(stream, position);
        Ok(())
    }

    /// Makes the subscribers of `stream` reconnect and resume, and forgets its position:
    /// the broker moved it to a new epoch ([`Numbering::Broker`]). Frames of it up to now
    /// may have been lost, so pages rendered before now get the gap signal.
    ///
    /// # Errors
    ///
    /// When the hub numbers its own streams.
    pub fn reset(&self, stream: &StreamName, why: &str) -> Result<()> {
        self.expect(Numbering::Broker, "reset", stream)?;
        self.hub.reset(stream, why);
        Ok(())
    }

    /// Lets go of `stream` if no connection here subscribed to it for `linger`: the hub
    /// drops its record, so that frames of it are ignored and the next subscription asks
    /// the broker. Returns whether the hub keeps no record of it now, and so no longer
    /// needs its frames ([`Numbering::Broker`]; a hub that numbers its own streams keeps
    /// its records and returns `false`).
    pub fn release_if_idle(&self, stream: &StreamName, linger: Duration) -> bool {
        self.hub.numbering == Numbering::Broker && self.hub.release_if_idle(stream, linger)
    }

    /// Makes every client reconnect and resume, and forgets every position: after the
    /// broker connection was lost, frames may have been missed ([`Numbering::Broker`]).
    ///
    /// # Errors
    ///
    /// When the hub numbers its own streams.
    pub fn resync_all(&self, why: &str) -> Result<()> {
        if self.hub.numbering != Numbering::Broker {
            return Err(Error::backend(
                "feed the hub",
                "-",
                "resync needs a hub with Broker numbering",
            ));
        }
        self.hub.resync_all(why);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_with(settings: HubSettings) -> Arc<Hub> {
        Arc::new(Hub::new(settings, Arc::default(), Numbering::Local))
    }

    fn hub(queue_frames: usize) -> Arc<Hub> {
        hub_with(HubSettings {
            queue_frames,
            ..HubSettings::default()
        })
    }

    fn name(s: &str) -> StreamName {
        StreamName::new(s).expect("valid")
    }

    impl Hub {
        fn deliver(&self, stream: &StreamName, html: &str) -> usize {
            self.publish(stream, Arc::from(html), None)
        }

        fn deliver_except(
            &self,
            stream: &StreamName,
            html: &str,
            except: Option<ConnectionId>,
        ) -> usize {
            self.publish(stream, Arc::from(html), except)
        }
    }

    fn at(epoch: u64, seq: u64) -> Option<Since> {
        Some(Since::Position(Position::new(epoch, seq)))
    }

    fn seqs(frames: &[Arc<Frame>]) -> Vec<u64> {
        frames.iter().map(|f| f.seq()).collect()
    }

    #[tokio::test]
    async fn every_subscriber_gets_the_same_numbered_frame() {
        let hub = hub(8);
        let room = name("room:1");
        let mut a = hub.connect();
        let mut b = hub.connect();
        assert_eq!(a.subscribe(&room, None).position.seq, 0);
        assert_eq!(b.subscribe(&room, None).position.seq, 0);
        assert_eq!(hub.deliver(&room, "<p>1</p>"), 2);
        let fa = a.next_frame().await.expect("frame");
        let fb = b.next_frame().await.expect("frame");
        assert_eq!(
            (fa.stream().as_str(), fa.seq(), fa.html()),
            ("room:1", 1, "<p>1</p>")
        );
        assert!(Arc::ptr_eq(&fa, &fb), "one frame, shared");
    }

    #[tokio::test]
    async fn streams_are_isolated() {
        let hub = hub(8);
        let mut a = hub.connect();
        a.subscribe(&name("room:1"), None);
        assert_eq!(hub.deliver(&name("room:2"), "x"), 0);
        assert_eq!(hub.deliver(&name("room:1"), "y"), 1);
        assert_eq!(a.next_frame().await.expect("frame").html(), "y");
    }

    #[tokio::test]
    async fn dropping_a_connection_unsubscribes_it() {
        let hub = hub(8);
        let room = name("room:1");
        let mut a = hub.connect();
        a.subscribe(&room, None);
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
        assert!(a.subscribe(&room, None).new);
        assert!(!a.subscribe(&room, None).new);
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
        slow.subscribe(&room, None);
        fast.subscribe(&room, None);
        for i in 0..3 {
            hub.deliver(&room, &i.to_string());
            fast.next_frame().await.expect("fast keeps up");
        }
        assert!(slow.is_kicked());
        slow.kick_signal().kicked().await;
        assert!(!fast.is_kicked());
        assert_eq!(hub.subscriber_count(&room), 1);
        assert_eq!(hub.metrics.snapshot().slow_consumers_kicked, 1);
        assert_eq!(hub.metrics.snapshot().subscriptions, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_connection_gets_every_frame_in_order_from_another_thread() {
        let hub = hub(1000);
        let room = name("r");
        let mut connection = hub.connect();
        connection.subscribe(&room, None);
        let sender = {
            let (hub, room) = (Arc::clone(&hub), room.clone());
            tokio::spawn(async move {
                for i in 0..500 {
                    hub.deliver(&room, &i.to_string());
                    if i % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        for seq in 1..=500 {
            let frame = tokio::time::timeout(Duration::from_secs(5), connection.next_frame())
                .await
                .expect("woken for each frame")
                .expect("a frame");
            assert_eq!(frame.seq(), seq);
        }
        sender.await.expect("the sender");
        // A burst waits in the queue, then goes out.
        for i in 0..100 {
            hub.deliver(&room, &i.to_string());
        }
        assert!(connection.queue_capacity() >= 100);
        for seq in 501..=600 {
            assert_eq!(connection.try_next_frame().expect("queued").seq(), seq);
        }
        assert!(connection.try_next_frame().is_none());
        assert_eq!(connection.queued_bytes(), 0);
        assert!(
            connection.queue_capacity() <= connection::IDLE_QUEUE_CAPACITY,
            "a burst's room is given back: {}",
            connection.queue_capacity()
        );
    }

    #[tokio::test]
    async fn queued_bytes_are_bounded_too() {
        let hub = hub_with(HubSettings {
            queue_frames: 1000,
            queue_bytes: 300,
            ..HubSettings::default()
        });
        let room = name("r");
        let mut slow = hub.connect();
        slow.subscribe(&room, None);
        let big = "x".repeat(100);
        hub.deliver(&room, &big);
        hub.deliver(&room, &big);
        assert!(!slow.is_kicked(), "two frames of ~150 bytes fit");
        assert!(slow.queued_bytes() <= 300);
        hub.deliver(&room, &big);
        assert!(slow.is_kicked(), "the third would pass 300 bytes");
        slow.try_next_frame().expect("queued");
        slow.try_next_frame().expect("queued");
        assert_eq!(slow.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn resume_replays_exactly_the_missed_frames() {
        let hub = hub(8);
        let room = name("room:1");
        let mut first = hub.connect();
        let start = first.subscribe(&room, None).position;
        for i in 1..=5 {
            hub.deliver(&room, &i.to_string());
        }
        let applied = first.try_next_frame().expect("1").seq();
        assert_eq!(applied, 1);
        drop(first);

        hub.deliver(&room, "6");
        let mut again = hub.connect();
        let resumed = again.subscribe(&room, at(start.epoch, applied));
        assert_eq!(resumed.gap, None);
        assert_eq!(seqs(&resumed.replay), [2, 3, 4, 5, 6]);
        assert_eq!(resumed.position, Position::new(start.epoch, 6));
        hub.deliver(&room, "7");
        assert_eq!(again.try_next_frame().expect("live").seq(), 7);
        assert!(again.try_next_frame().is_none(), "no duplicate at the seam");
    }

    #[tokio::test]
    async fn trimmed_history_and_other_epochs_are_gaps() {
        let hub = hub_with(HubSettings {
            history_len: 3,
            ..HubSettings::default()
        });
        let room = name("room:1");
        let mut watcher = hub.connect();
        let epoch = watcher.subscribe(&room, None).position.epoch;
        for i in 1..=10 {
            hub.deliver(&room, &i.to_string());
        }
        let mut late = hub.connect();
        let at_edge = late.subscribe(&room, at(epoch, 7));
        assert_eq!((seqs(&at_edge.replay), at_edge.gap), (vec![8, 9, 10], None));
        let mut later = hub.connect();
        let too_old = later.subscribe(&room, at(epoch, 6));
        assert_eq!(too_old.gap, Some(Gap::History));
        assert!(too_old.replay.is_empty());
        let mut other = hub.connect();
        assert_eq!(
            other.subscribe(&room, at(epoch ^ 1, 10)).gap,
            Some(Gap::Epoch)
        );
        let mut future = hub.connect();
        assert_eq!(future.subscribe(&room, at(epoch, 11)).gap, Some(Gap::Epoch));
        let mut current = hub.connect();
        let up_to_date = current.subscribe(&room, at(epoch, 10));
        assert_eq!((up_to_date.replay.len(), up_to_date.gap), (0, None));
    }

    #[test]
    fn history_has_a_byte_budget_and_what_it_drops_is_a_gap() {
        let hub = hub_with(HubSettings {
            history_bytes: 1000,
            ..HubSettings::default()
        });
        let room = name("room:1");
        let mut watcher = hub.connect();
        let epoch = watcher.subscribe(&room, None).position.epoch;
        let element = "x".repeat(100);
        for _ in 0..20 {
            hub.deliver(&room, &element);
        }
        let kept = hub.history_bytes.load(Ordering::Acquire);
        let counted: usize = hub
            .shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.bytes))
            .sum();
        assert_eq!(kept, counted);
        assert!(kept <= 1000, "{kept} bytes kept");
        assert!(kept >= 3 * 148, "the newest frames stay: {kept}");
        let mut late = hub.connect();
        assert_eq!(late.subscribe(&room, at(epoch, 0)).gap, Some(Gap::History));
        let mut recent = hub.connect();
        let resumed = recent.subscribe(&room, at(epoch, 18));
        assert_eq!((seqs(&resumed.replay), resumed.gap), (vec![19, 20], None));
        // Every frame, including the live one, carries the same shared element.
        assert_eq!(watcher.try_next_frame().expect("live").html(), element);
    }

    #[tokio::test]
    async fn aged_history_is_a_gap() {
        let hub = hub_with(HubSettings {
            history_age: Duration::from_millis(50),
            ..HubSettings::default()
        });
        let room = name("room:1");
        let mut watcher = hub.connect();
        let epoch = watcher.subscribe(&room, None).position.epoch;
        hub.deliver(&room, "1");
        tokio::time::sleep(Duration::from_millis(80)).await;
        let mut late = hub.connect();
        assert_eq!(late.subscribe(&room, at(epoch, 0)).gap, Some(Gap::History));
    }

    #[tokio::test]
    async fn the_record_outlives_its_last_subscriber_for_resume() {
        let hub = hub(8);
        let room = name("room:1");
        let mut only = hub.connect();
        let epoch = only.subscribe(&room, None).position.epoch;
        drop(only);
        assert_eq!(hub.deliver(&room, "while away"), 0);
        let mut back = hub.connect();
        let resumed = back.subscribe(&room, at(epoch, 0));
        assert_eq!((seqs(&resumed.replay), resumed.gap), (vec![1], None));
    }

    #[tokio::test]
    async fn broadcasts_between_render_and_subscribe_are_replayed() {
        let hub = hub(8);
        let room = name("room:1");
        let rendered_at = clock::now_micros();
        hub.deliver(&room, "while the page loads");
        let mut page = hub.connect();
        let subscribed = page.subscribe(&room, Some(Since::Time(rendered_at)));
        assert_eq!((seqs(&subscribed.replay), subscribed.gap), (vec![1], None));
    }

    #[test]
    fn the_excepted_connection_gets_a_skip_with_the_same_number() {
        let hub = hub(8);
        let room = name("room:1");
        let mut sender = hub.connect();
        let mut other = hub.connect();
        sender.subscribe(&room, None);
        other.subscribe(&room, None);
        assert_eq!(hub.deliver_except(&room, "<p>hi</p>", Some(sender.id())), 2);
        let skip = sender.try_next_frame().expect("skip");
        assert!(skip.is_skip());
        assert_eq!((skip.seq(), skip.html()), (1, ""));
        assert_eq!(other.try_next_frame().expect("frame").html(), "<p>hi</p>");
    }

    #[test]
    fn a_page_replays_what_was_sent_since_its_request_began() {
        let hub = hub(8);
        let room = name("room:1");
        hub.deliver(&room, "before the request");
        std::thread::sleep(Duration::from_millis(1));
        let request_began = clock::now_micros();
        hub.deliver(&room, "while the handler read the data");
        let mut page = hub.connect();
        let subscribed = page.subscribe(&room, Some(Since::Time(request_began)));
        assert_eq!((seqs(&subscribed.replay), subscribed.gap), (vec![2], None));
    }

    #[test]
    fn a_page_rendered_before_the_process_started_gets_a_gap() {
        let rendered = clock::now_micros();
        std::thread::sleep(Duration::from_millis(1));
        let hub = hub(8);
        let room = name("room:1");
        hub.deliver(&room, "after a restart");
        let mut page = hub.connect();
        let subscribed = page.subscribe(&room, Some(Since::Time(rendered)));
        assert_eq!(
            (subscribed.replay.len(), subscribed.gap),
            (0, Some(Gap::Epoch))
        );
    }

    fn broker_hub() -> (Arc<Hub>, Feed) {
        let hub = Arc::new(Hub::new(
            HubSettings::default(),
            Arc::default(),
            Numbering::Broker,
        ));
        let feed = Feed::new(Arc::clone(&hub));
        (hub, feed)
    }

    fn numbered(feed: &Feed, stream: &StreamName, epoch: u64, seq: u64) {
        let publication = Publication {
            stream: stream.clone(),
            html: Arc::from(format!("<p>{seq}</p>")),
            except: None,
        };
        feed.deliver(publication, Position::new(epoch, seq), clock::now_micros())
            .expect("a broker's hub");
    }

    #[test]
    fn frames_that_come_while_the_broker_answers_wait_for_the_answer() {
        // The hub has not learned the stream: it hands the subscription to the broker,
        // and the connection is already among the subscribers, so that nothing
        // published meanwhile is lost.
        let (hub, feed) = broker_hub();
        let room = name("room:1");
        let mut page = hub.connect();
        assert!(page.subscribe(&room, at(7, 3)).ask_broker);
        for seq in 4..=6 {
            numbered(&feed, &room, 7, seq);
        }
        // Nothing may go out before the `subscribed` reply and the broker's replay.
        assert!(page.try_next_frame().is_none());
        // The broker answers at 5 (its replay holds 4 and 5): 6 follows the replay,
        // then the live frames.
        let held = page
            .answered(&room, Position::new(7, 5))
            .expect("one epoch");
        assert_eq!(seqs(&held), [6]);
        numbered(&feed, &room, 7, 7);
        assert_eq!(page.try_next_frame().map(|f| f.seq()), Some(7));
    }

    #[test]
    fn a_held_frame_of_another_epoch_makes_the_connection_resume_again() {
        let (hub, feed) = broker_hub();
        let room = name("room:1");
        let mut page = hub.connect();
        assert!(page.subscribe(&room, at(7, 3)).ask_broker);
        numbered(&feed, &room, 8, 1);
        assert!(page.try_next_frame().is_none());
        assert!(page.answered(&room, Position::new(7, 3)).is_none());
    }

    #[test]
    fn a_connection_behind_the_hubs_history_waits_for_the_broker_too() {
        let (hub, feed) = broker_hub();
        let room = name("room:1");
        let mut live = hub.connect();
        assert!(live.subscribe(&room, None).ask_broker);
        hub.learn(&room, Position::new(7, 0));
        for seq in 1..=200 {
            numbered(&feed, &room, 7, seq);
        }
        // 200 frames, 100 kept: a page at 50 is handed to the broker.
        let mut behind = hub.connect();
        assert!(behind.subscribe(&room, at(7, 50)).ask_broker);
        numbered(&feed, &room, 7, 201);
        assert!(behind.try_next_frame().is_none());
        let held = behind
            .answered(&room, Position::new(7, 200))
            .expect("one epoch");
        assert_eq!(seqs(&held), [201]);
    }
}
