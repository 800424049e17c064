//! Where a rendered broadcast goes after it leaves the sender: the delivery backend.
//!
//! The default, [`InProcess`], hands it straight to this process's hub. A broker backend
//! (`Redis`, feature `redis`) publishes it to a broker instead, which numbers it and
//! feeds it back to the hub of every process; hooks, templates and the endpoints do not
//! change. A backend sees the hub only through the [`Feed`] it gets at start.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
pub use crate::hub::{Feed, Numbering, Publication};
use crate::hub::{Frame, Gap, Position, Since};
use crate::name::StreamName;

/// The environment variable naming a Redis server to use as the backend (with the
/// `redis` feature).
pub const REDIS_ENV: &str = "TURBO_MODEL_REDIS_URL";

/// The environment variable naming the nodes of a Redis Cluster to use as the backend,
/// separated by commas (with the `redis` feature); it wins over [`REDIS_ENV`].
pub const REDIS_CLUSTER_ENV: &str = "TURBO_MODEL_REDIS_CLUSTER";

/// What a broker says to a subscription the local hub could not answer.
#[derive(Debug)]
#[non_exhaustive]
pub struct Resume {
    /// Where the stream is now.
    pub position: Position,
    /// The frames after the client's start, in order.
    pub replay: Vec<Arc<Frame>>,
    /// Set when the frames after the client's start are not kept any more.
    pub gap: Option<Gap>,
}

impl Resume {
    /// A broker's answer.
    pub fn new(position: Position, replay: Vec<Arc<Frame>>, gap: Option<Gap>) -> Self {
        Self {
            position,
            replay,
            gap,
        }
    }
}

/// What a backend did so far, for the metrics: see [`Backend::stats`].
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct BackendStats {
    /// Broadcasts waiting to be published now.
    pub queued: u64,
    /// Their bytes.
    pub queued_bytes: u64,
    /// Broadcasts published.
    pub published: u64,
    /// Attempts to publish that the broker did not take (retried).
    pub retries: u64,
    /// Broadcasts given up (their streams moved to a new epoch).
    pub lost: u64,
    /// Broadcasts received from the broker.
    pub received: u64,
    /// Their bytes.
    pub received_bytes: u64,
    /// Streams whose broadcasts this process receives now.
    pub channels: u64,
}

/// A boxed future, as [`Backend::resume`] and [`Backend::shutdown`] return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Carries rendered broadcasts to the hubs that have subscribers for them.
///
/// Implemented by [`InProcess`] and, with the `redis` feature, `Redis`; another
/// broker can implement it too.
pub trait Backend: Send + Sync + 'static {
    /// Who numbers broadcasts: this process's hub, or the broker. Fixes the mode of the
    /// hub the [`Turbo`](crate::Turbo) makes.
    fn numbering(&self) -> Numbering {
        Numbering::Local
    }

    /// Called once when the [`Turbo`](crate::Turbo) is built, with the capability to
    /// feed this process's hub: a broker backend starts its tasks here.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend cannot start (no async runtime, started
    /// twice).
    fn start(&self, feed: Feed) -> Result<()>;

    /// Publishes one rendered broadcast so that it reaches every subscriber of its
    /// stream in every process, in order.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the broadcast could not be accepted.
    fn publish(&self, publication: Publication) -> Result<()>;

    /// Answers a subscription that the hub handed over: the stream's position and the
    /// frames after `since`. Only broker backends are asked.
    fn resume(&self, stream: StreamName, since: Option<Since>) -> BoxFuture<Result<Resume>> {
        let _ = since;
        Box::pin(async move {
            Err(Error::backend(
                "resume",
                stream.as_str(),
                "this backend keeps no history outside the hub",
            ))
        })
    }

    /// What the backend did so far; a broker backend counts its queue, its publishing
    /// and what it received. The default has nothing to say.
    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }

    /// How long broadcasts took from `send` to the broker taking them (queue wait and
    /// retries included), if the backend measures it.
    fn publish_latencies(&self) -> Option<&crate::metrics::Latencies> {
        None
    }

    /// Stops the backend's tasks; called by [`Turbo::shutdown`](crate::Turbo::shutdown)
    /// once the connections are closed.
    fn shutdown(&self) -> BoxFuture<()> {
        Box::pin(async {})
    }
}

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{DEFAULT_LINGER, DEFAULT_PUBLISH_DEADLINE, DEFAULT_QUEUE_BYTES, Redis, Traffic};

/// Delivers to this process's subscribers only. The default; needs nothing running.
#[derive(Debug, Default)]
pub struct InProcess {
    feed: OnceLock<Feed>,
}

impl Backend for InProcess {
    fn start(&self, feed: Feed) -> Result<()> {
        self.feed
            .set(feed)
            .map_err(|_| Error::backend("start", "-", "this backend is already started"))
    }

    fn publish(&self, publication: Publication) -> Result<()> {
        let feed = self
            .feed
            .get()
            .ok_or_else(|| Error::backend("publish", publication.stream.as_str(), "not started"))?;
        feed.publish(publication).map(|_| ())
    }
}
