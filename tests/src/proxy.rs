//! A TCP proxy on loopback that a test can cut: the network between a server and its
//! broker (or between clients and a server), failing on command.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards `127.0.0.1:port` to a target until dropped.
pub struct Proxy {
    /// The port it listens on.
    pub port: u16,
    up: Arc<AtomicBool>,
    /// Bumped on every cut: connections from before it end.
    generation: watch::Sender<u64>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding to `target` (`host:port`).
    ///
    /// # Panics
    ///
    /// If no port is free.
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind the proxy: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy address: {e}"))
            .port();
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let accepted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept(
            listener,
            target,
            Arc::clone(&up),
            generation.clone(),
            Arc::clone(&accepted),
        ));
        Self {
            port,
            up,
            generation,
            accepted,
            task,
        }
    }

    /// Ends every connection through the proxy, and refuses new ones until
    /// [`restore`](Self::restore): the network is down.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Drops every connection through the proxy; new ones go through: a blip.
    pub fn drop_connections(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Connections accepted and forwarded so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.generation.send_modify(|g| *g += 1);
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    target: String,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    accepted: Arc<AtomicU64>,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        if !up.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let Ok(outbound) = TcpStream::connect(&target).await else {
            continue;
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        let mut cut = generation.subscribe();
        let born = *cut.borrow_and_update();
        tokio::spawn(async move {
            let (mut inbound, mut outbound) = (inbound, outbound);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut.wait_for(|now| *now != born) => {}
            }
        });
    }
}
