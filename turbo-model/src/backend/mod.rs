//! Where a rendered broadcast goes after it leaves the sender: the delivery backend.
//!
//! The default, [`InProcess`], hands it straight to this process's [`Hub`]. A broker
//! backend publishes it to a broker instead and feeds the frames it receives back into
//! each process's hub; hooks, templates and the web layer do not change.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::hub::{ConnectionId, Frame, Gap, Hub, Position};
use crate::stream::StreamName;

/// What a broker says to a subscription the local hub could not answer.
#[derive(Debug)]
#[non_exhaustive]
pub struct Resume {
    /// Where the stream is now.
    pub position: Position,
    /// The frames after the client's position, in order.
    pub replay: Vec<Arc<Frame>>,
    /// Set when the frames after the client's position are not kept any more.
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

/// A boxed future, as [`Backend::resume`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// One rendered broadcast for the backend to carry.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Publication<'a> {
    /// The stream.
    pub stream: &'a StreamName,
    /// The `<turbo-stream>` element.
    pub html: &'a str,
    /// A connection that gets a `skip` in its place (the sender's page).
    pub except: Option<ConnectionId>,
}

/// Carries rendered broadcasts to the hubs that have subscribers for them.
pub trait Backend: Send + Sync + 'static {
    /// Called once when the [`Turbo`](crate::Turbo) is built, with this process's hub:
    /// a broker backend starts its tasks here.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend cannot start (e.g. no async runtime).
    fn start(&self, hub: Arc<Hub>) -> Result<()> {
        let _ = hub;
        Ok(())
    }

    /// Publishes one rendered broadcast so that it reaches every subscriber of its stream
    /// in every process, in order.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the broadcast could not be handed on.
    fn publish(&self, hub: &Hub, publication: Publication<'_>) -> Result<()>;

    /// Where `stream` was at `at` (now when `None`), for a page being rendered; `None`
    /// when it cannot be known (the page then subscribes from where the stream is when
    /// it connects). The default asks the hub.
    fn render_position(
        &self,
        hub: &Hub,
        stream: &StreamName,
        at: Option<Instant>,
    ) -> Option<Position> {
        Some(hub.position_for_render(stream, at))
    }

    /// Answers a subscription that the hub handed over
    /// ([`Subscribed::ask_broker`](crate::hub::Subscribed::ask_broker)): the stream's
    /// position and the frames after `since`. Only broker backends are asked.
    fn resume(&self, stream: StreamName, since: Option<Position>) -> BoxFuture<Result<Resume>> {
        let _ = since;
        Box::pin(async move {
            Err(Error::Backend {
                stream: stream.to_string(),
                message: "this backend keeps no history outside the hub".into(),
            })
        })
    }
}

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::Redis;

/// Delivers to this process's subscribers only. The default; needs nothing running.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcess;

impl Backend for InProcess {
    fn publish(&self, hub: &Hub, publication: Publication<'_>) -> Result<()> {
        hub.deliver_except(publication.stream, publication.html, publication.except);
        Ok(())
    }
}
