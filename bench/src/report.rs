//! What a scenario reports: one [`Measurement`] per server, the ratios and targets
//! between them, as JSON and as a Markdown table.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use crate::stats::{Percentiles, ratio};

/// The targets for turbo-model against the baseline.
pub mod target {
    /// turbo-model's p99 latency may be at most this many times the baseline's.
    pub const P99_RATIO: f64 = 1.5;
    /// turbo-model's deliveries per second must be at least this share of the baseline's.
    pub const DELIVERIES_SHARE: f64 = 0.8;
    /// Memory per idle subscriber, in kB (`/proc` kB: KiB).
    pub const RSS_PER_SUBSCRIBER_KB: f64 = 8.0;
}

/// What one server did in one scenario.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measurement {
    /// Subscribers that connected and subscribed.
    pub connected: usize,
    /// Subscribers that tried.
    pub subscribers: usize,
    /// The first reason a subscriber could not connect or subscribe.
    pub first_connect_error: Option<String>,
    /// Seconds until every subscriber had connected and subscribed (or given up).
    pub connect_s: f64,
    /// Benchmark frames that arrived (first arrivals of messages whose POST succeeded).
    pub delivered: usize,
    /// Successful POSTs times connected subscribers.
    pub expected: usize,
    /// Frames that arrived twice.
    pub duplicates: usize,
    /// Subscribers whose connection ended before every message arrived.
    pub closed_early: usize,
    /// The first reason a connection ended early.
    pub first_close_error: Option<String>,
    /// POSTs answered with 303.
    pub posts_ok: usize,
    /// POSTs that failed or answered otherwise.
    pub posts_failed: usize,
    /// How long each POST took, until its response.
    pub post_ms: Percentiles,
    /// From the start of a POST to the arrival of its frame at a subscriber.
    pub latency_ms: Percentiles,
    /// Per message, in the order posted: the median of its latencies, so that one slow
    /// message among many fast ones shows.
    pub message_p50_ms: Vec<f64>,
    /// `delivered / publish_window_s`.
    pub deliveries_per_s: f64,
    /// From the first POST to the last arrival, in seconds.
    pub publish_window_s: f64,
    /// Size of one benchmark frame as it arrived, in bytes.
    pub frame_bytes: usize,
    /// Server memory, in kB.
    pub rss_kb: Rss,
    /// Server CPU time, in seconds.
    pub server_cpu_s: Cpu,
    /// Server CPU time of the publish phase per delivered frame, in microseconds: what
    /// one delivery costs the server, whatever the pace.
    pub server_cpu_us_per_delivery: f64,
    /// The load generator's own CPU time while messages were published and received,
    /// in seconds: it shares the machine's cores with the server.
    pub load_generator_publish_cpu_s: f64,
    /// Whether the server stopped cleanly on SIGTERM, or why not.
    pub stop_error: Option<String>,
}

/// Server memory around the connect phase.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Rss {
    /// Before any subscriber connected.
    pub before: u64,
    /// With every subscriber connected, subscribed, and idle for a second.
    pub after: u64,
    /// `(after − before) / connected`.
    pub per_idle_subscriber: f64,
}

/// Server CPU time per phase.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Cpu {
    /// Connecting and subscribing everyone, and the idle second.
    pub connect: f64,
    /// Posting every message and delivering its frames.
    pub publish: f64,
    /// Both.
    pub total: f64,
}

/// One scenario's shape.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Its name in the JSON and on the command line.
    pub name: &'static str,
    /// WebSocket subscribers of the one room.
    pub subscribers: usize,
    /// Messages posted.
    pub messages: usize,
    /// Messages per second, or back to back.
    pub rate: Option<f64>,
}

impl Scenario {
    /// A title for people: "1 000 subscribers × 20 messages at 0.5/s".
    pub fn title(&self) -> String {
        let pace = match self.rate {
            Some(rate) => format!("at {rate}/s"),
            None => "back to back".into(),
        };
        format!(
            "{} subscribers × {} messages {pace}",
            thousands(self.subscribers),
            self.messages
        )
    }
}

/// The JSON object of one scenario: both servers, the ratios, the targets.
pub fn scenario_json(
    scenario: &Scenario,
    ours: &Result<Measurement, String>,
    baseline: &Result<Measurement, String>,
) -> Value {
    let server = |m: &Result<Measurement, String>| match m {
        Ok(m) => serde_json::to_value(m).unwrap_or(Value::Null),
        Err(error) => json!({ "error": error }),
    };
    let mut ours_json = server(ours);
    if let Value::Object(fields) = &mut ours_json {
        fields.insert(
            "renders_per_broadcast".into(),
            json!(
                "not measured here: the chat does not expose its counters over HTTP; \
                   tests/render_once.rs asserts one render per broadcast"
            ),
        );
    }
    let (p99_ratio, deliveries_ratio) = ratios(ours, baseline);
    let rss = ours.as_ref().ok().map(|m| m.rss_kb.per_idle_subscriber);
    json!({
        "scenario": scenario.name,
        "title": scenario.title(),
        "subscribers": scenario.subscribers,
        "messages": scenario.messages,
        "rate_per_s": scenario.rate,
        "turbo_model": ours_json,
        "baseline": server(baseline),
        "ratios": {
            "p99_latency": p99_ratio,
            "deliveries_per_s": deliveries_ratio,
        },
        "targets": {
            "p99_at_most_1.5x_baseline": p99_ratio.map(|r| r <= target::P99_RATIO),
            "deliveries_per_s_at_least_80pct_of_baseline":
                deliveries_ratio.map(|r| r >= target::DELIVERIES_SHARE),
            "rss_per_idle_subscriber_at_most_8kb":
                rss.map(|kb| kb <= target::RSS_PER_SUBSCRIBER_KB),
            "one_render_per_broadcast": "not measured here (see renders_per_broadcast)",
        },
        "redis": "not yet available: turbo-model has no Redis backend yet, so the \
                  two-processes-on-Redis scenario is not run",
    })
}

/// turbo-model's p99 latency and deliveries per second over the baseline's.
pub fn ratios(
    ours: &Result<Measurement, String>,
    baseline: &Result<Measurement, String>,
) -> (Option<f64>, Option<f64>) {
    match (ours, baseline) {
        (Ok(ours), Ok(baseline)) => (
            ratio(ours.latency_ms.p99_ms, baseline.latency_ms.p99_ms),
            ratio(ours.deliveries_per_s, baseline.deliveries_per_s),
        ),
        _ => (None, None),
    }
}

/// The scenario as a Markdown table, for BENCHMARKS.md.
pub fn markdown(
    scenario: &Scenario,
    ours: &Result<Measurement, String>,
    baseline: &Result<Measurement, String>,
) -> String {
    let mut out = format!("### {}\n\n", scenario.title());
    let (p99_ratio, deliveries_ratio) = ratios(ours, baseline);
    let (ours, baseline) = match (ours, baseline) {
        (Ok(ours), Ok(baseline)) => (ours, baseline),
        (ours, baseline) => {
            for (name, m) in [("turbo-model", ours), ("baseline", baseline)] {
                if let Err(error) = m {
                    let _ = writeln!(out, "{name} failed: {error}\n");
                }
            }
            return out;
        }
    };
    let both = |f: &dyn Fn(&Measurement) -> String| [f(ours), f(baseline)];
    let rows: Vec<(&str, [String; 2], String)> = vec![
        (
            "subscribed",
            both(&|m| format!("{} / {}", thousands(m.connected), thousands(m.subscribers))),
            String::new(),
        ),
        (
            "delivered / expected",
            both(&|m| format!("{} / {}", thousands(m.delivered), thousands(m.expected))),
            String::new(),
        ),
        (
            "latency p50 (ms)",
            both(&|m| fixed(m.latency_ms.p50_ms)),
            String::new(),
        ),
        (
            "latency p99 (ms)",
            both(&|m| fixed(m.latency_ms.p99_ms)),
            p99_ratio.map_or_else(String::new, |r| format!("**{r:.2}×**")),
        ),
        (
            "latency max (ms)",
            both(&|m| fixed(m.latency_ms.max_ms)),
            String::new(),
        ),
        (
            "deliveries/s",
            both(&|m| thousands(m.deliveries_per_s.round() as usize)),
            deliveries_ratio.map_or_else(String::new, |r| format!("**{:.0} %**", r * 100.0)),
        ),
        (
            "RSS per idle subscriber (kB)",
            both(&|m| format!("{:.1}", m.rss_kb.per_idle_subscriber)),
            String::new(),
        ),
        (
            "server CPU s: connect / publish",
            both(&|m| {
                format!(
                    "{:.2} / {:.2}",
                    m.server_cpu_s.connect, m.server_cpu_s.publish
                )
            }),
            String::new(),
        ),
        (
            "server CPU µs per delivery",
            both(&|m| format!("{:.1}", m.server_cpu_us_per_delivery)),
            String::new(),
        ),
        (
            "load generator CPU s: publish",
            both(&|m| format!("{:.2}", m.load_generator_publish_cpu_s)),
            String::new(),
        ),
        (
            "POST p50 / max (ms)",
            both(&|m| format!("{} / {}", fixed(m.post_ms.p50_ms), fixed(m.post_ms.max_ms))),
            String::new(),
        ),
        (
            "frame (bytes)",
            both(&|m| m.frame_bytes.to_string()),
            String::new(),
        ),
    ];
    out.push_str("| | turbo-model | baseline | turbo-model / baseline |\n|---|---|---|---|\n");
    for (name, [ours, baseline], ratio) in rows {
        let _ = writeln!(out, "| {name} | {ours} | {baseline} | {ratio} |");
    }
    out
}

/// Two decimals below 10, one below 100, none above: enough for milliseconds.
fn fixed(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        thousands(value.round() as usize)
    }
}

/// `12345` → `12 345`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_the_other_tables() {
        assert_eq!(thousands(10_000), "10 000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1 234 567");
        assert_eq!(fixed(1.234), "1.23");
        assert_eq!(fixed(12.34), "12.3");
        assert_eq!(fixed(1234.5), "1 235");
    }

    #[test]
    fn titles_say_the_pace() {
        let rated = Scenario {
            name: "x",
            subscribers: 1000,
            messages: 20,
            rate: Some(0.5),
        };
        assert_eq!(rated.title(), "1 000 subscribers × 20 messages at 0.5/s");
        let burst = Scenario {
            rate: None,
            ..rated
        };
        assert_eq!(
            burst.title(),
            "1 000 subscribers × 20 messages back to back"
        );
    }
}
