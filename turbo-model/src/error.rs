//! The crate's one error type.

use std::path::PathBuf;

use crate::action::Action;
use crate::signing::TokenError;

/// Shorthand for `Result<T, turbo_model::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between a saved row and a browser.
///
/// Variants carry the names a user needs to find the problem: the template, the stream,
/// the entity and the hook.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No [`Turbo`](crate::Turbo) was installed in this process, so a broadcast has nowhere
    /// to go and no templates to render with.
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
    },

    /// Rendering a template or component failed.
    #[error("rendering `{template}` failed: {message}")]
    Render {
        /// The template or component name.
        template: String,
        /// Tera's report, naming the line where rendering stopped.
        message: String,
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

    /// An action that addresses elements was sent without `target` or `targets`.
    #[error(
        "`{action}` broadcast on stream `{stream}` needs a target: \
         call `.target(\"element-id\")` or `.targets(\"css selector\")`"
    )]
    MissingTarget {
        /// The stream the broadcast was for.
        stream: String,
        /// The action that needs a target.
        action: Action,
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

    /// The delivery backend could not take the broadcast.
    #[error("backend could not publish to stream `{stream}`: {message}")]
    Backend {
        /// The stream the broadcast was for.
        stream: String,
        /// What the backend reported.
        message: String,
    },

    /// An error from the application's own code, wrapped with [`Error::other`].
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
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
    pub fn other(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
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
