//! One stream as Server-Sent Events: the transport of Turbo's own
//! `<turbo-stream-source>`, whose `EventSource` reconnects by itself and sends
//! `Last-Event-ID`.
//!
//! Every event's id is the stream position (`epoch.seq`). The response starts with an
//! event that has only an id (the position at subscription), so that even a client that
//! receives nothing before a reconnect resumes from the right place. A resume that
//! history cannot serve starts with a `refresh` action instead: Turbo reloads the page.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use serde::Deserialize;

use super::Service;
use super::protocol;
use super::socket::start_seq;
use crate::hub::{Connection, KickSignal, Position, Since};

/// How soon an `EventSource` reconnects after the stream ends.
const RETRY_MS: u64 = 1000;

/// The query of the SSE endpoint.
#[derive(Debug, Deserialize)]
pub(crate) struct Params {
    stream: String,
    /// When the page's request began (`t` and microseconds), used when the browser has
    /// no `Last-Event-ID` yet (its first connection).
    since: Option<String>,
}

pub(crate) async fn events(
    State(service): State<Service>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
    request: axum::http::request::Parts,
) -> Response {
    if service.is_shutting_down() {
        // Not an error status: EventSource gives up on those for good. An empty stream
        // that ends makes it come back in a second, to this process restarted or to
        // another one.
        return come_back_soon();
    }
    let slot = match super::admit(&service, &request) {
        Ok(slot) => slot,
        // A refusal for the limits is a 503: EventSource gives up on it, so the page
        // stops updating. It reloads when the user comes back to it.
        Err(refused) => return *refused,
    };
    let Ok(Query(params)) = params else {
        return (
            StatusCode::BAD_REQUEST,
            "expected ?stream=<signed stream token>",
        )
            .into_response();
    };
    let stream = match service.verify(&params.stream) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::info!(%error, "SSE subscription refused");
            // Not 2xx: EventSource gives up instead of retrying a token that never works.
            return (
                StatusCode::FORBIDDEN,
                format!("stream token refused: {error}"),
            )
                .into_response();
        }
    };
    let request = std::sync::Arc::new(request);
    if let Err(reason) = service.authorize(Some(&request), &stream).await {
        tracing::info!(%stream, %reason, "SSE subscription refused by the application");
        return (
            StatusCode::FORBIDDEN,
            format!("subscription to `{stream}` refused: {reason}"),
        )
            .into_response();
    }
    let since = request
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(params.since.as_deref())
        .map(Since::parse);
    let mut connection = service.hub().connect();
    let subscribed = match service.subscribe(&mut connection, &stream, since).await {
        Ok(subscribed) => subscribed,
        Err(error) => {
            tracing::warn!(%stream, %error, "the broker could not answer an SSE subscription");
            // It comes back in a second, with its Last-Event-ID.
            return come_back_soon();
        }
    };

    let mut opening = format!("retry: {RETRY_MS}\n");
    if subscribed.gap.is_some() {
        opening.push_str(&format!(
            "id: {}\ndata: <turbo-stream action=\"refresh\"></turbo-stream>\n\n",
            subscribed.position
        ));
    } else {
        // A resuming client's own position: the replay that follows moves it on. Naming
        // the stream's current position here would let a client cut off mid-replay skip
        // the rest of it on its next reconnect.
        let from = match since {
            Some(Since::Position(position)) => position,
            _ => Position::new(subscribed.position.epoch, start_seq(since, &subscribed)),
        };
        opening.push_str(&format!("id: {from}\n\n"));
    }
    let mut first: Vec<Bytes> = vec![Bytes::from(opening)];
    first.extend(subscribed.replay.iter().map(|f| protocol::event(f).clone()));

    // Kept (compact) only when an authorizer may be asked again.
    let kept = service
        .authorizes()
        .then(|| std::sync::Arc::new(super::compact(&request)));
    let state = Events {
        _slot: slot,
        registration: service.register(connection.id(), kept.clone()),
        request: kept,
        service: service.clone(),
        stream,
        kick: connection.kick_signal(),
        connection,
        shutdown: service.shutdown_signal(),
        ticker: heartbeat_ticker(service.settings().heartbeat),
        pending: first,
        ending: false,
    };
    let body = Body::from_stream(stream::unfold(state, Events::next));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

fn heartbeat_ticker(every: Duration) -> tokio::time::Interval {
    tokio::time::interval_at(tokio::time::Instant::now() + every, every)
}

/// An empty event stream that ends: `EventSource` reconnects after `retry`, with its
/// `Last-Event-ID`.
fn come_back_soon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        format!("retry: {RETRY_MS}\n\n"),
    )
        .into_response()
}

/// The state of one event stream between chunks.
struct Events {
    /// Its place among the open connections.
    _slot: super::limits::Slot,
    /// Where `reauthorize` asks it.
    registration: super::recheck::Registration,
    service: Service,
    request: Option<std::sync::Arc<axum::http::request::Parts>>,
    stream: crate::name::StreamName,
    connection: Connection,
    kick: KickSignal,
    shutdown: tokio::sync::watch::Receiver<bool>,
    ticker: tokio::time::Interval,
    /// Chunks to send before waiting again, oldest first.
    pending: Vec<Bytes>,
    /// Set once the stream should end after `pending` drains.
    ending: bool,
}

impl Events {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            if !self.pending.is_empty() {
                let chunk = self.pending.remove(0);
                return Some((Ok(chunk), self));
            }
            if self.ending {
                return None;
            }
            tokio::select! {
                biased;
                () = self.kick.kicked() => return None,
                () = super::closing(&mut self.shutdown) => {
                    while let Some(frame) = self.connection.try_next_frame() {
                        self.pending.push(protocol::event(&frame).clone());
                    }
                    self.ending = true;
                }
                frame = self.connection.next_frame() => match frame {
                    Some(frame) => self.pending.push(protocol::event(&frame).clone()),
                    None => return None,
                },
                _ = self.ticker.tick() => {
                    self.pending.push(Bytes::from_static(b": ping\n\n"));
                }
                asked = self.registration.signal().asked() => {
                    if asked.iter().any(|streams| streams.matches(&self.stream)) {
                        // Output waits meanwhile: this connection carries this one stream.
                        let check = self.service.authorize(self.request.as_ref(), &self.stream);
                        if let Err(reason) = check.await {
                            tracing::info!(stream = %self.stream, %reason, "SSE subscription ended: the application no longer allows it");
                            // EventSource reconnects; its new request is refused with 403.
                            self.ending = true;
                        }
                    }
                }
            }
        }
    }
}
