//! The HTTP side of a scenario: create the chat room, read its signed stream token from
//! the room page, and post the benchmark messages, noting when each POST was sent.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use tokio::time::Instant;

use crate::message_text;

/// How long one HTTP request may take.
const REQUEST_WITHIN: Duration = Duration::from_secs(30);

/// An HTTP client for one server, on one kept-alive connection.
#[derive(Debug)]
pub struct Publisher {
    http: reqwest::Client,
    base: String,
}

/// One POST of a benchmark message.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    /// When the request started: latencies are measured from here.
    pub at: Instant,
    /// How long until the response came.
    pub took: Duration,
    /// Whether the server answered 303, as both servers do on success.
    pub ok: bool,
}

impl Publisher {
    /// A client for the server at `addr`. Redirects are not followed: each POST costs
    /// the server exactly one request.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(addr: SocketAddr) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .timeout(REQUEST_WITHIN)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            http,
            base: format!("http://{addr}"),
        })
    }

    /// Creates a chat room (`POST /rooms/`) and returns its page's path, from the
    /// redirect.
    ///
    /// # Errors
    ///
    /// When the request fails or does not redirect.
    pub async fn create_room(&self, name: &str) -> Result<String, String> {
        let response = self
            .http
            .post(format!("{}/rooms/", self.base))
            .form(&[("name", name)])
            .send()
            .await
            .map_err(|e| format!("POST /rooms/: {e}"))?;
        if response.status() != StatusCode::SEE_OTHER {
            return Err(format!("POST /rooms/ answered {}", response.status()));
        }
        response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|location| location.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| "POST /rooms/ redirected nowhere".to_owned())
    }

    /// The signed stream token in the page at `path`: the `streams` attribute of its
    /// `<turbo-model-stream-source>` element.
    ///
    /// # Errors
    ///
    /// When the page cannot be read or has no such element.
    pub async fn stream_token(&self, path: &str) -> Result<String, String> {
        let page = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("GET {path}: {e}"))?
            .text()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let element = page
            .find("<turbo-model-stream-source")
            .map(|at| &page[at..])
            .ok_or_else(|| format!("{path} has no <turbo-model-stream-source>"))?;
        let streams = element
            .split_once("streams=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(streams, _)| streams)
            .ok_or_else(|| format!("{path}: the stream source has no streams attribute"))?;
        streams
            .split_whitespace()
            .next()
            .map(str::to_owned)
            .ok_or_else(|| format!("{path}: the stream source names no stream"))
    }

    /// Posts one message (form field `text`) to `path`.
    pub async fn post(&self, path: &str, text: &str) -> Sent {
        let at = Instant::now();
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .form(&[("text", text)])
            .send()
            .await;
        let ok = match response {
            // Read the (empty) body so that the connection is reused.
            Ok(response) => {
                let status = response.status();
                let _ = response.bytes().await;
                status == StatusCode::SEE_OTHER
            }
            Err(_) => false,
        };
        Sent {
            at,
            took: at.elapsed(),
            ok,
        }
    }

    /// Posts `messages` benchmark messages to `path`, one after the other: at `rate`
    /// per second from now, or back to back (each as soon as the previous one was
    /// answered) when `rate` is `None`.
    pub async fn publish(&self, path: &str, messages: usize, rate: Option<f64>) -> Vec<Sent> {
        let start = Instant::now();
        let mut sent = Vec::with_capacity(messages);
        for seq in 0..messages {
            if let Some(rate) = rate {
                let due = start + Duration::from_secs_f64(seq as f64 / rate);
                tokio::time::sleep_until(due).await;
            }
            sent.push(self.post(path, &message_text(seq)).await);
        }
        sent
    }
}
