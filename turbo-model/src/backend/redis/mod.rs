//! The Redis backend; see [`Redis`].

mod link;
mod publisher;
mod subscriber;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{Backend, BackendStats, BoxFuture, Resume};
use crate::clock;
use crate::error::{Error, Result};
use crate::hub::{
    Feed, Frame, HubSettings, Numbering, Position, Publication, Record, Resolution, Since,
    new_epoch, resolve,
};
use crate::name::StreamName;
use link::{Commands, Target};
use publisher::{PublishStats, Publisher, Queued};
use subscriber::{Received, Request, Subscriber};

/// Publishes one broadcast: number it, log it, announce it.
///
/// KEYS: the stream's meta hash (epoch, seq, created) and its log. ARGV: a fresh epoch,
/// the element, the excepted connection, the log length, the TTL, the stream's channel,
/// the stream name, the time, this process, the publication's number in it, and the
/// command that announces it (`PUBLISH`, or `SPUBLISH` on a cluster).
///
/// A retry of a publication Redis already took (its answer was lost to a timeout) is
/// recognised by the process's last number in the meta hash and not published twice.
const PUBLISH: &str = r"
local from = 'p:' .. ARGV[9]
local last = tonumber(redis.call('HGET', KEYS[1], from) or '0')
if last >= tonumber(ARGV[10]) then
  return {'done', '0'}
end
redis.call('HSET', KEYS[1], from, ARGV[10])
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'created', ARGV[8])
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'q', seq, 't', ARGV[8], 'h', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call(ARGV[11], ARGV[6], cjson.encode({s = ARGV[7], e = epoch, q = seq, t = ARGV[8], h = ARGV[2], x = ARGV[3]}))
return {epoch, tostring(seq)}
";

/// A stream's position, creating its record if it has none, and its log: for every
/// kept entry, oldest first, its sequence number, its time, and its element when it is
/// after the client's start (`ARGV[4]` is `p` with a sequence number or `t` with a
/// time), else an empty string: `{epoch, seq, created, lost, q1, t1, h1, ...}`.
const POSITION: &str = r"
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'created', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'created', 'lost')
local out = {meta[1], meta[2] or '0', meta[3] or '0', meta[4] or '0'}
if ARGV[4] ~= '' then
  local by_time = ARGV[4] == 't'
  local from = tonumber(ARGV[5])
  local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[6])
  for i = #entries, 1, -1 do
    local fields = entries[i][2]
    local q, t, h
    for j = 1, #fields, 2 do
      local name = fields[j]
      if name == 'q' then q = fields[j + 1] elseif name == 't' then t = fields[j + 1] elseif name == 'h' then h = fields[j + 1] end
    end
    if q and t and h then
      local wanted = (by_time and tonumber(t) >= from) or ((not by_time) and tonumber(q) > from)
      table.insert(out, q)
      table.insert(out, t)
      table.insert(out, wanted and h or '')
    end
  end
end
return out
";

/// Moves a stream that lost a broadcast to a new epoch, and tells every process: its
/// subscribers reconnect and get the gap signal, and a page rendered before the loss
/// does too (`lost`). KEYS: meta, log. ARGV: the new epoch, the time, the TTL, the
/// stream's channel, the stream name, the announcing command.
const NEW_EPOCH: &str = r"
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'seq', 0, 'created', ARGV[2], 'lost', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call(ARGV[6], ARGV[4], cjson.encode({s = ARGV[5], e = ARGV[1], q = 0, t = ARGV[2], h = '', x = '', r = 1}))
return 1
";

/// Broadcasts waiting to be published from this process, at most, by count.
const QUEUE: usize = 100_000;

/// Bytes of broadcasts waiting to be published from this process, at most, by default.
pub const DEFAULT_QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// How long a broadcast may wait for Redis before its stream is moved to a new epoch,
/// by default.
pub const DEFAULT_PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// How long a process keeps listening to a stream nobody here watches, by default.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(30);

/// Streams that lost a broadcast and wait to be moved to a new epoch, at most.
const MAX_LOST: usize = 100_000;

/// How long a subscription waits for its stream's channel to be subscribed before it is
/// refused (the client retries).
const READY_WITHIN: Duration = Duration::from_secs(5);

/// How long [`Backend::shutdown`] waits for the tasks to stop.
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// What crosses a stream's channel: one broadcast, as the script announces it.
#[derive(Debug, Serialize, Deserialize)]
struct Announced {
    /// The stream.
    s: String,
    /// The epoch, 16 hex digits.
    e: String,
    /// The sequence number.
    q: u64,
    /// When it was published: microseconds since the Unix epoch, in decimal.
    t: String,
    /// The `<turbo-stream>` element.
    h: String,
    /// The connection that gets a skip instead (`process.number`), or empty.
    x: String,
    /// Set when the stream moved to a new epoch because a broadcast was lost.
    #[serde(default)]
    r: u8,
}

/// Broadcasts through Redis: they reach the subscribers of every server process, and a
/// client that reconnects to another process resumes where it was.
///
/// # How
///
/// Per stream, Redis holds a hash (the epoch, the sequence counter, when the record was
/// made) and a log (a Redis stream capped at the history length), both expiring after
/// the history age without broadcasts. One Lua script publishes a broadcast atomically:
/// it numbers it (`HINCRBY`), appends it to the log (`XADD … MAXLEN ~`), and announces
/// it on the stream's own channel; each process hands the frames to its own hub, which
/// fans them out to its subscribers. A broadcast is rendered once, in the process that
/// saved, and crosses the network once per process that watches its stream.
///
/// **Interest routing.** A process listens only to the channels of the streams its own
/// clients watch: it subscribes to a stream's channel when its first client subscribes
/// (before it reads the stream's position, so that nothing is missed in between), and
/// lets it go 30 s ([`linger`](Self::linger)) after its last client left. N processes that each serve a share of
/// the streams each receive that share of the traffic, not all of it
/// ([`received`](Self::received) counts it).
///
/// **One server or a cluster.** [`new`](Self::new) talks to one server, with plain
/// channels (`PUBLISH`, `SUBSCRIBE`); [`cluster`](Self::cluster) to a Redis Cluster, with
/// sharded channels (`SPUBLISH`, `SSUBSCRIBE`, Redis 7). A stream's keys and channel
/// share one hash slot (the stream name is the hash tag), so its script runs on one node
/// and its broadcasts reach only the processes that watch it.
///
/// Redis Streams give the ordered, capped, per-stream history that resume needs (read
/// with `XREVRANGE`), Pub/Sub the low-latency fan-out to processes without a consumer
/// group per process. A subscription that a process cannot answer from its own hub (it
/// has not seen the stream, or the client missed more than it keeps) is answered from
/// the log.
///
/// # Faults
///
/// Every broadcast `send` accepts reaches the subscribers of its stream in every
/// process, in order, or they get the gap signal (and their pages refresh):
///
/// - Broadcasts wait for Redis in one queue per process, published one after another in
///   order. A broadcast Redis does not take is retried, in order, for up to the publish
///   deadline ([`publish_deadline`](Self::publish_deadline), default 10 s). Past it, the
///   broadcast is dropped and its stream is marked: as soon as Redis answers again, the
///   stream moves to a new epoch and every process is told, so its subscribers (and
///   pages rendered before the loss) get the gap signal.
/// - The queue is bounded in bytes ([`queue_bytes`](Self::queue_bytes), default 16 MiB)
///   and in count (100 000): when it is full, `send` returns
///   [`Error::Backend`] (with [`HookErrors::Propagate`](crate::HookErrors::Propagate),
///   the write's caller sees it).
/// - When the Pub/Sub connection drops (on a cluster: its connection to any node), the
///   process subscribes to its channels again, retrying with backoff, and then closes
///   its stream connections: clients reconnect and resume from the log, which holds
///   whatever was published meanwhile, or get the gap signal if Redis lost it (a restart
///   without persistence starts new epochs). A subscription waits (up to 5 s) until its
///   stream's channel is subscribed, so none misses a frame published in between; on a
///   cluster whose node is down, the streams of that node's slots refuse subscriptions
///   (clients retry) and lose what cannot be published by the deadline, with the gap
///   signal, until the node or its replica is back.
/// - Received broadcasts wait for the hub in a queue of 65 536; when this process falls
///   that far behind, it drops what does not fit and makes every client resume from the
///   log, as after a dropped connection.
/// - A process killed while broadcasts wait in its queue loses them without a gap
///   signal: at most the queue's bytes, or what the deadline lets wait.
///
/// # Lifecycle
///
/// The backend's tasks start when the [`Turbo`](crate::Turbo) is built and stop on
/// [`Turbo::shutdown`](crate::Turbo::shutdown). One `Redis` serves one `Turbo`:
/// building a second with it is an error.
///
/// # Crate
///
/// [`redis`](https://docs.rs/redis) (redis-rs): the maintained, widely used Redis client
/// for Rust, with tokio support, a reconnecting multiplexed connection
/// (`ConnectionManager`), cluster support, and RESP3 Pub/Sub on both.
///
/// # Use
/// ```no_run
/// # async fn run() -> turbo_model::Result<()> {
/// let turbo = turbo_model::Turbo::builder()
///     .backend(turbo_model::backend::Redis::new("redis://127.0.0.1:6379/")?)
///     .install()?;
/// # Ok(()) }
/// ```
///
/// Or set `TURBO_MODEL_REDIS_URL`: with the `redis` feature, a `Turbo` built without an
/// explicit backend uses it.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    target: Arc<Target>,
    url: String,
    prefix: String,
    publish: redis::Script,
    position: redis::Script,
    new_epoch: redis::Script,
    queue_bytes: usize,
    publish_deadline: Duration,
    linger: Duration,
    /// Set once, at start.
    running: OnceLock<Running>,
}

/// What exists once the backend has started.
struct Running {
    connection: Commands,
    queue: mpsc::Sender<Queued>,
    /// Bytes of the broadcasts in `queue`.
    queued_bytes: Arc<AtomicUsize>,
    /// Asks the listener to subscribe to a stream's channel.
    subscribe: mpsc::Sender<Request>,
    /// What crossed from Redis.
    received: Arc<Received>,
    /// What the publisher did.
    published: Arc<PublishStats>,
    feed: Feed,
    settings: HubSettings,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.inner.url)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

fn redis_error(action: &'static str, stream: &str, error: redis::RedisError) -> Error {
    Error::Backend {
        action,
        stream: stream.to_owned(),
        message: error.to_string(),
        source: Some(Box::new(error)),
    }
}

impl Redis {
    /// A backend for the Redis server at `url` (`redis://host:port/db`). Nothing is
    /// connected until the [`Turbo`](crate::Turbo) is built.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the URL is not a Redis URL.
    pub fn new(url: &str) -> Result<Self> {
        Self::with_prefix(url, "turbo-model")
    }

    /// As [`new`](Self::new), with keys and the channel named `prefix:…` (default
    /// `turbo-model`): several applications can share one Redis.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_prefix(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| redis_error("connect", "-", e))?;
        Ok(Self::on(Target::Server(client), url.to_owned(), prefix))
    }

    /// A backend for a Redis Cluster, found from any of its `nodes`
    /// (`redis://host:port`). A stream's keys and channel share one hash slot; broadcasts
    /// cross on sharded channels (`SPUBLISH`, `SSUBSCRIBE`, Redis 7), so each goes only to
    /// the node of its stream and to the processes that watch it.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when no node is given or a node is not a Redis URL.
    pub fn cluster<S: AsRef<str>>(nodes: &[S]) -> Result<Self> {
        Self::cluster_with_prefix(nodes, "turbo-model")
    }

    /// As [`cluster`](Self::cluster), with keys and channels named `prefix:…`.
    ///
    /// # Errors
    ///
    /// As [`cluster`](Self::cluster).
    pub fn cluster_with_prefix<S: AsRef<str>>(nodes: &[S], prefix: &str) -> Result<Self> {
        let nodes: Vec<String> = nodes.iter().map(|n| n.as_ref().to_owned()).collect();
        if nodes.is_empty() {
            return Err(Error::backend(
                "connect",
                "-",
                "a Redis Cluster needs at least one node",
            ));
        }
        for node in &nodes {
            redis::Client::open(node.as_str()).map_err(|e| redis_error("connect", "-", e))?;
        }
        let url = nodes.join(",");
        Ok(Self::on(Target::Cluster(nodes), url, prefix))
    }

    fn on(target: Target, url: String, prefix: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                target: Arc::new(target),
                url,
                prefix: prefix.to_owned(),
                publish: redis::Script::new(PUBLISH),
                position: redis::Script::new(POSITION),
                new_epoch: redis::Script::new(NEW_EPOCH),
                queue_bytes: DEFAULT_QUEUE_BYTES,
                publish_deadline: DEFAULT_PUBLISH_DEADLINE,
                linger: DEFAULT_LINGER,
                running: OnceLock::new(),
            }),
        }
    }

    /// Bytes of broadcasts that may wait for Redis in this process; default 16 MiB.
    /// Past it, `send` returns an error. Set before the [`Turbo`](crate::Turbo) is built.
    #[must_use]
    pub fn queue_bytes(self, bytes: usize) -> Self {
        self.configure(|inner| inner.queue_bytes = bytes.max(1))
    }

    /// How long a broadcast may wait for Redis (retried in order) before it is dropped
    /// and its stream moved to a new epoch; default 10 s. Set before the
    /// [`Turbo`](crate::Turbo) is built.
    #[must_use]
    pub fn publish_deadline(self, deadline: Duration) -> Self {
        self.configure(|inner| inner.publish_deadline = deadline)
    }

    /// How long this process keeps listening to a stream after its last client here left
    /// (so that a page that reloads or reconnects is served from this process's history);
    /// default 30 s. Set before the [`Turbo`](crate::Turbo) is built.
    #[must_use]
    pub fn linger(self, linger: Duration) -> Self {
        self.configure(|inner| inner.linger = linger)
    }

    fn configure(mut self, change: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => change(inner),
            None => tracing::warn!("a Redis backend that is shared can no longer be configured"),
        }
        self
    }

    fn keys(&self, stream: &StreamName) -> [String; 2] {
        // One hash tag per stream: a cluster keeps a stream's keys on one node.
        let base = format!("{}:{{{}}}", self.inner.prefix, stream.as_str());
        [format!("{base}:meta"), format!("{base}:log")]
    }

    /// The channel a stream's broadcasts cross on, in its keys' hash slot.
    fn channel(&self, stream: &StreamName) -> String {
        channel_of(&self.inner.prefix, stream)
    }

    /// What this process received from Redis so far: broadcasts, their bytes, and the
    /// stream channels it listens to now. With interest routing, a process receives the
    /// broadcasts of the streams its own clients watch, not every stream's.
    pub fn received(&self) -> Traffic {
        self.inner
            .running
            .get()
            .map(|running| {
                let r = &running.received;
                Traffic {
                    messages: r.messages.load(Ordering::Relaxed),
                    bytes: r.bytes.load(Ordering::Relaxed),
                    channels: r.channels.load(Ordering::Relaxed),
                }
            })
            .unwrap_or_default()
    }

    fn running(&self, action: &'static str, stream: &str) -> Result<&Running> {
        self.inner
            .running
            .get()
            .ok_or_else(|| Error::backend(action, stream, "the Redis backend has not started"))
    }

    fn ttl(settings: HubSettings) -> u64 {
        settings.history_age.as_secs().max(1) + 60
    }

    /// Runs the position script for `since`: the stream's record and its log.
    async fn resume_from_log(&self, stream: &StreamName, since: Option<Since>) -> Result<Resume> {
        let running = self.running("resume", stream.as_str())?;
        // Frames published after the position read below must reach this process: the
        // stream's channel is subscribed first.
        let (reply, subscribed) = oneshot::channel();
        let asked = async {
            running
                .subscribe
                .send((stream.clone(), reply))
                .await
                .map_err(|_| "the Redis backend has stopped".to_owned())?;
            subscribed
                .await
                .map_err(|_| "the Redis backend has stopped".to_owned())?
        };
        match tokio::time::timeout(READY_WITHIN, asked).await {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(Error::backend("resume", stream.as_str(), message)),
            Err(_) => {
                return Err(Error::backend(
                    "resume",
                    stream.as_str(),
                    "not subscribed to Redis yet; the client will retry",
                ));
            }
        }
        let mut connection = running
            .connection
            .ready()
            .await
            .map_err(|e| redis_error("resume", stream.as_str(), e))?;
        let keys = self.keys(stream);
        let (mode, from) = match since {
            None => ("", 0),
            Some(Since::Position(p)) => ("p", p.seq),
            Some(Since::Time(t)) => ("t", t),
        };
        let out: Vec<String> = self
            .inner
            .position
            .key(&keys[0])
            .key(&keys[1])
            .arg(Position::epoch_hex(new_epoch()))
            .arg(Self::ttl(running.settings))
            .arg(clock::now_micros())
            .arg(mode)
            .arg(from)
            .arg(running.settings.history_len)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| redis_error("resume", stream.as_str(), e))?;
        let bad = || {
            Error::backend(
                "resume",
                stream.as_str(),
                "unexpected reply from the position script",
            )
        };
        let [epoch, seq, created, lost, rest @ ..] = out.as_slice() else {
            return Err(bad());
        };
        let position = Position::parse(&format!("{epoch}.{seq}")).ok_or_else(bad)?;
        let created: u64 = created.parse().map_err(|_| bad())?;
        let lost: u64 = lost.parse().map_err(|_| bad())?;
        let mut kept = Vec::with_capacity(rest.len() / 3);
        let mut html = Vec::with_capacity(rest.len() / 3);
        for entry in rest.chunks_exact(3) {
            let (Ok(q), Ok(t)) = (entry[0].parse::<u64>(), entry[1].parse::<u64>()) else {
                return Err(bad());
            };
            kept.push((q, t));
            html.push(&entry[2]);
        }
        let Some(since) = since else {
            return Ok(Resume::new(position, Vec::new(), None));
        };
        // Entries before the oldest kept one were trimmed: they are no later than it.
        let trimmed_until = match kept.first() {
            Some(&(q, t)) if q > 1 => t,
            _ => 0,
        };
        let ttl_micros = Self::ttl(running.settings) * 1_000_000;
        let record = Record {
            position,
            kept: &kept,
            trimmed_until,
            created,
            forgotten_until: running
                .feed
                .forgotten_until()
                .max(lost)
                .max(clock::now_micros().saturating_sub(ttl_micros)),
        };
        match resolve(since, &record) {
            Resolution::Gap(gap) => Ok(Resume::new(position, Vec::new(), Some(gap))),
            Resolution::After(start) => {
                let replay = kept
                    .iter()
                    .zip(html)
                    .filter(|((q, _), _)| *q > start)
                    .map(|(&(q, t), h)| {
                        Frame::message(
                            stream,
                            Position::new(position.epoch, q),
                            t,
                            Arc::from(h.as_str()),
                        )
                    })
                    .collect();
                Ok(Resume::new(position, replay, None))
            }
        }
    }
}

impl Backend for Redis {
    fn numbering(&self) -> Numbering {
        Numbering::Broker
    }

    fn start(&self, feed: Feed) -> Result<()> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::backend(
                "start",
                "-",
                "the Redis backend needs a tokio runtime: build the Turbo inside one",
            )
        })?;
        if self.inner.running.get().is_some() {
            return Err(Error::backend(
                "start",
                "-",
                "this Redis backend is already started: give each Turbo its own",
            ));
        }
        let connection = self
            .inner
            .target
            .commands()
            .map_err(|e| redis_error("start", "-", e))?;
        let (queue, jobs) = mpsc::channel(QUEUE);
        let (subscribe, requests) = mpsc::channel(subscriber::REQUESTS);
        let (stop, stopped) = watch::channel(false);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Received::default());
        let published = Arc::new(PublishStats::default());
        let running = Running {
            published: Arc::clone(&published),
            connection: connection.clone(),
            queue,
            queued_bytes: Arc::clone(&queued_bytes),
            subscribe,
            received: Arc::clone(&received),
            settings: feed.settings(),
            feed: feed.clone(),
            stop,
            tasks: Mutex::new(Vec::new()),
        };
        if self.inner.running.set(running).is_err() {
            return Err(Error::backend(
                "start",
                "-",
                "this Redis backend is already started: give each Turbo its own",
            ));
        }
        let tasks = vec![
            runtime.spawn(
                Publisher {
                    redis: self.clone(),
                    connection,
                    settings: feed.settings(),
                    queued_bytes,
                    lost: HashSet::new(),
                    process: Position::epoch_hex(new_epoch()),
                    published: 0,
                    stats: published,
                }
                .run(jobs, stopped.clone()),
            ),
            runtime.spawn(
                Subscriber {
                    target: Arc::clone(&self.inner.target),
                    channel: {
                        let prefix = self.inner.prefix.clone();
                        Arc::new(move |stream: &StreamName| channel_of(&prefix, stream))
                    },
                    feed,
                    received,
                    linger: self.inner.linger,
                    subscribed: HashSet::new(),
                    pending: HashSet::new(),
                }
                .run(requests, stopped),
            ),
        ];
        if let Some(running) = self.inner.running.get() {
            running
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(tasks);
        }
        Ok(())
    }

    fn publish(&self, publication: Publication) -> Result<()> {
        let running = self.running("publish", publication.stream.as_str())?;
        let stream = publication.stream.clone();
        if *running.stop.borrow() {
            return Err(Error::backend(
                "publish",
                stream.as_str(),
                "the Redis backend has stopped",
            ));
        }
        let bytes = publication.html.len() + stream.as_str().len();
        let before = running.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.inner.queue_bytes {
            running.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(Error::backend(
                "publish",
                stream.as_str(),
                format!(
                    "{} bytes of broadcasts already wait for Redis (at most {}); this one is refused",
                    before, self.inner.queue_bytes
                ),
            ));
        }
        let queued = Queued {
            publication,
            bytes,
            at: Instant::now(),
        };
        running.queue.try_send(queued).map_err(|error| {
            running.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            let message = match error {
                mpsc::error::TrySendError::Full(_) => {
                    "100000 broadcasts already wait for Redis; this one is refused"
                }
                mpsc::error::TrySendError::Closed(_) => "the Redis backend has stopped",
            };
            Error::backend("publish", stream.as_str(), message)
        })
    }

    fn resume(&self, stream: StreamName, since: Option<Since>) -> BoxFuture<Result<Resume>> {
        let this = self.clone();
        Box::pin(async move {
            let resume = this.resume_from_log(&stream, since).await?;
            if let Ok(running) = this.running("resume", stream.as_str()) {
                // The hub learns the position it will get frames after.
                let _ = running.feed.learn(&stream, resume.position);
            }
            Ok(resume)
        })
    }

    fn stats(&self) -> BackendStats {
        let Some(running) = self.inner.running.get() else {
            return BackendStats::default();
        };
        let get = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        BackendStats {
            queued: (running.queue.max_capacity() - running.queue.capacity()) as u64,
            queued_bytes: running.queued_bytes.load(Ordering::Relaxed) as u64,
            published: get(&running.published.published),
            retries: get(&running.published.retries),
            lost: get(&running.published.lost),
            received: get(&running.received.messages),
            received_bytes: get(&running.received.bytes),
            channels: get(&running.received.channels),
        }
    }

    fn publish_latencies(&self) -> Option<&crate::metrics::Latencies> {
        self.inner
            .running
            .get()
            .map(|running| &running.published.latencies)
    }

    fn shutdown(&self) -> BoxFuture<()> {
        let this = self.clone();
        Box::pin(async move {
            let Some(running) = this.inner.running.get() else {
                return;
            };
            running.stop.send_replace(true);
            let tasks = std::mem::take(
                &mut *running
                    .tasks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            for mut task in tasks {
                if tokio::time::timeout(STOP_WITHIN, &mut task).await.is_err() {
                    task.abort();
                }
            }
        })
    }
}

/// What one process received from Redis: see [`Redis::received`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Traffic {
    /// Broadcasts received (and announcements of new epochs).
    pub messages: u64,
    /// Their payloads' bytes.
    pub bytes: u64,
    /// Stream channels subscribed now.
    pub channels: u64,
}

/// The channel of `stream`'s broadcasts: `prefix:{stream}:frames`, in the hash slot of
/// its keys.
fn channel_of(prefix: &str, stream: &StreamName) -> String {
    format!("{prefix}:{{{}}}:frames", stream.as_str())
}

/// Resolves once the backend is told to stop.
async fn stopping(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
