//! Properties of the three parsers that take input from outside the process: inbound
//! WebSocket frames, signed stream tokens and the `turbo_subscribe` template tag.
//!
//! The cargo-fuzz targets in `turbo-model/fuzz` check the same properties for longer;
//! TESTING.md at the repository root says how to run both, and what the runs found; the
//! findings are fixed, and their reproducers below are ordinary tests now.
//!
//! Case counts are set for each group so that the whole file runs in seconds in a debug
//! build; raise them with `PROPTEST_CASES` for a longer local run.

use proptest::prelude::*;
use proptest::sample::select;

/// `cases` cases, or `PROPTEST_CASES` when set; failures are not written to files
/// (a failure's input is in the test output, and goes into a named test here).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A string of these characters; `true` beside a character writes it as a `\u` escape.
fn json_string(chars: &[(char, bool)]) -> String {
    let mut out = String::from('"');
    for &(c, escape) in chars {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if escape || c < ' ' => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn decoded(chars: &[(char, bool)]) -> String {
    chars.iter().map(|&(c, _)| c).collect()
}

/// Any character but a control character. Controls are moved out of their ranges
/// (U+0000..=U+009F) rather than filtered, so that no case is thrown away.
fn non_control() -> impl Strategy<Value = char> {
    any::<char>().prop_map(|c| {
        if c.is_control() {
            char::from_u32(0x100 + u32::from(c)).unwrap_or('x')
        } else {
            c
        }
    })
}

mod inbound {
    use super::*;
    use turbo_model::__private::fuzz::parse_inbound;

    /// Request types the protocol has or is about to have (`pong`).
    const TYPES: &[&str] = &["subscribe", "unsubscribe", "pong"];
    /// Fields a request has or is about to have (`since`, on `subscribe`).
    const FIELDS: &[&str] = &["type", "stream", "since"];

    /// What every refusal starts with: the part three refusals have in common (their
    /// reasons from serde_json start with different letters). Worked out rather than
    /// written down, so that it stays right when the protocol grows.
    fn prefix() -> String {
        let refusals = ["", "[]", "{}"].map(|frame| parse_inbound(frame).expect_err(frame));
        let common = refusals[0]
            .char_indices()
            .find(|&(i, c)| {
                refusals
                    .iter()
                    .any(|r| r.get(i..).is_none_or(|rest| !rest.starts_with(c)))
            })
            .map_or(refusals[0].len(), |(i, _)| i);
        refusals[0][..common].to_owned()
    }

    fn is_one_line(message: &str) -> bool {
        !message.contains(['\n', '\r'])
    }

    /// What any frame may give: a refusal with the common prefix, or, when accepted, a
    /// JSON object with a known type and known fields (when it is an object at all: see
    /// `a_json_array_is_not_a_request`).
    fn check_any_frame(frame: &str, prefix: &str) -> Result<(), TestCaseError> {
        match parse_inbound(frame) {
            Err(message) => prop_assert!(message.starts_with(prefix), "{message:?}"),
            Ok(()) => {
                let value: serde_json::Value = serde_json::from_str(frame)
                    .map_err(|e| TestCaseError::fail(format!("accepted non-JSON: {e}")))?;
                if let Some(request) = value.as_object() {
                    let kind = request.get("type").and_then(|t| t.as_str());
                    prop_assert!(kind.is_some_and(|k| TYPES.contains(&k)), "{frame:?}");
                    prop_assert!(
                        request.keys().all(|k| FIELDS.contains(&k.as_str())),
                        "{frame:?}"
                    );
                    if let Some(stream) = request.get("stream") {
                        prop_assert!(stream.is_string(), "{frame:?}");
                    }
                }
            }
        }
        Ok(())
    }

    fn space() -> impl Strategy<Value = &'static str> {
        select(vec!["", " ", "\t", "\n", "\r\n", "  "])
    }

    /// JSON values other than strings.
    fn non_string() -> impl Strategy<Value = &'static str> {
        select(vec![
            "null",
            "true",
            "false",
            "0",
            "-1",
            "1.5e3",
            "[]",
            "{}",
            "[\"t\"]",
            "{\"t\":1}",
        ])
    }

    fn member(key: &str, value: &str, s: [&str; 3]) -> String {
        format!("{}\"{key}\"{}:{}{value}", s[0], s[1], s[2])
    }

    /// A request frame as a client may spell it: members in either order, any JSON
    /// whitespace, any token with characters written plainly or as `\u` escapes.
    fn request() -> impl Strategy<Value = (String, Vec<String>)> {
        (
            select(vec!["subscribe", "unsubscribe"]),
            prop::collection::vec((any::<char>(), any::<bool>()), 0..40),
            any::<bool>(),
            [
                space(),
                space(),
                space(),
                space(),
                space(),
                space(),
                space(),
            ],
        )
            .prop_map(|(kind, token, stream_first, s)| {
                let members = vec![
                    member("type", &format!("\"{kind}\""), [s[0], s[1], s[2]]),
                    member("stream", &json_string(&token), [s[3], s[4], s[5]]),
                ];
                let members = if stream_first {
                    members.into_iter().rev().collect()
                } else {
                    members
                };
                (s[6].to_owned(), members)
            })
    }

    fn object(members: &[String], space: &str) -> String {
        format!("{{{}{space}}}", members.join(","))
    }

    /// Pieces of JSON and of the protocol, for frames that get past the tokenizer.
    fn json_soup() -> impl Strategy<Value = String> {
        prop::collection::vec(
            select(vec![
                "{",
                "}",
                "[",
                "]",
                ":",
                ",",
                " ",
                "\"type\"",
                "\"stream\"",
                "\"since\"",
                "\"epoch\"",
                "\"seq\"",
                "\"subscribe\"",
                "\"unsubscribe\"",
                "\"pong\"",
                "\"t\"",
                "null",
                "0",
                "18446744073709551616",
                "\"",
                "\\",
                "\\u00e9",
                "\\ud800",
                "tru",
            ]),
            0..24,
        )
        .prop_map(|pieces| pieces.concat())
    }

    /// JSON arrays of protocol words and tokens, which serde reads as requests (the tag
    /// first, then the fields in order).
    fn json_array() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(
                select(vec![
                    "\"subscribe\"",
                    "\"unsubscribe\"",
                    "\"pong\"",
                    "\"t\"",
                    "1",
                    "{}",
                ]),
                0..4,
            ),
            space(),
        )
            .prop_map(|(items, space)| format!("[{space}{}]", items.join(",")))
    }

    /// A valid frame with one character inserted, removed or replaced.
    fn mutated_request() -> impl Strategy<Value = String> {
        (
            request(),
            any::<prop::sample::Index>(),
            any::<char>(),
            0..3u8,
        )
            .prop_map(|((space, members), at, c, how)| {
                let mut chars: Vec<char> = object(&members, &space).chars().collect();
                let at = at.index(chars.len());
                match how {
                    0 => chars.insert(at, c),
                    1 => {
                        chars.remove(at);
                    }
                    _ => chars[at] = c,
                }
                chars.into_iter().collect()
            })
    }

    #[test]
    fn refusals_share_a_prefix_that_says_what_is_expected() {
        let prefix = prefix();
        assert!(prefix.starts_with("expected "), "{prefix:?}");
        assert!(prefix.len() > "expected ".len(), "{prefix:?}");
    }

    proptest! {
        #![proptest_config(config(1000))]

        #[test]
        fn valid_requests_are_accepted((space, members) in request()) {
            let frame = object(&members, &space);
            prop_assert_eq!(parse_inbound(&frame), Ok(()), "{:?}", frame);
        }

        #[test]
        fn any_text_is_refused_with_the_prefix_or_accepted_as_a_request(
            frame in prop_oneof![any::<String>(), json_soup(), json_array(), mutated_request()],
        ) {
            check_any_frame(&frame, &prefix())?;
        }

        #[test]
        fn unknown_fields_are_refused(
            (space, mut members) in request(),
            key in prop::collection::vec((non_control(), any::<bool>()), 1..12)
                .prop_filter("not a field", |k| !FIELDS.contains(&decoded(k).as_str())),
            value in prop_oneof![non_string(), Just("\"t\"")],
            at in any::<prop::sample::Index>(),
            s in [space(), space(), space()],
        ) {
            members.insert(at.index(members.len() + 1), format!("{}{}{}:{}{value}", s[0], json_string(&key), s[1], s[2]));
            let message = parse_inbound(&object(&members, &space)).expect_err("unknown field");
            prop_assert!(message.starts_with(&prefix()), "{:?}", message);
            prop_assert!(is_one_line(&message), "{:?}", message);
        }

        #[test]
        fn fields_on_pong_are_refused(
            key in prop::collection::vec((non_control(), any::<bool>()), 1..12)
                .prop_filter("not the tag", |k| decoded(k) != "type"),
            value in prop_oneof![non_string(), Just("\"t\"")],
            key_first in any::<bool>(),
        ) {
            // `pong` has no fields: serde skips unknown fields of a unit variant even
            // with `deny_unknown_fields`, so this needs a variant with braces.
            let field = format!("{}:{value}", json_string(&key));
            let frame = if key_first {
                format!("{{{field},\"type\":\"pong\"}}")
            } else {
                format!("{{\"type\":\"pong\",{field}}}")
            };
            let message = parse_inbound(&frame).expect_err("a field on pong");
            prop_assert!(message.starts_with(&prefix()), "{:?}", message);
            prop_assert!(is_one_line(&message), "{:?}", message);
        }

        #[test]
        fn unknown_types_are_refused(
            kind in prop::collection::vec((non_control(), any::<bool>()), 0..12)
                .prop_filter("not a type", |k| !TYPES.contains(&decoded(k).as_str())),
            token in prop::collection::vec((any::<char>(), any::<bool>()), 0..12),
        ) {
            let frame = format!("{{\"type\":{},\"stream\":{}}}", json_string(&kind), json_string(&token));
            let message = parse_inbound(&frame).expect_err("unknown type");
            prop_assert!(message.starts_with(&prefix()), "{:?}", message);
            prop_assert!(is_one_line(&message), "{:?}", message);
        }

        #[test]
        fn a_stream_that_is_not_a_string_is_refused(
            kind in select(vec!["subscribe", "unsubscribe"]),
            stream in prop::option::of(non_string()),
        ) {
            let frame = match stream {
                Some(stream) => format!("{{\"type\":\"{kind}\",\"stream\":{stream}}}"),
                None => format!("{{\"type\":\"{kind}\"}}"),
            };
            let message = parse_inbound(&frame).expect_err("not a string");
            prop_assert!(message.starts_with(&prefix()), "{:?}", message);
            prop_assert!(is_one_line(&message), "{:?}", message);
        }
    }

    proptest! {
        #![proptest_config(config(1000))]

        /// Like `unknown_fields_are_refused` and `unknown_types_are_refused`, with control
        /// characters (written as escapes) in the unknown name.
        #[test]

        fn refusals_are_one_line(
            name in prop::collection::vec((any::<char>(), any::<bool>()), 1..12)
                .prop_filter("not a field or a type", |k| {
                    let k = decoded(k);
                    !FIELDS.contains(&k.as_str()) && !TYPES.contains(&k.as_str())
                }),
            as_type in any::<bool>(),
        ) {
            let name = json_string(&name);
            let frame = if as_type {
                format!("{{\"type\":{name},\"stream\":\"t\"}}")
            } else {
                format!("{{\"type\":\"subscribe\",\"stream\":\"t\",{name}:1}}")
            };
            let message = parse_inbound(&frame).expect_err("unknown name");
            prop_assert!(is_one_line(&message), "{:?}", message);
        }

        #[test]

        fn frames_that_are_not_json_objects_are_refused(
            frame in prop_oneof![any::<String>(), json_soup(), json_array(), mutated_request()]
                .prop_filter("not an object", |f| !f.trim_start().starts_with('{')),
        ) {
            prop_assert!(parse_inbound(&frame).is_err(), "{:?}", frame);
        }
    }

    #[test]

    fn a_json_array_is_not_a_request() {
        for frame in [r#"["subscribe","t"]"#, r#"["unsubscribe","t"]"#] {
            let refusal = parse_inbound(frame).expect_err(frame);
            assert!(refusal.starts_with(&prefix()), "{refusal}");
        }
    }

    #[test]

    fn a_refusal_quoting_a_name_with_a_line_break_is_one_line() {
        for frame in [
            r#"{"type":"subscribe","stream":"t","a\nb":1}"#,
            r#"{"type":"sub\r\nscribe","stream":"t"}"#,
            // Found by `cargo fuzz run inbound --features open-findings` in 5,127 runs.
            r#"["\n{""#,
        ] {
            let refusal = parse_inbound(frame).expect_err(frame);
            assert!(is_one_line(&refusal), "{refusal:?}");
        }
    }
}

mod token {
    use super::*;
    use turbo_model::StreamName;
    use turbo_model::name::MAX_STREAM_NAME_LEN;
    use turbo_model::signing::{MAX_TOKEN_LEN, Signer, TokenError};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    fn signer() -> Signer {
        Signer::new(b"turbo-model property tests: a 32+ byte key").expect("a long enough secret")
    }

    /// The longest prefix of `chars` that is a valid stream name's length.
    fn fit(chars: Vec<char>) -> String {
        let mut name = String::new();
        for c in chars {
            if name.len() + c.len_utf8() > MAX_STREAM_NAME_LEN {
                break;
            }
            name.push(c);
        }
        name
    }

    /// Valid stream names: typical ones, any characters but controls, and long ones up
    /// to exactly [`MAX_STREAM_NAME_LEN`] bytes.
    fn stream_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_]{1,12}:[0-9]{1,6}",
            prop::collection::vec(non_control(), 1..40).prop_map(fit),
            prop::collection::vec(non_control(), 64..=MAX_STREAM_NAME_LEN).prop_map(fit),
            (1..=MAX_STREAM_NAME_LEN).prop_map(|n| "x".repeat(n)),
        ]
    }

    #[derive(Clone, Debug)]
    enum Edit {
        Set(prop::sample::Index, char),
        Insert(prop::sample::Index, String),
        Remove(prop::sample::Index, usize),
        Truncate(prop::sample::Index),
        Append(String),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let text = prop_oneof!["[A-Za-z0-9_.=+/-]{1,4}", ".{1,4}"];
        prop_oneof![
            (
                any::<prop::sample::Index>(),
                prop_oneof![select(ALPHABET.map(char::from).to_vec()), any::<char>()]
            )
                .prop_map(|(at, c)| Edit::Set(at, c)),
            (any::<prop::sample::Index>(), text.clone()).prop_map(|(at, t)| Edit::Insert(at, t)),
            (any::<prop::sample::Index>(), 1..4usize).prop_map(|(at, n)| Edit::Remove(at, n)),
            any::<prop::sample::Index>().prop_map(Edit::Truncate),
            text.prop_map(Edit::Append),
        ]
    }

    /// `token` (ASCII, so every index is a char boundary) with `edit` applied.
    fn apply(token: &str, edit: &Edit) -> String {
        let mut out = token.to_owned();
        match edit {
            Edit::Set(at, c) => {
                let at = at.index(out.len());
                out.replace_range(at..=at, c.encode_utf8(&mut [0; 4]));
            }
            Edit::Insert(at, text) => out.insert_str(at.index(out.len() + 1), text),
            Edit::Remove(at, n) => {
                let at = at.index(out.len());
                out.replace_range(at..(at + n).min(token.len()), "");
            }
            Edit::Truncate(at) => out.truncate(at.index(out.len())),
            Edit::Append(text) => out.push_str(text),
        }
        out
    }

    /// Other base64url spellings of the bytes of `part` (unpadded, canonical): the
    /// unused low bits of its last character set, and `=` padding.
    fn other_spellings(part: &str) -> Vec<String> {
        let unused_bits = match part.len() % 4 {
            2 => 4,
            3 => 2,
            _ => 0,
        };
        let mut spellings = Vec::new();
        if let Some(last) = part.bytes().last() {
            let value = ALPHABET.iter().position(|&b| b == last).expect("base64url");
            for low in 1..(1 << unused_bits) {
                let mut other = part[..part.len() - 1].to_owned();
                other.push(char::from(ALPHABET[value | low]));
                spellings.push(other);
            }
        }
        let padding = (4 - part.len() % 4) % 4;
        if padding > 0 {
            spellings.push(format!("{part}{}", "=".repeat(padding)));
        }
        spellings
    }

    /// What any string may give: the name it was signed for, when it is exactly the
    /// token for that name; otherwise the refusal its length calls for, in one line.
    fn check_any_token(signer: &Signer, token: &str) -> Result<(), TestCaseError> {
        match signer.verify(token) {
            Ok(name) => prop_assert_eq!(
                signer.sign(&name),
                token,
                "accepted a token we did not sign"
            ),
            Err(error) => {
                let fits = match &error {
                    TokenError::Empty => token.is_empty(),
                    TokenError::TooLong { len, max } => {
                        *len == token.len() && *max == MAX_TOKEN_LEN && *len > MAX_TOKEN_LEN
                    }
                    _ => !token.is_empty() && token.len() <= MAX_TOKEN_LEN,
                };
                prop_assert!(fits, "{:?}: {:?}", token, error);
                let message = error.to_string();
                prop_assert!(
                    !message.is_empty() && !message.contains('\n'),
                    "{:?}",
                    message
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config(1000))]

        #[test]
        fn every_valid_name_round_trips(name in stream_name()) {
            let signer = signer();
            let name = StreamName::new(name).expect("a valid name");
            let token = signer.sign(&name);
            prop_assert!(token.len() <= MAX_TOKEN_LEN, "{} bytes", token.len());
            prop_assert_eq!(signer.sign(&name), token.clone());
            prop_assert_eq!(signer.verify(&token), Ok(name));
        }

        #[test]
        fn an_edited_token_is_refused(name in stream_name(), edit in edit()) {
            let signer = signer();
            let token = signer.sign(&StreamName::new(name).expect("a valid name"));
            let edited = apply(&token, &edit);
            prop_assume!(edited != token);
            prop_assert!(signer.verify(&edited).is_err(), "{:?} accepted", edited);
            check_any_token(&signer, &edited)?;
        }

        #[test]
        fn other_spellings_of_the_same_bytes_are_refused(name in stream_name()) {
            let signer = signer();
            let token = signer.sign(&StreamName::new(name).expect("a valid name"));
            let (name_part, tag_part) = token.split_once('.').expect("name.signature");
            let mut others: Vec<String> = other_spellings(name_part)
                .into_iter()
                .map(|n| format!("{n}.{tag_part}"))
                .chain(other_spellings(tag_part).into_iter().map(|t| format!("{name_part}.{t}")))
                .collect();
            // The standard alphabet instead of the URL-safe one.
            let standard = token.replace('-', "+").replace('_', "/");
            if standard != token {
                others.push(standard);
            }
            prop_assert!(!other_spellings(tag_part).is_empty());
            for other in others {
                prop_assert!(signer.verify(&other).is_err(), "{:?} accepted", other);
            }
        }

        #[test]
        fn tokens_from_another_key_are_refused(
            name in stream_name(),
            secret in prop::collection::vec(any::<u8>(), 32..=96),
            at in any::<prop::sample::Index>(),
            flip in 1..=u8::MAX,
        ) {
            // Secrets of one length that differ in a byte: HMAC gives the same MACs for
            // a secret and the secret with zero bytes appended (RFC 2104 pads keys).
            let mut other = secret.clone();
            other[at.index(secret.len())] ^= flip;
            let ours = Signer::new(&secret).expect("long enough");
            let theirs = Signer::new(&other).expect("long enough");
            let token = theirs.sign(&StreamName::new(name).expect("a valid name"));
            prop_assert_eq!(ours.verify(&token), Err(TokenError::BadSignature));
        }

        #[test]
        fn any_string_is_refused_with_a_fitting_reason(
            token in prop_oneof![
                any::<String>(),
                "[A-Za-z0-9_=-]{0,60}\\.[A-Za-z0-9_.=-]{0,60}",
                "[a.]{500,530}",
            ],
        ) {
            check_any_token(&signer(), &token)?;
        }
    }
}

mod tag {
    use super::*;
    use turbo_model::__private::fuzz::rewrite_tags;

    const TAG: &str = "turbo_subscribe";

    fn newlines(s: &str) -> usize {
        s.matches('\n').count()
    }

    /// Pieces of templates, so that generated sources hold tags, comments and raw blocks.
    fn template_soup() -> impl Strategy<Value = String> {
        prop::collection::vec(
            select(vec![
                "<%", "%>", "{%", "%}", "{#", "#}", "{%-", "-%}", "{{", "}}", " ", "\n", "\r\n",
                "\t", TAG, "raw", "endraw", "\"", "'", "`", "(", ")", "[", "]", "{", "}", ",", "=",
                "==", "|", ".", "room", "x", "é", "\u{2028}",
            ]),
            0..40,
        )
        .prop_map(|pieces| pieces.concat())
    }

    /// Text with no tag, comment or raw block in it.
    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                select(vec![
                    "<div>", "</div>", "<", "{", "}", "{{ x }}", "%>", "%}", "#}", "\n", "\r\n",
                    " ", "é", TAG, "a",
                ])
                .prop_map(str::to_owned),
                any::<char>().prop_map(String::from),
            ],
            0..12,
        )
        .prop_map(|pieces| pieces.concat())
        .prop_filter("no tag", |t| {
            !t.contains("<%") && !t.contains("{%") && !t.contains("{#")
        })
    }

    /// A template variable's name: Tera's words (`if`, `in`, `not`, …) are not names.
    fn ident() -> impl Strategy<Value = String> {
        const WORDS: &[&str] = &[
            "and", "or", "not", "in", "is", "if", "else", "true", "false", "none",
        ];
        "[a-z_][a-z0-9_]{0,8}".prop_filter("not a word of Tera's", |i| !WORDS.contains(&i.as_str()))
    }

    /// One argument of the tag and the name the rewrite gives it.
    fn argument() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            ident().prop_map(|i| (i.clone(), i)),
            (ident(), ident()).prop_map(|(a, b)| (format!("{a}.{b}"), b)),
            (ident(), 0..9u8).prop_map(|(a, n)| (format!("{a}[{n}]"), a)),
            "[a-z0-9 ,:()\\[\\]]{0,10}".prop_map(|s| (format!("\"{s}\""), String::new())),
        ]
    }

    /// A well-formed tag: its source, and the call it becomes, without newlines. The
    /// `transport` option may stand anywhere among the arguments.
    fn tag() -> impl Strategy<Value = (String, String)> {
        (
            select(vec![("<%", "%>"), ("{%", "%}")]),
            any::<bool>(),
            any::<bool>(),
            select(vec!["", " ", "\n", "  "]),
            prop::collection::vec(
                (select(vec![" ", ", ", ",", "\n", " ,\n ", "\t"]), argument()),
                1..4,
            ),
            prop::option::of((
                any::<prop::sample::Index>(),
                select(vec![
                    ("\"sse\"", "sse"),
                    ("'sse'", "sse"),
                    ("\"websocket\"", "websocket"),
                    ("'websocket'", "websocket"),
                ]),
            )),
            select(vec!["", " ", "\n"]),
        )
            .prop_map(
                |((open, close), trim_left, trim_right, before, args, transport, after)| {
                    let (dash_left, dash_right) = (
                        if trim_left { "-" } else { "" },
                        if trim_right { "-" } else { "" },
                    );
                    let mut words: Vec<String> = args
                        .iter()
                        .map(|(separator, (expression, _))| format!("{separator}{expression}"))
                        .collect();
                    let mut option = String::new();
                    if let Some((at, (value, transport))) = transport {
                        words.insert(at.index(words.len() + 1), format!(" transport={value}"));
                        option = format!(", transport=\"{transport}\"");
                    }
                    let source = format!(
                        "{open}{dash_left}{before}{TAG}{}{after}{dash_right}{close}",
                        words.concat()
                    );
                    let streams: Vec<&str> = args.iter().map(|(_, (e, _))| e.as_str()).collect();
                    let names: Vec<String> =
                        args.iter().map(|(_, (_, n))| format!("\"{n}\"")).collect();
                    let call = format!(
                        "{{{{{dash_left} __turbo_subscribe(streams=[{}], names=[{}]{option}) {dash_right}}}}}",
                        streams.join(", "),
                        names.join(", ")
                    );
                    (source, call)
                },
            )
    }

    /// A malformed tag and the start of the message it gets.
    fn bad_tag() -> impl Strategy<Value = (String, &'static str)> {
        select(vec![
            (
                "<% turbo_subscribe %>",
                "`turbo_subscribe` needs at least one",
            ),
            (
                "{%\nturbo_subscribe\n%}",
                "`turbo_subscribe` needs at least one",
            ),
            ("{% turbo_subscribe \"a %}", "unclosed string"),
            (
                "{% turbo_subscribe room transport=\"smoke\" %}",
                "`transport` is \"websocket\" (the default) or \"sse\"",
            ),
            ("<% turbo_subscribe room] %>", "unbalanced brackets"),
            ("<% turbo_subscribe (room %>", "unbalanced brackets"),
            (
                "{% turbo_subscribe room via=1 %}",
                "`turbo_subscribe` has no option `via`",
            ),
            (
                "<% turbo_subscribe room",
                "the `turbo_subscribe` tag is not closed with `%>`",
            ),
        ])
        .prop_map(|(tag, message)| (tag.to_owned(), message))
    }

    proptest! {
        #![proptest_config(config(2000))]

        /// The soup has no `transport=`: a bad option value with a line break gets a
        /// message on two lines (`an_option_value_with_a_line_break_gets_a_one_line_error`).
        #[test]
        fn any_source_keeps_its_line_count_or_gets_an_error_on_one_of_its_lines(
            source in prop_oneof![any::<String>(), template_soup()],
        ) {
            match rewrite_tags(&source) {
                Ok(output) => prop_assert_eq!(newlines(&output), newlines(&source), "{:?}", output),
                Err((line, message)) => {
                    prop_assert!((1..=newlines(&source) + 1).contains(&line), "line {}", line);
                    prop_assert!(!message.is_empty() && !message.contains('\n'), "{:?}", message);
                    prop_assert!(source.contains(TAG));
                }
            }
        }

        #[test]
        fn sources_without_the_tag_come_back_unchanged(
            source in prop_oneof![any::<String>(), template_soup(), text()]
                .prop_filter("no tag", |s| !s.contains(TAG)),
        ) {
            prop_assert_eq!(rewrite_tags(&source), Ok(source));
        }
    }

    proptest! {
        #![proptest_config(config(1000))]

        #[test]
        fn text_around_tags_is_kept_and_tags_become_calls_on_as_many_lines(
            first in text(),
            rest in prop::collection::vec((tag(), text()), 0..4),
        ) {
            let mut source = first.clone();
            for ((tag, _), text) in &rest {
                source.push_str(tag);
                source.push_str(text);
            }
            let output = rewrite_tags(&source).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let mut unread = output
                .strip_prefix(first.as_str())
                .ok_or_else(|| TestCaseError::fail(format!("text before the first tag lost: {output:?}")))?;
            for ((tag, call), text) in &rest {
                prop_assert!(unread.starts_with("{{"), "{:?}", unread);
                let end = unread.find("}}").expect("a call ends with `}}`") + 2;
                let (written, after) = unread.split_at(end);
                prop_assert_eq!(written.replace('\n', ""), call.clone());
                prop_assert_eq!(newlines(written), newlines(tag), "{:?} -> {:?}", tag, written);
                unread = after
                    .strip_prefix(text.as_str())
                    .ok_or_else(|| TestCaseError::fail(format!("text after {tag:?} lost: {after:?}")))?;
            }
            prop_assert_eq!(unread, "");
        }

        #[test]
        fn an_error_names_the_line_the_tag_starts_on(
            before in text(),
            ((bad, message), after) in (bad_tag(), text())
                .prop_filter("the unclosed tag stays unclosed", |((bad, _), after)| {
                    bad.ends_with("%>") || bad.ends_with("%}") || !after.contains("%>")
                }),
        ) {
            let source = format!("{before}{bad}\n{after}");
            let (line, got) = rewrite_tags(&source).expect_err("a malformed tag");
            prop_assert_eq!(line, newlines(&before) + 1);
            prop_assert!(got.starts_with(message), "{:?}", got);
        }
    }

    #[test]

    fn an_option_value_with_a_line_break_gets_a_one_line_error() {
        for source in [
            "<% turbo_subscribe room transport=\"a\nb\" %>",
            "<% turbo_subscribe room transport=(x\n) %>",
            // Found by `cargo fuzz run tag --features open-findings` in 63,211 runs, then
            // minimized with `cargo fuzz tmin`.
            "{%\nturbo_subscribe\ntransport=\"%\n{\"%}s",
        ] {
            let (line, message) = rewrite_tags(source).expect_err("a bad transport");
            assert_eq!(line, 1);
            assert!(!message.contains('\n'), "{message:?}");
        }
    }

    #[test]

    fn a_line_break_inside_a_string_argument_is_kept() {
        let output = rewrite_tags("<% turbo_subscribe \"a\nb\" %>").expect("rewrites");
        assert!(output.contains("streams=[\"a\nb\"]"), "{output:?}");
        assert_eq!(newlines(&output), 1);
    }
}

/// The Server-Sent Events record of a broadcast, read the way `EventSource` reads it.
mod sse {
    use super::*;
    use turbo_model::__private::fuzz::sse_event;

    /// One event as EventSource builds it: lines end at CR, LF or CRLF; `data` lines are
    /// joined with LF; any other field is noted.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Parsed {
        id: Option<String>,
        data: Vec<String>,
        other_fields: Vec<String>,
        events: usize,
    }

    fn parse(stream: &str) -> Parsed {
        let mut parsed = Parsed::default();
        let mut lines = Vec::new();
        let mut rest = stream;
        while let Some(at) = rest.find(['\r', '\n']) {
            lines.push(&rest[..at]);
            let skip = if rest[at..].starts_with("\r\n") { 2 } else { 1 };
            rest = &rest[at + skip..];
        }
        for line in lines {
            if line.is_empty() {
                parsed.events += 1;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" => parsed.data.push(value.to_owned()),
                "id" => parsed.id = Some(value.to_owned()),
                "" => {} // a comment
                other => parsed.other_fields.push(other.to_owned()),
            }
        }
        parsed
    }

    proptest! {
        #![proptest_config(config(2000))]

        /// Whatever the element holds (CR, LF, CRLF, text that looks like fields), the
        /// record is one event with the broadcast's position as its id and the element,
        /// line endings as LF, as its data: it can never start a field of its own.
        #[test]
        fn any_html_is_one_event_with_its_own_data(html in "[a-z<>\"'=:/ \r\n]{0,80}|(\r|\n|\r\n|retry: 1|id: 0.1|event: x|data: y|<p>)*") {
            let parsed = parse(&sse_event(&html));
            let expected: Vec<String> = html.replace("\r\n", "\n").replace('\r', "\n").split('\n').map(str::to_owned).collect();
            prop_assert_eq!(parsed.events, 1);
            prop_assert_eq!(parsed.id.as_deref(), Some("00000000000000ff.7"));
            prop_assert_eq!(&parsed.other_fields, &Vec::<String>::new());
            prop_assert_eq!(parsed.data, expected);
        }
    }
}
