//! What a connection's client asks for, and the answers.
//!
//! Answering may wait for the application's authorizer or for the broker. That waiting
//! never happens in the connection's loop: the work is kept as a pending future that the
//! loop polls beside everything else, so a slow authorizer (or a slow broker) delays only
//! the subscription that waits for it, never the connection's frames, heartbeats, kick
//! or shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::close_code;
use axum::http::request::Parts;
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;

use super::rate::RateLimiter;
use super::{Stop, close, error_reply};
use crate::backend::{BoxFuture, Resume};
use crate::hub::{Connection, Position, Since};
use crate::name::StreamName;
use crate::web::protocol::{self, ErrorCode, Inbound, Reply};
use crate::web::{Refusal, Service};

/// Refused requests in a row after which a flooding client is disconnected.
const MAX_REFUSED_IN_A_ROW: u32 = 100;

/// How long the application's authorizer may take to answer; past it, the subscription
/// is refused.
const AUTHORIZE_WITHIN: Duration = Duration::from_secs(10);

/// Work a request left waiting, and what it comes back as.
pub(super) enum Done {
    /// The authorizer answered a subscription.
    Authorized {
        stream: StreamName,
        token: String,
        since: Option<Since>,
        outcome: Result<(), Refusal>,
    },
    /// The broker answered a subscription the hub handed over.
    Resumed {
        stream: StreamName,
        token: String,
        since: Option<Since>,
        outcome: crate::error::Result<Resume>,
    },
    /// The authorizer answered again for a live subscription.
    Rechecked {
        stream: StreamName,
        outcome: Result<(), Refusal>,
    },
}

/// A connection's side of the conversation.
pub(super) struct State<'a> {
    pub(super) service: &'a Service,
    /// The request that opened the connection, kept only for an authorization callback.
    request: Option<Arc<Parts>>,
    pub(super) connection: &'a mut Connection,
    limiter: RateLimiter,
    refused_in_a_row: u32,
    /// Answers being waited for; bounded by the subscriptions a connection may hold.
    pub(super) pending: FuturesUnordered<BoxFuture<Done>>,
    /// Subscriptions waiting for an answer, with their tokens.
    waiting: HashMap<StreamName, String>,
    /// The tokens of the live subscriptions (a recheck's refusal names it).
    tokens: HashMap<StreamName, String>,
}

impl<'a> State<'a> {
    pub(super) fn new(
        service: &'a Service,
        request: Option<Arc<Parts>>,
        connection: &'a mut Connection,
    ) -> Self {
        Self {
            limiter: RateLimiter::new(service.settings().inbound_rate),
            service,
            request,
            connection,
            refused_in_a_row: 0,
            pending: FuturesUnordered::new(),
            waiting: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    /// An `error` frame, counted in the metrics by its code.
    pub(super) fn refuse(&self, code: ErrorCode, message: String, token: Option<&str>) -> Bytes {
        self.service.metrics().refused(code.as_str());
        error_reply(code, message, token)
    }

    fn forbidden(&self, stream: &StreamName, reason: &Refusal, token: &str) -> Bytes {
        self.refuse(
            ErrorCode::Forbidden,
            format!("subscription to `{stream}` refused: {reason}"),
            Some(token),
        )
    }

    /// Answers one request: its replies now (and any replayed frames, in order), or
    /// nothing yet when the answer waits for the authorizer or the broker.
    pub(super) fn request(&mut self, request: &str) -> Result<Vec<Bytes>, Stop> {
        if !self.limiter.admit(Instant::now()) {
            self.refused_in_a_row += 1;
            if self.refused_in_a_row >= MAX_REFUSED_IN_A_ROW {
                return Err(close(close_code::POLICY, "too many requests"));
            }
            let rate = self.service.settings().inbound_rate;
            return Ok(vec![self.refuse(
                ErrorCode::RateLimited,
                format!(
                    "at most {} requests per second (bursts of {}); this one was dropped",
                    rate.per_second, rate.burst
                ),
                None,
            )]);
        }
        let (replies, refused) = match self.answer(request) {
            Answer::Done(replies) => (replies, false),
            Answer::Refused(reply) => (vec![reply], true),
            Answer::Stop(stop) => return Err(stop),
        };
        self.refused_in_a_row = if refused {
            self.refused_in_a_row + 1
        } else {
            0
        };
        if self.refused_in_a_row >= MAX_REFUSED_IN_A_ROW {
            return Err(close(close_code::POLICY, "too many refused requests"));
        }
        Ok(replies)
    }

    fn answer(&mut self, request: &str) -> Answer {
        let (token, since, subscribe) = match protocol::parse(request) {
            Ok(Inbound::Pong {}) => return Answer::Done(Vec::new()),
            Ok(Inbound::Subscribe { stream, since }) => (stream, since, true),
            Ok(Inbound::Unsubscribe { stream }) => (stream, None, false),
            Err(message) => {
                return Answer::Refused(self.refuse(ErrorCode::BadRequest, message, None));
            }
        };
        let stream = match self.service.verify(&token) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::info!(connection = self.connection.id().get(), %error, "subscription refused");
                return Answer::Refused(self.refuse(
                    ErrorCode::InvalidToken,
                    format!("stream token refused: {error}"),
                    Some(&token),
                ));
            }
        };
        if !subscribe {
            // A subscription still waiting is dropped when its answer comes.
            self.waiting.remove(&stream);
            self.tokens.remove(&stream);
            self.connection.unsubscribe(&stream);
            let reply = Reply::Unsubscribed {
                stream: stream.as_str(),
                token: &token,
            };
            return Answer::Done(vec![protocol::text_frame(&reply.to_json())]);
        }
        if self.waiting.contains_key(&stream) {
            // Already asked; the answer to the first request will come.
            return Answer::Done(Vec::new());
        }
        let limit = self.service.settings().max_subscriptions;
        let held = self.connection.streams().len() + self.waiting.len();
        if held >= limit && !self.connection.streams().contains(&stream) {
            return Answer::Refused(self.refuse(
                ErrorCode::TooManySubscriptions,
                format!("a connection may subscribe to at most {limit} streams"),
                Some(&token),
            ));
        }
        let since = since.map(|s| s.since());
        if !self.service.authorizes() {
            return match self.subscribe(stream, token, since) {
                Ok(replies) => Answer::Done(replies),
                Err(stop) => Answer::Stop(stop),
            };
        }
        self.waiting.insert(stream.clone(), token.clone());
        let check = authorize(self.service, self.request.clone(), stream.clone());
        self.pending.push(Box::pin(async move {
            Done::Authorized {
                stream,
                token,
                since,
                outcome: check.await,
            }
        }));
        Answer::Done(Vec::new())
    }

    /// Subscribes in the hub; hands the question to the broker when the hub cannot
    /// answer (the answer then comes later).
    fn subscribe(
        &mut self,
        stream: StreamName,
        token: String,
        since: Option<Since>,
    ) -> Result<Vec<Bytes>, Stop> {
        let subscribed = self.connection.subscribe(&stream, since);
        if subscribed.ask_broker {
            self.waiting.insert(stream.clone(), token.clone());
            let resume = self.service.resume(stream.clone(), since);
            self.pending.push(Box::pin(async move {
                Done::Resumed {
                    stream,
                    token,
                    since,
                    outcome: resume.await,
                }
            }));
            return Ok(Vec::new());
        }
        let resume = Resume::new(subscribed.position, subscribed.replay, subscribed.gap);
        Ok(self.subscribed(&stream, token, since, &resume))
    }

    /// The `subscribed` reply and the replay.
    fn subscribed(
        &mut self,
        stream: &StreamName,
        token: String,
        since: Option<Since>,
        resume: &Resume,
    ) -> Vec<Bytes> {
        let reply = Reply::Subscribed {
            stream: stream.as_str(),
            token: &token,
            epoch: Position::epoch_hex(resume.position.epoch),
            seq: start_seq(since, resume),
            gap: resume.gap,
        };
        let mut out = Vec::with_capacity(1 + resume.replay.len());
        out.push(protocol::text_frame(&reply.to_json()));
        out.extend(resume.replay.iter().map(|f| protocol::message(f).clone()));
        self.tokens.insert(stream.clone(), token);
        out
    }

    /// Carries on with work that was waiting.
    pub(super) fn finish(&mut self, done: Done) -> Result<Vec<Bytes>, Stop> {
        match done {
            Done::Authorized {
                stream,
                token,
                since,
                outcome,
            } => {
                if self.waiting.remove(&stream).is_none() {
                    return Ok(Vec::new()); // unsubscribed meanwhile
                }
                match outcome {
                    Ok(()) => self.subscribe(stream, token, since),
                    Err(reason) => {
                        tracing::info!(
                            connection = self.connection.id().get(),
                            %stream,
                            %reason,
                            "subscription refused by the application"
                        );
                        Ok(vec![self.forbidden(&stream, &reason, &token)])
                    }
                }
            }
            Done::Resumed {
                stream,
                token,
                since,
                outcome,
            } => {
                if self.waiting.remove(&stream).is_none() {
                    return Ok(Vec::new());
                }
                match outcome {
                    Ok(mut resume) => {
                        self.service.count_resume(&resume);
                        // What came live while the broker answered follows its replay.
                        let Some(held) = self.connection.answered(&stream, resume.position) else {
                            self.connection.unsubscribe(&stream);
                            return Err(close(
                                close_code::AGAIN,
                                "the stream moved on while subscribing; reconnect",
                            ));
                        };
                        resume.replay.extend(held);
                        Ok(self.subscribed(&stream, token, since, &resume))
                    }
                    Err(error) => {
                        tracing::warn!(%stream, %error, "the broker could not answer a subscription");
                        self.connection.unsubscribe(&stream);
                        Err(close(
                            close_code::AGAIN,
                            "stream history unavailable; reconnect",
                        ))
                    }
                }
            }
            Done::Rechecked { stream, outcome } => {
                let Err(reason) = outcome else {
                    return Ok(Vec::new());
                };
                let Some(token) = self.tokens.remove(&stream) else {
                    return Ok(Vec::new());
                };
                if !self.connection.unsubscribe(&stream) {
                    return Ok(Vec::new());
                }
                tracing::info!(
                    connection = self.connection.id().get(),
                    %stream,
                    %reason,
                    "subscription ended: the application no longer allows it"
                );
                Ok(vec![self.forbidden(&stream, &reason, &token)])
            }
        }
    }

    /// Asks the authorizer again for the live subscriptions to the streams `matches`
    /// picks.
    pub(super) fn recheck(&mut self, matches: impl Fn(&StreamName) -> bool) {
        if !self.service.authorizes() {
            return;
        }
        let streams: Vec<StreamName> = self
            .connection
            .streams()
            .iter()
            .filter(|stream| matches(stream))
            .cloned()
            .collect();
        for stream in streams {
            let check = authorize(self.service, self.request.clone(), stream.clone());
            self.pending.push(Box::pin(async move {
                Done::Rechecked {
                    stream,
                    outcome: check.await,
                }
            }));
        }
    }
}

/// The authorizer's answer for `stream`, within [`AUTHORIZE_WITHIN`].
fn authorize(
    service: &Service,
    request: Option<Arc<Parts>>,
    stream: StreamName,
) -> BoxFuture<Result<(), Refusal>> {
    let service = service.clone();
    Box::pin(async move {
        let check = service.authorize(request.as_ref(), &stream);
        match tokio::time::timeout(AUTHORIZE_WITHIN, check).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Refusal::new(format!(
                "the authorization did not answer within {AUTHORIZE_WITHIN:?}"
            ))),
        }
    })
}

/// The sequence number a `subscribed` reply names. A page subscribing from a time has
/// no position yet: it is told the stream's position at that time, and the replay
/// follows. A resuming client keeps its own position; it is told where the stream is.
pub(crate) fn start_seq(since: Option<Since>, resume: &Resume) -> u64 {
    match (since, resume.replay.first()) {
        (Some(Since::Time(_)), Some(first)) if resume.gap.is_none() => first.seq() - 1,
        _ => resume.position.seq,
    }
}

/// What a request produced.
enum Answer {
    /// Replies to send (possibly none).
    Done(Vec<Bytes>),
    /// The request was refused with this error frame.
    Refused(Bytes),
    /// The connection must close.
    Stop(Stop),
}
