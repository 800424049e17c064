//! Where a rendered broadcast goes before the backend: dropped (inside
//! [`suppress`](crate::suppress)), held (inside a transaction, until COMMIT), recorded
//! (inside [`capture`](crate::testing::capture)), debounced (refreshes), then published.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::action::{Action, Target};
use crate::error::Result;
use crate::hub::Publication;
use crate::name::{ConnectionId, StreamName};
use crate::scope::{Recorded, Scope};
use crate::turbo::Turbo;

/// A rendered broadcast on its way out.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub(crate) turbo: Turbo,
    pub(crate) stream: StreamName,
    /// The actions in `html`, in order (one, unless several were sent as one message).
    pub(crate) parts: Vec<Part>,
    pub(crate) html: Arc<str>,
    /// A connection that must not receive it (the page that made the request).
    pub(crate) exclude: Option<ConnectionId>,
    /// Refreshes within this window collapse into the last one.
    pub(crate) debounce: Duration,
}

/// One action of a message: what it is, and where its element is in the message.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub(crate) action: Action,
    pub(crate) target: Option<Target>,
    pub(crate) range: std::ops::Range<usize>,
}

/// A rendered broadcast enters here: dropped when suppressed, held when a transaction
/// is in scope, else delivered.
pub(crate) fn submit(outgoing: Outgoing) -> Result<()> {
    let scope = Scope::current();
    if scope.suppressed {
        outgoing.turbo.count_suppressed();
        return Ok(());
    }
    match scope.transaction {
        Some(held) => {
            // Recorded where it is published: the capture in scope at COMMIT.
            held.hold(Box::new(move || {
                let stream = outgoing.stream.clone();
                let capture = Scope::with(|scope| scope.capture.clone());
                if let Err(error) = deliver(outgoing, capture.as_deref()) {
                    tracing::error!(%stream, %error, "broadcast after COMMIT failed");
                }
            }));
            Ok(())
        }
        None => deliver(outgoing, scope.capture.as_deref()),
    }
}

/// Publishes now (or after the debounce window, for refreshes), recording it first
/// when a capture is in scope.
fn deliver(outgoing: Outgoing, capture: Option<&Mutex<Vec<Recorded>>>) -> Result<()> {
    if let Some(capture) = capture {
        let mut recorded = capture
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One record per action, each with its own element.
        for part in &outgoing.parts {
            recorded.push(Recorded {
                stream: outgoing.stream.as_str().to_owned(),
                action: part.action,
                target: part.target.clone(),
                html: outgoing
                    .html
                    .get(part.range.clone())
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
    }
    let publication = Publication {
        stream: outgoing.stream,
        html: outgoing.html,
        except: outgoing.exclude,
    };
    if !outgoing.debounce.is_zero() {
        outgoing
            .turbo
            .publish_debounced(publication, outgoing.debounce)
    } else {
        outgoing.turbo.publish(publication)
    }
}
