//! Fuzzes the parser of inbound WebSocket text frames
//! (`turbo_model::__private::fuzz::parse_inbound`).
//!
//! On every input: no panic; a refused frame gets one message, which starts with the
//! same `expected ...` prefix as every other refusal; a frame that is accepted is JSON,
//! and when it is an object its `type` is a known request and its fields are known ones.
//! Also (the findings fixed after the first runs): an accepted frame is an object, and a refusal
//! is one line (both fail today; TESTING.md, "Findings").

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use turbo_model::__private::fuzz::parse_inbound;

/// Request types the protocol has or is about to have (`pong`).
const TYPES: &[&str] = &["subscribe", "unsubscribe", "pong"];
/// Fields a request has or is about to have (`since`, on `subscribe`).
const FIELDS: &[&str] = &["type", "stream", "since"];

/// The part every refusal starts with: what the three refusals below have in common
/// (their reasons from serde_json start differently).
static PREFIX: LazyLock<String> = LazyLock::new(|| {
    let refusals = ["", "[]", "{}"].map(|frame| parse_inbound(frame).expect_err(frame));
    let common = refusals[0]
        .char_indices()
        .find(|&(i, c)| {
            refusals
                .iter()
                .any(|r| r.get(i..).is_none_or(|rest| !rest.starts_with(c)))
        })
        .map_or(refusals[0].len(), |(i, _)| i);
    let prefix = refusals[0][..common].to_owned();
    assert!(prefix.starts_with("expected ") && prefix.len() > "expected ".len());
    prefix
});

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    match parse_inbound(frame) {
        Ok(()) => {
            let value: serde_json::Value =
                serde_json::from_str(frame).expect("an accepted frame is JSON");
            match value.as_object() {
                Some(request) => {
                    let kind = request.get("type").and_then(|t| t.as_str());
                    assert!(kind.is_some_and(|k| TYPES.contains(&k)), "{frame:?}");
                    assert!(
                        request.keys().all(|k| FIELDS.contains(&k.as_str())),
                        "{frame:?}"
                    );
                    if let Some(stream) = request.get("stream") {
                        assert!(stream.is_string(), "{frame:?}");
                    }
                }
                None => panic!("a frame that is not a JSON object was accepted: {frame:?}"),
            }
        }
        Err(message) => {
            assert!(message.starts_with(PREFIX.as_str()), "{message:?}");
            assert!(!message.contains(['\n', '\r']), "{message:?}");
        }
    }
});
