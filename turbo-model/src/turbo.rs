//! [`Turbo`]: the templates, signing key, hub and settings of one application.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tera::Context;

use crate::backend::{Backend, Publication};
use crate::builder::Builder;
use crate::dispatch::{Debouncer, Outgoing};
use crate::error::Result;
use crate::hooks::HookErrors;
use crate::hub::Hub;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::signing::{Signer, TokenError};
use crate::stream::StreamName;
use crate::templates::Templates;
use axum::http::request::Parts;

use crate::web::AllowedOrigins;
use crate::web::socket::InboundRate;

pub(crate) static GLOBAL: OnceLock<Turbo> = OnceLock::new();

/// Decides whether a stream connection may subscribe to a stream; see
/// [`Builder::authorize`].
pub(crate) type Authorizer = Arc<
    dyn Fn(Arc<Parts>, StreamName) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// The environment variable holding the key that signs stream names.
pub const SECRET_ENV: &str = "TURBO_MODEL_SECRET";

/// One application's turbo-model: templates, the key that signs stream names, the hub of
/// subscribers, and settings. Cheap to clone (shared).
///
/// Build it once at start-up and [install](Builder::install) it, so that hooks (which
/// have no handle to pass around) can render and send:
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let turbo = turbo_model::Turbo::builder()
///     .templates(concat!(env!("CARGO_MANIFEST_DIR"), "/templates"))
///     .install()?;
/// let app: axum::Router = axum::Router::new()
///     // .route("/", get(index)) ...
///     .merge(turbo.router());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Turbo {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) templates: Templates,
    pub(crate) signer: Signer,
    pub(crate) hub: Arc<Hub>,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) settings: Settings,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    pub(crate) debouncer: Debouncer,
    pub(crate) authorizer: Option<Authorizer>,
}

/// Limits and paths, fixed when the [`Turbo`] is built.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) hook_errors: HookErrors,
    pub(crate) path: String,
    pub(crate) max_subscriptions: usize,
    pub(crate) heartbeat: Duration,
    pub(crate) inbound_rate: InboundRate,
    pub(crate) origins: AllowedOrigins,
    pub(crate) refresh_debounce: Duration,
}

impl std::fmt::Debug for Turbo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turbo")
            .field("templates", &self.inner.templates.names())
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Turbo {
    /// Starts configuring a [`Turbo`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The installed instance, if [`Builder::install`] has run.
    pub fn global() -> Option<&'static Self> {
        GLOBAL.get()
    }

    /// Renders a page or component template by name, with the `turbo_subscribe` tag
    /// available.
    ///
    /// # Errors
    ///
    /// [`Error::Render`](crate::Error::Render) naming the template, with Tera's report
    /// of the line.
    pub fn render(&self, template: &str, context: &Context) -> Result<String> {
        self.inner.templates.render(template, context)
    }

    /// Renders a Tera 2 component (`{% component Name(...) %}`) by name.
    ///
    /// # Errors
    ///
    /// [`Error::Render`](crate::Error::Render) naming the component.
    pub fn render_component(&self, component: &str, context: &Context) -> Result<String> {
        self.inner.templates.render_component(component, context)
    }

    /// Publishes an already rendered `<turbo-stream>` element to every subscriber of
    /// `stream`. [`Broadcast::send`](crate::Broadcast::send) renders and calls this.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamName`](crate::Error::InvalidStreamName);
    /// [`Error::Backend`](crate::Error::Backend) from a broker backend.
    pub fn publish(&self, stream: &str, html: String) -> Result<()> {
        let stream = StreamName::new(stream)?;
        self.inner.metrics.broadcast();
        self.inner.backend.publish(
            &self.inner.hub,
            Publication {
                stream: &stream,
                html: &html,
                except: None,
            },
        )
    }

    pub(crate) fn publish_outgoing(&self, outgoing: Outgoing) -> Result<()> {
        self.inner.metrics.broadcast();
        self.inner.backend.publish(
            &self.inner.hub,
            Publication {
                stream: &outgoing.stream,
                html: &outgoing.html,
                except: outgoing.exclude,
            },
        )
    }

    /// The token that names connection `id` in its page's requests.
    pub(crate) fn connection_token(&self, id: crate::hub::ConnectionId) -> String {
        self.inner.signer.sign_connection(id.get())
    }

    /// The connection a request's token names, if this server issued the token.
    pub(crate) fn connection_of(&self, token: &str) -> Option<crate::hub::ConnectionId> {
        self.inner
            .signer
            .verify_connection(token)
            .map(crate::hub::ConnectionId::new)
    }

    /// Asks the [authorization callback](Builder::authorize), if any, whether the
    /// connection opened by `request` may subscribe to `stream`.
    pub(crate) async fn authorize(
        &self,
        request: Option<&Arc<Parts>>,
        stream: &StreamName,
    ) -> Result<(), String> {
        match (&self.inner.authorizer, request) {
            (None, _) => Ok(()),
            (Some(authorize), Some(request)) => {
                authorize(Arc::clone(request), stream.clone()).await
            }
            (Some(_), None) => Err("the request that opened the connection was not kept".into()),
        }
    }

    /// Whether subscriptions are checked by an authorization callback (which needs the
    /// request that opened each connection).
    pub(crate) fn authorizes(&self) -> bool {
        self.inner.authorizer.is_some()
    }

    pub(crate) fn count_suppressed(&self) {
        self.inner.metrics.suppressed();
    }

    pub(crate) fn refresh_debounce(&self) -> Duration {
        self.inner.settings.refresh_debounce
    }

    pub(crate) fn debouncer(&self) -> &Debouncer {
        &self.inner.debouncer
    }

    /// The signed token for a stream name, as the `turbo_subscribe` tag renders it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamName`](crate::Error::InvalidStreamName).
    pub fn sign(&self, stream: &str) -> Result<String> {
        Ok(self.inner.signer.sign(&StreamName::new(stream)?))
    }

    /// The stream name inside a signed token.
    ///
    /// # Errors
    ///
    /// A [`TokenError`] when the token is malformed or was not signed with this key.
    pub fn verify(&self, token: &str) -> Result<StreamName, TokenError> {
        self.inner.signer.verify(token)
    }

    /// Where `stream` was when the current request began (now, outside
    /// [`request_scope`](crate::web::request_scope)), as the `turbo_subscribe` tag
    /// renders it; `None` when a broker cannot say.
    pub fn render_position(&self, stream: &StreamName) -> Option<crate::hub::Position> {
        let began = crate::dispatch::request_context().and_then(|c| c.started);
        self.inner
            .backend
            .render_position(&self.inner.hub, stream, began)
    }

    /// Asks the backend (a broker) for a subscription the hub handed over.
    pub(crate) async fn resume_from_broker(
        &self,
        stream: &StreamName,
        since: Option<crate::hub::Position>,
    ) -> Result<crate::backend::Resume> {
        let resume = self.inner.backend.resume(stream.clone(), since).await?;
        self.inner.hub.learn(stream, resume.position);
        Ok(resume)
    }

    /// This process's hub of subscribers.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// The counters: renders, broadcasts, frames, deliveries, connections.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// What a failing hook does to the database write.
    pub fn hook_errors(&self) -> HookErrors {
        self.inner.settings.hook_errors
    }

    /// The names of all loaded templates, sorted.
    pub fn template_names(&self) -> Vec<&str> {
        self.inner.templates.names()
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Stops taking stream connections and closes the open ones: each writes what is
    /// queued for it (for up to 2 seconds), then closes with code 1012 so that its client
    /// reconnects, to this process if it comes back or to another. Waits until every
    /// connection has closed or `grace` has passed; returns how many were still open.
    ///
    /// Call it when the process is told to stop (SIGTERM, Ctrl-C), before the HTTP
    /// server's own graceful shutdown: upgraded connections are not the HTTP server's
    /// to wait for.
    pub async fn shutdown(&self, grace: Duration) -> u64 {
        self.inner.shutdown.send_replace(true);
        let deadline = Instant::now() + grace;
        loop {
            let open = self.metrics().connections;
            if open == 0 || Instant::now() >= deadline {
                if open > 0 {
                    tracing::warn!(
                        open,
                        "connections still open after the shutdown grace period"
                    );
                }
                return open;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    pub(crate) fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }
}
