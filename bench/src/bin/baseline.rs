//! The baseline of the fan-out benchmark: the simplest broadcast server that does the
//! same job as the chat's live path, minus everything turbo-model adds.
//!
//! One `tokio::sync::broadcast` channel, one WebSocket route and one form route. A posted
//! message is formatted once (a frame of the same JSON shape as turbo-model's `message`
//! frame, with HTML of about the chat's size) and sent into the channel; every socket task
//! forwards what its receiver gets. No database, no templates, no sequence bookkeeping,
//! no history, no heartbeats, no limits. Socket buffers are 4 KiB for reading and none
//! for writing, as in turbo-model's endpoint, so that memory per connection compares.
//!
//! Routes: `GET /ws` (a client sends `{"type":"subscribe",...}` and gets
//! `{"type":"subscribed",...}`, then `message` frames) and `POST /messages` (form field
//! `text`; answers 303 like the chat). `BIND` and `PORT` pick the address (default
//! 127.0.0.1:3001). SIGTERM stops it at once.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError};

/// Frames a slow socket may fall behind before it skips some (a naive server's answer).
const CHANNEL_CAPACITY: usize = 1024;
/// The stream name put into frames, as the chat names its first room's stream.
const STREAM: &str = "room:1";

#[derive(Clone)]
struct Hub {
    frames: broadcast::Sender<Utf8Bytes>,
    seq: Arc<AtomicU64>,
}

#[derive(Serialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    stream: &'a str,
    seq: u64,
    html: String,
}

#[derive(Deserialize)]
struct NewMessage {
    text: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr, reason = "the only way this server reports")]
            {
                eprintln!("baseline: {error}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3001".into());
    let address = format!("{bind}:{port}");
    let (frames, _) = broadcast::channel(CHANNEL_CAPACITY);
    let hub = Hub {
        frames,
        seq: Arc::new(AtomicU64::new(0)),
    };
    let app = Router::new()
        .route("/ws", get(upgrade))
        .route("/messages", post(post_message))
        .with_state(hub);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// Formats the frame once and hands the same bytes to every receiver.
async fn post_message(State(hub): State<Hub>, Form(form): Form<NewMessage>) -> Response {
    let seq = hub.seq.fetch_add(1, Ordering::Relaxed) + 1;
    // The chat's message component, as the chat renders it for an anonymous message:
    // the same bytes on the wire, give or take the frame's header.
    let text = escape_html(form.text.trim());
    let html = format!(
        "<turbo-stream action=\"append\" target=\"messages\"><template>\
         <li id=\"message_{seq}\">\n  <b class=\"author\">anonymous</b>\n  \
         <span class=\"text\">{text}</span>\n  <details class=\"edit\">\n    \
         <summary>Edit</summary>\n    <form id=\"edit_message_{seq}\" method=\"post\" \
         action=\"/rooms/1/messages/{seq}/edit\">\n      <input name=\"text\" value=\"{text}\" \
         maxlength=\"2000\" required autocomplete=\"off\">\n      \
         <button type=\"submit\">Save</button>\n    </form>\n  </details>\n  \
         <form class=\"delete\" method=\"post\" action=\"/rooms/1/messages/{seq}/delete\">\n    \
         <button type=\"submit\">Delete</button>\n  </form>\n</li>\n\
         </template></turbo-stream>",
    );
    let frame = Frame {
        kind: "message",
        stream: STREAM,
        seq,
        html,
    };
    // Serializing a struct of strings and a number cannot fail.
    let json = serde_json::to_string(&frame).unwrap_or_default();
    // No receivers is not an error: nobody is listening yet.
    let _ = hub.frames.send(Utf8Bytes::from(json));
    Redirect::to("/").into_response()
}

async fn upgrade(State(hub): State<Hub>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| forward(socket, hub))
}

/// Until the client goes: answers a subscribe request, then forwards every frame.
async fn forward(mut socket: WebSocket, hub: Hub) {
    let mut frames = None;
    loop {
        tokio::select! {
            inbound = socket.recv() => match inbound {
                Some(Ok(Message::Text(text))) if text.as_str().contains(r#""type":"subscribe""#) => {
                    frames.get_or_insert_with(|| hub.frames.subscribe());
                    let reply = format!(r#"{{"type":"subscribed","stream":"{STREAM}"}}"#);
                    if socket.send(Message::text(reply)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            frame = next_frame(&mut frames) => match frame {
                Ok(frame) => {
                    if socket.send(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                // Frames this socket fell behind on are gone; the client counts them missing.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}

async fn next_frame(
    frames: &mut Option<broadcast::Receiver<Utf8Bytes>>,
) -> Result<Utf8Bytes, RecvError> {
    match frames {
        Some(frames) => frames.recv().await,
        None => std::future::pending().await,
    }
}

fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            _ => escaped.push(c),
        }
    }
    escaped
}
