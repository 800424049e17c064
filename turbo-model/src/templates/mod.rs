//! Tera 2 templates: loading a folder, the `turbo_subscribe` tag, rendering. The rules
//! users see (naming, autoescape, how the tag finds a model's stream) are documented in
//! the crate docs, section "Templates".

mod tag;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tera::{Context, Kwargs, State, Tera, TeraResult, Value};

use crate::action::push_escaped;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::model::{self, EntityInfo};
use crate::signing::Signer;
use crate::stream::{StreamName, row_stream_name};

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
        hub: Arc<Hub>,
        backend: Arc<dyn Backend>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let mut tera = Tera::new();
        tera.register_function(
            tag::FUNCTION,
            Subscribe {
                signer,
                endpoints,
                hub,
                backend,
            },
        );
        let mut rewritten = Vec::with_capacity(sources.len());
        for (name, source) in &sources {
            let source = tag::rewrite(source).map_err(|e| Error::Template {
                template: name.clone(),
                message: format!("line {}: {}", e.line, e.message),
            })?;
            rewritten.push((name.as_str(), source));
        }
        tera.add_raw_templates(rewritten)
            .map_err(|e| template_error(&e))?;
        Ok(Self { tera, metrics })
    }

    /// Renders a template by name.
    pub(crate) fn render(&self, name: &str, context: &Context) -> Result<String> {
        self.metrics.rendered();
        self.tera.render(name, context).map_err(|e| Error::Render {
            template: name.to_owned(),
            message: e.to_string(),
        })
    }

    /// Renders a Tera 2 component by name, autoescaped.
    pub(crate) fn render_component(&self, name: &str, context: &Context) -> Result<String> {
        self.metrics.rendered();
        self.tera
            .render_component(name, context, None, true)
            .map_err(|e| Error::Render {
                template: name.to_owned(),
                message: e.to_string(),
            })
    }

    /// The names of every loaded template, sorted.
    pub(crate) fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tera.get_template_names().collect();
        names.sort_unstable();
        names
    }
}

/// Turns a Tera parse error into ours, naming the template it is about.
fn template_error(error: &tera::Error) -> Error {
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
/// position of each stream at render time.
struct Subscribe {
    signer: Signer,
    endpoints: Endpoints,
    hub: Arc<Hub>,
    backend: Arc<dyn Backend>,
}

impl Subscribe {
    /// `epoch.seq` where the page starts, or `-` when the backend cannot say.
    fn since(&self, stream: &StreamName, began: Option<std::time::Instant>) -> String {
        self.backend
            .render_position(&self.hub, stream, began)
            .map_or_else(|| "-".to_owned(), |p| p.to_string())
    }
}

impl tera::Function<TeraResult<Value>> for Subscribe {
    fn call(&self, kwargs: Kwargs, _: &State<'_>) -> TeraResult<Value> {
        let streams: Vec<Value> = kwargs.must_get("streams")?;
        let names: Vec<String> = kwargs.get("names")?.unwrap_or_default();
        let sse = kwargs.get::<String>("transport")?.as_deref() == Some("sse");
        let began = crate::dispatch::request_context().and_then(|c| c.started);
        let mut resolved = Vec::new();
        for (i, value) in streams.iter().enumerate() {
            let name = names.get(i).map_or("", String::as_str);
            collect_streams(value, name, &mut resolved).map_err(tera::Error::message)?;
        }
        let mut html = String::with_capacity(128 + 64 * resolved.len());
        if sse {
            // Turbo's own element: an EventSource per stream, no script of ours.
            for stream in &resolved {
                html.push_str("<turbo-stream-source src=\"");
                push_escaped(&mut html, &self.endpoints.events);
                html.push_str("?stream=");
                html.push_str(&self.signer.sign(stream));
                let since = self.since(stream, began);
                if since != "-" {
                    html.push_str("&amp;since=");
                    html.push_str(&since);
                }
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
        html.push_str("\" since=\"");
        for (i, stream) in resolved.iter().enumerate() {
            if i > 0 {
                html.push(' ');
            }
            html.push_str(&self.since(stream, began));
        }
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

/// Finds the stream(s) a tag argument stands for.
fn collect_streams(
    value: &Value,
    expr_name: &str,
    out: &mut Vec<StreamName>,
) -> std::result::Result<(), String> {
    if let Some(name) = value.as_str() {
        out.push(StreamName::new(name).map_err(|e| format!("turbo_subscribe: {e}"))?);
    } else if let Some(items) = value.as_array() {
        for item in items {
            collect_streams(item, expr_name, out)?;
        }
    } else if let Some(map) = value.as_map() {
        let keys: BTreeSet<&str> = map.keys().filter_map(|k| k.as_str()).collect();
        let entity = find_entity(&keys, expr_name)?;
        let mut key_values = Vec::with_capacity(entity.primary_key.len());
        for field in entity.primary_key {
            let v = map
                .get(&tera::value::Key::Str(field))
                .ok_or_else(|| format!("turbo_subscribe: `{expr_name}` has no field `{field}`"))?;
            key_values.push(v.to_string());
        }
        let name = row_stream_name(
            (entity.prefix)(),
            key_values.iter().map(|v| v as &dyn std::fmt::Display),
        );
        out.push(StreamName::new(name).map_err(|e| format!("turbo_subscribe: {e}"))?);
    } else {
        let shown = if expr_name.is_empty() {
            "argument"
        } else {
            expr_name
        };
        return Err(format!(
            "turbo_subscribe: cannot subscribe to `{shown}`, a {}: expected a model, a stream name or a list of them",
            kind_name(value)
        ));
    }
    Ok(())
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
) -> std::result::Result<&'static EntityInfo, String> {
    let shaped: Vec<&'static EntityInfo> =
        model::entities().filter(|e| e.has_shape(keys)).collect();
    if let [only] = shaped.as_slice() {
        return Ok(only);
    }
    let pool: Vec<&'static EntityInfo> = if shaped.is_empty() {
        model::entities().filter(|e| e.has_key(keys)).collect()
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
            "turbo_subscribe: `{}` is not a model that derives ModelStream (fields: {}); \
             pass a stream name instead",
            if expr_name.is_empty() {
                "argument"
            } else {
                expr_name
            },
            keys.iter().copied().collect::<Vec<_>>().join(", ")
        )),
        (_, candidates) => Err(format!(
            "turbo_subscribe: `{}` could be any of {}; name the variable after its table \
             or pass a stream name",
            if expr_name.is_empty() {
                "argument"
            } else {
                expr_name
            },
            candidates
                .iter()
                .map(|e| (e.prefix)())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Arc<Hub> {
        Arc::new(Hub::new(crate::hub::HubSettings::default(), Arc::default()))
    }

    fn templates(sources: &[(&str, &str)]) -> Result<Templates> {
        templates_with(sources, hub())
    }

    fn position(hub: &Hub, name: &str) -> String {
        hub.position(&StreamName::new(name).expect("name"))
            .expect("the render created the record")
            .to_string()
    }

    fn templates_with(sources: &[(&str, &str)], hub: Arc<Hub>) -> Result<Templates> {
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
            hub,
            Arc::new(crate::backend::InProcess),
            Arc::default(),
        )
    }

    /// The token is HMAC-SHA256 over the domain and the name, checked against Python's
    /// `hmac` module: `hmac.new(secret, b"turbo-model/stream-name/v1\0lobby", sha256)`.
    #[test]
    fn string_streams_render_signed_element() {
        let hub = hub();
        let t = templates_with(
            &[("page.html", r#"<% turbo_subscribe "lobby" %>"#)],
            hub.clone(),
        )
        .expect("builds");
        let html = t.render("page.html", &Context::new()).expect("renders");
        assert_eq!(
            html,
            format!(
                "<turbo-model-stream-source id=\"turbo-model-{:016x}\" data-turbo-permanent src=\"/turbo-model/ws\" streams=\"bG9iYnk.tBEFxdbtR6ws9x867vP090rF0hQE_OLvLr0Oc8Cq1N4\" since=\"{}\"></turbo-model-stream-source><script type=\"module\" src=\"/turbo-model/client.js\"></script>",
                fnv1a(b"bG9iYnk.tBEFxdbtR6ws9x867vP090rF0hQE_OLvLr0Oc8Cq1N4"),
                position(&hub, "lobby")
            )
        );
        assert!(position(&hub, "lobby").ends_with(".0"));
    }

    #[test]
    fn sse_transport_renders_turbos_own_element_per_stream() {
        let hub = hub();
        let t = templates_with(
            &[("p.html", r#"<% turbo_subscribe "a" "b" transport="sse" %>"#)],
            hub.clone(),
        )
        .expect("builds");
        let html = t.render("p.html", &Context::new()).expect("renders");
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef").expect("secret");
        let token = |n: &str| signer.sign(&StreamName::new(n).expect("name"));
        assert_eq!(
            html,
            format!(
                "<turbo-stream-source src=\"/turbo-model/sse?stream={}&amp;since={}\"></turbo-stream-source><turbo-stream-source src=\"/turbo-model/sse?stream={}&amp;since={}\"></turbo-stream-source>",
                token("a"),
                position(&hub, "a"),
                token("b"),
                position(&hub, "b")
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
        let html = t.render("p.html", &ctx).expect("renders");
        let streams = html
            .split("streams=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("streams attribute");
        assert_eq!(streams.split(' ').count(), 2);
        assert!(streams.starts_with("YQ."), "{streams}");
    }

    #[test]
    fn bad_arguments_name_template_and_line() {
        let t =
            templates(&[("room.html", "line one\n{% turbo_subscribe count %}")]).expect("builds");
        let mut ctx = Context::new();
        ctx.insert("count", &3);
        let err = t
            .render("room.html", &ctx)
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
            .render("p.html", &ctx)
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
