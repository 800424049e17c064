//! 50 000 subscribers of one room, over several chat processes on Redis, against as many
//! naive broadcast servers, each process (server or load generator) under the machine's
//! open-file limit.
//!
//! ```text
//! crowd [--chat PATH] [--baseline PATH] [--redis-server PATH] [--subscribers N]
//!       [--processes N] [--generators N] [--messages N] [--rate PER_S]
//! ```
//!
//! Defaults: 50 000 subscribers, 4 server processes, 4 load-generator processes, 20
//! messages at 1/s. Two deployments, one after the other:
//!
//! - **turbo-model on Redis**: a Redis of the benchmark's own and N chat processes on it;
//!   the messages are posted to the first, and every process delivers them to its share
//!   of the subscribers;
//! - **baseline**: N naive broadcast servers (`baseline`), which share nothing: each
//!   message is posted to every one of them, one after the other, as an application
//!   without a broker would have to.
//!
//! The subscribers are split between load-generator processes (this program again, with
//! `--worker`), so that no process holds more sockets than the open-file limit allows.
//! A worker connects its subscribers, says so on stdout, waits for the delivery deadline
//! on stdin, and prints when each message reached each subscriber (wall clock, which
//! every process of the machine shares). Latency runs from the start of a message's
//! first POST to its arrival. One JSON object on stdout; Markdown tables on stderr.
//! `scripts/bench --crowd` builds and runs it.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line benchmark: JSON results on stdout, progress on stderr"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bench::publisher::Publisher;
use bench::server::{self, Server};
use bench::stats::{Percentiles, round3};
use bench::subscriber::{self, Event, Plan, Signals};
use bench::{cli, message_text};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

/// Signs the chat's stream names; the same in every process.
const SECRET: &str = "crowd-benchmark-secret-not-for-production-use";
/// WebSocket handshakes in flight at once, per load generator.
const HANDSHAKES: usize = 64;
/// Subscribers per loopback source address, well below its ephemeral ports.
const SUBSCRIBERS_PER_SOURCE: usize = 2_500;
/// How long to wait for frames after the last POST.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);
/// How long subscribers stay idle before memory is read.
const IDLE: Duration = Duration::from_secs(2);
/// How long a worker may take to report once told.
const WORKER_WITHIN: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Options {
    chat: PathBuf,
    baseline: PathBuf,
    redis_server: PathBuf,
    subscribers: usize,
    processes: usize,
    generators: usize,
    messages: usize,
    rate: f64,
    work: PathBuf,
}

/// What a worker is told on its command line.
#[derive(Debug, Deserialize, Serialize)]
struct Assignment {
    servers: Vec<SocketAddr>,
    path: String,
    token: String,
    messages: usize,
    /// Global index of its first subscriber: picks source addresses and servers.
    first: usize,
    count: usize,
    /// Source addresses in the whole run.
    sources: usize,
}

/// What a worker reports at the end.
#[derive(Debug, Default, Deserialize, Serialize)]
struct Report {
    connected: usize,
    failed: usize,
    first_error: Option<String>,
    duplicates: usize,
    closed_early: usize,
    /// Per message, the arrival of each of its frames, in µs since the Unix epoch.
    arrivals: Vec<Vec<u64>>,
}

/// One deployment's figures.
#[derive(Debug, Default, Serialize)]
struct Measured {
    deployment: &'static str,
    processes: usize,
    connected: usize,
    subscribers: usize,
    first_error: Option<String>,
    connect_s: f64,
    delivered: usize,
    expected: usize,
    duplicates: usize,
    closed_early: usize,
    posts_ok: usize,
    latency_ms: Percentiles,
    /// Per server process (the broker last, where there is one).
    rss_before_kb: Vec<u64>,
    rss_after_kb: Vec<u64>,
    connect_cpu_s: Vec<f64>,
    publish_cpu_s: Vec<f64>,
    per_idle_subscriber_kb: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--worker") {
        return match worker(args.next().unwrap_or_default()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("crowd worker: {error}");
                ExitCode::FAILURE
            }
        };
    }
    match options() {
        Ok(options) => cli::run_in("crowd", &options.work, run(&options)).await,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(o: &Options) -> Result<bool, String> {
    let ours = measure(o, true).await;
    let baseline = measure(o, false).await;
    let all_in = |m: &Result<Measured, String>| {
        m.as_ref().is_ok_and(|m| {
            m.connected == m.subscribers && m.delivered == m.expected && m.duplicates == 0
        })
    };
    let ok = all_in(&ours) && all_in(&baseline);
    let as_json = |m: &Result<Measured, String>| match m {
        Ok(m) => json!(m),
        Err(error) => json!({ "error": error }),
    };
    println!(
        "{}",
        json!({
            "scenario": format!("crowd-{}x{}@{}", o.subscribers, o.messages, o.rate),
            "turbo_model_redis": as_json(&ours),
            "baseline": as_json(&baseline),
        })
    );
    eprintln!("\n{}", markdown(o, &ours, &baseline));
    Ok(ok)
}

/// One deployment: the chat on Redis (`ours`) or the naive servers.
async fn measure(o: &Options, ours: bool) -> Result<Measured, String> {
    let name = if ours {
        "turbo-model-redis"
    } else {
        "baseline"
    };
    let say = |what: String| eprintln!("[crowd {name}] {what}");
    let log = |part: String| o.work.join(format!("{name}-{part}.log"));

    // The servers.
    let mut servers = Vec::with_capacity(o.processes + 1);
    let mut broker = None;
    if ours {
        let redis = Server::start_redis(&o.redis_server, log("redis".into())).await?;
        let db = o.work.join("chat.db");
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
            // Subscribers come from a few loopback addresses.
            (
                "TURBO_MODEL_MAX_CONNECTIONS_PER_ADDRESS",
                (SUBSCRIBERS_PER_SOURCE * 2).to_string(),
            ),
        ];
        for p in 0..o.processes {
            servers.push(Server::start(&o.chat, &env, log(format!("{p}"))).await?);
        }
        broker = Some(redis);
    } else {
        for p in 0..o.processes {
            servers.push(Server::start(&o.baseline, &[], log(format!("{p}"))).await?);
        }
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(Server::addr).collect();
    let publishers = addrs
        .iter()
        .map(|&addr| Publisher::new(addr))
        .collect::<Result<Vec<_>, _>>()?;
    let (path, token, posts) = if ours {
        let room = publishers[0].create_room("crowd").await?;
        let token = publishers[0].stream_token(&room).await?;
        // Posted once, to the first process: Redis carries it to the others.
        ("/turbo-model/ws", token, vec![format!("{room}messages/")])
    } else {
        // Posted to every server: they share nothing.
        (
            "/ws",
            "room:1".to_owned(),
            vec!["/messages".to_owned(); o.processes],
        )
    };
    for (publisher, post) in publishers.iter().zip(&posts) {
        if !publisher.post(post, "warm-up").await.ok {
            return Err(format!("the warm-up POST to {post} failed"));
        }
    }
    let everyone = || servers.iter().chain(&broker);
    let rss_before = everyone()
        .map(Server::rss_kb)
        .collect::<Result<Vec<_>, _>>()?;
    let cpu_start = everyone()
        .map(Server::cpu_ticks)
        .collect::<Result<Vec<_>, _>>()?;

    // The load generators.
    say(format!(
        "connecting {} subscribers through {} load generators to {} servers",
        o.subscribers, o.generators, o.processes
    ));
    let connect_start = Instant::now();
    let sources = o.subscribers.div_ceil(SUBSCRIBERS_PER_SOURCE).max(1);
    let per_generator = o.subscribers.div_ceil(o.generators);
    let mut workers = Vec::with_capacity(o.generators);
    for g in 0..o.generators {
        let first = g * per_generator;
        let count = per_generator.min(o.subscribers.saturating_sub(first));
        let assignment = Assignment {
            servers: addrs.clone(),
            path: path.to_owned(),
            token: token.clone(),
            messages: o.messages,
            first,
            count,
            sources,
        };
        workers.push(Worker::start(&assignment, log(format!("generator-{g}")))?);
    }
    let mut connected = 0;
    for worker in &mut workers {
        connected += worker.subscribed().await?;
    }
    let connect_s = round3(connect_start.elapsed().as_secs_f64());
    say(format!(
        "{connected}/{} subscribed in {connect_s} s",
        o.subscribers
    ));
    tokio::time::sleep(IDLE).await;
    let rss_after = everyone()
        .map(Server::rss_kb)
        .collect::<Result<Vec<_>, _>>()?;
    let cpu_connected = everyone()
        .map(Server::cpu_ticks)
        .collect::<Result<Vec<_>, _>>()?;

    say(format!("posting {} messages at {}/s", o.messages, o.rate));
    let start = Instant::now();
    let mut posted_at = Vec::with_capacity(o.messages);
    let mut posts_ok = 0;
    for seq in 0..o.messages {
        tokio::time::sleep_until(start + Duration::from_secs_f64(seq as f64 / o.rate)).await;
        let at = unix_micros(SystemTime::now());
        let mut all_ok = true;
        for (publisher, post) in publishers.iter().zip(&posts) {
            all_ok &= publisher.post(post, &message_text(seq)).await.ok;
        }
        posts_ok += usize::from(all_ok);
        posted_at.push(all_ok.then_some(at));
    }
    let deadline = unix_micros(SystemTime::now() + DELIVERY_DEADLINE);
    for worker in &mut workers {
        worker.tell(&format!("deadline {deadline}")).await?;
    }
    for worker in &mut workers {
        worker.finished().await?;
    }
    let cpu_end = everyone()
        .map(Server::cpu_ticks)
        .collect::<Result<Vec<_>, _>>()?;

    // The servers go first, so that they close the connections.
    for server in servers {
        if let Err(error) = server.stop().await {
            say(error);
        }
    }
    if let Some(broker) = broker {
        let _ = broker.stop().await;
    }
    let mut reports = Vec::with_capacity(workers.len());
    for worker in workers {
        reports.push(worker.report().await?);
    }

    let ticks = server::clock_ticks_per_second() as f64;
    let seconds = |from: &[u64], to: &[u64]| -> Vec<f64> {
        from.iter()
            .zip(to)
            .map(|(a, b)| round3(b.saturating_sub(*a) as f64 / ticks))
            .collect()
    };
    let mut latencies = Vec::new();
    for report in &reports {
        for (seq, arrivals) in report.arrivals.iter().enumerate() {
            if let Some(Some(at)) = posted_at.get(seq) {
                latencies.extend(
                    arrivals
                        .iter()
                        .map(|arrived| Duration::from_micros(arrived.saturating_sub(*at))),
                );
            }
        }
    }
    let rss_delta: u64 = rss_after
        .iter()
        .zip(&rss_before)
        .map(|(a, b)| a.saturating_sub(*b))
        .sum();
    let measured = Measured {
        deployment: name,
        processes: o.processes,
        connected,
        subscribers: o.subscribers,
        first_error: reports.iter().find_map(|r| r.first_error.clone()),
        connect_s,
        delivered: latencies.len(),
        expected: posts_ok * connected,
        duplicates: reports.iter().map(|r| r.duplicates).sum(),
        closed_early: reports.iter().map(|r| r.closed_early).sum(),
        posts_ok,
        latency_ms: Percentiles::of(latencies),
        connect_cpu_s: seconds(&cpu_start, &cpu_connected),
        publish_cpu_s: seconds(&cpu_connected, &cpu_end),
        per_idle_subscriber_kb: if connected == 0 {
            0.0
        } else {
            round3(rss_delta as f64 / connected as f64)
        },
        rss_before_kb: rss_before,
        rss_after_kb: rss_after,
    };
    say(format!(
        "delivered {}/{}, p50 {} ms, p99 {} ms",
        measured.delivered,
        measured.expected,
        measured.latency_ms.p50_ms,
        measured.latency_ms.p99_ms
    ));
    Ok(measured)
}

/// A load-generator process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Worker {
    fn start(assignment: &Assignment, log: PathBuf) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
        let err = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let assignment =
            serde_json::to_string(assignment).map_err(|e| format!("assignment: {e}"))?;
        let mut child = Command::new(exe)
            .args(["--worker", &assignment])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start a load generator: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
        })
    }

    async fn line(&mut self, within: Duration) -> Result<String, String> {
        match tokio::time::timeout(within, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => Err("a load generator exited early (see its log)".into()),
            Ok(Err(e)) => Err(format!("reading a load generator: {e}")),
            Err(_) => Err(format!("a load generator said nothing for {within:?}")),
        }
    }

    /// Waits for "subscribed N".
    async fn subscribed(&mut self) -> Result<usize, String> {
        let line = self.line(Duration::from_secs(600)).await?;
        line.strip_prefix("subscribed ")
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| format!("unexpected from a load generator: {line}"))
    }

    async fn tell(&mut self, line: &str) -> Result<(), String> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| format!("telling a load generator: {e}"))
    }

    /// Waits for "finished": every subscriber has every message, or the deadline passed.
    async fn finished(&mut self) -> Result<(), String> {
        let line = self.line(DELIVERY_DEADLINE + WORKER_WITHIN).await?;
        if line == "finished" {
            Ok(())
        } else {
            Err(format!("unexpected from a load generator: {line}"))
        }
    }

    /// Tells it to disconnect, reads its report and waits for it to exit.
    async fn report(mut self) -> Result<Report, String> {
        self.tell("stop").await?;
        let line = self.line(WORKER_WITHIN).await?;
        let report =
            serde_json::from_str(&line).map_err(|e| format!("a load generator's report: {e}"))?;
        if tokio::time::timeout(WORKER_WITHIN, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        Ok(report)
    }
}

/// The load-generator side: connect, report, receive until told the deadline, report.
async fn worker(assignment: String) -> Result<(), String> {
    let a: Assignment =
        serde_json::from_str(&assignment).map_err(|e| format!("the assignment: {e}"))?;
    let base = (Instant::now(), SystemTime::now());
    let to_unix = |at: Instant| unix_micros(base.1 + at.saturating_duration_since(base.0));
    let plan = Arc::new(Plan {
        servers: a.servers.clone(),
        path: a.path.clone(),
        token: a.token.clone(),
        messages: a.messages,
        connect_deadline: Instant::now()
            + Duration::from_secs(60)
            + Duration::from_millis(5) * u32::try_from(a.count).unwrap_or(u32::MAX),
        handshakes: Arc::new(Semaphore::new(HANDSHAKES)),
    });
    let (events, mut progress) = mpsc::unbounded_channel();
    let (set_deadline, delivery_deadline) = watch::channel(None);
    let (set_stop, stop) = watch::channel(false);
    let tasks: Vec<_> = (a.first..a.first + a.count)
        .map(|i| {
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % a.sources) as u8));
            let signals = Signals {
                delivery_deadline: delivery_deadline.clone(),
                stop: stop.clone(),
            };
            tokio::spawn(subscriber::run(
                plan.clone(),
                source,
                a.servers[i % a.servers.len()],
                events.clone(),
                signals,
            ))
        })
        .collect();
    drop(events);
    let subscriber::Connected {
        connected,
        failed,
        first_error,
        ..
    } = subscriber::await_connected(
        &mut progress,
        a.count,
        plan.connect_deadline + Duration::from_secs(5),
    )
    .await;
    println!("subscribed {connected}");

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let deadline_line = stdin
        .next_line()
        .await
        .map_err(|e| format!("stdin: {e}"))?
        .unwrap_or_default();
    let deadline: u64 = deadline_line
        .strip_prefix("deadline ")
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("unexpected on stdin: {deadline_line}"))?;
    let now = unix_micros(SystemTime::now());
    let _ = set_deadline.send(Some(
        Instant::now() + Duration::from_micros(deadline.saturating_sub(now)),
    ));
    // Every subscriber finishes by the deadline: wait for that many reports.
    let mut finished = 0;
    while finished < connected {
        match tokio::time::timeout(DELIVERY_DEADLINE + Duration::from_secs(10), progress.recv())
            .await
        {
            Ok(Some(Event::Finished)) => finished += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    println!("finished");
    // The servers close the connections first (so that no client port lingers in
    // TIME_WAIT); then "stop" comes, and every outcome is final.
    let stop_line = stdin.next_line().await.map_err(|e| format!("stdin: {e}"))?;
    if stop_line.as_deref() != Some("stop") {
        return Err(format!("expected stop on stdin, got {stop_line:?}"));
    }
    let _ = set_stop.send(true);
    let mut report = Report {
        connected,
        failed,
        first_error,
        arrivals: vec![Vec::with_capacity(connected); a.messages],
        ..Report::default()
    };
    for task in tasks {
        let outcome = tokio::time::timeout(WORKER_WITHIN, task)
            .await
            .map_err(|_| "a subscriber did not stop".to_owned())?
            .map_err(|e| format!("a subscriber task failed: {e}"))?;
        report.duplicates += outcome.duplicates;
        report.closed_early += usize::from(outcome.closed_early);
        for (seq, arrival) in outcome.arrivals.iter().enumerate() {
            if let Some(at) = arrival {
                report.arrivals[seq].push(to_unix(*at));
            }
        }
    }
    let line = serde_json::to_string(&report).map_err(|e| format!("report: {e}"))?;
    println!("{line}");
    Ok(())
}

fn unix_micros(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Seconds per process, "0.12 + 0.34 + …".
fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// One row of the table: a figure of a deployment, as text.
type Cell = dyn Fn(&Measured) -> String;

fn markdown(
    o: &Options,
    ours: &Result<Measured, String>,
    baseline: &Result<Measured, String>,
) -> String {
    let mut out = format!(
        "#### {} subscribers of one room × {} messages at {}/s: {} servers, {} load generators\n\n\
         | | turbo-model on Redis | baseline (no broker: every message posted to each) |\n|---|---|---|\n",
        o.subscribers, o.messages, o.rate, o.processes, o.generators
    );
    let cell = |m: &Result<Measured, String>, f: &Cell| match m {
        Ok(m) => f(m),
        Err(error) => format!("failed: {error}"),
    };
    let rows: [(&str, &Cell); 9] = [
        ("subscribed", &|m| {
            format!("{}/{}", m.connected, m.subscribers)
        }),
        ("connect, s", &|m| format!("{:.1}", m.connect_s)),
        ("delivered", &|m| format!("{}/{}", m.delivered, m.expected)),
        ("duplicates / closed early", &|m| {
            format!("{} / {}", m.duplicates, m.closed_early)
        }),
        ("p50 / p99, ms", &|m| {
            format!("{} / {}", m.latency_ms.p50_ms, m.latency_ms.p99_ms)
        }),
        ("connect CPU s, per process", &|m| list(&m.connect_cpu_s)),
        ("publish CPU s, per process", &|m| list(&m.publish_cpu_s)),
        ("RSS after connect, MB per process", &|m| {
            m.rss_after_kb
                .iter()
                .map(|kb| format!("{:.0}", *kb as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" + ")
        }),
        ("RSS per idle subscriber, kB", &|m| {
            format!("{:.1}", m.per_idle_subscriber_kb)
        }),
    ];
    for (name, f) in rows {
        out.push_str(&format!(
            "| {name} | {} | {} |\n",
            cell(ours, f),
            cell(baseline, f)
        ));
    }
    out.push_str("\nturbo-model's processes: the chats, then Redis.\n");
    out
}

fn options() -> Result<Options, String> {
    let usage = "usage: crowd [--chat PATH] [--baseline PATH] [--redis-server PATH] \
                 [--subscribers N] [--processes N] [--generators N] [--messages N] [--rate PER_S]";
    let here = cli::here();
    let mut o = Options {
        chat: here.join("chat"),
        baseline: here.join("baseline"),
        redis_server: PathBuf::from("redis-server"),
        subscribers: 50_000,
        processes: 4,
        generators: 4,
        messages: 20,
        rate: 1.0,
        work: std::env::temp_dir().join(format!("turbo-model-crowd-{}", std::process::id())),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{usage}"))
        };
        match arg.as_str() {
            "--chat" => o.chat = PathBuf::from(value()?),
            "--baseline" => o.baseline = PathBuf::from(value()?),
            "--redis-server" => o.redis_server = PathBuf::from(value()?),
            "--subscribers" => o.subscribers = cli::count(&arg, &value()?, 1)?,
            "--processes" => o.processes = cli::count(&arg, &value()?, 1)?,
            "--generators" => o.generators = cli::count(&arg, &value()?, 1)?,
            "--messages" => o.messages = cli::count(&arg, &value()?, 1)?,
            "--rate" => {
                let given = value()?;
                o.rate = given
                    .parse()
                    .ok()
                    .filter(|r: &f64| *r > 0.0 && r.is_finite())
                    .ok_or_else(|| format!("--rate {given}: a positive number expected"))?;
            }
            "-h" | "--help" => return Err(usage.to_owned()),
            other => return Err(format!("unknown argument {other}\n{usage}")),
        }
    }
    if o.subscribers.div_ceil(SUBSCRIBERS_PER_SOURCE) > 250 {
        return Err(format!(
            "--subscribers {}: too many for the loopback sources",
            o.subscribers
        ));
    }
    for program in [&o.chat, &o.baseline] {
        if !program.is_file() {
            return Err(format!(
                "{} not found (build it first)\n{usage}",
                program.display()
            ));
        }
    }
    Ok(o)
}
