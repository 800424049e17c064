//! [`Turbo`]: the templates, signing key, hub and settings of one application.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tera::Context;

use crate::backend::{Backend, InProcess};
use crate::error::{Error, Result};
use crate::hooks::HookErrors;
use crate::hub::Hub;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::signing::{Signer, TokenError};
use crate::stream::StreamName;
use crate::templates::{self, Endpoints, Templates};

static GLOBAL: OnceLock<Turbo> = OnceLock::new();

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
    inner: Arc<Inner>,
}

struct Inner {
    templates: Templates,
    signer: Signer,
    hub: Arc<Hub>,
    backend: Box<dyn Backend>,
    metrics: Arc<Metrics>,
    settings: Settings,
}

/// Limits and paths, fixed when the [`Turbo`] is built.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) hook_errors: HookErrors,
    pub(crate) path: String,
    pub(crate) queue_capacity: usize,
    pub(crate) max_subscriptions: usize,
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
    /// [`Error::Render`] naming the template, with Tera's report of the line.
    pub fn render(&self, template: &str, context: &Context) -> Result<String> {
        self.inner.templates.render(template, context)
    }

    /// Renders a Tera 2 component (`{% component Name(...) %}`) by name.
    ///
    /// # Errors
    ///
    /// [`Error::Render`] naming the component.
    pub fn render_component(&self, component: &str, context: &Context) -> Result<String> {
        self.inner.templates.render_component(component, context)
    }

    /// Publishes an already rendered `<turbo-stream>` element to every subscriber of
    /// `stream`. [`Broadcast::send`](crate::Broadcast::send) renders and calls this.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamName`]; [`Error::Backend`] from a broker backend.
    pub fn publish(&self, stream: &str, html: String) -> Result<()> {
        let stream = StreamName::new(stream)?;
        self.inner.metrics.broadcast();
        self.inner.backend.publish(&self.inner.hub, &stream, &html)
    }

    /// The signed token for a stream name, as the `turbo_subscribe` tag renders it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamName`].
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
}

/// Configures a [`Turbo`]: templates, secret, limits.
#[derive(Default)]
#[must_use = "call `.build()` or `.install()` to get a `Turbo`"]
pub struct Builder {
    dirs: Vec<PathBuf>,
    sources: Vec<(String, String)>,
    secret: Option<Vec<u8>>,
    hook_errors: HookErrors,
    path: Option<String>,
    queue_capacity: Option<usize>,
    max_subscriptions: Option<usize>,
    backend: Option<Box<dyn Backend>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("dirs", &self.dirs)
            .field("templates", &self.sources.len())
            .finish_non_exhaustive()
    }
}

/// Default per-connection queue, in frames.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;
/// Default limit on streams per connection.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 100;
/// Default mount point of the router.
pub const DEFAULT_PATH: &str = "/turbo-model";

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

    /// Frames a connection may have queued before it is closed as too slow; default 256.
    pub fn queue_capacity(mut self, frames: usize) -> Self {
        self.queue_capacity = Some(frames);
        self
    }

    /// Streams one connection may subscribe to; default 100.
    pub fn max_subscriptions(mut self, streams: usize) -> Self {
        self.max_subscriptions = Some(streams);
        self
    }

    /// The delivery backend; default [`InProcess`].
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(Box::new(backend));
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
        let path = normalize_path(self.path.as_deref().unwrap_or(DEFAULT_PATH));
        let mut sources = Vec::new();
        for dir in &self.dirs {
            sources.extend(templates::read_dir(dir)?);
        }
        sources.extend(self.sources);
        let metrics = Arc::new(Metrics::default());
        let endpoints = Endpoints {
            socket: format!("{path}/ws"),
            client: format!("{path}/client.js"),
        };
        let templates = Templates::build(sources, signer.clone(), endpoints, metrics.clone())?;
        let settings = Settings {
            hook_errors: self.hook_errors,
            queue_capacity: self.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY),
            max_subscriptions: self.max_subscriptions.unwrap_or(DEFAULT_MAX_SUBSCRIPTIONS),
            path,
        };
        let hub = Arc::new(Hub::new(settings.queue_capacity, metrics.clone()));
        let backend = self.backend.unwrap_or_else(|| Box::new(InProcess));
        backend.start(Arc::clone(&hub));
        Ok(Turbo {
            inner: Arc::new(Inner {
                templates,
                signer,
                hub,
                backend,
                metrics,
                settings,
            }),
        })
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
