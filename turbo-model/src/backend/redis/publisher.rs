//! The publishing side: this process's broadcasts, one after another, in order.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::link::Commands;
use super::{MAX_LOST, Redis, stopping};
use crate::clock;
use crate::hub::{HubSettings, Position, Publication, new_epoch};
use crate::metrics::Latencies;
use crate::name::StreamName;

/// A broadcast waiting in the queue.
pub(super) struct Queued {
    pub(super) publication: Publication,
    /// What it counts for in the queue's byte budget.
    pub(super) bytes: usize,
    /// When `send` accepted it: the publish deadline runs from here.
    pub(super) at: Instant,
}

/// Publishes this process's broadcasts, one after another, so that they keep their
/// order; retries what Redis does not take until the deadline, then moves the stream to
/// a new epoch as soon as Redis answers.
pub(super) struct Publisher {
    pub(super) redis: Redis,
    pub(super) connection: Commands,
    pub(super) settings: HubSettings,
    pub(super) queued_bytes: Arc<AtomicUsize>,
    /// Streams that lost a broadcast and are not on a new epoch yet.
    pub(super) lost: HashSet<StreamName>,
    /// This process, to the publish script (random), and its publications' numbers.
    pub(super) process: String,
    pub(super) published: u64,
    pub(super) stats: Arc<PublishStats>,
}

/// What the publisher did, for the metrics.
#[derive(Debug, Default)]
pub(super) struct PublishStats {
    pub(super) published: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) lost: AtomicU64,
    /// From `send` to Redis taking it.
    pub(super) latencies: Latencies,
}

/// The first pause between attempts; it doubles up to [`MAX_RETRY_DELAY`].
const RETRY_DELAY: Duration = Duration::from_millis(50);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

impl Publisher {
    pub(super) async fn run(
        mut self,
        mut jobs: mpsc::Receiver<Queued>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut repair_delay = RETRY_DELAY;
        loop {
            let job = if self.lost.is_empty() {
                tokio::select! {
                    job = jobs.recv() => job,
                    () = stopping(&mut stopped) => None,
                }
            } else {
                tokio::select! {
                    job = jobs.recv() => job,
                    () = stopping(&mut stopped) => None,
                    () = tokio::time::sleep(repair_delay) => {
                        repair_delay = if self.repair_all().await {
                            RETRY_DELAY
                        } else {
                            (repair_delay * 2).min(MAX_RETRY_DELAY)
                        };
                        continue;
                    }
                }
            };
            let Some(job) = job else {
                return;
            };
            self.publish(&job, &mut stopped).await;
            self.queued_bytes.fetch_sub(job.bytes, Ordering::AcqRel);
        }
    }

    /// Publishes one broadcast, retrying until its deadline; past it, marks its stream.
    async fn publish(&mut self, job: &Queued, stopped: &mut watch::Receiver<bool>) {
        let stream = &job.publication.stream;
        // One number for every attempt: Redis publishes it once.
        self.published += 1;
        let mut delay = RETRY_DELAY;
        let deadline = self.redis.inner.publish_deadline;
        loop {
            // An attempt may not outlast the deadline either (a reconnecting client
            // would wait for Redis as long as it takes).
            let left = deadline.saturating_sub(job.at.elapsed()).max(RETRY_DELAY);
            let attempt = async {
                if self.lost.contains(stream) {
                    self.move_to_new_epoch(stream).await?;
                }
                self.publish_once(&job.publication).await
            };
            let attempt = match tokio::time::timeout(left, attempt).await {
                Ok(attempt) => attempt,
                Err(_) => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no answer from Redis before the publish deadline",
                ))),
            };
            let Err(error) = attempt else {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                self.stats.latencies.record(job.at.elapsed());
                return;
            };
            if job.at.elapsed() >= deadline || *stopped.borrow() {
                self.stats.lost.fetch_add(1, Ordering::Relaxed);
                self.lose(stream, &error);
                return;
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%stream, %error, "Redis did not take a broadcast; retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stopping(stopped) => {}
            }
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    async fn publish_once(&mut self, publication: &Publication) -> redis::RedisResult<()> {
        let keys = self.redis.keys(&publication.stream);
        let mut connection = self.connection.ready().await?;
        let except = publication
            .except
            .map(|id| id.to_string())
            .unwrap_or_default();
        let _: Vec<String> = self
            .redis
            .inner
            .publish
            .key(&keys[0])
            .key(&keys[1])
            .arg(Position::epoch_hex(new_epoch()))
            .arg(&*publication.html)
            .arg(except)
            .arg(self.settings.history_len)
            .arg(Redis::ttl(self.settings))
            .arg(self.redis.channel(&publication.stream))
            .arg(publication.stream.as_str())
            .arg(clock::now_micros())
            .arg(&self.process)
            .arg(self.published)
            .arg(self.redis.inner.target.publish_command())
            .invoke_async(&mut connection)
            .await?;
        Ok(())
    }

    /// Gives a broadcast up: its stream moves to a new epoch once Redis answers.
    fn lose(&mut self, stream: &StreamName, error: &redis::RedisError) {
        if self.lost.len() < MAX_LOST || self.lost.contains(stream) {
            tracing::error!(
                %stream,
                %error,
                "broadcast dropped: Redis did not take it before the deadline; the stream's \
                 subscribers get the gap signal when Redis is back (the database write is kept)"
            );
            self.lost.insert(stream.clone());
        } else {
            tracing::error!(
                %stream,
                %error,
                lost = self.lost.len(),
                "broadcast dropped, and too many streams already wait for a new epoch: this \
                 stream's subscribers will not be told"
            );
        }
    }

    async fn move_to_new_epoch(&mut self, stream: &StreamName) -> redis::RedisResult<()> {
        let keys = self.redis.keys(stream);
        let mut connection = self.connection.ready().await?;
        let _: i64 = self
            .redis
            .inner
            .new_epoch
            .key(&keys[0])
            .key(&keys[1])
            .arg(Position::epoch_hex(new_epoch()))
            .arg(clock::now_micros())
            .arg(Redis::ttl(self.settings))
            .arg(self.redis.channel(stream))
            .arg(stream.as_str())
            .arg(self.redis.inner.target.publish_command())
            .invoke_async(&mut connection)
            .await?;
        self.lost.remove(stream);
        tracing::info!(%stream, "the stream moved to a new epoch: its subscribers refresh");
        Ok(())
    }

    /// Moves every marked stream to a new epoch; returns whether Redis took them all.
    async fn repair_all(&mut self) -> bool {
        let streams: Vec<StreamName> = self.lost.iter().cloned().collect();
        for stream in streams {
            if let Err(error) = self.move_to_new_epoch(&stream).await {
                tracing::debug!(%stream, %error, "Redis is still away; the stream waits for its new epoch");
                return false;
            }
        }
        true
    }
}
