//! [`Turbo`]: the templates, signing key, hub, backend and settings of one application.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use tera::Context;

use crate::action::StreamAction;
use crate::backend::Backend;
use crate::background::{Background, Full, Job, QueueLimits};
use crate::clock;
use crate::error::Result;
use crate::hub::{Hub, Publication};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::name::{ConnectionId, StreamName};
use crate::scope::Scope;
use crate::signing::TokenError;
use crate::templates::Templates;
use crate::web::Service;

pub(crate) static GLOBAL: OnceLock<Turbo> = OnceLock::new();

/// One application's turbo-model: templates, the key that signs stream names, the hub of
/// subscribers, the backend, and settings. Cheap to clone (shared).
///
/// Build it once at start-up and [install](crate::Builder::install) it, so that hooks
/// (which have no handle to pass around) can render and send:
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
///
/// Several can live in one process (tests, or one per application): code inside
/// [`Turbo::scope`], and requests through [`request_scope`](crate::response::request_scope)
/// with a `Turbo` as its state, send through that one instead of the installed one.
#[derive(Clone)]
pub struct Turbo {
    inner: Arc<Inner>,
}

struct Inner {
    templates: Templates,
    service: Service,
    backend: Arc<dyn Backend>,
    metrics: Arc<Metrics>,
    settings: Settings,
    /// Where async hooks run.
    background: Background,
    /// The connection async hooks get.
    database: Option<sea_orm::DatabaseConnection>,
    /// Refreshes waiting for their debounce window to close, by stream: the last wins.
    pending_refreshes: Mutex<HashMap<StreamName, PendingRefresh>>,
}

/// What a failing hook does to the database write that ran it; see
/// [`Builder::hook_errors`](crate::Builder::hook_errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HookErrors {
    /// Log the error with entity, hook and template names; the write succeeds.
    #[default]
    Log,
    /// Log it and return it to the write's caller as `DbErr::Custom`.
    Propagate,
}

/// A refresh waiting for its window to close.
struct PendingRefresh {
    publication: Publication,
    /// It stands for refreshes of several requests (or pages to leave out): none of
    /// their pages may skip it.
    merged: bool,
}

/// The `request-id` a refresh element carries, if any.
fn request_id_of(html: &str) -> Option<&str> {
    let start = html.find(" request-id=\"")? + " request-id=\"".len();
    let end = html[start..].find('"')? + start;
    Some(&html[start..end])
}

/// The refresh element without its `request-id` (attribute values are escaped: the
/// next quote ends it).
fn without_request_id(html: &str) -> String {
    match html.find(" request-id=\"") {
        Some(start) => {
            let value = start + " request-id=\"".len();
            let end = html[value..]
                .find('"')
                .map_or(html.len(), |e| value + e + 1);
            format!("{}{}", &html[..start], &html[end..])
        }
        None => html.to_owned(),
    }
}

/// What the [`Turbo`] itself is configured with (the endpoints have their own).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) hook_errors: HookErrors,
    pub(crate) refresh_debounce: Duration,
    pub(crate) background: QueueLimits,
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
    pub(crate) fn new(
        templates: Templates,
        service: Service,
        backend: Arc<dyn Backend>,
        metrics: Arc<Metrics>,
        settings: Settings,
        database: Option<sea_orm::DatabaseConnection>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                background: Background::new(settings.background),
                database,
                templates,
                service,
                backend,
                metrics,
                settings,
                pending_refreshes: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The installed instance, if [`Builder::install`](crate::Builder::install) has run.
    pub fn global() -> Option<&'static Self> {
        GLOBAL.get()
    }

    /// The `Turbo` that code here sends through: the one in [scope](Self::scope), else
    /// the installed one.
    pub fn current() -> Option<Self> {
        Scope::with(|scope| {
            scope
                .handle
                .as_ref()
                .and_then(|handle| handle.downcast_ref::<Self>())
                .cloned()
        })
        .or_else(|| Self::global().cloned())
    }

    /// Runs `future` with this `Turbo` as the one its broadcasts and hooks use (and its
    /// hook error policy), instead of the installed one. Tasks spawned inside are not
    /// affected; wrap them too: the returned future owns what it needs, so
    /// `tokio::spawn(turbo.scope(job))` works.
    ///
    /// ```
    /// # async fn run() -> turbo_model::Result<()> {
    /// let turbo = turbo_model::Turbo::builder()
    ///     .secret("0123456789abcdef0123456789abcdef")
    ///     .build()?;
    /// turbo
    ///     .scope(async {
    ///         turbo_model::stream("orders")?
    ///             .refresh()
    ///             .send() // through `turbo`, though none is installed
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
    /// ```
    pub fn scope<F: Future>(&self, future: F) -> impl Future<Output = F::Output> + use<F> {
        self.entered().run(future)
    }

    /// [`scope`](Self::scope) for synchronous code.
    pub fn scope_sync<R>(&self, f: impl FnOnce() -> R) -> R {
        self.entered().run_sync(f)
    }

    /// The current scope with this `Turbo` in it.
    pub(crate) fn entered(&self) -> Scope {
        Scope {
            handle: Some(Arc::new(self.clone())),
            ..Scope::current()
        }
    }

    /// Renders a page or component template by name, with the `turbo_subscribe` tag
    /// available. Inside [`request_scope`](crate::response::request_scope) the tag
    /// subscribes from the time the request began, else from now.
    ///
    /// # Errors
    ///
    /// [`Error::Render`](crate::Error::Render) naming the template, with Tera's report
    /// of the line.
    pub fn render(&self, template: &str, context: &Context) -> Result<String> {
        let since = Scope::with(|scope| {
            scope
                .request
                .as_ref()
                .and_then(|request| request.started)
                .map(clock::micros_of)
        });
        self.inner.templates.render(template, context, since)
    }

    /// Renders a Tera 2 component (`{% component Name(...) %}`) by name.
    ///
    /// # Errors
    ///
    /// [`Error::Render`](crate::Error::Render) naming the component.
    pub fn render_component(&self, component: &str, context: &Context) -> Result<String> {
        self.inner.templates.render_component(component, context)
    }

    /// Renders one action's `<turbo-stream>` element, its content included.
    ///
    /// # Errors
    ///
    /// [`Error::MissingTarget`](crate::Error::MissingTarget); rendering errors naming
    /// the template.
    pub fn render_action(&self, action: &StreamAction) -> Result<String> {
        self.inner.templates.render_action(action, None)
    }

    pub(crate) fn render_broadcast(
        &self,
        action: &StreamAction,
        stream: &StreamName,
    ) -> Result<String> {
        self.inner
            .templates
            .render_action(action, Some(stream.as_str()))
    }

    /// Hands a rendered broadcast to the backend.
    pub(crate) fn publish(&self, publication: Publication) -> Result<()> {
        self.inner.metrics.broadcast();
        self.inner.backend.publish(publication)
    }

    /// Publishes after `window`, unless another refresh of the same stream comes first
    /// (then that one is published at the end of the window instead). When the window
    /// holds refreshes of different requests (or that leave out different pages), the one
    /// published carries no request id and leaves no page out: each of those pages must
    /// see the others' changes. Outside a tokio runtime, publishes at once.
    pub(crate) fn publish_debounced(
        &self,
        publication: Publication,
        window: Duration,
    ) -> Result<()> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.publish(publication);
        };
        let stream = publication.stream.clone();
        let first = {
            let mut pending = self
                .inner
                .pending_refreshes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match pending.get_mut(&stream) {
                Some(waiting) => {
                    let merged = waiting.merged
                        || request_id_of(&waiting.publication.html)
                            != request_id_of(&publication.html)
                        || waiting.publication.except != publication.except;
                    waiting.publication = publication;
                    if merged {
                        waiting.merged = true;
                        waiting.publication.html =
                            Arc::from(without_request_id(&waiting.publication.html));
                        waiting.publication.except = None;
                    }
                    false
                }
                None => {
                    pending.insert(
                        stream.clone(),
                        PendingRefresh {
                            publication,
                            merged: false,
                        },
                    );
                    true
                }
            }
        };
        if first {
            let turbo = self.clone();
            runtime.spawn(async move {
                tokio::time::sleep(window).await;
                let latest = turbo
                    .inner
                    .pending_refreshes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&stream);
                if let Some(latest) = latest
                    && let Err(error) = turbo.publish(latest.publication)
                {
                    tracing::error!(%stream, %error, "debounced refresh could not be published");
                }
            });
        }
        Ok(())
    }

    /// Queues work to run after the request, in the background, with the broadcasts it
    /// sends released in queue order (see [`background`](crate::background)).
    pub(crate) fn run_later(&self, bytes: usize, scope: Scope, job: Job) -> Result<(), Full> {
        self.inner.background.submit(bytes, scope, job)
    }

    /// The database connection async hooks get, if the builder was given one.
    pub fn database(&self) -> Option<&sea_orm::DatabaseConnection> {
        self.inner.database.as_ref()
    }

    /// Waits until every async hook queued so far has run and its broadcasts are out:
    /// for tests, and before reading what they did.
    pub async fn settled(&self) {
        self.inner.background.settled().await;
    }

    pub(crate) fn count_suppressed(&self) {
        self.inner.metrics.suppressed();
    }

    pub(crate) fn refresh_debounce(&self) -> Duration {
        self.inner.settings.refresh_debounce
    }

    /// The connection a request's token names, if this server issued the token.
    pub(crate) fn connection_of(&self, token: &str) -> Option<ConnectionId> {
        self.inner.service.connection_of(token)
    }

    /// The signed token for a stream name, as the `turbo_subscribe` tag renders it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamName`](crate::Error::InvalidStreamName).
    pub fn sign(&self, stream: &str) -> Result<String> {
        Ok(self.inner.service.sign(&StreamName::new(stream)?))
    }

    /// The stream name inside a signed token.
    ///
    /// # Errors
    ///
    /// A [`TokenError`] when the token is malformed or was not signed with this key.
    pub fn verify(&self, token: &str) -> Result<StreamName, TokenError> {
        self.inner.service.verify(token)
    }

    /// This process's hub of subscribers.
    pub fn hub(&self) -> &Arc<Hub> {
        self.inner.service.hub()
    }

    /// The counters: renders, broadcasts, frames, deliveries, connections.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// Every metric in Prometheus's text format (OpenMetrics): the counters of
    /// [`metrics`](Self::metrics), kicks and refusals by reason, history bytes, the
    /// async hooks' queue, and with a broker its queue, publish latency, retries,
    /// losses and what it received. Names start `turbo_model_`.
    pub fn prometheus(&self) -> String {
        let backend = &self.inner.backend;
        let broker = backend.numbering() == crate::hub::Numbering::Broker;
        crate::exposition::encode(&crate::exposition::Sources {
            metrics: &self.inner.metrics,
            history_bytes: self.hub().history_bytes(),
            background: self.inner.background.depth(),
            backend: broker.then(|| backend.stats()),
            publish_latencies: backend.publish_latencies(),
        })
    }

    /// A route serving [`prometheus`](Self::prometheus) at `path` (`GET`), for a
    /// Prometheus server to scrape. Opt-in: merge it where only the scraper can reach it
    /// (a separate listener, or behind the application's own access rule), since it
    /// tells how busy the server is.
    ///
    /// ```no_run
    /// # async fn f(turbo: turbo_model::Turbo) -> std::io::Result<()> {
    /// // The application on :3000, the metrics on a port of their own.
    /// let metrics = tokio::net::TcpListener::bind("127.0.0.1:9100").await?;
    /// tokio::spawn(async move { axum::serve(metrics, turbo.metrics_router("/metrics")).await });
    /// # Ok(()) }
    /// ```
    pub fn metrics_router<S>(&self, path: &str) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let turbo = self.clone();
        Router::new().route(
            path,
            axum::routing::get(move || {
                let body = turbo.prometheus();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            crate::exposition::CONTENT_TYPE,
                        )],
                        body,
                    )
                }
            }),
        )
    }

    /// What a failing hook does to the database write.
    pub fn hook_errors(&self) -> HookErrors {
        self.inner.settings.hook_errors
    }

    /// The names of all loaded templates, sorted.
    pub fn template_names(&self) -> Vec<&str> {
        self.inner.templates.names()
    }

    /// The routes of the stream endpoints and the client script, ready to
    /// [`merge`](Router::merge) into the application's router.
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.inner.service.router()
    }

    /// Asks the application's authorizer ([`Builder::authorize`](crate::Builder::authorize))
    /// again about the live subscriptions `which` picks: the ones it now refuses end with
    /// the `forbidden` error (WebSocket) or the end of the event stream (SSE), and their
    /// pages stop receiving the stream. Returns how many connections were asked; the
    /// answers come as the authorizer gives them, without stalling the connections.
    /// Does nothing without an authorizer.
    ///
    /// ```no_run
    /// # fn f(turbo: &turbo_model::Turbo) -> turbo_model::Result<()> {
    /// use turbo_model::web::Subscriptions;
    /// // The user was removed from room 7: its pages there stop updating.
    /// turbo.reauthorize(Subscriptions::Stream(turbo_model::StreamName::new("room:7")?));
    /// # Ok(()) }
    /// ```
    pub fn reauthorize(&self, which: crate::web::Subscriptions) -> usize {
        self.inner.service.reauthorize(&which)
    }

    /// Stops taking stream connections, lets the queued async hooks finish (within
    /// `grace`), and closes the open connections: each writes what is
    /// queued for it (for up to 2 seconds), then closes with code 1012 so that its client
    /// reconnects, to this process if it comes back or to another. Waits until every
    /// connection has closed or `grace` has passed, then stops the backend's tasks;
    /// returns how many connections were still open.
    ///
    /// Call it when the process is told to stop (SIGTERM, Ctrl-C), before the HTTP
    /// server's own graceful shutdown: upgraded connections are not the HTTP server's
    /// to wait for. [`serve`](Self::serve) does both.
    pub async fn shutdown(&self, grace: Duration) -> u64 {
        let deadline = Instant::now() + grace;
        // What async hooks still have to send goes out to the connections still open.
        if !self.inner.background.drain(grace).await {
            tracing::warn!("async hooks still queued after the shutdown grace period");
        }
        self.inner.service.begin_shutdown();
        let open = loop {
            let open = self.metrics().connections;
            if open == 0 || Instant::now() >= deadline {
                break open;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if open > 0 {
            tracing::warn!(
                open,
                "connections still open after the shutdown grace period"
            );
        }
        self.inner.backend.shutdown().await;
        open
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.service.is_shutting_down()
    }

    /// Serves `app` on `listener` until Ctrl-C or SIGTERM, then stops gracefully: the
    /// open stream connections flush what they have queued and are told to reconnect (to
    /// this process when it is back, or to another), within `grace` (see
    /// [`shutdown`](Self::shutdown)); then the HTTP server waits for the requests in
    /// flight. It returns at most `grace` plus the write timeout plus a second after the
    /// signal, whatever the clients do.
    ///
    /// Connections are accepted through [`web::Listener`](crate::web::Listener), so a
    /// client that stops reading is dropped after the write timeout, and handlers can
    /// extract the client's address as `ConnectInfo<web::PeerAddr>`.
    ///
    /// ```no_run
    /// # async fn run(app: axum::Router, turbo: turbo_model::Turbo) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// turbo.serve(listener, app, std::time::Duration::from_secs(5)).await
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The HTTP server's I/O error.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        app: Router,
        grace: Duration,
    ) -> std::io::Result<()> {
        self.serve_until(listener, app, grace, crate::web::stop_requested())
            .await
    }

    /// As [`serve`](Self::serve), stopping when `stop` resolves instead of on a signal.
    ///
    /// # Errors
    ///
    /// The HTTP server's I/O error.
    pub async fn serve_until(
        &self,
        listener: tokio::net::TcpListener,
        app: Router,
        grace: Duration,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let turbo = self.clone();
        let (stopping, mut stopped) = tokio::sync::watch::channel(false);
        let write_timeout = self.inner.service.settings().write_timeout;
        let listener = crate::web::Listener::new(listener, write_timeout);
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<crate::web::PeerAddr>(),
        )
        .with_graceful_shutdown(async move {
            stop.await;
            stopping.send_replace(true);
            tracing::info!("stopping: closing live connections");
            turbo.shutdown(grace).await;
        });
        // The server waits for every connection to end; a client that never lets one end
        // must not keep the process alive: past the grace period and the write timeout,
        // what is left is dropped.
        let bound = grace + write_timeout + Duration::from_secs(1);
        tokio::select! {
            served = server.into_future() => served,
            () = async {
                let _ = stopped.wait_for(|stopping| *stopping).await;
                tokio::time::sleep(bound).await;
            } => {
                tracing::warn!(?bound, "connections still open after the shutdown bound; dropping them");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_refresh_drops_the_request_id() {
        let html =
            r#"<turbo-stream action="refresh" method="morph" request-id="r-1"></turbo-stream>"#;
        assert_eq!(request_id_of(html), Some("r-1"));
        assert_eq!(
            without_request_id(html),
            r#"<turbo-stream action="refresh" method="morph"></turbo-stream>"#
        );
        let plain = r#"<turbo-stream action="refresh"></turbo-stream>"#;
        assert_eq!(
            (request_id_of(plain), without_request_id(plain).as_str()),
            (None, plain)
        );
    }
}
