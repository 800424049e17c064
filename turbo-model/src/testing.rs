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
}
