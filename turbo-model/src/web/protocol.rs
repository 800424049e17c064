//! The wire: the WebSocket protocol between the client element and the server, and the
//! Server-Sent Events records of the SSE endpoint. Every encoding of a frame is made
//! here, once per frame and transport.
//!
//! Every WebSocket text message is a JSON object, the *header*. A broadcast's header is
//! followed by a newline and the `<turbo-stream>` element as it is, unescaped: the
//! element is copied into the message once and never escaped, however long it is, and a
//! client reads it as the text after the first newline (JSON written by the server has
//! no newline).
//!
//! Client to server:
//!
//! ```json
//! {"type":"subscribe","stream":"<signed token>"}
//! {"type":"subscribe","stream":"<signed token>","since":{"epoch":"9f2c…","seq":41}}
//! {"type":"subscribe","stream":"<signed token>","since":{"time":1733000000123456}}
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
//! {"type":"message","stream":"room:1","seq":45}
//! <turbo-stream …>…</turbo-stream>
//! {"type":"skip","stream":"room:1","seq":46}
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
//! A page's first subscription sends the `time` its request began (microseconds since
//! the Unix epoch, from the `since` attribute the tag rendered): `subscribed` then
//! carries the stream's position at that time, and what was broadcast since follows.
//! When the missed frames are no longer kept, `subscribed` says `"gap":"history"` (trimmed)
//! or `"gap":"epoch"` (the server restarted, or forgot the stream) and the client must
//! recover by reloading what it shows.
//!
//! `hello` names the connection with a signed token; the client sends it back in the
//! `X-Turbo-Model-Connection` header of Turbo's requests (see
//! [`request_scope`](crate::response::request_scope)).
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

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::one_line;
use crate::hub::{Frame, Gap, Position, Since, UNKNOWN};

/// Largest inbound message or frame accepted, in bytes.
pub const MAX_INBOUND_BYTES: usize = 64 * 1024;

/// Where the client starts in a stream, as it sends it.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub(crate) enum WireSince {
    /// The epoch and the last sequence number it applied.
    Position(WirePosition),
    /// The time its page's request began, in microseconds since the Unix epoch.
    Time(WireTime),
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct WirePosition {
    epoch: String,
    seq: u64,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct WireTime {
    time: u64,
}

impl WireSince {
    /// Where to start. An epoch that is not 16 hex digits is a position no server ever
    /// gave out: resuming from it is a gap.
    pub(crate) fn since(&self) -> Since {
        match self {
            Self::Time(WireTime { time }) => Since::Time(*time),
            Self::Position(WirePosition { epoch, seq }) => {
                let epoch = (epoch.len() == 16)
                    .then(|| u64::from_str_radix(epoch, 16).ok())
                    .flatten();
                Since::Position(epoch.map_or(UNKNOWN, |epoch| Position::new(epoch, *seq)))
            }
        }
    }
}

/// A client's request.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Inbound {
    Subscribe {
        stream: String,
        #[serde(default)]
        since: Option<WireSince>,
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

impl ErrorCode {
    /// The code as the client sees it.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::BinaryNotSupported => "binary_not_supported",
            Self::InvalidToken => "invalid_token",
            Self::TooManySubscriptions => "too_many_subscriptions",
            Self::RateLimited => "rate_limited",
            Self::Forbidden => "forbidden",
        }
    }
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

/// The encoded forms a frame keeps, one per transport.
const WEBSOCKET: usize = 0;
const EVENT_SOURCE: usize = 1;

/// The header of one broadcast over a WebSocket.
#[derive(Serialize)]
struct MessageHeader<'a> {
    r#type: &'static str,
    stream: &'a str,
    seq: u64,
}

/// The WebSocket text message of a broadcast: the `message` header, a newline and the
/// element; or the `skip` header alone, for the connection that must not apply it.
///
/// Returned as a whole WebSocket frame, header included: a server's frames are not
/// masked, so the same bytes go to every subscriber. Encoded once per frame, then shared.
pub(crate) fn message(frame: &Frame) -> &Bytes {
    frame.encoded(WEBSOCKET, |frame| {
        // Serializing a string and a number cannot fail; an empty object is a safe
        // fallback.
        let header = serde_json::to_string(&MessageHeader {
            r#type: if frame.is_skip() { "skip" } else { "message" },
            stream: frame.stream().as_str(),
            seq: frame.seq(),
        })
        .unwrap_or_else(|_| String::from("{}"));
        if frame.is_skip() {
            return ws_frame(OPCODE_TEXT, &[header.as_bytes()]);
        }
        ws_frame(
            OPCODE_TEXT,
            &[header.as_bytes(), b"\n", frame.html().as_bytes()],
        )
    })
}

/// The WebSocket opcodes the server sends (RFC 6455, section 5.2).
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;

/// One final, unmasked WebSocket frame carrying `parts` one after the other.
fn ws_frame(opcode: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    let mut out = Vec::with_capacity(len + 10);
    out.push(0x80 | opcode);
    if len < 126 {
        // Fits in the 7-bit length.
        out.push(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// A text message as a whole WebSocket frame, ready to write.
pub(crate) fn text_frame(text: &str) -> Bytes {
    Bytes::from(ws_frame(OPCODE_TEXT, &[text.as_bytes()]))
}

/// A close frame with its code and reason, ready to write. A reason is cut to what a
/// control frame holds (123 bytes), at a character boundary.
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Bytes::from(ws_frame(
        OPCODE_CLOSE,
        &[&code.to_be_bytes(), &reason.as_bytes()[..end]],
    ))
}

/// The Server-Sent Events record of a broadcast: its position as the id, the element as
/// `data:` lines. Encoded once per frame, then shared.
///
/// EventSource ends a line at CR, LF or CRLF, so the element is split at each of them:
/// a broadcast's text can never start a field of its own (`id:`, `retry:`, `event:`).
pub(crate) fn event(frame: &Frame) -> &Bytes {
    frame.encoded(EVENT_SOURCE, |frame| {
        let mut event = format!("id: {}\n", frame.position());
        if !frame.is_skip() {
            for line in sse_lines(frame.html()) {
                event.push_str("data: ");
                event.push_str(line);
                event.push('\n');
            }
        }
        event.push('\n');
        event.into_bytes()
    })
}

/// `text` split at CR, LF and CRLF, as EventSource reads lines.
fn sse_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            Some(at) => {
                let skip = if current[at..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[at + skip..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
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
            }) => assert_eq!(since.since(), Since::Position(Position::new(255, 4))),
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
            let since = WireSince::Position(WirePosition {
                epoch: epoch.into(),
                seq: 1,
            });
            assert_eq!(since.since(), Since::Position(UNKNOWN), "{epoch:?}");
        }
    }

    #[test]
    fn a_page_sends_the_time_its_request_began() {
        match parse(r#"{"type":"subscribe","stream":"t","since":{"time":1733000000123456}}"#) {
            Ok(Inbound::Subscribe {
                since: Some(since), ..
            }) => assert_eq!(since.since(), Since::Time(1_733_000_000_123_456)),
            other => panic!("{other:?}"),
        }
        assert!(parse(r#"{"type":"subscribe","stream":"t","since":{"time":1,"seq":2}}"#).is_err());
    }

    /// The payload of one whole, final, unmasked text frame, read back by tungstenite's
    /// own parser.
    fn text_of(bytes: &Bytes) -> &str {
        payload_of(
            bytes,
            tungstenite::protocol::frame::coding::OpCode::Data(
                tungstenite::protocol::frame::coding::Data::Text,
            ),
        )
    }

    fn payload_of(bytes: &Bytes, opcode: tungstenite::protocol::frame::coding::OpCode) -> &str {
        use tungstenite::protocol::frame::FrameHeader;
        let mut cursor = std::io::Cursor::new(&bytes[..]);
        let (header, len) = FrameHeader::parse(&mut cursor)
            .expect("a valid header")
            .expect("a whole header");
        assert!(header.is_final);
        assert_eq!(header.opcode, opcode);
        assert_eq!(header.mask, None, "a server's frames are not masked");
        let start = usize::try_from(cursor.position()).expect("small");
        assert_eq!(
            bytes.len() - start,
            usize::try_from(len).expect("small"),
            "length"
        );
        std::str::from_utf8(&bytes[start..]).expect("UTF-8")
    }

    fn str_of(bytes: &Bytes) -> &str {
        std::str::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn frames_of_every_length_encoding_parse_back() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
            let text = "x".repeat(len);
            let frame = text_frame(&text);
            assert_eq!(text_of(&frame), text, "{len}");
            let header = match len {
                0..=125 => 2,
                126..=65_535 => 4,
                _ => 10,
            };
            assert_eq!(frame.len(), header + len, "{len}");
        }
    }

    #[test]
    fn close_frames_carry_the_code_and_a_reason_cut_to_fit() {
        use tungstenite::protocol::frame::coding::{Control, OpCode};
        let close = close_frame(1013, "too slow");
        assert_eq!(&close[..4], &[0x88, 10, 0x03, 0xf5]);
        assert_eq!(&close[4..], b"too slow");
        // A reason of 200 two-byte characters: cut to 61 characters, 122 bytes.
        let long = close_frame(1000, &"é".repeat(200));
        let payload = &long[2..];
        assert_eq!(payload.len(), 2 + 122);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        let mut cursor = std::io::Cursor::new(&long[..]);
        let (header, len) = tungstenite::protocol::frame::FrameHeader::parse(&mut cursor)
            .expect("valid")
            .expect("whole");
        assert_eq!(header.opcode, OpCode::Control(Control::Close));
        assert_eq!(len, 124);
    }

    fn frame(html: &str) -> std::sync::Arc<Frame> {
        let stream = crate::name::StreamName::new("r").expect("name");
        Frame::message(
            &stream,
            Position::new(255, 1),
            0,
            std::sync::Arc::from(html),
        )
    }

    #[test]
    fn the_element_follows_the_header_as_it_is_and_sse_splits_lines() {
        let frame = frame("<p>\"a\"\nb</p>");
        assert_eq!(
            text_of(message(&frame)),
            "{\"type\":\"message\",\"stream\":\"r\",\"seq\":1}\n<p>\"a\"\nb</p>"
        );
        assert_eq!(
            str_of(event(&frame)),
            "id: 00000000000000ff.1\ndata: <p>\"a\"\ndata: b</p>\n\n"
        );
        assert!(
            std::ptr::eq(message(&frame), message(&frame)),
            "encoded once"
        );
    }

    #[test]
    fn a_carriage_return_cannot_start_an_sse_field() {
        let frame = frame("x\rretry: 2147483647\revent: x\rid: 0.4242\r\ny\n\rz");
        assert_eq!(
            str_of(event(&frame)),
            "id: 00000000000000ff.1\ndata: x\ndata: retry: 2147483647\ndata: event: x\ndata: id: 0.4242\ndata: y\ndata: \ndata: z\n\n"
        );
    }

    #[test]
    fn skips_carry_the_number_and_nothing_else() {
        let skip = Frame::skip(&frame("<p>hi</p>"));
        assert_eq!(
            text_of(message(&skip)),
            r#"{"type":"skip","stream":"r","seq":1}"#
        );
        assert_eq!(str_of(event(&skip)), "id: 00000000000000ff.1\n\n");
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
