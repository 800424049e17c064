//! Where a sent broadcast goes, after it is rendered and before the backend: dropped
//! (inside [`suppress`]), held (inside a transaction, until COMMIT), recorded (inside
//! [`capture`](crate::testing::capture)), debounced (refreshes), then published.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::action::{Action, Target};
use crate::error::Result;
use crate::hub::ConnectionId;
use crate::stream::StreamName;
use crate::testing::Recorded;
use crate::transaction::Scope;
use crate::turbo::Turbo;

/// A rendered broadcast on its way out.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub(crate) turbo: Turbo,
    pub(crate) stream: StreamName,
    pub(crate) action: Action,
    pub(crate) target: Option<Target>,
    pub(crate) html: String,
    /// A connection that must not receive it (the page that made the request).
    pub(crate) exclude: Option<ConnectionId>,
    /// Refreshes within this window collapse into the last one.
    pub(crate) debounce: Duration,
}

/// What the current request says about who sent it; set by
/// [`request_scope`](crate::web::request_scope).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestContext {
    /// Turbo's `X-Turbo-Request-Id`: refreshes carry it, so that the page that made the
    /// change does not refresh itself.
    pub request_id: Option<String>,
    /// The sender page's stream connection (`X-Turbo-Model-Connection`), which
    /// [`to_others`](crate::Broadcast::to_others) broadcasts skip.
    pub connection: Option<ConnectionId>,
    /// When the request began: pages rendered by it subscribe from the streams'
    /// positions at that moment, so broadcasts made while the handler read its data are
    /// replayed rather than lost.
    pub started: Option<std::time::Instant>,
}

tokio::task_local! {
    static SUPPRESSED: ();
    static CAPTURE: Arc<Mutex<Vec<Recorded>>>;
    static REQUEST: RequestContext;
}

thread_local! {
    /// The transaction whose hooks are running on this thread right now.
    static HOOK_SCOPE: RefCell<Option<Arc<Scope>>> = const { RefCell::new(None) };
}

/// Runs `future` with broadcasts switched off: saves inside it (and any code it awaits,
/// in this task) send nothing. For imports, seeding and tests. Tasks spawned inside are
/// not affected, and nothing leaks to other tasks.
///
/// ```
/// # async fn seed() {}
/// # async fn run() {
/// turbo_model::suppress(async {
///     seed().await; // thousands of inserts, no broadcasts
/// })
/// .await;
/// # }
/// ```
pub async fn suppress<F: Future>(future: F) -> F::Output {
    SUPPRESSED.scope((), future).await
}

/// [`suppress`] for synchronous code.
pub fn suppress_sync<R>(f: impl FnOnce() -> R) -> R {
    SUPPRESSED.sync_scope((), f)
}

/// Whether broadcasts are switched off here.
pub fn is_suppressed() -> bool {
    SUPPRESSED.try_with(|()| ()).is_ok()
}

/// Runs `future` as the handling of one request from `context`'s sender.
pub(crate) async fn in_request<F: Future>(context: RequestContext, future: F) -> F::Output {
    REQUEST.scope(context, future).await
}

/// The current request's context, if any.
pub fn request_context() -> Option<RequestContext> {
    REQUEST.try_with(Clone::clone).ok()
}

pub(crate) async fn capturing<F: Future>(
    records: Arc<Mutex<Vec<Recorded>>>,
    future: F,
) -> F::Output {
    CAPTURE.scope(records, future).await
}

pub(crate) fn capturing_sync<R>(records: Arc<Mutex<Vec<Recorded>>>, f: impl FnOnce() -> R) -> R {
    CAPTURE.sync_scope(records, f)
}

/// Runs `hooks` with broadcasts held in `scope` (a transaction) when there is one.
pub(crate) fn with_hook_scope<R>(scope: Option<Arc<Scope>>, hooks: impl FnOnce() -> R) -> R {
    let previous = HOOK_SCOPE.with(|s| s.replace(scope));
    let result = hooks();
    HOOK_SCOPE.with(|s| *s.borrow_mut() = previous);
    result
}

/// A rendered broadcast enters here.
pub(crate) fn submit(outgoing: Outgoing) -> Result<()> {
    let scope = HOOK_SCOPE.with(|s| s.borrow().clone());
    match scope {
        Some(scope) => {
            scope.hold(outgoing);
            Ok(())
        }
        None => deliver(outgoing),
    }
}

/// Publishes now (or after the debounce window, for refreshes).
pub(crate) fn deliver(outgoing: Outgoing) -> Result<()> {
    let _ = CAPTURE.try_with(|records| {
        if let Ok(mut records) = records.lock() {
            records.push(Recorded::of(&outgoing));
        }
    });
    if outgoing.action == Action::Refresh
        && !outgoing.debounce.is_zero()
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        debounce(&runtime, outgoing);
        return Ok(());
    }
    outgoing.turbo.clone().publish_outgoing(outgoing)
}

/// Refreshes waiting for their window to close, by stream: the last one wins.
#[derive(Debug, Default)]
pub(crate) struct Debouncer {
    pending: Mutex<HashMap<StreamName, Outgoing>>,
}

fn debounce(runtime: &tokio::runtime::Handle, outgoing: Outgoing) {
    let turbo = outgoing.turbo.clone();
    let stream = outgoing.stream.clone();
    let wait = outgoing.debounce;
    let first = turbo
        .debouncer()
        .pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(stream.clone(), outgoing)
        .is_none();
    if first {
        runtime.spawn(async move {
            tokio::time::sleep(wait).await;
            let latest = turbo
                .debouncer()
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&stream);
            if let Some(latest) = latest
                && let Err(error) = turbo.publish_outgoing(latest)
            {
                tracing::error!(%stream, %error, "debounced refresh could not be published");
            }
        });
    }
}
