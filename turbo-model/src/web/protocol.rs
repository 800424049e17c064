//! The WebSocket protocol between the client element and the server: JSON text frames.
//!
//! Client to server:
//!
//! ```json
//! {"type":"subscribe","stream":"<signed token>"}
//! {"type":"subscribe","stream":"<signed token>","since":{"epoch":"9f2c…","seq":41}}
//! {"type":"unsubscribe","stream":"<signed token>"}
//! {"type":"pong"}
//! ```
//!
//! Server to client:
//!
//! ```json
//! {"type":"hello","connection":"17.Xq3…","heartbeat_ms":25000}
//! {"type":"subscribed","stream":"room:1","token":"…","epoch":"9f2c…","seq":44}
//! {"type":"subscribed","stream":"room:1","token":"…","epoch":"77a0…","seq":3,"gap":"epoch"}
//! {"type":"unsubscribed","stream":"room:1","token":"…"}
//! {"type":"message","stream":"room:1","seq":45,"html":"<turbo-stream …>"}
//! {"type":"skip","stream":"room:1","seq":46,"html":""}
//! {"type":"ping"}
//! {"type":"error","code":"invalid_token","message":"…","token":"…"}
//! ```
//!
//! # Subscribing and resuming
//!
//! `subscribed` carries the stream's epoch and its last sequence number; `message`
//! frames continue from `seq + 1`. A `skip` takes a message's number for the one page
//! that must not apply it (the page whose request made it, which has it already): the
//! client moves its position on and applies nothing. A client that was subscribed before sends `since`
//! (the epoch and the last `seq` it applied): the server replays what it missed right
//! after `subscribed`, in order, then live frames follow with nothing lost or repeated.
//! When the missed frames are no longer kept, `subscribed` says `"gap":"history"` (trimmed)
//! or `"gap":"epoch"` (the server restarted, or forgot the stream) and the client must
//! recover by reloading what it shows.
//!
//! `hello` names the connection with a signed token; the client sends it back in the
//! `X-Turbo-Model-Connection` header of Turbo's requests (see
//! [`request_scope`](super::request_scope)).
//!
//! # Heartbeats
//!
//! The server sends `ping` every `heartbeat_ms`; the client answers `pong`. A server
//! that hears nothing from a client for two intervals closes the connection (code 4000);
//! a client that hears nothing for two intervals reconnects.
//!
//! # Errors
//!
//! Refused requests get an `error` frame and the connection stays open. Codes:
//! `bad_request`, `binary_not_supported`, `invalid_token`, `too_many_subscriptions`,
//! `rate_limited`, `forbidden` (the application's
//! [authorization](crate::Builder::authorize) refused the stream). Close codes: 1009 (a message over 64 KiB), 1008 (a flood of refused
//! requests), 1013 (too slow to keep up: reconnect and resume), 1012 (server restarting:
//! reconnect), 4000 (heartbeat timeout).

use serde::{Deserialize, Serialize};

use crate::error::one_line;
use crate::hub::{Gap, Position};

/// Largest inbound message or frame accepted, in bytes.
pub const MAX_INBOUND_BYTES: usize = 64 * 1024;

/// Where the client was in a stream, as it sends it.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Since {
    epoch: String,
    seq: u64,
}

impl Since {
    /// The position, or `None` when the epoch is not 16 hex digits (a position no
    /// server ever gave out, so a gap).
    pub(crate) fn position(&self) -> Option<Position> {
        if self.epoch.len() != 16 {
            return None;
        }
        let epoch = u64::from_str_radix(&self.epoch, 16).ok()?;
        Some(Position::new(epoch, self.seq))
    }
}

/// A client's request.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Inbound {
    Subscribe {
        stream: String,
        #[serde(default)]
        since: Option<Since>,
    },
    Unsubscribe {
        stream: String,
    },
    Pong {},
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
    /// The client sends requests faster than allowed.
    RateLimited,
    /// The application's authorization refused the subscription.
    Forbidden,
}

/// A message from the server that is not a broadcast.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Reply<'a> {
    Hello {
        connection: String,
        heartbeat_ms: u64,
    },
    Subscribed {
        stream: &'a str,
        token: &'a str,
        epoch: String,
        seq: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        gap: Option<Gap>,
    },
    Unsubscribed {
        stream: &'a str,
        token: &'a str,
    },
    Ping,
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

/// What a malformed request is told; the start of every `bad_request` message.
pub(crate) const EXPECTED: &str =
    r#"expected {"type":"subscribe"|"unsubscribe","stream":"<token>"} or {"type":"pong"}"#;

/// Parses one text frame.
///
/// Only a JSON object is a request (serde would also read one from an array). The
/// message of a refusal quotes what the client sent, so control characters in it are
/// escaped: a refusal is always one line, whatever lands in a log.
pub(crate) fn parse(text: &str) -> Result<Inbound, String> {
    if !text.trim_start().starts_with('{') {
        return Err(format!("{EXPECTED}: a request is a JSON object"));
    }
    serde_json::from_str(text).map_err(|e| format!("{EXPECTED}: {}", one_line(&e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse(r#"{"type":"subscribe","stream":"t"}"#),
            Ok(Inbound::Subscribe {
                stream: "t".into(),
                since: None
            })
        );
        let resume = parse(
            r#"{"type":"subscribe","stream":"t","since":{"epoch":"00000000000000ff","seq":4}}"#,
        );
        match resume {
            Ok(Inbound::Subscribe {
                since: Some(since), ..
            }) => assert_eq!(since.position(), Some(Position::new(255, 4))),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(r#"{"type":"unsubscribe","stream":"t"}"#),
            Ok(Inbound::Unsubscribe { stream: "t".into() })
        );
        assert_eq!(parse(r#"{"type":"pong"}"#), Ok(Inbound::Pong {}));
    }

    #[test]
    fn epochs_that_no_server_gives_are_not_positions() {
        for epoch in ["", "ff", "zzzzzzzzzzzzzzzz", "00000000000000ff0"] {
            let since = Since {
                epoch: epoch.into(),
                seq: 1,
            };
            assert_eq!(since.position(), None, "{epoch:?}");
        }
    }

    #[test]
    fn bad_requests_say_what_is_expected() {
        for bad in [
            "not json",
            r#"{"type":"dance"}"#,
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","stream":"t","extra":1}"#,
            r#"{"type":"subscribe","stream":"t","since":{"seq":1}}"#,
            r#"{"type":"subscribe","stream":"t","since":{"epoch":"x","seq":-1}}"#,
            r#"{"type":"pong","x":1}"#,
            r#"["subscribe"]"#,
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.starts_with(&format!("{EXPECTED}: ")), "{err}");
        }
    }

    #[test]
    fn arrays_are_not_requests_and_refusals_are_one_line() {
        for array in [r#"["subscribe","t"]"#, r#"["pong"]"#, " [1]"] {
            assert_eq!(
                parse(array),
                Err(format!("{EXPECTED}: a request is a JSON object")),
                "{array}"
            );
        }
        let err =
            parse("{\"type\":\"sub\\r\\nscribe\",\"stream\":\"t\"}").expect_err("unknown type");
        assert!(!err.contains('\n') && !err.contains('\r'), "{err}");
        assert!(err.contains("sub\\r\\nscribe"), "{err}");
    }

    #[test]
    fn replies_serialize_exactly() {
        assert_eq!(
            Reply::Subscribed {
                stream: "room:1",
                token: "t",
                epoch: Position::epoch_hex(255),
                seq: 3,
                gap: None
            }
            .to_json(),
            r#"{"type":"subscribed","stream":"room:1","token":"t","epoch":"00000000000000ff","seq":3}"#
        );
        assert_eq!(
            Reply::Subscribed {
                stream: "room:1",
                token: "t",
                epoch: Position::epoch_hex(1),
                seq: 0,
                gap: Some(Gap::History)
            }
            .to_json(),
            r#"{"type":"subscribed","stream":"room:1","token":"t","epoch":"0000000000000001","seq":0,"gap":"history"}"#
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
                connection: "7".into(),
                heartbeat_ms: 25_000
            }
            .to_json(),
            r#"{"type":"hello","connection":"7","heartbeat_ms":25000}"#
        );
        assert_eq!(Reply::Ping.to_json(), r#"{"type":"ping"}"#);
    }
}
