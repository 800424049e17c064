//! Load benchmarks of turbo-model over real sockets.
//!
//! `fanout` (in `src/bin/fanout.rs`) starts the chat example and a naive broadcast server
//! (`src/bin/baseline.rs`) as child processes on loopback, connects N WebSocket
//! subscribers to each, posts M messages through HTTP and reports, as JSON, how many
//! frames arrived, how late, how fast, and what the server paid for them in memory and
//! CPU. `scripts/bench` builds everything in release and runs every scenario.
//!
//! Two more programs measure what one server cannot show:
//!
//! - `routing` (`scripts/bench --routing`): interest routing on Redis. Four chat
//!   processes, 1 000 rooms, each process's subscribers on its own quarter of them; what
//!   each process receives from Redis against its share.
//! - `crowd` (`scripts/bench --crowd`): 50 000 subscribers of one room over four chat
//!   processes on Redis, against four naive servers, with the subscribers spread over
//!   load-generator processes so that every process stays under its open-file limit.
//!
//! The pieces, in the order a scenario uses them:
//!
//! - [`server`]: a server under test as a child process, and its memory and CPU from `/proc`;
//! - [`publisher`]: the HTTP side: create the room, read its token, post the messages;
//! - [`subscriber`]: one WebSocket client that notes when each message arrives;
//! - [`stats`]: percentiles and ratios;
//! - [`report`]: what a scenario reports, as JSON and as a Markdown table;
//! - [`cli`]: what the programs share on the command line.

pub mod cli;
pub mod publisher;
pub mod report;
pub mod server;
pub mod stats;
pub mod subscriber;

/// What each benchmark message's text starts with, followed by its six-digit sequence
/// number: the frame that carries the message is matched to its POST by this.
pub const MARKER: &str = "msgseq";

/// The benchmark message with sequence number `seq`: about the length of a chat line,
/// and nothing HTML escaping would change, so that the marker reads the same in the frame.
pub fn message_text(seq: usize) -> String {
    format!("{MARKER}{seq:06} hello everyone, this is a chat line of an ordinary length")
}

/// The sequence number of the benchmark message a frame carries, if it carries one.
pub fn message_seq(frame: &str) -> Option<usize> {
    let at = frame.find(MARKER)? + MARKER.len();
    frame.get(at..at + 6)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_matched_to_its_message_by_the_marker() {
        let text = message_text(42);
        let frame = format!(
            r#"{{"type":"message","stream":"room:1","seq":3,"html":"<li><span class=\"text\">{text}</span></li>"}}"#
        );
        assert_eq!(message_seq(&frame), Some(42));
        assert_eq!(message_seq(r#"{"type":"message","html":"warm-up"}"#), None);
        assert_eq!(message_seq("msgseq12"), None);
    }
}
