//! Turbo Stream HTTP responses, and what a request says about the page that sent it.
//!
//! A form submitted by Turbo asks for `text/vnd.turbo-stream.html`; answering with
//! [`TurboStream`] updates the sender's page without a redirect, while the model's hooks
//! broadcast the same change to the other pages ([`Broadcast::to_others`] keeps the
//! sender from getting it twice). Without JavaScript the form gets a redirect as usual.
//!
//! ```no_run
//! use axum::http::HeaderMap;
//! use axum::response::{IntoResponse, Redirect, Response};
//! use turbo_model::context;
//! use turbo_model::response::{TurboStream, accepts_turbo_stream, turbo_stream};
//!
//! async fn create(headers: HeaderMap) -> Response {
//!     // ... insert the message ...
//!     if accepts_turbo_stream(&headers) {
//!         TurboStream::from([
//!             turbo_stream::append("chat/components/message.html", context! {}).target("messages"),
//!             turbo_stream::replace("chat/components/form.html", context! {}).target("message-form"),
//!         ])
//!         .into_response()
//!     } else {
//!         Redirect::to("/rooms/1/").into_response()
//!     }
//! }
//! ```
//!
//! [`Broadcast::to_others`]: crate::Broadcast::to_others

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use std::sync::Arc;

use crate::action::StreamAction;
use crate::error::Result;
use crate::scope::Scope;
pub use crate::scope::{RequestContext, request_context};
use crate::turbo::Turbo;

/// The media type of Turbo Stream responses.
pub const TURBO_STREAM_MIME: &str = "text/vnd.turbo-stream.html";

/// The header in which the client element names its page's stream connection on
/// Turbo's requests.
pub const CONNECTION_HEADER: &str = "x-turbo-model-connection";

/// Turbo's header with the id of each request it makes.
pub const REQUEST_ID_HEADER: &str = "x-turbo-request-id";

/// Whether the request's `Accept` asks for a Turbo Stream response (Turbo adds it to
/// the form submissions it makes).
pub fn accepts_turbo_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|accept| {
            accept
                .split(',')
                .any(|part| part.trim().starts_with(TURBO_STREAM_MIME))
        })
}

/// Extractor: whether the request accepts a Turbo Stream response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptsTurboStream(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for AcceptsTurboStream {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(accepts_turbo_stream(&parts.headers)))
    }
}

/// Actions for [`TurboStream`] responses, by name: the same builders as
/// [`Stream`](crate::Stream)'s, with a template and its context, but no stream. A
/// response action goes in a response; it cannot be sent:
///
/// ```compile_fail
/// turbo_model::response::turbo_stream::remove().target("x").send();
/// ```
pub mod turbo_stream {
    use tera::Context;

    use crate::action::{Action, Content, StreamAction};

    /// Any action with any [`Content`].
    pub fn action(action: Action, content: Option<Content>) -> StreamAction {
        StreamAction::new(action, content)
    }

    macro_rules! content_actions {
        ($($(#[$doc:meta])* $name:ident;)*) => {
            $(
                $(#[$doc])*
                pub fn $name(template: impl Into<String>, context: Context) -> StreamAction {
                    StreamAction::$name(Content::template(template, context))
                }
            )*
        };
    }

    content_actions! {
        /// Appends the rendered template to the target's children.
        append;
        /// Prepends the rendered template to the target's children.
        prepend;
        /// Replaces the target element with the rendered template.
        replace;
        /// Replaces the target's children with the rendered template.
        update;
        /// Inserts the rendered template before the target element.
        before;
        /// Inserts the rendered template after the target element.
        after;
    }

    /// Removes the target element.
    pub fn remove() -> StreamAction {
        StreamAction::remove()
    }

    /// Reloads the page.
    pub fn refresh() -> StreamAction {
        StreamAction::refresh()
    }

    /// An action the page defines itself; give it attributes with
    /// [`StreamAction::attribute`].
    pub fn custom(name: &'static str, content: Option<Content>) -> StreamAction {
        StreamAction::custom(name, content)
    }
}

/// A `text/vnd.turbo-stream.html` response of one or more actions, rendered with the
/// current [`Turbo`] (or [`with_turbo`](Self::with_turbo)).
#[derive(Debug, Default)]
#[must_use = "a response does nothing unless returned"]
pub struct TurboStream {
    actions: Vec<StreamAction>,
    turbo: Option<Turbo>,
}

impl TurboStream {
    /// An empty response.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an action (from [`turbo_stream`]).
    pub fn with(mut self, action: StreamAction) -> Self {
        self.actions.push(action);
        self
    }

    /// Renders with this `Turbo`'s templates instead of the current one's (the one in
    /// [scope](Turbo::scope), else the installed one).
    pub fn with_turbo(mut self, turbo: &Turbo) -> Self {
        self.turbo = Some(turbo.clone());
        self
    }

    /// The response body: the `<turbo-stream>` elements, one after another.
    ///
    /// # Errors
    ///
    /// Rendering errors, naming the template.
    pub fn render(&self) -> Result<String> {
        let turbo = self.turbo.clone().or_else(Turbo::current);
        let mut body = String::new();
        for action in &self.actions {
            let html = match &turbo {
                Some(turbo) => turbo.render_action(action)?,
                None => action.to_html()?,
            };
            body.push_str(&html);
        }
        Ok(body)
    }
}

impl<I: IntoIterator<Item = StreamAction>> From<I> for TurboStream {
    fn from(actions: I) -> Self {
        Self {
            actions: actions.into_iter().collect(),
            turbo: None,
        }
    }
}

impl IntoResponse for TurboStream {
    fn into_response(self) -> Response {
        match self.render() {
            Ok(body) => (
                [(
                    header::CONTENT_TYPE,
                    concat!("text/vnd.turbo-stream.html", "; charset=utf-8"),
                )],
                body,
            )
                .into_response(),
            Err(error) => {
                tracing::error!(
                    template = error.template().unwrap_or("-"),
                    %error,
                    "Turbo Stream response failed to render"
                );
                (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
            }
        }
    }
}

/// Middleware that makes the request, and the [`Turbo`] given as its state, known to
/// what its handler does:
///
/// - broadcasts and hooks send through that `Turbo` (several can serve one process);
/// - `refresh` broadcasts carry Turbo's request id (so the page that made the change
///   does not refresh itself);
/// - [`to_others`](crate::Broadcast::to_others) broadcasts skip the sender's stream
///   connection;
/// - pages rendered by the request subscribe from the streams' positions when the
///   request began, so a broadcast made while the handler was reading the page's data
///   is replayed to the page instead of lost.
///
/// ```no_run
/// # fn app(turbo: turbo_model::Turbo) -> axum::Router {
/// axum::Router::new()
///     // .route(...)
///     .layer(axum::middleware::from_fn_with_state(turbo.clone(), turbo_model::response::request_scope))
/// # }
/// ```
pub async fn request_scope(State(turbo): State<Turbo>, request: Request, next: Next) -> Response {
    let started = std::time::SystemTime::now();
    let headers = request.headers();
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .map(str::to_owned);
    let connection = headers
        .get(CONNECTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|token| turbo.connection_of(token));
    let context = RequestContext::new(request_id, connection, Some(started));
    Scope {
        request: Some(Arc::new(context)),
        ..turbo.entered()
    }
    .run(next.run(request))
    .await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn turbo_form_submissions_accept_turbo_streams() {
        let mut headers = HeaderMap::new();
        assert!(!accepts_turbo_stream(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "text/vnd.turbo-stream.html, text/html, application/xhtml+xml",
            ),
        );
        assert!(accepts_turbo_stream(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        assert!(!accepts_turbo_stream(&headers));
    }

    #[test]
    fn a_response_renders_every_action_in_order() {
        let body = TurboStream::from([
            turbo_stream::action(
                crate::action::Action::Append,
                Some(crate::action::Content::html("<li>1</li>")),
            )
            .target("messages"),
            turbo_stream::remove().target("message-0"),
        ])
        .render()
        .expect("renders");
        assert_eq!(
            body,
            r#"<turbo-stream action="append" target="messages"><template><li>1</li></template></turbo-stream><turbo-stream action="remove" target="message-0"></turbo-stream>"#
        );
    }
}
