//! One broadcast as it travels, and where a client is in a stream.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::Serialize;

use crate::name::StreamName;

/// How many encoded forms a frame can hold (one per transport); see [`Frame::encoded`].
pub(crate) const ENCODED_FORMS: usize = 2;

/// One broadcast as it travels: its stream, its place in the stream, when it was
/// published and its `<turbo-stream>` element. Every subscriber shares the same frame.
///
/// The hub knows nothing of wire formats: the transports encode a frame on first use
/// and keep the encoding in the frame, so that a broadcast is encoded once per
/// transport however many subscribers it has.
#[derive(Debug)]
pub struct Frame {
    stream: StreamName,
    position: Position,
    time: u64,
    html: Arc<str>,
    skip: bool,
    encoded: [OnceLock<Bytes>; ENCODED_FORMS],
}

impl Frame {
    /// A broadcast's frame.
    pub(crate) fn message(
        stream: &StreamName,
        position: Position,
        time: u64,
        html: Arc<str>,
    ) -> Arc<Self> {
        Arc::new(Self {
            stream: stream.clone(),
            position,
            time,
            html,
            skip: false,
            encoded: Default::default(),
        })
    }

    /// The stand-in for `frame` sent to the connection that must not apply it: same
    /// position, no content.
    pub(crate) fn skip(frame: &Self) -> Arc<Self> {
        Arc::new(Self {
            stream: frame.stream.clone(),
            position: frame.position,
            time: frame.time,
            html: Arc::from(""),
            skip: true,
            encoded: Default::default(),
        })
    }

    /// The stream.
    pub fn stream(&self) -> &StreamName {
        &self.stream
    }

    /// The sequence number within the stream's epoch.
    pub fn seq(&self) -> u64 {
        self.position.seq
    }

    /// The epoch of the stream's record when this was published.
    pub fn epoch(&self) -> u64 {
        self.position.epoch
    }

    /// The stream's position once this frame is applied.
    pub fn position(&self) -> Position {
        self.position
    }

    /// When it was published: microseconds since the Unix epoch.
    pub fn time(&self) -> u64 {
        self.time
    }

    /// The `<turbo-stream>` element (empty for a skip).
    pub fn html(&self) -> &str {
        &self.html
    }

    /// The element, shared (the history keeps it without a copy).
    pub(super) fn shared_html(&self) -> &Arc<str> {
        &self.html
    }

    /// Whether this stands in for a broadcast that its connection must not apply.
    pub fn is_skip(&self) -> bool {
        self.skip
    }

    /// The frame in encoded form number `form`, encoded by `encode` on first use.
    pub(crate) fn encoded(&self, form: usize, encode: impl FnOnce(&Self) -> Vec<u8>) -> &Bytes {
        self.encoded[form].get_or_init(|| Bytes::from(encode(self)))
    }

    /// Bytes this frame counts for in a queue: its element and stream name, and a
    /// fixed allowance for the rest. Fixed for the frame's life, so that what a push
    /// adds its dequeue takes away.
    pub(crate) fn len(&self) -> usize {
        self.html.len() + self.stream.as_str().len() + 48
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

/// Where a subscriber asks to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// After this position: the last frame the client applied (a reconnect).
    Position(Position),
    /// After this wall-clock time, in microseconds since the Unix epoch: a page's first
    /// subscription, from the time its request began, so that what was broadcast while
    /// the page was rendered and loaded is replayed.
    Time(u64),
}

impl Since {
    /// Parses a client's `since`: `epoch_hex.seq` (a position) or `t` and microseconds
    /// (a time). Anything else is a position no server gave out, which resumes as a gap.
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        if let Some(time) = text.strip_prefix('t').and_then(|t| t.parse().ok()) {
            return Self::Time(time);
        }
        Self::Position(Position::parse(text).unwrap_or(UNKNOWN))
    }
}

/// A position no server gives out: resuming from it is an epoch gap.
pub(crate) const UNKNOWN: Position = Position {
    epoch: 0,
    seq: u64::MAX,
};

/// Why a resume could not be served from history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gap {
    /// The frames after the client's position were trimmed (count, age or memory).
    History,
    /// The stream's record is not the one the client knew: it expired, or the server
    /// restarted.
    Epoch,
}

/// What a stream's record can tell a subscriber: the in-process hub and a broker's log
/// both answer through [`resolve`].
#[derive(Debug)]
pub(crate) struct Record<'a> {
    /// Where the stream is.
    pub(crate) position: Position,
    /// The kept frames' sequence numbers and times, oldest first.
    pub(crate) kept: &'a [(u64, u64)],
    /// The time of the newest frame that is no longer kept (0 if none).
    pub(crate) trimmed_until: u64,
    /// When this record of the stream was made.
    pub(crate) created: u64,
    /// A record of this stream made before this one, with frames after this time, may
    /// have been forgotten (a restart, an expiry).
    pub(crate) forgotten_until: u64,
}

/// The answer to a subscriber: replay the frames after `seq`, or a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Replay the kept frames with a higher sequence number (none when `seq` is the
    /// stream's own).
    After(u64),
    /// The frames cannot be had.
    Gap(Gap),
}

/// Where `since` starts in `record`.
pub(crate) fn resolve(since: Since, record: &Record<'_>) -> Resolution {
    let now = record.position;
    let oldest = record.kept.first().map_or(now.seq + 1, |&(seq, _)| seq);
    match since {
        Since::Position(p) => {
            if p.epoch != now.epoch || p.seq > now.seq {
                Resolution::Gap(Gap::Epoch)
            } else if p.seq == now.seq {
                Resolution::After(p.seq)
            } else if oldest > p.seq + 1 {
                Resolution::Gap(Gap::History)
            } else {
                Resolution::After(p.seq)
            }
        }
        Since::Time(time) => {
            if record.created > time && record.forgotten_until > time {
                return Resolution::Gap(Gap::Epoch);
            }
            if record.trimmed_until >= time && record.trimmed_until > 0 {
                return Resolution::Gap(Gap::History);
            }
            let before = record.kept.iter().rev().find(|&&(_, at)| at < time);
            Resolution::After(match before {
                Some(&(seq, _)) => seq,
                None => oldest - 1,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kept: &[(u64, u64)], seq: u64) -> Record<'_> {
        Record {
            position: Position::new(7, seq),
            kept,
            trimmed_until: 0,
            created: 100,
            forgotten_until: 50,
        }
    }

    #[test]
    fn positions_resume_from_history_or_say_why_not() {
        let kept = [(4, 400), (5, 500), (6, 600)];
        let r = record(&kept, 6);
        let at = |seq| Since::Position(Position::new(7, seq));
        assert_eq!(resolve(at(3), &r), Resolution::After(3));
        assert_eq!(resolve(at(6), &r), Resolution::After(6));
        assert_eq!(resolve(at(2), &r), Resolution::Gap(Gap::History));
        assert_eq!(resolve(at(7), &r), Resolution::Gap(Gap::Epoch));
        assert_eq!(
            resolve(Since::Position(Position::new(8, 3)), &r),
            Resolution::Gap(Gap::Epoch)
        );
    }

    #[test]
    fn times_start_after_the_last_frame_before_them() {
        let kept = [(4, 400), (5, 500), (6, 600)];
        let r = record(&kept, 6);
        assert_eq!(resolve(Since::Time(550), &r), Resolution::After(5));
        assert_eq!(resolve(Since::Time(500), &r), Resolution::After(4));
        assert_eq!(resolve(Since::Time(700), &r), Resolution::After(6));
        assert_eq!(resolve(Since::Time(300), &r), Resolution::After(3));
        let empty = record(&[], 6);
        assert_eq!(resolve(Since::Time(700), &empty), Resolution::After(6));
    }

    #[test]
    fn times_before_trimmed_or_forgotten_frames_are_gaps() {
        let kept = [(4, 400)];
        let trimmed = Record {
            trimmed_until: 350,
            ..record(&kept, 4)
        };
        assert_eq!(
            resolve(Since::Time(300), &trimmed),
            Resolution::Gap(Gap::History)
        );
        assert_eq!(resolve(Since::Time(360), &trimmed), Resolution::After(3));
        let newer = record(&[], 0);
        assert_eq!(
            resolve(Since::Time(40), &newer),
            Resolution::Gap(Gap::Epoch)
        );
        assert_eq!(resolve(Since::Time(60), &newer), Resolution::After(0));
    }

    #[test]
    fn since_parses_both_forms() {
        assert_eq!(Since::parse("t123"), Since::Time(123));
        assert_eq!(
            Since::parse("00000000000000ff.3"),
            Since::Position(Position::new(255, 3))
        );
        assert_eq!(Since::parse("nonsense"), Since::Position(UNKNOWN));
    }

    #[test]
    fn positions_parse_their_own_form_only() {
        let p = Position::new(0xabc, 42);
        assert_eq!(p.to_string(), "0000000000000abc.42");
        assert_eq!(Position::parse(&p.to_string()), Some(p));
        for bad in ["", "abc", "xyz.1", "1.-1", "1.", ".1"] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
    }
}
