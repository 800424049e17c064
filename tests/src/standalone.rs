//! A bare `Turbo` (built in the test, with the test's settings, not installed) serving its
//! router on an ephemeral loopback port: for delivery tests that need their own limits,
//! history or shutdown, apart from the process's installed one.

use std::time::Duration;

use turbo_model::{Action, Builder, Content, StreamAction, Turbo};

/// A running router of one `Turbo`.
pub struct Standalone {
    /// The `Turbo` whose router is served; publish through it.
    pub turbo: Turbo,
    /// `127.0.0.1:PORT`.
    pub address: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Standalone {
    /// Builds `builder` (with a fixed test secret) and serves its router.
    ///
    /// # Panics
    ///
    /// If the build or the listener fails.
    pub async fn start(builder: Builder) -> Self {
        Self::start_with(builder, |_| axum::Router::new()).await
    }

    /// As [`start`](Self::start), with the application's own routes beside the
    /// `Turbo`'s, all under [`request_scope`](turbo_model::response::request_scope).
    ///
    /// # Panics
    ///
    /// If the build or the listener fails.
    pub async fn start_with(builder: Builder, app: impl FnOnce(&Turbo) -> axum::Router) -> Self {
        Self::start_keyed(
            builder.secret("standalone test secret, at least 32 bytes"),
            app,
        )
        .await
    }

    /// As [`start_with`](Self::start_with), with the key `builder` has (none is set).
    ///
    /// # Panics
    ///
    /// If the build or the listener fails.
    pub async fn start_keyed(builder: Builder, app: impl FnOnce(&Turbo) -> axum::Router) -> Self {
        let turbo = builder
            .build()
            .unwrap_or_else(|e| panic!("build Turbo: {e}"));
        let app = app(&turbo).layer(axum::middleware::from_fn_with_state(
            turbo.clone(),
            turbo_model::response::request_scope,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("address: {e}"));
        let app: axum::Router = app.merge(turbo.router());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = turbo.clone();
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            let _ = serving
                .serve_until(listener, app, Duration::from_secs(2), stopped)
                .await;
        });
        Self {
            turbo,
            address,
            server,
            stop: Some(stop),
        }
    }

    /// Stops serving the way a signal does (`Turbo::serve_until` with a 2 s grace);
    /// returns once the server has stopped, and how long that took.
    ///
    /// # Panics
    ///
    /// If the server task failed.
    pub async fn stop(&mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.server)
            .await
            .unwrap_or_else(|e| panic!("the server task: {e}"));
        started.elapsed()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The WebSocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/turbo-model/ws", self.address)
    }

    /// The SSE endpoint for one signed stream token.
    pub fn sse_url(&self, token: &str) -> String {
        format!("http://{}/turbo-model/sse?stream={token}", self.address)
    }

    /// The signed token of `stream`.
    ///
    /// # Panics
    ///
    /// If the name is invalid.
    pub fn token(&self, stream: &str) -> String {
        self.turbo
            .sign(stream)
            .unwrap_or_else(|e| panic!("sign {stream}: {e}"))
    }

    /// Publishes to `stream` the broadcast whose element is `html`.
    ///
    /// # Panics
    ///
    /// If `html` is not an element [`action_of`] reads, or publishing fails.
    pub fn publish(&self, stream: &str, html: &str) {
        publish_with(&self.turbo, stream, html);
    }
}

/// Publishes through `turbo`, to `stream`, the broadcast whose element is `html`.
///
/// # Panics
///
/// If `html` is not an element [`action_of`] reads, or publishing fails.
pub fn publish_with(turbo: &Turbo, stream: &str, html: &str) {
    turbo_model::stream(stream)
        .unwrap_or_else(|e| panic!("stream {stream}: {e}"))
        .broadcast(action_of(html))
        .debounce(std::time::Duration::ZERO)
        .send_with(turbo)
        .unwrap_or_else(|e| panic!("publish: {e}"));
}

/// The action whose element is `html`, one of the shapes the tests send:
/// `<turbo-stream action="A" target="T"><template>CONTENT</template></turbo-stream>`, or
/// an action without target and content (`refresh`).
///
/// # Panics
///
/// If `html` has another shape.
pub fn action_of(html: &str) -> StreamAction {
    let attribute = |name: &str| {
        html.split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
    };
    let action = match attribute("action") {
        Some("append") => Action::Append,
        Some("prepend") => Action::Prepend,
        Some("replace") => Action::Replace,
        Some("update") => Action::Update,
        Some("remove") => Action::Remove,
        Some("refresh") => Action::Refresh,
        other => panic!(
            "unknown action {other:?} in {}",
            html.chars().take(200).collect::<String>()
        ),
    };
    let content = html
        .split_once("<template>")
        .and_then(|(_, rest)| rest.rsplit_once("</template>"))
        .map(|(content, _)| Content::html(content));
    let mut made = StreamAction::new(action, content);
    if let Some(target) = attribute("target") {
        made = made.target(target);
    }
    let rendered = made.to_html().unwrap_or_else(|e| panic!("{html}: {e}"));
    assert_eq!(
        rendered, html,
        "the action renders as the element it was read from"
    );
    made
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.server.abort();
    }
}
