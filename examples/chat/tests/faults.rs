//! Fault injection: two `chat` processes share one SQLite file and one Redis; pages
//! (WebSocket clients that behave like the client element) watch one room while a poster
//! sends messages through both processes. Meanwhile Redis is killed and started again
//! empty, a chat process is killed with SIGKILL and started again on its port, the network
//! between the other process and Redis is cut, client sockets are dropped, and some
//! clients stop reading for a while.
//!
//! What it proves is the delivery contract: on each stream a page applies every broadcast
//! in order, once, or is told it cannot (a `gap` in the `subscribed` reply) and refreshes
//! itself. At the end every page has, for every message whose post was accepted, either
//! received it as a frame or shown it in a page loaded after a gap signal: no silent loss,
//! no duplicate, nothing out of order.
//!
//! The short form runs by default (20 pages, 300 messages, each fault once, well under a
//! minute). `TURBO_MODEL_FAULTS=long`: 200 pages, 10 000 messages, faults repeated
//! throughout; `TURBO_MODEL_FAULT_RUNS=N` repeats the whole run N times, each must pass.
//! `TURBO_MODEL_FAULTS_SEED` repeats a run's random choices (the seed is printed). The
//! figures are printed: `cargo test -p chat --test faults -- --nocapture`.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::{Chat, Database};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use turbo_model_tests::proxy::Proxy;
use turbo_model_tests::redis_server::TestRedis;
use turbo_model_tests::ws::frame_value;

/// The processes, by index: A talks to Redis directly, B through a proxy the test cuts.
const NAMES: [&str; 2] = ["A", "B"];
/// What every posted message starts with, followed by its number in six digits.
const MARK: &str = "fault-";
/// A stalling client's receive buffer: small, so that the server's writes back up soon.
const STALLER_BUFFER: u32 = 4096;
/// Bounds on one step of a page: a connection, a `hello`, a page load.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);
const PAGE_WITHIN: Duration = Duration::from_secs(30);
/// A socket that says nothing for this long is given up (the server pings every 25 s).
const SILENCE: Duration = Duration::from_secs(60);
/// Backoff between failed attempts to load a page or connect.
const MIN_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(1);
/// A chat process's resident memory at the end, at most.
const RSS_LIMIT_KIB: u64 = 300 * 1024;
/// What the chat logs when it closes a connection whose queue is full, and when it drops
/// one whose write made no progress for the write timeout.
const KICKED: &str = "connection fell behind";
const WRITE_TIMED_OUT: &str = "a write stalled past the write timeout";
/// A message accepted by a process that was killed less than this later may have waited
/// in its publish queue (reported apart; see the crate's Redis backend, "Faults").
const KILL_WINDOW: Duration = Duration::from_secs(1);

/// One form of the suite: how many pages and messages, which faults, how often.
#[derive(Clone, Debug)]
struct Plan {
    form: &'static str,
    clients: usize,
    /// The first `stallers` clients have small receive buffers and stall now and then.
    stallers: usize,
    messages: u32,
    post_every: Duration,
    drop_every: Duration,
    /// How long a stall lasts.
    stall_for: Duration,
    /// How long a killed process stays down.
    down_for: Duration,
    /// The faults, in order, each once `fault_every` more messages were posted after
    /// the previous one ended; the schedule starts over while messages are posted when
    /// `repeat`.
    schedule: Vec<Fault>,
    repeat: bool,
    fault_every: u32,
    /// How long the pages may take to catch up after the last post.
    settle: Duration,
    /// One whole run, at most.
    bound: Duration,
    runs: usize,
}

impl Plan {
    fn from_env() -> Self {
        let long = std::env::var("TURBO_MODEL_FAULTS").is_ok_and(|form| form == "long");
        let runs = std::env::var("TURBO_MODEL_FAULT_RUNS")
            .ok()
            .map(|runs| {
                runs.parse::<usize>()
                    .unwrap_or_else(|_| panic!("TURBO_MODEL_FAULT_RUNS is a number: {runs:?}"))
            })
            .unwrap_or(1)
            .max(1);
        if long {
            Self {
                form: "long",
                clients: 200,
                stallers: 10,
                messages: 10_000,
                post_every: Duration::from_millis(5),
                drop_every: Duration::from_millis(50),
                stall_for: Duration::from_secs(8),
                down_for: Duration::from_secs(4),
                schedule: vec![
                    Fault::Stall,
                    Fault::RedisRestart,
                    Fault::Kill(0),
                    Fault::Cut(Duration::from_secs(3)),
                    Fault::Stall,
                    Fault::Kill(1),
                    Fault::RedisRestart,
                    // Past the publish deadline (10 s): broadcasts are lost, the stream
                    // moves to a new epoch, and every page is told.
                    Fault::Cut(Duration::from_secs(12)),
                ],
                repeat: true,
                fault_every: 500,
                settle: Duration::from_secs(120),
                bound: Duration::from_secs(900),
                runs,
            }
        } else {
            Self {
                form: "short",
                clients: 20,
                stallers: 2,
                messages: 300,
                post_every: Duration::from_millis(60),
                drop_every: Duration::from_millis(250),
                stall_for: Duration::from_secs(5),
                down_for: Duration::from_secs(3),
                schedule: vec![
                    Fault::Stall,
                    Fault::RedisRestart,
                    Fault::Kill(0),
                    Fault::Cut(Duration::from_secs(3)),
                ],
                repeat: false,
                fault_every: 15,
                settle: Duration::from_secs(60),
                bound: Duration::from_secs(150),
                runs,
            }
        }
    }
}

/// A fault the test injects from its main task, one at a time (random socket drops
/// come from a task of their own, all along).
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The stallers stop reading their sockets for the plan's `stall_for`.
    Stall,
    /// Redis killed and started again, empty.
    RedisRestart,
    /// A chat process killed with SIGKILL, started again on its port later.
    Kill(usize),
    /// The network between process B and Redis cut for a while.
    Cut(Duration),
}

/// A small deterministic generator (xorshift64*): a run's random choices come from its
/// printed seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn seed() -> u64 {
    std::env::var("TURBO_MODEL_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The message numbers in `html`: every `fault-NNNNNN`.
fn markers(html: &str) -> impl Iterator<Item = u32> + '_ {
    // Pages of the long form are megabytes: memchr's search, optimized even in this
    // unoptimized test build.
    let bytes = html.as_bytes();
    memchr::memmem::find_iter(bytes, MARK.as_bytes()).filter_map(move |at| {
        let start = at + MARK.len();
        let digits = bytes.get(start..start + 6)?;
        digits.iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    })
}

type Socket = WebSocketStream<TcpStream>;

/// Where pages and the poster reach the two processes: the ports stay, the processes
/// behind them come and go.
struct Ends {
    http: [String; 2],
    ws: [String; 2],
    addresses: [SocketAddr; 2],
    room: i32,
    pages: reqwest::Client,
}

impl Ends {
    /// The room page from `process`.
    async fn page(&self, process: usize) -> Result<String, String> {
        let url = format!("{}/rooms/{}/", self.http[process], self.room);
        let load = async {
            let response = self
                .pages
                .get(&url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status() != 200 {
                return Err(format!("status {}", response.status()));
            }
            response.text().await.map_err(|e| e.to_string())
        };
        tokio::time::timeout(PAGE_WITHIN, load)
            .await
            .unwrap_or_else(|_| Err(format!("no page within {PAGE_WITHIN:?}")))
    }

    /// A WebSocket to `process`, past its `hello`.
    async fn connect(&self, process: usize, small_buffer: bool) -> Result<Socket, String> {
        let open = async {
            let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
            if small_buffer {
                socket
                    .set_recv_buffer_size(STALLER_BUFFER)
                    .map_err(|e| e.to_string())?;
            }
            let stream = socket
                .connect(self.addresses[process])
                .await
                .map_err(|e| e.to_string())?;
            let (mut socket, _) =
                tokio_tungstenite::client_async(self.ws[process].as_str(), stream)
                    .await
                    .map_err(|e| e.to_string())?;
            match socket.next().await {
                Some(Ok(Message::Text(text))) if frame_value(&text)["type"] == "hello" => {
                    Ok(socket)
                }
                other => Err(format!("no hello: {other:?}")),
            }
        };
        tokio::time::timeout(CONNECT_WITHIN, open)
            .await
            .unwrap_or_else(|_| Err(format!("not connected within {CONNECT_WITHIN:?}")))
    }
}

/// What one page saw.
#[derive(Debug, Default)]
struct ClientLog {
    /// How many times each message arrived in a `message` frame, by number.
    received: Vec<u8>,
    /// Where each message first arrived: its sequence number, the last four hex digits
    /// of the epoch, and the process.
    first_at: Vec<(u64, u16, usize)>,
    /// Messages shown by a page loaded after a gap signal.
    refreshed: Vec<bool>,
    /// Messages shown by the first page.
    first_page: Vec<bool>,
    /// Messages the page loaded last shows. A frame of one of them that arrives again
    /// (the replay from the time the page's request began overlaps what its HTML already
    /// shows) is no duplicate: its element has the message's id, which Turbo replaces.
    on_page: Vec<bool>,
    /// Frames of messages already received that the page loaded since shows.
    replayed_on_page: u64,
    /// Subscribed at least once.
    subscribed: bool,
    frames: u64,
    skips: u64,
    gaps: u64,
    refreshes: u64,
    reconnects: u64,
    drops: u64,
    stalls: u64,
    /// How connections ended that the client did not drop itself, by cause.
    ends: BTreeMap<String, u64>,
    /// Frames out of their place: before `subscribed`, a number again or past the
    /// next, another epoch without a gap signal.
    out_of_order: u64,
    /// Subscriptions refused (`forbidden`).
    refused: u64,
    /// Anything else unexpected.
    other: u64,
    /// Gap signals by reason (`epoch`, `history`).
    gap_reasons: BTreeMap<String, u64>,
    /// How the connections that stalled ended, by cause.
    after_stall: BTreeMap<String, u64>,
    problems: Vec<String>,
    /// Where it is now, for a report.
    at: String,
}

impl ClientLog {
    fn new(messages: u32) -> Self {
        let slots = messages as usize + 1;
        Self {
            received: vec![0; slots],
            first_at: vec![(0, 0, 0); slots],
            refreshed: vec![false; slots],
            first_page: vec![false; slots],
            on_page: vec![false; slots],
            ..Self::default()
        }
    }

    fn shown(&self, message: u32) -> bool {
        let m = message as usize;
        self.received.get(m).is_some_and(|&n| n > 0)
            || self.refreshed.get(m).copied().unwrap_or(false)
            || self.first_page.get(m).copied().unwrap_or(false)
    }

    fn note(&mut self, problem: String) {
        if self.problems.len() < 100 {
            self.problems.push(problem);
        }
    }

    fn problem(&mut self, problem: String) {
        self.other += 1;
        self.note(problem);
    }

    fn out_of_order(&mut self, problem: String) {
        self.out_of_order += 1;
        self.note(problem);
    }
}

/// What the test tells a page to do.
#[derive(Clone, Copy, Debug)]
enum Command {
    /// Drop the socket without a goodbye, like a lost network.
    Drop,
    /// Stop reading the socket for this long.
    Stall(Duration),
}

/// How a connection ended.
enum End {
    Stop,
    /// A `gap` in the `subscribed` reply: the page refreshes.
    Gap,
    /// Frames are missing on a live connection (a problem): the page refreshes, as the
    /// client element does.
    Hole,
    Dropped,
    /// The connection ended otherwise; the page reconnects and resumes.
    Again(String),
}

/// A page's subscription: its token and the time its request began.
struct PageSubscription {
    token: String,
    since: u64,
}

/// Resolves when the run tells its pages to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// One page: loads the room, subscribes from the page's time, applies frames, resumes
/// after every disconnect (alternating processes), refreshes after a gap signal.
struct Page {
    ends: Arc<Ends>,
    me: usize,
    staller: bool,
    log: Arc<Mutex<ClientLog>>,
    commands: mpsc::UnboundedReceiver<Command>,
    stop: watch::Receiver<bool>,
    rng: Rng,
}

impl Page {
    async fn run(mut self) {
        let mut prefer = self.me % 2;
        let mut page: Option<PageSubscription> = None;
        let mut refresh = false;
        // The epoch and the last sequence number applied.
        let mut position: Option<(String, u64)> = None;
        let mut delay = MIN_DELAY;
        loop {
            if *self.stop.borrow() {
                return;
            }
            if page.is_none() {
                match self.load(prefer, refresh).await {
                    Some(loaded) => {
                        page = Some(loaded);
                        position = None;
                        delay = MIN_DELAY;
                    }
                    None => {
                        if self.pause(delay).await {
                            return;
                        }
                        delay = (delay * 2).min(MAX_DELAY);
                        prefer = 1 - prefer;
                        continue;
                    }
                }
            }
            let Some(subscription) = &page else {
                continue;
            };
            let mut socket = match self.ends.connect(prefer, self.staller).await {
                Ok(socket) => socket,
                Err(_) => match self.ends.connect(1 - prefer, self.staller).await {
                    Ok(socket) => {
                        prefer = 1 - prefer;
                        socket
                    }
                    Err(_) => {
                        if self.pause(delay).await {
                            return;
                        }
                        delay = (delay * 2).min(MAX_DELAY);
                        continue;
                    }
                },
            };
            delay = MIN_DELAY;
            let end = self
                .session(&mut socket, subscription, &mut position, prefer)
                .await;
            drop(socket);
            match end {
                End::Stop => return,
                End::Gap | End::Hole => {
                    page = None;
                    refresh = true;
                }
                End::Dropped => {
                    let mut log = lock(&self.log);
                    log.drops += 1;
                    log.reconnects += 1;
                }
                End::Again(why) => {
                    let mut log = lock(&self.log);
                    *log.ends.entry(why).or_default() += 1;
                    log.reconnects += 1;
                }
            }
            // Reconnect to the other process, after a short jittered pause.
            prefer = 1 - prefer;
            let jitter = Duration::from_millis(10 + self.rng.below(40));
            if self.pause(jitter).await {
                return;
            }
        }
    }

    /// Sleeps; `true` when the run stopped meanwhile.
    async fn pause(&mut self, delay: Duration) -> bool {
        tokio::select! {
            () = stopped(&mut self.stop) => true,
            () = tokio::time::sleep(delay) => false,
        }
    }

    /// Loads the room page (from `prefer`, else the other process) and notes what it
    /// shows.
    async fn load(&mut self, prefer: usize, refresh: bool) -> Option<PageSubscription> {
        let html = match self.ends.page(prefer).await {
            Ok(html) => html,
            Err(_) => self.ends.page(1 - prefer).await.ok()?,
        };
        let mut log = lock(&self.log);
        let found = turbo_model::testing::subscriptions(&html)
            .into_iter()
            .next();
        let Some(found) = found else {
            log.problem("a room page without a subscription".into());
            return None;
        };
        let since = found
            .since
            .as_deref()
            .and_then(|since| since.strip_prefix('t'))
            .and_then(|time| time.parse().ok());
        let Some(since) = since else {
            log.problem(format!("a page's since is t<micros>: {:?}", found.since));
            return None;
        };
        log.on_page.fill(false);
        for message in markers(&html) {
            if let Some(slot) = log.on_page.get_mut(message as usize) {
                *slot = true;
            }
            let slots = if refresh {
                &mut log.refreshed
            } else {
                &mut log.first_page
            };
            match slots.get_mut(message as usize) {
                Some(slot) => *slot = true,
                None => log.problem(format!("a page shows message {message}, never posted")),
            }
        }
        if refresh {
            log.refreshes += 1;
        }
        Some(PageSubscription {
            token: found.token,
            since,
        })
    }

    /// Subscribes (resuming from `position`, else from the page's time) and applies
    /// frames until the connection ends.
    async fn session(
        &mut self,
        socket: &mut Socket,
        page: &PageSubscription,
        position: &mut Option<(String, u64)>,
        process: usize,
    ) -> End {
        let since = match position {
            Some((epoch, seq)) => json!({"epoch": epoch, "seq": seq}),
            None => json!({"time": page.since}),
        };
        let request = json!({"type": "subscribe", "stream": page.token, "since": since});
        if let Err(e) = socket.send(Message::text(request.to_string())).await {
            return End::Again(format!("send failed: {}", kind_of(&e)));
        }
        lock(&self.log).at = format!("subscribing on {}", NAMES[process]);
        let mut stalled = false;
        let end = self.frames(socket, position, process, &mut stalled).await;
        if stalled {
            let why = match &end {
                End::Again(why) => why.clone(),
                End::Stop => "the run ended".into(),
                End::Gap => "gap signal".into(),
                End::Hole => "frames missing".into(),
                End::Dropped => "dropped by the test".into(),
            };
            *lock(&self.log).after_stall.entry(why).or_default() += 1;
        }
        end
    }

    /// Applies frames until the connection ends; `stalled` is set when the test made
    /// the page stop reading meanwhile.
    async fn frames(
        &mut self,
        socket: &mut Socket,
        position: &mut Option<(String, u64)>,
        process: usize,
        stalled: &mut bool,
    ) -> End {
        loop {
            let next = tokio::select! {
                biased;
                () = stopped(&mut self.stop) => return End::Stop,
                Some(command) = self.commands.recv() => match command {
                    Command::Drop => return End::Dropped,
                    Command::Stall(stall) => {
                        lock(&self.log).stalls += 1;
                        *stalled = true;
                        if self.pause(stall).await {
                            return End::Stop;
                        }
                        continue;
                    }
                },
                next = tokio::time::timeout(SILENCE, socket.next()) => next,
            };
            let text = match next {
                Err(_) => return End::Again("silent".into()),
                Ok(None) => return End::Again("end of stream".into()),
                Ok(Some(Err(e))) => return End::Again(kind_of(&e)),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return End::Again(match frame {
                        Some(frame) => format!("close {}", u16::from(frame.code)),
                        None => "close".into(),
                    });
                }
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(_))) => continue,
            };
            let frame = frame_value(&text);
            match frame["type"].as_str() {
                Some("ping") => {
                    if let Err(e) = socket.send(Message::text(r#"{"type":"pong"}"#)).await {
                        return End::Again(format!("send failed: {}", kind_of(&e)));
                    }
                }
                Some("subscribed") => {
                    if let Some(gap) = frame.get("gap") {
                        let mut log = lock(&self.log);
                        log.gaps += 1;
                        *log.gap_reasons
                            .entry(gap.as_str().unwrap_or("?").to_owned())
                            .or_default() += 1;
                        return End::Gap;
                    }
                    let epoch = frame["epoch"].as_str().unwrap_or_default().to_owned();
                    let seq = frame["seq"].as_u64().unwrap_or_default();
                    let mut log = lock(&self.log);
                    match position {
                        None => *position = Some((epoch, seq)),
                        Some((known, last)) if *known != epoch => {
                            log.out_of_order(format!(
                                "resumed from {known}.{last} into epoch {epoch} without a gap"
                            ));
                            return End::Hole;
                        }
                        Some(_) => {}
                    }
                    log.subscribed = true;
                    log.at = format!("live on {} from {frame}", NAMES[process]);
                }
                Some(kind @ ("message" | "skip")) => {
                    let mut log = lock(&self.log);
                    let Some((epoch, last)) = position.as_mut() else {
                        log.out_of_order(format!("a frame before `subscribed`: {frame}"));
                        continue;
                    };
                    let seq = frame["seq"].as_u64().unwrap_or_default();
                    if seq <= *last {
                        // A page ignores it (it has it); the server should not send it.
                        log.out_of_order(format!(
                            "seq {seq} again after {last} (epoch {epoch}, on {})",
                            NAMES[process]
                        ));
                        continue;
                    }
                    if seq > *last + 1 {
                        log.out_of_order(format!(
                            "seq {seq} after {last}: frames missing (epoch {epoch}, on {})",
                            NAMES[process]
                        ));
                        return End::Hole;
                    }
                    *last = seq;
                    if kind == "skip" {
                        log.skips += 1;
                        continue;
                    }
                    log.frames += 1;
                    let html = frame["html"].as_str().unwrap_or_default();
                    // The message's text may appear more than once in its element (its
                    // edit form holds it too).
                    let mut found: Vec<u32> = markers(html).collect();
                    found.sort_unstable();
                    found.dedup();
                    match found.as_slice() {
                        [message] => {
                            let m = *message as usize;
                            let here = (seq, epoch_tag(epoch), process);
                            match log.received.get(m).copied() {
                                None => log
                                    .problem(format!("a frame of message {message}, never posted")),
                                Some(0) => {
                                    log.received[m] = 1;
                                    log.first_at[m] = here;
                                }
                                Some(_) if log.on_page[m] => log.replayed_on_page += 1,
                                Some(n) => {
                                    log.received[m] = n.saturating_add(1);
                                    let (first_seq, first_epoch, first_on) = log.first_at[m];
                                    log.note(format!(
                                        "{MARK}{m:06} again as seq {seq} of epoch …{:04x} on {}; \
                                         first as seq {first_seq} of epoch …{first_epoch:04x} on {}",
                                        here.1, NAMES[process], NAMES[first_on]
                                    ));
                                }
                            }
                        }
                        _ => log.problem(format!("a frame not of one message: {html}")),
                    }
                }
                Some("error") if frame["code"] == "forbidden" => {
                    // The authorizer refused, or did not answer in time (an overloaded
                    // database). The client element reconnects and asks again once,
                    // then gives up on the stream; this page keeps asking, so that the
                    // figures count every refusal and the run goes on.
                    let mut log = lock(&self.log);
                    log.refused += 1;
                    log.note(format!("refused: {frame}"));
                    return End::Again("forbidden".into());
                }
                _ => lock(&self.log).problem(format!("unexpected frame: {frame}")),
            }
        }
    }
}

/// The last four hex digits of an epoch, to tell epochs apart in a report.
fn epoch_tag(epoch: &str) -> u16 {
    epoch
        .get(epoch.len().saturating_sub(4)..)
        .and_then(|tail| u16::from_str_radix(tail, 16).ok())
        .unwrap_or_default()
}

/// A short name for why a socket failed.
fn kind_of(error: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Io(e) => format!("{:?}", e.kind()),
        Error::ConnectionClosed | Error::AlreadyClosed => "closed".into(),
        Error::Protocol(e) => format!("protocol: {e}"),
        other => other.to_string(),
    }
}

/// What the poster did.
#[derive(Debug, Default)]
struct Posted {
    /// For each message number: the process that accepted it (303) and when.
    accepted: Vec<Option<(usize, Instant)>>,
    /// Posts whose outcome is unknown (the connection failed after the request went
    /// out): the message may or may not be saved. Never retried.
    uncertain: Vec<u32>,
    /// Posts a process answered with something other than 303.
    refused: Vec<(u32, String)>,
    /// Posts the first process refused to connect for, taken by the other.
    fallbacks: u64,
    /// The number of the last message posted.
    sent: u32,
    done: bool,
}

/// Posts `fault-000001`, `fault-000002`, … at a steady rate, alternating A and B, falling
/// back to the other when one refuses the connection (it is down).
async fn poster(ends: Arc<Ends>, plan: Plan, posted: Arc<Mutex<Posted>>) {
    // A new connection for every post: a refused connection then means "not sent".
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"));
    let mut ticker = tokio::time::interval(plan.post_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 1..=plan.messages {
        ticker.tick().await;
        lock(&posted).sent = n;
        let text = format!("{MARK}{n:06}");
        let first = n as usize % 2;
        for (attempt, process) in [first, 1 - first].into_iter().enumerate() {
            let url = format!("{}/rooms/{}/messages/", ends.http[process], ends.room);
            let sent = http.post(url).form(&[("text", &text)]).send().await;
            let mut posted = lock(&posted);
            match sent {
                Ok(response) if response.status() == 303 => {
                    posted.accepted[n as usize] = Some((process, Instant::now()));
                    if attempt > 0 {
                        posted.fallbacks += 1;
                    }
                }
                Ok(response) => posted
                    .refused
                    .push((n, format!("{} from {}", response.status(), NAMES[process]))),
                Err(e) if e.is_connect() && attempt == 0 => continue,
                Err(e) if e.is_connect() => {
                    posted.refused.push((n, format!("no process took it: {e}")))
                }
                Err(_) => posted.uncertain.push(n),
            }
            break;
        }
    }
    lock(&posted).done = true;
}

/// How many faults of each kind were injected.
#[derive(Debug, Default)]
struct Injected {
    redis_restarts: u64,
    kills: [u64; 2],
    cuts: u64,
    long_cuts: u64,
    stalls: u64,
}

/// Drops random pages' sockets.
async fn drops(
    plan: Plan,
    commands: Vec<mpsc::UnboundedSender<Command>>,
    mut rng: Rng,
    dropped: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = tokio::time::sleep(plan.drop_every) => {}
        }
        // Any page but the stallers: a drop would end a stall before the server does.
        let victim = plan.stallers + rng.below((commands.len() - plan.stallers) as u64) as usize;
        if commands[victim].send(Command::Drop).is_ok() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A run's figures, summed over its pages.
#[derive(Debug, Default)]
struct Figures {
    accepted: usize,
    frames: u64,
    skips: u64,
    gaps: u64,
    gap_reasons: BTreeMap<String, u64>,
    refreshes: u64,
    covered_by_refresh: u64,
    replayed_on_page: u64,
    reconnects: u64,
    ends: BTreeMap<String, u64>,
    after_stall: BTreeMap<String, u64>,
    silent_losses: u64,
    duplicates: u64,
    out_of_order: u64,
    refused: u64,
    other: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_applies_every_message_once_in_order_or_refreshes_through_faults() {
    let plan = Plan::from_env();
    for run in 1..=plan.runs {
        let seed = seed().wrapping_add(run as u64);
        tokio::time::timeout(plan.bound, run_once(&plan, run, seed))
            .await
            .unwrap_or_else(|_| {
                panic!("run {run} (seed {seed}) took longer than {:?}", plan.bound)
            });
    }
}

async fn run_once(plan: &Plan, run: usize, seed: u64) {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let timeline = Mutex::new(Vec::<String>::new());
    let note = |what: String| {
        lock(&timeline).push(format!("{:>6.1}s {what}", started.elapsed().as_secs_f64()));
    };

    let mut redis = TestRedis::start();
    let proxy = Proxy::start(format!("127.0.0.1:{}", redis.port)).await;
    let database = Database::new(&format!("faults-{run}"));
    let logs: [PathBuf; 2] = NAMES.map(|name| {
        std::env::temp_dir().join(format!(
            "turbo-model-faults-{}-{run}-{name}.log",
            std::process::id()
        ))
    });
    for log in &logs {
        let _ = std::fs::remove_file(log);
    }
    let env = [
        ("TURBO_MODEL_MAX_CONNECTIONS_PER_ADDRESS", "100000"),
        // The sockets' debug lines say why the server ended a connection.
        ("RUST_LOG", "warn,turbo_model::web::socket=debug"),
    ];
    let redis_urls = [redis.url(), format!("redis://127.0.0.1:{}/", proxy.port)];
    // One at a time: the first creates and migrates the database.
    let mut chats: Vec<Chat> = Vec::new();
    for process in 0..2 {
        let mut chat = Chat::spawn_with(
            &database.url(),
            &redis_urls[process],
            &env,
            Some(&logs[process]),
        );
        tokio::task::block_in_place(|| chat.wait_until_listening());
        chats.push(chat);
    }
    let room = chats[0].create_room("Under fire").await;
    let ends = Arc::new(Ends {
        http: [chats[0].base_url.clone(), chats[1].base_url.clone()],
        ws: [chats[0].ws_url(), chats[1].ws_url()],
        addresses: [0, 1].map(|process| {
            chats[process]
                .address()
                .parse()
                .unwrap_or_else(|e| panic!("a socket address: {e}"))
        }),
        room,
        pages: Chat::http(),
    });

    // The pages, all subscribed before the first post.
    let (stop, stop_signal) = watch::channel(false);
    let mut commands = Vec::new();
    let mut logs_of_clients = Vec::new();
    let mut tasks = Vec::new();
    for me in 0..plan.clients {
        let (send, receive) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(ClientLog::new(plan.messages)));
        let page = Page {
            ends: Arc::clone(&ends),
            me,
            staller: me < plan.stallers,
            log: Arc::clone(&log),
            commands: receive,
            stop: stop_signal.clone(),
            rng: Rng::new(seed ^ (me as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        };
        tasks.push(tokio::spawn(page.run()));
        commands.push(send);
        logs_of_clients.push(log);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !logs_of_clients.iter().all(|log| lock(log).subscribed) {
        assert!(
            Instant::now() < deadline,
            "the pages did not all subscribe within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    note(format!("{} pages subscribed", plan.clients));

    // Messages, and faults while they flow.
    let posted = Arc::new(Mutex::new(Posted {
        accepted: vec![None; plan.messages as usize + 1],
        ..Posted::default()
    }));
    let posting = tokio::spawn(poster(Arc::clone(&ends), plan.clone(), Arc::clone(&posted)));
    let mut injected = Injected::default();
    let dropped = Arc::new(AtomicU64::new(0));
    let dropping = tokio::spawn(drops(
        plan.clone(),
        commands.clone(),
        Rng::new(rng.below(u64::MAX)),
        Arc::clone(&dropped),
        stop_signal.clone(),
    ));
    let mut kills: Vec<(usize, Instant)> = Vec::new();
    let mut step = 0;
    let mut next_at = plan.fault_every;
    while plan.repeat || step < plan.schedule.len() {
        // The next fault once enough messages went out since the last one ended: as
        // many faults per message however fast the processes answer.
        let over = loop {
            let (sent, done) = {
                let posted = lock(&posted);
                (posted.sent, posted.done)
            };
            if done || sent >= next_at {
                break done;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if over {
            break;
        }
        let fault = plan.schedule[step % plan.schedule.len()];
        step += 1;
        match fault {
            Fault::Stall => {
                note(format!(
                    "{} pages stop reading for {:?}",
                    plan.stallers, plan.stall_for
                ));
                for staller in &commands[..plan.stallers] {
                    if staller.send(Command::Stall(plan.stall_for)).is_ok() {
                        injected.stalls += 1;
                    }
                }
                tokio::time::sleep(plan.stall_for).await;
            }
            Fault::RedisRestart => {
                note("Redis killed and started again, empty".into());
                tokio::task::block_in_place(|| redis.restart());
                injected.redis_restarts += 1;
            }
            Fault::Kill(process) => {
                note(format!("{} killed (SIGKILL)", NAMES[process]));
                chats[process].kill();
                kills.push((process, Instant::now()));
                injected.kills[process] += 1;
                tokio::time::sleep(plan.down_for).await;
                tokio::task::block_in_place(|| chats[process].restart());
                note(format!("{} started again", NAMES[process]));
            }
            Fault::Cut(cut) => {
                note(format!("B cut off from Redis for {cut:?}"));
                proxy.cut();
                tokio::time::sleep(cut).await;
                proxy.restore();
                note("B reaches Redis again".into());
                if cut > Duration::from_secs(10) {
                    injected.long_cuts += 1;
                } else {
                    injected.cuts += 1;
                }
            }
        }
        next_at = lock(&posted).sent + plan.fault_every;
    }
    assert!(
        step >= plan.schedule.len(),
        "the messages ran out before every fault was injected ({step} of {})",
        plan.schedule.len()
    );
    posting
        .await
        .unwrap_or_else(|e| panic!("the poster failed: {e}"));
    note("last post answered".into());
    // Everything is healed: both processes run, Redis is up, the proxy lets through.
    let accepted: Vec<u32> = {
        let posted = lock(&posted);
        (1..=plan.messages)
            .filter(|&n| posted.accepted[n as usize].is_some())
            .collect()
    };
    let missing = |log: &ClientLog| accepted.iter().filter(|&&m| !log.shown(m)).count();
    let settle = Instant::now() + plan.settle;
    loop {
        let left: usize = logs_of_clients.iter().map(|log| missing(&lock(log))).sum();
        if left == 0 || Instant::now() >= settle || tasks.iter().any(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    note("pages caught up (or the wait ended)".into());
    let rss = [0, 1].map(|process| chats[process].rss_kib().unwrap_or_default());

    let _ = stop.send(true);
    dropping
        .await
        .unwrap_or_else(|e| panic!("the drop task failed: {e}"));
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("a page failed: {e}"));
    }
    let wall = started.elapsed();
    // What the servers say they did to slow pages.
    let server_log: String = logs
        .iter()
        .map(|log| std::fs::read_to_string(log).unwrap_or_default())
        .collect();
    let kicked = server_log.matches(KICKED).count();
    let write_timeouts = server_log.matches(WRITE_TIMED_OUT).count();

    // Figures and verdicts, per page.
    let posted = lock(&posted);
    let mut figures = Figures {
        accepted: accepted.len(),
        ..Figures::default()
    };
    let mut failures = String::new();
    let mut failing_pages = 0;
    for (me, log) in logs_of_clients.iter().enumerate() {
        let log = lock(log);
        figures.frames += log.frames;
        figures.skips += log.skips;
        figures.gaps += log.gaps;
        figures.refreshes += log.refreshes;
        figures.replayed_on_page += log.replayed_on_page;
        figures.reconnects += log.reconnects;
        for (why, n) in &log.ends {
            *figures.ends.entry(why.clone()).or_default() += n;
        }
        for (why, n) in &log.gap_reasons {
            *figures.gap_reasons.entry(why.clone()).or_default() += n;
        }
        for (why, n) in &log.after_stall {
            *figures.after_stall.entry(why.clone()).or_default() += n;
        }
        let mut lost = Vec::new();
        for &m in &accepted {
            let received = log.received[m as usize];
            if received == 0 && log.refreshed[m as usize] {
                figures.covered_by_refresh += 1;
            }
            if !log.shown(m) {
                lost.push(m);
            }
        }
        let duplicates: Vec<usize> = (1..log.received.len())
            .filter(|&m| log.received[m] > 1)
            .collect();
        figures.silent_losses += lost.len() as u64;
        figures.duplicates += duplicates.len() as u64;
        figures.out_of_order += log.out_of_order;
        figures.refused += log.refused;
        figures.other += log.other;
        if lost.is_empty() && duplicates.is_empty() && log.out_of_order + log.other == 0 {
            continue;
        }
        failing_pages += 1;
        if failing_pages > 20 {
            continue;
        }
        let _ = writeln!(
            failures,
            "page {me}{}: {} silent losses, {} duplicates, {} out of order, {} other \
             problems, {} refusals; {}",
            if me < plan.stallers { " (staller)" } else { "" },
            lost.len(),
            duplicates.len(),
            log.out_of_order,
            log.other,
            log.refused,
            log.at,
        );
        for &m in lost.iter().take(10) {
            let by = posted.accepted[m as usize].map(|(process, at)| {
                let killed = kills.iter().find(|(killed, when)| {
                    *killed == process && *when >= at && *when - at < KILL_WINDOW
                });
                format!(
                    "accepted by {} at {:.3}s{}",
                    NAMES[process],
                    at.duration_since(started).as_secs_f64(),
                    if killed.is_some() {
                        ", which was killed right after"
                    } else {
                        ""
                    }
                )
            });
            let _ = writeln!(failures, "  lost {MARK}{m:06}: {}", by.unwrap_or_default());
        }
        for &m in duplicates.iter().take(5) {
            let _ = writeln!(
                failures,
                "  {MARK}{m:06} received {} times",
                log.received[m]
            );
        }
        for problem in log.problems.iter().take(8) {
            let _ = writeln!(failures, "  {problem}");
        }
    }

    #[allow(
        clippy::print_stdout,
        reason = "the figures are the point of this test"
    )]
    {
        println!(
            "faults ({} form) run {run}/{}: seed {seed}; {} pages, {} messages accepted \
             ({} uncertain, {} refused, {} fell back to the other process); {} frames applied \
             ({} skips); {} gap signals ({:?}), {} refreshes, {} messages covered by refresh, \
             {} frames again of messages the loaded page showed (replaced by id); \
             {} reconnects (ends: {:?}); faults: {} Redis restarts, {} kills of A, {} kills \
             of B, {} short and {} long cuts between B and Redis, {} socket drops, {} stalls \
             (ended by: {:?}; the servers kicked {} slow connections and dropped {} \
             whose writes timed out); {} subscriptions refused; \
             silent losses {}, duplicates {}, out of order {}, other problems {}; \
             RSS A {} MB, B {} MB; {:.1?}",
            plan.form,
            plan.runs,
            plan.clients,
            figures.accepted,
            posted.uncertain.len(),
            posted.refused.len(),
            posted.fallbacks,
            figures.frames,
            figures.skips,
            figures.gaps,
            figures.gap_reasons,
            figures.refreshes,
            figures.covered_by_refresh,
            figures.replayed_on_page,
            figures.reconnects,
            figures.ends,
            injected.redis_restarts,
            injected.kills[0],
            injected.kills[1],
            injected.cuts,
            injected.long_cuts,
            dropped.load(Ordering::Relaxed),
            injected.stalls,
            figures.after_stall,
            kicked,
            write_timeouts,
            figures.refused,
            figures.silent_losses,
            figures.duplicates,
            figures.out_of_order,
            figures.other,
            rss[0] / 1024,
            rss[1] / 1024,
            wall,
        );
    }
    let timeline = lock(&timeline).join("\n");
    let logs_named = format!(
        "the chat processes' logs: {} and {}",
        logs[0].display(),
        logs[1].display()
    );
    assert!(
        failures.is_empty(),
        "run {run} (seed {seed}) broke the delivery contract on {failing_pages} pages \
         (the first 20 below):\n{failures}\ntimeline:\n{timeline}\n{logs_named}"
    );
    assert!(
        figures.accepted as u64 >= u64::from(plan.messages) * 9 / 10,
        "most posts are accepted: {} of {}; refused: {:?}\ntimeline:\n{timeline}\n{logs_named}",
        figures.accepted,
        plan.messages,
        &posted.refused[..posted.refused.len().min(10)],
    );
    for (process, kib) in rss.iter().enumerate() {
        assert!(
            *kib > 0 && *kib < RSS_LIMIT_KIB,
            "{} uses {kib} KiB at the end (limit {RSS_LIMIT_KIB} KiB)",
            NAMES[process]
        );
    }
    for log in &logs {
        let _ = std::fs::remove_file(log);
    }
}
