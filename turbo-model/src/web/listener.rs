//! A TCP listener whose connections cannot stall the server: every write, and the
//! shutdown of a connection, has a deadline.
//!
//! A client that stops reading leaves the server's writes pending forever: hyper stops
//! polling a Server-Sent Events body, a WebSocket flush never ends, and the connection
//! holds its task, its socket and its buffers until the client goes away, which may be
//! never. Connections accepted here fail a write that has made no progress for the
//! write timeout; the server then drops them.
//!
//! The stream endpoint also writes to the sockets it accepted here without going through
//! hyper's upgraded connection: the hub's writer writes a broadcast straight to every
//! socket that has room (see `hub::connection`). [`PeerAddr`] carries the way to the
//! socket, from the listener to the endpoint.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// Accepts TCP connections whose writes have a deadline, for [`axum::serve()`]: a client
/// that stops reading leaves a write pending, which fails after the timeout, and the
/// server drops the connection instead of holding it until the client goes away.
/// [`Turbo::serve`](crate::Turbo::serve) uses it.
///
/// ```no_run
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// use turbo_model::web::{Listener, PeerAddr};
///
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let listener = Listener::new(tcp, std::time::Duration::from_secs(10));
/// axum::serve(listener, app.into_make_service_with_connect_info::<PeerAddr>()).await
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    write_timeout: Duration,
}

impl Listener {
    /// Wraps `tcp`: a write that makes no progress for `write_timeout` fails.
    pub fn new(tcp: TcpListener, write_timeout: Duration) -> Self {
        Self { tcp, write_timeout }
    }
}

impl axum::serve::Listener for Listener {
    type Io = DeadlineIo<SharedTcp>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = axum::serve::Listener::accept(&mut self.tcp).await;
        // Frames go out as they are written: no delay waiting for more.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        (
            DeadlineIo::new(SharedTcp(Arc::new(stream)), self.write_timeout),
            address,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The client's address, as [`Listener`] accepted it: extract it with
/// `ConnectInfo<PeerAddr>` after `into_make_service_with_connect_info::<PeerAddr>()`.
/// The per-address connection limit uses it, and the stream endpoint finds the socket
/// through it, to write broadcasts to it directly.
#[derive(Clone, Debug)]
pub struct PeerAddr(pub SocketAddr, Weak<TcpStream>);

impl PeerAddr {
    /// The accepted socket, while the connection is open.
    pub(crate) fn socket(&self) -> Option<Arc<TcpStream>> {
        self.1.upgrade()
    }
}

impl PartialEq for PeerAddr {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for PeerAddr {}

impl std::hash::Hash for PeerAddr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Connected<IncomingStream<'_, Listener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        Self(*stream.remote_addr(), Arc::downgrade(&stream.io().io.0))
    }
}

/// An accepted TCP stream, which the stream endpoint may also write to once the
/// connection is upgraded (a socket is written without `&mut` when it has room). The
/// server (hyper) reads and writes it as any stream until then.
#[derive(Debug)]
pub struct SharedTcp(Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            // Not ready after all: readiness is cleared, and the next poll waits.
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_write_vectored(&self.0, cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}

/// Writes what `socket` takes, waiting for room when it takes nothing.
pub(crate) fn poll_write_vectored(
    socket: &TcpStream,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    loop {
        ready!(socket.poll_write_ready(cx))?;
        match socket.try_write_vectored(bufs) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            result => return Poll::Ready(result),
        }
    }
}

/// A connection whose writes (and flushes, and shutdown) fail after making no progress
/// for the timeout.
#[derive(Debug)]
pub struct DeadlineIo<T> {
    io: T,
    timeout: Duration,
    /// Set while a write is pending: when it fires, the write fails.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> DeadlineIo<T> {
    /// Wraps `io`.
    pub fn new(io: T, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            stalled: None,
        }
    }

    /// What a write that returned `Pending` does: it waits, unless the deadline passed.
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {timeout:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<R>(&mut self, result: io::Result<R>) -> Poll<io::Result<R>> {
        self.stalled = None;
        Poll::Ready(result)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for DeadlineIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(result) => self.progress(result),
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => self.progress(result),
            Poll::Pending => self.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(result) => self.progress(result),
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Ready(result) => self.progress(result),
            Poll::Pending => self.pending(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_timeout() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut io = DeadlineIo::new(ours, Duration::from_millis(50));
        let started = std::time::Instant::now();
        let error = io
            .write_all(&[0u8; 1024])
            .await
            .expect_err("nobody reads the other end");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn writes_that_progress_never_time_out() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut theirs, &mut all)
                .await
                .map(|_| all.len())
        });
        let mut io = DeadlineIo::new(ours, Duration::from_millis(50));
        for _ in 0..20 {
            io.write_all(&[1u8; 64]).await.expect("the peer reads");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        io.shutdown().await.expect("shutdown");
        drop(io);
        assert_eq!(reader.await.expect("joins").expect("reads"), 20 * 64);
    }
}
