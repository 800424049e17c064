//! Turbo's JavaScript, from npm: served by the app so that the chat works offline, with
//! a pinned CDN copy as the fallback when `npm ci` has not run. Other examples in this
//! repository serve it the same way.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where pages load Turbo from.
#[derive(Clone, Debug)]
pub enum TurboScript {
    /// The npm copy, served at `/static/turbo.js`.
    Local(std::sync::Arc<str>),
    /// The npm copy is missing: the pinned CDN URL.
    Cdn,
}

impl TurboScript {
    /// Reads the npm copy, or falls back to the CDN (logged).
    pub fn load() -> Self {
        let path = crate::turbo_js_path();
        match std::fs::read_to_string(&path) {
            Ok(js) => Self::Local(js.into()),
            Err(error) => {
                tracing::warn!(
                    path = %path.display(),
                    %error,
                    cdn = crate::TURBO_CDN_URL,
                    "Turbo from npm is missing (run `npm ci` in examples/chat); pages load it from the CDN"
                );
                Self::Cdn
            }
        }
    }

    /// The `src` of the page's Turbo `<script>`.
    pub fn url(&self) -> &'static str {
        match self {
            Self::Local(_) => "/static/turbo.js",
            Self::Cdn => crate::TURBO_CDN_URL,
        }
    }

    /// The route serving `/static/turbo.js`.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let script = self.clone();
        Router::new().route(
            "/static/turbo.js",
            get(move || {
                let script = script.clone();
                async move { script.response() }
            }),
        )
    }

    fn response(&self) -> Response {
        match self {
            Self::Local(js) => (
                [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                js.to_string(),
            )
                .into_response(),
            Self::Cdn => Redirect::temporary(crate::TURBO_CDN_URL).into_response(),
        }
    }
}
