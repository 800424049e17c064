//! The axum side: the WebSocket and Server-Sent Events endpoints and the client script.
//!
//! [`Turbo::router`](crate::Turbo::router) mounts, below the configured path (default `/turbo-model`):
//!
//! | route | what |
//! |---|---|
//! | `GET /turbo-model/ws` | the WebSocket endpoint, one connection per page ([`protocol`]) |
//! | `GET /turbo-model/sse?stream=<token>` | one stream as Server-Sent Events, for Turbo's own `<turbo-stream-source>` |
//! | `GET /turbo-model/client-<hash>.js` | the `<turbo-model-stream-source>` element, cached for good (the name changes with its content) |
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
//! the client reconnects and resumes). A write that makes no progress for the write
//! timeout ([`Builder::write_timeout`], default 10 s) drops the connection; so does a
//! close frame the client does not take. Text messages must be UTF-8 (else 1007).
//!
//! Stream connections are limited in all (the open-file limit less 512) and per client
//! address (1000), [`Builder::max_connections`]; past either, `503` with `Retry-After`.
//!
//! # Shutdown
//!
//! [`Turbo::shutdown`](crate::Turbo::shutdown) stops taking stream connections (`503`,
//! `Retry-After: 1` for WebSocket upgrades, which the client element retries; an empty
//! event stream with `retry:` for SSE, which `EventSource` follows), flushes what the
//! open ones have queued and closes them with 1012. [`Turbo::serve`](crate::Turbo::serve)
//! returns within the grace period, the write timeout and a second, whatever the clients
//! do.
//!
//! # Memory per connection
//!
//! tungstenite allocates its read buffer up front (128 KiB by default, about 138 KB per
//! idle connection in all). The endpoint asks for a 1 KiB read buffer, which keeps an
//! idle connection near 7 KB; larger messages still work, the buffer grows for them.
//! Nothing is buffered per connection for writing: a broadcast's WebSocket frame is
//! encoded once and the same bytes are written to every socket, several queued frames
//! in one write.
//!
//! [`Builder::history`]: crate::Builder::history
//! [`Builder::max_subscriptions`]: crate::Builder::max_subscriptions
//! [`Builder::inbound_rate`]: crate::Builder::inbound_rate
//! [`Builder::queue`]: crate::Builder::queue
//! [`Builder::write_timeout`]: crate::Builder::write_timeout
//! [`Builder::max_connections`]: crate::Builder::max_connections

mod limits;
mod listener;
mod origin;
pub mod protocol;
mod recheck;
pub(crate) mod socket;
mod sse;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use limits::Slot;
pub(crate) use limits::{ConnectionLimits, open_file_limit};
pub use listener::{DeadlineIo, Listener, PeerAddr, SharedTcp};
pub use origin::{AllowedOrigins, reject_cross_site};
pub use recheck::Subscriptions;
use recheck::{Registration, Registry};
pub(crate) use socket::InboundRate;
use tungstenite::protocol::WebSocketConfig;

use crate::backend::{Backend, Resume};
use crate::hub::{Connection, Hub, Since};
use crate::metrics::Metrics;
use crate::name::{ConnectionId, StreamName};
use crate::signing::{Signer, TokenError};

/// Default limit on streams per connection.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 100;
/// Default mount point of the router.
pub const DEFAULT_PATH: &str = "/turbo-model";
/// Default interval of heartbeats on stream connections.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(25);
/// Default bound on a write to a client, and on closing a connection.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit on stream connections (WebSocket and SSE) from one client address.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 1000;
/// The environment variable that sets the limit on stream connections per process.
pub const MAX_CONNECTIONS_ENV: &str = "TURBO_MODEL_MAX_CONNECTIONS";
/// The environment variable that sets the limit on stream connections per address.
pub const MAX_CONNECTIONS_PER_ADDRESS_ENV: &str = "TURBO_MODEL_MAX_CONNECTIONS_PER_ADDRESS";

/// The client element, served at `{path}/client-<hash>.js`.
pub const CLIENT_JS: &str = include_str!("client.js");

/// tungstenite's read buffer per connection: allocated up front, and zeroed on every
/// read. Clients send small requests; larger ones (up to 64 KiB) still arrive whole.
const READ_BUFFER: usize = 1024;
/// Bytes tungstenite may hold to write. It writes only the protocol's own replies (see
/// `socket::wire`), which are bounded far below this.
const MAX_WRITE_BUFFER: usize = 64 * 1024;

/// Why the application refused a subscription: the reason is sent to the client (in the
/// `forbidden` error) and logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    reason: String,
}

impl Refusal {
    /// A refusal for this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Refusal {}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Self::new(reason)
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        Self::new(reason)
    }
}

/// Decides whether a stream connection may subscribe to a stream; see
/// [`Builder::authorize`](crate::Builder::authorize).
pub(crate) type Authorizer = Arc<
    dyn Fn(Arc<Parts>, StreamName) -> Pin<Box<dyn Future<Output = Result<(), Refusal>> + Send>>
        + Send
        + Sync,
>;

/// The endpoints' limits and paths, fixed when the [`Turbo`](crate::Turbo) is built.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) path: String,
    pub(crate) max_subscriptions: usize,
    pub(crate) heartbeat: Duration,
    pub(crate) inbound_rate: InboundRate,
    pub(crate) origins: AllowedOrigins,
    pub(crate) write_timeout: Duration,
}

/// What the endpoints serve from: this process's hub and backend, the key that signs
/// stream names and connections, the settings, and the shutdown signal. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Service {
    inner: Arc<ServiceInner>,
}

struct ServiceInner {
    hub: Arc<Hub>,
    backend: Arc<dyn Backend>,
    signer: Signer,
    settings: Settings,
    authorizer: Option<Authorizer>,
    metrics: Arc<Metrics>,
    shutdown: tokio::sync::watch::Sender<bool>,
    limits: ConnectionLimits,
    rechecks: Arc<Registry>,
}

impl Service {
    pub(crate) fn new(
        hub: Arc<Hub>,
        backend: Arc<dyn Backend>,
        signer: Signer,
        settings: Settings,
        authorizer: Option<Authorizer>,
        metrics: Arc<Metrics>,
        limits: ConnectionLimits,
    ) -> Self {
        Self {
            inner: Arc::new(ServiceInner {
                hub,
                backend,
                signer,
                settings,
                authorizer,
                metrics,
                shutdown: tokio::sync::watch::Sender::new(false),
                limits,
                rechecks: Arc::default(),
            }),
        }
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// The counters the endpoints update.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub(crate) fn sign(&self, stream: &StreamName) -> String {
        self.inner.signer.sign(stream)
    }

    pub(crate) fn verify(&self, token: &str) -> Result<StreamName, TokenError> {
        self.inner.signer.verify(token)
    }

    /// The token that names connection `id` in its page's requests.
    pub(crate) fn connection_token(&self, id: ConnectionId) -> String {
        self.inner.signer.sign_connection(id)
    }

    /// The connection a request's token names, if this server issued the token.
    pub(crate) fn connection_of(&self, token: &str) -> Option<ConnectionId> {
        self.inner.signer.verify_connection(token)
    }

    /// Whether subscriptions are checked by an authorization callback (which needs the
    /// request that opened each connection).
    pub(crate) fn authorizes(&self) -> bool {
        self.inner.authorizer.is_some()
    }

    /// Asks the authorization callback, if any, whether the connection opened by
    /// `request` may subscribe to `stream`.
    pub(crate) async fn authorize(
        &self,
        request: Option<&Arc<Parts>>,
        stream: &StreamName,
    ) -> Result<(), Refusal> {
        match (&self.inner.authorizer, request) {
            (None, _) => Ok(()),
            (Some(authorize), Some(request)) => {
                authorize(Arc::clone(request), stream.clone()).await
            }
            (Some(_), None) => Err(Refusal::new(
                "the request that opened the connection was not kept",
            )),
        }
    }

    /// Subscribes `connection` to `stream` from `since`; when the hub hands the question
    /// over to the broker (it has not learned the stream, or keeps too little), asks the
    /// broker, and drops the queued frames the broker's replay already covers.
    pub(crate) async fn subscribe(
        &self,
        connection: &mut Connection,
        stream: &StreamName,
        since: Option<Since>,
    ) -> crate::error::Result<Resume> {
        let subscribed = connection.subscribe(stream, since);
        if !subscribed.ask_broker {
            return Ok(Resume::new(
                subscribed.position,
                subscribed.replay,
                subscribed.gap,
            ));
        }
        match self.resume(stream.clone(), since).await {
            Ok(mut resume) => {
                self.count_resume(&resume);
                let Some(held) = connection.answered(stream, resume.position) else {
                    connection.unsubscribe(stream);
                    return Err(crate::error::Error::backend(
                        "resume",
                        stream.as_str(),
                        "the stream moved to another epoch while subscribing",
                    ));
                };
                resume.replay.extend(held);
                Ok(resume)
            }
            Err(error) => {
                connection.unsubscribe(stream);
                Err(error)
            }
        }
    }

    /// The broker's answer for a subscription the hub handed over (see
    /// [`subscribe`](Self::subscribe)), as a future that borrows nothing.
    pub(crate) fn resume(
        &self,
        stream: StreamName,
        since: Option<Since>,
    ) -> crate::backend::BoxFuture<crate::error::Result<Resume>> {
        self.inner.backend.resume(stream, since)
    }

    /// Counts a broker's answer in the metrics.
    pub(crate) fn count_resume(&self, resume: &Resume) {
        if resume.gap.is_some() {
            self.inner.metrics.gap();
        } else {
            self.inner.metrics.replayed(resume.replay.len());
        }
    }

    /// Makes a connection one that [`reauthorize`](Self::reauthorize) can ask, until the
    /// returned guard drops.
    pub(crate) fn register(&self, id: ConnectionId, request: Option<Arc<Parts>>) -> Registration {
        self.inner.rechecks.register(id, request)
    }

    /// Asks the open connections `which` picks to check their subscriptions with the
    /// authorizer again; returns how many were asked.
    pub(crate) fn reauthorize(&self, which: &Subscriptions) -> usize {
        if self.authorizes() {
            self.inner.rechecks.ask(which)
        } else {
            0
        }
    }

    /// Stops taking stream connections and tells the open ones to close.
    pub(crate) fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        self.inner.rechecks.close_all();
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    pub(crate) fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// The routes of the stream endpoints and the client script.
    pub(crate) fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let path = &self.inner.settings.path;
        Router::new()
            .route(&format!("{path}/ws"), get(upgrade))
            .route(&format!("{path}/sse"), get(sse::events))
            .route(&client_path(path), get(client_js))
            .with_state(self.clone())
    }
}

/// Where the client script is served below `path`: its name changes with its content,
/// so that browsers may keep it for good.
pub(crate) fn client_path(path: &str) -> String {
    format!("{path}/client-{:08x}.js", client_hash())
}

/// FNV-1a of the client script, 32 bits: enough to tell its versions apart.
fn client_hash() -> u32 {
    CLIENT_JS.bytes().fold(0x811c_9dc5, |hash, b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Whether a new stream connection may start: not from another site, not past the
/// connection limits. `Ok` holds its place among the open connections; `Err` is the
/// refusal to send instead. (Shutting down is each transport's own answer.)
fn admit(service: &Service, request: &Parts) -> Result<Slot, Box<Response>> {
    let headers = &request.headers;
    if !service.settings().origins.allows(headers) {
        tracing::warn!(
            origin = ?headers.get(header::ORIGIN),
            host = ?headers.get(header::HOST),
            "stream connection from another site refused"
        );
        service.metrics().refused("origin");
        return Err(Box::new(
            (StatusCode::FORBIDDEN, "origin not allowed").into_response(),
        ));
    }
    service
        .inner
        .limits
        .admit(limits::peer_of(request))
        .map_err(|refused| {
            tracing::warn!(%refused, "stream connection refused");
            service.metrics().refused(match refused {
                limits::Refused::Total(_) => "connection_limit",
                limits::Refused::Address(..) => "address_limit",
            });
            Box::new(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "5")],
                    refused.to_string(),
                )
                    .into_response(),
            )
        })
}

/// The answer to a stream connection while shutting down: come back in a second (to
/// this process restarted, or another).
fn shutting_down() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        "shutting down",
    )
        .into_response()
}

async fn upgrade(State(service): State<Service>, mut request: Parts) -> Response {
    let handshake = match socket::Handshake::check(&mut request) {
        Ok(handshake) => handshake,
        Err(refused) => return refused.into_response(),
    };
    if service.is_shutting_down() {
        service.metrics().refused("shutting_down");
        return shutting_down();
    }
    let slot = match admit(&service, &request) {
        Ok(slot) => slot,
        Err(refused) => return *refused,
    };
    // hyper's header values and URI are slices of its read buffer (16 KiB): a kept
    // request keeps it alive. Keep a compact copy, and only for an authorization callback.
    let request = service.authorizes().then(|| Arc::new(compact(&request)));
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(protocol::MAX_INBOUND_BYTES))
        .max_frame_size(Some(protocol::MAX_INBOUND_BYTES));
    handshake.accept(config, move |socket| {
        socket::serve(service, Box::new(socket), request, slot)
    })
}

/// A copy of the request's parts that owns its bytes (see [`upgrade`]).
fn compact(request: &Parts) -> Parts {
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    parts.method = request.method.clone();
    parts.version = request.version;
    parts.uri = request
        .uri
        .to_string()
        .parse()
        .unwrap_or_else(|_| request.uri.clone());
    // The handshake's own headers are spent once the socket is open: an authorizer has
    // no use for them, and each costs every connection its copy.
    let handshake = [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_EXTENSIONS,
    ];
    let kept = |(name, _): &(&header::HeaderName, _)| !handshake.contains(name);
    parts
        .headers
        .reserve(request.headers.iter().filter(kept).count());
    for (name, value) in request.headers.iter().filter(kept) {
        if let Ok(value) = axum::http::HeaderValue::from_bytes(value.as_bytes()) {
            parts.headers.append(name.clone(), value);
        }
    }
    parts.extensions = request.extensions.clone();
    parts
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

/// Resolves once the endpoints are shutting down (or gone).
async fn closing(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closing| *closing).await;
}

async fn client_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        CLIENT_JS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_path_changes_with_the_script() {
        let path = client_path("/turbo-model");
        assert!(path.starts_with("/turbo-model/client-"), "{path}");
        assert!(path.ends_with(".js"), "{path}");
        assert_eq!(path.len(), "/turbo-model/client-".len() + 8 + 3);
        assert_eq!(path, client_path("/turbo-model"));
    }

    #[test]
    fn a_kept_request_has_everything_but_the_handshake_headers() {
        let request = axum::http::Request::builder()
            .uri("/turbo-model/ws?x=1")
            .header(header::HOST, "example.com")
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_EXTENSIONS, "permessage-deflate")
            .header(header::SEC_WEBSOCKET_PROTOCOL, "chat")
            .header(header::COOKIE, "a=1")
            .header(header::COOKIE, "b=2")
            .extension(42_u32)
            .body(())
            .expect("request");
        let (parts, ()) = request.into_parts();
        let kept = compact(&parts);
        let names: Vec<&str> = kept
            .headers
            .keys()
            .map(header::HeaderName::as_str)
            .collect();
        assert_eq!(names, ["host", "sec-websocket-protocol", "cookie"]);
        let cookies: Vec<_> = kept.headers.get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(kept.uri, "/turbo-model/ws?x=1");
        assert_eq!(kept.extensions.get::<u32>(), Some(&42));
    }
}
