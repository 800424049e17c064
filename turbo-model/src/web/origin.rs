//! Which sites may open a stream connection or post a form: the `Origin` check.
//!
//! A page on another site can open a WebSocket to this server with the user's cookies
//! (cross-site WebSocket hijacking) and submit forms to it (cross-site request forgery).
//! Browsers say where a request comes from in `Origin` (and `Sec-Fetch-Site`); these
//! checks refuse requests from other sites with 403.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The sites allowed to open stream connections, checked against `Origin`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllowedOrigins {
    /// Only pages served by this server: `Origin`'s host and port equal the `Host`
    /// header. The default.
    #[default]
    SameHost,
    /// These origins exactly, e.g. `https://app.example.com` (scheme, host, port).
    List(Vec<String>),
    /// Any site. Only for endpoints that carry nothing private.
    Any,
}

impl AllowedOrigins {
    /// Whether a request with these headers may proceed. A request without `Origin`
    /// (not from a browser page) is allowed: it cannot carry a victim's cookies.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        match self {
            Self::Any => true,
            Self::List(list) => list
                .iter()
                .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin)),
            Self::SameHost => same_host(origin, headers),
        }
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request was sent to.
fn same_host(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let strip = |a: &str| {
        a.strip_suffix(default_port)
            .unwrap_or(a)
            .to_ascii_lowercase()
    };
    strip(authority) == strip(host)
}

/// Middleware refusing cross-site form posts and other unsafe requests with 403.
///
/// `GET`, `HEAD` and `OPTIONS` pass. Other methods pass only when the browser says the
/// request is same-origin (`Sec-Fetch-Site: same-origin` or `none`), or, for browsers
/// that do not send that header, when `Origin` matches `Host`. Requests without either
/// header (not from a browser page) pass.
///
/// ```no_run
/// use axum::{Router, middleware, routing::post};
/// let app: Router = Router::new()
///     .route("/rooms/", post(|| async { "created" }))
///     .layer(middleware::from_fn(turbo_model::web::reject_cross_site));
/// ```
pub async fn reject_cross_site(request: Request, next: Next) -> Response {
    if is_cross_site(request.method(), request.headers()) {
        tracing::info!(
            method = %request.method(),
            uri = %request.uri(),
            origin = ?request.headers().get(header::ORIGIN),
            "cross-site request refused"
        );
        return (StatusCode::FORBIDDEN, "cross-site request refused").into_response();
    }
    next.run(request).await
}

fn is_cross_site(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("same-origin" | "none") => false,
        Some(_) => true,
        None => !AllowedOrigins::SameHost.allows(headers),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn same_host_compares_host_and_port() {
        let same = AllowedOrigins::SameHost;
        assert!(same.allows(&headers(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://127.0.0.1:3000")
        ])));
        assert!(same.allows(&headers(&[
            ("host", "example.com"),
            ("origin", "https://example.com")
        ])));
        assert!(same.allows(&headers(&[
            ("host", "Example.com:443"),
            ("origin", "https://example.com")
        ])));
        assert!(!same.allows(&headers(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://127.0.0.1:3001")
        ])));
        assert!(!same.allows(&headers(&[
            ("host", "app.test"),
            ("origin", "http://evil.test")
        ])));
        assert!(!same.allows(&headers(&[("host", "app.test"), ("origin", "null")])));
        assert!(
            !same.allows(&headers(&[("origin", "http://app.test")])),
            "no Host"
        );
        assert!(
            same.allows(&headers(&[("host", "app.test")])),
            "no Origin: not a page"
        );
    }

    #[test]
    fn lists_and_any() {
        let list = AllowedOrigins::List(vec!["https://app.test/".into()]);
        assert!(list.allows(&headers(&[
            ("host", "api.test"),
            ("origin", "https://app.test")
        ])));
        assert!(!list.allows(&headers(&[
            ("host", "api.test"),
            ("origin", "https://api.test")
        ])));
        assert!(AllowedOrigins::Any.allows(&headers(&[("host", "a"), ("origin", "http://b")])));
    }

    #[test]
    fn unsafe_methods_need_a_same_origin_request() {
        let post = Method::POST;
        assert!(!is_cross_site(
            &Method::GET,
            &headers(&[("sec-fetch-site", "cross-site")])
        ));
        assert!(is_cross_site(
            &post,
            &headers(&[("sec-fetch-site", "cross-site")])
        ));
        assert!(is_cross_site(
            &post,
            &headers(&[("sec-fetch-site", "same-site")])
        ));
        assert!(!is_cross_site(
            &post,
            &headers(&[("sec-fetch-site", "same-origin")])
        ));
        assert!(is_cross_site(
            &post,
            &headers(&[("host", "a.test"), ("origin", "http://b.test")])
        ));
        assert!(!is_cross_site(
            &post,
            &headers(&[("host", "a.test"), ("origin", "http://a.test")])
        ));
        assert!(!is_cross_site(&post, &headers(&[("host", "a.test")])));
    }
}
