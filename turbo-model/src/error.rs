//! The crate's one error type, and the refusal of a stream token.

use std::path::PathBuf;

/// Shorthand for `Result<T, turbo_model::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error from another crate or from application code.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong between a saved row and a browser.
///
/// Variants carry the names a user needs to find the problem: the template, the stream,
/// the entity and the hook. Errors from Tera, Redis and the operating system are kept as
/// [`source`](std::error::Error::source)s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No [`Turbo`](crate::Turbo) is installed in this process (nor in scope), so a
    /// broadcast has nowhere to go and no templates to render with.
    #[error(
        "turbo-model is not installed: call `Turbo::builder()...install()` at start-up, \
         before saving models or sending broadcasts"
    )]
    NotInstalled,

    /// [`Builder::install`](crate::Builder::install) was called a second time.
    #[error("turbo-model is already installed in this process; install it once, at start-up")]
    AlreadyInstalled,

    /// The templates folder could not be read.
    #[error("cannot read templates from `{}`: {source}", path.display())]
    TemplateDir {
        /// The folder or file that failed.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A template has a syntax error, or a `turbo_subscribe` tag in it is malformed.
    #[error("template `{template}` is invalid: {message}")]
    Template {
        /// The template's name (its path below the templates folder).
        template: String,
        /// What is wrong and where, with the line number.
        message: String,
        /// Tera's error, when Tera found it.
        #[source]
        source: Option<tera::Error>,
    },

    /// Rendering a template or component failed.
    #[error("rendering `{template}` failed: {source}")]
    Render {
        /// The template or component name.
        template: String,
        /// Tera's report, naming the line where rendering stopped.
        #[source]
        source: tera::Error,
    },

    /// A stream name is empty or too long.
    #[error("invalid stream name {name:?}: {reason}")]
    InvalidStreamName {
        /// The name as given (shortened when very long).
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A signed stream token was refused.
    #[error("stream token refused: {0}")]
    InvalidToken(#[from] TokenError),

    /// An action that addresses elements was made without `target` or `targets`.
    #[error(
        "`{action}` {} needs a target: \
         call `.target(\"element-id\")` or `.targets(\"css selector\")`",
        match stream { Some(stream) => format!("broadcast on stream `{stream}`"), None => "action".to_owned() }
    )]
    MissingTarget {
        /// The stream the broadcast was for; `None` for an action in an HTTP response.
        stream: Option<String>,
        /// The action that needs a target (`append`, `remove`, …).
        action: &'static str,
    },

    /// A custom action's name, or an attribute given to an action, cannot be written.
    #[error("invalid stream action `{action}`: {reason}")]
    InvalidAction {
        /// The action (and the attribute, when that is the problem).
        action: String,
        /// What is wrong.
        reason: &'static str,
    },

    /// The secret used to sign stream names is unusable.
    #[error("invalid secret: {0}")]
    InvalidSecret(&'static str),

    /// A hook returned an error or panicked.
    #[error("hook `{hook}` on entity `{entity}` failed: {source}")]
    Hook {
        /// The entity whose row was saved or deleted.
        entity: &'static str,
        /// The hook's registered name.
        hook: &'static str,
        /// What the hook reported.
        #[source]
        source: Box<Error>,
    },

    /// The database failed, in an [async hook](crate::AsyncHook)'s query.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),

    /// An [async hook](crate::AsyncHook) asked for the database, and the
    /// [`Turbo`](crate::Turbo) was built without one.
    #[error("no database connection for async hooks: give one to `Builder::database` at start-up")]
    NoDatabase,

    /// The delivery backend could not take the broadcast, or could not start.
    #[error("backend could not {action} (stream `{stream}`): {message}")]
    Backend {
        /// What the backend was doing: `publish`, `start`, `resume`.
        action: &'static str,
        /// The stream concerned, or `-`.
        stream: String,
        /// What went wrong.
        message: String,
        /// The broker client's error, if there was one.
        #[source]
        source: Option<BoxError>,
    },

    /// An error from the application's own code, wrapped with [`Error::other`].
    #[error(transparent)]
    Other(BoxError),
}

impl Error {
    /// Wraps any error from application code so that a hook can return it with `?`.
    ///
    /// ```
    /// # fn lookup() -> Result<u32, std::num::ParseIntError> { "7".parse() }
    /// fn hook_body() -> turbo_model::Result<()> {
    ///     let _n = lookup().map_err(turbo_model::Error::other)?;
    ///     Ok(())
    /// }
    /// # hook_body().unwrap();
    /// ```
    pub fn other(error: impl Into<BoxError>) -> Self {
        Self::Other(error.into())
    }

    /// The template this error is about, if any: the one a user has to open to fix it.
    pub fn template(&self) -> Option<&str> {
        match self {
            Self::Template { template, .. } | Self::Render { template, .. } => Some(template),
            Self::Hook { source, .. } => source.template(),
            _ => None,
        }
    }

    /// A backend error without an underlying error.
    pub(crate) fn backend(
        action: &'static str,
        stream: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Backend {
            action,
            stream: stream.into(),
            message: message.into(),
            source: None,
        }
    }
}

/// Why a stream token was refused. The message is safe to show to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token was empty.
    #[error("the token is empty")]
    Empty,
    /// The token is longer than [`MAX_TOKEN_LEN`](crate::signing::MAX_TOKEN_LEN).
    #[error("the token is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// The token's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not of the form `name.signature` in base64url.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not match the name: tampered, truncated, or signed with
    /// another secret.
    #[error("the token's signature does not match its stream name")]
    BadSignature,
    /// The token's expiry has passed: the page must be rendered again.
    #[error("the token has expired")]
    Expired,
}

/// `text` with control characters escaped (`\n`, `\u{1b}`, …): messages that quote
/// input stay on one line wherever they are shown or logged.
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
