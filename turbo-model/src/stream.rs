//! Streams: named channels that pages subscribe to and broadcasts are sent on.
//!
//! A model's row has its own stream (`room:1`, from [`StreamModel::stream`]), and a row
//! can address its parent's stream without a database query (`message.parent_stream()`,
//! declared with `#[stream(parent = ...)]`). Code outside the ORM uses streams by name:
//!
//! ```
//! use turbo_model::{context, stream};
//!
//! // In a domain-event handler: the order's status badge changes on every open page.
//! let badge = stream("orders:42")
//!     .replace("orders/status.html", context! { status => "shipped" })
//!     .target("order-42-status");
//! assert_eq!(badge.stream(), "orders:42");
//! // badge.send()? publishes it through the installed `Turbo`.
//! ```
//!
//! [`StreamModel::stream`]: crate::StreamModel::stream

use std::fmt;
use std::sync::Arc;

use tera::Context;

use crate::action::{Action, Broadcast, Content};
use crate::error::{Error, Result};

/// The longest stream name accepted, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 256;

/// A validated stream name: 1 to [`MAX_STREAM_NAME_LEN`] bytes, no control characters.
///
/// Cloning is cheap (shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(Arc<str>);

impl StreamName {
    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamName`] when it is empty, too long or holds control characters.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("a stream name cannot be empty")
        } else if name.len() > MAX_STREAM_NAME_LEN {
            Some("a stream name is at most 256 bytes")
        } else if name.chars().any(char::is_control) {
            Some("a stream name cannot contain control characters")
        } else {
            None
        };
        match reason {
            None => Ok(Self(name.into())),
            Some(reason) => Err(Error::InvalidStreamName {
                name: name.chars().take(64).collect(),
                reason,
            }),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StreamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The stream name of one row: `prefix:key`, composite keys joined by `,`.
///
/// `%` and `,` inside a key are percent-encoded so that different keys never give the
/// same name.
///
/// ```
/// assert_eq!(turbo_model::row_stream_name("room", [&1 as &dyn std::fmt::Display]), "room:1");
/// assert_eq!(turbo_model::row_stream_name("pair", [&"a,b" as &dyn std::fmt::Display, &2]), "pair:a%2Cb,2");
/// ```
pub fn row_stream_name<'a>(
    prefix: &str,
    keys: impl IntoIterator<Item = &'a dyn fmt::Display>,
) -> String {
    let mut name = String::with_capacity(prefix.len() + 8);
    name.push_str(prefix);
    name.push(':');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            name.push(',');
        }
        for c in key.to_string().chars() {
            match c {
                '%' => name.push_str("%25"),
                ',' => name.push_str("%2C"),
                _ => name.push(c),
            }
        }
    }
    name
}

/// A stream by name, from code outside the ORM: a domain-event handler, a background job.
///
/// The name is checked when a broadcast is sent.
pub fn stream(name: impl Into<String>) -> Stream {
    Stream { name: name.into() }
}

/// A handle on one stream: start a [`Broadcast`] with one of the Turbo actions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stream {
    name: String,
}

macro_rules! content_actions {
    ($($(#[$doc:meta])* $method:ident => $action:ident;)*) => {
        $(
            $(#[$doc])*
            ///
            /// `template` is rendered with `context` once, when the broadcast is sent.
            pub fn $method(&self, template: impl Into<String>, context: Context) -> Broadcast {
                self.action(Action::$action, Some(Content::template(template, context)))
            }
        )*
    };
}

impl Stream {
    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Any action with any [`Content`]: literal HTML, a component, a template.
    pub fn action(&self, action: Action, content: Option<Content>) -> Broadcast {
        Broadcast::new(self.name.clone(), action, content)
    }

    content_actions! {
        /// Appends the rendered template to the target's children.
        append => Append;
        /// Prepends the rendered template to the target's children.
        prepend => Prepend;
        /// Replaces the target element with the rendered template.
        replace => Replace;
        /// Replaces the target's children with the rendered template.
        update => Update;
        /// Inserts the rendered template before the target element.
        before => Before;
        /// Inserts the rendered template after the target element.
        after => After;
    }

    /// Removes the target element.
    pub fn remove(&self) -> Broadcast {
        self.action(Action::Remove, None)
    }

    /// Asks subscribed pages to reload themselves; add [`Broadcast::morph`] to morph.
    pub fn refresh(&self) -> Broadcast {
        self.action(Action::Refresh, None)
    }
}

impl From<StreamName> for Stream {
    fn from(name: StreamName) -> Self {
        stream(name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert_eq!(StreamName::new("room:1").expect("ok").as_str(), "room:1");
        for (bad, reason) in [
            ("", "a stream name cannot be empty"),
            ("a\nb", "a stream name cannot contain control characters"),
        ] {
            match StreamName::new(bad) {
                Err(Error::InvalidStreamName { reason: r, .. }) => assert_eq!(r, reason),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        assert!(StreamName::new("x".repeat(MAX_STREAM_NAME_LEN)).is_ok());
        assert!(StreamName::new("x".repeat(MAX_STREAM_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn composite_keys_cannot_collide() {
        let a = row_stream_name("t", [&"a,b" as &dyn fmt::Display, &"c"]);
        let b = row_stream_name("t", [&"a" as &dyn fmt::Display, &"b,c"]);
        assert_eq!(a, "t:a%2Cb,c");
        assert_eq!(b, "t:a,b%2Cc");
        assert_eq!(
            row_stream_name("t", [&"100%" as &dyn fmt::Display]),
            "t:100%25"
        );
    }

    #[test]
    fn stream_actions_carry_the_stream_name() {
        let s = stream("orders");
        let b = s.remove().target("order-1");
        assert_eq!(b.stream(), "orders");
        assert_eq!(b.action(), Action::Remove);
        assert_eq!(s.append("x.html", Context::new()).action(), Action::Append);
    }
}
