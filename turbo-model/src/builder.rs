//! [`Builder`]: how a [`Turbo`] is configured and made.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::request::Parts;

use crate::backend::{Backend, InProcess, REDIS_ENV};
use crate::background::QueueLimits;
use crate::error::{Error, Result};
use crate::hub::{Feed, Hub, HubSettings};
use crate::metrics::Metrics;
use crate::name::StreamName;
use crate::signing::{PREVIOUS_SECRETS_ENV, SECRET_ENV, Signer};
use crate::templates::{self, Endpoints, Templates};
use crate::turbo::{GLOBAL, HookErrors, Settings, Turbo};
use crate::web::{
    self, AllowedOrigins, Authorizer, ConnectionLimits, DEFAULT_HEARTBEAT,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_PATH,
    DEFAULT_WRITE_TIMEOUT, InboundRate, MAX_CONNECTIONS_ENV, MAX_CONNECTIONS_PER_ADDRESS_ENV,
    Refusal, Service,
};

impl Turbo {
    /// Starts configuring a [`Turbo`].
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// Configures a [`Turbo`]: templates, secret, limits.
#[derive(Default)]
#[must_use = "call `.build()` or `.install()` to get a `Turbo`"]
pub struct Builder {
    dirs: Vec<PathBuf>,
    sources: Vec<(String, String)>,
    secret: Option<Vec<u8>>,
    previous_secrets: Option<Vec<Vec<u8>>>,
    database: Option<sea_orm::DatabaseConnection>,
    background: QueueLimits,
    token_ttl: Option<Duration>,
    hook_errors: HookErrors,
    path: Option<String>,
    hub: HubSettings,
    max_subscriptions: Option<usize>,
    max_connections: Option<(usize, usize)>,
    write_timeout: Option<Duration>,
    heartbeat: Option<Duration>,
    inbound_rate: InboundRate,
    origins: AllowedOrigins,
    refresh_debounce: Option<Duration>,
    authorizer: Option<Authorizer>,
    backend: Option<Arc<dyn Backend>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("dirs", &self.dirs)
            .field("templates", &self.sources.len())
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Loads every template below `dir` (see [the naming rule](crate#templates)).
    /// May be called more than once.
    pub fn templates(mut self, dir: impl AsRef<Path>) -> Self {
        self.dirs.push(dir.as_ref().to_path_buf());
        self
    }

    /// Adds one template from a string, e.g. one embedded with `include_str!`.
    pub fn template(mut self, name: impl Into<String>, source: impl Into<String>) -> Self {
        self.sources.push((name.into(), source.into()));
        self
    }

    /// The key that signs stream names (at least 32 bytes). Without it, the key comes
    /// from `TURBO_MODEL_SECRET`, or else is random (development only: a warning is
    /// logged, and pages must be reloaded after a restart).
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Keys used before the current one: tokens they signed are still accepted, so that
    /// open pages survive a key change. Without it, the whitespace-separated keys in
    /// `TURBO_MODEL_PREVIOUS_SECRETS` are used. Drop a key once no page can hold its
    /// tokens any more; a page whose tokens are refused refreshes itself.
    pub fn previous_secrets<S: AsRef<[u8]>>(
        mut self,
        secrets: impl IntoIterator<Item = S>,
    ) -> Self {
        self.previous_secrets = Some(secrets.into_iter().map(|s| s.as_ref().to_vec()).collect());
        self
    }

    /// Makes stream tokens expire `ttl` after the page is rendered (rounded up to the
    /// minute): a page kept longer gets its tokens refused on its next subscription and
    /// refreshes itself for new ones. Subscriptions already open are not affected
    /// (see [`Turbo::reauthorize`](crate::Turbo::reauthorize) to end them). Default: no
    /// expiry.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = Some(ttl);
        self
    }

    /// The database connection [async hooks](crate::AsyncHook) query with
    /// ([`HookContext::db`](crate::HookContext::db)).
    pub fn database(mut self, db: sea_orm::DatabaseConnection) -> Self {
        self.database = Some(db);
        self
    }

    /// The background queue of [async hooks](crate::AsyncHook): at most `jobs` waiting
    /// and `bytes` of their rows (as JSON), `workers` running at once; defaults 10 000,
    /// 64 MiB, 4. A hook that does not fit is not run: it is logged, and with
    /// [`HookErrors::Propagate`] the write's caller gets the error.
    pub fn async_hooks(mut self, jobs: usize, bytes: usize, workers: usize) -> Self {
        self.background = QueueLimits {
            jobs,
            bytes,
            workers,
        };
        self
    }

    /// What a failing hook does to the database write; default [`HookErrors::Log`].
    pub fn hook_errors(mut self, policy: HookErrors) -> Self {
        self.hook_errors = policy;
        self
    }

    /// Where [`Turbo::router`] mounts its endpoints; default `/turbo-model`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// What a connection may have queued before it is closed as too slow (and
    /// reconnects and resumes); default 256 frames or 1 MiB, whichever comes first.
    pub fn queue(mut self, frames: usize, bytes: usize) -> Self {
        self.hub.queue_frames = frames;
        self.hub.queue_bytes = bytes;
        self
    }

    /// How much each stream keeps for clients that reconnect: the last `frames`
    /// broadcasts, none older than `age`; default 100 frames, 5 minutes. A client away
    /// for longer, or that missed more, gets a gap signal and its page refreshes.
    pub fn history(mut self, frames: usize, age: Duration) -> Self {
        self.hub.history_len = frames;
        self.hub.history_age = age;
        self
    }

    /// Bytes of history kept over all streams (each kept frame counts its element and
    /// 48 bytes); default 64 MiB. Past it, the oldest frames are dropped first, down to
    /// seven eighths of it, and a client that needed them gets the gap signal.
    pub fn history_bytes(mut self, bytes: usize) -> Self {
        self.hub.history_bytes = bytes;
        self
    }

    /// How often stream connections exchange heartbeats; a side that hears nothing for
    /// two intervals drops the connection. Default 25 seconds.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }

    /// Requests per second a WebSocket client may send, and the burst allowed; default
    /// 20 per second, bursts of 120. Requests over the limit get a `rate_limited` error.
    /// Keep the burst above [`max_subscriptions`](Self::max_subscriptions): a reconnecting
    /// page subscribes to all of its streams at once.
    pub fn inbound_rate(mut self, per_second: u32, burst: u32) -> Self {
        self.inbound_rate = InboundRate {
            per_second: per_second.max(1),
            burst: burst.max(1),
        };
        self
    }

    /// How long `refresh` broadcasts wait for more refreshes of the same stream: a burst
    /// of saves gives one refresh. Default 500 ms.
    pub fn refresh_debounce(mut self, window: Duration) -> Self {
        self.refresh_debounce = Some(window);
        self
    }

    /// Decides, per subscription, whether a stream connection may subscribe to a stream.
    /// It gets the parts of the request that opened the connection (cookies, headers,
    /// and extensions such as a logged-in user put there by a layer of the application's
    /// router) and the stream's name; `Err` holds the reason, which the client is told
    /// (error code `forbidden`, or 403 for SSE) and which is logged.
    ///
    /// A signed token proves that this server rendered the stream name into some page,
    /// not that this user may read it; use this for streams that are not public.
    ///
    /// The request is the one that opened the WebSocket, so its cookies are those of
    /// that moment. Of a WebSocket's request, the handshake's own headers (`Connection`,
    /// `Upgrade`, `Sec-WebSocket-Key`, `-Version`, `-Extensions`) are not kept: each
    /// connection keeps its request for as long as it lives. A page that signs in without a full reload keeps its socket; on a
    /// refusal the client element reconnects once, with the current cookies, and asks
    /// again before it gives up.
    ///
    /// ```no_run
    /// # fn f() -> turbo_model::Result<()> {
    /// let turbo = turbo_model::Turbo::builder()
    ///     .authorize(|request, stream| async move {
    ///         let admin = request
    ///             .headers
    ///             .get("cookie")
    ///             .and_then(|c| c.to_str().ok())
    ///             .is_some_and(|c| c.contains("role=admin"));
    ///         if stream.as_str().starts_with("admin:") && !admin {
    ///             return Err("admins only".to_owned());
    ///         }
    ///         Ok(())
    ///     })
    ///     .install()?;
    /// # Ok(()) }
    /// ```
    pub fn authorize<F, Fut, R>(mut self, authorize: F) -> Self
    where
        F: Fn(Arc<Parts>, StreamName) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), R>> + Send + 'static,
        R: Into<Refusal>,
    {
        let authorize = Arc::new(authorize);
        self.authorizer = Some(Arc::new(move |request, stream| {
            let decision = authorize(request, stream);
            Box::pin(async move { decision.await.map_err(Into::into) })
        }));
        self
    }

    /// Which sites' pages may open stream connections; default
    /// [`AllowedOrigins::SameHost`].
    pub fn allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.origins = origins;
        self
    }

    /// Stream connections (WebSocket and SSE) this process takes, in all and from one
    /// client address; more are refused with `503` and `Retry-After`, and clients retry
    /// later. Defaults: the process's open-file limit less 512 (turbo-model raises the
    /// soft limit to the hard one at build), and 1000 per address; the environment
    /// variables `TURBO_MODEL_MAX_CONNECTIONS` and
    /// `TURBO_MODEL_MAX_CONNECTIONS_PER_ADDRESS` override them. The address is known
    /// when the server is given it ([`Turbo::serve`](crate::Turbo::serve) does, or
    /// `into_make_service_with_connect_info`); otherwise only the total applies.
    pub fn max_connections(mut self, total: usize, per_address: usize) -> Self {
        self.max_connections = Some((total, per_address));
        self
    }

    /// How long a write to a client may make no progress, and how long closing a
    /// connection may take, before the connection is dropped; default 10 seconds. A
    /// client that stops reading cannot hold a connection's task, socket and buffers
    /// longer. (Writes of Server-Sent Events are bounded when the server runs on
    /// [`web::Listener`](crate::web::Listener), as [`Turbo::serve`](crate::Turbo::serve)
    /// does.)
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = Some(timeout);
        self
    }

    /// Streams one connection may subscribe to; default 100.
    pub fn max_subscriptions(mut self, streams: usize) -> Self {
        self.max_subscriptions = Some(streams);
        self
    }

    /// The delivery backend; default [`InProcess`].
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// Builds the [`Turbo`] without installing it (tests, or several in one process).
    /// Hooks and [`Broadcast::send`](crate::Broadcast::send) use the installed one.
    ///
    /// # Errors
    ///
    /// [`Error::TemplateDir`], [`Error::Template`] for a template that does not parse
    /// (naming it and the line), [`Error::InvalidSecret`].
    pub fn build(self) -> Result<Turbo> {
        let signer = match (&self.secret, std::env::var(SECRET_ENV)) {
            (Some(secret), _) => Signer::new(secret)?,
            (None, Ok(secret)) => Signer::new(secret.as_bytes())?,
            (None, Err(_)) => {
                tracing::warn!(
                    "{SECRET_ENV} is not set: signing stream names with a random key; \
                     open pages must reload after a restart. Set it in production."
                );
                Signer::random()
            }
        };
        let previous = match self.previous_secrets {
            Some(secrets) => secrets,
            None => std::env::var(PREVIOUS_SECRETS_ENV)
                .map(|keys| {
                    keys.split_whitespace()
                        .map(|k| k.as_bytes().to_vec())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let signer = signer.with_previous(previous)?;
        let signer = match self.token_ttl {
            Some(ttl) => signer.with_expiry(ttl),
            None => signer,
        };
        let path = normalize_path(self.path.as_deref().unwrap_or(DEFAULT_PATH));
        let mut sources = Vec::new();
        for dir in &self.dirs {
            sources.extend(templates::read_dir(dir)?);
        }
        sources.extend(self.sources);
        let metrics = Arc::new(Metrics::default());
        let endpoints = Endpoints {
            socket: format!("{path}/ws"),
            events: format!("{path}/sse"),
            client: web::client_path(&path),
        };
        let backend = match self.backend {
            Some(backend) => backend,
            None => default_backend()?,
        };
        let templates = Templates::build(sources, signer.clone(), endpoints, Arc::clone(&metrics))?;
        let hub = Arc::new(Hub::new(
            self.hub,
            Arc::clone(&metrics),
            backend.numbering(),
        ));
        backend.start(Feed::new(Arc::clone(&hub)))?;
        let service = Service::new(
            hub,
            Arc::clone(&backend),
            signer,
            web::Settings {
                path,
                max_subscriptions: self.max_subscriptions.unwrap_or(DEFAULT_MAX_SUBSCRIPTIONS),
                heartbeat: self
                    .heartbeat
                    .unwrap_or(DEFAULT_HEARTBEAT)
                    .max(Duration::from_millis(10)),
                inbound_rate: self.inbound_rate,
                origins: self.origins,
                write_timeout: self.write_timeout.unwrap_or(DEFAULT_WRITE_TIMEOUT),
            },
            self.authorizer,
            Arc::clone(&metrics),
            connection_limits(self.max_connections),
        );
        let settings = Settings {
            hook_errors: self.hook_errors,
            refresh_debounce: self.refresh_debounce.unwrap_or(Duration::from_millis(500)),
            background: self.background,
        };
        Ok(Turbo::new(
            templates,
            service,
            backend,
            metrics,
            settings,
            self.database,
        ))
    }

    /// Builds and installs the [`Turbo`] for this process; returns a handle to it.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), and [`Error::AlreadyInstalled`] on a second call.
    pub fn install(self) -> Result<Turbo> {
        if GLOBAL.get().is_some() {
            return Err(Error::AlreadyInstalled);
        }
        let turbo = self.build()?;
        GLOBAL
            .set(turbo.clone())
            .map_err(|_| Error::AlreadyInstalled)?;
        Ok(turbo)
    }
}

/// [`InProcess`], or Redis when `TURBO_MODEL_REDIS_CLUSTER` or `TURBO_MODEL_REDIS_URL` is
/// set and the `redis` feature on.
fn default_backend() -> Result<Arc<dyn Backend>> {
    #[cfg(feature = "redis")]
    if let Ok(nodes) = std::env::var(crate::backend::REDIS_CLUSTER_ENV) {
        let nodes: Vec<&str> = nodes
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        return Ok(Arc::new(crate::backend::Redis::cluster(&nodes)?));
    }
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var(REDIS_ENV) {
        return Ok(Arc::new(crate::backend::Redis::new(&url)?));
    }
    #[cfg(not(feature = "redis"))]
    if std::env::var_os(REDIS_ENV).is_some()
        || std::env::var_os(crate::backend::REDIS_CLUSTER_ENV).is_some()
    {
        tracing::warn!(
            "{REDIS_ENV} or {} is set but turbo-model was built without its `redis` \
             feature: broadcasts stay in this process",
            crate::backend::REDIS_CLUSTER_ENV
        );
    }
    Ok(Arc::new(InProcess::default()))
}

/// Open files kept for everything but stream connections: the database pool, the
/// listener, files, the broker.
const RESERVED_FILES: u64 = 512;

/// The connection limits: given, else from the environment, else from the open-file
/// limit (raised to the hard limit first).
fn connection_limits(given: Option<(usize, usize)>) -> ConnectionLimits {
    let from_env = |name: &str| {
        let value = std::env::var(name).ok()?;
        match value.parse::<usize>() {
            Ok(n) => Some(n),
            Err(error) => {
                tracing::warn!(%name, %value, %error, "not a number of connections; ignored");
                None
            }
        }
    };
    let files = web::open_file_limit();
    let (total, per_address) = given.unwrap_or_else(|| {
        let total = from_env(MAX_CONNECTIONS_ENV).unwrap_or_else(|| {
            files.map_or(10_000, |files| {
                usize::try_from(files.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(usize::MAX)
            })
        });
        let per_address = from_env(MAX_CONNECTIONS_PER_ADDRESS_ENV)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS);
        (total, per_address)
    });
    tracing::debug!(total, per_address, open_files = ?files, "stream connection limits");
    ConnectionLimits::new(total, per_address)
}

/// `/turbo-model/` and `turbo-model` both become `/turbo-model`; `/` becomes ``.
fn normalize_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize_path("/turbo-model/"), "/turbo-model");
        assert_eq!(normalize_path("live"), "/live");
        assert_eq!(normalize_path("/"), "");
    }

    #[test]
    fn a_short_secret_fails_the_build() {
        let err = Turbo::builder()
            .secret("short")
            .build()
            .expect_err("refused");
        assert!(matches!(err, Error::InvalidSecret(_)), "{err}");
    }
}
