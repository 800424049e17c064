//! The hub's writer: one task that writes queued broadcasts to the sockets that have
//! room, so that neither the publisher nor each connection's task has to.
//!
//! A publisher queues a broadcast for every subscriber and hands the writer the
//! connections it may write to. The writer takes them in turn; a connection already due
//! is not added twice, so what waits here is bounded by the number of connections, and a
//! connection whose queue gathered several frames meanwhile gets them in one write. One
//! task, so that a burst's writes take at most one of the runtime's threads and requests
//! (the next message's POST) keep the others.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use tokio::task::JoinHandle;

use super::connection::Subscriber;

/// Sockets written before the writer lets its thread run other tasks.
const WRITES_PER_TURN: usize = 1024;

/// Connections due for a write, and the task that writes them.
#[derive(Debug, Default)]
pub(super) struct Writer {
    due: Mutex<VecDeque<Subscriber>>,
    waker: AtomicWaker,
    /// The task, once started; started again if its runtime went away (a hub used from
    /// several runtimes, one after the other).
    task: Mutex<Option<JoinHandle<()>>>,
    /// The hub is gone: the task ends once nothing is due.
    closed: AtomicBool,
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
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_none_or(JoinHandle::is_finished) {
            *task = Some(runtime.spawn(Arc::clone(self).run()));
        }
        drop(task);
        self.waker.wake();
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
