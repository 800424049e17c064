//! Test helpers for applications: record the broadcasts made while some code runs, then
//! assert on them.
//!
//! Recording happens where a broadcast is published (after COMMIT for one made inside a
//! [`Transaction`](crate::Transaction)), so a rolled-back save records nothing. Recorded
//! broadcasts are still delivered as usual.
//!
//! ```
//! use turbo_model::testing::capture_sync;
//! use turbo_model::{Action, Content, Turbo, stream};
//!
//! let turbo = Turbo::builder().secret("0123456789abcdef0123456789abcdef").build()?;
//! let (sent, broadcasts) = capture_sync(|| {
//!     stream("orders:7")?
//!         .action(Action::Replace, Some(Content::text("shipped")))
//!         .target("order-7-status")
//!         .send_with(&turbo)
//! });
//! sent?;
//! let sent = broadcasts.assert_one("orders:7", Action::Replace, "order-7-status");
//! assert_eq!(sent.content(), Some("shipped"));
//! # Ok::<(), turbo_model::Error>(())
//! ```

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::action::{Action, Target};
pub use crate::scope::Recorded;
use crate::scope::Scope;

impl Recorded {
    /// The rendered content inside `<template>`, if the action has one.
    pub fn content(&self) -> Option<&str> {
        let start = self.html.find("<template>")? + "<template>".len();
        let end = self.html.rfind("</template>")?;
        self.html.get(start..end)
    }

    fn target_text(&self) -> String {
        match &self.target {
            Some(Target::Id(id)) => format!("target={id:?}"),
            Some(Target::Selector(css)) => format!("targets={css:?}"),
            None => "no target".to_owned(),
        }
    }

    fn targets(&self, target: &str) -> bool {
        matches!(&self.target, Some(Target::Id(t) | Target::Selector(t)) if t == target)
    }
}

impl fmt::Display for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {:?}, {}: {}",
            self.action,
            self.stream,
            self.target_text(),
            self.html
        )
    }
}

/// The broadcasts recorded by [`capture`] or [`capture_sync`], in publish order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Broadcasts(Vec<Recorded>);

impl Broadcasts {
    /// All of them.
    pub fn all(&self) -> &[Recorded] {
        &self.0
    }

    /// How many there were.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there were none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Those sent to `stream`.
    pub fn on(&self, stream: &str) -> Vec<&Recorded> {
        self.0.iter().filter(|r| r.stream == stream).collect()
    }

    /// Asserts that exactly one broadcast went to `stream` with `action` and `target`
    /// (an id or a selector), and returns it.
    ///
    /// # Panics
    ///
    /// When there is none or more than one, listing every broadcast that was made.
    #[track_caller]
    pub fn assert_one(&self, stream: &str, action: Action, target: &str) -> &Recorded {
        let matching: Vec<&Recorded> = self
            .0
            .iter()
            .filter(|r| r.stream == stream && r.action == action && r.targets(target))
            .collect();
        match matching.as_slice() {
            [one] => one,
            found => panic!(
                "expected one `{action}` on {stream:?} with target {target:?}, found {}.\n{self}",
                found.len()
            ),
        }
    }

    /// Asserts that nothing went to `stream`.
    ///
    /// # Panics
    ///
    /// Listing what went there.
    #[track_caller]
    pub fn assert_none_on(&self, stream: &str) {
        let sent = self.on(stream);
        assert!(
            sent.is_empty(),
            "expected no broadcast on {stream:?}, found {}.\n{self}",
            sent.len()
        );
    }

    /// Asserts how many broadcasts were made in all.
    ///
    /// # Panics
    ///
    /// Listing them.
    #[track_caller]
    pub fn assert_count(&self, expected: usize) {
        assert!(
            self.0.len() == expected,
            "expected {expected} broadcasts, found {}.\n{self}",
            self.0.len()
        );
    }
}

impl fmt::Display for Broadcasts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("Nothing was broadcast.");
        }
        writeln!(f, "Broadcast instead:")?;
        for (i, recorded) in self.0.iter().enumerate() {
            writeln!(f, "  {}. {recorded}", i + 1)?;
        }
        Ok(())
    }
}

/// Runs `future` and returns its output with the broadcasts published while it ran (in
/// this task).
pub async fn capture<F: Future>(future: F) -> (F::Output, Broadcasts) {
    let records = Arc::new(Mutex::new(Vec::new()));
    let output = capturing(&records).run(future).await;
    (output, take(&records))
}

/// [`capture`] for synchronous code.
pub fn capture_sync<R>(f: impl FnOnce() -> R) -> (R, Broadcasts) {
    let records = Arc::new(Mutex::new(Vec::new()));
    let output = capturing(&records).run_sync(f);
    (output, take(&records))
}

fn capturing(records: &Arc<Mutex<Vec<Recorded>>>) -> Scope {
    Scope {
        capture: Some(Arc::clone(records)),
        ..Scope::current()
    }
}

/// One subscription found in a rendered page: what a test client needs to subscribe as
/// the page would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageSubscription {
    /// The stream's name (readable from the token).
    pub stream: String,
    /// The signed token the page subscribes with.
    pub token: String,
    /// Where the page subscribes from: `t` and the time its request began, in
    /// microseconds since the Unix epoch.
    pub since: Option<String>,
}

/// The subscriptions the `turbo_subscribe` tags rendered into `html`, WebSocket and SSE,
/// in page order.
///
/// ```
/// let page = r#"<turbo-model-stream-source src="/turbo-model/ws" streams="cm9vbTox.sig" since="t1733000000123456"></turbo-model-stream-source>"#;
/// let found = turbo_model::testing::subscriptions(page);
/// assert_eq!(found[0].stream, "room:1");
/// assert_eq!(found[0].since.as_deref(), Some("t1733000000123456"));
/// ```
pub fn subscriptions(html: &str) -> Vec<PageSubscription> {
    let mut found = Vec::new();
    for element in html.split('<').skip(1) {
        let Some(tag) = element.split('>').next() else {
            continue;
        };
        if tag.starts_with("turbo-model-stream-source") {
            let tokens = attribute(tag, "streams").unwrap_or_default();
            let since = attribute(tag, "since").filter(|since| !since.is_empty());
            for token in tokens.split_whitespace() {
                found.push(PageSubscription {
                    stream: stream_of(token),
                    token: token.to_owned(),
                    since: since.map(str::to_owned),
                });
            }
        } else if tag.starts_with("turbo-stream-source") {
            let src = attribute(tag, "src")
                .unwrap_or_default()
                .replace("&amp;", "&");
            let query = src.split_once('?').map_or("", |(_, q)| q);
            let param = |key: &str| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                    .map(str::to_owned)
            };
            if let Some(token) = param("stream") {
                found.push(PageSubscription {
                    stream: stream_of(&token),
                    token,
                    since: param("since"),
                });
            }
        }
    }
    found
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = tag[start..].find('"')? + start;
    Some(&tag[start..end])
}

fn stream_of(token: &str) -> String {
    use base64::Engine as _;
    let name = token.split('.').next().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(name)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default()
}

fn take(records: &Mutex<Vec<Recorded>>) -> Broadcasts {
    Broadcasts(std::mem::take(
        &mut *records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    ))
}

/// The content type of a Turbo Stream response.
const STREAM_CONTENT_TYPE: &str = "text/vnd.turbo-stream.html";

/// The largest response body [`StreamResponse::read`] reads.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// One `<turbo-stream>` element of an HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamElement {
    /// The `action` attribute, as written (custom actions included).
    pub action: String,
    /// The `target` or `targets` attribute, unescaped.
    pub target: Option<Target>,
    /// The whole element, as written.
    pub html: String,
    /// Every attribute, in order, unescaped.
    pub attributes: Vec<(String, String)>,
}

impl StreamElement {
    /// The markup inside `<template>`, if the element has one.
    pub fn content(&self) -> Option<&str> {
        let start = self.html.find("<template>")? + "<template>".len();
        let end = self.html.rfind("</template>")?;
        self.html.get(start..end)
    }

    /// The value of attribute `name`, unescaped.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn is(&self, action: Action, target: &str) -> bool {
        self.action == action.as_str()
            && matches!(&self.target, Some(Target::Id(t) | Target::Selector(t)) if t == target)
    }
}

impl fmt::Display for StreamElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.html)
    }
}

/// The actions of a Turbo Stream HTTP response (a [`TurboStream`](crate::response::TurboStream)
/// answering a form), to assert on in tests: what turbo-rails' `assert_turbo_stream` does.
///
/// ```
/// use turbo_model::Action;
/// use turbo_model::testing::StreamResponse;
///
/// let body = r#"<turbo-stream action="append" target="messages"><template><p id="message_7">hi</p></template></turbo-stream>"#;
/// let response = StreamResponse::parse(Some("text/vnd.turbo-stream.html; charset=utf-8"), body)?;
/// let appended = response.assert_one(Action::Append, "messages");
/// assert_eq!(appended.content(), Some(r#"<p id="message_7">hi</p>"#));
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamResponse {
    elements: Vec<StreamElement>,
}

impl StreamResponse {
    /// Reads an axum response whole (at most [`MAX_RESPONSE_BYTES`]) and parses it.
    ///
    /// # Panics
    ///
    /// When the response is not a successful Turbo Stream response, with its status,
    /// content type and the start of its body.
    #[track_caller]
    pub fn read(response: axum::response::Response) -> impl Future<Output = Self> {
        let caller = std::panic::Location::caller();
        async move {
            let status = response.status();
            let content_type = response
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = axum::body::to_bytes(response.into_body(), MAX_RESPONSE_BYTES)
                .await
                .unwrap_or_else(|e| panic!("{caller}: cannot read the response body: {e}"));
            let body = String::from_utf8_lossy(&body);
            if !status.is_success() {
                panic!(
                    "{caller}: expected a successful turbo-stream response, got {status}: {}",
                    head(&body)
                );
            }
            Self::parse(content_type.as_deref(), &body).unwrap_or_else(|e| panic!("{caller}: {e}"))
        }
    }

    /// Parses a body given with its `Content-Type`.
    ///
    /// # Errors
    ///
    /// When the content type is not `text/vnd.turbo-stream.html`, or an element is not
    /// closed.
    pub fn parse(content_type: Option<&str>, body: &str) -> Result<Self, String> {
        let essence = content_type
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        if !essence.eq_ignore_ascii_case(STREAM_CONTENT_TYPE) {
            return Err(format!(
                "expected a turbo-stream response (`{STREAM_CONTENT_TYPE}`), got `{}`: {}",
                content_type.unwrap_or("no content type"),
                head(body)
            ));
        }
        let mut elements = Vec::new();
        let mut rest = body;
        while let Some(at) = find_element(rest) {
            let from = &rest[at..];
            let (attributes, tag_len) = parse_tag(from)
                .ok_or_else(|| format!("a `<turbo-stream>` tag is not closed: {}", head(from)))?;
            let end = from[tag_len..]
                .find("</turbo-stream>")
                .map(|i| tag_len + i + "</turbo-stream>".len())
                .ok_or_else(|| {
                    format!("a `<turbo-stream>` element is not closed: {}", head(from))
                })?;
            let get = |name: &str| {
                attributes
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            let target = get("target")
                .map(Target::Id)
                .or_else(|| get("targets").map(Target::Selector));
            elements.push(StreamElement {
                action: get("action").unwrap_or_default(),
                target,
                html: from[..end].to_owned(),
                attributes,
            });
            rest = &from[end..];
        }
        Ok(Self { elements })
    }

    /// Every element, in order.
    pub fn elements(&self) -> &[StreamElement] {
        &self.elements
    }

    /// Asserts that exactly one element has `action` and `target` (an id or a selector),
    /// and returns it.
    ///
    /// # Panics
    ///
    /// When none or several do, listing every element of the response.
    #[track_caller]
    pub fn assert_one(&self, action: Action, target: &str) -> &StreamElement {
        let matching: Vec<&StreamElement> = self
            .elements
            .iter()
            .filter(|e| e.is(action, target))
            .collect();
        match matching.as_slice() {
            [one] => one,
            found => panic!(
                "expected one `{action}` with target {target:?} in the response, found {}.\n{self}",
                found.len()
            ),
        }
    }

    /// Asserts that no element has `action` and `target`.
    ///
    /// # Panics
    ///
    /// Listing every element of the response.
    #[track_caller]
    pub fn assert_none(&self, action: Action, target: &str) {
        assert!(
            !self.elements.iter().any(|e| e.is(action, target)),
            "expected no `{action}` with target {target:?} in the response.\n{self}"
        );
    }

    /// Asserts how many elements the response has.
    ///
    /// # Panics
    ///
    /// Listing them.
    #[track_caller]
    pub fn assert_count(&self, expected: usize) {
        assert!(
            self.elements.len() == expected,
            "expected {expected} turbo-stream elements in the response, found {}.\n{self}",
            self.elements.len()
        );
    }
}

impl fmt::Display for StreamResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.elements.is_empty() {
            return f.write_str("The response has no turbo-stream element.");
        }
        writeln!(f, "The response has:")?;
        for (i, element) in self.elements.iter().enumerate() {
            writeln!(f, "  {}. {element}", i + 1)?;
        }
        Ok(())
    }
}

/// The first 200 characters of `text`, for error messages.
fn head(text: &str) -> String {
    let mut shown: String = text.chars().take(200).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

/// Where the next `<turbo-stream` tag starts (not `<turbo-stream-source`).
fn find_element(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find("<turbo-stream") {
        let at = from + i;
        let next = text[at + "<turbo-stream".len()..].chars().next();
        if matches!(next, Some(c) if c.is_ascii_whitespace() || c == '>') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The attributes of the tag at the start of `text`, and the tag's length; `None` when
/// it is not closed.
fn parse_tag(text: &str) -> Option<(Vec<(String, String)>, usize)> {
    let bytes = text.as_bytes();
    let mut i = "<turbo-stream".len();
    let mut attributes = Vec::new();
    loop {
        while bytes.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        if *bytes.get(i)? == b'>' {
            return Some((attributes, i + 1));
        }
        let name_start = i;
        while !matches!(bytes.get(i)?, b'=' | b'>' | b'/') && !bytes.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        let name = text[name_start..i].to_ascii_lowercase();
        if *bytes.get(i)? == b'/' {
            i += 1;
            continue;
        }
        let value = if *bytes.get(i)? == b'=' {
            i += 1;
            match bytes.get(i)? {
                quote @ (b'"' | b'\'') => {
                    let close = text[i + 1..].find(char::from(*quote))? + i + 1;
                    let value = unescape(&text[i + 1..close]);
                    i = close + 1;
                    value
                }
                _ => {
                    let start = i;
                    while !bytes.get(i)?.is_ascii_whitespace() && *bytes.get(i)? != b'>' {
                        i += 1;
                    }
                    unescape(&text[start..i])
                }
            }
        } else {
            String::new()
        };
        if !name.is_empty() {
            attributes.push((name, value));
        }
    }
}

/// Undoes the escaping of attribute values.
fn unescape(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(stream: &str, action: Action, target: &str, html: &str) -> Recorded {
        Recorded {
            stream: stream.into(),
            action,
            target: Some(Target::Id(target.into())),
            html: html.into(),
        }
    }

    #[test]
    fn failures_show_what_was_broadcast_instead() {
        let broadcasts = Broadcasts(vec![recorded(
            "room:1",
            Action::Remove,
            "message-3",
            r#"<turbo-stream action="remove" target="message-3"></turbo-stream>"#,
        )]);
        let panic = std::panic::catch_unwind(|| {
            broadcasts.assert_one("room:1", Action::Append, "messages");
        })
        .expect_err("no append was made");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(
            message,
            "expected one `append` on \"room:1\" with target \"messages\", found 0.\nBroadcast instead:\n  1. remove on \"room:1\", target=\"message-3\": <turbo-stream action=\"remove\" target=\"message-3\"></turbo-stream>\n"
        );
        let empty =
            std::panic::catch_unwind(|| Broadcasts::default().assert_count(1)).expect_err("none");
        assert_eq!(
            empty.downcast_ref::<String>().cloned().unwrap_or_default(),
            "expected 1 broadcasts, found 0.\nNothing was broadcast."
        );
    }

    #[test]
    fn content_is_what_is_inside_the_template() {
        let r = recorded(
            "s",
            Action::Append,
            "t",
            r#"<turbo-stream action="append" target="t"><template><li>x</li></template></turbo-stream>"#,
        );
        assert_eq!(r.content(), Some("<li>x</li>"));
        let removed = recorded("s", Action::Remove, "t", "<turbo-stream></turbo-stream>");
        assert_eq!(removed.content(), None);
    }

    #[test]
    fn responses_are_parsed_into_elements_with_unescaped_attributes() {
        let body = concat!(
            r#"<turbo-stream action="replace" target="message_7" method="morph"><template><p>a &amp; b</p></template></turbo-stream>"#,
            "\n<turbo-stream-source src=\"/x\"></turbo-stream-source>",
            r#"<turbo-stream action='set_title' title="&quot;3&quot; &lt;new&gt;" data-x=y></turbo-stream>"#,
            r#"<turbo-stream action="remove" targets=".m"></turbo-stream>"#,
        );
        let r = StreamResponse::parse(Some("text/vnd.turbo-stream.html; charset=utf-8"), body)
            .expect("parses");
        r.assert_count(3);
        let replaced = r.assert_one(Action::Replace, "message_7");
        assert_eq!(replaced.content(), Some("<p>a &amp; b</p>"));
        assert_eq!(replaced.attribute("method"), Some("morph"));
        let custom = &r.elements()[1];
        assert_eq!(custom.action, "set_title");
        assert_eq!(custom.attribute("title"), Some("\"3\" <new>"));
        assert_eq!(custom.attribute("data-x"), Some("y"));
        assert_eq!(custom.content(), None);
        r.assert_one(Action::Remove, ".m");
        r.assert_none(Action::Append, "message_7");
    }

    #[test]
    fn bad_responses_say_what_they_are() {
        assert_eq!(
            StreamResponse::parse(Some("text/html"), "<p>oops</p>"),
            Err("expected a turbo-stream response (`text/vnd.turbo-stream.html`), got `text/html`: <p>oops</p>".to_owned())
        );
        assert!(StreamResponse::parse(None, "").is_err());
        let unclosed = StreamResponse::parse(
            Some(STREAM_CONTENT_TYPE),
            r#"<turbo-stream action="remove" target="a">"#,
        );
        assert_eq!(
            unclosed,
            Err(r#"a `<turbo-stream>` element is not closed: <turbo-stream action="remove" target="a">"#.to_owned())
        );
        let open_tag = StreamResponse::parse(Some(STREAM_CONTENT_TYPE), r#"<turbo-stream action="#);
        assert!(open_tag.is_err_and(|e| e.starts_with("a `<turbo-stream>` tag is not closed")));
        let response = StreamResponse::parse(
            Some(STREAM_CONTENT_TYPE),
            r#"<turbo-stream action="remove" target="a"></turbo-stream>"#,
        )
        .expect("parses");
        let panic = std::panic::catch_unwind(|| {
            response.assert_one(Action::Append, "messages");
        })
        .expect_err("no append");
        assert_eq!(
            panic.downcast_ref::<String>().cloned().unwrap_or_default(),
            "expected one `append` with target \"messages\" in the response, found 0.\nThe response has:\n  1. <turbo-stream action=\"remove\" target=\"a\"></turbo-stream>\n"
        );
    }
}
