//! What a scenario reports: one [`Measurement`] per deployment, the ratios and targets
//! to the baseline, as JSON and as a Markdown table.

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

/// Server memory around the connect and publish phases.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Rss {
    /// Before any subscriber connected.
    pub before: u64,
    /// With every subscriber connected, subscribed, and idle for a second.
    pub after: u64,
    /// `(after − before) / connected`.
    pub per_idle_subscriber: f64,
    /// Once every message was delivered.
    pub published: u64,
    /// `(published − before) / connected`: what a subscriber holds once it has
    /// received a burst (write buffers kept, queues' room).
    pub per_subscriber_published: f64,
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

/// One deployment's result in one scenario: its measurement, or why it failed.
pub type Measured = Result<Measurement, String>;

/// The JSON object of one scenario: each deployment, the ratios to the baseline, the
/// targets. `redis` is the chat as two processes on one Redis, when it was measured.
pub fn scenario_json(
    scenario: &Scenario,
    ours: &Measured,
    redis: Option<&Measured>,
    baseline: &Measured,
) -> Value {
    let server = |m: &Measured| match m {
        Ok(m) => {
            let mut value = serde_json::to_value(m).unwrap_or(Value::Null);
            if let Value::Object(fields) = &mut value {
                fields.insert(
                    "renders_per_broadcast".into(),
                    json!(
                        "not measured here: the chat does not expose its counters over \
                         HTTP; tests/suite/render_once.rs asserts one render per broadcast"
                    ),
                );
            }
            value
        }
        Err(error) => json!({ "error": error }),
    };
    let verdicts = |m: &Measured| {
        let (p99_ratio, deliveries_ratio) = ratios(m, baseline);
        let rss = m.as_ref().ok().map(|m| m.rss_kb.per_idle_subscriber);
        json!({
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
            },
        })
    };
    let ours_verdicts = verdicts(ours);
    json!({
        "scenario": scenario.name,
        "title": scenario.title(),
        "subscribers": scenario.subscribers,
        "messages": scenario.messages,
        "rate_per_s": scenario.rate,
        "turbo_model": server(ours),
        "baseline": server(baseline),
        "ratios": ours_verdicts["ratios"],
        "targets": ours_verdicts["targets"],
        "turbo_model_on_redis": redis.map_or_else(
            || json!("not run (--no-redis)"),
            |redis| {
                let mut value = verdicts(redis);
                value["servers"] = json!("two chat processes and one Redis; \
                    subscribers split between them, messages posted to the first; memory and \
                    CPU summed over all three");
                value["measurement"] = server(redis);
                value
            },
        ),
    })
}

/// turbo-model's p99 latency and deliveries per second over the baseline's.
pub fn ratios(ours: &Measured, baseline: &Measured) -> (Option<f64>, Option<f64>) {
    match (ours, baseline) {
        (Ok(ours), Ok(baseline)) => (
            ratio(ours.latency_ms.p99_ms, baseline.latency_ms.p99_ms),
            ratio(ours.deliveries_per_s, baseline.deliveries_per_s),
        ),
        _ => (None, None),
    }
}

/// A table row: its name, the cell of one deployment, its ratio to the baseline.
type Row = (&'static str, fn(&Measurement) -> String, Versus);

/// Which ratio to the baseline a table row shows.
#[derive(Clone, Copy)]
enum Versus {
    None,
    P99,
    Deliveries,
}

/// The scenario as a Markdown table, for BENCHMARKS.md: one column per deployment that
/// was measured, each followed by its ratio to the baseline.
pub fn markdown(
    scenario: &Scenario,
    ours: &Measured,
    redis: Option<&Measured>,
    baseline: &Measured,
) -> String {
    let mut out = format!("### {}\n\n", scenario.title());
    let mut columns = vec![("turbo-model", ours)];
    columns.extend(redis.map(|redis| ("turbo-model, 2 processes on Redis", redis)));
    for (name, m) in columns.iter().chain([&("baseline", baseline)]) {
        if let Err(error) = m {
            let _ = writeln!(out, "{name} failed: {error}\n");
        }
    }
    let Ok(base) = baseline else {
        return out;
    };
    let measured: Vec<(&str, &Measurement)> = columns
        .iter()
        .filter_map(|(name, m)| m.as_ref().ok().map(|m| (*name, m)))
        .collect();
    let rows: Vec<Row> = vec![
        (
            "subscribed",
            (|m| format!("{} / {}", thousands(m.connected), thousands(m.subscribers))),
            Versus::None,
        ),
        (
            "delivered / expected",
            (|m| format!("{} / {}", thousands(m.delivered), thousands(m.expected))),
            Versus::None,
        ),
        (
            "latency p50 (ms)",
            (|m| fixed(m.latency_ms.p50_ms)),
            Versus::None,
        ),
        (
            "latency p99 (ms)",
            (|m| fixed(m.latency_ms.p99_ms)),
            Versus::P99,
        ),
        (
            "latency max (ms)",
            (|m| fixed(m.latency_ms.max_ms)),
            Versus::None,
        ),
        (
            "deliveries/s",
            (|m| thousands(m.deliveries_per_s.round() as usize)),
            Versus::Deliveries,
        ),
        (
            "RSS per idle subscriber (kB)",
            (|m| format!("{:.1}", m.rss_kb.per_idle_subscriber)),
            Versus::None,
        ),
        (
            "RSS per subscriber after the messages (kB)",
            (|m| format!("{:.1}", m.rss_kb.per_subscriber_published)),
            Versus::None,
        ),
        (
            "server CPU s: connect / publish",
            (|m| {
                format!(
                    "{:.2} / {:.2}",
                    m.server_cpu_s.connect, m.server_cpu_s.publish
                )
            }),
            Versus::None,
        ),
        (
            "server CPU µs per delivery",
            (|m| format!("{:.1}", m.server_cpu_us_per_delivery)),
            Versus::None,
        ),
        (
            "load generator CPU s: publish",
            (|m| format!("{:.2}", m.load_generator_publish_cpu_s)),
            Versus::None,
        ),
        (
            "POST p50 / max (ms)",
            (|m| format!("{} / {}", fixed(m.post_ms.p50_ms), fixed(m.post_ms.max_ms))),
            Versus::None,
        ),
        (
            "frame (bytes)",
            (|m| m.frame_bytes.to_string()),
            Versus::None,
        ),
    ];
    out.push_str("| |");
    for (name, _) in &measured {
        let _ = write!(out, " {name} | ÷ baseline |");
    }
    out.push_str(" baseline |\n|---|");
    out.push_str(&"---|---|".repeat(measured.len()));
    out.push_str("---|\n");
    for (name, value, versus) in &rows {
        let _ = write!(out, "| {name} |");
        for (_, m) in &measured {
            let shown = match versus {
                Versus::None => None,
                Versus::P99 => ratio(m.latency_ms.p99_ms, base.latency_ms.p99_ms)
                    .map(|r| format!("**{r:.2}×**")),
                Versus::Deliveries => ratio(m.deliveries_per_s, base.deliveries_per_s)
                    .map(|r| format!("**{:.0} %**", r * 100.0)),
            };
            let _ = write!(out, " {} | {} |", value(m), shown.unwrap_or_default());
        }
        let _ = writeln!(out, " {} |", value(base));
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

    #[test]
    fn tables_have_a_column_and_a_ratio_per_deployment() {
        let scenario = Scenario {
            name: "x",
            subscribers: 2,
            messages: 1,
            rate: None,
        };
        let measurement = |p99_ms: f64, deliveries_per_s: f64| {
            let mut m = Measurement::default();
            m.latency_ms.p99_ms = p99_ms;
            m.deliveries_per_s = deliveries_per_s;
            m
        };
        let ours = Ok(measurement(3.0, 800.0));
        let redis = Ok(measurement(6.0, 500.0));
        let baseline = Ok(measurement(2.0, 1000.0));
        let table = markdown(&scenario, &ours, Some(&redis), &baseline);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[2],
            "| | turbo-model | ÷ baseline | turbo-model, 2 processes on Redis | ÷ baseline | baseline |"
        );
        assert_eq!(lines[3], "|---|---|---|---|---|---|");
        assert!(
            lines.contains(&"| latency p99 (ms) | 3.00 | **1.50×** | 6.00 | **3.00×** | 2.00 |")
        );
        assert!(lines.contains(&"| deliveries/s | 800 | **80 %** | 500 | **50 %** | 1 000 |"));

        let failed: Measured = Err("no redis-server".into());
        let table = markdown(&scenario, &ours, Some(&failed), &baseline);
        assert!(table.contains("turbo-model, 2 processes on Redis failed: no redis-server"));
        assert!(table.contains("| | turbo-model | ÷ baseline | baseline |"));
        let json = scenario_json(&scenario, &ours, None, &baseline);
        assert_eq!(json["turbo_model_on_redis"], "not run (--no-redis)");
        assert_eq!(json["ratios"]["p99_latency"], 1.5);
    }
}
