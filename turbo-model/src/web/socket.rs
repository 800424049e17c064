//! One WebSocket connection: requests in, frames out, until either side stops.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};

use super::protocol::{self, ErrorCode, Inbound, Reply};
use crate::hub::Connection;
use crate::turbo::Turbo;

/// Serves one upgraded socket until the client leaves, the hub kicks it, or it breaks.
pub(crate) async fn serve(turbo: Turbo, mut socket: WebSocket) {
    let mut connection = turbo.hub().connect();
    let kick = connection.kick_signal();
    let id = connection.id().get();
    tracing::debug!(connection = id, "socket open");
    let hello = Reply::Hello {
        connection: id.to_string(),
    };
    if socket.send(text(hello.to_json())).await.is_err() {
        return;
    }
    let close = loop {
        let outbound = tokio::select! {
            biased;
            () = kick.kicked() => break Some(slow_consumer_close()),
            inbound = socket.recv() => match inbound {
                None | Some(Ok(Message::Close(_))) => break None,
                Some(Err(error)) => break close_for(error),
                Some(Ok(Message::Text(request))) => handle(&turbo, &mut connection, &request),
                Some(Ok(Message::Binary(_))) => Some(error_reply(
                    ErrorCode::BinaryNotSupported,
                    "binary frames are not accepted; send JSON text".into(),
                    None,
                )),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
            },
            frame = connection.next_frame() => match frame {
                Some(frame) => Some(frame),
                None => break None,
            },
        };
        if let Some(message) = outbound {
            // A stalled write must not outlive a kick: the kick is how a slow client is
            // let go without holding its queue forever.
            let sent = tokio::select! {
                biased;
                () = kick.kicked() => break Some(slow_consumer_close()),
                sent = socket.send(Message::Text(message)) => sent,
            };
            if sent.is_err() {
                break None;
            }
        }
    };
    if let Some(frame) = close {
        let _ = socket.send(Message::Close(Some(frame))).await;
    }
    tracing::debug!(connection = id, "socket closed");
}

fn text(json: String) -> Message {
    Message::Text(Utf8Bytes::from(json))
}

fn slow_consumer_close() -> CloseFrame {
    CloseFrame {
        code: close_code::AGAIN,
        reason: Utf8Bytes::from_static("too slow to keep up; reconnect"),
    }
}

/// The close frame owed to the client after a read error, if any.
fn close_for(error: axum::Error) -> Option<CloseFrame> {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(capacity)) => {
            tracing::debug!(error = %capacity, "inbound message over the size limit");
            Some(CloseFrame {
                code: close_code::SIZE,
                reason: Utf8Bytes::from_static("message too big: the limit is 65536 bytes"),
            })
        }
        Some(tungstenite::Error::Protocol(protocol)) => {
            tracing::debug!(error = %protocol, "WebSocket protocol error");
            Some(CloseFrame {
                code: close_code::PROTOCOL,
                reason: Utf8Bytes::from_static("protocol error"),
            })
        }
        _ => {
            tracing::debug!(error = %inner, "socket read failed");
            None
        }
    }
}

fn error_reply(code: ErrorCode, message: String, token: Option<&str>) -> Utf8Bytes {
    Utf8Bytes::from(
        Reply::Error {
            code,
            message,
            token,
        }
        .to_json(),
    )
}

/// Answers one request; every request gets exactly one reply.
fn handle(turbo: &Turbo, connection: &mut Connection, request: &str) -> Option<Utf8Bytes> {
    let request = match protocol::parse(request) {
        Ok(request) => request,
        Err(message) => return Some(error_reply(ErrorCode::BadRequest, message, None)),
    };
    let (Inbound::Subscribe { stream: token } | Inbound::Unsubscribe { stream: token }) = &request;
    let stream = match turbo.verify(token) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::info!(connection = connection.id().get(), %error, "subscription refused");
            return Some(error_reply(
                ErrorCode::InvalidToken,
                format!("stream token refused: {error}"),
                Some(token),
            ));
        }
    };
    let reply = match request {
        Inbound::Subscribe { .. } => {
            let limit = turbo.settings().max_subscriptions;
            if connection.streams().len() >= limit && !connection.streams().contains(&stream) {
                return Some(error_reply(
                    ErrorCode::TooManySubscriptions,
                    format!("a connection may subscribe to at most {limit} streams"),
                    Some(token),
                ));
            }
            let seq = connection
                .subscribe(&stream)
                .unwrap_or_else(|| turbo.hub().last_seq(&stream));
            Reply::Subscribed {
                stream: stream.as_str(),
                token,
                seq,
            }
        }
        Inbound::Unsubscribe { .. } => {
            connection.unsubscribe(&stream);
            Reply::Unsubscribed {
                stream: stream.as_str(),
                token,
            }
        }
    };
    Some(Utf8Bytes::from(reply.to_json()))
}
