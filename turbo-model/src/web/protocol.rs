//! The WebSocket protocol between the client element and the server: JSON text frames.
//!
//! Client to server:
//!
//! ```json
//! {"type":"subscribe","stream":"<signed token>"}
//! {"type":"unsubscribe","stream":"<signed token>"}
//! ```
//!
//! Server to client:
//!
//! ```json
//! {"type":"hello","connection":"17"}
//! {"type":"subscribed","stream":"room:1","token":"<signed token>","seq":4}
//! {"type":"unsubscribed","stream":"room:1","token":"<signed token>"}
//! {"type":"message","stream":"room:1","seq":5,"html":"<turbo-stream …>"}
//! {"type":"error","code":"invalid_token","message":"…","token":"…"}
//! ```
//!
//! `seq` in `subscribed` is the stream's last sequence number before the subscription;
//! `message` frames then continue from `seq + 1`. Errors never close the connection,
//! except a frame over the size limit (close code 1009).

use serde::{Deserialize, Serialize};

/// Largest inbound message or frame accepted, in bytes.
pub const MAX_INBOUND_BYTES: usize = 64 * 1024;

/// A client's request.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Inbound {
    Subscribe { stream: String },
    Unsubscribe { stream: String },
}

/// Why a request was refused; the `code` field of an error frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    /// Not JSON, or not one of the requests above.
    BadRequest,
    /// Binary frames carry nothing in this protocol.
    BinaryNotSupported,
    /// The stream token was refused.
    InvalidToken,
    /// The connection holds as many subscriptions as allowed.
    TooManySubscriptions,
}

/// A reply to a client's request.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Reply<'a> {
    Hello {
        connection: String,
    },
    Subscribed {
        stream: &'a str,
        token: &'a str,
        seq: u64,
    },
    Unsubscribed {
        stream: &'a str,
        token: &'a str,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<&'a str>,
    },
}

impl Reply<'_> {
    pub(crate) fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail; an empty object is a safe fallback.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Parses one text frame.
pub(crate) fn parse(text: &str) -> Result<Inbound, String> {
    serde_json::from_str(text).map_err(|e| {
        format!("expected {{\"type\":\"subscribe\"|\"unsubscribe\",\"stream\":\"<token>\"}}: {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse(r#"{"type":"subscribe","stream":"t"}"#),
            Ok(Inbound::Subscribe { stream: "t".into() })
        );
        assert_eq!(
            parse(r#"{"type":"unsubscribe","stream":"t"}"#),
            Ok(Inbound::Unsubscribe { stream: "t".into() })
        );
    }

    #[test]
    fn bad_requests_say_what_is_expected() {
        for bad in [
            "not json",
            r#"{"type":"dance"}"#,
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","stream":"t","extra":1}"#,
            r#"["subscribe"]"#,
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(
                err.starts_with(
                    r#"expected {"type":"subscribe"|"unsubscribe","stream":"<token>"}: "#
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn replies_serialize_exactly() {
        assert_eq!(
            Reply::Subscribed {
                stream: "room:1",
                token: "t",
                seq: 3
            }
            .to_json(),
            r#"{"type":"subscribed","stream":"room:1","token":"t","seq":3}"#
        );
        assert_eq!(
            Reply::Error {
                code: ErrorCode::InvalidToken,
                message: "no".into(),
                token: None
            }
            .to_json(),
            r#"{"type":"error","code":"invalid_token","message":"no"}"#
        );
        assert_eq!(
            Reply::Hello {
                connection: "7".into()
            }
            .to_json(),
            r#"{"type":"hello","connection":"7"}"#
        );
    }
}
