//! What the chat's process tests share: a real `chat` process on a port of its own, which
//! a test can kill and start again on the same port, and a SQLite file that several
//! processes share.

#![allow(
    dead_code,
    reason = "each test binary that includes this module uses a part of it"
)]

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use turbo_model_tests::redis_server::TestRedis;

/// The key both processes sign stream names with.
pub(crate) const SECRET: &str = "multi-process test secret, 32 bytes or more";

/// How a `chat` process is started: the same way again after a kill.
#[derive(Clone, Debug)]
struct Settings {
    database: String,
    redis_url: String,
    env: Vec<(String, String)>,
    /// Where its output goes (appended to): its log lines, which `tracing_subscriber`
    /// writes to standard output. Without it, standard output is dropped and standard
    /// error inherited.
    log: Option<PathBuf>,
}

/// One `chat` process, killed on drop.
pub(crate) struct Chat {
    child: Option<Child>,
    settings: Settings,
    port: u16,
    pub(crate) base_url: String,
}

impl Chat {
    pub(crate) fn start(database: &str, redis: &TestRedis) -> Self {
        let mut chat = Self::spawn(database, redis);
        chat.wait_until_listening();
        chat
    }

    /// Starts the process without waiting for it.
    pub(crate) fn spawn(database: &str, redis: &TestRedis) -> Self {
        Self::spawn_with(database, &redis.url(), &[], None)
    }

    /// Starts the process on a free port, with Redis at `redis_url`, these extra
    /// environment variables, and its output appended to `log`; does not wait for it.
    pub(crate) fn spawn_with(
        database: &str,
        redis_url: &str,
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("a free port: {e}"));
        let mut chat = Self {
            child: None,
            settings: Settings {
                database: database.to_owned(),
                redis_url: redis_url.to_owned(),
                env: env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                log: log.map(Path::to_path_buf),
            },
            port,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        chat.run();
        chat
    }

    fn run(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
        command
            .env("PORT", self.port.to_string())
            .env("DATABASE_URL", &self.settings.database)
            .env("TURBO_MODEL_REDIS_URL", &self.settings.redis_url)
            .env("TURBO_MODEL_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .envs(self.settings.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null());
        if let Some(log) = &self.settings.log {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap_or_else(|e| panic!("open the log {}: {e}", log.display()));
            let also = file
                .try_clone()
                .unwrap_or_else(|e| panic!("the log {}: {e}", log.display()));
            command.stdout(file).stderr(also);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start the chat: {e}"));
        self.child = Some(child);
    }

    /// Waits until the process listens; panics if it exits first.
    pub(crate) fn wait_until_listening(&mut self) {
        let address = self.address();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&address).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("the chat on {address} exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the chat did not start on {address}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the process with SIGKILL (nothing is flushed, nothing said goodbye).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, on the same port and with the same settings, and waits until it
    /// listens.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.run();
        self.wait_until_listening();
    }

    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the process, in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("{}/turbo-model/ws", self.base_url.replacen("http", "ws", 1))
    }

    pub(crate) fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("http client: {e}"))
    }

    pub(crate) async fn create_room(&self, name: &str) -> i32 {
        let response = Self::http()
            .post(format!("{}/rooms/", self.base_url))
            .form(&[("name", name)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("create a room: {e}"));
        let location = response.headers()["location"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        location
            .trim_start_matches("/rooms/")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|_| panic!("a room, got {location:?}"))
    }

    pub(crate) async fn post(&self, room: i32, text: &str) {
        let status = Self::http()
            .post(format!("{}/rooms/{room}/messages/", self.base_url))
            .form(&[("text", text)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("post: {e}"))
            .status();
        assert_eq!(status, 303);
    }

    /// The page's subscription: token and rendered position.
    pub(crate) async fn subscription(&self, room: i32) -> turbo_model::testing::PageSubscription {
        let page = Self::http()
            .get(format!("{}/rooms/{room}/", self.base_url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("room page: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("room page: {e}"));
        turbo_model::testing::subscriptions(&page)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("the room page subscribes:\n{page}"))
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A SQLite file for several processes, removed at the end (with its WAL files).
pub(crate) struct Database(PathBuf);

impl Database {
    pub(crate) fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "turbo-model-multiprocess-{tag}-{}.db",
            std::process::id()
        ));
        let database = Self(path);
        database.remove();
        database
    }

    pub(crate) fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.0.display())
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.remove();
    }
}
