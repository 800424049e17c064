//! Streams and broadcasts: a [`StreamAction`] addressed to a stream, and sent.
//!
//! A model's row has its own stream (`room:1`, from
//! [`StreamModel::stream`](crate::StreamModel::stream)), and a row can address its
//! parent's stream without a database query (`message.parent_stream()`, declared with
//! `#[stream(parent = ...)]`). Code outside the ORM names streams itself:
//!
//! ```
//! use turbo_model::{context, stream};
//!
//! // In a domain-event handler: the order's status badge changes on every open page.
//! let badge = stream("orders:42")?
//!     .replace("orders/status.html", context! { status => "shipped" })
//!     .target("order-42-status");
//! assert_eq!(badge.stream().as_str(), "orders:42");
//! // badge.send()? publishes it through the installed `Turbo`.
//! # Ok::<(), turbo_model::Error>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use tera::Context;

use crate::action::{Action, Content, StreamAction, Target};
use crate::dispatch::{self, Outgoing, Part};
use crate::error::{Error, Result};
use crate::name::StreamName;
use crate::scope::Scope;
use crate::turbo::Turbo;

/// A stream by name, from code outside the ORM: a domain-event handler, a background job.
///
/// # Errors
///
/// [`Error::InvalidStreamName`] when the name is empty, longer than 256 bytes or holds
/// control characters.
pub fn stream(name: impl Into<String>) -> Result<Stream> {
    StreamName::new(name).map(Stream::from)
}

/// A handle on one stream: start a [`Broadcast`] with one of the Turbo actions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stream {
    name: StreamName,
}

macro_rules! content_actions {
    ($($(#[$doc:meta])* $method:ident;)*) => {
        $(
            $(#[$doc])*
            ///
            /// `template` is rendered with `context` once, when the broadcast is sent.
            pub fn $method(&self, template: impl Into<String>, context: Context) -> Broadcast {
                self.broadcast(StreamAction::$method(Content::template(template, context)))
            }
        )*
    };
}

impl Stream {
    /// The stream's name.
    pub fn name(&self) -> &StreamName {
        &self.name
    }

    /// A compound stream: this one and `part`, joined by `:`. For a room's messages
    /// apart from the room's other news, `room.stream().join("messages")?` is
    /// `room:3:messages`, the stream `<% turbo_subscribe room "messages" %>` subscribes
    /// to.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamName`] when `part` is empty or holds control characters, or
    /// the whole passes 256 bytes.
    pub fn join(&self, part: impl std::fmt::Display) -> Result<Stream> {
        self.name.join(part).map(Stream::from)
    }

    /// `action` on this stream.
    pub fn broadcast(&self, action: StreamAction) -> Broadcast {
        Broadcast::new(self.name.clone(), action)
    }

    /// Any action with any [`Content`]: literal HTML, a component, a template.
    pub fn action(&self, action: Action, content: Option<Content>) -> Broadcast {
        self.broadcast(StreamAction::new(action, content))
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
    pub fn remove(&self) -> Broadcast {
        self.broadcast(StreamAction::remove())
    }

    /// Asks subscribed pages to reload themselves; add [`Broadcast::morph`] to morph.
    pub fn refresh(&self) -> Broadcast {
        self.broadcast(StreamAction::refresh())
    }

    /// An action the page defines itself (see [`Action::Custom`]); give it
    /// [attributes](Broadcast::attribute).
    pub fn custom(&self, name: &'static str, content: Option<Content>) -> Broadcast {
        self.broadcast(StreamAction::custom(name, content))
    }
}

impl From<StreamName> for Stream {
    fn from(name: StreamName) -> Self {
        Self { name }
    }
}

/// One action for one stream, waiting to be sent.
///
/// Build it from a [`Stream`] (`room.stream().append(...)`) and finish with
/// [`send`](Self::send).
#[derive(Clone, Debug)]
#[must_use = "a broadcast does nothing until `.send()` is called"]
pub struct Broadcast {
    stream: StreamName,
    action: StreamAction,
    /// Actions delivered in the same message, after `action`.
    more: Vec<StreamAction>,
    to_others: bool,
    debounce: Option<Duration>,
}

impl Broadcast {
    /// `action` for `stream`.
    pub fn new(stream: StreamName, action: StreamAction) -> Self {
        Self {
            stream,
            action,
            more: Vec::new(),
            to_others: false,
            debounce: None,
        }
    }

    /// Addresses the element with this `id`.
    pub fn target(mut self, id: impl Into<String>) -> Self {
        self.action = self.action.target(id);
        self
    }

    /// Addresses every element matching this CSS selector.
    pub fn targets(mut self, selector: impl Into<String>) -> Self {
        self.action = self.action.targets(selector);
        self
    }

    /// Morphs instead of replacing (`method="morph"`; `refresh`, `replace` and `update`).
    pub fn morph(mut self) -> Self {
        self.action = self.action.morph();
        self
    }

    /// Adds an attribute to the element (see [`StreamAction::attribute`]).
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.action = self.action.attribute(name, value);
        self
    }

    /// Delivers `action` too, in the same message, after this broadcast's own (and
    /// those added before): every page applies all of them at once, and a page that
    /// resumes gets all or none. The settings above apply to the first action; give
    /// `action` its own.
    ///
    /// ```
    /// use turbo_model::{Content, StreamAction, stream};
    ///
    /// let posted = stream("room:3")?
    ///     .action(turbo_model::Action::Append, Some(Content::html("<p>hi</p>")))
    ///     .target("messages")
    ///     .and(StreamAction::update(Content::text("12")).target("count"));
    /// assert_eq!(posted.actions().count(), 2);
    /// # Ok::<(), turbo_model::Error>(())
    /// ```
    pub fn and(mut self, action: StreamAction) -> Self {
        self.more.push(action);
        self
    }

    /// Every action of the message, in order.
    pub fn actions(&self) -> impl Iterator<Item = &StreamAction> {
        std::iter::once(&self.action).chain(&self.more)
    }

    /// Keeps the scroll position on `refresh` (`scroll="preserve"`).
    pub fn preserve_scroll(mut self) -> Self {
        self.action = self.action.preserve_scroll();
        self
    }

    /// Marks a `refresh` with the id of the request that caused it (`request-id`): the
    /// page that made that request does not refresh itself. Inside
    /// [`request_scope`](crate::response::request_scope) this is set from the request's
    /// `X-Turbo-Request-Id` unless given here.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.action = self.action.request_id(id);
        self
    }

    /// Leaves out the page that made the current request (its stream connection, as
    /// [`request_scope`](crate::response::request_scope) found it): that page gets the
    /// change in its HTTP response instead, and must not get it twice. Outside a
    /// request, or for a request from a page without a connection, everyone gets it.
    pub fn to_others(mut self) -> Self {
        self.to_others = true;
        self
    }

    /// For `refresh`: how long to wait for more refreshes of the same stream, sending
    /// only the last; default [`Builder::refresh_debounce`](crate::Builder::refresh_debounce)
    /// (500 ms). `Duration::ZERO` sends at once.
    pub fn debounce(mut self, window: Duration) -> Self {
        self.debounce = Some(window);
        self
    }

    /// The stream this broadcast goes to.
    pub fn stream(&self) -> &StreamName {
        &self.stream
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action.action()
    }

    /// The addressed element(s), if set.
    pub fn target_ref(&self) -> Option<&Target> {
        self.action.target_ref()
    }

    /// Renders every action's element, and where each starts and ends, adding what the
    /// current request adds: a `refresh` carries the request's id unless it has one.
    fn render(&self, turbo: &Turbo) -> Result<(String, Vec<Part>)> {
        let request_id = Scope::with(|s| s.request.as_ref().and_then(|r| r.request_id.clone()));
        let mut html = String::new();
        let mut parts = Vec::with_capacity(1 + self.more.len());
        for action in self.actions() {
            let element = match &request_id {
                Some(id)
                    if action.action() == Action::Refresh && action.request_id_ref().is_none() =>
                {
                    turbo.render_broadcast(&action.clone().request_id(id.clone()), &self.stream)?
                }
                _ => turbo.render_broadcast(action, &self.stream)?,
            };
            let start = html.len();
            if html.is_empty() {
                html = element;
            } else {
                html.push_str(&element);
            }
            parts.push(Part {
                action: action.action(),
                target: action.target_ref().cloned(),
                range: start..html.len(),
            });
        }
        Ok((html, parts))
    }

    /// Renders the `<turbo-stream>` element(s) with the current [`Turbo`]'s templates.
    ///
    /// # Errors
    ///
    /// [`Error::NotInstalled`] when no [`Turbo`] is installed or in scope;
    /// [`Error::MissingTarget`]; rendering errors naming the template.
    pub fn to_html(&self) -> Result<String> {
        let turbo = Turbo::current().ok_or(Error::NotInstalled)?;
        self.render(&turbo).map(|(html, _)| html)
    }

    /// Renders once and publishes to every subscriber of the stream through the current
    /// [`Turbo`] (the one in [scope](Turbo::scope), else the installed one). Inside a
    /// [`Transaction`](crate::Transaction) the broadcast waits for COMMIT; inside
    /// [`suppress`](crate::suppress) it is dropped; a `refresh` waits for its
    /// [`debounce`](Self::debounce) window.
    ///
    /// # Errors
    ///
    /// [`Error::NotInstalled`] when no [`Turbo`] is installed or in scope; rendering
    /// errors; [`Error::Backend`] when the backend cannot accept it.
    pub fn send(self) -> Result<()> {
        let turbo = Turbo::current().ok_or(Error::NotInstalled)?;
        self.send_with(&turbo)
    }

    /// As [`send`](Self::send), through a given [`Turbo`].
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_with(self, turbo: &Turbo) -> Result<()> {
        let scope = Scope::current();
        if scope.suppressed {
            turbo.count_suppressed();
            return Ok(());
        }
        let (html, parts) = self.render(turbo)?;
        let exclude = if self.to_others {
            scope.request.as_ref().and_then(|r| r.connection)
        } else {
            None
        };
        // Only a lone refresh is debounced: a message with more in it is not the same
        // as the next one.
        let debounce = match (self.action.action(), self.more.is_empty()) {
            (Action::Refresh, true) => self.debounce.unwrap_or(turbo.refresh_debounce()),
            _ => Duration::ZERO,
        };
        dispatch::submit(Outgoing {
            turbo: turbo.clone(),
            stream: self.stream,
            parts,
            html: Arc::from(html),
            exclude,
            debounce,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_actions_carry_the_stream_name() -> Result<()> {
        let s = stream("orders")?;
        let b = s.remove().target("order-1");
        assert_eq!(b.stream().as_str(), "orders");
        assert_eq!(b.action(), Action::Remove);
        assert_eq!(s.append("x.html", Context::new()).action(), Action::Append);
        Ok(())
    }

    #[test]
    fn bad_names_fail_where_the_stream_is_named() {
        assert!(matches!(stream(""), Err(Error::InvalidStreamName { .. })));
    }
}
