//! Interest routing on Redis, measured: does each chat process receive from Redis only
//! the broadcasts of the streams its own subscribers watch?
//!
//! ```text
//! routing [--chat PATH] [--redis-server PATH] [--processes N] [--rooms N]
//!         [--subscribers-per-room N] [--messages-per-room N]
//! ```
//!
//! Starts a Redis of its own and N chat processes on it (default 4), creates R rooms
//! (default 1 000), and connects each room's subscribers (default 2) to the process that
//! owns the room: room `r` belongs to process `r % N`, so that each process watches its
//! own share of the rooms. Then posts M messages to every room (default 2) through the
//! *next* process, one that has no subscriber of that room, and waits for every frame.
//! From each process's Prometheus metrics (`METRICS_PORT`) it reads what the process
//! received from Redis during the posting, and compares it with its share: the messages
//! of its own rooms. With one channel for all streams, every process would receive
//! every broadcast (`published`, all processes together). One JSON object on stdout; a
//! Markdown table on stderr. `scripts/bench --routing` builds and runs it.

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

use bench::publisher::{Publisher, Sent};
use bench::server::{self, Server};
use bench::stats::{Percentiles, round3};
use bench::subscriber::{self, Event, Plan, Signals};
use bench::{cli, message_text};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

/// Signs the chat's stream names; the same in every process.
const SECRET: &str = "routing-benchmark-secret-not-for-production-use";
/// WebSocket handshakes in flight at once.
const HANDSHAKES: usize = 128;
/// Subscribers per loopback source address.
const SUBSCRIBERS_PER_SOURCE: usize = 2_500;
/// How long to wait for frames after the last POST.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);
/// How long one metrics scrape may take.
const SCRAPE_WITHIN: Duration = Duration::from_secs(10);

struct Options {
    chat: PathBuf,
    redis_server: PathBuf,
    processes: usize,
    rooms: usize,
    per_room: usize,
    messages: usize,
    work: PathBuf,
}

/// One chat process and where its metrics are served.
struct Chat {
    server: Server,
    metrics: String,
}

/// The broker counters of one process, read from its metrics.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    received: f64,
    received_bytes: f64,
    published: f64,
    channels: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    match options() {
        Ok(options) => cli::run_in("routing", &options.work, run(&options)).await,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the measurement; `Ok(false)` when frames were missing.
async fn run(o: &Options) -> Result<bool, String> {
    let log = |part: &str| o.work.join(format!("{part}.log"));
    let redis = Server::start_redis(&o.redis_server, log("redis")).await?;
    let db = o.work.join("chat.db");
    let mut chats = Vec::with_capacity(o.processes);
    for p in 0..o.processes {
        let metrics_port = server::free_port()?;
        let env = [
            (
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            ),
            ("TURBO_MODEL_SECRET", SECRET.to_owned()),
            ("RUST_LOG", "warn".to_owned()),
            (
                "TURBO_MODEL_REDIS_URL",
                format!("redis://{}/", redis.addr()),
            ),
            ("METRICS_PORT", metrics_port.to_string()),
        ];
        // One after the other: the first creates and migrates the database.
        let server = Server::start(&o.chat, &env, log(&format!("chat-{p}"))).await?;
        chats.push(Chat {
            server,
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
        });
    }
    let publishers = chats
        .iter()
        .map(|chat| Publisher::new(chat.server.addr()))
        .collect::<Result<Vec<_>, _>>()?;
    let http = reqwest::Client::builder()
        .timeout(SCRAPE_WITHIN)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;

    eprintln!("[routing] creating {} rooms", o.rooms);
    let mut rooms = Vec::with_capacity(o.rooms);
    for r in 0..o.rooms {
        let path = publishers[0].create_room(&format!("room {r}")).await?;
        let token = publishers[0].stream_token(&path).await?;
        rooms.push((path, token));
    }

    let subscribers = o.rooms * o.per_room;
    eprintln!(
        "[routing] connecting {subscribers} subscribers: {} per room, each room's to the process that owns it",
        o.per_room
    );
    let connect_deadline = Instant::now()
        + Duration::from_secs(30)
        + Duration::from_millis(5) * u32::try_from(subscribers).unwrap_or(u32::MAX);
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    let (events, mut progress) = mpsc::unbounded_channel();
    let (set_deadline, delivery_deadline) = watch::channel(None);
    let (set_stop, stop) = watch::channel(false);
    let sources = subscribers.div_ceil(SUBSCRIBERS_PER_SOURCE).max(1);
    let mut tasks = Vec::with_capacity(subscribers);
    for (r, (_, token)) in rooms.iter().enumerate() {
        let owner = chats[r % o.processes].server.addr();
        let plan = Arc::new(Plan {
            servers: vec![owner],
            path: "/turbo-model/ws".to_owned(),
            token: token.clone(),
            messages: o.messages,
            connect_deadline,
            handshakes: handshakes.clone(),
        });
        for _ in 0..o.per_room {
            let i = tasks.len();
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % sources) as u8));
            let signals = Signals {
                delivery_deadline: delivery_deadline.clone(),
                stop: stop.clone(),
            };
            tasks.push((
                r,
                tokio::spawn(subscriber::run(
                    plan.clone(),
                    source,
                    owner,
                    events.clone(),
                    signals,
                )),
            ));
        }
    }
    drop(events);
    let subscriber::Connected {
        connected,
        mut finished,
        first_error,
        ..
    } = subscriber::await_connected(
        &mut progress,
        subscribers,
        connect_deadline + Duration::from_secs(5),
    )
    .await;
    if let Some(error) = first_error {
        eprintln!("[routing] a subscriber failed: {error}");
    }
    eprintln!("[routing] {connected}/{subscribers} subscribed");
    // Each process subscribes to its streams' channels as its clients come: let the
    // last SUBSCRIBE replies arrive before the counters are read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = scrape_all(&http, &chats).await?;
    let cpu_before = chats
        .iter()
        .map(|chat| chat.server.cpu_ticks())
        .collect::<Result<Vec<_>, _>>()?;

    eprintln!(
        "[routing] posting {} messages to each room, each through a process that does not own it",
        o.messages
    );
    let posting = publishers.iter().enumerate().map(|(p, publisher)| {
        // Process p posts to the rooms of process p - 1.
        let owned = (p + o.processes - 1) % o.processes;
        let rooms = &rooms;
        async move {
            let mut sent = Vec::new();
            for seq in 0..o.messages {
                for (r, (path, _)) in rooms.iter().enumerate() {
                    if r % o.processes == owned {
                        let posted = publisher
                            .post(&format!("{path}messages/"), &message_text(seq))
                            .await;
                        sent.push((r, seq, posted));
                    }
                }
            }
            sent
        }
    });
    let sent: Vec<(usize, usize, Sent)> = futures_util::future::join_all(posting)
        .await
        .into_iter()
        .flatten()
        .collect();
    let _ = set_deadline.send(Some(Instant::now() + DELIVERY_DEADLINE));
    while finished < connected {
        match tokio::time::timeout(DELIVERY_DEADLINE + Duration::from_secs(5), progress.recv())
            .await
        {
            Ok(Some(Event::Finished)) => finished += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    // What arrived late would still count: give the last frames a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = scrape_all(&http, &chats).await?;
    let cpu_after = chats
        .iter()
        .map(|chat| chat.server.cpu_ticks())
        .collect::<Result<Vec<_>, _>>()?;

    for chat in chats {
        if let Err(error) = chat.server.stop().await {
            eprintln!("[routing] {error}");
        }
    }
    let _ = redis.stop().await;
    let _ = set_stop.send(true);

    // Deliveries and latencies, matched to the POSTs by room and sequence number.
    let mut at = vec![vec![None; o.messages]; o.rooms];
    let posts_ok = sent.iter().filter(|(_, _, s)| s.ok).count();
    for (r, seq, s) in &sent {
        if s.ok {
            at[*r][*seq] = Some(s.at);
        }
    }
    let (mut delivered, mut duplicates, mut latencies) = (0, 0, Vec::new());
    for (r, task) in tasks {
        let outcome = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .map_err(|_| "a subscriber did not stop within 30 s".to_owned())?
            .map_err(|e| format!("a subscriber task failed: {e}"))?;
        duplicates += outcome.duplicates;
        for (seq, arrival) in outcome.arrivals.iter().enumerate() {
            if let (Some(arrived), Some(posted)) = (arrival, at[r][seq]) {
                delivered += 1;
                latencies.push(arrived.saturating_duration_since(posted));
            }
        }
    }
    let expected = posts_ok * o.per_room;
    let latency = Percentiles::of(latencies);

    let ticks = server::clock_ticks_per_second() as f64;
    let published: f64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.published - b.published)
        .sum();
    let per_process: Vec<_> = (0..o.processes)
        .map(|p| {
            let own_rooms = (0..o.rooms).filter(|r| r % o.processes == p).count();
            let share = (own_rooms * o.messages) as f64;
            let received = after[p].received - before[p].received;
            json!({
                "process": p,
                "rooms": own_rooms,
                "subscribers": own_rooms * o.per_room,
                "channels": after[p].channels as u64,
                "received": received as u64,
                "share": share as u64,
                "received_per_share": round3(received / share.max(1.0)),
                "received_bytes": (after[p].received_bytes - before[p].received_bytes) as u64,
                "received_per_all_published": round3(received / published.max(1.0)),
                "publish_cpu_s": round3(cpu_after[p].saturating_sub(cpu_before[p]) as f64 / ticks),
            })
        })
        .collect();
    let result = json!({
        "scenario": format!("routing-{}x{}", o.processes, o.rooms),
        "processes": o.processes,
        "rooms": o.rooms,
        "subscribers_per_room": o.per_room,
        "messages_per_room": o.messages,
        "connected": connected,
        "posts_ok": posts_ok,
        "posts_failed": sent.len() - posts_ok,
        "published_to_redis": published as u64,
        "delivered": delivered,
        "expected": expected,
        "duplicates": duplicates,
        "latency_ms": latency,
        "per_process": per_process,
    });
    println!("{result}");
    eprintln!("\n{}", markdown(&result));
    Ok(delivered == expected && duplicates == 0 && connected == subscribers)
}

/// The per-process table of a result.
fn markdown(result: &serde_json::Value) -> String {
    let mut out = format!(
        "#### Interest routing: {} processes on one Redis, {} rooms, {} subscribers and {} messages per room\n\n\
         delivered {}/{}, duplicates {}, p50 {} ms, p99 {} ms; {} broadcasts published to Redis in all \
         (messages and the room list's counts)\n\n\
         | process | rooms | channels | received from Redis | its share | received / share | received / all published | received bytes | CPU s |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        result["processes"],
        result["rooms"],
        result["subscribers_per_room"],
        result["messages_per_room"],
        result["delivered"],
        result["expected"],
        result["duplicates"],
        result["latency_ms"]["p50_ms"],
        result["latency_ms"]["p99_ms"],
        result["published_to_redis"],
    );
    for p in result["per_process"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            p["process"],
            p["rooms"],
            p["channels"],
            p["received"],
            p["share"],
            p["received_per_share"],
            p["received_per_all_published"],
            p["received_bytes"],
            p["publish_cpu_s"],
        ));
    }
    out
}

async fn scrape_all(http: &reqwest::Client, chats: &[Chat]) -> Result<Vec<Counters>, String> {
    let mut all = Vec::with_capacity(chats.len());
    for chat in chats {
        all.push(scrape(http, &chat.metrics).await?);
    }
    Ok(all)
}

/// The broker counters in one process's Prometheus text.
async fn scrape(http: &reqwest::Client, url: &str) -> Result<Counters, String> {
    let text = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("GET {url}: {e}"))?
        .text()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let value = |name: &str| -> Result<f64, String> {
        text.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse().ok())?
            })
            .ok_or_else(|| format!("{url} has no {name}"))
    };
    Ok(Counters {
        received: value("turbo_model_broker_received_total")?,
        received_bytes: value("turbo_model_broker_received_bytes_total")?,
        published: value("turbo_model_broker_published_total")?,
        channels: value("turbo_model_broker_channels")?,
    })
}

fn options() -> Result<Options, String> {
    let usage = "usage: routing [--chat PATH] [--redis-server PATH] [--processes N] [--rooms N] \
                 [--subscribers-per-room N] [--messages-per-room N]";
    let here = cli::here();
    let mut options = Options {
        chat: here.join("chat"),
        redis_server: PathBuf::from("redis-server"),
        processes: 4,
        rooms: 1_000,
        per_room: 2,
        messages: 2,
        work: std::env::temp_dir().join(format!("turbo-model-routing-{}", std::process::id())),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{usage}"))
        };
        match arg.as_str() {
            "--chat" => options.chat = PathBuf::from(value()?),
            "--redis-server" => options.redis_server = PathBuf::from(value()?),
            "--processes" => options.processes = cli::count(&arg, &value()?, 2)?,
            "--rooms" => options.rooms = cli::count(&arg, &value()?, 1)?,
            "--subscribers-per-room" => options.per_room = cli::count(&arg, &value()?, 1)?,
            "--messages-per-room" => options.messages = cli::count(&arg, &value()?, 1)?,
            "-h" | "--help" => return Err(usage.to_owned()),
            other => return Err(format!("unknown argument {other}\n{usage}")),
        }
    }
    if !options.chat.is_file() {
        return Err(format!(
            "{} not found (build it first)\n{usage}",
            options.chat.display()
        ));
    }
    Ok(options)
}
