//! A bare `Turbo` (built in the test, with the test's settings, not installed) serving its
//! router on an ephemeral loopback port: for delivery tests that need their own limits,
//! history or shutdown, apart from the process's installed one.

use turbo_model::{Builder, Turbo};

/// A running router of one `Turbo`.
pub struct Standalone {
    /// The `Turbo` whose router is served; publish through it.
    pub turbo: Turbo,
    /// `127.0.0.1:PORT`.
    pub address: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Standalone {
    /// Builds `builder` (with a fixed test secret) and serves its router.
    ///
    /// # Panics
    ///
    /// If the build or the listener fails.
    pub async fn start(builder: Builder) -> Self {
        let turbo = builder
            .secret("standalone test secret, at least 32 bytes")
            .build()
            .unwrap_or_else(|e| panic!("build Turbo: {e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("address: {e}"));
        let app: axum::Router = turbo.router();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            turbo,
            address,
            server,
        }
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

    /// Publishes raw HTML to `stream`.
    ///
    /// # Panics
    ///
    /// If publishing fails.
    pub fn publish(&self, stream: &str, html: &str) {
        self.turbo
            .publish(stream, html.to_owned())
            .unwrap_or_else(|e| panic!("publish: {e}"));
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.server.abort();
    }
}
