//! What a stream keeps for clients that reconnect: its last frames, one copy each.
//!
//! A kept frame is its sequence number, its time and its `<turbo-stream>` element, shared
//! with the frame that went out (the transports' encodings of that frame live only as
//! long as some queue holds it). Every byte kept counts against the hub's budget
//! ([`HubSettings::history_bytes`](super::HubSettings::history_bytes)); what is dropped
//! (by count, age or budget) is remembered by its time, so that a client that needed it
//! gets the gap signal.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Frame, HubSettings, Position};
use crate::clock;
use crate::name::StreamName;

/// What one kept frame costs besides its element: its place in the deque, its numbers.
const OVERHEAD: usize = 48;

#[derive(Debug)]
struct Kept {
    seq: u64,
    time: u64,
    html: Arc<str>,
}

impl Kept {
    fn bytes(&self) -> usize {
        self.html.len() + OVERHEAD
    }
}

/// One stream's kept frames, oldest first.
#[derive(Debug, Default)]
pub(super) struct History {
    kept: VecDeque<Kept>,
    /// The time of the newest frame dropped (0: none).
    trimmed_until: u64,
    /// Bytes kept.
    bytes: usize,
}

impl History {
    /// Keeps `frame`; returns the bytes it added.
    pub(super) fn push(&mut self, frame: &Frame) -> usize {
        let kept = Kept {
            seq: frame.seq(),
            time: frame.time(),
            html: Arc::clone(frame.shared_html()),
        };
        let bytes = kept.bytes();
        self.bytes += bytes;
        self.kept.push_back(kept);
        bytes
    }

    /// Drops frames beyond the count or older than the age; returns the bytes freed.
    pub(super) fn trim(&mut self, settings: HubSettings) -> usize {
        let oldest_kept = clock::now_micros()
            .saturating_sub(u64::try_from(settings.history_age.as_micros()).unwrap_or(u64::MAX));
        let mut freed = 0;
        while let Some(front) = self.kept.front() {
            if self.kept.len() <= settings.history_len && front.time >= oldest_kept {
                break;
            }
            freed += self.pop_front();
        }
        freed
    }

    /// Drops the oldest frame; returns the bytes freed.
    pub(super) fn pop_front(&mut self) -> usize {
        match self.kept.pop_front() {
            Some(dropped) => {
                self.trimmed_until = self.trimmed_until.max(dropped.time);
                let bytes = dropped.bytes();
                self.bytes -= bytes;
                bytes
            }
            None => 0,
        }
    }

    /// Drops everything and forgets that anything was dropped (a new record of the
    /// stream starts); returns the bytes freed.
    pub(super) fn reset(&mut self) -> usize {
        let freed = self.bytes;
        *self = Self::default();
        freed
    }

    /// Drops everything, remembering it was dropped; returns the bytes freed.
    pub(super) fn drop_all(&mut self) -> usize {
        let mut freed = 0;
        while !self.kept.is_empty() {
            freed += self.pop_front();
        }
        freed
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn trimmed_until(&self) -> u64 {
        self.trimmed_until
    }

    /// The time of the oldest kept frame.
    pub(super) fn oldest_time(&self) -> Option<u64> {
        self.kept.front().map(|k| k.time)
    }

    /// The time of the newest kept frame.
    pub(super) fn newest_time(&self) -> Option<u64> {
        self.kept.back().map(|k| k.time)
    }

    /// The kept frames' sequence numbers and times, oldest first.
    pub(super) fn positions(&self) -> Vec<(u64, u64)> {
        self.kept.iter().map(|k| (k.seq, k.time)).collect()
    }

    /// The kept frames after `seq`, as frames of `stream` in `epoch`.
    pub(super) fn frames_after(
        &self,
        seq: u64,
        stream: &StreamName,
        epoch: u64,
    ) -> Vec<Arc<Frame>> {
        self.kept
            .iter()
            .filter(|k| k.seq > seq)
            .map(|k| {
                Frame::message(
                    stream,
                    Position::new(epoch, k.seq),
                    k.time,
                    Arc::clone(&k.html),
                )
            })
            .collect()
    }
}
