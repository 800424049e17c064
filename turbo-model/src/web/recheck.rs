//! Asking the application again about live subscriptions: access can be revoked.
//!
//! The authorizer ([`Builder::authorize`](crate::Builder::authorize)) answers when a
//! page subscribes. When what it decided on changes (a user is removed from a room, signs
//! out, is banned), [`Turbo::reauthorize`](crate::Turbo::reauthorize) makes the open
//! connections ask it again for the subscriptions it picks; those it now refuses end
//! with the `forbidden` error, and their pages stop receiving the stream.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::http::request::Parts;

use crate::hub::Flag;
use crate::name::{ConnectionId, StreamName};

/// Which live subscriptions [`Turbo::reauthorize`](crate::Turbo::reauthorize) asks about.
#[derive(Clone)]
#[non_exhaustive]
pub enum Subscriptions {
    /// Every subscription of every connection.
    All,
    /// Every subscription to this stream.
    Stream(StreamName),
    /// Every subscription of this connection.
    Connection(ConnectionId),
    /// Every subscription of the connections whose opening request this picks: a
    /// user's, by a cookie or an extension a layer put there.
    Where(Arc<dyn Fn(&Parts) -> bool + Send + Sync>),
}

impl fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("All"),
            Self::Stream(stream) => f.debug_tuple("Stream").field(stream).finish(),
            Self::Connection(id) => f.debug_tuple("Connection").field(id).finish(),
            Self::Where(_) => f.write_str("Where(..)"),
        }
    }
}

impl Subscriptions {
    /// Every subscription of the connections whose opening request `picks` selects.
    pub fn of_requests(picks: impl Fn(&Parts) -> bool + Send + Sync + 'static) -> Self {
        Self::Where(Arc::new(picks))
    }
}

/// Which of a connection's streams to ask about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Streams {
    All,
    One(StreamName),
}

impl Streams {
    pub(crate) fn matches(&self, stream: &StreamName) -> bool {
        match self {
            Self::All => true,
            Self::One(one) => one == stream,
        }
    }
}

/// Questions waiting for one connection, and the wake-up that tells it.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    asked: Mutex<Vec<Streams>>,
    /// Set when `asked` holds questions: the connection's loop checks it without a lock.
    any: std::sync::atomic::AtomicBool,
    /// Raised when the endpoints shut down: the connection flushes and closes.
    closing: Flag,
    /// The connection's task, waiting for questions.
    waker: futures_util::task::AtomicWaker,
}

/// Questions waiting per connection, at most: past it, they merge into "all streams".
const MAX_ASKED: usize = 16;

impl Signal {
    fn ask(&self, streams: Streams) {
        let mut asked = self
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if asked.contains(&Streams::All) {
            // Already asked about everything.
        } else if streams == Streams::All || asked.len() >= MAX_ASKED {
            *asked = vec![Streams::All];
        } else if !asked.contains(&streams) {
            asked.push(streams);
        }
        self.any.store(true, std::sync::atomic::Ordering::Release);
        drop(asked);
        self.waker.wake();
    }

    fn close(&self) {
        self.closing.raise();
    }

    /// Resolves once the endpoints shut down; cancel-safe. No lock: a shared shutdown
    /// channel would take one on every wake-up of every connection.
    pub(crate) async fn closing(&self) {
        self.closing.raised().await;
    }

    /// Waits for questions; cancel-safe. One task waits at a time (the connection's):
    /// while none is asked, polling costs an atomic load and registering its waker.
    pub(crate) async fn asked(&self) -> Vec<Streams> {
        std::future::poll_fn(|cx| {
            use std::sync::atomic::Ordering;
            if !self.any.load(Ordering::Acquire) {
                self.waker.register(cx.waker());
                if !self.any.load(Ordering::Acquire) {
                    return std::task::Poll::Pending;
                }
            }
            let mut asked = self
                .asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.any.store(false, Ordering::Release);
            let taken = std::mem::take(&mut *asked);
            if taken.is_empty() {
                self.waker.register(cx.waker());
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(taken)
            }
        })
        .await
    }
}

/// The open connections that can be asked, with their opening requests.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    connections: Mutex<HashMap<ConnectionId, Entry>>,
    /// Set (under the lock) when the endpoints shut down: a connection that registers
    /// afterwards starts closing at once.
    closing: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Entry {
    request: Option<Arc<Parts>>,
    signal: Arc<Signal>,
}

impl Registry {
    /// Registers a connection until the returned guard drops.
    pub(crate) fn register(
        self: &Arc<Self>,
        id: ConnectionId,
        request: Option<Arc<Parts>>,
    ) -> Registration {
        let signal = Arc::new(Signal::default());
        let mut connections = self.lock();
        if self.closing.load(std::sync::atomic::Ordering::Acquire) {
            signal.close();
        }
        connections.insert(
            id,
            Entry {
                request,
                signal: Arc::clone(&signal),
            },
        );
        drop(connections);
        Registration {
            registry: Arc::clone(self),
            id,
            signal,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Entry>> {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tells every connection, and every one that registers from now on, to close.
    pub(crate) fn close_all(&self) {
        let connections = self.lock();
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
        for entry in connections.values() {
            entry.signal.close();
        }
    }

    /// Asks the connections `which` picks; returns how many.
    pub(crate) fn ask(&self, which: &Subscriptions) -> usize {
        let connections = self.lock();
        let mut asked = 0;
        for (id, entry) in connections.iter() {
            let streams = match which {
                Subscriptions::All => Some(Streams::All),
                Subscriptions::Stream(stream) => Some(Streams::One(stream.clone())),
                Subscriptions::Connection(wanted) => (wanted == id).then_some(Streams::All),
                Subscriptions::Where(picks) => entry
                    .request
                    .as_deref()
                    .is_some_and(|request| picks(request))
                    .then_some(Streams::All),
            };
            if let Some(streams) = streams {
                entry.signal.ask(streams);
                asked += 1;
            }
        }
        asked
    }
}

/// A connection's place in the [`Registry`]; leaves it when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<Registry>,
    id: ConnectionId,
    signal: Arc<Signal>,
}

impl Registration {
    pub(crate) fn signal(&self) -> &Signal {
        &self.signal
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> StreamName {
        StreamName::new(s).expect("valid")
    }

    #[tokio::test]
    async fn questions_reach_the_connections_they_pick_and_merge_when_many() {
        let registry = Arc::new(Registry::default());
        let a = registry.register(ConnectionId::new(1, 1), None);
        let b = registry.register(ConnectionId::new(1, 2), None);
        assert_eq!(
            registry.ask(&Subscriptions::Connection(ConnectionId::new(1, 2))),
            1
        );
        assert_eq!(b.signal().asked().await, [Streams::All]);
        assert_eq!(registry.ask(&Subscriptions::Stream(name("room:1"))), 2);
        assert_eq!(a.signal().asked().await, [Streams::One(name("room:1"))]);
        for n in 0..20 {
            registry.ask(&Subscriptions::Stream(name(&format!("room:{n}"))));
        }
        assert_eq!(a.signal().asked().await, [Streams::All], "merged");
        assert_eq!(
            registry.ask(&Subscriptions::of_requests(|_| true)),
            0,
            "no request kept"
        );
        drop(a);
        assert_eq!(registry.ask(&Subscriptions::All), 1);
    }

    #[tokio::test]
    async fn the_shutdown_reaches_open_connections_and_those_that_open_after_it() {
        use futures_util::FutureExt;
        let registry = Arc::new(Registry::default());
        let open = registry.register(ConnectionId::new(1, 1), None);
        assert!(open.signal().closing().now_or_never().is_none());
        let waiting = tokio::spawn({
            let signal = Arc::clone(&open.signal);
            async move { signal.closing().await }
        });
        tokio::task::yield_now().await;
        registry.close_all();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken by the shutdown")
            .expect("the waiting task");
        let late = registry.register(ConnectionId::new(1, 2), None);
        assert!(late.signal().closing().now_or_never().is_some());
        // Questions still reach a closing connection's loop, which no longer asks.
        assert_eq!(registry.ask(&Subscriptions::All), 2);
    }
}
