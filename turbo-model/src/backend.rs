//! Where a rendered broadcast goes after it leaves the sender: the delivery backend.
//!
//! The default, [`InProcess`], hands it straight to this process's [`Hub`]. A broker
//! backend publishes it to a broker instead and feeds the frames it receives back into
//! each process's hub; hooks, templates and the web layer do not change.

use std::sync::Arc;

use crate::error::Result;
use crate::hub::Hub;
use crate::stream::StreamName;

/// Carries rendered broadcasts to the hubs that have subscribers for them.
pub trait Backend: Send + Sync + 'static {
    /// Called once when the [`Turbo`](crate::Turbo) is built, with this process's hub:
    /// a broker backend starts its receiving task here.
    fn start(&self, hub: Arc<Hub>) {
        let _ = hub;
    }

    /// Publishes one rendered `<turbo-stream>` element to `stream`, so that it reaches
    /// every subscriber in every process, in order.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the broadcast could not be handed on.
    fn publish(&self, hub: &Hub, stream: &StreamName, html: &str) -> Result<()>;
}

/// Delivers to this process's subscribers only. The default; needs nothing running.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcess;

impl Backend for InProcess {
    fn publish(&self, hub: &Hub, stream: &StreamName, html: &str) -> Result<()> {
        hub.deliver(stream, html);
        Ok(())
    }
}
