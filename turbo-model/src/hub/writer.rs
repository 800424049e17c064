//! The hub's writer: one task that writes queued broadcasts to the sockets that have
//! room, so that neither the publisher nor each connection's task has to.
//!
//! A publisher queues a broadcast for every subscriber and hands the writer the
//! connections it may write to. The writer takes them in turn; a connection already due
//! is not added twice, so what waits here is bounded by the number of connections, and a
//! connection whose queue gathered several frames meanwhile gets them in one write. One
//! task, so that a burst's writes take at most one of the runtime's threads and requests
//! (the next message's POST) keep the others.
//!
//! The task runs on the runtime that serves the sockets (the one a connection was last
//! attached from), not on whichever runtime published first: a publisher may be a
//! runtime that is driven only now and then (a `block_on` in a job runner), and a task
//! of its own would wait for it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::connection::Subscriber;

/// Sockets written before the writer lets its thread run other tasks.
const WRITES_PER_TURN: usize = 1024;

/// The writer's task: started on the serving runtime when there is one, on the
/// publisher's otherwise; started again if its runtime went away (a hub used from
/// several runtimes, one after the other).
#[derive(Debug, Default)]
struct Task {
    running: Option<JoinHandle<()>>,
    /// The runtime `running` was spawned on.
    on: Option<tokio::runtime::Id>,
    /// The runtime a connection was last attached from.
    serving: Option<Handle>,
}

/// Connections due for a write, and the task that writes them.
#[derive(Debug, Default)]
pub(super) struct Writer {
    due: Mutex<VecDeque<Subscriber>>,
    waker: AtomicWaker,
    /// The task, and where it runs.
    task: Mutex<Task>,
    /// The hub is gone: the task ends once nothing is due.
    closed: AtomicBool,
}

impl Task {
    fn start(&mut self, writer: &Arc<Writer>, runtime: &Handle) {
        self.running = Some(runtime.spawn(Arc::clone(writer).run()));
        self.on = Some(runtime.id());
    }
}

impl Writer {
    /// Writes the queues of `connections` (each due at most once; see
    /// `Subscriber::push`): in the writer's task inside a Tokio runtime, at once
    /// otherwise.
    pub(super) fn schedule(self: &Arc<Self>, connections: Vec<Subscriber>) {
        let mut due = self.lock();
        if connections.is_empty() && due.is_empty() {
            return;
        }
        due.extend(connections);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let now: Vec<Subscriber> = due.drain(..).collect();
            drop(due);
            now.iter().for_each(Subscriber::write);
            return;
        };
        drop(due);
        // Checked even when this publisher brought nothing: connections already due are
        // not brought again, and wait for a task that may be gone with its runtime.
        let mut task = self.task_lock();
        if task.running.as_ref().is_none_or(JoinHandle::is_finished) {
            task.running = None;
            if let Some(serving) = task.serving.clone() {
                task.start(self, &serving);
            }
            if task.running.as_ref().is_none_or(JoinHandle::is_finished) {
                // No serving runtime, or it is gone: this publisher's.
                task.serving = None;
                task.start(self, &runtime);
            }
        }
        drop(task);
        self.waker.wake();
    }

    /// Notes the runtime that serves the sockets, and runs the task there: a connection
    /// was attached to its socket from it.
    pub(super) fn serve_from(self: &Arc<Self>, runtime: Handle) {
        let mut task = self.task_lock();
        if task.serving.as_ref().map(Handle::id) == Some(runtime.id()) {
            return;
        }
        if task.on != Some(runtime.id())
            && let Some(running) = task.running.take()
        {
            // Stopped at its next await, between turns: what it had not taken stays due
            // for the task started here.
            running.abort();
        }
        if task.running.is_none() {
            task.start(self, &runtime);
        }
        task.serving = Some(runtime);
    }

    /// Ends the task once what is due is written.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Connections waiting for a write.
    #[cfg(test)]
    pub(super) fn due(&self) -> usize {
        self.lock().len()
    }

    fn task_lock(&self) -> std::sync::MutexGuard<'_, Task> {
        self.task.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Subscriber>> {
        self.due.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes what is due, a turn at a time. Nothing is held across an await: a task
    /// dropped with its runtime leaves what it had not taken for the next one.
    async fn run(self: Arc<Self>) {
        let mut since_yield = 0;
        loop {
            let turn = std::future::poll_fn(|cx| {
                let mut due = self.lock();
                if due.is_empty() {
                    self.waker.register(cx.waker());
                    if self.closed.load(Ordering::Acquire) {
                        return Poll::Ready(None);
                    }
                    return Poll::Pending;
                }
                let take = due.len().min(WRITES_PER_TURN);
                Poll::Ready(Some(due.drain(..take).collect::<Vec<_>>()))
            })
            .await;
            let Some(turn) = turn else {
                return;
            };
            turn.iter().for_each(Subscriber::write);
            since_yield += turn.len();
            // Short turns one after the other count too: the thread is let go every
            // `WRITES_PER_TURN` writes, however they came.
            if since_yield >= WRITES_PER_TURN {
                since_yield = 0;
                tokio::task::yield_now().await;
            }
        }
    }
}
