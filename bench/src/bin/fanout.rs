//! The fan-out benchmark: the chat example (turbo-model's whole path: HTTP handler,
//! SeaORM insert on SQLite, hook, Tera render, hub, sockets) against a naive broadcast
//! server (`baseline`), scenario by scenario, in one run.
//!
//! ```text
//! fanout [--quick] [--only NAME]... [--chat PATH] [--baseline PATH] [--deadline SECS]
//!        [--hold SECS] [--redis-server PATH | --no-redis]
//! ```
//!
//! `--deadline`: how long to wait for frames after the last POST (default 30 s).
//! `--hold`: keep each server running this long after its frames are in, before it is
//! stopped: time for a profiler to dump what the publish phase cost.
//!
//! Each scenario runs three deployments: the chat as one process; the chat as two
//! processes on one Redis of the benchmark's own (`redis-server` from `PATH`, or
//! `--redis-server`; `--no-redis` skips it), subscribers split between the two and
//! messages posted to the first; and the baseline. For each: start the processes on free
//! loopback ports, connect N WebSocket subscribers to one room's stream, measure the
//! servers' memory once they are idle, post M messages over HTTP (at a rate, or back to
//! back), and wait for every frame or for a deadline after the last POST. One JSON object
//! per scenario on stdout; progress, then Markdown tables, on stderr. `scripts/bench`
//! builds both servers and this program in release and runs it.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line benchmark: JSON results on stdout, progress on stderr"
)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bench::cli;
use bench::publisher::{Publisher, Sent};
use bench::report::{self, Cpu, Measured, Measurement, Rss, Scenario};
use bench::server::{self, Deployment, Server};
use bench::stats::{Percentiles, round3};
use bench::subscriber::{self, Event, Outcome, Plan, Signals};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

/// The issue's scenarios, and a burst at 1 000 long enough to measure: 20 messages to
/// 1 000 subscribers go out in about 0.1 s, a few ticks of the CPU clock.
const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "1000x20@0.5",
        subscribers: 1_000,
        messages: 20,
        rate: Some(0.5),
    },
    Scenario {
        name: "10000x20@1",
        subscribers: 10_000,
        messages: 20,
        rate: Some(1.0),
    },
    Scenario {
        name: "burst-1000x20",
        subscribers: 1_000,
        messages: 20,
        rate: None,
    },
    Scenario {
        name: "burst-10000x20",
        subscribers: 10_000,
        messages: 20,
        rate: None,
    },
    Scenario {
        name: "burst-1000x200",
        subscribers: 1_000,
        messages: 200,
        rate: None,
    },
];

/// `--quick`: a smoke run in seconds.
const QUICK: [Scenario; 2] = [
    Scenario {
        name: "quick-100x10@5",
        subscribers: 100,
        messages: 10,
        rate: Some(5.0),
    },
    Scenario {
        name: "quick-burst-100x10",
        subscribers: 100,
        messages: 10,
        rate: None,
    },
];

/// Signs the chat's stream names; any fixed 32 bytes or more.
const SECRET: &str = "fanout-benchmark-secret-not-for-production-use";
/// WebSocket handshakes in flight at once.
const HANDSHAKES: usize = 128;
/// Subscribers per source address (127.0.0.1, 127.0.0.2, …), well below the 28 000
/// ephemeral ports of a default Linux.
const SUBSCRIBERS_PER_SOURCE: usize = 2_500;
/// How long subscribers stay idle before memory is read.
const IDLE: Duration = Duration::from_secs(1);

/// The deployments a scenario measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The chat, one process, in-process hub.
    TurboModel,
    /// The chat, two processes on one Redis.
    TurboModelRedis,
    /// The naive broadcast server.
    Baseline,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::TurboModel => "turbo-model",
            Self::TurboModelRedis => "turbo-model-redis",
            Self::Baseline => "baseline",
        }
    }
}

struct Options {
    scenarios: Vec<Scenario>,
    chat: PathBuf,
    baseline: PathBuf,
    deadline: Duration,
    hold: Duration,
    /// `redis-server`, unless `--no-redis`.
    redis_server: Option<PathBuf>,
    work: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    match options() {
        Ok(options) => cli::run_in("fanout", &options.work, run(&options)).await,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Every scenario; `Ok(false)` when one failed.
async fn run(options: &Options) -> Result<bool, String> {
    let mut tables = Vec::new();
    let mut failed = false;
    for scenario in &options.scenarios {
        let ours = measure(Kind::TurboModel, scenario, options).await;
        let redis = match options.redis_server {
            Some(_) => Some(measure(Kind::TurboModelRedis, scenario, options).await),
            None => None,
        };
        let baseline = measure(Kind::Baseline, scenario, options).await;
        failed |= ours.is_err() || baseline.is_err() || redis.as_ref().is_some_and(Result::is_err);
        println!(
            "{}",
            report::scenario_json(scenario, &ours, redis.as_ref(), &baseline)
        );
        tables.push(report::markdown(scenario, &ours, redis.as_ref(), &baseline));
    }
    eprintln!("\n{}", tables.join("\n"));
    Ok(!failed)
}

/// The processes of `kind`, started and listening.
async fn deploy(kind: Kind, scenario: &Scenario, options: &Options) -> Result<Deployment, String> {
    let log = |part: &str| {
        options
            .work
            .join(format!("{}{part}-{}.log", kind.name(), scenario.name))
    };
    let db = options
        .work
        .join(format!("chat-{}-{}.db", kind.name(), scenario.name));
    let mut chat_env = vec![
        (
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        ),
        ("TURBO_MODEL_SECRET", SECRET.to_owned()),
        ("RUST_LOG", "warn".to_owned()),
        // Every subscriber comes from four loopback addresses: the per-address limit
        // (1 000 by default, against one client hogging a server) would refuse most.
        (
            "TURBO_MODEL_MAX_CONNECTIONS_PER_ADDRESS",
            (SUBSCRIBERS_PER_SOURCE * 2).to_string(),
        ),
    ];
    match kind {
        Kind::TurboModel => Ok(Deployment::single(
            Server::start(&options.chat, &chat_env, log("")).await?,
        )),
        Kind::TurboModelRedis => {
            let program = options
                .redis_server
                .as_deref()
                .ok_or("no redis-server to run")?;
            let redis = Server::start_redis(program, log("-redis")).await?;
            chat_env.push((
                "TURBO_MODEL_REDIS_URL",
                format!("redis://{}/", redis.addr()),
            ));
            // One after the other: the first creates and migrates the database.
            let a = Server::start(&options.chat, &chat_env, log("-a")).await?;
            let b = Server::start(&options.chat, &chat_env, log("-b")).await?;
            Ok(Deployment::brokered(vec![a, b], redis))
        }
        Kind::Baseline => Ok(Deployment::single(
            Server::start(&options.baseline, &[], log("")).await?,
        )),
    }
}

/// One deployment through one scenario.
async fn measure(kind: Kind, scenario: &Scenario, options: &Options) -> Measured {
    let say = |what: String| eprintln!("[{} {}] {what}", scenario.name, kind.name());
    let ticks = server::clock_ticks_per_second() as f64;
    let server = deploy(kind, scenario, options).await?;
    let addrs = server.addrs();
    let publisher = Publisher::new(addrs[0])?;
    let (ws_path, token, post_path) = match kind {
        Kind::TurboModel | Kind::TurboModelRedis => {
            let room = publisher.create_room("fan-out").await?;
            let token = publisher.stream_token(&room).await?;
            ("/turbo-model/ws", token, format!("{room}messages/"))
        }
        Kind::Baseline => ("/ws", "room:1".to_owned(), "/messages".to_owned()),
    };
    // A running server, not a cold one: one message before anyone listens.
    if !publisher.post(&post_path, "warm-up").await.ok {
        return Err(format!("the warm-up POST to {post_path} failed"));
    }

    let rss_before = server.rss_kb()?;
    let cpu_start = server.cpu_ticks()?;
    let connect_start = Instant::now();
    let plan = Arc::new(Plan {
        servers: addrs.clone(),
        path: ws_path.to_owned(),
        token,
        messages: scenario.messages,
        connect_deadline: connect_start
            + Duration::from_secs(30)
            + Duration::from_millis(5) * scenario.subscribers as u32,
        handshakes: Arc::new(Semaphore::new(HANDSHAKES)),
    });
    let (events, mut progress) = mpsc::unbounded_channel();
    let (set_deadline, delivery_deadline) = watch::channel(None);
    let (set_stop, stop) = watch::channel(false);
    let sources = scenario.subscribers.div_ceil(SUBSCRIBERS_PER_SOURCE).max(1);
    say(format!(
        "connecting {} subscribers from {sources} source address(es)",
        scenario.subscribers
    ));
    let tasks: Vec<_> = (0..scenario.subscribers)
        .map(|i| {
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % sources) as u8));
            let signals = Signals {
                delivery_deadline: delivery_deadline.clone(),
                stop: stop.clone(),
            };
            tokio::spawn(subscriber::run(
                plan.clone(),
                source,
                addrs[i % addrs.len()],
                events.clone(),
                signals,
            ))
        })
        .collect();
    drop(events);

    // Every subscriber reports by the connect deadline, subscribed or not.
    let subscriber::Connected {
        connected,
        mut finished,
        first_error: first_connect_error,
        ..
    } = subscriber::await_connected(
        &mut progress,
        scenario.subscribers,
        plan.connect_deadline + Duration::from_secs(5),
    )
    .await;
    let connect_s = round3(connect_start.elapsed().as_secs_f64());
    say(format!(
        "{connected}/{} subscribed in {connect_s} s{}",
        scenario.subscribers,
        first_connect_error
            .as_deref()
            .map_or_else(String::new, |e| format!("; first failure: {e}"))
    ));
    tokio::time::sleep(IDLE).await;
    let rss_after = server.rss_kb()?;
    let cpu_connected = server.cpu_ticks()?;

    say(format!(
        "posting {} messages {}",
        scenario.messages,
        scenario
            .rate
            .map_or_else(|| "back to back".to_owned(), |r| format!("at {r}/s"))
    ));
    let own_cpu_start = server::own_cpu_ticks()?;
    let sent = publisher
        .publish(&post_path, scenario.messages, scenario.rate)
        .await;
    let deadline = Instant::now() + options.deadline;
    let _ = set_deadline.send(Some(deadline));
    while finished < connected {
        match tokio::time::timeout_at(deadline + Duration::from_secs(5), progress.recv()).await {
            Ok(Some(Event::Finished)) => finished += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let cpu_end = server.cpu_ticks()?;
    let rss_published = server.rss_kb()?;
    let own_cpu_end = server::own_cpu_ticks()?;

    say(format!(
        "{finished}/{connected} subscribers done; stopping the server{}",
        if options.hold.is_zero() {
            String::new()
        } else {
            format!(" in {} s", options.hold.as_secs())
        }
    ));
    // Time for a profiler to take its dump of the publish phase.
    tokio::time::sleep(options.hold).await;
    // The server goes first, so that it closes the connections.
    let stop_error = server.stop().await.err();
    let _ = set_stop.send(true);
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            Ok(Err(error)) => return Err(format!("a subscriber task failed: {error}")),
            Err(_) => return Err("a subscriber did not stop within 30 s".into()),
        }
    }

    let mut measurement = tally(&sent, &outcomes, scenario.subscribers);
    measurement.first_connect_error = first_connect_error;
    measurement.connect_s = connect_s;
    let per_subscriber = |rss: u64| {
        if connected == 0 {
            0.0
        } else {
            round3(rss.saturating_sub(rss_before) as f64 / connected as f64)
        }
    };
    measurement.rss_kb = Rss {
        before: rss_before,
        after: rss_after,
        per_idle_subscriber: per_subscriber(rss_after),
        published: rss_published,
        per_subscriber_published: per_subscriber(rss_published),
    };
    let seconds = |from: u64, to: u64| round3(to.saturating_sub(from) as f64 / ticks);
    measurement.server_cpu_s = Cpu {
        connect: seconds(cpu_start, cpu_connected),
        publish: seconds(cpu_connected, cpu_end),
        total: seconds(cpu_start, cpu_end),
    };
    if measurement.delivered > 0 {
        measurement.server_cpu_us_per_delivery =
            round3(measurement.server_cpu_s.publish * 1e6 / measurement.delivered as f64);
    }
    measurement.load_generator_publish_cpu_s = seconds(own_cpu_start, own_cpu_end);
    measurement.stop_error = stop_error;
    say(format!(
        "delivered {}/{}, p50 {} ms, p99 {} ms, max {} ms, {:.0} deliveries/s, {:.1} kB per idle subscriber",
        measurement.delivered,
        measurement.expected,
        measurement.latency_ms.p50_ms,
        measurement.latency_ms.p99_ms,
        measurement.latency_ms.max_ms,
        measurement.deliveries_per_s,
        measurement.rss_kb.per_idle_subscriber,
    ));
    Ok(measurement)
}

/// Matches arrivals to POSTs: deliveries, latencies, throughput.
fn tally(sent: &[Sent], outcomes: &[Outcome], subscribers: usize) -> Measurement {
    let connected = outcomes.iter().filter(|o| o.subscribed).count();
    let posts_ok = sent.iter().filter(|s| s.ok).count();
    let mut by_message = vec![Vec::with_capacity(connected); sent.len()];
    let mut last_arrival = None;
    for outcome in outcomes {
        for ((arrival, sent), latencies) in outcome.arrivals.iter().zip(sent).zip(&mut by_message) {
            if let (Some(at), true) = (arrival, sent.ok) {
                latencies.push(at.saturating_duration_since(sent.at));
                last_arrival = last_arrival.max(Some(*at));
            }
        }
    }
    let message_p50_ms = by_message
        .iter()
        .map(|latencies| Percentiles::of(latencies.clone()).p50_ms)
        .collect();
    let latencies: Vec<_> = by_message.into_iter().flatten().collect();
    let delivered = latencies.len();
    let window = match (sent.first(), last_arrival) {
        (Some(first), Some(last)) => last.saturating_duration_since(first.at).as_secs_f64(),
        _ => 0.0,
    };
    let closed: Vec<&Outcome> = outcomes.iter().filter(|o| o.closed_early).collect();
    Measurement {
        connected,
        subscribers,
        delivered,
        expected: posts_ok * connected,
        duplicates: outcomes.iter().map(|o| o.duplicates).sum(),
        closed_early: closed.len(),
        first_close_error: closed.first().and_then(|o| o.error.clone()),
        posts_ok,
        posts_failed: sent.len() - posts_ok,
        post_ms: Percentiles::of(sent.iter().map(|s| s.took).collect()),
        latency_ms: Percentiles::of(latencies),
        message_p50_ms,
        deliveries_per_s: if window > 0.0 {
            round3(delivered as f64 / window)
        } else {
            0.0
        },
        publish_window_s: round3(window),
        frame_bytes: outcomes
            .iter()
            .map(|o| o.frame_bytes)
            .find(|&b| b > 0)
            .unwrap_or(0),
        ..Measurement::default()
    }
}

fn options() -> Result<Options, String> {
    let usage = "usage: fanout [--quick] [--only NAME]... [--chat PATH] [--baseline PATH] \
                 [--deadline SECS] [--hold SECS] [--redis-server PATH | --no-redis]\n\
                 scenarios: ";
    let names: Vec<&str> = SCENARIOS.iter().chain(&QUICK).map(|s| s.name).collect();
    let usage = format!("{usage}{}", names.join(", "));
    let here = cli::here();
    let mut quick = false;
    let mut only = Vec::new();
    let mut chat = here.join("chat");
    let mut baseline = here.join("baseline");
    let mut deadline = Duration::from_secs(30);
    let mut hold = Duration::ZERO;
    let mut redis_server = Some(PathBuf::from("redis-server"));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{usage}"))
        };
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => only.push(value()?),
            "--chat" => chat = PathBuf::from(value()?),
            "--baseline" => baseline = PathBuf::from(value()?),
            "--deadline" => deadline = seconds(&arg, &value()?)?,
            "--hold" => hold = seconds(&arg, &value()?)?,
            "--redis-server" => redis_server = Some(PathBuf::from(value()?)),
            "--no-redis" => redis_server = None,
            "-h" | "--help" => return Err(usage),
            other => return Err(format!("unknown argument {other}\n{usage}")),
        }
    }
    let pool: &[Scenario] = if quick { &QUICK } else { &SCENARIOS };
    let scenarios: Vec<Scenario> = if only.is_empty() {
        pool.to_vec()
    } else {
        let all: Vec<Scenario> = SCENARIOS.iter().chain(&QUICK).copied().collect();
        only.iter()
            .map(|name| {
                all.iter()
                    .find(|s| s.name == name)
                    .copied()
                    .ok_or_else(|| format!("no scenario {name}\n{usage}"))
            })
            .collect::<Result<_, _>>()?
    };
    for program in [&chat, &baseline] {
        if !program.is_file() {
            return Err(format!(
                "{} not found (build it first)\n{usage}",
                program.display()
            ));
        }
    }
    Ok(Options {
        scenarios,
        chat,
        baseline,
        deadline,
        hold,
        redis_server,
        work: std::env::temp_dir().join(format!("turbo-model-bench-{}", std::process::id())),
    })
}

fn seconds(option: &str, value: &str) -> Result<Duration, String> {
    value
        .parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("{option} {value}: whole seconds expected"))
}
