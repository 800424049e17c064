//! Rendering: Tera 2 templates, the `turbo_subscribe` tag, and stream actions.
//!
//! The rules users see (naming, autoescape, how the tag finds a model's stream) are
//! documented in the crate docs, section "Templates". Rendering does no I/O and asks no
//! one for anything: the tag writes the signed stream names and the time the page's
//! request began, and the server finds the stream's position at that time when the page
//! subscribes.

pub(crate) mod models;
mod tag;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tera::{Context, Kwargs, State, Tera, TeraResult, Value};

use crate::action::{Content, StreamAction, push_escaped};
use crate::clock;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::name::StreamName;
use crate::signing::Signer;
use models::EntityInfo;

/// The context variable through which a render passes its request's start time (in
/// microseconds since the Unix epoch) to the tag.
const SINCE_VARIABLE: &str = "__turbo_model_since";

/// The tag rewrite on its own, for property tests and fuzzing.
pub(crate) fn rewrite_tags(source: &str) -> std::result::Result<String, (usize, String)> {
    tag::rewrite(source)
        .map(std::borrow::Cow::into_owned)
        .map_err(|e| (e.line, e.message))
}

/// The set of templates of one [`Turbo`](crate::Turbo), with the tag installed.
#[derive(Clone)]
pub(crate) struct Templates {
    tera: Tera,
    metrics: Arc<Metrics>,
    /// Whether any template has the tag: only then does a render carry its start time.
    has_tag: bool,
}

/// Where the subscription element points: the router's paths.
#[derive(Clone, Debug)]
pub(crate) struct Endpoints {
    pub(crate) socket: String,
    pub(crate) events: String,
    pub(crate) client: String,
}

impl Templates {
    /// Rewrites the tag in every source, then parses them together (so that `extends`
    /// and `include` resolve across them).
    pub(crate) fn build(
        sources: Vec<(String, String)>,
        signer: Signer,
        endpoints: Endpoints,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let mut tera = Tera::new();
        tera.register_function(tag::FUNCTION, Subscribe { signer, endpoints });
        tera.register_filter("dom_id", dom_id_filter);
        let mut rewritten = Vec::with_capacity(sources.len());
        let mut has_tag = false;
        for (name, source) in &sources {
            let source = tag::rewrite(source).map_err(|e| Error::Template {
                template: name.clone(),
                message: format!("line {}: {}", e.line, e.message),
                source: None,
            })?;
            has_tag |= matches!(source, std::borrow::Cow::Owned(_));
            rewritten.push((name.as_str(), source));
        }
        tera.add_raw_templates(rewritten).map_err(template_error)?;
        Ok(Self {
            tera,
            metrics,
            has_tag,
        })
    }

    /// Renders a template by name. `since` is when the request rendering it began
    /// (microseconds since the Unix epoch); the tag subscribes from then, or from now
    /// when it is `None`.
    pub(crate) fn render(
        &self,
        name: &str,
        context: &Context,
        since: Option<u64>,
    ) -> Result<String> {
        self.metrics.rendered();
        let rendered = match since {
            Some(since) if self.has_tag => {
                // Values are shared, so the copy costs one map of the top-level names.
                let mut context = context.clone();
                context.insert(SINCE_VARIABLE, &since);
                self.tera.render(name, &context)
            }
            _ => self.tera.render(name, context),
        };
        rendered.map_err(|source| Error::Render {
            template: name.to_owned(),
            source,
        })
    }

    /// Renders a Tera 2 component by name, autoescaped.
    pub(crate) fn render_component(&self, name: &str, context: &Context) -> Result<String> {
        self.metrics.rendered();
        self.tera
            .render_component(name, context, None, true)
            .map_err(|source| Error::Render {
                template: name.to_owned(),
                source,
            })
    }

    /// Renders an action's content, then its `<turbo-stream>` element; `stream` names
    /// the stream in errors.
    pub(crate) fn render_action(
        &self,
        action: &StreamAction,
        stream: Option<&str>,
    ) -> Result<String> {
        let rendered = match action.content() {
            None => None,
            Some(Content::Html(html)) => Some(std::borrow::Cow::Borrowed(html.as_str())),
            Some(Content::Template { name, context }) => {
                Some(self.render(name, context, None)?.into())
            }
            Some(Content::Component { name, context }) => {
                Some(self.render_component(name, context)?.into())
            }
        };
        action.element(rendered.as_deref(), stream)
    }

    /// The names of every loaded template, sorted.
    pub(crate) fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tera.get_template_names().collect();
        names.sort_unstable();
        names
    }
}

/// Turns a Tera parse error into ours, naming the template it is about.
fn template_error(error: tera::Error) -> Error {
    let template = match error.kind() {
        tera::ErrorKind::SyntaxError(report) | tera::ErrorKind::RenderingError(report) => {
            report.filename().to_owned()
        }
        tera::ErrorKind::MissingParent { current, .. } => current.clone(),
        tera::ErrorKind::CircularExtend { tpl, .. }
        | tera::ErrorKind::CircularInclude { tpl, .. } => tpl.clone(),
        _ => String::from("(templates)"),
    };
    Error::Template {
        template,
        message: error.to_string(),
        source: Some(error),
    }
}

/// Reads every template file below `dir`, named by relative path with `/` separators.
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::TemplateDir { path, source }
    };
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).map_err(io_error(&folder))? {
            let entry = entry.map_err(io_error(&folder))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry.file_type().map_err(io_error(&path))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() || kind.is_symlink() {
                let source = std::fs::read_to_string(&path).map_err(io_error(&path))?;
                let name = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                found.push((name, source));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// The function behind the tag: signs each stream and renders the element, with the
/// time the page's request began.
struct Subscribe {
    signer: Signer,
    endpoints: Endpoints,
}

impl tera::Function<TeraResult<Value>> for Subscribe {
    fn call(&self, kwargs: Kwargs, state: &State<'_>) -> TeraResult<Value> {
        let streams: Vec<Value> = kwargs.must_get("streams")?;
        let names: Vec<String> = kwargs.get("names")?.unwrap_or_default();
        let sse = kwargs.get::<String>("transport")?.as_deref() == Some("sse");
        let since = state
            .get::<u64>(SINCE_VARIABLE)?
            .unwrap_or_else(clock::now_micros);
        let resolved = resolve_streams(&streams, &names).map_err(tera::Error::message)?;
        let mut html = String::with_capacity(128 + 64 * resolved.len());
        if sse {
            // Turbo's own element: an EventSource per stream, no script of ours.
            for stream in &resolved {
                html.push_str("<turbo-stream-source src=\"");
                push_escaped(&mut html, &self.endpoints.events);
                html.push_str("?stream=");
                html.push_str(&self.signer.sign(stream));
                html.push_str(&format!("&amp;since=t{since}"));
                html.push_str("\"></turbo-stream-source>");
            }
            return Ok(Value::safe_string(&html));
        }
        let tokens: Vec<String> = resolved.iter().map(|s| self.signer.sign(s)).collect();
        let tokens = tokens.join(" ");
        // Permanent under one id per subscription: Turbo keeps the element (and its
        // subscriptions) as it is across visits and morphing refreshes.
        html.push_str("<turbo-model-stream-source id=\"turbo-model-");
        html.push_str(&format!("{:016x}", fnv1a(tokens.as_bytes())));
        html.push_str("\" data-turbo-permanent src=\"");
        push_escaped(&mut html, &self.endpoints.socket);
        html.push_str("\" streams=\"");
        html.push_str(&tokens);
        html.push_str(&format!("\" since=\"t{since}"));
        html.push_str("\"></turbo-model-stream-source><script type=\"module\" src=\"");
        push_escaped(&mut html, &self.endpoints.client);
        html.push_str("\"></script>");
        Ok(Value::safe_string(&html))
    }

    fn is_safe(&self) -> bool {
        true
    }
}

/// FNV-1a, 64 bits: a stable short name for a set of tokens.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The streams a tag stands for: its one list argument's items, each a stream; else
/// one stream, its arguments joined by `:` (`room "messages"` is `room:3:messages`).
fn resolve_streams(
    values: &[Value],
    names: &[String],
) -> std::result::Result<Vec<StreamName>, String> {
    if let [list] = values
        && let Some(items) = list.as_array()
    {
        let name = names.first().map_or("", String::as_str);
        if items.is_empty() {
            return Err(format!(
                "turbo_subscribe: `{}` is an empty list: nothing to subscribe to",
                shown(name)
            ));
        }
        return items.iter().map(|item| one_stream(item, "")).collect();
    }
    let mut whole: Option<StreamName> = None;
    for (i, value) in values.iter().enumerate() {
        let name = names.get(i).map_or("", String::as_str);
        if value.as_array().is_some() {
            return Err(format!(
                "turbo_subscribe: `{}` is a list, and a list must be the tag's only argument \
                 (it subscribes to each item); the arguments of one tag name one stream",
                shown(name)
            ));
        }
        let part = one_stream(value, name)?;
        whole = Some(match whole {
            None => part,
            Some(whole) => whole
                .join(part.as_str())
                .map_err(|e| format!("turbo_subscribe: {e}"))?,
        });
    }
    Ok(whole.into_iter().collect())
}

/// The stream a string or a model stands for.
fn one_stream(value: &Value, expr_name: &str) -> std::result::Result<StreamName, String> {
    if let Some(name) = value.as_str() {
        StreamName::new(name).map_err(|e| format!("turbo_subscribe: {e}"))
    } else if let Some(map) = value.as_map() {
        row_stream(map, expr_name, "turbo_subscribe")
    } else {
        Err(format!(
            "turbo_subscribe: cannot subscribe to `{}`, a {}: expected a model, a stream name or a list of them",
            shown(expr_name),
            kind_name(value)
        ))
    }
}

/// The stream of the row serialized as `map`; `who` names the tag or filter in errors.
fn row_stream(
    map: &tera::value::Map,
    expr_name: &str,
    who: &str,
) -> std::result::Result<StreamName, String> {
    let keys: BTreeSet<&str> = map.keys().filter_map(|k| k.as_str()).collect();
    let entity = find_entity(&keys, expr_name, who)?;
    let mut key_values = Vec::with_capacity(entity.primary_key.len());
    for field in entity.primary_key {
        let v = map
            .get(&tera::value::Key::Str(field))
            .ok_or_else(|| format!("{who}: `{}` has no field `{field}`", shown(expr_name)))?;
        key_values.push(v.to_string());
    }
    Ok(StreamName::for_row(
        (entity.prefix)(),
        key_values.iter().map(|v| v as &dyn std::fmt::Display),
    ))
}

/// An expression's name for errors, or "argument" when it has none.
fn shown(expr_name: &str) -> &str {
    if expr_name.is_empty() {
        "argument"
    } else {
        expr_name
    }
}

/// The `dom_id` filter: `{{ message | dom_id }}` is `message_12`,
/// `{{ message | dom_id(prefix="edit") }}` is `edit_message_12`.
fn dom_id_filter(row: &Value, kwargs: Kwargs, _: &State<'_>) -> TeraResult<String> {
    let prefix: Option<String> = kwargs.get("prefix")?;
    let Some(map) = row.as_map() else {
        return Err(tera::Error::message(format!(
            "dom_id: expected a model, got a {}",
            kind_name(row)
        )));
    };
    let stream = row_stream(map, "", "dom_id").map_err(tera::Error::message)?;
    Ok(crate::name::prefixed(stream.dom_id(), prefix.as_deref()))
}

/// A user's word for a value's kind.
fn kind_name(value: &Value) -> &'static str {
    if value.is_number() {
        "number"
    } else if value.is_bool() {
        "boolean"
    } else if value.is_none() || value.is_undefined() {
        "missing value"
    } else {
        value.name()
    }
}

/// The entity a serialized row belongs to (see the module docs for the rule).
fn find_entity(
    keys: &BTreeSet<&str>,
    expr_name: &str,
    who: &str,
) -> std::result::Result<&'static EntityInfo, String> {
    let shaped: Vec<&'static EntityInfo> =
        models::entities().filter(|e| e.has_shape(keys)).collect();
    if let [only] = shaped.as_slice() {
        return Ok(only);
    }
    let pool: Vec<&'static EntityInfo> = if shaped.is_empty() {
        models::entities().filter(|e| e.has_key(keys)).collect()
    } else {
        shaped
    };
    let named: Vec<&'static EntityInfo> = pool
        .iter()
        .copied()
        .filter(|e| !expr_name.is_empty() && e.is_named(expr_name))
        .collect();
    match (named.as_slice(), pool.as_slice()) {
        ([only], _) => Ok(only),
        (_, [only]) => Ok(only),
        (_, []) => Err(format!(
            "{who}: `{}` is not a model that derives ModelStream (fields: {}); \
             pass a stream name instead",
            shown(expr_name),
            keys.iter().copied().collect::<Vec<_>>().join(", ")
        )),
        (_, candidates) => Err(format!(
            "{who}: `{}` could be any of {}; {}",
            shown(expr_name),
            candidates
                .iter()
                .map(|e| (e.prefix)())
                .collect::<Vec<_>>()
                .join(", "),
            if who == "dom_id" {
                "compute the id in Rust (`turbo_model::dom_id`) and pass it in"
            } else {
                "name the variable after its table or pass a stream name"
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates(sources: &[(&str, &str)]) -> Result<Templates> {
        Templates::build(
            sources
                .iter()
                .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
                .collect(),
            Signer::new(b"0123456789abcdef0123456789abcdef").expect("secret"),
            Endpoints {
                socket: "/turbo-model/ws".into(),
                events: "/turbo-model/sse".into(),
                client: "/turbo-model/client.js".into(),
            },
            Arc::default(),
        )
    }

    /// The token is HMAC-SHA256 over the domain and the name, checked against Python's
    /// `hmac` module: `hmac.new(secret, b"turbo-model/stream-name/v1\0lobby", sha256)`.
    #[test]
    fn string_streams_render_signed_element() {
        let t = templates(&[("page.html", r#"<% turbo_subscribe "lobby" %>"#)]).expect("builds");
        let html = t
            .render("page.html", &Context::new(), Some(1_733_000_000_123_456))
            .expect("renders");
        assert_eq!(
            html,
            format!(
                "<turbo-model-stream-source id=\"turbo-model-{:016x}\" data-turbo-permanent src=\"/turbo-model/ws\" streams=\"bG9iYnk.tBEFxdbtR6ws9x867vP090rF0hQE_OLvLr0Oc8Cq1N4\" since=\"t1733000000123456\"></turbo-model-stream-source><script type=\"module\" src=\"/turbo-model/client.js\"></script>",
                fnv1a(b"bG9iYnk.tBEFxdbtR6ws9x867vP090rF0hQE_OLvLr0Oc8Cq1N4"),
            )
        );
    }

    #[test]
    fn without_a_request_the_page_subscribes_from_the_render() {
        let t = templates(&[("page.html", r#"<% turbo_subscribe "lobby" %>"#)]).expect("builds");
        let before = clock::now_micros();
        let html = t
            .render("page.html", &Context::new(), None)
            .expect("renders");
        let after = clock::now_micros();
        let since: u64 = html
            .split("since=\"t")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|n| n.parse().ok())
            .expect("a since attribute");
        assert!(
            (before..=after).contains(&since),
            "{before} <= {since} <= {after}"
        );
    }

    #[test]
    fn sse_transport_renders_turbos_own_element_per_stream() {
        let t = templates(&[(
            "p.html",
            r#"<% turbo_subscribe ["a", "b"] transport="sse" %>"#,
        )])
        .expect("builds");
        let html = t
            .render("p.html", &Context::new(), Some(42))
            .expect("renders");
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef").expect("secret");
        let token = |n: &str| signer.sign(&StreamName::new(n).expect("name"));
        assert_eq!(
            html,
            format!(
                "<turbo-stream-source src=\"/turbo-model/sse?stream={}&amp;since=t42\"></turbo-stream-source><turbo-stream-source src=\"/turbo-model/sse?stream={}&amp;since=t42\"></turbo-stream-source>",
                token("a"),
                token("b"),
            )
        );
    }

    #[test]
    fn fnv1a_matches_its_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn lists_subscribe_to_each() {
        let t = templates(&[("p.html", "{% turbo_subscribe names %}")]).expect("builds");
        let mut ctx = Context::new();
        ctx.insert("names", &["a", "b"]);
        let html = t.render("p.html", &ctx, None).expect("renders");
        let streams = html
            .split("streams=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("streams attribute");
        assert_eq!(streams.split(' ').count(), 2);
        assert!(streams.starts_with("YQ."), "{streams}");
    }

    /// The streams in a rendered element, as names.
    fn subscribed(html: &str) -> Vec<String> {
        html.split("streams=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("streams attribute")
            .split(' ')
            .map(|token| {
                Signer::new(b"0123456789abcdef0123456789abcdef")
                    .expect("secret")
                    .verify(token)
                    .expect("a valid token")
                    .as_str()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn the_arguments_of_one_tag_name_one_compound_stream() {
        let t = templates(&[
            ("a.html", r#"<% turbo_subscribe "room:3" "messages" %>"#),
            ("b.html", r#"<% turbo_subscribe "room:3", "messages", n %>"#),
            ("c.html", r#"<% turbo_subscribe ["room:3", "room:4"] %>"#),
            ("d.html", r#"<% turbo_subscribe "room:3" ["a"] %>"#),
            ("e.html", r#"<% turbo_subscribe "room:3" "" %>"#),
            ("f.html", r#"<% turbo_subscribe empty %>"#),
        ])
        .expect("builds");
        let mut ctx = Context::new();
        ctx.insert("n", "2");
        ctx.insert("empty", &Vec::<String>::new());
        let render = |name: &str| t.render(name, &ctx, Some(1));
        assert_eq!(
            subscribed(&render("a.html").expect("a")),
            ["room:3:messages"]
        );
        assert_eq!(
            subscribed(&render("b.html").expect("b")),
            ["room:3:messages:2"]
        );
        assert_eq!(
            subscribed(&render("c.html").expect("c")),
            ["room:3", "room:4"]
        );
        let list = render("d.html")
            .expect_err("a list in a compound name")
            .to_string();
        assert!(
            list.contains("a list must be the tag's only argument"),
            "{list}"
        );
        let empty = render("e.html").expect_err("an empty part").to_string();
        assert!(
            empty.contains(
                "turbo_subscribe: invalid stream name \"\": a stream name cannot be empty"
            ),
            "{empty}"
        );
        let nothing = render("f.html").expect_err("an empty list").to_string();
        assert!(nothing.contains("`empty` is an empty list"), "{nothing}");
    }

    #[test]
    fn dom_id_needs_a_model() {
        let t = templates(&[
            ("a.html", r#"{{ n | dom_id }}"#),
            ("b.html", r#"{{ thing | dom_id(prefix="edit") }}"#),
        ])
        .expect("builds");
        let mut ctx = Context::new();
        ctx.insert("n", &3);
        ctx.insert(
            "thing",
            &std::collections::BTreeMap::from([("zz_no_entity", 1)]),
        );
        let number = t
            .render("a.html", &ctx, None)
            .expect_err("a number")
            .to_string();
        assert!(
            number.contains("dom_id: expected a model, got a number"),
            "{number}"
        );
        let unknown = t
            .render("b.html", &ctx, None)
            .expect_err("no entity")
            .to_string();
        assert!(
            unknown.contains("dom_id: `argument` is not a model that derives ModelStream"),
            "{unknown}"
        );
    }

    #[test]
    fn bad_arguments_name_template_and_line() {
        let t =
            templates(&[("room.html", "line one\n{% turbo_subscribe count %}")]).expect("builds");
        let mut ctx = Context::new();
        ctx.insert("count", &3);
        let err = t
            .render("room.html", &ctx, None)
            .expect_err("a number is not a stream");
        let text = err.to_string();
        assert!(text.starts_with("rendering `room.html` failed: "), "{text}");
        assert!(
            text.contains("cannot subscribe to `count`, a number"),
            "{text}"
        );
        assert!(text.contains("room.html:2"), "{text}");
    }

    #[test]
    fn unknown_models_say_so() {
        let t = templates(&[("p.html", "{% turbo_subscribe thing %}")]).expect("builds");
        let mut ctx = Context::new();
        ctx.insert(
            "thing",
            &std::collections::BTreeMap::from([("zz_no_entity", 1)]),
        );
        let err = t
            .render("p.html", &ctx, None)
            .expect_err("no entity has this shape");
        assert!(
            err.to_string()
                .contains("`thing` is not a model that derives ModelStream (fields: zz_no_entity)"),
            "{err}"
        );
    }

    #[test]
    fn malformed_tag_fails_at_load_with_template_and_line() {
        let err = templates(&[("a.html", "ok"), ("bad.html", "\n\n<% turbo_subscribe %>")])
            .err()
            .expect("refused");
        assert_eq!(err.template(), Some("bad.html"));
        assert_eq!(
            err.to_string(),
            "template `bad.html` is invalid: line 3: `turbo_subscribe` needs at least one model or stream name, e.g. `<% turbo_subscribe room %>`"
        );
    }

    #[test]
    fn components_render_by_name_with_escaped_arguments() {
        let t = templates(&[(
            "components.html",
            "{% component Badge(status) %}<span class=\"badge\">{{ status }}</span>{% endcomponent Badge %}",
        )])
        .expect("builds");
        let mut ctx = Context::new();
        ctx.insert("status", "<shipped>");
        assert_eq!(
            t.render_component("Badge", &ctx).expect("renders"),
            r#"<span class="badge">&lt;shipped&gt;</span>"#
        );
        let err = t
            .render_component("Nope", &ctx)
            .expect_err("no such component");
        assert_eq!(err.template(), Some("Nope"));
    }

    #[test]
    fn tera_syntax_errors_name_the_template() {
        let err = templates(&[("broken.html", "{% if %}")])
            .err()
            .expect("refused");
        assert_eq!(err.template(), Some("broken.html"));
    }

    #[test]
    fn reading_a_missing_folder_names_it() {
        let err = read_dir(Path::new("/no/such/turbo-model/folder")).expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("cannot read templates from `/no/such/turbo-model/folder`"),
            "{err}"
        );
    }
}
