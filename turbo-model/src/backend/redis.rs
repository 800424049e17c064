//! The Redis backend; see [`Redis`].

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Backend, BoxFuture, Publication, Resume};
use crate::error::{Error, Result};
use crate::hub::{ConnectionId, Frame, Gap, Hub, HubSettings, Position};
use crate::stream::StreamName;

/// Publishes one broadcast: number it, log it, announce it.
const PUBLISH: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'seq', seq, 'html', ARGV[2])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
redis.call('PUBLISH', ARGV[6], cjson.encode({s = ARGV[7], e = epoch, q = seq, h = ARGV[2], x = ARGV[3], p = ARGV[8]}))
return {epoch, tostring(seq)}
";

/// A stream's position, creating its epoch if it has none; with `since` (>= 0), also the
/// logged frames after it, oldest first: `{epoch, seq, seq1, html1, seq2, html2, ...}`.
const POSITION: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch, 'EX', ARGV[3])
end
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local out = {epoch, tostring(seq)}
local since = tonumber(ARGV[2])
if since >= 0 and since < seq then
  local entries = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', ARGV[4])
  for i = #entries, 1, -1 do
    local fields = entries[i][2]
    local q, h
    for j = 1, #fields, 2 do
      if fields[j] == 'seq' then q = fields[j + 1] elseif fields[j] == 'html' then h = fields[j + 1] end
    end
    if q and h and tonumber(q) > since then
      table.insert(out, q)
      table.insert(out, h)
    end
  end
end
return out
";

/// Broadcasts waiting to be published from this process, at most.
const QUEUE: usize = 10_000;

/// What crosses the channel: one broadcast, as the script announces it.
#[derive(Debug, Serialize, Deserialize)]
struct Announced {
    /// The stream.
    s: String,
    /// The epoch, 16 hex digits.
    e: String,
    /// The sequence number.
    q: u64,
    /// The `<turbo-stream>` element.
    h: String,
    /// The connection that gets a skip instead, or empty.
    x: String,
    /// The process the broadcast came from: connection ids mean nothing elsewhere.
    p: String,
}

/// A broadcast on its way to Redis.
struct Job {
    stream: StreamName,
    html: String,
    except: Option<ConnectionId>,
}

/// Broadcasts through Redis: they reach the subscribers of every server process, and a
/// client that reconnects to another process resumes where it was.
///
///
/// # How
///
/// Per stream, Redis holds an epoch, a sequence counter and a log (a Redis stream capped
/// at the history length), all expiring after the history age without broadcasts. One
/// Lua script publishes a broadcast atomically: it numbers it (`INCR`), appends it to
/// the log (`XADD … MAXLEN ~`), and `PUBLISH`es it on one channel that every process
/// subscribes to; each process hands the frames to its own hub, which fans them out to
/// its subscribers. A broadcast is rendered once, in the process that saved, and crosses
/// the network once per process.
///
/// Redis Streams give the ordered, capped, per-stream history that resume needs (read
/// with `XREVRANGE`), Pub/Sub the low-latency fan-out to processes without a consumer
/// group per process. A subscription that a process cannot answer from its own hub (it
/// has not seen the stream, or the client missed more than it keeps) is answered from
/// the log.
///
/// # Faults
///
/// - Publishing while Redis is unreachable fails with a logged error; the database
///   write that caused it has succeeded. The connection reconnects by itself.
/// - When the Pub/Sub connection drops, the process reconnects with backoff and then
///   closes its stream connections: clients reconnect and resume from the log, which
///   holds whatever was published meanwhile, or get the gap signal if Redis lost it
///   (a restart without persistence starts new epochs).
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
///     .backend(turbo_model::Redis::new("redis://127.0.0.1:6379/")?)
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
    connection: OnceLock<ConnectionManager>,
    queue: OnceLock<mpsc::Sender<Job>>,
    settings: OnceLock<HubSettings>,
    /// This process, among those sharing the channel.
    process: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.inner.url)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

fn broker_error(stream: &str, error: impl std::fmt::Display) -> Error {
    Error::Backend {
        stream: stream.to_owned(),
        message: error.to_string(),
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
        let client = redis::Client::open(url).map_err(|e| broker_error("-", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                url: url.to_owned(),
                prefix: prefix.to_owned(),
                channel: format!("{prefix}:frames"),
                publish: redis::Script::new(PUBLISH),
                position: redis::Script::new(POSITION),
                connection: OnceLock::new(),
                queue: OnceLock::new(),
                settings: OnceLock::new(),
                process: Position::epoch_hex(new_epoch()),
            }),
        })
    }

    fn keys(&self, stream: &StreamName) -> [String; 3] {
        // One hash tag per stream: a cluster keeps a stream's keys on one node.
        let base = format!("{}:{{{}}}", self.inner.prefix, stream.as_str());
        [
            format!("{base}:epoch"),
            format!("{base}:seq"),
            format!("{base}:log"),
        ]
    }

    fn settings(&self) -> HubSettings {
        self.inner.settings.get().copied().unwrap_or_default()
    }

    fn ttl(&self) -> u64 {
        self.settings().history_age.as_secs().max(1) + 60
    }

    fn connection(&self) -> Result<ConnectionManager> {
        self.inner
            .connection
            .get()
            .cloned()
            .ok_or_else(|| broker_error("-", "the Redis backend has not started"))
    }

    /// Runs the position script: `(position, logged frames after since)`.
    async fn position(
        &self,
        stream: &StreamName,
        since: Option<u64>,
    ) -> Result<(Position, Vec<(u64, String)>)> {
        let mut connection = self.connection()?;
        let keys = self.keys(stream);
        let since = since.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let out: Vec<String> = self
            .inner
            .position
            .key(&keys[0])
            .key(&keys[1])
            .key(&keys[2])
            .arg(Position::epoch_hex(new_epoch()))
            .arg(since)
            .arg(self.ttl())
            .arg(self.settings().history_len)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| broker_error(stream.as_str(), e))?;
        let bad = || broker_error(stream.as_str(), "unexpected reply from the position script");
        let [epoch, seq, rest @ ..] = out.as_slice() else {
            return Err(bad());
        };
        let position = Position::parse(&format!("{epoch}.{seq}")).ok_or_else(bad)?;
        let frames = rest
            .chunks_exact(2)
            .filter_map(|pair| Some((pair[0].parse().ok()?, pair[1].clone())))
            .collect();
        Ok((position, frames))
    }
}

fn new_epoch() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        return nanos.max(1);
    }
    u64::from_le_bytes(bytes).max(1)
}

impl Backend for Redis {
    fn start(&self, hub: Arc<Hub>) -> Result<()> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            broker_error(
                "-",
                "the Redis backend needs a tokio runtime: build the Turbo inside one",
            )
        })?;
        let _ = self.inner.settings.set(hub.settings());
        let connection = self
            .inner
            .client
            .get_connection_manager_lazy(
                redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2))),
            )
            .map_err(|e| broker_error("-", e))?;
        let _ = self.inner.connection.set(connection.clone());
        let (queue, jobs) = mpsc::channel(QUEUE);
        let _ = self.inner.queue.set(queue);
        hub.use_broker_positions();
        runtime.spawn(publisher(self.clone(), connection, jobs));
        runtime.spawn(receiver(self.clone(), hub));
        Ok(())
    }

    fn publish(&self, _hub: &Hub, publication: Publication<'_>) -> Result<()> {
        let queue = self
            .inner
            .queue
            .get()
            .ok_or_else(|| broker_error(publication.stream.as_str(), "not started"))?;
        queue
            .try_send(Job {
                stream: publication.stream.clone(),
                html: publication.html.to_owned(),
                except: publication.except,
            })
            .map_err(|_| {
                broker_error(
                    publication.stream.as_str(),
                    "too many broadcasts waiting for Redis; this one is dropped",
                )
            })
    }

    fn render_position(
        &self,
        hub: &Hub,
        stream: &StreamName,
        at: Option<Instant>,
    ) -> Option<Position> {
        if let Some(known) = hub.known_position_for_render(stream, at) {
            return Some(known);
        }
        // Rendering is synchronous; the lookup is one round trip. Only a multi-threaded
        // runtime lets this thread wait while the others carry on.
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return None;
        }
        let lookup = tokio::task::block_in_place(|| runtime.block_on(self.position(stream, None)));
        match lookup {
            Ok((position, _)) => Some(position),
            Err(error) => {
                tracing::warn!(%stream, %error, "no position for the page: it will subscribe from where the stream is when it connects");
                None
            }
        }
    }

    fn resume(&self, stream: StreamName, since: Option<Position>) -> BoxFuture<Result<Resume>> {
        let this = self.clone();
        Box::pin(async move {
            let wanted = since.map(|s| s.seq);
            let (position, logged) = this.position(&stream, wanted).await?;
            let Some(since) = since else {
                return Ok(Resume::new(position, Vec::new(), None));
            };
            if since.epoch != position.epoch || since.seq > position.seq {
                return Ok(Resume::new(position, Vec::new(), Some(Gap::Epoch)));
            }
            if since.seq == position.seq {
                return Ok(Resume::new(position, Vec::new(), None));
            }
            if logged.first().is_none_or(|(seq, _)| *seq != since.seq + 1) {
                return Ok(Resume::new(position, Vec::new(), Some(Gap::History)));
            }
            let replay = logged
                .iter()
                .filter_map(|(seq, html)| Frame::message(&stream, position.epoch, *seq, html))
                .collect();
            Ok(Resume::new(position, replay, None))
        })
    }
}

/// Publishes this process's broadcasts, one after another, so that they keep their order.
async fn publisher(redis: Redis, mut connection: ConnectionManager, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        let keys = redis.keys(&job.stream);
        let except = job
            .except
            .map(|id| id.get().to_string())
            .unwrap_or_default();
        let result: redis::RedisResult<Vec<String>> = redis
            .inner
            .publish
            .key(&keys[0])
            .key(&keys[1])
            .key(&keys[2])
            .arg(Position::epoch_hex(new_epoch()))
            .arg(&job.html)
            .arg(except)
            .arg(redis.settings().history_len)
            .arg(redis.ttl())
            .arg(&redis.inner.channel)
            .arg(job.stream.as_str())
            .arg(&redis.inner.process)
            .invoke_async(&mut connection)
            .await;
        if let Err(error) = result {
            tracing::error!(
                stream = %job.stream,
                %error,
                "broadcast lost: Redis did not take it (the database write that caused it is kept)"
            );
        }
    }
}

/// Receives every process's broadcasts and hands them to this process's hub; reconnects
/// with backoff, and after a reconnect makes every client resume from the log.
async fn receiver(redis: Redis, hub: Arc<Hub>) {
    let mut delay = Duration::from_millis(100);
    let mut first = true;
    loop {
        match redis.inner.client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&redis.inner.channel).await {
                Ok(()) => {
                    delay = Duration::from_millis(100);
                    if !first {
                        tracing::info!("Redis is back: clients resume from its log");
                        hub.kick_all();
                    }
                    first = false;
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        deliver(&hub, &redis.inner.process, message.get_payload_bytes());
                    }
                    tracing::warn!("lost the Redis subscription; reconnecting");
                }
                Err(error) => tracing::warn!(%error, "cannot subscribe on Redis; retrying"),
            },
            Err(error) => tracing::warn!(%error, "cannot reach Redis; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

fn deliver(hub: &Hub, process: &str, payload: &[u8]) {
    let announced: Announced = match serde_json::from_slice(payload) {
        Ok(announced) => announced,
        Err(error) => {
            tracing::warn!(%error, "unreadable frame on the Redis channel");
            return;
        }
    };
    let (Ok(stream), Some(epoch)) = (
        StreamName::new(announced.s),
        u64::from_str_radix(&announced.e, 16).ok(),
    ) else {
        tracing::warn!("a frame on the Redis channel names no valid stream or epoch");
        return;
    };
    let except = if announced.p == process {
        announced.x.parse().ok().map(ConnectionId::new)
    } else {
        None
    };
    hub.deliver_at(
        &stream,
        Position::new(epoch, announced.q),
        &announced.h,
        except,
    );
}
