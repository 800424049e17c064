//! Work that runs after the request, in the background: a bounded queue, a few workers,
//! and broadcasts released in the order the work was queued.
//!
//! Async hooks ([`AsyncHook`](crate::AsyncHook)) run here, after the COMMIT of the write
//! that queued them. Several run at once, and take different times; what each sends is
//! held until it is done and released in queue order, so broadcasts keep the order of
//! the commits that caused them.
//!
//! # Bounds
//!
//! The queue holds at most [`QueueLimits::jobs`] jobs and [`QueueLimits::bytes`] bytes
//! (each job counts what its caller says it holds). Work that does not fit is refused:
//! the caller learns it ([`Full`]) and decides (the hooks log it, and report it to the
//! write's caller with [`HookErrors::Propagate`](crate::HookErrors::Propagate)).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::scope::{Held, Scope};

/// A job: it builds its future when a worker takes it.
pub(crate) type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// How much the queue holds, and how much runs at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueLimits {
    /// Jobs waiting, at most.
    pub(crate) jobs: usize,
    /// Bytes of jobs waiting, at most.
    pub(crate) bytes: usize,
    /// Jobs running at once.
    pub(crate) workers: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            jobs: 10_000,
            bytes: 64 * 1024 * 1024,
            workers: 4,
        }
    }
}

/// Why a job was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full {
    pub(crate) limits: QueueLimits,
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the background queue is full ({} jobs or {} bytes)",
            self.limits.jobs, self.limits.bytes
        )
    }
}

/// The queue and its workers.
pub(crate) struct Background {
    limits: QueueLimits,
    state: Arc<Mutex<State>>,
    /// Woken whenever the queue may have become idle.
    idle: Arc<Notify>,
    /// Jobs refused because the queue was full.
    refused: std::sync::atomic::AtomicU64,
}

/// How busy the queue is, for the metrics.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Depth {
    pub(crate) waiting: usize,
    pub(crate) waiting_bytes: usize,
    pub(crate) running: usize,
    pub(crate) refused: u64,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// The number the next queued job gets.
    next: u64,
    /// Jobs waiting, with their numbers, sizes and the scope they run in.
    waiting: VecDeque<(u64, usize, Scope, Job)>,
    waiting_bytes: usize,
    running: usize,
    /// Jobs done whose broadcasts wait for an earlier job to be done, with the scope
    /// they ran in (their broadcasts are published in it).
    done: BTreeMap<u64, (Arc<Held>, Scope)>,
    /// Every job numbered below this has been released.
    released: u64,
}

impl Background {
    pub(crate) fn new(limits: QueueLimits) -> Self {
        Self {
            limits: QueueLimits {
                workers: limits.workers.max(1),
                ..limits
            },
            state: Arc::default(),
            idle: Arc::default(),
            refused: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How busy the queue is now.
    pub(crate) fn depth(&self) -> Depth {
        let state = Self::lock(&self.state);
        Depth {
            waiting: state.waiting.len(),
            waiting_bytes: state.waiting_bytes,
            running: state.running,
            refused: self.refused.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
        state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `job` (holding about `bytes`), running it as soon as a worker is free, in
    /// `scope` (with a transaction of its own that holds what it sends).
    ///
    /// # Errors
    ///
    /// [`Full`] when the queue holds its limit of jobs or bytes; outside a tokio runtime
    /// there is nothing to run it either.
    pub(crate) fn submit(&self, bytes: usize, scope: Scope, job: Job) -> Result<(), Full> {
        let full = || {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(Full {
                limits: self.limits,
            })
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return full();
        };
        let mut state = Self::lock(&self.state);
        if state.waiting.len() >= self.limits.jobs
            || state.waiting_bytes + bytes > self.limits.bytes
        {
            drop(state);
            return full();
        }
        let number = state.next;
        state.next += 1;
        state.waiting.push_back((number, bytes, scope, job));
        state.waiting_bytes += bytes;
        if state.running < self.limits.workers {
            state.running += 1;
            drop(state);
            runtime.spawn(worker(Arc::clone(&self.state), Arc::clone(&self.idle)));
        }
        Ok(())
    }

    /// Waits until nothing waits or runs and everything done was released.
    pub(crate) async fn settled(&self) {
        loop {
            let notified = self.idle.notified();
            if Self::lock(&self.state).is_idle() {
                return;
            }
            notified.await;
        }
    }

    /// [`settled`](Self::settled), for at most `within`; returns whether it settled.
    pub(crate) async fn drain(&self, within: Duration) -> bool {
        tokio::time::timeout(within, self.settled()).await.is_ok()
    }
}

impl State {
    fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running == 0 && self.done.is_empty()
    }

    /// Takes the done jobs that are next in line, in order.
    fn releasable(&mut self) -> Vec<(Arc<Held>, Scope)> {
        let mut ready = Vec::new();
        while let Some(held) = self.done.remove(&self.released) {
            ready.push(held);
            self.released += 1;
        }
        ready
    }
}

/// Takes jobs until none waits; each runs with its own held broadcasts, released in
/// queue order.
async fn worker(state: Arc<Mutex<State>>, idle: Arc<Notify>) {
    loop {
        let next = Background::lock(&state).waiting.pop_front();
        let Some((number, bytes, scope, job)) = next else {
            let mut state = Background::lock(&state);
            state.running -= 1;
            let idle_now = state.is_idle();
            drop(state);
            if idle_now {
                idle.notify_waiters();
            }
            return;
        };
        Background::lock(&state).waiting_bytes -= bytes;
        let held = Held::new(None);
        let future = Scope {
            transaction: Some(Arc::clone(&held)),
            ..scope.clone()
        }
        .run(job());
        // A job that panics is done all the same: later ones must not wait for it.
        let _ = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(future)).await;
        let ready = {
            let mut state = Background::lock(&state);
            state.done.insert(number, (held, scope));
            state.releasable()
        };
        for (held, scope) in ready {
            // Published in the job's scope: a capture that queued it records them.
            scope.run_sync(|| held.committed());
        }
        idle.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_released_in_queue_order_whatever_it_takes() {
        let background = Background::new(QueueLimits {
            workers: 3,
            ..QueueLimits::default()
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        for (n, pause) in [(1u64, 60u64), (2, 5), (3, 30)] {
            let log = Arc::clone(&log);
            let job: Job = Box::new(move || {
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    let held = Scope::current().transaction.expect("a job holds its sends");
                    let log = Arc::clone(&log);
                    held.hold(Box::new(move || log.lock().expect("log").push(n)));
                })
            });
            background
                .submit(0, Scope::default(), job)
                .expect("room in the queue");
        }
        background.settled().await;
        assert_eq!(*log.lock().expect("log"), [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_panicking_job_does_not_block_the_rest() {
        let background = Background::new(QueueLimits {
            jobs: 2,
            bytes: 100,
            workers: 1,
        });
        let gate = Arc::new(Notify::new());
        let wait = Arc::clone(&gate);
        let blocker: Job = Box::new(move || Box::pin(async move { wait.notified().await }));
        background
            .submit(0, Scope::default(), blocker)
            .expect("runs");
        tokio::task::yield_now().await;
        let panics: Job = Box::new(|| Box::pin(async { panic!("a broken hook") }));
        background
            .submit(60, Scope::default(), panics)
            .expect("waits");
        let too_big: Job = Box::new(|| Box::pin(async {}));
        assert!(
            background.submit(60, Scope::default(), too_big).is_err(),
            "100 bytes"
        );
        let fits: Job = Box::new(|| Box::pin(async {}));
        background.submit(40, Scope::default(), fits).expect("fits");
        let third: Job = Box::new(|| Box::pin(async {}));
        assert!(
            background.submit(0, Scope::default(), third).is_err(),
            "2 jobs"
        );
        gate.notify_one();
        assert!(
            background.drain(Duration::from_secs(5)).await,
            "everything ran"
        );
    }
}
