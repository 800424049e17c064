//! One WebSocket connection: requests in, frames out, heartbeats both ways, until either
//! side stops, the hub kicks it, or the server shuts down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use axum::http::request::Parts;
use futures_util::SinkExt;

use super::Service;
use super::limits::Slot;
use super::protocol::{self, ErrorCode, Inbound, Reply};
use crate::hub::{Connection, Position, Since};

/// Close code for a client that stopped answering heartbeats.
const HEARTBEAT_TIMEOUT: u16 = 4000;
/// Refused requests in a row after which a flooding client is disconnected.
const MAX_REFUSED_IN_A_ROW: u32 = 100;
/// How long a shutting-down connection may spend flushing its queue.
const FLUSH_FOR: Duration = Duration::from_secs(2);
/// Queued frames written together, before the socket is read again.
const BATCH: usize = 64;

/// Why the loop stopped, and what to tell the client.
enum Stop {
    /// Close with this frame.
    Close(CloseFrame),
    /// The socket is gone, or stalled: nothing more to send.
    Gone,
}

fn close(code: u16, reason: &'static str) -> Stop {
    Stop::Close(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    })
}

/// Serves one upgraded socket; `_slot` holds its place among the open connections.
pub(crate) async fn serve(
    service: Service,
    mut socket: WebSocket,
    request: Option<Arc<Parts>>,
    _slot: Slot,
) {
    let mut connection = service.hub().connect();
    let kick = connection.kick_signal();
    let mut shutdown = service.shutdown_signal();
    let id = connection.id().get();
    let heartbeat = service.settings().heartbeat;
    let write_timeout = service.settings().write_timeout;
    tracing::debug!(connection = id, "socket open");

    let hello = Reply::Hello {
        connection: service.connection_token(connection.id()),
        heartbeat_ms: u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX),
    };
    let mut state = State {
        service: &service,
        request,
        connection: &mut connection,
        limiter: RateLimiter::new(service.settings().inbound_rate),
        refused_in_a_row: 0,
    };
    let kicked = kick.kicked();
    tokio::pin!(kicked);
    let hello = vec![text(hello.to_json())];
    let stop = match write_all(&mut socket, kicked.as_mut(), hello, write_timeout).await {
        Err(stop) => stop,
        Ok(()) => run(&mut socket, &mut state, kicked, &mut shutdown, heartbeat).await,
    };
    if let Stop::Close(frame) = stop {
        // The close frame goes out within the write timeout; then the socket is dropped,
        // whatever the client does.
        let close = socket.send(Message::Close(Some(frame)));
        let _ = tokio::time::timeout(write_timeout, close).await;
    }
    tracing::debug!(connection = id, "socket closed");
}

struct State<'a> {
    service: &'a Service,
    /// The request that opened the connection, kept only for an authorization callback.
    request: Option<Arc<Parts>>,
    connection: &'a mut Connection,
    limiter: RateLimiter,
    refused_in_a_row: u32,
}

async fn run(
    socket: &mut WebSocket,
    state: &mut State<'_>,
    mut kicked: Pin<&mut impl Future<Output = ()>>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    heartbeat: Duration,
) -> Stop {
    let write_timeout = state.service.settings().write_timeout;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut last_heard = Instant::now();
    let closing = super::closing(shutdown);
    tokio::pin!(closing);
    loop {
        let outbound: Vec<Utf8Bytes> = tokio::select! {
            biased;
            () = &mut kicked => return close(close_code::AGAIN, "too slow to keep up; reconnect"),
            () = &mut closing => {
                return flush_for_shutdown(socket, state.connection, kicked, write_timeout).await;
            }
            inbound = socket.recv() => {
                last_heard = Instant::now();
                match inbound {
                    None | Some(Ok(Message::Close(_))) => return Stop::Gone,
                    Some(Err(error)) => return close_for(error),
                    Some(Ok(Message::Text(request))) => match state.request(&request).await {
                        Ok(replies) => replies,
                        Err(stop) => return stop,
                    },
                    Some(Ok(Message::Binary(_))) => vec![error_reply(
                        ErrorCode::BinaryNotSupported,
                        "binary frames are not accepted; send JSON text".into(),
                        None,
                    )],
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Vec::new(),
                }
            }
            frame = state.connection.next_frame() => match frame {
                // What else is queued goes out with it, before the socket is read again.
                Some(frame) => {
                    let mut batch = vec![protocol::message(&frame).clone()];
                    while batch.len() < BATCH {
                        match state.connection.try_next_frame() {
                            Some(frame) => batch.push(protocol::message(&frame).clone()),
                            None => break,
                        }
                    }
                    batch
                }
                None => return Stop::Gone,
            },
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat * 2 {
                    tracing::debug!(connection = state.connection.id().get(), "heartbeat timeout");
                    return close(HEARTBEAT_TIMEOUT, "no heartbeat from the client");
                }
                vec![Utf8Bytes::from(Reply::Ping.to_json())]
            }
        };
        if let Err(stop) = write_all(socket, kicked.as_mut(), outbound, write_timeout).await {
            return stop;
        }
    }
}

/// Writes text frames and flushes once, unless the hub kicks the connection first or
/// the write makes no progress for `timeout`: a stalled write must not hold a slow
/// client's resources forever. A write that times out drops the connection.
async fn write_all(
    socket: &mut WebSocket,
    kicked: Pin<&mut impl Future<Output = ()>>,
    messages: Vec<Utf8Bytes>,
    timeout: Duration,
) -> Result<(), Stop> {
    if messages.is_empty() {
        return Ok(());
    }
    // A long replay to a client that reads is fine; a client that reads nothing is not:
    // the watchdog fails the write when a whole timeout passes without a message going
    // out. (No timer per message: it checks a counter.)
    let progress = AtomicU64::new(0);
    let send = async {
        for message in messages {
            socket.feed(Message::Text(message)).await?;
            progress.fetch_add(1, Ordering::Relaxed);
        }
        socket.flush().await
    };
    let mut send = std::pin::pin!(send);
    // Most writes finish at once (the socket has room): no timer for those.
    if let Some(sent) = futures_util::FutureExt::now_or_never(&mut send) {
        return sent.map_err(|_| Stop::Gone);
    }
    let watchdog = async {
        let mut seen = 0;
        loop {
            tokio::time::sleep(timeout).await;
            let now = progress.load(Ordering::Relaxed);
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

/// A write made no progress for the write timeout: the connection is dropped, without a
/// close frame (nothing more can be written).
fn stalled() -> Stop {
    tracing::debug!("a write stalled past the write timeout; dropping the connection");
    Stop::Gone
}

/// On shutdown: write what is queued (for a bounded time), then ask for a reconnect.
async fn flush_for_shutdown(
    socket: &mut WebSocket,
    connection: &mut Connection,
    mut kicked: Pin<&mut impl Future<Output = ()>>,
    write_timeout: Duration,
) -> Stop {
    let mut queued = Vec::new();
    while let Some(frame) = connection.try_next_frame() {
        queued.push(protocol::message(&frame).clone());
    }
    let flush = write_all(socket, kicked.as_mut(), queued, write_timeout);
    if let Ok(Err(stop)) = tokio::time::timeout(FLUSH_FOR, flush).await {
        return stop;
    }
    close(close_code::RESTART, "server restarting; reconnect")
}

fn text(json: String) -> Utf8Bytes {
    Utf8Bytes::from(json)
}

/// The close frame owed to the client after a read error, if any.
fn close_for(error: axum::Error) -> Stop {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(capacity)) => {
            tracing::debug!(error = %capacity, "inbound message over the size limit");
            close(
                close_code::SIZE,
                "message too big: the limit is 65536 bytes",
            )
        }
        Some(tungstenite::Error::Protocol(protocol)) => {
            tracing::debug!(error = %protocol, "WebSocket protocol error");
            close(close_code::PROTOCOL, "protocol error")
        }
        Some(tungstenite::Error::Utf8(_)) => {
            tracing::debug!("a text message that is not UTF-8");
            close(close_code::INVALID, "text messages must be UTF-8")
        }
        _ => {
            tracing::debug!(error = %inner, "socket read failed");
            Stop::Gone
        }
    }
}

/// An `error` frame. The token is echoed so that the client knows which stream was
/// refused, unless it is longer than any token the server signs: a refusal never sends
/// back more than it has to.
fn error_reply(code: ErrorCode, message: String, token: Option<&str>) -> Utf8Bytes {
    let token = token.filter(|token| token.len() <= crate::signing::MAX_TOKEN_LEN);
    text(
        Reply::Error {
            code,
            message,
            token,
        }
        .to_json(),
    )
}

impl State<'_> {
    /// Answers one request: its reply, then any replayed frames, in order.
    async fn request(&mut self, request: &str) -> Result<Vec<Utf8Bytes>, Stop> {
        if !self.limiter.admit(Instant::now()) {
            self.refused_in_a_row += 1;
            if self.refused_in_a_row >= MAX_REFUSED_IN_A_ROW {
                return Err(close(close_code::POLICY, "too many requests"));
            }
            let rate = self.service.settings().inbound_rate;
            return Ok(vec![error_reply(
                ErrorCode::RateLimited,
                format!(
                    "at most {} requests per second (bursts of {}); this one was dropped",
                    rate.per_second, rate.burst
                ),
                None,
            )]);
        }
        let (replies, refused) = match self.answer(request).await {
            Answer::Done(replies) => (replies, false),
            Answer::Refused(reply) => (vec![reply], true),
            Answer::Stop(stop) => return Err(stop),
        };
        self.refused_in_a_row = if refused {
            self.refused_in_a_row + 1
        } else {
            0
        };
        if self.refused_in_a_row >= MAX_REFUSED_IN_A_ROW {
            return Err(close(close_code::POLICY, "too many refused requests"));
        }
        Ok(replies)
    }

    async fn answer(&mut self, request: &str) -> Answer {
        let (token, since, subscribe) = match protocol::parse(request) {
            Ok(Inbound::Pong {}) => return Answer::Done(Vec::new()),
            Ok(Inbound::Subscribe { stream, since }) => (stream, since, true),
            Ok(Inbound::Unsubscribe { stream }) => (stream, None, false),
            Err(message) => {
                return Answer::Refused(error_reply(ErrorCode::BadRequest, message, None));
            }
        };
        let stream = match self.service.verify(&token) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::info!(connection = self.connection.id().get(), %error, "subscription refused");
                return Answer::Refused(error_reply(
                    ErrorCode::InvalidToken,
                    format!("stream token refused: {error}"),
                    Some(&token),
                ));
            }
        };
        if !subscribe {
            self.connection.unsubscribe(&stream);
            let reply = Reply::Unsubscribed {
                stream: stream.as_str(),
                token: &token,
            };
            return Answer::Done(vec![text(reply.to_json())]);
        }
        let limit = self.service.settings().max_subscriptions;
        if self.connection.streams().len() >= limit && !self.connection.streams().contains(&stream)
        {
            return Answer::Refused(error_reply(
                ErrorCode::TooManySubscriptions,
                format!("a connection may subscribe to at most {limit} streams"),
                Some(&token),
            ));
        }
        if let Err(reason) = self.service.authorize(self.request.as_ref(), &stream).await {
            tracing::info!(
                connection = self.connection.id().get(),
                %stream,
                %reason,
                "subscription refused by the application"
            );
            return Answer::Refused(error_reply(
                ErrorCode::Forbidden,
                format!("subscription to `{stream}` refused: {reason}"),
                Some(&token),
            ));
        }
        let since = since.map(|s| s.since());
        let subscribed = match self
            .service
            .subscribe(self.connection, &stream, since)
            .await
        {
            Ok(subscribed) => subscribed,
            Err(error) => {
                tracing::warn!(%stream, %error, "the broker could not answer a subscription");
                return Answer::Stop(close(
                    close_code::AGAIN,
                    "stream history unavailable; reconnect",
                ));
            }
        };
        let reply = Reply::Subscribed {
            stream: stream.as_str(),
            token: &token,
            epoch: Position::epoch_hex(subscribed.position.epoch),
            seq: start_seq(since, &subscribed),
            gap: subscribed.gap,
        };
        let mut out = Vec::with_capacity(1 + subscribed.replay.len());
        out.push(text(reply.to_json()));
        out.extend(
            subscribed
                .replay
                .iter()
                .map(|f| protocol::message(f).clone()),
        );
        Answer::Done(out)
    }
}

/// The sequence number a `subscribed` reply names. A page subscribing from a time has
/// no position yet: it is told the stream's position at that time, and the replay
/// follows. A resuming client keeps its own position; it is told where the stream is.
pub(crate) fn start_seq(since: Option<Since>, resume: &crate::backend::Resume) -> u64 {
    match (since, resume.replay.first()) {
        (Some(Since::Time(_)), Some(first)) if resume.gap.is_none() => first.seq() - 1,
        _ => resume.position.seq,
    }
}

/// What a request produced.
enum Answer {
    /// Replies to send (possibly none).
    Done(Vec<Utf8Bytes>),
    /// The request was refused with this error frame.
    Refused(Utf8Bytes),
    /// The connection must close.
    Stop(Stop),
}

/// Requests per second a connection may send, with bursts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) struct InboundRate {
    /// Sustained requests per second.
    pub(crate) per_second: u32,
    /// Requests allowed at once.
    pub(crate) burst: u32,
}

impl Default for InboundRate {
    /// 20 per second, and bursts of 120: enough for a page to subscribe to every stream
    /// a connection may hold ([`DEFAULT_MAX_SUBSCRIPTIONS`](crate::DEFAULT_MAX_SUBSCRIPTIONS))
    /// at once when it reconnects.
    fn default() -> Self {
        Self {
            per_second: 20,
            burst: 120,
        }
    }
}

/// A token bucket.
struct RateLimiter {
    rate: InboundRate,
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    fn new(rate: InboundRate) -> Self {
        Self {
            rate,
            tokens: f64::from(rate.burst),
            at: Instant::now(),
        }
    }

    fn admit(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(self.rate.per_second);
        self.tokens = (self.tokens + refill).min(f64::from(self.rate.burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_bursts_then_the_rate() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(InboundRate {
            per_second: 10,
            burst: 3,
        });
        assert!((0..3).all(|_| limiter.admit(start)));
        assert!(!limiter.admit(start));
        assert!(limiter.admit(start + Duration::from_millis(100)));
        assert!(!limiter.admit(start + Duration::from_millis(100)));
        assert!(limiter.admit(start + Duration::from_secs(60)));
        assert!(limiter.admit(start + Duration::from_secs(60)));
        assert!(limiter.admit(start + Duration::from_secs(60)));
        assert!(
            !limiter.admit(start + Duration::from_secs(60)),
            "capped at the burst"
        );
    }
}
