//! One WebSocket connection: requests in, frames out, heartbeats both ways, until either
//! side stops, the hub kicks it, or the server shuts down.

mod rate;
mod requests;
mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::ws::close_code;
use axum::http::request::Parts;
use bytes::Bytes;
use futures_util::StreamExt;
use tungstenite::Message;

pub(crate) use rate::InboundRate;
use requests::State;
pub(crate) use requests::start_seq;
pub(crate) use wire::{Handshake, Wire};

use super::Service;
use super::limits::Slot;
use super::protocol::{self, ErrorCode, Reply};
use super::recheck::Registration;
use crate::hub::{Connection, KickSignal, Outlet};

/// Close code for a client that stopped answering heartbeats.
const HEARTBEAT_TIMEOUT: u16 = 4000;
/// How long a shutting-down connection may spend flushing its queue.
const FLUSH_FOR: Duration = Duration::from_secs(2);
/// Queued frames the task writes before it reads the socket again.
const BATCH: usize = 64;

/// Why the loop stopped, and what to tell the client.
enum Stop {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// The socket is gone: nothing more to send.
    Gone,
    /// A write made no progress for the write timeout: nothing more can be sent.
    Stalled,
}

fn close(code: u16, reason: &'static str) -> Stop {
    Stop::Close(code, reason)
}

/// Serves one upgraded socket; `_slot` holds its place among the open connections.
///
/// The socket comes boxed: an `async fn` keeps its arguments beside the locals they are
/// moved into, and a socket held twice in every connection's task would cost a few
/// hundred bytes per connection for nothing.
pub(crate) async fn serve(
    service: Service,
    mut socket: Box<Wire>,
    request: Option<Arc<Parts>>,
    _slot: Slot,
) {
    let mut connection = service.hub().connect();
    if let Some(shared) = socket.shared() {
        connection.attach(Outlet {
            socket: shared,
            encode: protocol::message,
        });
    }
    let kick = connection.kick_signal();
    let id = connection.id().get();
    let heartbeat = service.settings().heartbeat;
    let write_timeout = service.settings().write_timeout;
    tracing::debug!(connection = id, "socket open");

    let hello = Reply::Hello {
        connection: service.connection_token(connection.id()),
        heartbeat_ms: u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX),
    };
    let registration = service.register(connection.id(), request.clone());
    let mut state = State::new(&service, request, &mut connection);
    let kicked = kick.kicked();
    tokio::pin!(kicked);
    state
        .connection
        .send_first(vec![protocol::text_frame(&hello.to_json())]);
    let out = Out {
        kick: &kick,
        timeout: write_timeout,
    };
    let stop = match out
        .send(&mut socket, state.connection, kicked.as_mut(), 0)
        .await
    {
        Err(stop) => stop,
        Ok(()) => {
            run(
                &mut socket,
                &mut state,
                &registration,
                out,
                kicked,
                heartbeat,
            )
            .await
        }
    };
    // What goes out last, within the write timeout, after the rest of a frame cut off
    // midway; the hub's writer writes no more. Then the socket is dropped, whatever the
    // client does.
    state.connection.hold();
    let last = match stop {
        Stop::Close(code, reason) => {
            if code == HEARTBEAT_TIMEOUT {
                service.metrics().kicked("heartbeat");
            }
            socket
                .take_control()
                .into_iter()
                .chain([protocol::close_frame(code, reason)])
                .collect()
        }
        // The protocol's own last words, if any: the reply to the client's close.
        Stop::Gone => socket.take_control().into_iter().collect(),
        Stop::Stalled => {
            service.metrics().kicked("write_timeout");
            Vec::new()
        }
    };
    if !last.is_empty() {
        state.connection.send_first(last);
        let send = poll_send(&mut socket, state.connection, 0);
        let _ = tokio::time::timeout(write_timeout, send).await;
    }
    tracing::debug!(connection = id, "socket closed");
}

async fn run(
    socket: &mut Wire,
    state: &mut State<'_>,
    registration: &Registration,
    out: Out<'_>,
    mut kicked: Pin<&mut impl Future<Output = ()>>,
    heartbeat: Duration,
) -> Stop {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut last_heard = Instant::now();
    let closing = registration.signal().closing();
    tokio::pin!(closing);
    loop {
        let mut outbound: Vec<Bytes> = tokio::select! {
            biased;
            () = &mut kicked => return close(close_code::AGAIN, "too slow to keep up; reconnect"),
            () = &mut closing => {
                // Boxed: the connection's task would otherwise be sized for this
                // once-in-a-lifetime path, a few hundred bytes more for every connection.
                return Box::pin(out.flush_for_shutdown(socket, state.connection, kicked)).await;
            }
            inbound = socket.recv() => {
                last_heard = Instant::now();
                match inbound {
                    None | Some(Ok(Message::Close(_))) => return Stop::Gone,
                    Some(Err(error)) => return close_for(error),
                    Some(Ok(Message::Text(request))) => {
                        // A subscription's reply and replay go out before its frames.
                        state.connection.hold();
                        match state.request(request.as_str()) {
                            Ok(replies) => replies,
                            Err(stop) => return stop,
                        }
                    }
                    Some(Ok(Message::Binary(_))) => vec![state.refuse(
                        ErrorCode::BinaryNotSupported,
                        "binary frames are not accepted; send JSON text".into(),
                        None,
                    )],
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Vec::new(),
                }
            }
            Some(done) = state.pending.next(), if !state.pending.is_empty() => {
                state.connection.hold();
                match state.finish(done) {
                    Ok(replies) => replies,
                    Err(stop) => return stop,
                }
            }
            asked = registration.signal().asked() => {
                state.connection.hold();
                state.recheck(|stream| asked.iter().any(|streams| streams.matches(stream)));
                Vec::new()
            }
            // Queued frames the hub's writer left: the socket was full, or they were
            // held off. Written below, a batch at a time.
            () = state.connection.ready() => Vec::new(),
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat * 2 {
                    tracing::debug!(connection = state.connection.id().get(), "heartbeat timeout");
                    return close(HEARTBEAT_TIMEOUT, "no heartbeat from the client");
                }
                vec![protocol::text_frame(&Reply::Ping.to_json())]
            }
        };
        // A pong or a close reply the protocol made while reading goes out first, between
        // whole frames.
        if let Some(control) = socket.take_control() {
            outbound.insert(0, control);
        }
        state.connection.send_first(outbound);
        state.connection.release();
        if let Err(stop) = out
            .send(socket, state.connection, kicked.as_mut(), BATCH)
            .await
        {
            return stop;
        }
    }
}

/// How a connection's task writes: within the write timeout, unless kicked.
#[derive(Clone, Copy)]
struct Out<'a> {
    kick: &'a KickSignal,
    timeout: Duration,
}

impl Out<'_> {
    /// Writes what goes out first (replies, the rest of a frame) and up to `max_frames`
    /// queued frames, and flushes, unless the hub kicks the connection first or the
    /// write makes no progress for the timeout: a stalled write must not hold a slow
    /// client's resources forever. A write that times out drops the connection.
    async fn send(
        self,
        socket: &mut Wire,
        connection: &mut Connection,
        kicked: Pin<&mut impl Future<Output = ()>>,
        max_frames: usize,
    ) -> Result<(), Stop> {
        let send = poll_send(socket, connection, max_frames);
        let mut send = std::pin::pin!(send);
        // Most writes finish at once (the socket has room): no timer for those.
        if let Some(sent) = futures_util::FutureExt::now_or_never(&mut send) {
            return sent.map_err(|_| Stop::Gone);
        }
        // The slow path, boxed: its timer would otherwise take room in every
        // connection's task for the whole of its life.
        Box::pin(self.wait_for_write(send, kicked)).await
    }

    /// A write that did not finish at once: it goes on until done, the kick, or a whole
    /// timeout without a byte going out. (No timer per message: it checks a counter of
    /// the bytes written, by the task or the hub's writer.)
    async fn wait_for_write(
        self,
        send: Pin<&mut impl Future<Output = std::io::Result<()>>>,
        kicked: Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), Stop> {
        let watchdog = async {
            let mut seen = self.kick.bytes_written();
            loop {
                tokio::time::sleep(self.timeout).await;
                let now = self.kick.bytes_written();
                if now == seen {
                    return;
                }
                seen = now;
            }
        };
        tokio::select! {
            biased;
            () = kicked => Err(close(close_code::AGAIN, "too slow to keep up; reconnect")),
            sent = send => sent.map_err(|_| Stop::Gone),
            () = watchdog => Err(stalled()),
        }
    }

    /// On shutdown: write what is queued (for a bounded time), then ask for a reconnect.
    async fn flush_for_shutdown(
        self,
        socket: &mut Wire,
        connection: &mut Connection,
        mut kicked: Pin<&mut impl Future<Output = ()>>,
    ) -> Stop {
        let flush = self.send(socket, connection, kicked.as_mut(), usize::MAX);
        if let Ok(Err(stop)) = tokio::time::timeout(FLUSH_FOR, flush).await {
            return stop;
        }
        close(close_code::RESTART, "server restarting; reconnect")
    }
}

/// Writes what goes out first and up to `max_frames` queued frames to `socket`, then
/// flushes it.
fn poll_send(
    socket: &mut Wire,
    connection: &mut Connection,
    max_frames: usize,
) -> impl Future<Output = std::io::Result<()>> {
    std::future::poll_fn(move |cx| {
        let sent = connection.poll_send(protocol::message, max_frames, &mut |pieces| {
            socket.poll_write_vectored(cx, pieces)
        });
        match sent {
            Poll::Ready(Ok(())) => socket.poll_flush(cx),
            other => other,
        }
    })
}

/// A write made no progress for the write timeout: the connection is dropped, without a
/// close frame (nothing more can be written).
fn stalled() -> Stop {
    tracing::debug!("a write stalled past the write timeout; dropping the connection");
    Stop::Stalled
}

/// The close frame owed to the client after a read error, if any.
fn close_for(error: tungstenite::Error) -> Stop {
    match error {
        tungstenite::Error::Capacity(capacity) => {
            tracing::debug!(error = %capacity, "inbound message over the size limit");
            close(
                close_code::SIZE,
                "message too big: the limit is 65536 bytes",
            )
        }
        tungstenite::Error::Protocol(protocol) => {
            tracing::debug!(error = %protocol, "WebSocket protocol error");
            close(close_code::PROTOCOL, "protocol error")
        }
        tungstenite::Error::Utf8(_) => {
            tracing::debug!("a text message that is not UTF-8");
            close(close_code::INVALID, "text messages must be UTF-8")
        }
        error => {
            tracing::debug!(%error, "socket read failed");
            Stop::Gone
        }
    }
}

/// An `error` frame. The token is echoed so that the client knows which stream was
/// refused, unless it is longer than any token the server signs: a refusal never sends
/// back more than it has to.
fn error_reply(code: ErrorCode, message: String, token: Option<&str>) -> Bytes {
    let token = token.filter(|token| token.len() <= crate::signing::MAX_TOKEN_LEN);
    protocol::text_frame(
        &Reply::Error {
            code,
            message,
            token,
        }
        .to_json(),
    )
}
