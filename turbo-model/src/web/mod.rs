//! The axum side: the WebSocket and Server-Sent Events endpoints and the client script.
//!
//! [`Turbo::router`] mounts, below the configured path (default `/turbo-model`):
//!
//! | route | what |
//! |---|---|
//! | `GET /turbo-model/ws` | the WebSocket endpoint, one connection per page ([`protocol`]) |
//! | `GET /turbo-model/sse?stream=<token>` | one stream as Server-Sent Events, for Turbo's own `<turbo-stream-source>` |
//! | `GET /turbo-model/client.js` | the `<turbo-model-stream-source>` element |
//!
//! # Delivery guarantee
//!
//! On both transports, frames of a stream arrive in order; after a reconnect the server
//! replays what the client missed, or, when that is no longer kept, tells it so and the
//! page refreshes itself: a client never silently misses a broadcast. What is kept: the
//! last 100 frames per stream, for 5 minutes ([`Builder::history`]).
//!
//! # Limits
//!
//! Upgrades from another site's pages are refused with 403 ([`AllowedOrigins`]; default:
//! the same host). Inbound messages over 64 KiB close the connection with code 1009. A
//! connection may hold [`Builder::max_subscriptions`] streams (default 100), send
//! [`Builder::inbound_rate`] requests per second (default 20, bursts of 120), and queue
//! 256 frames or 1 MiB ([`Builder::queue`]) before it is closed as too slow (code 1013;
//! the client reconnects and resumes).
//!
//! # Memory per connection
//!
//! tungstenite allocates its read buffer up front (128 KiB by default, about 138 KB per
//! idle connection in all). The endpoint asks for a 4 KiB read buffer and writes each
//! frame straight through, which keeps an idle connection near 7 KB; larger messages
//! still work, the buffer grows for them.
//!
//! [`Builder::history`]: crate::Builder::history
//! [`Builder::max_subscriptions`]: crate::Builder::max_subscriptions
//! [`Builder::inbound_rate`]: crate::Builder::inbound_rate
//! [`Builder::queue`]: crate::Builder::queue

mod origin;
pub mod protocol;
mod response;
pub(crate) mod socket;
mod sse;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use origin::{AllowedOrigins, reject_cross_site};
pub use response::{
    AcceptsTurboStream, CONNECTION_HEADER, REQUEST_ID_HEADER, TURBO_STREAM_MIME, TurboStream,
    accepts_turbo_stream, request_scope, turbo_stream,
};

use crate::turbo::Turbo;

/// The client element, served at `{path}/client.js`.
pub const CLIENT_JS: &str = include_str!("client.js");

/// tungstenite's read buffer per connection: allocated up front, and zeroed on every
/// read. Clients send small requests; larger ones (up to 64 KiB) still arrive whole.
const READ_BUFFER: usize = 1024;
/// Bytes a connection may have waiting in tungstenite's write buffer before a write
/// fails; a stalled client is closed long before this by its queue limit.
const MAX_WRITE_BUFFER: usize = 1024 * 1024;

impl Turbo {
    /// The routes of the stream endpoints and the client script, ready to
    /// [`merge`](Router::merge) into the application's router.
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let path = &self.settings().path;
        Router::new()
            .route(&format!("{path}/ws"), get(upgrade))
            .route(&format!("{path}/sse"), get(sse::events))
            .route(&format!("{path}/client.js"), get(client_js))
            .with_state(self.clone())
    }
}

/// Whether a new stream connection may start: not while shutting down, not from
/// another site. `Some` is the refusal to send instead.
fn refusal(turbo: &Turbo, headers: &HeaderMap) -> Option<Response> {
    if turbo.is_shutting_down() {
        return Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "shutting down",
            )
                .into_response(),
        );
    }
    if !turbo.settings().origins.allows(headers) {
        tracing::warn!(
            origin = ?headers.get(header::ORIGIN),
            host = ?headers.get(header::HOST),
            "stream connection from another site refused"
        );
        return Some((StatusCode::FORBIDDEN, "origin not allowed").into_response());
    }
    None
}

async fn upgrade(
    State(turbo): State<Turbo>,
    upgrade: WebSocketUpgrade,
    request: axum::http::request::Parts,
) -> Response {
    if let Some(refused) = refusal(&turbo, &request.headers) {
        return refused;
    }
    // hyper's header values and URI are slices of its read buffer (16 KiB): a kept
    // request keeps it alive. Keep a compact copy, and only for an authorization callback.
    let request = turbo
        .authorizes()
        .then(|| std::sync::Arc::new(compact(&request)));
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(protocol::MAX_INBOUND_BYTES)
        .max_frame_size(protocol::MAX_INBOUND_BYTES)
        .on_upgrade(move |socket| socket::serve(turbo, socket, request))
}

/// A copy of the request's parts that owns its bytes (see [`upgrade`]).
fn compact(request: &axum::http::request::Parts) -> axum::http::request::Parts {
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    parts.method = request.method.clone();
    parts.version = request.version;
    parts.uri = request
        .uri
        .to_string()
        .parse()
        .unwrap_or_else(|_| request.uri.clone());
    for (name, value) in &request.headers {
        if let Ok(value) = axum::http::HeaderValue::from_bytes(value.as_bytes()) {
            parts.headers.append(name.clone(), value);
        }
    }
    parts.extensions = request.extensions.clone();
    parts
}

/// Subscribes `connection` to `stream`, resuming after `since`; when the hub hands the
/// question over to the broker (it has not learned the stream, or keeps too little),
/// asks the broker, and drops the queued frames the broker's replay already covers.
pub(crate) async fn subscribe(
    turbo: &Turbo,
    connection: &mut crate::hub::Connection,
    stream: &crate::StreamName,
    since: Option<crate::hub::Position>,
) -> crate::Result<crate::backend::Resume> {
    let subscribed = connection.subscribe(stream, since);
    if !subscribed.ask_broker {
        return Ok(crate::backend::Resume::new(
            subscribed.position,
            subscribed.replay,
            subscribed.gap,
        ));
    }
    match turbo.resume_from_broker(stream, since).await {
        Ok(resume) => {
            connection.sent_up_to(stream, resume.position.seq);
            Ok(resume)
        }
        Err(error) => {
            connection.unsubscribe(stream);
            Err(error)
        }
    }
}

/// Serves `app` on `listener` until Ctrl-C or SIGTERM, then stops gracefully: the open
/// stream connections flush what they have queued and are told to reconnect (to this
/// process when it is back, or to another), within `grace` (see [`Turbo::shutdown`]);
/// then the HTTP server waits for the requests in flight.
///
/// ```no_run
/// # async fn run(app: axum::Router, turbo: turbo_model::Turbo) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// turbo_model::web::serve(listener, app, &turbo, std::time::Duration::from_secs(5)).await
/// # }
/// ```
///
/// # Errors
///
/// The HTTP server's I/O error.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    turbo: &Turbo,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let turbo = turbo.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop_requested().await;
            tracing::info!("stopping: closing live connections");
            turbo.shutdown(grace).await;
        })
        .await
}

/// Resolves on Ctrl-C, or on SIGTERM from a process manager.
pub async fn stop_requested() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Resolves once the [`Turbo`] is shutting down (or gone).
async fn closing(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closing| *closing).await;
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
