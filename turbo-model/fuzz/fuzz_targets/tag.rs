//! Fuzzes the `turbo_subscribe` tag rewrite (`turbo_model::__private::fuzz::rewrite_tags`).
//!
//! On every input: no panic; the output has as many newlines as the source (Tera's line
//! numbers stay true); a source without `turbo_subscribe` comes back unchanged; an error
//! names a line of the source and says something. Also (the findings fixed after the first runs):
//! the message is one line (it fails today; TESTING.md, "Findings").

#![no_main]

use libfuzzer_sys::fuzz_target;
use turbo_model::__private::fuzz::rewrite_tags;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let newlines = source.matches('\n').count();
    match rewrite_tags(source) {
        Ok(output) => {
            assert_eq!(
                output.matches('\n').count(),
                newlines,
                "{source:?} -> {output:?}"
            );
            if !source.contains("turbo_subscribe") {
                assert_eq!(output, source);
            }
        }
        Err((line, message)) => {
            assert!(
                (1..=newlines + 1).contains(&line),
                "{source:?}: line {line}"
            );
            assert!(!message.is_empty());
            assert!(!message.contains('\n'), "{message:?}");
            assert!(source.contains("turbo_subscribe"), "{source:?}: {message}");
        }
    }
});
