//! The `turbo_subscribe` tag, rewritten into a function call before Tera sees it.
//!
//! Tera 2 has no custom tags, so `<% turbo_subscribe room "lobby" %>` and
//! `{% turbo_subscribe room "lobby" %}` become
//! `{{ __turbo_subscribe(streams=[room, "lobby"], names=["room", ""]) }}`. Arguments are
//! separated by spaces or commas; each is any Tera expression, and together they name one
//! stream (`room:3:lobby`) unless the one argument is a list. `names` carries the last
//! identifier of each expression, which tells entities with the same fields apart.
//!
//! The rewrite keeps every newline, so Tera's line numbers still point at the user's
//! source.

use std::borrow::Cow;

/// The function the tag becomes; registered by [`Templates`](super::Templates).
pub(crate) const FUNCTION: &str = "__turbo_subscribe";

const TAG: &str = "turbo_subscribe";

/// A malformed tag: what is wrong, and the 1-based line where the tag starts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TagError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// Rewrites every `turbo_subscribe` tag in `source`; returns it borrowed when it has none.
pub(crate) fn rewrite(source: &str) -> Result<Cow<'_, str>, TagError> {
    if !source.contains(TAG) {
        return Ok(Cow::Borrowed(source));
    }
    let mut out = String::with_capacity(source.len() + 64);
    let mut rest = source;
    let mut consumed = 0;
    while let Some(open) = find_open(rest) {
        let (before, from_open) = rest.split_at(open.at);
        out.push_str(before);
        let line = line_of(source, consumed + open.at);
        let inner_start = 2;
        let Some(close_at) = from_open[inner_start..].find(open.close) else {
            if open.kind == OpenKind::Raw {
                // `{% raw %}` without `{% endraw %}`: Tera reports it; leave it alone.
                out.push_str(from_open);
                return Ok(Cow::Owned(out));
            }
            if is_subscribe(&from_open[inner_start..]) {
                return Err(TagError {
                    line,
                    message: format!("the `{TAG}` tag is not closed with `{}`", open.close),
                });
            }
            out.push_str(from_open);
            return Ok(Cow::Owned(out));
        };
        let tag_len = inner_start + close_at + open.close.len();
        let whole = &from_open[..tag_len];
        let inner = &from_open[inner_start..inner_start + close_at];
        match open.kind {
            OpenKind::Raw => out.push_str(whole),
            OpenKind::Tag if is_subscribe(inner) => out.push_str(&expand(inner, line)?),
            OpenKind::Tag => out.push_str(whole),
        }
        rest = &from_open[tag_len..];
        consumed += open.at + tag_len;
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpenKind {
    /// `{% ... %}` or `<% ... %>`: maybe our tag.
    Tag,
    /// `{# ... #}` or `{% raw %}...{% endraw %}`: copied as it is.
    Raw,
}

struct Open {
    at: usize,
    kind: OpenKind,
    close: &'static str,
}

/// The next place where a tag, a comment or a raw block starts.
fn find_open(s: &str) -> Option<Open> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let open = match (bytes[i], bytes[i + 1]) {
            (b'<', b'%') => Some((OpenKind::Tag, "%>")),
            (b'{', b'#') => Some((OpenKind::Raw, "#}")),
            (b'{', b'%') => {
                let inner = s[i + 2..].trim_start_matches(['-', ' ', '\t', '\r', '\n']);
                if inner.starts_with("raw") && !inner[3..].starts_with(is_ident_char) {
                    Some((OpenKind::Raw, "endraw"))
                } else {
                    Some((OpenKind::Tag, "%}"))
                }
            }
            _ => None,
        };
        if let Some((kind, close)) = open {
            return Some(Open { at: i, kind, close });
        }
        i += 1;
    }
    None
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_subscribe(inner: &str) -> bool {
    let body = inner.trim_start_matches('-').trim_start();
    body.strip_prefix(TAG)
        .is_some_and(|after| !after.starts_with(is_ident_char))
}

fn line_of(source: &str, at: usize) -> usize {
    source[..at].bytes().filter(|&b| b == b'\n').count() + 1
}

/// Turns the inside of one tag into the `{{ ... }}` call.
fn expand(inner: &str, line: usize) -> Result<String, TagError> {
    let trim_left = inner.starts_with('-');
    let trim_right = inner.ends_with('-');
    let body = inner.trim_start_matches('-').trim_end_matches('-').trim();
    let args = body[TAG.len()..].trim();
    let error = |message: String| TagError { line, message };
    let parts = split_arguments(args).map_err(|m| error(m.to_owned()))?;
    if parts.is_empty() {
        return Err(error(format!(
            "`{TAG}` needs at least one model or stream name, e.g. `<% {TAG} room %>`"
        )));
    }
    let mut streams = Vec::with_capacity(parts.len());
    let mut names = Vec::with_capacity(parts.len());
    let mut options = String::new();
    for part in parts {
        if let Some((key, value)) = split_option(part) {
            options.push_str(&option(key, value).map_err(error)?);
            continue;
        }
        streams.push(part);
        names.push(format!("\"{}\"", last_identifier(part)));
    }
    if streams.is_empty() {
        return Err(error(format!(
            "`{TAG}` needs at least one model or stream name, e.g. `<% {TAG} room %>`"
        )));
    }
    // Line breaks inside arguments stay where they are (a string keeps its value); the
    // others are added at the end, so that the lines after the tag keep their numbers.
    let count = |text: &str| text.bytes().filter(|&b| b == b'\n').count();
    let kept: usize = streams.iter().map(|a| count(a)).sum();
    let newlines = "\n".repeat(count(inner).saturating_sub(kept));
    Ok(format!(
        "{{{{{} {FUNCTION}(streams=[{}], names=[{}]{options}){newlines} {}}}}}",
        if trim_left { "-" } else { "" },
        streams.join(", "),
        names.join(", "),
        if trim_right { "-" } else { "" },
    ))
}

/// One `key=value` option of the tag, as a keyword argument.
fn option(key: &str, value: &str) -> Result<String, String> {
    match (key, value) {
        ("transport", "\"sse\"" | "'sse'") => Ok(", transport=\"sse\"".to_owned()),
        ("transport", "\"websocket\"" | "'websocket'") => {
            Ok(", transport=\"websocket\"".to_owned())
        }
        ("transport", other) => Err(format!(
            "`transport` is \"websocket\" (the default) or \"sse\", not {}",
            crate::error::one_line(other)
        )),
        (other, _) => Err(format!(
            "`{TAG}` has no option `{other}`; the one option is `transport=\"sse\"`"
        )),
    }
}

/// Splits the tag's arguments on commas and spaces outside quotes and brackets; pieces
/// joined by an operator stay one expression: `"order:" ~ order.id` is one argument.
fn split_arguments(args: &str) -> Result<Vec<&str>, &'static str> {
    let mut pieces: Vec<(usize, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut start: Option<usize> = None;
    for (i, c) in args.char_indices() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => {
                quote = Some(c);
                start.get_or_insert(i);
            }
            '(' | '[' | '{' => {
                depth += 1;
                start.get_or_insert(i);
            }
            ')' | ']' | '}' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or("unbalanced brackets in `turbo_subscribe`")?;
            }
            c if depth == 0 && (c.is_whitespace() || c == ',') => {
                if let Some(s) = start.take() {
                    pieces.push((s, i));
                }
                if c == ',' {
                    pieces.push((i, i));
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if quote.is_some() {
        return Err("unclosed string in `turbo_subscribe`");
    }
    if depth != 0 {
        return Err("unbalanced brackets in `turbo_subscribe`");
    }
    if let Some(s) = start {
        pieces.push((s, args.len()));
    }
    // Group the pieces into arguments: a comma (an empty piece) always ends one; a space
    // ends one unless an operator joins the pieces around it.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut joined = false;
    for (s, e) in pieces {
        if s == e {
            joined = false;
            groups.push((e, e));
            continue;
        }
        let piece = &args[s..e];
        let continues =
            matches!(groups.last(), Some((gs, ge)) if gs != ge) && (joined || is_operator(piece));
        match groups.last_mut() {
            Some(last) if continues => last.1 = e,
            _ => groups.push((s, e)),
        }
        joined = is_operator(piece) || ends_with_operator(piece);
    }
    Ok(groups
        .into_iter()
        .filter(|(s, e)| s != e)
        .map(|(s, e)| args[s..e].trim())
        .collect())
}

const OPERATORS: &[&str] = &[
    "~", "+", "-", "*", "/", "%", "|", "==", "!=", "<", ">", "<=", ">=", "and", "or", "not", "in",
    "is", "if", "else",
];

fn is_operator(piece: &str) -> bool {
    OPERATORS.contains(&piece)
}

fn ends_with_operator(piece: &str) -> bool {
    piece.ends_with(['~', '+', '-', '*', '/', '%', '|'])
}

/// `key=value` at the top level (not `==`, not inside a string).
fn split_option(part: &str) -> Option<(&str, &str)> {
    let (key, value) = part.split_once('=')?;
    if value.starts_with('=') || key.ends_with(['!', '<', '>']) {
        return None;
    }
    let key = key.trim();
    key.chars()
        .all(is_ident_char)
        .then_some((key, value.trim()))
}

/// The last identifier of an expression: `room` for `message.room`, `rooms` for
/// `rooms[0]`, empty for a string literal.
fn last_identifier(expr: &str) -> &str {
    let first = expr.split_whitespace().next().unwrap_or(expr);
    let head = first.split(['[', '(', '|']).next().unwrap_or(first);
    let segment = head.rsplit('.').next().unwrap_or(head).trim();
    if segment.chars().all(is_ident_char) && !segment.starts_with(|c: char| c.is_ascii_digit()) {
        segment
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(source: &str) -> String {
        rewrite(source).expect("rewrites").into_owned()
    }

    #[test]
    fn both_spellings_become_the_same_call() {
        let expected = r#"<div>{{ __turbo_subscribe(streams=[room], names=["room"]) }}</div>"#;
        assert_eq!(ok("<div><% turbo_subscribe room %></div>"), expected);
        assert_eq!(ok("<div>{% turbo_subscribe room %}</div>"), expected);
    }

    #[test]
    fn several_models_and_names() {
        assert_eq!(
            ok(r#"<% turbo_subscribe message.room, "lobby" rooms[0] %>"#),
            r#"{{ __turbo_subscribe(streams=[message.room, "lobby", rooms[0]], names=["room", "", "rooms"]) }}"#
        );
    }

    #[test]
    fn strings_with_spaces_and_commas_stay_whole() {
        assert_eq!(
            ok(r#"{% turbo_subscribe "a, b c" %}"#),
            r#"{{ __turbo_subscribe(streams=["a, b c"], names=[""]) }}"#
        );
    }

    #[test]
    fn the_transport_option_becomes_a_keyword() {
        assert_eq!(
            ok(r#"<% turbo_subscribe room transport="sse" %>"#),
            r#"{{ __turbo_subscribe(streams=[room], names=["room"], transport="sse") }}"#
        );
    }

    #[test]
    fn expressions_with_operators_stay_one_argument() {
        assert_eq!(
            ok(r#"<% turbo_subscribe "order:" ~ order.id room %>"#),
            r#"{{ __turbo_subscribe(streams=["order:" ~ order.id, room], names=["", "room"]) }}"#
        );
        assert_eq!(
            ok(r#"<% turbo_subscribe "job:" ~ job.id, "jobs" %>"#),
            r#"{{ __turbo_subscribe(streams=["job:" ~ job.id, "jobs"], names=["", ""]) }}"#
        );
        assert_eq!(
            ok("<% turbo_subscribe name | lower other %>"),
            r#"{{ __turbo_subscribe(streams=[name | lower, other], names=["name", "other"]) }}"#
        );
    }

    #[test]
    fn whitespace_control_is_kept() {
        assert_eq!(
            ok("{%- turbo_subscribe room -%}"),
            r#"{{- __turbo_subscribe(streams=[room], names=["room"]) -}}"#
        );
    }

    #[test]
    fn other_tags_comments_and_raw_blocks_are_untouched() {
        let source = "{% if x %}{# turbo_subscribe a #}{% raw %}{% turbo_subscribe b %}{% endraw %}<% other %>{% endif %}";
        assert_eq!(ok(source), source);
        let plain = "no tags here";
        assert!(matches!(rewrite(plain), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn similar_names_are_not_the_tag() {
        let source = "{% turbo_subscribed x %}";
        assert_eq!(ok(source), source);
    }

    #[test]
    fn newlines_are_kept_so_lines_stay_true() {
        let out = ok("a\n<% turbo_subscribe\n  room\n%>\nb {{ x }}");
        assert_eq!(out.lines().count(), 5);
        assert_eq!(out.lines().nth(4), Some("b {{ x }}"));
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        assert_eq!(
            rewrite("x\n\n<% turbo_subscribe %>"),
            Err(TagError {
                line: 3,
                message: "`turbo_subscribe` needs at least one model or stream name, e.g. `<% turbo_subscribe room %>`".into()
            })
        );
        assert_eq!(
            rewrite("x\n<% turbo_subscribe room"),
            Err(TagError {
                line: 2,
                message: "the `turbo_subscribe` tag is not closed with `%>`".into()
            })
        );
        assert_eq!(
            rewrite("{% turbo_subscribe \"a %}").map_err(|e| e.message),
            Err("unclosed string in `turbo_subscribe`".into())
        );
        assert_eq!(
            rewrite("{% turbo_subscribe room] %}").map_err(|e| e.message),
            Err("unbalanced brackets in `turbo_subscribe`".into())
        );
        assert_eq!(
            rewrite("{% turbo_subscribe room via=1 %}").map_err(|e| e.message),
            Err(
                "`turbo_subscribe` has no option `via`; the one option is `transport=\"sse\"`"
                    .into()
            )
        );
        assert_eq!(
            rewrite("{% turbo_subscribe room transport=\"smoke\" %}").map_err(|e| e.message),
            Err("`transport` is \"websocket\" (the default) or \"sse\", not \"smoke\"".into())
        );
        assert_eq!(
            rewrite("{% turbo_subscribe transport=\"sse\" %}").map_err(|e| e.message),
            Err("`turbo_subscribe` needs at least one model or stream name, e.g. `<% turbo_subscribe room %>`".into())
        );
    }

    #[test]
    fn comparisons_are_expressions_not_options() {
        assert_eq!(split_option("a==b"), None);
        assert_eq!(split_option("a<=b"), None);
        assert_eq!(split_option("key=1"), Some(("key", "1")));
    }
}
