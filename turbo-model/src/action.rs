//! Turbo Stream actions as data: what to do, to which elements, with what markup.
//!
//! A [`StreamAction`] is one `<turbo-stream>` element before it is rendered: the action
//! (`append`, `remove`, …), the addressed element (`target` id or `targets` CSS selector)
//! and, for actions that insert markup, the [`Content`]. It has no stream: sent to a
//! stream it becomes a [`Broadcast`](crate::Broadcast); returned from a handler it is
//! part of a [`TurboStream`](crate::response::TurboStream) response.
//!
//! This module only describes and writes elements; rendering templates is the
//! [`Turbo`](crate::Turbo)'s job.
//!
//! ```
//! use turbo_model::{Content, StreamAction};
//!
//! let html = StreamAction::append(Content::html("<li>hi</li>"))
//!     .target("messages")
//!     .to_html()
//!     .unwrap();
//! assert_eq!(
//!     html,
//!     r#"<turbo-stream action="append" target="messages"><template><li>hi</li></template></turbo-stream>"#
//! );
//! ```

use std::fmt;

use tera::Context;

/// The eight actions of Turbo 8 streams, and actions of the page's own.
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
    /// An action the page defines itself (`Turbo.StreamActions.set_title = function ()
    /// { document.title = this.getAttribute("title") }`), by name: lowercase ASCII
    /// letters, digits, `_` and `-`, starting with a letter, and none of the eight
    /// above. It carries the [attributes](StreamAction::attribute) it is given, a target
    /// if it is given one, and a `<template>` only when it has content.
    Custom(&'static str),
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
            Self::Custom(name) => name,
        }
    }

    /// Whether the action inserts markup, and so takes [`Content`] (a custom action may).
    pub const fn takes_content(self) -> bool {
        !matches!(self, Self::Remove | Self::Refresh)
    }

    /// Whether the action addresses elements, and so needs a target (a custom action
    /// may have one, and needs none).
    pub const fn needs_target(self) -> bool {
        !matches!(self, Self::Refresh | Self::Custom(_))
    }

    /// Why a custom action's name cannot be used, if it cannot.
    fn invalid(self) -> Option<&'static str> {
        let Self::Custom(name) = self else {
            return None;
        };
        const BUILT_IN: [&str; 8] = [
            "append", "prepend", "replace", "update", "remove", "before", "after", "refresh",
        ];
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            Some("a custom action's name starts with a lowercase ASCII letter")
        } else if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            Some("a custom action's name has only lowercase ASCII letters, digits, `_` and `-`")
        } else if BUILT_IN.contains(&name) {
            Some("a custom action cannot take the name of one of Turbo's own")
        } else {
            None
        }
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

    /// The template or component this content renders, if any: the name a user has to
    /// open when rendering fails.
    pub fn template_name(&self) -> Option<&str> {
        match self {
            Self::Template { name, .. } | Self::Component { name, .. } => Some(name),
            Self::Html(_) => None,
        }
    }
}

/// How a `refresh`, `replace` or `update` applies the new markup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Method {
    /// Turbo's default: swap the markup in.
    #[default]
    Replace,
    /// Morph the existing DOM into the new markup (`method="morph"`).
    Morph,
}

/// One Turbo Stream action, not yet rendered and not addressed to any stream.
///
/// Make one with the constructor named after the action, address it with
/// [`target`](Self::target) or [`targets`](Self::targets), then either send it to a
/// stream ([`Stream::broadcast`](crate::Stream::broadcast), or the shortcuts on
/// [`Stream`](crate::Stream)) or put it in a
/// [`TurboStream`](crate::response::TurboStream) response.
#[derive(Clone, Debug)]
#[must_use = "an action does nothing until it is sent or returned in a response"]
pub struct StreamAction {
    action: Action,
    target: Option<Target>,
    content: Option<Content>,
    method: Method,
    preserve_scroll: bool,
    request_id: Option<String>,
    /// More attributes, in the order given.
    attributes: Vec<(String, String)>,
}

/// Attributes the element writes itself.
const RESERVED_ATTRIBUTES: [&str; 6] = [
    "action",
    "target",
    "targets",
    "method",
    "scroll",
    "request-id",
];

/// Why an attribute name cannot be used, if it cannot.
fn invalid_attribute(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok {
        Some("an attribute name starts with an ASCII letter or `_`")
    } else if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.')) {
        Some("an attribute name has only ASCII letters, digits, `_`, `-`, `:` and `.`")
    } else if RESERVED_ATTRIBUTES.contains(&name.to_ascii_lowercase().as_str()) {
        Some("this attribute is written by the action itself; use its own method")
    } else {
        None
    }
}

macro_rules! content_actions {
    ($($(#[$doc:meta])* $method:ident => $action:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $method(content: Content) -> Self {
                Self::new($crate::action::Action::$action, Some(content))
            }
        )*
    };
}

impl StreamAction {
    /// Any action. `content` is ignored by actions that insert nothing (`remove`,
    /// `refresh`).
    pub fn new(action: Action, content: Option<Content>) -> Self {
        Self {
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
            attributes: Vec::new(),
        }
    }

    /// An action the page defines itself, by name (see [`Action::Custom`]), with
    /// `content` in a `<template>` if given.
    ///
    /// ```
    /// use turbo_model::StreamAction;
    ///
    /// let html = StreamAction::custom("set_title", None)
    ///     .attribute("title", "3 new messages")
    ///     .to_html()?;
    /// assert_eq!(html, r#"<turbo-stream action="set_title" title="3 new messages"></turbo-stream>"#);
    /// # Ok::<(), turbo_model::Error>(())
    /// ```
    pub fn custom(name: &'static str, content: Option<Content>) -> Self {
        Self::new(Action::Custom(name), content)
    }

    /// Adds the attribute `name="value"` to the element (`value` is escaped): for
    /// custom actions, and for `data-` attributes a page's own code reads.
    ///
    /// The name is checked when the element is written: ASCII letters, digits, `_`,
    /// `-`, `:` and `.`, not starting with a digit, `-`, `:` or `.`, and none of the
    /// attributes the action writes itself (`action`, `target`, `targets`, `method`,
    /// `scroll`, `request-id`).
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }

    content_actions! {
        /// Appends `content` to the target's children.
        append => Append;
        /// Prepends `content` to the target's children.
        prepend => Prepend;
        /// Replaces the target element with `content`.
        replace => Replace;
        /// Replaces the target's children with `content`.
        update => Update;
        /// Inserts `content` before the target element.
        before => Before;
        /// Inserts `content` after the target element.
        after => After;
    }

    /// Removes the target element.
    pub fn remove() -> Self {
        Self::new(Action::Remove, None)
    }

    /// Asks the page to reload itself; add [`morph`](Self::morph) to morph.
    pub fn refresh() -> Self {
        Self::new(Action::Refresh, None)
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
    /// [`request_scope`](crate::response::request_scope) this is set from the request's
    /// `X-Turbo-Request-Id` unless given here.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The addressed element(s), if set.
    pub fn target_ref(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// The markup to insert, if the action takes any.
    pub fn content(&self) -> Option<&Content> {
        self.content.as_ref()
    }

    /// The request id a `refresh` carries, if set.
    pub(crate) fn request_id_ref(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Renders the element when its content needs no template: [`Content::html`],
    /// [`Content::text`], or an action without content.
    ///
    /// # Errors
    ///
    /// [`Error::MissingTarget`](crate::Error::MissingTarget) when an element-addressing
    /// action has no target; [`Error::NotInstalled`](crate::Error::NotInstalled) when the
    /// content is a template or a component (render it with
    /// [`Turbo::render_action`](crate::Turbo::render_action)).
    pub fn to_html(&self) -> Result<String, crate::error::Error> {
        match &self.content {
            Some(Content::Html(html)) => self.element(Some(html), None),
            Some(_) => Err(crate::error::Error::NotInstalled),
            None => self.element(None, None),
        }
    }

    /// The `<turbo-stream>` element with `rendered` as its content (the content already
    /// rendered). Attribute values are escaped; `rendered` is used as it is. `stream`
    /// names the stream in errors.
    pub(crate) fn element(
        &self,
        rendered: Option<&str>,
        stream: Option<&str>,
    ) -> Result<String, crate::error::Error> {
        if let Some(reason) = self.action.invalid() {
            return Err(crate::error::Error::InvalidAction {
                action: self.action.as_str().to_owned(),
                reason,
            });
        }
        let mut html = String::with_capacity(96 + rendered.map_or(0, str::len));
        html.push_str(r#"<turbo-stream action=""#);
        html.push_str(self.action.as_str());
        html.push('"');
        let addresses = self.action.needs_target() || matches!(self.action, Action::Custom(_));
        match (&self.target, addresses) {
            (Some(Target::Id(id)), true) => push_attribute(&mut html, "target", id),
            (Some(Target::Selector(css)), true) => push_attribute(&mut html, "targets", css),
            (None, true) if self.action.needs_target() => {
                return Err(crate::error::Error::MissingTarget {
                    stream: stream.map(str::to_owned),
                    action: self.action.as_str(),
                });
            }
            _ => {}
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
        if self.action == Action::Refresh
            && let Some(id) = &self.request_id
        {
            push_attribute(&mut html, "request-id", id);
        }
        for (name, value) in &self.attributes {
            if let Some(reason) = invalid_attribute(name) {
                return Err(crate::error::Error::InvalidAction {
                    action: format!("{} with attribute `{}`", self.action, name.escape_debug()),
                    reason,
                });
            }
            push_attribute(&mut html, name, value);
        }
        html.push('>');
        let custom = matches!(self.action, Action::Custom(_));
        if self.action.takes_content() && !(custom && rendered.is_none()) {
            html.push_str("<template>");
            html.push_str(rendered.unwrap_or_default());
            html.push_str("</template>");
        }
        html.push_str("</turbo-stream>");
        Ok(html)
    }
}

/// Appends ` name="value"` with the value escaped for a double-quoted attribute.
pub(crate) fn push_attribute(html: &mut String, name: &str, value: &str) {
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
    use crate::error::Error;

    fn html(a: &StreamAction) -> String {
        a.to_html().expect("renders")
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
            let a = StreamAction::new(action, Some(Content::html("<b>x</b>"))).target("t");
            assert_eq!(
                html(&a),
                format!(
                    r#"<turbo-stream action="{name}" target="t"><template><b>x</b></template></turbo-stream>"#
                )
            );
        }
    }

    #[test]
    fn remove_has_no_template_and_ignores_content() {
        let a = StreamAction::new(Action::Remove, Some(Content::html("x"))).target("message-7");
        assert_eq!(
            html(&a),
            r#"<turbo-stream action="remove" target="message-7"></turbo-stream>"#
        );
    }

    #[test]
    fn targets_selector_is_escaped() {
        let a = StreamAction::remove().targets(r#"li[data-x="a&b"]"#);
        assert_eq!(
            html(&a),
            r#"<turbo-stream action="remove" targets="li[data-x=&quot;a&amp;b&quot;]"></turbo-stream>"#
        );
    }

    #[test]
    fn target_cannot_break_out_of_its_attribute() {
        let a = StreamAction::update(Content::text("<i>")).target(r#""><script>alert(1)</script>"#);
        assert_eq!(
            html(&a),
            r#"<turbo-stream action="update" target="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"><template>&lt;i&gt;</template></turbo-stream>"#
        );
    }

    #[test]
    fn refresh_with_morph_and_scroll() {
        let a = StreamAction::refresh().morph().preserve_scroll();
        assert_eq!(
            html(&a),
            r#"<turbo-stream action="refresh" method="morph" scroll="preserve"></turbo-stream>"#
        );
        assert_eq!(
            html(&StreamAction::refresh()),
            r#"<turbo-stream action="refresh"></turbo-stream>"#
        );
        assert_eq!(
            html(&StreamAction::refresh().request_id("r-1")),
            r#"<turbo-stream action="refresh" request-id="r-1"></turbo-stream>"#
        );
    }

    #[test]
    fn replace_can_morph_but_append_cannot() {
        let a = StreamAction::replace(Content::html("<p id=x></p>"))
            .target("x")
            .morph();
        assert_eq!(
            html(&a),
            r#"<turbo-stream action="replace" target="x" method="morph"><template><p id=x></p></template></turbo-stream>"#
        );
        let b = StreamAction::append(Content::html("y")).target("x").morph();
        assert_eq!(
            html(&b),
            r#"<turbo-stream action="append" target="x"><template>y</template></turbo-stream>"#
        );
    }

    #[test]
    fn missing_target_names_stream_and_action() {
        let a = StreamAction::append(Content::html("x"));
        let err = a.element(Some("x"), Some("room:9")).expect_err("no target");
        assert_eq!(
            err.to_string(),
            "`append` broadcast on stream `room:9` needs a target: call `.target(\"element-id\")` or `.targets(\"css selector\")`"
        );
        let err = a.to_html().expect_err("no target");
        assert_eq!(
            err.to_string(),
            "`append` action needs a target: call `.target(\"element-id\")` or `.targets(\"css selector\")`"
        );
    }

    #[test]
    fn template_content_needs_a_turbo() {
        let a = StreamAction::append(Content::template("a.html", Context::new())).target("t");
        assert!(matches!(a.to_html(), Err(Error::NotInstalled)));
    }

    #[test]
    fn content_action_without_content_sends_an_empty_template() {
        let a = StreamAction::new(Action::Update, None).target("t");
        assert_eq!(
            html(&a),
            r#"<turbo-stream action="update" target="t"><template></template></turbo-stream>"#
        );
    }

    #[test]
    fn custom_actions_carry_their_attributes_escaped_and_optional_content() {
        let a = StreamAction::custom("set_title", None).attribute("title", "\"3\" <new>");
        assert_eq!(
            html(&a),
            r#"<turbo-stream action="set_title" title="&quot;3&quot; &lt;new&gt;"></turbo-stream>"#
        );
        let a = StreamAction::custom("highlight-2", Some(Content::text("a & b")))
            .targets(".message")
            .attribute("data-color", "yellow")
            .attribute("aria-live", "polite");
        assert_eq!(
            html(&a),
            r#"<turbo-stream action="highlight-2" targets=".message" data-color="yellow" aria-live="polite"><template>a &amp; b</template></turbo-stream>"#
        );
        let built_in = StreamAction::remove()
            .target("m")
            .attribute("data-by", "ada");
        assert_eq!(
            html(&built_in),
            r#"<turbo-stream action="remove" target="m" data-by="ada"></turbo-stream>"#
        );
    }

    #[test]
    fn bad_custom_names_and_attributes_are_refused_with_the_reason() {
        for (name, reason) in [
            (
                "",
                "a custom action's name starts with a lowercase ASCII letter",
            ),
            (
                "Title",
                "a custom action's name starts with a lowercase ASCII letter",
            ),
            (
                "set title",
                "a custom action's name has only lowercase ASCII letters, digits, `_` and `-`",
            ),
            (
                "x\"><script>",
                "a custom action's name has only lowercase ASCII letters, digits, `_` and `-`",
            ),
            (
                "append",
                "a custom action cannot take the name of one of Turbo's own",
            ),
        ] {
            match StreamAction::custom(name, None).to_html() {
                Err(Error::InvalidAction { action, reason: r }) => {
                    assert_eq!((action.as_str(), r), (name, reason));
                }
                other => panic!("{name:?} gave {other:?}"),
            }
        }
        for (attribute, reason) in [
            ("", "an attribute name starts with an ASCII letter or `_`"),
            ("1x", "an attribute name starts with an ASCII letter or `_`"),
            (
                "on click",
                "an attribute name has only ASCII letters, digits, `_`, `-`, `:` and `.`",
            ),
            (
                "a\"b",
                "an attribute name has only ASCII letters, digits, `_`, `-`, `:` and `.`",
            ),
            (
                "Target",
                "this attribute is written by the action itself; use its own method",
            ),
            (
                "request-id",
                "this attribute is written by the action itself; use its own method",
            ),
        ] {
            let a = StreamAction::custom("ping", None).attribute(attribute, "v");
            match a.to_html() {
                Err(Error::InvalidAction { reason: r, .. }) => {
                    assert_eq!(r, reason, "{attribute:?}")
                }
                other => panic!("{attribute:?} gave {other:?}"),
            }
        }
    }
}
