//! Fuzzes stream token verification (`turbo_model::Signer::verify`).
//!
//! Inputs are either any string a client may send, or a token we signed for a fuzzed
//! name and then edited once (a byte set, text inserted or removed, truncated, extended).
//! On every input: no panic; `verify` accepts a string only if it is exactly the token
//! `sign` gives for the name it returns (so no edit, and no other base64 spelling of the
//! same bytes, is accepted); a refusal is the variant its length calls for, in one line.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use turbo_model::{MAX_TOKEN_LEN, Signer, StreamName, TokenError};

static SIGNER: LazyLock<Signer> = LazyLock::new(|| {
    Signer::new(b"turbo-model fuzz key: 32 bytes or more").expect("a long enough secret")
});

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Raw(&'a str),
    Edited { name: &'a str, edit: Edit<'a> },
}

#[derive(Arbitrary, Debug)]
enum Edit<'a> {
    SetByte { at: usize, byte: u8 },
    Insert { at: usize, text: &'a str },
    Remove { at: usize, len: u8 },
    Truncate { len: usize },
    Append(&'a str),
}

/// Applies `edit` to `token`, which is ASCII (base64url and a dot), so every index is
/// a char boundary.
fn apply(token: &str, edit: &Edit<'_>) -> Option<String> {
    let mut bytes = token.as_bytes().to_vec();
    match *edit {
        Edit::SetByte { at, byte } => {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        Edit::Insert { at, text } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, text.bytes());
        }
        Edit::Remove { at, len } => {
            let at = at % bytes.len();
            let end = (at + usize::from(len).max(1)).min(bytes.len());
            bytes.drain(at..end);
        }
        Edit::Truncate { len } => bytes.truncate(len % bytes.len()),
        Edit::Append(text) => bytes.extend_from_slice(text.as_bytes()),
    }
    String::from_utf8(bytes).ok()
}

fn check(token: &str) {
    match SIGNER.verify(token) {
        Ok(name) => assert_eq!(
            SIGNER.sign(&name),
            token,
            "accepted a token we did not sign"
        ),
        Err(error) => {
            let expected_kind = match &error {
                TokenError::Empty => token.is_empty(),
                TokenError::TooLong { len, max } => {
                    *len == token.len() && *max == MAX_TOKEN_LEN && *len > MAX_TOKEN_LEN
                }
                _ => !token.is_empty() && token.len() <= MAX_TOKEN_LEN,
            };
            assert!(expected_kind, "{token:?}: {error:?}");
            let message = error.to_string();
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "{message:?}"
            );
        }
    }
}

fuzz_target!(|input: Input<'_>| {
    match input {
        Input::Raw(text) => check(text),
        Input::Edited { name, edit } => {
            let Ok(name) = StreamName::new(name) else {
                return;
            };
            let token = SIGNER.sign(&name);
            assert!(token.len() <= MAX_TOKEN_LEN, "{token}");
            assert_eq!(SIGNER.verify(&token).as_ref(), Ok(&name));
            if let Some(edited) = apply(&token, &edit) {
                check(&edited);
            }
        }
    }
});
