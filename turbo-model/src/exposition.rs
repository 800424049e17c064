//! The metrics in Prometheus's text format (OpenMetrics), for a scrape route.
//!
//! Everything is read at scrape time from the counters the pipeline keeps anyway: a
//! scrape costs a few hundred atomic loads and one string, and nothing is recorded twice.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::backend::BackendStats;
use crate::background::Depth;
use crate::metrics::{Latencies, Metrics};

/// The content type of what [`encode`] returns.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a scrape reads besides the counters.
pub(crate) struct Sources<'a> {
    pub(crate) metrics: &'a Metrics,
    pub(crate) history_bytes: usize,
    pub(crate) background: Depth,
    /// `None` without a broker.
    pub(crate) backend: Option<BackendStats>,
    pub(crate) publish_latencies: Option<&'a Latencies>,
}

/// A histogram read from [`Latencies`].
#[derive(Debug)]
struct Histogram {
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum,
            self.count,
            &self.buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(name, help, ConstCounter::new(value));
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(
        name,
        help,
        ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)),
    );
}

/// Counters by `reason`.
fn by_reason(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (&'static str, u64)>,
) {
    let family = Family::<
        Vec<(&'static str, &'static str)>,
        prometheus_client::metrics::counter::Counter,
    >::default();
    for (reason, n) in values {
        family.get_or_create(&vec![("reason", reason)]).inc_by(n);
    }
    registry.register(name, help, family);
}

/// The metrics, in OpenMetrics text, every name starting `turbo_model_`.
pub(crate) fn encode(sources: &Sources<'_>) -> String {
    let mut registry = Registry::with_prefix("turbo_model");
    let m = sources.metrics.snapshot();
    let r = &mut registry;
    counter(
        r,
        "renders",
        "Templates and components rendered for broadcasts.",
        m.renders,
    );
    counter(
        r,
        "broadcasts",
        "Broadcasts published by this process.",
        m.broadcasts,
    );
    counter(
        r,
        "frames",
        "Frames serialized (once per broadcast with local subscribers).",
        m.frames,
    );
    counter(
        r,
        "deliveries",
        "Frames pushed onto connection queues.",
        m.deliveries,
    );
    counter(
        r,
        "replayed_frames",
        "Frames replayed to clients that resumed.",
        m.replayed,
    );
    counter(
        r,
        "gaps",
        "Resumes that history could not serve (the client refreshed).",
        m.gaps,
    );
    counter(
        r,
        "suppressed",
        "Broadcasts dropped inside suppress.",
        m.suppressed,
    );
    gauge(
        r,
        "connections",
        "Stream connections open now.",
        m.connections,
    );
    gauge(
        r,
        "subscriptions",
        "Subscriptions open now, over all connections.",
        m.subscriptions,
    );
    by_reason(
        r,
        "kicks",
        "Connections the server closed, by reason.",
        sources.metrics.kicks(),
    );
    by_reason(
        r,
        "refusals",
        "Requests and stream connections refused, by reason.",
        sources.metrics.refusals(),
    );
    gauge(
        r,
        "history_bytes",
        "Bytes of stream history kept for resuming clients.",
        sources.history_bytes as u64,
    );
    let d = sources.background;
    gauge(
        r,
        "async_hooks_waiting",
        "Async hook jobs waiting to run.",
        d.waiting as u64,
    );
    gauge(
        r,
        "async_hooks_waiting_bytes",
        "Bytes of rows held by waiting async hook jobs.",
        d.waiting_bytes as u64,
    );
    gauge(
        r,
        "async_hooks_running",
        "Async hook jobs running now.",
        d.running as u64,
    );
    counter(
        r,
        "async_hooks_refused",
        "Async hook jobs not run: the queue was full.",
        d.refused,
    );
    if let Some(b) = sources.backend {
        gauge(
            r,
            "broker_queue",
            "Broadcasts waiting for the broker.",
            b.queued,
        );
        gauge(
            r,
            "broker_queue_bytes",
            "Bytes of broadcasts waiting for the broker.",
            b.queued_bytes,
        );
        counter(
            r,
            "broker_published",
            "Broadcasts the broker took.",
            b.published,
        );
        counter(
            r,
            "broker_retries",
            "Publish attempts the broker did not take (retried).",
            b.retries,
        );
        counter(
            r,
            "broker_lost",
            "Broadcasts given up after the publish deadline (gap signal).",
            b.lost,
        );
        counter(
            r,
            "broker_received",
            "Broadcasts received from the broker.",
            b.received,
        );
        counter(
            r,
            "broker_received_bytes",
            "Bytes of broadcasts received from the broker.",
            b.received_bytes,
        );
        gauge(
            r,
            "broker_channels",
            "Streams whose broadcasts this process receives now.",
            b.channels,
        );
    }
    if let Some(latencies) = sources.publish_latencies {
        let (buckets, count, sum) = latencies.read();
        r.register(
            "broker_publish_seconds",
            "From send to the broker taking a broadcast (queue wait and retries included).",
            Histogram {
                buckets,
                count,
                sum,
            },
        );
    }
    let mut text = String::with_capacity(8192);
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::error!(%error, "encoding the metrics failed");
    }
    text
}
