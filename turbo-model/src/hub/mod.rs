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
//! that reconnects subscribes with the epoch and the last sequence number it applied; the
//! hub replays the frames after it, then the client is live. Adding the subscriber and
//! copying the replay happen under one lock, so nothing is lost or repeated at the seam.
//! If the frames are gone (trimmed by count or age, or the record was dropped or the
//! process restarted, which changes the epoch), the hub answers with a [`Gap`] instead,
//! and the client recovers (by default the page refreshes). There is never a silent hole.
//!
//! # Cost
//!
//! A broadcast is rendered once by its sender and serialized here once; every subscriber
//! receives the same shared bytes (a reference count) through one non-blocking queue
//! push. A broadcast to a stream nobody watches is serialized and kept for
//! [`COLD_WINDOW`] (10 s), so that a page rendered meanwhile still gets it when it
//! connects; then the stream's record is dropped.
//!
//! # Slow consumers
//!
//! Each connection's queue is bounded by frames ([`queue_frames`](HubSettings::queue_frames),
//! default 256) and bytes ([`queue_bytes`](HubSettings::queue_bytes), default 1 MiB). A
//! connection whose queue would overflow is *kicked*: the frame is not queued and the
//! connection closes with code 1013 so that its client reconnects and resumes from
//! history. Other subscribers never wait for it.

mod connection;
mod frame;

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use connection::{Connection, ConnectionId, KickSignal};
use connection::{Push, Subscriber};
pub use frame::{Frame, Gap, Position};

use crate::metrics::Metrics;
use crate::stream::StreamName;

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
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            queue_frames: 256,
            queue_bytes: 1024 * 1024,
            history_len: 100,
            history_age: Duration::from_secs(300),
        }
    }
}

/// The outcome of a subscription.
#[derive(Debug)]
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
    /// or the client missed more than it keeps); ask the broker
    /// ([`Backend::resume`](crate::Backend::resume)) and use its answer instead.
    pub ask_broker: bool,
}

#[derive(Debug)]
struct StreamState {
    epoch: u64,
    seq: u64,
    history: VecDeque<(Instant, Arc<Frame>)>,
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
}

/// Subscriptions, fan-out and history for the connections of this process.
#[derive(Debug)]
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    next_connection: AtomicU64,
    epochs: EpochSource,
    settings: HubSettings,
    metrics: Arc<Metrics>,
    /// Positions come from a broker (see [`Hub::use_broker_positions`]).
    brokered: AtomicBool,
}

/// Streams are spread over this many locks, so that unrelated streams rarely contend.
const SHARDS: usize = 16;

/// How often a shard looks for idle stream records to drop.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How long broadcasts to a stream that nobody has subscribed to are kept: long enough
/// for a page rendered meanwhile to connect and replay them.
pub const COLD_WINDOW: Duration = Duration::from_secs(10);

/// Epochs: random per process, distinct per stream record.
#[derive(Debug)]
struct EpochSource {
    base: u64,
    counter: AtomicU64,
}

impl EpochSource {
    fn new() -> Self {
        let mut bytes = [0u8; 8];
        // Without OS randomness, the start time still makes restarts differ.
        let base = if getrandom::fill(&mut bytes).is_ok() {
            u64::from_le_bytes(bytes)
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        };
        Self {
            base,
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // An odd multiplier makes consecutive records' epochs look unrelated while
        // staying distinct.
        self.base
            .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .max(1)
    }
}

impl Hub {
    /// A hub with these limits.
    /// A hub with these limits.
    pub(crate) fn new(settings: HubSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        streams: HashMap::new(),
                        last_sweep: Instant::now(),
                    })
                })
                .collect(),
            hasher: RandomState::new(),
            next_connection: AtomicU64::new(1),
            epochs: EpochSource::new(),
            settings: HubSettings {
                queue_frames: settings.queue_frames.max(1),
                ..settings
            },
            metrics,
            brokered: AtomicBool::new(false),
        }
    }

    /// Called by a broker backend at start: stream positions (epochs and sequence
    /// numbers) are the broker's from now on, learned from the frames it delivers
    /// ([`deliver_at`](Self::deliver_at)) and from [`learn`](Self::learn); a stream whose
    /// position this hub has not learned yet is answered by the broker.
    pub fn use_broker_positions(&self) {
        self.brokered.store(true, Ordering::Relaxed);
    }

    fn is_brokered(&self) -> bool {
        self.brokered.load(Ordering::Relaxed)
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
            shard.streams.retain(|_, state| {
                let keep_for = if state.watched { age } else { COLD_WINDOW };
                state
                    .idle_since
                    .is_none_or(|idle| now.duration_since(idle) < keep_for)
            });
        }
        shard
    }

    /// Opens a connection: a queue and an id. Subscribe it with
    /// [`Connection::subscribe`]; drop it to leave every stream.
    pub fn connect(self: &Arc<Self>) -> Connection {
        let id = ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed));
        self.metrics.connection_opened();
        Connection::new(Arc::clone(self), id, self.settings.queue_frames)
    }

    fn new_state(&self) -> StreamState {
        StreamState {
            // With a broker, 0 means "not learned yet": the broker knows.
            epoch: if self.is_brokered() {
                0
            } else {
                self.epochs.next()
            },
            seq: 0,
            history: VecDeque::new(),
            subscribers: Vec::new(),
            idle_since: None,
            watched: false,
        }
    }

    /// A record for a stream nobody watches yet.
    fn cold_state(&self) -> StreamState {
        StreamState {
            idle_since: Some(Instant::now()),
            ..self.new_state()
        }
    }

    fn add(
        &self,
        stream: &StreamName,
        subscriber: &Subscriber,
        since: Option<Position>,
        new: bool,
    ) -> Subscribed {
        let mut shard = self.shard(stream);
        let state = match shard.streams.entry(stream.clone()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(self.new_state()),
        };
        trim(&mut state.history, self.settings.history_age);
        if new {
            state.subscribers.push(subscriber.clone());
            state.idle_since = None;
            state.watched = true;
            self.metrics.subscribed();
        }
        let position = Position::new(state.epoch, state.seq);
        let (replay, gap) = match since {
            Some(since) if new => replay_after(state, since),
            _ => (Vec::new(), None),
        };
        let ask_broker =
            self.is_brokered() && new && (state.epoch == 0 || gap == Some(Gap::History));
        if ask_broker {
            return Subscribed {
                position,
                replay: Vec::new(),
                gap: None,
                new,
                ask_broker,
            };
        }
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
            ask_broker,
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

    /// Where `stream` was at `at` (the start of the request rendering a page; now when
    /// `None`), for the page's first subscription: the broadcasts after it are replayed,
    /// so none is lost between reading the page's data and its socket connecting.
    /// Creates the stream's record if there is none.
    ///
    /// Broadcasts to a stream nobody subscribes to are kept for [`COLD_WINDOW`], so a
    /// request that started up to that long ago still gets them.
    pub fn position_for_render(&self, stream: &StreamName, at: Option<Instant>) -> Position {
        let mut shard = self.shard(stream);
        let state = shard
            .streams
            .entry(stream.clone())
            .or_insert_with(|| self.cold_state());
        Position::new(state.epoch, seq_at(state, at))
    }

    /// As [`position_for_render`](Self::position_for_render), but only when this hub
    /// knows the stream's position (with a broker: has learned it).
    pub fn known_position_for_render(
        &self,
        stream: &StreamName,
        at: Option<Instant>,
    ) -> Option<Position> {
        let shard = self.shard(stream);
        let state = shard.streams.get(stream)?;
        (state.epoch != 0).then(|| Position::new(state.epoch, seq_at(state, at)))
    }

    /// Where `stream` is now, if this hub keeps a record of it.
    pub fn position(&self, stream: &StreamName) -> Option<Position> {
        self.shard(stream)
            .streams
            .get(stream)
            .map(|s| Position::new(s.epoch, s.seq))
    }

    /// Number of connections subscribed to `stream` in this process.
    pub fn subscriber_count(&self, stream: &StreamName) -> usize {
        self.shard(stream)
            .streams
            .get(stream)
            .map_or(0, |s| s.subscribers.len())
    }

    /// Publishes a rendered `<turbo-stream>` element to `stream`: assigns the next
    /// sequence number, serializes the frame once, records it in the history, and pushes
    /// it onto each local subscriber's queue. Returns the number of queues it reached.
    pub fn deliver(&self, stream: &StreamName, html: &str) -> usize {
        self.deliver_except(stream, html, None)
    }

    /// As [`deliver`](Self::deliver), but the connection `except` gets a `skip` frame
    /// in its place: its position moves on, nothing is applied (its page already shows
    /// the change).
    pub fn deliver_except(
        &self,
        stream: &StreamName,
        html: &str,
        except: Option<ConnectionId>,
    ) -> usize {
        let mut shard = self.shard(stream);
        let state = shard
            .streams
            .entry(stream.clone())
            .or_insert_with(|| self.cold_state());
        state.seq += 1;
        self.fan_out(state, stream, html, except)
    }

    /// Makes the frame for the stream's current position, keeps it in the history and
    /// pushes it onto every subscriber's queue (a skip for `except`).
    fn fan_out(
        &self,
        state: &mut StreamState,
        stream: &StreamName,
        html: &str,
        except: Option<ConnectionId>,
    ) -> usize {
        let Some(frame) = Frame::message(stream, state.epoch, state.seq, html) else {
            return 0;
        };
        self.metrics.frame_built();
        let now = Instant::now();
        state.history.push_back((now, Arc::clone(&frame)));
        while state.history.len() > self.settings.history_len {
            state.history.pop_front();
        }
        trim(&mut state.history, self.settings.history_age);

        let max_bytes = self.settings.queue_bytes;
        let mut skip: Option<Arc<Frame>> = None;
        let mut delivered = 0;
        let mut lost = 0;
        state.subscribers.retain(|subscriber| {
            let this = if Some(subscriber.id) == except {
                skip.get_or_insert_with(|| Frame::skip(&frame))
            } else {
                &frame
            };
            match subscriber.push(this, max_bytes) {
                Push::Queued => {
                    delivered += 1;
                    true
                }
                Push::Kicked => {
                    self.metrics.slow_consumer_kicked();
                    tracing::warn!(
                        connection = subscriber.id.0,
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
            state.idle_since = Some(now);
        }
        self.metrics.delivered(delivered);
        delivered
    }
}

impl Hub {
    /// Delivers a frame whose position a broker assigned: the broker's epoch and
    /// sequence number. Frames it already has are ignored; when the broker's epoch
    /// changes or frames are missing (a lost broker connection), the stream's
    /// subscribers are closed so that they reconnect and resume from the broker (which
    /// replays or tells them of the gap). Returns the number of queues it reached.
    pub fn deliver_at(
        &self,
        stream: &StreamName,
        position: Position,
        html: &str,
        except: Option<ConnectionId>,
    ) -> usize {
        let mut shard = self.shard(stream);
        let state = shard
            .streams
            .entry(stream.clone())
            .or_insert_with(|| self.cold_state());
        let unknown = state.epoch == 0;
        let restarted = !unknown && state.epoch != position.epoch;
        if !unknown && !restarted && position.seq <= state.seq {
            return 0;
        }
        let missing = !unknown && !restarted && position.seq > state.seq + 1;
        if restarted || missing {
            self.kick_all_of(
                state,
                stream,
                "the broker's stream moved on without this process",
            );
            state.history.clear();
        }
        state.epoch = position.epoch;
        state.seq = position.seq;
        self.fan_out(state, stream, html, except)
    }

    /// Records a position learned from the broker (when answering a subscription), if
    /// this hub had not learned one yet.
    pub fn learn(&self, stream: &StreamName, position: Position) {
        let mut shard = self.shard(stream);
        if let Some(state) = shard.streams.get_mut(stream)
            && state.epoch == 0
        {
            state.epoch = position.epoch;
            state.seq = position.seq;
        }
    }

    /// Closes every connection (they reconnect and resume): after the broker connection
    /// was lost, frames may have been missed.
    pub fn kick_all(&self) {
        for shard in &self.shards {
            let mut shard = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (stream, state) in &mut shard.streams {
                self.kick_all_of(state, stream, "the broker connection was lost");
                state.history.clear();
                state.epoch = if self.is_brokered() { 0 } else { state.epoch };
            }
        }
    }

    fn kick_all_of(&self, state: &mut StreamState, stream: &StreamName, why: &str) {
        if state.subscribers.is_empty() {
            return;
        }
        tracing::info!(%stream, subscribers = state.subscribers.len(), "{why}: subscribers reconnect and resume");
        for subscriber in state.subscribers.drain(..) {
            subscriber.kick();
            self.metrics.unsubscribed();
        }
        state.idle_since = Some(Instant::now());
    }
}

/// The stream's sequence number at `at` (now when `None`), from the history's times.
fn seq_at(state: &StreamState, at: Option<Instant>) -> u64 {
    let Some(at) = at else {
        return state.seq;
    };
    match state.history.iter().rposition(|(time, _)| *time <= at) {
        Some(i) => state.history[i].1.seq(),
        None => state
            .history
            .front()
            .map_or(state.seq, |(_, first)| first.seq() - 1),
    }
}

/// Drops history entries older than `age`.
fn trim(history: &mut VecDeque<(Instant, Arc<Frame>)>, age: Duration) {
    let now = Instant::now();
    while history
        .front()
        .is_some_and(|(at, _)| now.duration_since(*at) > age)
    {
        history.pop_front();
    }
}

/// The frames after `since`, or why they cannot be had.
fn replay_after(state: &StreamState, since: Position) -> (Vec<Arc<Frame>>, Option<Gap>) {
    if since.epoch != state.epoch || since.seq > state.seq {
        return (Vec::new(), Some(Gap::Epoch));
    }
    if since.seq == state.seq {
        return (Vec::new(), None);
    }
    let oldest = state
        .history
        .front()
        .map_or(state.seq + 1, |(_, f)| f.seq());
    if oldest > since.seq + 1 {
        return (Vec::new(), Some(Gap::History));
    }
    let replay = state
        .history
        .iter()
        .filter(|(_, f)| f.seq() > since.seq)
        .map(|(_, f)| Arc::clone(f))
        .collect();
    (replay, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_with(settings: HubSettings) -> Arc<Hub> {
        Arc::new(Hub::new(settings, Arc::default()))
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
        let expected = r#"{"type":"message","stream":"room:1","seq":1,"html":"<p>1</p>"}"#;
        let fa = a.next_frame().await.expect("frame");
        let fb = b.next_frame().await.expect("frame");
        assert_eq!(fa.json().as_str(), expected);
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
        let resumed = again.subscribe(&room, Some(Position::new(start.epoch, applied)));
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
        let at_edge = late.subscribe(&room, Some(Position::new(epoch, 7)));
        assert_eq!((seqs(&at_edge.replay), at_edge.gap), (vec![8, 9, 10], None));
        let mut later = hub.connect();
        let too_old = later.subscribe(&room, Some(Position::new(epoch, 6)));
        assert_eq!(too_old.gap, Some(Gap::History));
        assert!(too_old.replay.is_empty());
        let mut other = hub.connect();
        assert_eq!(
            other
                .subscribe(&room, Some(Position::new(epoch ^ 1, 10)))
                .gap,
            Some(Gap::Epoch)
        );
        let mut future = hub.connect();
        assert_eq!(
            future.subscribe(&room, Some(Position::new(epoch, 11))).gap,
            Some(Gap::Epoch)
        );
        let mut current = hub.connect();
        let up_to_date = current.subscribe(&room, Some(Position::new(epoch, 10)));
        assert_eq!((up_to_date.replay.len(), up_to_date.gap), (0, None));
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
        assert_eq!(
            late.subscribe(&room, Some(Position::new(epoch, 0))).gap,
            Some(Gap::History)
        );
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
        let resumed = back.subscribe(&room, Some(Position::new(epoch, 0)));
        assert_eq!((seqs(&resumed.replay), resumed.gap), (vec![1], None));
    }

    #[test]
    fn json_in_html_is_escaped_once_and_sse_splits_lines() {
        let hub = hub(1);
        let room = name("r");
        let mut a = hub.connect();
        let epoch = a.subscribe(&room, None).position.epoch;
        hub.deliver(&room, "<p>\"a\"\nb</p>");
        let frame = a.try_next_frame().expect("frame");
        assert_eq!(
            frame.json().as_str(),
            r#"{"type":"message","stream":"r","seq":1,"html":"<p>\"a\"\nb</p>"}"#
        );
        assert_eq!(
            frame.sse().as_str(),
            format!("id: {epoch:016x}.1\ndata: <p>\"a\"\ndata: b</p>\n\n")
        );
    }

    #[tokio::test]
    async fn broadcasts_between_render_and_subscribe_are_replayed() {
        let hub = hub(8);
        let room = name("room:1");
        let rendered_at = hub.position_for_render(&room, None);
        assert_eq!(rendered_at.seq, 0);
        hub.deliver(&room, "while the page loads");
        let mut page = hub.connect();
        let subscribed = page.subscribe(&room, Some(rendered_at));
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
        assert_eq!(
            skip.json().as_str(),
            r#"{"type":"skip","stream":"room:1","seq":1,"html":""}"#
        );
        assert_eq!(
            skip.sse().as_str(),
            format!("id: {}\n\n", Position::new(skip.epoch(), 1))
        );
        assert_eq!(other.try_next_frame().expect("frame").html(), "<p>hi</p>");
    }

    #[test]
    fn a_page_replays_what_was_sent_since_its_request_began() {
        let hub = hub(8);
        let room = name("room:1");
        hub.deliver(&room, "before the request");
        let request_began = Instant::now();
        hub.deliver(&room, "while the handler read the data");
        let at_render = hub.position_for_render(&room, Some(request_began));
        assert_eq!(at_render.seq, 1, "the position when the request began");
        assert_eq!(hub.position_for_render(&room, None).seq, 2);
        let mut page = hub.connect();
        let subscribed = page.subscribe(&room, Some(at_render));
        assert_eq!((seqs(&subscribed.replay), subscribed.gap), (vec![2], None));
    }

    #[test]
    fn positions_parse_their_own_form_only() {
        let p = Position::new(0xabc, 42);
        assert_eq!(p.to_string(), "0000000000000abc.42");
        assert_eq!(Position::parse(&p.to_string()), Some(p));
        for bad in ["", "abc", "xyz.1", "1.-1", "1.", ".1"] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
    }
}
