//! Where a rendered broadcast goes after it leaves the sender: the delivery backend.
//!
//! The default, [`InProcess`], hands it straight to this process's [`Hub`]. A broker
//! backend publishes it to a broker instead and feeds the frames it receives back into
//! each process's hub; hooks, templates and the web layer do not change.

use std::sync::Arc;

use crate::error::Result;
use crate::hub::{ConnectionId, Hub};
use crate::stream::StreamName;

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
    /// a broker backend starts its receiving task here.
    fn start(&self, hub: Arc<Hub>) {
        let _ = hub;
    }

    /// Publishes one rendered broadcast so that it reaches every subscriber of its stream
    /// in every process, in order.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the broadcast could not be handed on.
    fn publish(&self, hub: &Hub, publication: Publication<'_>) -> Result<()>;
}

/// Delivers to this process's subscribers only. The default; needs nothing running.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcess;

impl Backend for InProcess {
    fn publish(&self, hub: &Hub, publication: Publication<'_>) -> Result<()> {
        hub.deliver_except(publication.stream, publication.html, publication.except);
        Ok(())
    }
}
