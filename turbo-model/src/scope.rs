//! Ambient state: what the code running now is inside of.
//!
//! Hooks have no handle to pass around: SeaORM calls them from deep inside a save. What
//! they need to know (which [`Turbo`](crate::Turbo) to send through, whether broadcasts
//! are switched off, recorded for a test, held for a transaction, or sent on behalf of
//! a request) travels with the code that runs, in one value: a [`Scope`].
//!
//! A scope is entered for a future ([`Scope::run`], a tokio task-local: it follows the
//! future across threads, and does not leak to other tasks or to tasks it spawns) or for
//! synchronous code ([`Scope::run_sync`], a thread-local restored when the code returns,
//! for hooks and the `_sync` helpers). Inner scopes start from the outer one and change
//! one thing; the innermost wins.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::action::{Action, Target};
use crate::name::ConnectionId;

/// Everything ambient, as one value. Cheap to clone (shared parts).
#[derive(Clone, Default)]
pub(crate) struct Scope {
    /// The handle broadcasts are sent through (a [`Turbo`](crate::Turbo)), when code
    /// runs inside [`Turbo::scope`](crate::Turbo::scope) or a request of its router.
    pub(crate) handle: Option<Arc<dyn Any + Send + Sync>>,
    /// Broadcasts are dropped ([`suppress`]).
    pub(crate) suppressed: bool,
    /// Published broadcasts are recorded here ([`capture`](crate::testing::capture)).
    pub(crate) capture: Option<Arc<Mutex<Vec<Recorded>>>>,
    /// The request being handled ([`request_scope`](crate::response::request_scope)).
    pub(crate) request: Option<Arc<RequestContext>>,
    /// Broadcasts wait for this transaction's COMMIT.
    pub(crate) transaction: Option<Arc<Held>>,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("handle", &self.handle.is_some())
            .field("suppressed", &self.suppressed)
            .field("capture", &self.capture.is_some())
            .field("request", &self.request)
            .field("transaction", &self.transaction.is_some())
            .finish()
    }
}

tokio::task_local! {
    static TASK: Scope;
}

thread_local! {
    /// The scope of synchronous code running on this thread right now; it takes
    /// precedence over the task's while it is set.
    static THREAD: RefCell<Option<Scope>> = const { RefCell::new(None) };
    /// Where a [`Transaction`](crate::Transaction) answers [`probe`].
    static PROBE: RefCell<Option<Arc<Held>>> = const { RefCell::new(None) };
}

/// Runs `ask`, which may reach a transaction's [`answer_probe`]; returns what it held.
/// The question and the answer happen on this thread, within this call.
pub(crate) fn probe(ask: impl FnOnce()) -> Option<Arc<Held>> {
    PROBE.with(|probe| probe.borrow_mut().take());
    ask();
    PROBE.with(|probe| probe.borrow_mut().take())
}

/// A transaction answering [`probe`]: what it holds.
pub(crate) fn answer_probe(held: &Arc<Held>) {
    PROBE.with(|probe| *probe.borrow_mut() = Some(Arc::clone(held)));
}

impl Scope {
    /// The scope the calling code runs in (the default, empty one outside any), with
    /// the innermost transaction this task opened through [`Db`](crate::Db), if any.
    pub(crate) fn current() -> Self {
        let mut scope = THREAD
            .with(|thread| thread.borrow().clone())
            .or_else(|| TASK.try_with(Clone::clone).ok())
            .unwrap_or_default();
        if scope.transaction.is_none() {
            scope.transaction = open::innermost();
        }
        scope
    }

    /// Reads one thing of the current scope.
    pub(crate) fn with<R>(read: impl FnOnce(&Self) -> R) -> R {
        read(&Self::current())
    }

    /// Runs `future` inside this scope.
    pub(crate) async fn run<F: Future>(self, future: F) -> F::Output {
        TASK.scope(self, future).await
    }

    /// Runs `f` inside this scope, on this thread.
    pub(crate) fn run_sync<R>(self, f: impl FnOnce() -> R) -> R {
        let previous = THREAD.with(|thread| thread.replace(Some(self)));
        // Restored on the way out, panics included.
        struct Restore(Option<Scope>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                THREAD.with(|thread| *thread.borrow_mut() = previous);
            }
        }
        let _restore = Restore(previous);
        f()
    }
}

/// The transactions open in each task: a broadcast sent by code between `begin` and
/// `commit` of a [`Transaction`](crate::Transaction), in the task that began it, waits
/// for the COMMIT too, though no scope was entered (`begin` cannot enter one).
pub(crate) mod open {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, LazyLock, Mutex, Weak};

    use super::Held;

    /// Open transactions in all tasks: the map is looked at only when this is not 0.
    static COUNT: AtomicUsize = AtomicUsize::new(0);

    /// Who runs the code: a tokio task, or (for a runtime's `block_on`, whose future
    /// never moves, and for code outside tokio) a thread.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    enum Runner {
        Task(tokio::task::Id),
        Thread(std::thread::ThreadId),
    }

    fn runner() -> Runner {
        tokio::task::try_id()
            .map_or_else(|| Runner::Thread(std::thread::current().id()), Runner::Task)
    }

    /// Per task, its open transactions, outermost first. One entry per open
    /// transaction: bounded by them.
    static OPEN: LazyLock<Mutex<HashMap<Runner, Vec<Weak<Held>>>>> = LazyLock::new(Mutex::default);

    fn lock() -> std::sync::MutexGuard<'static, HashMap<Runner, Vec<Weak<Held>>>> {
        OPEN.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A transaction's place in its task's list; leaves it when dropped (commit,
    /// rollback, or the transaction dropped).
    #[derive(Debug)]
    pub(crate) struct Registration {
        runner: Runner,
        held: Weak<Held>,
    }

    /// Registers `held` as the innermost transaction of the code running now.
    pub(crate) fn register(held: &Arc<Held>) -> Registration {
        let runner = runner();
        lock().entry(runner).or_default().push(Arc::downgrade(held));
        COUNT.fetch_add(1, Ordering::AcqRel);
        Registration {
            runner,
            held: Arc::downgrade(held),
        }
    }

    impl Drop for Registration {
        fn drop(&mut self) {
            let mut open = lock();
            if let Some(list) = open.get_mut(&self.runner) {
                if let Some(at) = list.iter().rposition(|h| h.ptr_eq(&self.held)) {
                    list.remove(at);
                    COUNT.fetch_sub(1, Ordering::AcqRel);
                }
                if list.is_empty() {
                    open.remove(&self.runner);
                }
            }
        }
    }

    /// The innermost transaction the current task has open, if any.
    pub(super) fn innermost() -> Option<Arc<Held>> {
        if COUNT.load(Ordering::Acquire) == 0 {
            return None;
        }
        lock().get(&runner())?.last()?.upgrade()
    }
}

/// What the current request says about who sent it; set by
/// [`request_scope`](crate::response::request_scope).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestContext {
    /// Turbo's `X-Turbo-Request-Id`: refreshes carry it, so that the page that made the
    /// change does not refresh itself.
    pub request_id: Option<String>,
    /// The sender page's stream connection (`X-Turbo-Model-Connection`), which
    /// [`to_others`](crate::Broadcast::to_others) broadcasts skip.
    pub connection: Option<ConnectionId>,
    /// When the request began: pages rendered by it subscribe from that time, so
    /// broadcasts made while the handler read its data are replayed rather than lost.
    pub started: Option<SystemTime>,
}

impl RequestContext {
    /// A request's context.
    pub fn new(
        request_id: Option<String>,
        connection: Option<ConnectionId>,
        started: Option<SystemTime>,
    ) -> Self {
        Self {
            request_id,
            connection,
            started,
        }
    }
}

/// The current request's context, if any.
pub fn request_context() -> Option<RequestContext> {
    Scope::with(|scope| scope.request.as_deref().cloned())
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
    Scope {
        suppressed: true,
        ..Scope::current()
    }
    .run(future)
    .await
}

/// [`suppress`] for synchronous code.
pub fn suppress_sync<R>(f: impl FnOnce() -> R) -> R {
    Scope {
        suppressed: true,
        ..Scope::current()
    }
    .run_sync(f)
}

/// Whether broadcasts are switched off here.
pub fn is_suppressed() -> bool {
    Scope::with(|scope| scope.suppressed)
}

/// One action of a broadcast as it was published, as [`capture`](crate::testing::capture)
/// records it (a broadcast of several actions, sent with [`Broadcast::and`](crate::Broadcast::and), is
/// one record per action).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The stream it went to.
    pub stream: String,
    /// The action.
    pub action: Action,
    /// The addressed element(s).
    pub target: Option<Target>,
    /// The action's whole `<turbo-stream>` element.
    pub html: String,
}

/// Work held until a transaction commits (its broadcasts, in order), dropped if it does
/// not.
pub(crate) struct Held {
    work: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
    /// The enclosing transaction, for a nested one (a SAVEPOINT).
    parent: Option<Arc<Held>>,
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("work", &self.len())
            .field("nested", &self.parent.is_some())
            .finish()
    }
}

impl Held {
    pub(crate) fn new(parent: Option<Arc<Self>>) -> Arc<Self> {
        Arc::new(Self {
            work: Mutex::new(Vec::new()),
            parent,
        })
    }

    /// Holds `work` until COMMIT.
    pub(crate) fn hold(&self, work: Box<dyn FnOnce() + Send>) {
        self.work
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(work);
    }

    /// How much work is held.
    pub(crate) fn len(&self) -> usize {
        self.work.lock().map_or(0, |work| work.len())
    }

    /// The transaction committed: hand the work to the enclosing transaction, or do it,
    /// in order.
    pub(crate) fn committed(&self) {
        let work = std::mem::take(
            &mut *self
                .work
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        match &self.parent {
            Some(parent) => {
                for item in work {
                    parent.hold(item);
                }
            }
            None => {
                for item in work {
                    item();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_scopes_win_and_are_restored() {
        assert!(!is_suppressed());
        suppress_sync(|| {
            assert!(is_suppressed());
            let inner = Scope {
                suppressed: false,
                ..Scope::current()
            };
            inner.run_sync(|| assert!(!is_suppressed()));
            assert!(is_suppressed());
        });
        assert!(!is_suppressed());
    }

    #[tokio::test]
    async fn task_scopes_follow_the_future_and_not_spawned_tasks() {
        suppress(async {
            tokio::task::yield_now().await;
            assert!(is_suppressed());
            let spawned = tokio::spawn(async { is_suppressed() });
            assert!(!spawned.await.expect("joins"));
        })
        .await;
        assert!(!is_suppressed());
    }

    #[test]
    fn committed_work_runs_in_order_and_nested_work_moves_up() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let outer = Held::new(None);
        let inner = Held::new(Some(Arc::clone(&outer)));
        for (held, n) in [(&outer, 1), (&inner, 2), (&outer, 3)] {
            let log = Arc::clone(&log);
            held.hold(Box::new(move || log.lock().expect("log").push(n)));
        }
        inner.committed();
        assert_eq!(outer.len(), 3);
        assert!(log.lock().expect("log").is_empty());
        outer.committed();
        assert_eq!(*log.lock().expect("log"), [1, 3, 2]);
    }
}
