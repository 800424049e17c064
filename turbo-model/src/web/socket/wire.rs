//! The socket under a stream connection: the WebSocket handshake, the client's frames
//! read by tungstenite, and the server's frames written as they were prepared.
//!
//! A server's WebSocket frames are not masked (RFC 6455, section 5.1), so a broadcast's
//! frame, header and payload, is the same bytes for every subscriber: it is encoded
//! once per broadcast ([`protocol::message`](super::protocol::message)) and written
//! unchanged to every socket, with several queued frames in one vectored write. No
//! copy per socket, and no write buffer kept per connection. Where the socket was
//! accepted by this crate's [`Listener`](crate::web::Listener), it is written directly,
//! not through hyper's upgraded connection, and the hub's writer writes broadcasts to it
//! too (see `hub::connection`).
//!
//! tungstenite keeps the read side: parsing, unmasking, size limits, UTF-8 checks, and
//! the replies the protocol makes by itself (the pong to a ping, the reply to a close).
//! Those it writes into a small buffer of its own, which the connection sends between
//! its frames, so that nothing is ever written into the middle of a frame.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Message, Role, WebSocketConfig};

use crate::hub::TryWrite;
use crate::web::PeerAddr;

/// Bytes the protocol's own replies may have waiting. A client that makes them pile up
/// past this (pings faster than the connection sends) is a protocol error: its
/// connection ends.
const MAX_CONTROL_BYTES: usize = 4 * 1024;

/// A request to open a stream connection, checked: what it takes to answer it.
pub(crate) struct Handshake {
    accept: String,
    on_upgrade: OnUpgrade,
    /// The socket under the connection, when this crate's listener accepted it.
    direct: Option<Arc<TcpStream>>,
}

impl Handshake {
    /// Checks a WebSocket opening request (RFC 6455, section 4.2.1); what is wrong with
    /// it when it is not one.
    pub(crate) fn check(request: &mut Parts) -> Result<Self, NotWebSocket> {
        let headers = &request.headers;
        if request.method != Method::GET {
            return Err(NotWebSocket::Method);
        }
        if !has_token(headers, &header::CONNECTION, "upgrade") {
            return Err(NotWebSocket::Connection);
        }
        if !has_token(headers, &header::UPGRADE, "websocket") {
            return Err(NotWebSocket::Upgrade);
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|version| version.as_bytes() != b"13")
        {
            return Err(NotWebSocket::Version);
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(NotWebSocket::Key);
        };
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let Some(on_upgrade) = request.extensions.remove::<OnUpgrade>() else {
            return Err(NotWebSocket::NotUpgradable);
        };
        // Only an HTTP/1.1 connection is handed over whole; over HTTP/2 a WebSocket
        // would be one stream among others on the socket.
        let direct = (request.version == axum::http::Version::HTTP_11)
            .then(|| request.extensions.get::<ConnectInfo<PeerAddr>>())
            .flatten()
            .and_then(|ConnectInfo(peer)| peer.socket());
        Ok(Self {
            accept,
            on_upgrade,
            direct,
        })
    }

    /// Answers the request (101), and runs `serve` on the socket once the connection
    /// is handed over.
    pub(crate) fn accept<F, Fut>(self, config: WebSocketConfig, serve: F) -> Response
    where
        F: FnOnce(Wire) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Self {
            accept,
            on_upgrade,
            direct,
        } = self;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => serve(Wire::new(upgraded, direct, config).await).await,
                Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
            }
        });
        let accept =
            HeaderValue::from_str(&accept).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, accept),
            ],
        )
            .into_response()
    }
}

/// Why a request to the WebSocket endpoint is not a WebSocket opening request; its
/// response says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotWebSocket {
    Method,
    Connection,
    Upgrade,
    Version,
    Key,
    NotUpgradable,
}

impl NotWebSocket {
    fn status(self) -> StatusCode {
        match self {
            Self::Method => StatusCode::METHOD_NOT_ALLOWED,
            Self::Connection | Self::Upgrade | Self::Key => StatusCode::BAD_REQUEST,
            Self::Version | Self::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
        }
    }
}

impl std::fmt::Display for NotWebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Method => "a WebSocket opens with GET",
            Self::Connection => "the Connection header does not include 'upgrade'",
            Self::Upgrade => "the Upgrade header does not include 'websocket'",
            Self::Version => "only WebSocket version 13 is spoken",
            Self::Key => "the Sec-WebSocket-Key header is missing",
            Self::NotUpgradable => "this connection cannot be upgraded (HTTP/1.1 is needed)",
        })
    }
}

impl IntoResponse for NotWebSocket {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.to_string()).into_response();
        if self == Self::Version {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

/// Whether a header's comma-separated values hold `token`, in any case.
fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The upgraded connection.
type Socket = TokioIo<hyper::upgrade::Upgraded>;

/// What tungstenite reads from and writes to: the socket to read; to write, a buffer the
/// connection empties (see the module docs).
struct Io {
    socket: Socket,
    control: Vec<u8>,
}

impl AsyncRead for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.control.len() + buf.len() > MAX_CONTROL_BYTES {
            return Poll::Ready(Err(io::Error::other(
                "the client's pings pile up faster than their pongs go out",
            )));
        }
        self.control.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A stream connection's socket: client frames in, prepared frames out.
pub(crate) struct Wire {
    inner: WebSocketStream<Io>,
    /// The socket itself, written without hyper, where this crate's listener accepted it.
    direct: Option<Arc<TcpStream>>,
}

impl Wire {
    async fn new(
        upgraded: hyper::upgrade::Upgraded,
        direct: Option<Arc<TcpStream>>,
        config: WebSocketConfig,
    ) -> Self {
        let io = Io {
            socket: TokioIo::new(upgraded),
            control: Vec::new(),
        };
        Self {
            inner: WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await,
            direct,
        }
    }

    /// The socket, for the hub's writer to write to, if it can be shared.
    pub(crate) fn shared(&self) -> Option<Arc<dyn TryWrite>> {
        self.direct
            .clone()
            .map(|socket| -> Arc<dyn TryWrite> { socket })
    }

    /// The client's next message; `None` once the connection is gone. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        let message = self.inner.next().await;
        if let Some(Ok(Message::Ping(_) | Message::Close(_))) = message {
            // tungstenite keeps its answer (the pong, the close reply) until its next
            // write: flushing makes it now, into `control`, where `take_control` finds
            // it. Writing there never waits.
            let _ = futures_util::FutureExt::now_or_never(futures_util::SinkExt::flush(
                &mut self.inner,
            ));
        }
        message
    }

    /// What the protocol answered by itself since last asked (pongs, a close reply):
    /// whole frames, to go out before anything else.
    pub(crate) fn take_control(&mut self) -> Option<Bytes> {
        let control = &mut self.inner.get_mut().control;
        (!control.is_empty()).then(|| Bytes::from(std::mem::take(control)))
    }

    /// Writes what the socket takes of `pieces`, in order, waiting for room when it takes
    /// nothing. The caller keeps the socket a sequence of whole frames (see
    /// `Connection::poll_send`).
    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        pieces: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &self.direct {
            Some(socket) => crate::web::listener::poll_write_vectored(socket, cx, pieces),
            None => Pin::new(&mut self.inner.get_mut().socket).poll_write_vectored(cx, pieces),
        }
    }

    /// Flushes what a wrapped socket (not this crate's listener's) may buffer.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.direct {
            Some(_) => Poll::Ready(Ok(())),
            None => Pin::new(&mut self.inner.get_mut().socket).poll_flush(cx),
        }
    }
}

impl TryWrite for TcpStream {
    fn try_write_vectored(&self, pieces: &[io::IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri("/turbo-model/ws");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).expect("request").into_parts().0
    }

    const OPENING: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    fn refusal(method: Method, headers: &[(&str, &str)]) -> NotWebSocket {
        match Handshake::check(&mut parts(method, headers)) {
            Ok(_) => panic!("accepted {headers:?}"),
            Err(refused) => refused,
        }
    }

    #[test]
    fn each_missing_piece_of_an_opening_is_named() {
        assert_eq!(refusal(Method::POST, &OPENING), NotWebSocket::Method);
        let without = |name: &str| -> Vec<(&str, &str)> {
            OPENING
                .iter()
                .copied()
                .filter(|(n, _)| *n != name)
                .collect()
        };
        for (missing, refused) in [
            ("connection", NotWebSocket::Connection),
            ("upgrade", NotWebSocket::Upgrade),
            ("sec-websocket-version", NotWebSocket::Version),
            ("sec-websocket-key", NotWebSocket::Key),
        ] {
            assert_eq!(
                refusal(Method::GET, &without(missing)),
                refused,
                "{missing}"
            );
        }
        let mut old = without("sec-websocket-version");
        old.push(("sec-websocket-version", "8"));
        assert_eq!(refusal(Method::GET, &old), NotWebSocket::Version);
        // Every header right, but no connection to take over (not from hyper's HTTP/1).
        assert_eq!(refusal(Method::GET, &OPENING), NotWebSocket::NotUpgradable);
    }

    #[test]
    fn refusals_answer_with_their_status_and_reason() {
        let version = NotWebSocket::Version.into_response();
        assert_eq!(version.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(version.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(
            NotWebSocket::Connection.into_response().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            NotWebSocket::Method.into_response().status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            NotWebSocket::Key.to_string(),
            "the Sec-WebSocket-Key header is missing"
        );
    }

    #[test]
    fn tokens_are_found_in_lists_in_any_case() {
        let headers = parts(Method::GET, &[("connection", "keep-alive,  UPGRADE ")]).headers;
        assert!(has_token(&headers, &header::CONNECTION, "upgrade"));
        let headers = parts(Method::GET, &[("connection", "upgraded")]).headers;
        assert!(!has_token(&headers, &header::CONNECTION, "upgrade"));
    }

    #[test]
    fn the_accept_key_is_the_one_the_rfc_gives() {
        assert_eq!(
            tungstenite::handshake::derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
