//! One broadcast as it travels, and where a client is in a stream.

use std::sync::{Arc, OnceLock};

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;

use crate::stream::StreamName;

/// One broadcast as it travels: its place in the stream and its wire forms, each made
/// once and shared by every subscriber.
#[derive(Debug)]
pub struct Frame {
    stream: StreamName,
    epoch: u64,
    seq: u64,
    html: Box<str>,
    json: Utf8Bytes,
    sse: OnceLock<Utf8Bytes>,
}

impl Frame {
    /// The stream.
    pub fn stream(&self) -> &StreamName {
        &self.stream
    }

    /// The sequence number within the stream's epoch.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The epoch of the stream's record when this was published.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The `<turbo-stream>` element.
    pub fn html(&self) -> &str {
        &self.html
    }

    /// The WebSocket text frame.
    pub fn json(&self) -> &Utf8Bytes {
        &self.json
    }

    /// The Server-Sent Events record, made on first use and then shared.
    pub fn sse(&self) -> &Utf8Bytes {
        self.sse.get_or_init(|| {
            let mut event = format!("id: {}\n", Position::new(self.epoch, self.seq));
            for line in self.html.lines() {
                event.push_str("data: ");
                event.push_str(line);
                event.push('\n');
            }
            event.push('\n');
            Utf8Bytes::from(event)
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.json.len()
    }

    /// A broadcast's frame, serialized once; `None` (logged) if serialization fails.
    pub(crate) fn message(
        stream: &StreamName,
        epoch: u64,
        seq: u64,
        html: &str,
    ) -> Option<Arc<Self>> {
        let json = serde_json::to_string(&MessageFrame {
            r#type: "message",
            stream: stream.as_str(),
            seq,
            html,
        });
        match json {
            Ok(json) => Some(Arc::new(Self {
                stream: stream.clone(),
                epoch,
                seq,
                html: html.into(),
                json: Utf8Bytes::from(json),
                sse: OnceLock::new(),
            })),
            Err(error) => {
                tracing::error!(%stream, %error, "could not serialize a frame");
                None
            }
        }
    }

    /// The stand-in for `frame` sent to the connection that must not apply it.
    pub(crate) fn skip(frame: &Self) -> Arc<Self> {
        let json = serde_json::to_string(&MessageFrame {
            r#type: "skip",
            stream: frame.stream.as_str(),
            seq: frame.seq,
            html: "",
        })
        .unwrap_or_default();
        Arc::new(Self {
            stream: frame.stream.clone(),
            epoch: frame.epoch,
            seq: frame.seq,
            html: "".into(),
            json: Utf8Bytes::from(json),
            sse: OnceLock::new(),
        })
    }
}

/// Where a client is in a stream: the epoch and the last sequence number it applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The stream record's epoch.
    pub epoch: u64,
    /// The last sequence number applied.
    pub seq: u64,
}

impl Position {
    /// A position.
    pub fn new(epoch: u64, seq: u64) -> Self {
        Self { epoch, seq }
    }

    /// The epoch as the protocol writes it: 16 hex digits.
    pub fn epoch_hex(epoch: u64) -> String {
        format!("{epoch:016x}")
    }

    /// Parses `epoch_hex.seq`, the form used as a Server-Sent Events id.
    pub fn parse(text: &str) -> Option<Self> {
        let (epoch, seq) = text.trim().split_once('.')?;
        Some(Self {
            epoch: u64::from_str_radix(epoch, 16).ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}.{}", self.epoch, self.seq)
    }
}

/// Why a resume could not be served from history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gap {
    /// The frames after the client's position were trimmed (count or age).
    History,
    /// The stream's record is not the one the client knew: it expired, or the server
    /// restarted.
    Epoch,
}

/// The wire form of one broadcast over a WebSocket.
#[derive(Serialize)]
struct MessageFrame<'a> {
    r#type: &'static str,
    stream: &'a str,
    seq: u64,
    html: &'a str,
}
