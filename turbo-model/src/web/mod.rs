//! The axum side: the WebSocket endpoint and the client script.
//!
//! [`Turbo::router`] mounts, below the configured path (default `/turbo-model`):
//!
//! | route | what |
//! |---|---|
//! | `GET /turbo-model/ws` | the WebSocket endpoint, one connection per page ([`protocol`]) |
//! | `GET /turbo-model/client.js` | the `<turbo-model-stream-source>` element |
//!
//! # Limits
//!
//! Inbound messages and frames over 64 KiB close the connection with code 1009. Each
//! connection may hold [`Builder::max_subscriptions`] streams (default 100) and queue
//! [`Builder::queue_capacity`] frames (default 256) before it is closed as too slow
//! (code 1013; the client reconnects).
//!
//! # Memory per connection
//!
//! tungstenite allocates its read buffer up front (128 KiB by default, about 138 KB per
//! idle connection in all). The endpoint asks for a 4 KiB read buffer and writes each
//! frame straight through, which keeps an idle connection near 7 KB; larger messages
//! still work, the buffer grows for them.
//!
//! [`Builder::max_subscriptions`]: crate::Builder::max_subscriptions
//! [`Builder::queue_capacity`]: crate::Builder::queue_capacity

pub mod protocol;
mod socket;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::turbo::Turbo;

/// The client element, served at `{path}/client.js`.
pub const CLIENT_JS: &str = include_str!("client.js");

/// tungstenite's read buffer per connection.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes a connection may have waiting in tungstenite's write buffer before a write
/// fails; a stalled client is closed long before this by its queue limit.
const MAX_WRITE_BUFFER: usize = 1024 * 1024;

impl Turbo {
    /// The routes of the WebSocket endpoint and the client script, ready to
    /// [`merge`](Router::merge) into the application's router.
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let path = &self.settings().path;
        Router::new()
            .route(&format!("{path}/ws"), get(upgrade))
            .route(&format!("{path}/client.js"), get(client_js))
            .with_state(self.clone())
    }
}

async fn upgrade(State(turbo): State<Turbo>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(protocol::MAX_INBOUND_BYTES)
        .max_frame_size(protocol::MAX_INBOUND_BYTES)
        .on_upgrade(move |socket| socket::serve(turbo, socket))
}

async fn client_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CLIENT_JS,
    )
}
