//! One subscriber: a WebSocket client speaking turbo-model's protocol (which the baseline
//! answers too) that notes when each benchmark message arrives.
//!
//! Its life has three phases, each bounded: connect and subscribe (until the scenario's
//! connect deadline), receive (until it has every message, or the delivery deadline set
//! after the last POST), and linger: it stays connected, answering heartbeats, until the
//! scenario says stop or the server closes, so that the server, not the client, closes
//! the TCP connection and the client's ports do not pile up in TIME_WAIT.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::message_seq;

/// What every subscriber of a scenario shares.
#[derive(Debug)]
pub struct Plan {
    /// Where the servers listen: subscriber `i` connects to `servers[i % len]`.
    pub servers: Vec<SocketAddr>,
    /// The WebSocket path, such as `/turbo-model/ws`.
    pub path: String,
    /// The stream token to subscribe with.
    pub token: String,
    /// How many benchmark messages will be posted.
    pub messages: usize,
    /// Connect and subscribe must be done by then.
    pub connect_deadline: Instant,
    /// Handshakes in flight at once, so that the server's accept queue never overflows.
    pub handshakes: Arc<Semaphore>,
}

/// What a subscriber tells the scenario as it goes.
#[derive(Debug)]
pub enum Event {
    /// Connected and subscribed.
    Subscribed,
    /// Could not connect or subscribe.
    Failed(String),
    /// Done receiving: every message arrived, the deadline passed, or the server closed.
    Finished,
}

/// The scenario's signals to its subscribers.
#[derive(Clone, Debug)]
pub struct Signals {
    /// Set after the last POST: stop waiting for messages then.
    pub delivery_deadline: watch::Receiver<Option<Instant>>,
    /// Set when the scenario is over: disconnect.
    pub stop: watch::Receiver<bool>,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Whether it subscribed.
    pub subscribed: bool,
    /// Why it could not, or why its connection broke while messages were expected.
    pub error: Option<String>,
    /// When each benchmark message arrived, by sequence number (first arrival).
    pub arrivals: Vec<Option<Instant>>,
    /// Benchmark messages that arrived more than once.
    pub duplicates: usize,
    /// Whether the connection ended before every message arrived.
    pub closed_early: bool,
    /// Size of the first benchmark frame, in bytes.
    pub frame_bytes: usize,
}

/// How the connect phase of a crowd of subscribers went.
#[derive(Debug, Default)]
pub struct Connected {
    /// Subscribed.
    pub connected: usize,
    /// Could not connect or subscribe.
    pub failed: usize,
    /// Closed by the server before any message was posted.
    pub finished: usize,
    /// The first reason one could not.
    pub first_error: Option<String>,
}

/// Reads `progress` until each of `expected` subscribers has subscribed or failed, or
/// until `until` (all report by their connect deadline; pass it with some slack).
pub async fn await_connected(
    progress: &mut mpsc::UnboundedReceiver<Event>,
    expected: usize,
    until: Instant,
) -> Connected {
    let mut seen = Connected::default();
    while seen.connected + seen.failed < expected {
        match tokio::time::timeout_at(until, progress.recv()).await {
            Ok(Some(Event::Subscribed)) => seen.connected += 1,
            Ok(Some(Event::Failed(error))) => {
                seen.failed += 1;
                seen.first_error.get_or_insert(error);
            }
            Ok(Some(Event::Finished)) => seen.finished += 1,
            Ok(None) | Err(_) => break,
        }
    }
    seen
}

type Socket = WebSocketStream<TcpStream>;

/// Runs one subscriber from `source` (a loopback address, so that many subscribers do
/// not run out of ports) to `server`, reporting its progress on `events`.
pub async fn run(
    plan: Arc<Plan>,
    source: IpAddr,
    server: SocketAddr,
    events: mpsc::UnboundedSender<Event>,
    mut signals: Signals,
) -> Outcome {
    let mut outcome = Outcome {
        arrivals: vec![None; plan.messages],
        ..Outcome::default()
    };
    let opened = tokio::time::timeout_at(plan.connect_deadline, open(&plan, source, server)).await;
    let mut socket = match opened {
        Ok(Ok(socket)) => socket,
        Ok(Err(error)) => return failed(outcome, &events, error),
        Err(_) => return failed(outcome, &events, "connect deadline passed".into()),
    };
    outcome.subscribed = true;
    let _ = events.send(Event::Subscribed);

    let received = receive(&mut socket, &mut outcome, &mut signals).await;
    outcome.closed_early = !received;
    let _ = events.send(Event::Finished);
    if received {
        linger(&mut socket, &mut signals.stop).await;
    }
    outcome
}

fn failed(mut outcome: Outcome, events: &mpsc::UnboundedSender<Event>, error: String) -> Outcome {
    let _ = events.send(Event::Failed(error.clone()));
    outcome.error = Some(error);
    outcome
}

/// Connects from `source` and subscribes; the handshake holds a permit.
async fn open(plan: &Plan, source: IpAddr, server: SocketAddr) -> Result<Socket, String> {
    let _permit = plan
        .handshakes
        .acquire()
        .await
        .map_err(|_| "handshakes closed".to_owned())?;
    let tcp = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    // Lets a source port be reused while an earlier connection to another server
    // lingers in TIME_WAIT.
    tcp.set_reuseaddr(true)
        .map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    tcp.bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let stream = tcp
        .connect(server)
        .await
        .map_err(|e| format!("connect from {source}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let url = format!("ws://{server}{}", plan.path);
    // The same small buffers as the servers: 10 000 clients in one process.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let (mut socket, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| format!("WebSocket handshake: {e}"))?;
    let subscribe = serde_json::json!({"type": "subscribe", "stream": plan.token}).to_string();
    socket
        .send(Message::text(subscribe))
        .await
        .map_err(|e| format!("send subscribe: {e}"))?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let text = text.as_str();
                if text.starts_with(r#"{"type":"subscribed""#) {
                    return Ok(socket);
                }
                if text.starts_with(r#"{"type":"error""#) {
                    return Err(format!("subscribe refused: {text}"));
                }
                // `hello`, or a heartbeat.
                answer_ping(&mut socket, text).await?;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("before subscribed: {e}")),
            None => return Err("closed before subscribed".into()),
        }
    }
}

/// Reads frames until every message has arrived (true), or the delivery deadline
/// passed (true), or the connection ended (false).
async fn receive(socket: &mut Socket, outcome: &mut Outcome, signals: &mut Signals) -> bool {
    let mut missing = outcome.arrivals.len();
    while missing > 0 {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            () = deadline(&mut signals.delivery_deadline) => return true,
        };
        let at = Instant::now();
        match frame {
            Some(Ok(Message::Text(text))) => {
                let text = text.as_str();
                if text.starts_with(r#"{"type":"message""#) {
                    if let Some(slot) =
                        message_seq(text).and_then(|seq| outcome.arrivals.get_mut(seq))
                    {
                        if slot.is_some() {
                            outcome.duplicates += 1;
                        } else {
                            *slot = Some(at);
                            missing -= 1;
                            if outcome.frame_bytes == 0 {
                                outcome.frame_bytes = text.len();
                            }
                        }
                    }
                } else if let Err(error) = answer_ping(socket, text).await {
                    outcome.error = Some(error);
                    return false;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                outcome.error = Some(format!("closed by the server: {frame:?}"));
                return false;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                outcome.error = Some(format!("receiving: {e}"));
                return false;
            }
            None => {
                outcome.error = Some("connection ended".into());
                return false;
            }
        }
    }
    true
}

/// Stays connected, answering heartbeats, until `stop` or the server closes.
async fn linger(socket: &mut Socket, stop: &mut watch::Receiver<bool>) {
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                if answer_ping(socket, text.as_str()).await.is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return,
        }
    }
}

/// Answers turbo-model's heartbeat; other frames need no answer.
async fn answer_ping(socket: &mut Socket, text: &str) -> Result<(), String> {
    if text.starts_with(r#"{"type":"ping""#) {
        socket
            .send(Message::text(r#"{"type":"pong"}"#))
            .await
            .map_err(|e| format!("send pong: {e}"))?;
    }
    Ok(())
}

/// Resolves when the delivery deadline is set and has passed.
async fn deadline(deadline: &mut watch::Receiver<Option<Instant>>) {
    let at = match deadline.wait_for(Option::is_some).await {
        Ok(at) => *at,
        // The scenario is gone: nothing more will come.
        Err(_) => return,
    };
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
