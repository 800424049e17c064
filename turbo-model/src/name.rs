//! Names and identities: what a stream is called, and which connection a page has.
//!
//! A model's row has its own stream (`room:1`), named by [`StreamName::for_row`]; code
//! outside the ORM names streams itself (`orders:42`) with [`StreamName::new`].

use std::fmt;
use std::sync::Arc;

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

    /// The stream of one row: `prefix:key`, composite keys joined by `,`.
    ///
    /// `%`, `,` and control characters inside a key are percent-encoded, so that
    /// different keys never give the same name and every name is valid. A name that
    /// would pass [`MAX_STREAM_NAME_LEN`] becomes `prefix:#` and the SHA-256 of the
    /// keys in hex: still one name per row.
    ///
    /// ```
    /// use std::fmt::Display;
    /// use turbo_model::StreamName;
    ///
    /// assert_eq!(StreamName::for_row("room", [&1 as &dyn Display]).as_str(), "room:1");
    /// assert_eq!(StreamName::for_row("pair", [&"a,b" as &dyn Display, &2]).as_str(), "pair:a%2Cb,2");
    /// ```
    pub fn for_row<'a>(prefix: &str, keys: impl IntoIterator<Item = &'a dyn fmt::Display>) -> Self {
        let mut name = String::with_capacity(prefix.len() + 8);
        name.push_str(prefix);
        name.push(':');
        let mut keys_text = String::new();
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 {
                keys_text.push(',');
            }
            for c in key.to_string().chars() {
                match c {
                    '%' => keys_text.push_str("%25"),
                    ',' => keys_text.push_str("%2C"),
                    c if c.is_control() => {
                        let mut bytes = [0u8; 4];
                        for b in c.encode_utf8(&mut bytes).bytes() {
                            keys_text.push_str(&format!("%{b:02X}"));
                        }
                    }
                    c => keys_text.push(c),
                }
            }
        }
        if name.len() + keys_text.len() <= MAX_STREAM_NAME_LEN {
            name.push_str(&keys_text);
        } else {
            use sha2::Digest as _;
            name.push('#');
            for b in sha2::Sha256::digest(keys_text.as_bytes()) {
                name.push_str(&format!("{b:02x}"));
            }
        }
        match Self::new(name) {
            Ok(name) => name,
            // Only a prefix that is itself invalid gets here; the derive checks prefixes
            // at compile time. Keep one stable, valid name rather than fail a hook.
            Err(_) => Self(Arc::from("invalid-prefix")),
        }
    }

    /// A compound stream: this name and `part`, joined by `:`. `room:3` joined with
    /// `messages` is `room:3:messages`, the stream `<% turbo_subscribe room "messages" %>`
    /// subscribes to.
    ///
    /// ```
    /// use turbo_model::StreamName;
    ///
    /// let room = StreamName::new("room:3")?;
    /// assert_eq!(room.join("messages")?.as_str(), "room:3:messages");
    /// # Ok::<(), turbo_model::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamName`] when `part` is empty or holds control characters, or
    /// the whole is longer than [`MAX_STREAM_NAME_LEN`].
    pub fn join(&self, part: impl fmt::Display) -> Result<Self> {
        let part = part.to_string();
        if part.is_empty() {
            return Err(Error::InvalidStreamName {
                name: format!("{}:", self.0.chars().take(63).collect::<String>()),
                reason: "a part of a compound stream name cannot be empty",
            });
        }
        Self::new(format!("{}:{part}", self.0))
    }

    /// The name as an HTML id: every character other than an ASCII letter, digit, `-`
    /// or `_` becomes `_`, so `message:12` is `message_12`. See [`dom_id`](crate::dom_id).
    pub fn dom_id(&self) -> String {
        self.0
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `prefix_id`, or `id` without a prefix (or with an empty one).
pub(crate) fn prefixed(id: String, prefix: Option<&str>) -> String {
    match prefix {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}_{id}"),
        _ => id,
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

impl PartialEq<str> for StreamName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for StreamName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl TryFrom<&str> for StreamName {
    type Error = Error;

    fn try_from(name: &str) -> Result<Self> {
        Self::new(name)
    }
}

impl TryFrom<String> for StreamName {
    type Error = Error;

    fn try_from(name: String) -> Result<Self> {
        Self::new(name)
    }
}

/// Identifies one client connection, unique across processes and restarts: the
/// process's random identity and a number counted in that process.
///
/// A page names its connection in its requests; the process that handles a request may
/// be another one (behind a load balancer, with a broker), so a number alone would name
/// some unrelated page there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId {
    process: u64,
    number: u64,
}

impl ConnectionId {
    pub(crate) fn new(process: u64, number: u64) -> Self {
        Self { process, number }
    }

    /// The number within its process, for logs.
    pub fn get(self) -> u64 {
        self.number
    }

    /// The identity of the process that holds the connection.
    pub fn process(self) -> u64 {
        self.process
    }

    /// Parses the form [`Display`](fmt::Display) writes: `process_hex.number`.
    pub fn parse(text: &str) -> Option<Self> {
        let (process, number) = text.split_once('.')?;
        if process.len() != 16 {
            return None;
        }
        Some(Self {
            process: u64::from_str_radix(process, 16).ok()?,
            number: number.parse().ok()?,
        })
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}.{}", self.process, self.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(prefix: &str, keys: &[&dyn fmt::Display]) -> String {
        StreamName::for_row(prefix, keys.iter().copied())
            .as_str()
            .to_owned()
    }

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
    fn compound_names_join_parts_with_a_colon() {
        let room = StreamName::new("room:3").expect("ok");
        assert_eq!(
            room.join("messages").expect("ok").as_str(),
            "room:3:messages"
        );
        assert_eq!(room.join(7).expect("ok").as_str(), "room:3:7");
        for (part, reason) in [
            (
                String::new(),
                "a part of a compound stream name cannot be empty",
            ),
            (
                "a\tb".to_owned(),
                "a stream name cannot contain control characters",
            ),
            (
                "x".repeat(MAX_STREAM_NAME_LEN),
                "a stream name is at most 256 bytes",
            ),
        ] {
            match room.join(&part) {
                Err(Error::InvalidStreamName { reason: r, .. }) => assert_eq!(r, reason),
                other => panic!("{part:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn dom_ids_keep_letters_digits_dashes_and_underscores() {
        let id = |name: &str| StreamName::new(name).expect("ok").dom_id();
        assert_eq!(id("message:12"), "message_12");
        assert_eq!(
            id("job:0b7c-41e2"),
            "job_0b7c-41e2",
            "UUID keys are kept whole"
        );
        assert_eq!(id("pair:a%2Cb,2"), "pair_a_2Cb_2");
        assert_eq!(id("caf\u{e9}:1"), "caf__1");
        assert_eq!(prefixed(id("message:12"), Some("edit")), "edit_message_12");
        assert_eq!(prefixed(id("message:12"), Some("")), "message_12");
        assert_eq!(prefixed(id("message:12"), None), "message_12");
    }

    #[test]
    fn composite_keys_cannot_collide() {
        let a = row("t", &[&"a,b", &"c"]);
        let b = row("t", &[&"a", &"b,c"]);
        assert_eq!(a, "t:a%2Cb,c");
        assert_eq!(b, "t:a,b%2Cc");
        assert_eq!(row("t", &[&"100%"]), "t:100%25");
    }

    #[test]
    fn connection_ids_print_and_parse_with_their_process() {
        let id = ConnectionId::new(0xabc, 6);
        assert_eq!(id.to_string(), "0000000000000abc.6");
        assert_eq!(ConnectionId::parse("0000000000000abc.6"), Some(id));
        assert_ne!(
            id,
            ConnectionId::new(0xabd, 6),
            "same number, other process"
        );
        for bad in ["6", "abc.6", "0000000000000abc.x", "0000000000000abc", ""] {
            assert_eq!(ConnectionId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn any_key_gives_a_valid_name() {
        assert_eq!(row("t", &[&"a\nb"]), "t:a%0Ab");
        let long = "k".repeat(300);
        let hashed = row("t", &[&long]);
        assert!(hashed.starts_with("t:#"), "{hashed}");
        assert_eq!(hashed.len(), "t:#".len() + 64);
        assert_ne!(hashed, row("t", &[&"k".repeat(301)]));
    }
}
