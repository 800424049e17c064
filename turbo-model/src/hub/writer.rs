//! The hub's writer: one task that writes queued broadcasts to the sockets that have
//! room, so that neither the publisher nor each connection's task has to.
//!
//! A publisher queues a broadcast for every subscriber and hands the writer the
//! connections it may write to. The writer takes them in turn; a connection already due
//! is not added twice, so what waits here is bounded by the number of connections, and a
//! connection whose queue gathered several frames meanwhile gets them in one write. One
//! task, so that a burst's writes take at most one of the runtime's threads and requests
//! (the next message's POST) keep the others.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use super::connection::Subscriber;

/// Sockets written before the writer lets its thread run other tasks.
const WRITES_PER_TURN: usize = 1024;

/// Connections due for a write, and the task that writes them.
#[derive(Debug, Default)]
pub(super) struct Writer {
    due: Mutex<Vec<Subscriber>>,
    waker: AtomicWaker,
    started: AtomicBool,
    /// The hub is gone: the task ends once nothing is due.
    closed: AtomicBool,
}

impl Writer {
    /// Writes the queues of `connections` (each due at most once; see
    /// `Subscriber::push`): in the writer's task inside a Tokio runtime, at once
    /// otherwise.
    pub(super) fn schedule(self: &Arc<Self>, connections: Vec<Subscriber>) {
        if connections.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            connections.iter().for_each(Subscriber::write);
            return;
        };
        self.lock().extend(connections);
        if !self.started.swap(true, Ordering::AcqRel) {
            runtime.spawn(Arc::clone(self).run());
        }
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.due.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(self: Arc<Self>) {
        let mut writing = Vec::new();
        loop {
            let closed = std::future::poll_fn(|cx| {
                let mut due = self.lock();
                if due.is_empty() {
                    self.waker.register(cx.waker());
                    if self.closed.load(Ordering::Acquire) {
                        return Poll::Ready(true);
                    }
                    return Poll::Pending;
                }
                std::mem::swap(&mut *due, &mut writing);
                Poll::Ready(false)
            })
            .await;
            if closed {
                return;
            }
            for (written, connection) in writing.drain(..).enumerate() {
                connection.write();
                if written % WRITES_PER_TURN == WRITES_PER_TURN - 1 {
                    tokio::task::yield_now().await;
                }
            }
            // The room of a burst is not kept.
            writing.shrink_to(WRITES_PER_TURN);
        }
    }
}
