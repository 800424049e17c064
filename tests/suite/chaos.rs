//! Chaos: 200 clients subscribed to one stream while 10 000 broadcasts go out and a
//! chaos task cuts random clients' connections at random times. Every client must end
//! with all 10 000 frames, in order, with no duplicates and no gap signal. Once over
//! WebSocket, once over Server-Sent Events. Loopback only, bounded in time; the figures
//! are printed (`cargo test --test chaos -- --nocapture`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use turbo_model::Turbo;
use turbo_model_tests::sse::SseClient;
use turbo_model_tests::standalone::Standalone;
use turbo_model_tests::ws::{Client, Received};

const CLIENTS: usize = 200;
const MESSAGES: u64 = 10_000;
/// Broadcasts per 5 ms tick: 2 000 a second.
const PER_TICK: u64 = 10;
/// How long a client waits for its next frame: the broadcasts start only when all 200
/// clients are subscribed.
const PATIENCE: Duration = Duration::from_secs(60);
/// The whole run, clients included, must finish within this.
const BOUND: Duration = Duration::from_secs(240);

/// A small deterministic generator (xorshift64*), seeded per run and printed, so that a
/// failing run can be repeated with `TURBO_MODEL_CHAOS_SEED`.
struct Rng(u64);

impl Rng {
    fn seeded() -> (Self, u64) {
        let seed = std::env::var("TURBO_MODEL_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            | 1;
        (Self(seed), seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn html(n: u64) -> String {
    format!(
        "<turbo-stream action=\"append\" target=\"log\"><template><p>{n}</p></template></turbo-stream>"
    )
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    applied: u64,
    reconnects: u64,
    problems: Vec<String>,
}

#[derive(Default)]
struct Totals {
    cuts: AtomicU64,
}

fn server_builder() -> turbo_model::Builder {
    // The history window covers any reconnect of this test; the queue lets a client
    // that is reconnecting fall behind without being cut off as slow.
    Turbo::builder()
        .history(MESSAGES as usize, Duration::from_secs(120))
        .queue(20_000, 16 * 1024 * 1024)
        .inbound_rate(1_000, 1_000)
}

async fn run_chaos<F, Fut>(transport: &str, server: &Standalone, client: F)
where
    F: Fn(Arc<Notify>) -> Fut,
    Fut: std::future::Future<Output = Seen> + Send + 'static,
{
    let (mut rng, seed) = Rng::seeded();
    let cuts: Vec<Arc<Notify>> = (0..CLIENTS).map(|_| Arc::new(Notify::new())).collect();
    let tasks: Vec<_> = cuts
        .iter()
        .map(|cut| tokio::spawn(client(Arc::clone(cut))))
        .collect();
    // Every client is subscribed before the first broadcast.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.turbo.metrics().subscriptions < CLIENTS as u64 {
        assert!(Instant::now() < deadline, "clients did not all subscribe");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let totals = Arc::new(Totals::default());
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    let mut sent = 0;
    while sent < MESSAGES {
        ticker.tick().await;
        for _ in 0..PER_TICK.min(MESSAGES - sent) {
            sent += 1;
            server.publish("log", &html(sent));
        }
        // About one cut per tick, at a random client.
        if rng.below(4) != 0 {
            cuts[rng.below(CLIENTS as u64) as usize].notify_one();
            totals.cuts.fetch_add(1, Ordering::Relaxed);
        }
    }
    let published = started.elapsed();

    let mut problems = Vec::new();
    let mut reconnects = 0;
    for task in tasks {
        let seen = task.await.unwrap_or_else(|e| panic!("client task: {e}"));
        assert_eq!(seen.applied, MESSAGES);
        reconnects += seen.reconnects;
        problems.extend(seen.problems);
    }
    let done = started.elapsed();
    let metrics = server.turbo.metrics();
    #[allow(
        clippy::print_stdout,
        reason = "the figures are the point of this test"
    )]
    {
        println!(
            "chaos over {transport}: seed {seed}; {CLIENTS} clients x {MESSAGES} broadcasts = {} frames applied, in order, no duplicates; \
             published in {published:?}, all delivered in {done:?} ({:.0} deliveries/s); \
             {} cuts, {reconnects} reconnects, {} frames replayed, {} gaps",
            CLIENTS as u64 * MESSAGES,
            (CLIENTS as u64 * MESSAGES) as f64 / done.as_secs_f64(),
            totals.cuts.load(Ordering::Relaxed),
            metrics.replayed,
            metrics.gaps,
        );
    }
    assert!(
        problems.is_empty(),
        "{} problems, first: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert_eq!(
        metrics.gaps, 0,
        "every reconnect was within the history window"
    );
    assert!(
        reconnects > 50,
        "the chaos task cut connections ({reconnects} reconnects)"
    );
}

async fn websocket_client(url: String, token: String, cut: Arc<Notify>) -> Seen {
    let mut seen = Seen::default();
    let mut epoch: Option<String> = None;
    'connection: loop {
        // Patient: with another heavy test beside it on two cores, a reconnecting
        // client's reply may come seconds late (after replays of thousands of frames to
        // the others), and a reply that comes late is not a frame lost.
        let mut client = Client::connect_patient(&url, PATIENCE).await;
        let reply = match &epoch {
            None => client.subscribe(&token).await,
            Some(e) => client.resume(&token, e, seen.applied).await,
        };
        if let Some(gap) = reply.get("gap") {
            seen.problems.push(format!("gap {gap} at {}", seen.applied));
        }
        epoch = reply["epoch"].as_str().map(str::to_owned);
        loop {
            if seen.applied == MESSAGES {
                return seen;
            }
            let received = tokio::select! {
                () = cut.notified() => {
                    // Gone without a goodbye, like a dropped network.
                    seen.reconnects += 1;
                    continue 'connection;
                }
                received = client.next_within(PATIENCE) => received,
            };
            match received {
                Received::Json(frame) if frame["type"] == "message" => {
                    let seq = frame["seq"].as_u64().unwrap_or_default();
                    if seq != seen.applied + 1 || frame["html"] != html(seq) {
                        seen.problems
                            .push(format!("got {seq} after {}", seen.applied));
                    }
                    seen.applied = seen.applied.max(seq);
                }
                Received::Json(frame) if frame["type"] == "ping" => {
                    client.send_text(r#"{"type":"pong"}"#).await;
                }
                Received::Json(frame) => seen.problems.push(format!("unexpected {frame}")),
                Received::Closed(close) => {
                    seen.problems.push(format!("server closed: {close:?}"));
                    seen.reconnects += 1;
                    continue 'connection;
                }
            }
        }
    }
}

async fn sse_client(url: String, cut: Arc<Notify>) -> Seen {
    let mut seen = Seen::default();
    let mut last_id: Option<String> = None;
    'connection: loop {
        let mut events = SseClient::connect(&url, last_id.as_deref())
            .await
            .unwrap_or_else(|status| panic!("SSE refused: {status}"));
        loop {
            if seen.applied == MESSAGES {
                return seen;
            }
            let event = tokio::select! {
                () = cut.notified() => {
                    seen.reconnects += 1;
                    continue 'connection;
                }
                event = events.next_event_within(PATIENCE) => event,
            };
            let Some(event) = event else {
                seen.problems.push("the server ended the stream".into());
                seen.reconnects += 1;
                continue 'connection;
            };
            if let Some(data) = &event.data {
                let id = event.id.clone().unwrap_or_default();
                let seq = id
                    .split_once('.')
                    .and_then(|(_, s)| s.parse::<u64>().ok())
                    .unwrap_or_default();
                if seq != seen.applied + 1 || *data != html(seq) {
                    seen.problems
                        .push(format!("got {id} ({data}) after {}", seen.applied));
                }
                seen.applied = seen.applied.max(seq);
            }
            if event.id.is_some() {
                last_id = event.id;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_websocket_clients_get_every_frame_in_order_through_random_cuts() {
    let server = Standalone::start(server_builder()).await;
    let url = server.ws_url();
    let token = server.token("log");
    tokio::time::timeout(
        BOUND,
        run_chaos("WebSocket", &server, |cut| {
            websocket_client(url.clone(), token.clone(), cut)
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("the WebSocket chaos run took longer than {BOUND:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sse_clients_get_every_frame_in_order_through_random_cuts() {
    let server = Standalone::start(server_builder()).await;
    let url = server.sse_url(&server.token("log"));
    tokio::time::timeout(
        BOUND,
        run_chaos("SSE", &server, |cut| sse_client(url.clone(), cut)),
    )
    .await
    .unwrap_or_else(|_| panic!("the SSE chaos run took longer than {BOUND:?}"));
}
