//! The Redis backend; see [`Redis`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{Backend, BoxFuture, Resume};
use crate::clock;
use crate::error::{Error, Result};
use crate::hub::{
    Feed, Frame, HubSettings, Numbering, Position, Publication, Record, Resolution, Since,
    new_epoch, resolve,
};
use crate::name::{ConnectionId, StreamName};

/// Publishes one broadcast: number it, log it, announce it.
///
/// KEYS: the stream's meta hash (epoch, seq, created) and its log. ARGV: a fresh epoch,
/// the element, the excepted connection, the log length, the TTL, the channel, the
/// stream name, the time, this process and the publication's number in it.
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
redis.call('PUBLISH', ARGV[6], cjson.encode({s = ARGV[7], e = epoch, q = seq, t = ARGV[8], h = ARGV[2], x = ARGV[3]}))
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
/// channel, the stream name.
const NEW_EPOCH: &str = r"
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'seq', 0, 'created', ARGV[2], 'lost', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], cjson.encode({s = ARGV[5], e = ARGV[1], q = 0, t = ARGV[2], h = '', x = '', r = 1}))
return 1
";

/// Broadcasts waiting to be published from this process, at most, by count.
const QUEUE: usize = 100_000;

/// Bytes of broadcasts waiting to be published from this process, at most, by default.
pub const DEFAULT_QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// How long a broadcast may wait for Redis before its stream is moved to a new epoch,
/// by default.
pub const DEFAULT_PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// Streams that lost a broadcast and wait to be moved to a new epoch, at most.
const MAX_LOST: usize = 100_000;

/// How long a subscription waits for the Pub/Sub connection before it is refused (the
/// client retries).
const READY_WITHIN: Duration = Duration::from_secs(5);

/// How long [`Backend::shutdown`] waits for the tasks to stop.
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// What crosses the channel: one broadcast, as the script announces it.
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
/// it numbers it (`HINCRBY`), appends it to the log (`XADD … MAXLEN ~`), and
/// `PUBLISH`es it on one channel that every process subscribes to; each process hands
/// the frames to its own hub, which fans them out to its subscribers. A broadcast is
/// rendered once, in the process that saved, and crosses the network once per process.
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
/// - When the Pub/Sub connection drops, the process reconnects with backoff and then
///   closes its stream connections: clients reconnect and resume from the log, which
///   holds whatever was published meanwhile, or get the gap signal if Redis lost it
///   (a restart without persistence starts new epochs). Subscriptions wait (up to 5 s)
///   until the Pub/Sub connection is up, so none misses a frame published in between.
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
/// (`ConnectionManager`) and async Pub/Sub.
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
    client: redis::Client,
    url: String,
    prefix: String,
    channel: String,
    publish: redis::Script,
    position: redis::Script,
    new_epoch: redis::Script,
    queue_bytes: usize,
    publish_deadline: Duration,
    /// Set once, at start.
    running: OnceLock<Running>,
}

/// What exists once the backend has started.
struct Running {
    connection: ConnectionManager,
    queue: mpsc::Sender<Queued>,
    /// Bytes of the broadcasts in `queue`.
    queued_bytes: Arc<AtomicUsize>,
    /// Whether the Pub/Sub connection is subscribed: frames published from now on reach
    /// this process.
    listening: watch::Sender<bool>,
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
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                url: url.to_owned(),
                prefix: prefix.to_owned(),
                channel: format!("{prefix}:frames"),
                publish: redis::Script::new(PUBLISH),
                position: redis::Script::new(POSITION),
                new_epoch: redis::Script::new(NEW_EPOCH),
                queue_bytes: DEFAULT_QUEUE_BYTES,
                publish_deadline: DEFAULT_PUBLISH_DEADLINE,
                running: OnceLock::new(),
            }),
        })
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
        // Frames published after the position read below must reach this process.
        let mut listening = running.listening.subscribe();
        let ready = tokio::time::timeout(READY_WITHIN, listening.wait_for(|up| *up))
            .await
            .is_ok_and(|up| up.is_ok());
        if !ready {
            return Err(Error::backend(
                "resume",
                stream.as_str(),
                "not subscribed to Redis yet; the client will retry",
            ));
        }
        let mut connection = running.connection.clone();
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
            .client
            .get_connection_manager_lazy(
                redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2))),
            )
            .map_err(|e| redis_error("start", "-", e))?;
        let (queue, jobs) = mpsc::channel(QUEUE);
        let (stop, stopped) = watch::channel(false);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let running = Running {
            connection: connection.clone(),
            queue,
            queued_bytes: Arc::clone(&queued_bytes),
            listening: watch::Sender::new(false),
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
                }
                .run(jobs, stopped.clone()),
            ),
            runtime.spawn(receiver(self.clone(), feed, stopped)),
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

/// A broadcast waiting in the queue.
struct Queued {
    publication: Publication,
    /// What it counts for in the queue's byte budget.
    bytes: usize,
    /// When `send` accepted it: the publish deadline runs from here.
    at: Instant,
}

/// Publishes this process's broadcasts, one after another, so that they keep their
/// order; retries what Redis does not take until the deadline, then moves the stream to
/// a new epoch as soon as Redis answers.
struct Publisher {
    redis: Redis,
    connection: ConnectionManager,
    settings: HubSettings,
    queued_bytes: Arc<AtomicUsize>,
    /// Streams that lost a broadcast and are not on a new epoch yet.
    lost: HashSet<StreamName>,
    /// This process, to the publish script (random), and its publications' numbers.
    process: String,
    published: u64,
}

/// The first pause between attempts; it doubles up to [`MAX_RETRY_DELAY`].
const RETRY_DELAY: Duration = Duration::from_millis(50);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

impl Publisher {
    async fn run(mut self, mut jobs: mpsc::Receiver<Queued>, mut stopped: watch::Receiver<bool>) {
        let mut repair_delay = RETRY_DELAY;
        loop {
            let job = if self.lost.is_empty() {
                tokio::select! {
                    job = jobs.recv() => job,
                    () = stopping(&mut stopped) => None,
                }
            } else {
                tokio::select! {
                    job = jobs.recv() => job,
                    () = stopping(&mut stopped) => None,
                    () = tokio::time::sleep(repair_delay) => {
                        repair_delay = if self.repair_all().await {
                            RETRY_DELAY
                        } else {
                            (repair_delay * 2).min(MAX_RETRY_DELAY)
                        };
                        continue;
                    }
                }
            };
            let Some(job) = job else {
                return;
            };
            self.publish(&job, &mut stopped).await;
            self.queued_bytes.fetch_sub(job.bytes, Ordering::AcqRel);
        }
    }

    /// Publishes one broadcast, retrying until its deadline; past it, marks its stream.
    async fn publish(&mut self, job: &Queued, stopped: &mut watch::Receiver<bool>) {
        let stream = &job.publication.stream;
        // One number for every attempt: Redis publishes it once.
        self.published += 1;
        let mut delay = RETRY_DELAY;
        let deadline = self.redis.inner.publish_deadline;
        loop {
            // An attempt may not outlast the deadline either (a reconnecting client
            // would wait for Redis as long as it takes).
            let left = deadline.saturating_sub(job.at.elapsed()).max(RETRY_DELAY);
            let attempt = async {
                if self.lost.contains(stream) {
                    self.move_to_new_epoch(stream).await?;
                }
                self.publish_once(&job.publication).await
            };
            let attempt = match tokio::time::timeout(left, attempt).await {
                Ok(attempt) => attempt,
                Err(_) => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no answer from Redis before the publish deadline",
                ))),
            };
            let Err(error) = attempt else {
                return;
            };
            if job.at.elapsed() >= deadline || *stopped.borrow() {
                self.lose(stream, &error);
                return;
            }
            tracing::warn!(%stream, %error, "Redis did not take a broadcast; retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stopping(stopped) => {}
            }
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    async fn publish_once(&mut self, publication: &Publication) -> redis::RedisResult<()> {
        let keys = self.redis.keys(&publication.stream);
        let except = publication
            .except
            .map(|id| id.to_string())
            .unwrap_or_default();
        let _: Vec<String> = self
            .redis
            .inner
            .publish
            .key(&keys[0])
            .key(&keys[1])
            .arg(Position::epoch_hex(new_epoch()))
            .arg(&*publication.html)
            .arg(except)
            .arg(self.settings.history_len)
            .arg(Redis::ttl(self.settings))
            .arg(&self.redis.inner.channel)
            .arg(publication.stream.as_str())
            .arg(clock::now_micros())
            .arg(&self.process)
            .arg(self.published)
            .invoke_async(&mut self.connection)
            .await?;
        Ok(())
    }

    /// Gives a broadcast up: its stream moves to a new epoch once Redis answers.
    fn lose(&mut self, stream: &StreamName, error: &redis::RedisError) {
        if self.lost.len() < MAX_LOST || self.lost.contains(stream) {
            tracing::error!(
                %stream,
                %error,
                "broadcast dropped: Redis did not take it before the deadline; the stream's \
                 subscribers get the gap signal when Redis is back (the database write is kept)"
            );
            self.lost.insert(stream.clone());
        } else {
            tracing::error!(
                %stream,
                %error,
                lost = self.lost.len(),
                "broadcast dropped, and too many streams already wait for a new epoch: this \
                 stream's subscribers will not be told"
            );
        }
    }

    async fn move_to_new_epoch(&mut self, stream: &StreamName) -> redis::RedisResult<()> {
        let keys = self.redis.keys(stream);
        let _: i64 = self
            .redis
            .inner
            .new_epoch
            .key(&keys[0])
            .key(&keys[1])
            .arg(Position::epoch_hex(new_epoch()))
            .arg(clock::now_micros())
            .arg(Redis::ttl(self.settings))
            .arg(&self.redis.inner.channel)
            .arg(stream.as_str())
            .invoke_async(&mut self.connection)
            .await?;
        self.lost.remove(stream);
        tracing::info!(%stream, "the stream moved to a new epoch: its subscribers refresh");
        Ok(())
    }

    /// Moves every marked stream to a new epoch; returns whether Redis took them all.
    async fn repair_all(&mut self) -> bool {
        let streams: Vec<StreamName> = self.lost.iter().cloned().collect();
        for stream in streams {
            if let Err(error) = self.move_to_new_epoch(&stream).await {
                tracing::debug!(%stream, %error, "Redis is still away; the stream waits for its new epoch");
                return false;
            }
        }
        true
    }
}

/// Receives every process's broadcasts and hands them to this process's hub; reconnects
/// with backoff, and after a reconnect makes every client resume from the log.
async fn receiver(redis: Redis, feed: Feed, mut stopped: watch::Receiver<bool>) {
    let mut delay = Duration::from_millis(100);
    let mut first = true;
    let listening = match redis.inner.running.get() {
        Some(running) => running.listening.clone(),
        None => return,
    };
    loop {
        let session = async {
            match redis.inner.client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&redis.inner.channel).await {
                    Ok(()) => {
                        delay = Duration::from_millis(100);
                        if !first {
                            tracing::info!("Redis is back: clients resume from its log");
                            let _ = feed.resync_all("the broker connection was lost");
                        }
                        first = false;
                        listening.send_replace(true);
                        let mut messages = pubsub.into_on_message();
                        while let Some(message) = messages.next().await {
                            deliver(&feed, message.get_payload_bytes());
                        }
                        listening.send_replace(false);
                        tracing::warn!("lost the Redis subscription; reconnecting");
                    }
                    Err(error) => tracing::warn!(%error, "cannot subscribe on Redis; retrying"),
                },
                Err(error) => tracing::warn!(%error, "cannot reach Redis; retrying"),
            }
        };
        tokio::select! {
            () = session => {}
            () = stopping(&mut stopped) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopping(&mut stopped) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Resolves once the backend is told to stop.
async fn stopping(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

fn deliver(feed: &Feed, payload: &[u8]) {
    let announced: Announced = match serde_json::from_slice(payload) {
        Ok(announced) => announced,
        Err(error) => {
            tracing::warn!(%error, "unreadable frame on the Redis channel");
            return;
        }
    };
    let (Ok(stream), Some(epoch), Ok(time)) = (
        StreamName::new(announced.s),
        u64::from_str_radix(&announced.e, 16).ok(),
        announced.t.parse::<u64>(),
    ) else {
        tracing::warn!("a frame on the Redis channel names no valid stream, epoch or time");
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
