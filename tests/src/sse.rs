//! A Server-Sent Events client for the tests: what `EventSource` does, with bounded waits.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};

/// How long a test waits for an event that should come.
pub const WAIT: Duration = Duration::from_secs(5);

/// One parsed event: the fields a browser would see (comments are dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `id:`, if the event had one.
    pub id: Option<String>,
    /// The `data:` lines joined by newlines, if any.
    pub data: Option<String>,
    /// `retry:`, if given.
    pub retry: Option<u64>,
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// One open event stream.
pub struct SseClient {
    body: Body,
    buffer: String,
}

impl SseClient {
    /// Opens `url`, sending `Last-Event-ID` when given. Returns the status on refusal.
    ///
    /// # Panics
    ///
    /// If the request cannot be sent.
    pub async fn connect(url: &str, last_event_id: Option<&str>) -> Result<Self, u16> {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        if !response.status().is_success() {
            return Err(response.status().as_u16());
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(content_type, "text/event-stream");
        Ok(Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        })
    }

    /// The next event, or `None` when the server ended the stream; panics after [`WAIT`].
    pub async fn next_event(&mut self) -> Option<Event> {
        self.next_event_within(WAIT).await
    }

    /// The next event, or `None` when the server ended the stream; panics after `wait`.
    pub async fn next_event_within(&mut self, wait: Duration) -> Option<Event> {
        loop {
            if let Some(event) = self.take_event() {
                return Some(event);
            }
            let chunk = tokio::time::timeout(wait, self.body.next())
                .await
                .unwrap_or_else(|_| panic!("no event within {wait:?}"));
            match chunk {
                Some(Ok(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Parses one complete event out of the buffer, skipping comment-only blocks.
    fn take_event(&mut self) -> Option<Event> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = Event::default();
            let mut any = false;
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "" => continue,
                    "id" => event.id = Some(value.to_owned()),
                    "retry" => event.retry = value.parse().ok(),
                    "data" => {
                        let data = event.data.get_or_insert_with(String::new);
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(value);
                    }
                    _ => {}
                }
                any = true;
            }
            if any {
                return Some(event);
            }
        }
    }
}
