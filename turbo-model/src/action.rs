//! Turbo Stream actions and the `<turbo-stream>` element they become.
//!
//! A [`Broadcast`] is one action for one stream: what to do (`append`, `remove`, …),
//! which element (`target` id or `targets` CSS selector) and, for actions that insert
//! markup, the [`Content`]. [`Broadcast::send`] renders the content once, wraps it in a
//! `<turbo-stream>` element and publishes it; every subscriber receives the same bytes.
//!
//! ```
//! use turbo_model::{Action, Broadcast, Content};
//!
//! let html = Broadcast::new("room:1", Action::Append, Some(Content::html("<li>hi</li>")))
//!     .target("messages")
//!     .to_html_with(None)
//!     .unwrap();
//! assert_eq!(
//!     html,
//!     r#"<turbo-stream action="append" target="messages"><template><li>hi</li></template></turbo-stream>"#
//! );
//! ```

use std::fmt;
use std::time::Duration;

use tera::Context;

use crate::dispatch::{self, Outgoing};
use crate::error::{Error, Result};
use crate::stream::StreamName;
use crate::turbo::Turbo;

/// The eight actions of Turbo 8 streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Insert the content at the end of the target's children.
    Append,
    /// Insert the content at the start of the target's children.
    Prepend,
    /// Replace the whole target element with the content.
    Replace,
    /// Replace the target's children with the content.
    Update,
    /// Remove the target element.
    Remove,
    /// Insert the content before the target element.
    Before,
    /// Insert the content after the target element.
    After,
    /// Ask the page to reload itself (with `method="morph"`, morph the changes in).
    Refresh,
}

impl Action {
    /// The value of the `action` attribute.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Prepend => "prepend",
            Self::Replace => "replace",
            Self::Update => "update",
            Self::Remove => "remove",
            Self::Before => "before",
            Self::After => "after",
            Self::Refresh => "refresh",
        }
    }

    /// Whether the action inserts markup, and so takes [`Content`].
    pub const fn takes_content(self) -> bool {
        !matches!(self, Self::Remove | Self::Refresh)
    }

    /// Whether the action addresses elements, and so needs a target.
    pub const fn needs_target(self) -> bool {
        !matches!(self, Self::Refresh)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which elements an action applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One element, by `id` (the `target` attribute).
    Id(String),
    /// Every element matching a CSS selector (the `targets` attribute).
    Selector(String),
}

/// The markup an action inserts.
#[derive(Clone, Debug)]
pub enum Content {
    /// A template by name (its path below the templates folder), rendered with a context.
    Template {
        /// Template name, e.g. `chat/components/message.html`.
        name: String,
        /// Variables for the template.
        context: Context,
    },
    /// A Tera 2 component by name (`{% component Name(...) %}`), rendered with a context.
    Component {
        /// Component name, e.g. `Message`.
        name: String,
        /// The component's arguments.
        context: Context,
    },
    /// Markup used as it is. It is **not** escaped: never build it from user input
    /// without escaping; prefer [`Content::text`] or a template.
    Html(String),
}

impl Content {
    /// A template rendered with `context`.
    pub fn template(name: impl Into<String>, context: Context) -> Self {
        Self::Template {
            name: name.into(),
            context,
        }
    }

    /// A Tera component rendered with `context` as its arguments.
    pub fn component(name: impl Into<String>, context: Context) -> Self {
        Self::Component {
            name: name.into(),
            context,
        }
    }

    /// Trusted markup, inserted as it is.
    pub fn html(html: impl Into<String>) -> Self {
        Self::Html(html.into())
    }

    /// Plain text, HTML-escaped.
    pub fn text(text: &str) -> Self {
        let mut html = String::with_capacity(text.len());
        push_escaped(&mut html, text);
        Self::Html(html)
    }

    /// Renders the content: once per broadcast, whatever the number of subscribers.
    ///
    /// # Errors
    ///
    /// [`Error::NotInstalled`] for a template or component when `turbo` is `None`;
    /// [`Error::Render`] naming the template and line when Tera fails.
    pub fn render(&self, turbo: Option<&Turbo>) -> Result<String> {
        match self {
            Self::Html(html) => Ok(html.clone()),
            Self::Template { name, context } => {
                turbo.ok_or(Error::NotInstalled)?.render(name, context)
            }
            Self::Component { name, context } => turbo
                .ok_or(Error::NotInstalled)?
                .render_component(name, context),
        }
    }
}

/// How a `refresh`, `replace` or `update` applies the new markup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Method {
    /// Turbo's default: swap the markup in.
    #[default]
    Replace,
    /// Morph the existing DOM into the new markup (`method="morph"`), keeping focus and
    /// form state where elements survive.
    Morph,
}

/// One action for one stream, waiting to be sent.
///
/// Build it from a [`Stream`](crate::Stream) (`room.stream().append(...)`) and finish
/// with [`send`](Self::send).
#[derive(Clone, Debug)]
#[must_use = "a broadcast does nothing until `.send()` is called"]
pub struct Broadcast {
    stream: String,
    action: Action,
    target: Option<Target>,
    content: Option<Content>,
    method: Method,
    preserve_scroll: bool,
    request_id: Option<String>,
    to_others: bool,
    debounce: Option<Duration>,
}

impl Broadcast {
    /// An action for `stream`. `content` is ignored by actions that insert nothing
    /// (`remove`, `refresh`).
    pub fn new(stream: impl Into<String>, action: Action, content: Option<Content>) -> Self {
        Self {
            stream: stream.into(),
            action,
            target: None,
            content: if action.takes_content() {
                content
            } else {
                None
            },
            method: Method::Replace,
            preserve_scroll: false,
            request_id: None,
            to_others: false,
            debounce: None,
        }
    }

    /// Addresses the element with this `id`.
    pub fn target(mut self, id: impl Into<String>) -> Self {
        self.target = Some(Target::Id(id.into()));
        self
    }

    /// Addresses every element matching this CSS selector.
    pub fn targets(mut self, selector: impl Into<String>) -> Self {
        self.target = Some(Target::Selector(selector.into()));
        self
    }

    /// Morphs instead of replacing (`method="morph"`; `refresh`, `replace` and `update`).
    pub fn morph(mut self) -> Self {
        self.method = Method::Morph;
        self
    }

    /// Keeps the scroll position on `refresh` (`scroll="preserve"`).
    pub fn preserve_scroll(mut self) -> Self {
        self.preserve_scroll = true;
        self
    }

    /// Marks a `refresh` with the id of the request that caused it (`request-id`): the
    /// page that made that request does not refresh itself. Inside
    /// [`request_scope`](crate::web::request_scope) this is set from the request's
    /// `X-Turbo-Request-Id` unless given here.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Leaves out the page that made the current request (its stream connection, as
    /// [`request_scope`](crate::web::request_scope) found it): that page gets the change
    /// in its HTTP response instead, and must not get it twice. Outside a request, or
    /// for a request from a page without a connection, everyone gets it.
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
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The addressed element(s), if set.
    pub fn target_ref(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// Renders the `<turbo-stream>` element with the installed [`Turbo`]'s templates.
    ///
    /// # Errors
    ///
    /// As [`to_html_with`](Self::to_html_with).
    pub fn to_html(&self) -> Result<String> {
        self.to_html_with(Turbo::global())
    }

    /// Renders the `<turbo-stream>` element, using `turbo`'s templates for content.
    /// Attribute values are escaped; rendered content is used as it is.
    ///
    /// # Errors
    ///
    /// [`Error::MissingTarget`] when an element-addressing action has no target;
    /// rendering errors from [`Content::render`].
    pub fn to_html_with(&self, turbo: Option<&Turbo>) -> Result<String> {
        let mut html = String::with_capacity(96);
        html.push_str(r#"<turbo-stream action=""#);
        html.push_str(self.action.as_str());
        html.push('"');
        match (&self.target, self.action.needs_target()) {
            (Some(Target::Id(id)), true) => push_attribute(&mut html, "target", id),
            (Some(Target::Selector(css)), true) => push_attribute(&mut html, "targets", css),
            (None, true) => {
                return Err(Error::MissingTarget {
                    stream: self.stream.clone(),
                    action: self.action,
                });
            }
            (_, false) => {}
        }
        if self.method == Method::Morph
            && matches!(
                self.action,
                Action::Refresh | Action::Replace | Action::Update
            )
        {
            push_attribute(&mut html, "method", "morph");
        }
        if self.preserve_scroll && self.action == Action::Refresh {
            push_attribute(&mut html, "scroll", "preserve");
        }
        if self.action == Action::Refresh {
            let from_request = || dispatch::request_context().and_then(|c| c.request_id);
            if let Some(id) = self.request_id.clone().or_else(from_request) {
                push_attribute(&mut html, "request-id", &id);
            }
        }
        html.push('>');
        if let Some(content) = &self.content {
            let rendered = content.render(turbo)?;
            html.push_str("<template>");
            html.push_str(&rendered);
            html.push_str("</template>");
        } else if self.action.takes_content() {
            html.push_str("<template></template>");
        }
        html.push_str("</turbo-stream>");
        Ok(html)
    }

    /// Renders once and publishes to every subscriber of the stream through the
    /// installed [`Turbo`]. Inside a [`Transaction`](crate::Transaction) the broadcast
    /// waits for COMMIT; inside [`suppress`](crate::suppress) it is dropped; a `refresh`
    /// waits for its [`debounce`](Self::debounce) window.
    ///
    /// # Errors
    ///
    /// [`Error::NotInstalled`] when no [`Turbo`] is installed; rendering errors; stream
    /// name and backend errors from [`Turbo::publish`].
    pub fn send(self) -> Result<()> {
        let turbo = Turbo::global().ok_or(Error::NotInstalled)?;
        self.send_with(turbo)
    }

    /// As [`send`](Self::send), through a given [`Turbo`] instead of the installed one.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_with(self, turbo: &Turbo) -> Result<()> {
        if dispatch::is_suppressed() {
            turbo.count_suppressed();
            return Ok(());
        }
        let stream = StreamName::new(self.stream.as_str())?;
        let html = self.to_html_with(Some(turbo))?;
        let exclude = if self.to_others {
            dispatch::request_context().and_then(|c| c.connection)
        } else {
            None
        };
        let debounce = match self.action {
            Action::Refresh => self.debounce.unwrap_or(turbo.refresh_debounce()),
            _ => Duration::ZERO,
        };
        dispatch::submit(Outgoing {
            turbo: turbo.clone(),
            stream,
            action: self.action,
            target: self.target,
            html,
            exclude,
            debounce,
        })
    }
}

/// Appends ` name="value"` with the value escaped for a double-quoted attribute.
fn push_attribute(html: &mut String, name: &str, value: &str) {
    html.push(' ');
    html.push_str(name);
    html.push_str("=\"");
    push_escaped(html, value);
    html.push('"');
}

/// Escapes the five characters that matter inside HTML text and quoted attributes.
pub(crate) fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(b: &Broadcast) -> String {
        b.to_html_with(None).expect("renders")
    }

    #[test]
    fn every_content_action_wraps_markup_in_a_template() {
        for (action, name) in [
            (Action::Append, "append"),
            (Action::Prepend, "prepend"),
            (Action::Replace, "replace"),
            (Action::Update, "update"),
            (Action::Before, "before"),
            (Action::After, "after"),
        ] {
            let b = Broadcast::new("s", action, Some(Content::html("<b>x</b>"))).target("t");
            assert_eq!(
                html(&b),
                format!(
                    r#"<turbo-stream action="{name}" target="t"><template><b>x</b></template></turbo-stream>"#
                )
            );
        }
    }

    #[test]
    fn remove_has_no_template_and_ignores_content() {
        let b = Broadcast::new("s", Action::Remove, Some(Content::html("x"))).target("message-7");
        assert_eq!(
            html(&b),
            r#"<turbo-stream action="remove" target="message-7"></turbo-stream>"#
        );
    }

    #[test]
    fn targets_selector_is_escaped() {
        let b = Broadcast::new("s", Action::Remove, None).targets(r#"li[data-x="a&b"]"#);
        assert_eq!(
            html(&b),
            r#"<turbo-stream action="remove" targets="li[data-x=&quot;a&amp;b&quot;]"></turbo-stream>"#
        );
    }

    #[test]
    fn target_cannot_break_out_of_its_attribute() {
        let b = Broadcast::new("s", Action::Update, Some(Content::text("<i>")))
            .target(r#""><script>alert(1)</script>"#);
        assert_eq!(
            html(&b),
            r#"<turbo-stream action="update" target="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"><template>&lt;i&gt;</template></turbo-stream>"#
        );
    }

    #[test]
    fn refresh_with_morph_and_scroll() {
        let b = Broadcast::new("s", Action::Refresh, None)
            .morph()
            .preserve_scroll();
        assert_eq!(
            html(&b),
            r#"<turbo-stream action="refresh" method="morph" scroll="preserve"></turbo-stream>"#
        );
        let plain = Broadcast::new("s", Action::Refresh, None);
        assert_eq!(
            html(&plain),
            r#"<turbo-stream action="refresh"></turbo-stream>"#
        );
    }

    #[test]
    fn replace_can_morph_but_append_cannot() {
        let b = Broadcast::new("s", Action::Replace, Some(Content::html("<p id=x></p>")))
            .target("x")
            .morph();
        assert_eq!(
            html(&b),
            r#"<turbo-stream action="replace" target="x" method="morph"><template><p id=x></p></template></turbo-stream>"#
        );
        let a = Broadcast::new("s", Action::Append, Some(Content::html("y")))
            .target("x")
            .morph();
        assert_eq!(
            html(&a),
            r#"<turbo-stream action="append" target="x"><template>y</template></turbo-stream>"#
        );
    }

    #[test]
    fn missing_target_names_stream_and_action() {
        let b = Broadcast::new("room:9", Action::Append, Some(Content::html("x")));
        let err = b.to_html_with(None).expect_err("no target");
        assert_eq!(
            err.to_string(),
            "`append` broadcast on stream `room:9` needs a target: call `.target(\"element-id\")` or `.targets(\"css selector\")`"
        );
    }

    #[test]
    fn template_content_without_turbo_is_not_installed() {
        let b = Broadcast::new(
            "s",
            Action::Append,
            Some(Content::template("a.html", Context::new())),
        )
        .target("t");
        assert!(matches!(b.to_html_with(None), Err(Error::NotInstalled)));
    }

    #[test]
    fn content_action_without_content_sends_an_empty_template() {
        let b = Broadcast::new("s", Action::Update, None).target("t");
        assert_eq!(
            html(&b),
            r#"<turbo-stream action="update" target="t"><template></template></turbo-stream>"#
        );
    }
}
